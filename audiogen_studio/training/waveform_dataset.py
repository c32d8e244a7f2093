"""Float waveforms for codec, semantic-encoder and token-LM training: load once, cache, crop.

The same data sources as the WaveNet trainer (:func:`~audiogen_studio.training.audio_dataset.
find_audio_sources`: a corpus folder, a ``*.jsonl`` manifest, a folder or one audio file). Every
file is loaded mono at ``sample_rate`` and stored as float32, file after file, in one array per
split (``[N]``) with a ``[files, 2]`` table of ``(start, end)`` segments; with a cache folder the
arrays are written as ``.npy`` (keyed by the file list, sizes, times and the rate) and read back
memory-mapped, so a resumed run does not decode the audio again. Without a ``valid`` split the
last ``valid_fraction`` of each long enough file is held out.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import torch

from audiogen_studio.audio import io as audio_io
from audiogen_studio.audio.errors import AudioError
from audiogen_studio.training.audio_dataset import (
    AudioSources,
    TrainingError,
    _file_facts,
    find_audio_sources,
)

log = logging.getLogger(__name__)

CACHE_VERSION = 1
Split = Literal["train", "valid"]


@dataclass(frozen=True)
class WaveSplit:
    """One split: ``samples [N]`` float32 (maybe memory-mapped) and ``segments [files, 2]``."""

    samples: npt.NDArray[np.float32]
    segments: npt.NDArray[np.int64]


class WaveformDataset:
    """Mono float32 audio of the train (and valid) split at one rate; build with :meth:`prepare`."""

    def __init__(
        self,
        *,
        sample_rate: int,
        train: WaveSplit,
        valid: WaveSplit | None,
        sources: AudioSources,
        skipped: tuple[str, ...] = (),
    ) -> None:
        self.sample_rate = sample_rate
        self.train = train
        self.valid = valid
        self.sources = sources
        self.skipped = skipped

    @classmethod
    def prepare(
        cls,
        data: str | Path,
        *,
        sample_rate: int,
        cache_dir: str | Path | None = None,
        valid_fraction: float = 0.1,
        progress: Callable[[int, int], None] | None = None,
        write_cache: bool = True,
    ) -> WaveformDataset:
        """Find and load (or reuse the cache of) the audio of ``data``.

        Raises:
            TrainingError: no usable audio, or (``write_cache=False``) a missing cache.
        """
        sources = find_audio_sources(data)
        blob = json.dumps(
            {
                "version": CACHE_VERSION,
                "train": _file_facts(sources.train),
                "valid": _file_facts(sources.valid),
                "rate": sample_rate,
                "valid_fraction": valid_fraction,
            },
            sort_keys=True,
        )
        key = hashlib.sha1(blob.encode()).hexdigest()[:16]
        folder = Path(cache_dir) / f"wave{sample_rate}-{key}" if cache_dir is not None else None
        if folder is not None and (folder / "info.json").is_file():
            info = json.loads((folder / "info.json").read_text(encoding="utf-8"))
            train = _load_split(folder, "train")
            if train is not None:
                return cls(
                    sample_rate=sample_rate,
                    train=train,
                    valid=_load_split(folder, "valid"),
                    sources=sources,
                    skipped=tuple(info.get("skipped", ())),
                )
        if not write_cache and folder is not None:
            raise TrainingError(f"{folder}: audio cache missing (rank 0 should have written it)")
        parts: dict[str, list[npt.NDArray[np.float32]]] = {"train": [], "valid": []}
        skipped: list[str] = []
        files = [(p, "train") for p in sources.train] + [(p, "valid") for p in sources.valid]
        hold_out = not sources.valid and valid_fraction > 0
        for done, (path, split) in enumerate(files, 1):
            try:
                clip = audio_io.load(path, rate=sample_rate, mono=True)
            except AudioError as exc:
                log.warning("skipping %s", exc)
                skipped.append(str(exc))
                continue
            samples = np.asarray(clip.samples[0], dtype=np.float32)
            if samples.size == 0:
                continue
            tail = round(samples.shape[0] * valid_fraction)
            if split == "train" and hold_out and tail >= sample_rate // 10:
                parts["train"].append(samples[:-tail])
                parts["valid"].append(samples[-tail:])
            else:
                parts[split].append(samples)
            if progress is not None:
                progress(done, len(files))
        if not parts["train"]:
            first = f": {skipped[0]}" if skipped else ""
            raise TrainingError(f"{sources.origin}: no training audio could be loaded{first}")
        train = _join(parts["train"])
        valid = _join(parts["valid"]) if parts["valid"] else None
        if folder is not None:
            _write_cache(folder, train, valid, skipped)
            train = _load_split(folder, "train") or train
            if valid is not None:
                valid = _load_split(folder, "valid") or valid
        return cls(
            sample_rate=sample_rate,
            train=train,
            valid=valid,
            sources=sources,
            skipped=tuple(skipped),
        )

    def split(self, name: Split) -> WaveSplit:
        """``"train"`` or ``"valid"`` (a :class:`TrainingError` when there is no such audio)."""
        data = self.train if name == "train" else self.valid
        if data is None:
            raise TrainingError(f"no {name} audio")
        return data

    def sample(
        self, name: Split, rng: np.random.Generator, batch: int, length: int
    ) -> torch.Tensor:
        """``batch`` random crops ``[B, length]`` float32; files are picked in proportion to their
        length, and a file shorter than ``length`` is zero-padded at the end."""
        data = self.split(name)
        seg = data.segments
        lengths = (seg[:, 1] - seg[:, 0]).astype(np.float64)
        files = rng.choice(len(seg), size=batch, p=lengths / lengths.sum())
        out = np.zeros((batch, length), dtype=np.float32)
        for row, f in enumerate(files):
            start, end = int(seg[f, 0]), int(seg[f, 1])
            room = end - start - length
            offset = start + (int(rng.integers(0, room + 1)) if room > 0 else 0)
            piece = data.samples[offset : min(offset + length, end)]
            out[row, : piece.shape[0]] = piece
        return torch.from_numpy(out)

    def files(self, name: Split) -> Iterator[npt.NDArray[np.float32]]:
        """Each file's samples ``[n]`` (float32 views) of the split, in order."""
        data = self.valid if name == "valid" else self.train
        if data is None:
            return
        for start, end in data.segments:
            yield data.samples[int(start) : int(end)]

    @property
    def train_hours(self) -> float:
        """Hours of training audio."""
        return float(self.train.samples.shape[0]) / self.sample_rate / 3600.0

    @property
    def valid_hours(self) -> float:
        """Hours of validation audio (0 without a valid split)."""
        if self.valid is None:
            return 0.0
        return float(self.valid.samples.shape[0]) / self.sample_rate / 3600.0


def _join(parts: list[npt.NDArray[np.float32]]) -> WaveSplit:
    ends = np.cumsum([p.shape[0] for p in parts])
    segments = np.stack([ends - [p.shape[0] for p in parts], ends], axis=1).astype(np.int64)
    return WaveSplit(np.concatenate(parts).astype(np.float32, copy=False), segments)


def _load_split(folder: Path, name: str) -> WaveSplit | None:
    path = folder / f"{name}.wave.npy"
    if not path.is_file():
        return None
    return WaveSplit(
        np.load(path, mmap_mode="r"),
        np.load(folder / f"{name}.segments.npy", allow_pickle=False),
    )


def _write_cache(
    folder: Path, train: WaveSplit, valid: WaveSplit | None, skipped: list[str]
) -> None:
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = folder.parent / f".{folder.name}.{os.getpid()}.partial"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    try:
        for name, split in (("train", train), ("valid", valid)):
            if split is not None:
                np.save(tmp / f"{name}.wave.npy", split.samples)
                np.save(tmp / f"{name}.segments.npy", split.segments)
        info: dict[str, Any] = {"skipped": skipped}
        (tmp / "info.json").write_text(json.dumps(info, indent=2), encoding="utf-8")
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(tmp, folder)
        prefix = folder.name.split("-")[0]  # caches of other data at this rate
        for stale in folder.parent.glob(f"{prefix}-*"):
            if stale != folder and stale.is_dir():
                shutil.rmtree(stale, ignore_errors=True)
    finally:
        with contextlib.suppress(OSError):
            if tmp.exists():
                shutil.rmtree(tmp)
