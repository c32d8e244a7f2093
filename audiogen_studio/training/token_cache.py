"""Semantic and acoustic tokens of a corpus, extracted once and cached on disk for the LM stages.

Every file of a :class:`~audiogen_studio.training.waveform_dataset.WaveformDataset` split is
tokenised with the bundle's semantic tokenizer (``S`` tokens at ``hop_s`` samples) and codec
(``Q`` codes per frame at ``hop_c = hop_s / ratio`` samples), trimmed to whole semantic tokens
(``S = T // hop_s`` tokens, ``F = S·ratio`` frames) and concatenated file after file:

    <folder>/<split>.semantic.npy   [N_s] int16/int32
    <folder>/<split>.acoustic.npy   [Q, N_s·ratio] int16/int32
    <folder>/<split>.segments.npy   [files, 2] int64 (start, end) in semantic tokens

The folder name is a key of the audio cache and of the weights that make the tokens: the
codec's encoder side (:func:`encoder_digest`: everything but its decoder) and the semantic
tokenizer's file, so re-fitting a codec's codebooks invalidates the tokens, while a resumed LM run
and a codec whose decoder alone trained on reuse them (Borsos et al. 2022 train each stage on
precomputed tokens too).

:meth:`TokenCorpus.export` writes the same arrays with a ``tokens.json`` (the weights key, the
token layout, the validation split's key, hours) to a folder of its own, and
:func:`read_token_export` reads it back: the LM stages then train on another machine (a GPU box)
from a few MB of tokens instead of the audio.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import torch

from audiogen_studio.training.audio_dataset import TrainingError
from audiogen_studio.training.waveform_dataset import WaveformDataset

log = logging.getLogger(__name__)

CACHE_VERSION = 1
EXPORT_FILE = "tokens.json"
EXPORT_FORMAT = 1
#: What ``tokens.json`` must say: what made the tokens, their layout, and what the trainer records.
EXPORT_KEYS = (
    "ratio", "tokenizer_key", "layout", "validation_key", "sample_rate", "train_hours"
)  # fmt: skip
Split = Literal["train", "valid"]
Encoder = Callable[[npt.NDArray[np.float32]], tuple[npt.NDArray[Any], npt.NDArray[Any]]]


@dataclass(frozen=True)
class TokenSplit:
    """Tokens of one split (arrays may be memory-mapped)."""

    semantic: npt.NDArray[np.integer[Any]]
    acoustic: npt.NDArray[np.integer[Any]]
    segments: npt.NDArray[np.int64]

    @property
    def lengths(self) -> npt.NDArray[np.int64]:
        """Semantic tokens per file."""
        return (self.segments[:, 1] - self.segments[:, 0]).astype(np.int64)


def file_digest(path: Path) -> str:
    """SHA-1 of a file's bytes (keys the cache by the exact weights)."""
    h = hashlib.sha1()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


ENCODER_METADATA = ("format", "module", "config")


def encoder_digest(path: Path, *, skip_prefix: str = "decoder.") -> str:
    """SHA-1 of what a codec checkpoint's tokens depend on: its format, module and config
    metadata and every tensor (name, dtype, shape, bytes) not under ``skip_prefix``.

    A codec whose decoder trained on (``train mel-codec`` re-runs, ``models adopt``) keeps this
    digest, so a corpus tokenised with it is not tokenised again; a re-fitted quantizer, another
    precision or another config changes it.
    """
    from safetensors import SafetensorError, safe_open

    h = hashlib.sha1()
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
            for name in ENCODER_METADATA:
                h.update(f"{name}={metadata.get(name)}\n".encode())
            for name in sorted(f.keys()):
                if name.startswith(skip_prefix):
                    continue
                t = f.get_tensor(name).contiguous()
                h.update(f"{name}:{t.dtype}:{tuple(t.shape)}\n".encode())
                h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    except (SafetensorError, OSError) as exc:
        raise TrainingError(f"cannot read codec weights {path}: {exc}") from exc
    return h.hexdigest()


class TokenCorpus:
    """Cached tokens of the train (and valid) split; build with :meth:`build`."""

    def __init__(self, *, train: TokenSplit, valid: TokenSplit | None, ratio: int) -> None:
        self.train = train
        self.valid = valid
        self.ratio = ratio

    def split(self, name: Split) -> TokenSplit:
        """``"train"`` or ``"valid"``."""
        data = self.train if name == "train" else self.valid
        if data is None:
            raise TrainingError(f"no {name} tokens")
        return data

    @classmethod
    def build(
        cls,
        dataset: WaveformDataset,
        encode: Encoder,
        *,
        hop: int,
        ratio: int,
        key: str,
        folder: Path | None,
        progress: Callable[[int, int], None] | None = None,
        write_cache: bool = True,
    ) -> TokenCorpus:
        """Tokenise every file (or reuse the cache under ``folder/tokens-<hash of key>``).

        Args:
            encode: ``samples [T]`` → ``(semantic [S], acoustic [Q, F])`` for one file.
            hop: samples per semantic token; ``ratio``: codec frames per semantic token.
            key: identifies the tokenizers (weights digests); part of the cache key.
        """
        digest = hashlib.sha1(
            json.dumps(
                {
                    "version": CACHE_VERSION,
                    "key": key,
                    "hop": hop,
                    "ratio": ratio,
                    "train": int(dataset.train.samples.shape[0]),
                    "valid": 0 if dataset.valid is None else int(dataset.valid.samples.shape[0]),
                    "files": [str(p) for p in dataset.sources.train + dataset.sources.valid],
                },
                sort_keys=True,
            ).encode()
        ).hexdigest()[:16]
        cache = folder / f"tokens-{digest}" if folder is not None else None
        if cache is not None and (cache / "info.json").is_file():
            train = _load(cache, "train")
            if train is not None:
                return cls(train=train, valid=_load(cache, "valid"), ratio=ratio)
        if not write_cache and cache is not None:
            raise TrainingError(f"{cache}: token cache missing (rank 0 should have written it)")
        splits: dict[str, TokenSplit | None] = {}
        files = [("train", f) for f in dataset.files("train")]
        files += [("valid", f) for f in dataset.files("valid")]
        parts: dict[str, list[tuple[npt.NDArray[Any], npt.NDArray[Any]]]] = {
            "train": [],
            "valid": [],
        }
        for done, (name, samples) in enumerate(files, 1):
            n = samples.shape[0] // hop
            if n >= 2:
                sem, ac = encode(np.array(samples[: n * hop], dtype=np.float32))
                n = min(n, sem.shape[0], ac.shape[1] // ratio)
                parts[name].append((sem[:n], ac[:, : n * ratio]))
            if progress is not None:
                progress(done, len(files))
        for name, items in parts.items():
            splits[name] = _join(items) if items else None
        train = splits["train"]
        if train is None:
            raise TrainingError("no training audio is long enough to tokenise")
        valid = splits["valid"]
        if cache is not None:
            _write(cache, train, valid)
            train = _load(cache, "train") or train
            valid = _load(cache, "valid") if valid is not None else None
        return cls(train=train, valid=valid, ratio=ratio)

    # --- windows --------------------------------------------------------------------------------

    def windows(
        self, name: Split, rng: np.random.Generator, batch: int, length: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``batch`` aligned windows of ``length`` semantic tokens: ``(semantic [B, n],
        acoustic [B, Q, n·ratio])`` with ``n = length`` capped at the longest file."""
        data = self.split(name)
        lengths = data.lengths
        n = int(min(length, lengths.max()))
        ok = np.flatnonzero(lengths >= n)
        weights = (lengths[ok] - n + 1).astype(np.float64)
        files = ok[rng.choice(len(ok), size=batch, p=weights / weights.sum())]
        sem = np.empty((batch, n), dtype=np.int64)
        ac = np.empty((batch, data.acoustic.shape[0], n * self.ratio), dtype=np.int64)
        for row, f in enumerate(files):
            start = int(data.segments[f, 0]) + int(rng.integers(0, lengths[f] - n + 1))
            sem[row] = data.semantic[start : start + n]
            ac[row] = data.acoustic[:, start * self.ratio : (start + n) * self.ratio]
        return torch.from_numpy(sem), torch.from_numpy(ac)

    def export(self, folder: str | Path, meta: dict[str, Any]) -> Path:
        """Write the arrays and ``folder/tokens.json`` (``meta`` plus the format); returns the
        folder. ``meta`` says what made the tokens (see :func:`read_token_export`)."""
        folder = Path(folder).expanduser()
        if folder.exists() and not (folder / EXPORT_FILE).is_file() and any(folder.iterdir()):
            raise TrainingError(f"{folder}: not empty and not a token export; pick a new folder")
        body = {"format": EXPORT_FORMAT, "ratio": self.ratio, **meta}
        manifest = {EXPORT_FILE: json.dumps(body, indent=2) + "\n"}
        _write(folder, self.train, self.valid, prune=False, extra=manifest)
        return folder

    @property
    def train_tokens(self) -> int:
        """Semantic tokens in the train split."""
        return int(self.train.semantic.shape[0])


def is_token_export(path: str | Path) -> bool:
    """Whether ``path`` is a folder written by :meth:`TokenCorpus.export`."""
    return (Path(path).expanduser() / EXPORT_FILE).is_file()


def read_token_export(folder: str | Path) -> tuple[TokenCorpus, dict[str, Any]]:
    """The tokens (memory-mapped) and the ``tokens.json`` of an export.

    Raises:
        TrainingError: no export there, another format, or missing or damaged arrays.
    """
    folder = Path(folder).expanduser()
    try:
        meta = json.loads((folder / EXPORT_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise TrainingError(f"{folder}: cannot read {EXPORT_FILE} ({exc})") from exc
    if not isinstance(meta, dict) or meta.get("format") != EXPORT_FORMAT:
        raise TrainingError(f"{folder}: a token export of another format than {EXPORT_FORMAT}")
    missing = [k for k in EXPORT_KEYS if k not in meta]
    if missing:
        raise TrainingError(f"{folder}: {EXPORT_FILE} lacks {', '.join(missing)}")
    try:
        train = _load(folder, "train")
        valid = _load(folder, "valid")
    except (OSError, ValueError) as exc:
        raise TrainingError(f"{folder}: damaged token arrays ({exc})") from exc
    if train is None:
        raise TrainingError(f"{folder}: the export has no train tokens")
    for name, split in (("train", train), ("valid", valid)):
        if split is not None and (
            split.acoustic.shape[1] != split.semantic.shape[0] * int(meta["ratio"])
            or split.segments.ndim != 2
            or split.segments.shape[0] == 0
            or int(split.segments[-1, 1]) != split.semantic.shape[0]
        ):
            raise TrainingError(f"{folder}: the {name} arrays do not fit each other")
    return TokenCorpus(train=train, valid=valid, ratio=int(meta["ratio"])), meta


def _dtype(limit: int) -> type[np.integer[Any]]:
    return np.int16 if limit < 2**15 else np.int32


def _join(items: list[tuple[npt.NDArray[Any], npt.NDArray[Any]]]) -> TokenSplit:
    sem = np.concatenate([s for s, _ in items])
    ac = np.concatenate([a for _, a in items], axis=1)
    ends = np.cumsum([s.shape[0] for s, _ in items])
    starts = ends - np.asarray([s.shape[0] for s, _ in items])
    limit = int(max(sem.max(initial=0), ac.max(initial=0))) + 1
    return TokenSplit(
        sem.astype(_dtype(limit)),
        ac.astype(_dtype(limit)),
        np.stack([starts, ends], axis=1).astype(np.int64),
    )


def _load(folder: Path, name: str) -> TokenSplit | None:
    if not (folder / f"{name}.semantic.npy").is_file():
        return None
    return TokenSplit(
        np.load(folder / f"{name}.semantic.npy", mmap_mode="r"),
        np.load(folder / f"{name}.acoustic.npy", mmap_mode="r"),
        np.load(folder / f"{name}.segments.npy", allow_pickle=False),
    )


def _write(
    folder: Path,
    train: TokenSplit,
    valid: TokenSplit | None,
    *,
    prune: bool = True,
    extra: dict[str, str] | None = None,
) -> None:
    """Write the splits (and the text files ``extra`` names) into ``folder``, replaced whole in
    one rename, so an interrupted write leaves no half folder; ``prune`` removes the other
    ``tokens-*`` caches beside it."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = folder.parent / f".{folder.name}.{os.getpid()}.partial"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    try:
        for name, split in (("train", train), ("valid", valid)):
            if split is None:
                continue
            np.save(tmp / f"{name}.semantic.npy", split.semantic)
            np.save(tmp / f"{name}.acoustic.npy", split.acoustic)
            np.save(tmp / f"{name}.segments.npy", split.segments)
        (tmp / "info.json").write_text(json.dumps({"version": CACHE_VERSION}), encoding="utf-8")
        for name, text in (extra or {}).items():
            (tmp / name).write_text(text, encoding="utf-8")
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(tmp, folder)
        for stale in folder.parent.glob("tokens-*") if prune else ():
            if stale != folder and stale.is_dir():
                shutil.rmtree(stale, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
