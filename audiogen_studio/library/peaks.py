"""A small peak envelope per take, stored at add time, for mini waveforms in lists (issue 7 §4).

``encode(samples)`` splits a clip ``[C, T]`` into :data:`BUCKETS` equal spans and keeps, for
each, the minimum and maximum over all channels, quantized to int8 (``round(v * 127)``, clipped):
``2 * BUCKETS`` bytes, rows ``[min, max]``. Drawing a result list then needs no audio decode.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

__all__ = ["BUCKETS", "decode", "encode"]

BUCKETS = 200


def encode(samples: npt.ArrayLike, buckets: int = BUCKETS) -> bytes:
    """Min/max envelope of ``samples [C, T]`` (or ``[T]``) as int8 bytes ``[2, buckets]``."""
    x = np.asarray(samples, dtype=np.float32)
    if x.ndim == 1:
        x = x[np.newaxis]
    env = np.zeros((2, buckets), np.float32)
    frames = x.shape[-1]
    if frames:
        edges = np.linspace(0, frames, buckets + 1).astype(np.int64)
        lo = x.min(axis=0)
        hi = x.max(axis=0)
        starts = np.minimum(edges[:-1], frames - 1)
        env[0] = np.minimum.reduceat(lo, starts)
        env[1] = np.maximum.reduceat(hi, starts)  # an empty span repeats its sample
    q = np.clip(np.rint(env * 127.0), -127, 127).astype(np.int8)
    return bytes(q.tobytes())


def decode(blob: bytes | None) -> npt.NDArray[np.float32]:
    """Inverse of :func:`encode`: float32 ``[2, buckets]`` (rows min, max) in ``[-1, 1]``;
    an empty ``[2, 0]`` array for ``None``."""
    if not blob:
        return np.zeros((2, 0), np.float32)
    q = np.frombuffer(blob, dtype=np.int8)
    return (q.reshape(2, -1).astype(np.float32) / 127.0).astype(np.float32)
