"""Content-addressed audio for the take library: one FLAC file per distinct sound (issue 7 §1).

A clip is stored as 24-bit FLAC (lossless for 24-bit PCM). Because FLAC holds integers, the
samples are first quantized exactly as they will decode: ``q = round(clip(x, -1, 1) * 2**23)``
clipped to the int24 range. The address is the SHA-256 of a canonical byte string of that
quantized audio::

    b"AGS-PCM24\\0" + uint32 rate + uint32 channels + uint64 frames + int32-LE q[C, T] (C order)

so identical audio (after quantization) is stored once, whatever its name or take, and a file
can be checked by decoding it and hashing again (:meth:`BlobStore.verify`). Files live at
``<root>/<hash[:2]>/<hash>.flac``. A write goes to a temporary file in the same folder, which is
flushed, ``fsync``-ed and ``os.replace``-d onto its name, then the folder is synced: a reader
never sees a half-written blob under a hash name, and a killed writer leaves at most a stray
``.partial`` file that :meth:`BlobStore.sweep` removes.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import struct
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import soundfile as sf

from audiogen_studio.audio.clip import Clip

__all__ = ["BlobError", "BlobStore", "StoredBlob", "audio_hash", "quantize"]

_SCALE = float(1 << 23)
_MAX = (1 << 23) - 1
_MIN = -(1 << 23)
_HEADER = b"AGS-PCM24\0"
_SUFFIX = ".flac"


class BlobError(RuntimeError):
    """A blob is missing, unreadable, or does not decode to its hash."""


def quantize(samples: npt.ArrayLike) -> npt.NDArray[np.int32]:
    """Float samples ``[C, T]`` → the int24 values (in int32) that 24-bit FLAC stores."""
    x = np.asarray(samples, dtype=np.float32)
    if x.ndim == 1:
        x = x[np.newaxis]
    q = np.rint(np.clip(x, -1.0, 1.0).astype(np.float64) * _SCALE)
    return np.clip(q, _MIN, _MAX).astype(np.int32)


def _digest(q: npt.NDArray[np.int32], rate: int) -> str:
    channels, frames = q.shape
    h = hashlib.sha256(_HEADER)
    h.update(struct.pack("<IIQ", int(rate), int(channels), int(frames)))
    h.update(np.ascontiguousarray(q, dtype="<i4").tobytes())
    return h.hexdigest()


def audio_hash(clip: Clip) -> str:
    """The content address of ``clip``: SHA-256 of its canonical 24-bit bytes (hex)."""
    return _digest(quantize(clip.samples), clip.rate)


@dataclass(frozen=True, slots=True)
class StoredBlob:
    """Result of :meth:`BlobStore.put`: the hash, its file, and whether it was new."""

    hash: str
    path: Path
    created: bool
    bytes: int


class BlobStore:
    """Content-addressed FLAC files under ``root`` (created on first write)."""

    def __init__(self, root: str | Path, *, sync: bool = True) -> None:
        self.root = Path(root)
        self.sync = sync

    def path(self, digest: str) -> Path:
        """Where the blob ``digest`` lives (it may not exist)."""
        if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
            raise BlobError(f"not an audio hash: {digest!r}")
        return self.root / digest[:2] / f"{digest}{_SUFFIX}"

    def exists(self, digest: str) -> bool:
        """Whether the blob ``digest`` is stored."""
        return self.path(digest).is_file()

    def put(self, clip: Clip) -> StoredBlob:
        """Store ``clip`` (once per distinct sound); returns its hash and file.

        The file is complete and synced before this returns, so a database row that names the
        hash can be committed after it.
        """
        q = quantize(clip.samples)
        digest = _digest(q, clip.rate)
        target = self.path(digest)
        if target.is_file():
            # refresh the time: gc spares unreferenced blobs younger than its grace period, so
            # a take about to commit a reference to this old sound keeps it
            with contextlib.suppress(OSError):
                os.utime(target)
                return StoredBlob(digest, target, False, target.stat().st_size)
        folder = target.parent
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{digest[:16]}.", suffix=".partial", dir=folder)
        tmp = Path(tmp_name)
        try:
            with os.fdopen(fd, "wb") as raw:
                with sf.SoundFile(
                    raw,
                    "w",
                    samplerate=int(clip.rate),
                    channels=int(q.shape[0]),
                    format="FLAC",
                    subtype="PCM_24",
                ) as f:
                    f.write(np.ascontiguousarray((q << 8).T))  # int32 → top 24 bits
                raw.flush()
                if self.sync:
                    os.fsync(raw.fileno())
            os.chmod(tmp, _file_mode())
            os.replace(tmp, target)
        except BaseException:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise
        if self.sync:
            _sync_dir(folder)
        return StoredBlob(digest, target, True, target.stat().st_size)

    def read_quantized(self, digest: str) -> tuple[npt.NDArray[np.int32], int]:
        """The stored int24 samples ``[C, T]`` and rate of blob ``digest``."""
        path = self.path(digest)
        try:
            data, rate = sf.read(str(path), dtype="int32", always_2d=True)
        except (sf.LibsndfileError, RuntimeError, OSError) as exc:
            raise BlobError(f"audio blob {digest[:12]} is missing or unreadable: {exc}") from exc
        return np.ascontiguousarray(data.T >> 8), int(rate)

    def get(self, digest: str) -> Clip:
        """Decode blob ``digest`` into a clip ``[C, T]`` float32."""
        q, rate = self.read_quantized(digest)
        return Clip((q.astype(np.float32) / np.float32(_SCALE)), rate)

    def verify(self, digest: str) -> bool:
        """Whether blob ``digest`` exists and decodes to audio with that hash."""
        try:
            q, rate = self.read_quantized(digest)
        except BlobError:
            return False
        return _digest(q, rate) == digest

    def __iter__(self) -> Iterator[str]:
        """Every stored hash."""
        if not self.root.is_dir():
            return
        for folder in sorted(self.root.iterdir()):
            if not folder.is_dir() or len(folder.name) != 2:
                continue
            for file in sorted(folder.glob(f"*{_SUFFIX}")):
                if len(file.stem) == 64:
                    yield file.stem

    def remove(self, digest: str) -> int:
        """Delete blob ``digest``; returns the bytes freed (0 if it was absent)."""
        path = self.path(digest)
        try:
            size = path.stat().st_size
            path.unlink()
        except FileNotFoundError:
            return 0
        return size

    def sweep(self, *, older_than: float = 3600.0) -> int:
        """Remove ``.partial`` files left by killed writers, older than ``older_than`` seconds
        (younger ones may belong to a write in progress); returns how many were removed."""
        if not self.root.is_dir():
            return 0
        now = time.time()
        removed = 0
        for tmp in self.root.glob("*/.*.partial"):
            with contextlib.suppress(OSError):
                if now - tmp.stat().st_mtime >= older_than:
                    tmp.unlink()
                    removed += 1
        return removed


@functools.lru_cache(maxsize=1)
def _file_mode() -> int:
    """0o666 minus the process umask: the mode a plain ``open()`` gives (mkstemp gives 0o600)."""
    umask = os.umask(0o022)
    os.umask(umask)
    return 0o666 & ~umask


def _sync_dir(folder: Path) -> None:
    """fsync a folder so a rename inside it survives a power cut (no-op where unsupported)."""
    if os.name != "posix":
        return
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
