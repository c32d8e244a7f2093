"""Audio for WaveNet training: find the files, load them once, serve random μ-law crops.

Data sources (:func:`find_audio_sources`):

- a corpus folder from ``audiogen-studio corpus`` (``manifest.jsonl`` with ``split`` =
  ``train`` / ``valid`` / ``test``; ``test`` is never used here);
- any other ``*.jsonl`` manifest: one JSON object per line with ``path`` (relative to the
  manifest's folder, or absolute) and an optional ``split`` (default ``train``);
- a plain folder (searched recursively): everything is ``train``, except files below a ``valid``
  folder (they validate) and below a ``test`` folder (left out), as in a copy of a corpus's
  ``audio/train|valid|test/`` tree whose manifest was not kept (its held-out voices must stay
  unheard); a single audio file is ``train``.

When no ``valid`` audio is listed, the last ``valid_fraction`` of every long enough training file
is held out instead (a time split: those samples are never trained on).

Storage (:class:`SplitData`): every file is loaded with ``audio.io.load(rate=sample_rate,
mono=True)``, μ-law encoded and concatenated into one ``uint8``/``uint16`` array per split, file
after file. For a mel-conditioned model each file is first left-padded with silence — at least
``hop`` samples, and as many more as make its length whole frames — so every file starts on a
frame boundary and sample position ``p`` of the split belongs to frame ``p // hop`` of the split's
concatenated log-mel array ``[M, N / hop]`` (computed per padded file with :func:`log_mel`).
Files shorter than one training window are left-padded with silence too. The arrays are written
as ``.npy`` files into a cache folder keyed by the file list, sizes, times and the config, and
read back memory-mapped, so a resumed run does not decode the audio again.

Crops (:meth:`AudioDataset.batch`): a window of ``T`` targets at positions ``[o, o + T)`` has
inputs at ``[o - 1, o + T - 1)`` (teacher forcing, the previous sample predicts the next); for a
mel model ``o`` and ``T`` are multiples of ``hop`` and the batch carries the ``T / hop`` frames
of the targets, so ``model(inputs, mel)`` is output-aligned (see :mod:`models.wavenet`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from audiogen_studio.audio import io as audio_io
from audiogen_studio.audio.errors import AudioError
from audiogen_studio.models.mulaw import mulaw_encode, silence_class
from audiogen_studio.models.wavenet import WaveNetConfig, log_mel

log = logging.getLogger(__name__)

MANIFEST_NAME = "manifest.jsonl"
AUDIO_EXTENSIONS = audio_io.READ_EXTENSIONS
CACHE_VERSION = 1


class TrainingError(AudioError):
    """Training cannot start or go on: bad data, an incompatible checkpoint, bad options."""


@dataclass(frozen=True, slots=True)
class AudioSources:
    """Audio files by split, and where they were found."""

    origin: Path
    train: tuple[Path, ...]
    valid: tuple[Path, ...]


def _manifest_entries(path: Path) -> list[dict[str, Any]]:
    """Lines of a manifest; the corpus manifest through its own reader (damaged lines dropped)."""
    if path.name == MANIFEST_NAME:
        from audiogen_studio.training.corpora.manifest import read_manifest

        entries = read_manifest(path.parent)
        if entries:
            return entries
    rows: list[dict[str, Any]] = []
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise TrainingError(f"{path}: cannot read the manifest ({exc})") from exc
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            log.warning("%s:%d: not JSON, skipped", path, number)
            continue
        if not isinstance(row, dict) or not isinstance(row.get("path"), str):
            log.warning("%s:%d: no 'path', skipped", path, number)
            continue
        rows.append(row)
    return rows


def _from_manifest(path: Path) -> AudioSources:
    entries = _manifest_entries(path)
    if not entries:
        raise TrainingError(f"{path}: the manifest lists no audio files")
    by_split: dict[str, list[Path]] = {"train": [], "valid": []}
    for entry in entries:
        file = Path(entry["path"])
        file = file if file.is_absolute() else path.parent / file
        split = str(entry.get("split", "train"))
        if split in by_split:
            by_split[split].append(file)
    if not by_split["train"]:
        raise TrainingError(f"{path}: the manifest lists no 'train' files")
    missing = [p for p in by_split["train"] + by_split["valid"] if not p.is_file()]
    if missing:
        raise TrainingError(f"{path}: {len(missing)} listed file(s) are missing, e.g. {missing[0]}")
    return AudioSources(path, tuple(by_split["train"]), tuple(by_split["valid"]))


def find_audio_sources(data: str | Path) -> AudioSources:
    """The training and validation files of a corpus folder, a manifest, a folder or a file.

    Raises:
        TrainingError: nothing there, no audio in it, a manifest without train files or whose
            files are missing.
    """
    path = Path(data).expanduser()
    if not path.exists():
        raise TrainingError(f"{path}: no such file or folder")
    if path.is_file():
        if path.suffix.lower() == ".jsonl":
            return _from_manifest(path)
        if path.suffix.lower() in AUDIO_EXTENSIONS:
            return AudioSources(path, (path,), ())
        raise TrainingError(
            f"{path}: not an audio file ({', '.join(AUDIO_EXTENSIONS)}) or a .jsonl manifest"
        )
    if (path / MANIFEST_NAME).is_file():
        return _from_manifest(path / MANIFEST_NAME)
    files = sorted(
        p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_EXTENSIONS
    )
    if not files:
        raise TrainingError(
            f"{path}: no audio files ({', '.join(AUDIO_EXTENSIONS)}) and no {MANIFEST_NAME}"
        )
    return _split_by_folder(path, files)


def _split_by_folder(root: Path, files: list[Path]) -> AudioSources:
    """The splits of a plain folder: files below a ``test`` folder (relative to ``root``) are left
    out, files below a ``valid`` folder validate, the others train."""
    by_split: dict[str, list[Path]] = {"train": [], "valid": [], "test": []}
    for file in files:
        folders = {part.lower() for part in file.relative_to(root).parts[:-1]}
        split = "test" if "test" in folders else "valid" if "valid" in folders else "train"
        by_split[split].append(file)
    if not by_split["train"]:
        raise TrainingError(
            f"{root}: all its audio lies below 'valid' or 'test' folders, which are held out; "
            f"give the folder of the training files, or a .jsonl manifest with a split per file"
        )
    if by_split["valid"] or by_split["test"]:
        log.info(
            "%s (no %s): %d file(s) below 'valid' folders validate, %d below 'test' folders are "
            "left out",
            root,
            MANIFEST_NAME,
            len(by_split["valid"]),
            len(by_split["test"]),
        )
    return AudioSources(root, tuple(by_split["train"]), tuple(by_split["valid"]))


@dataclass(frozen=True)
class SplitData:
    """One split, concatenated: μ-law classes, log-mel frames, file segments.

    Attributes:
        classes: ``[N]`` uint8 (uint16 above 8 bits) μ-law classes of every file, end to end.
        mel: ``[M, N // hop]`` float32 log-mel frames (mel models), else ``None``.
        segments: ``[files, 2]`` int64 ``(start, end)`` of each file in ``classes`` (padding
            included; starts are multiples of ``hop`` for mel models).
        seconds: audio duration before any padding.
    """

    classes: npt.NDArray[np.unsignedinteger[Any]]
    mel: npt.NDArray[np.float32] | None
    segments: npt.NDArray[np.int64]
    seconds: float

    @property
    def files(self) -> int:
        """Number of file segments."""
        return int(self.segments.shape[0])


@dataclass(frozen=True)
class Batch:
    """Training crops.

    Attributes:
        inputs: ``[B, T]`` int64 classes of samples ``o - 1 .. o + T - 2``.
        targets: ``[B, T]`` int64 classes of samples ``o .. o + T - 1``.
        mel: ``[B, M, T / hop]`` log-mel frames of the targets (mel models), else ``None``.
    """

    inputs: torch.Tensor
    targets: torch.Tensor
    mel: torch.Tensor | None

    def to(self, device: torch.device) -> Batch:
        """The batch on ``device``."""
        return Batch(
            self.inputs.to(device, non_blocking=True),
            self.targets.to(device, non_blocking=True),
            None if self.mel is None else self.mel.to(device, non_blocking=True),
        )


class _Builder:
    """Accumulates files into one split's arrays."""

    def __init__(self, config: WaveNetConfig, min_length: int) -> None:
        self.config = config
        self.min_length = min_length
        self.unit = config.hop_length if config.mel_channels else 1
        self.silence = silence_class(config.bits)
        self.classes: list[npt.NDArray[Any]] = []
        self.mels: list[npt.NDArray[np.float32]] = []
        self.segments: list[tuple[int, int]] = []
        self.position = 0
        self.seconds = 0.0

    def add(self, samples: npt.NDArray[np.float32]) -> None:
        cfg = self.config
        self.seconds += samples.shape[0] / cfg.sample_rate
        lead = self.unit if cfg.mel_channels else 0
        total = lead + samples.shape[0]
        if total < self.min_length:
            lead += self.min_length - total
            total = self.min_length
        if cfg.mel_channels:
            lead += (-total) % self.unit  # left-pad so the length is whole frames
        x = np.concatenate([np.zeros(lead, np.float32), samples.astype(np.float32, copy=False)])
        dtype = np.uint8 if cfg.bits <= 8 else np.uint16
        self.classes.append(mulaw_encode(x, cfg.bits).astype(dtype))
        if cfg.mel_channels:
            with torch.inference_mode():
                frames = log_mel(torch.from_numpy(x), cfg)[0].numpy()  # [M, len / hop]
            self.mels.append(frames.astype(np.float32, copy=False))
        self.segments.append((self.position, self.position + x.shape[0]))
        self.position += x.shape[0]

    def finish(self) -> SplitData | None:
        if not self.classes:
            return None
        mel = np.concatenate(self.mels, axis=1) if self.mels else None
        return SplitData(
            classes=np.concatenate(self.classes),
            mel=mel,
            segments=np.asarray(self.segments, dtype=np.int64).reshape(-1, 2),
            seconds=self.seconds,
        )


def _save_split(folder: Path, name: str, split: SplitData) -> None:
    np.save(folder / f"{name}.classes.npy", split.classes)
    np.save(folder / f"{name}.segments.npy", split.segments)
    if split.mel is not None:
        np.save(folder / f"{name}.mel.npy", split.mel)


def _load_split(folder: Path, name: str, seconds: float) -> SplitData | None:
    classes_path = folder / f"{name}.classes.npy"
    if not classes_path.is_file():
        return None
    mel_path = folder / f"{name}.mel.npy"
    return SplitData(
        classes=np.load(classes_path, mmap_mode="r"),
        mel=np.load(mel_path, mmap_mode="r") if mel_path.is_file() else None,
        segments=np.load(folder / f"{name}.segments.npy"),
        seconds=seconds,
    )


class AudioDataset:
    """Train (and valid) audio of one config, ready for random crops of ``window`` targets.

    Build it with :meth:`prepare`. ``window`` is the number of targets per crop (a multiple of
    ``hop`` for mel models).
    """

    def __init__(
        self,
        *,
        config: WaveNetConfig,
        train: SplitData,
        valid: SplitData | None,
        window: int,
        sources: AudioSources,
        skipped: tuple[str, ...] = (),
    ) -> None:
        self.config = config
        self.train = train
        self.valid = valid
        self.window = window
        self.sources = sources
        self.skipped = skipped
        self.unit = config.hop_length if config.mel_channels else 1
        if window % self.unit:
            raise ValueError(f"window {window} must be a multiple of {self.unit}")

    # --- building ------------------------------------------------------------------------------

    @staticmethod
    def window_for(config: WaveNetConfig, crop: int) -> int:
        """Targets per crop: the receptive field's context plus ``crop`` (rounded up to a whole
        number of frames for mel models)."""
        window = config.receptive_field - 1 + crop
        if config.mel_channels:
            window = -(-window // config.hop_length) * config.hop_length
        return window

    @classmethod
    def prepare(
        cls,
        data: str | Path,
        config: WaveNetConfig,
        *,
        crop: int,
        cache_dir: str | Path | None = None,
        valid_fraction: float = 0.1,
        progress: Callable[[int, int], None] | None = None,
        write_cache: bool = True,
    ) -> AudioDataset:
        """Find, load (or reuse the cached arrays of) the audio of ``data``.

        Args:
            data: corpus folder, manifest, folder of audio files or one audio file.
            config: supplies the sample rate, μ-law bits and mel settings.
            crop: targets per crop that get a loss (the window adds the receptive field).
            cache_dir: folder for the memory-mapped ``.npy`` cache (a subfolder per content
                key); ``None`` keeps everything in memory.
            valid_fraction: tail of every training file held out when no valid split exists.
            progress: called with ``(files done, files)`` while loading.
            write_cache: build and write the cache when it is missing (under DDP only rank 0
                does; the others wait at a barrier and then read it).

        Raises:
            TrainingError: no usable audio (every file failed to load, or all are empty).
        """
        if crop < 1:
            raise TrainingError(f"crop must be at least 1 sample, got {crop}")
        sources = find_audio_sources(data)
        window = cls.window_for(config, crop)
        unit = config.hop_length if config.mel_channels else 1
        min_length = window + unit  # one crop plus the input before its first target
        key = _cache_key(sources, config, min_length, valid_fraction)
        folder = Path(cache_dir) / f"data-{key}" if cache_dir is not None else None
        if folder is not None and (folder / "info.json").is_file():
            info = json.loads((folder / "info.json").read_text(encoding="utf-8"))
            train = _load_split(folder, "train", float(info["train_seconds"]))
            if train is not None:
                valid = _load_split(folder, "valid", float(info["valid_seconds"]))
                log.info("audio cache %s reused", folder)
                return cls(
                    config=config,
                    train=train,
                    valid=valid,
                    window=window,
                    sources=sources,
                    skipped=tuple(info.get("skipped", ())),
                )
        if not write_cache and folder is not None:
            raise TrainingError(f"{folder}: audio cache missing (rank 0 should have written it)")
        train_b = _Builder(config, min_length)
        valid_b = _Builder(config, min_length)
        skipped: list[str] = []
        files = [(p, "train") for p in sources.train] + [(p, "valid") for p in sources.valid]
        hold_out = not sources.valid and valid_fraction > 0
        for done, (path, split) in enumerate(files, 1):
            try:
                clip = audio_io.load(path, rate=config.sample_rate, mono=True)
            except AudioError as exc:
                log.warning("skipping %s", exc)
                skipped.append(str(exc))
                continue
            samples = np.asarray(clip.samples[0], dtype=np.float32)
            if split == "valid":
                valid_b.add(samples)
            else:
                tail = max(round(samples.shape[0] * valid_fraction), min_length)
                if hold_out and samples.shape[0] >= 2 * tail:
                    train_b.add(samples[:-tail])
                    valid_b.add(samples[-tail:])
                else:
                    train_b.add(samples)
            if progress is not None:
                progress(done, len(files))
        train = train_b.finish()
        if train is None:
            first = f": {skipped[0]}" if skipped else ""
            raise TrainingError(f"{sources.origin}: no training audio could be loaded{first}")
        valid = valid_b.finish()
        if folder is not None:
            _write_cache(folder, train, valid, skipped)
            train = _load_split(folder, "train", train.seconds) or train
            if valid is not None:
                valid = _load_split(folder, "valid", valid.seconds) or valid
        return cls(
            config=config,
            train=train,
            valid=valid,
            window=window,
            sources=sources,
            skipped=tuple(skipped),
        )

    # --- crops ---------------------------------------------------------------------------------

    def split(self, name: str) -> SplitData:
        """``"train"`` or ``"valid"``."""
        data = self.train if name == "train" else self.valid
        if data is None:
            raise TrainingError(f"no {name} audio")
        return data

    def _starts_table(self, data: SplitData) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
        """First valid start of each segment and the cumulative count of starts."""
        first = data.segments[:, 0] + self.unit  # the input before the first target exists
        last = data.segments[:, 1] - self.window  # the window ends inside the segment
        counts = np.maximum((last - first) // self.unit + 1, 0)
        return first, np.cumsum(counts)

    def random_starts(self, name: str, rng: np.random.Generator, count: int) -> npt.NDArray[Any]:
        """``count`` target start positions, uniform over every valid crop of the split."""
        data = self.split(name)
        first, cum = self._starts_table(data)
        total = int(cum[-1])
        if total < 1:
            raise TrainingError(f"{name} audio holds no crop of {self.window} samples")
        r = rng.integers(0, total, size=count)
        seg = np.searchsorted(cum, r, side="right")
        before = np.where(seg > 0, cum[np.maximum(seg - 1, 0)], 0)
        return first[seg] + (r - before) * self.unit

    def batch(self, name: str, starts: npt.NDArray[Any]) -> Batch:
        """Crops whose targets start at ``starts`` (from :meth:`random_starts`)."""
        data = self.split(name)
        starts = np.asarray(starts, dtype=np.int64)
        idx = starts[:, None] - 1 + np.arange(self.window + 1)[None, :]  # [B, T + 1]
        seq = torch.from_numpy(np.asarray(data.classes[idx], dtype=np.int64))
        mel = None
        if data.mel is not None:
            hop = self.config.hop_length
            n = self.window // hop
            fidx = (starts // hop)[:, None] + np.arange(n)[None, :]  # [B, T / hop]
            frames = np.asarray(data.mel[:, fidx], dtype=np.float32)  # [M, B, T / hop]
            mel = torch.from_numpy(np.ascontiguousarray(frames.transpose(1, 0, 2)))
        return Batch(inputs=seq[:, :-1], targets=seq[:, 1:], mel=mel)

    def sample(self, name: str, rng: np.random.Generator, count: int) -> Batch:
        """``count`` random crops of the split."""
        return self.batch(name, self.random_starts(name, rng, count))

    @property
    def train_hours(self) -> float:
        """Hours of training audio (before padding)."""
        return self.train.seconds / 3600.0

    @property
    def valid_hours(self) -> float:
        """Hours of validation audio (0 without a valid split)."""
        return 0.0 if self.valid is None else self.valid.seconds / 3600.0


def _file_facts(paths: Iterable[Path]) -> list[list[Any]]:
    facts: list[list[Any]] = []
    for p in paths:
        try:
            st = p.stat()
            facts.append([str(p.resolve()), st.st_size, st.st_mtime_ns])
        except OSError:
            facts.append([str(p), None, None])
    return facts


def _cache_key(
    sources: AudioSources, config: WaveNetConfig, min_length: int, valid_fraction: float
) -> str:
    blob = json.dumps(
        {
            "version": CACHE_VERSION,
            "train": _file_facts(sources.train),
            "valid": _file_facts(sources.valid),
            "rate": config.sample_rate,
            "bits": config.bits,
            "mel": [config.mel_channels, config.hop_length],
            "min_length": min_length,
            "valid_fraction": valid_fraction,
        },
        sort_keys=True,
    )
    return hashlib.sha1(blob.encode()).hexdigest()[:16]


def _write_cache(
    folder: Path, train: SplitData, valid: SplitData | None, skipped: list[str]
) -> None:
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = folder.parent / f".{folder.name}.{os.getpid()}.partial"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()  # plain mkdir: honours the umask
    try:
        _save_split(tmp, "train", train)
        if valid is not None:
            _save_split(tmp, "valid", valid)
        info = {
            "train_seconds": train.seconds,
            "valid_seconds": 0.0 if valid is None else valid.seconds,
            "skipped": skipped,
        }
        (tmp / "info.json").write_text(json.dumps(info, indent=2), encoding="utf-8")
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(tmp, folder)
        for stale in folder.parent.glob("data-*"):  # caches of other files, crops or configs
            if stale != folder and stale.is_dir():
                shutil.rmtree(stale, ignore_errors=True)
    finally:
        with contextlib.suppress(OSError):
            if tmp.exists():
                shutil.rmtree(tmp)
