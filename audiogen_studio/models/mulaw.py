"""μ-law companding and quantization (WaveNet §2.2, ITU-T G.711 with μ = 2**bits - 1).

``mulaw_encode`` maps float samples in [-1, 1] to integer classes in ``[0, 2**bits)``::

    y = sign(x) * ln(1 + μ|x|) / ln(1 + μ)          # compand, y in [-1, 1]
    class = round((y + 1) / 2 * μ)                   # quantize to μ + 1 = 2**bits levels

``mulaw_decode`` inverts it: ``y = 2 * class / μ - 1``, ``x = sign(y) * ((1 + μ)**|y| - 1) / μ``.
So ``mulaw_encode(mulaw_decode(c)) == c`` for every class, and ``mulaw_decode(mulaw_encode(x))``
differs from ``x`` by at most half a quantization step in the companded domain.

Both functions accept numpy arrays or torch tensors (any shape) and return the same kind.
Silence (0.0) maps to class ``2**(bits-1)`` (128 for 8 bits) — :func:`silence_class`.
"""

from __future__ import annotations

import math
from typing import overload

import numpy as np
import numpy.typing as npt
import torch


def _mu(bits: int) -> int:
    if not 2 <= int(bits) <= 16:
        raise ValueError(f"mu-law bits must be within 2..16, got {bits}")
    return (1 << int(bits)) - 1


def silence_class(bits: int = 8) -> int:
    """The class of the sample value 0.0 (``2**(bits-1)``)."""
    mu = _mu(bits)
    return math.floor(mu / 2 + 0.5)


@overload
def mulaw_encode(x: torch.Tensor, bits: int = 8) -> torch.Tensor: ...
@overload
def mulaw_encode(x: npt.ArrayLike, bits: int = 8) -> npt.NDArray[np.int64]: ...
def mulaw_encode(
    x: torch.Tensor | npt.ArrayLike, bits: int = 8
) -> torch.Tensor | npt.NDArray[np.int64]:
    """Float samples (any shape; clipped to [-1, 1]) → int64 classes in ``[0, 2**bits)``.

    Torch input gives a ``torch.int64`` tensor on the same device; anything else an
    ``np.int64`` array.
    """
    mu = _mu(bits)
    if isinstance(x, torch.Tensor):
        xf = x.to(torch.float64).clamp(-1.0, 1.0)  # float64 as numpy: identical classes
        y = torch.sign(xf) * torch.log1p(mu * xf.abs()) / math.log1p(mu)
        return torch.floor((y + 1.0) * (mu / 2.0) + 0.5).clamp(0, mu).to(torch.int64)
    xa = np.clip(np.asarray(x, dtype=np.float64), -1.0, 1.0)
    ya = np.sign(xa) * np.log1p(mu * np.abs(xa)) / math.log1p(mu)
    out: npt.NDArray[np.int64] = np.clip(np.floor((ya + 1.0) * (mu / 2.0) + 0.5), 0, mu).astype(
        np.int64
    )
    return out


@overload
def mulaw_decode(classes: torch.Tensor, bits: int = 8) -> torch.Tensor: ...
@overload
def mulaw_decode(classes: npt.ArrayLike, bits: int = 8) -> npt.NDArray[np.float32]: ...
def mulaw_decode(
    classes: torch.Tensor | npt.ArrayLike, bits: int = 8
) -> torch.Tensor | npt.NDArray[np.float32]:
    """Integer classes in ``[0, 2**bits)`` (any shape) → float32 samples in [-1, 1].

    Torch input gives a float32 tensor on the same device; anything else a float32 array.
    Classes outside the range are clipped.
    """
    mu = _mu(bits)
    if isinstance(classes, torch.Tensor):
        c = classes.to(torch.float64).clamp(0, mu)
        y = 2.0 * c / mu - 1.0
        x = torch.sign(y) * torch.expm1(y.abs() * math.log1p(mu)) / mu
        return x.to(torch.float32)
    ca = np.clip(np.asarray(classes, dtype=np.float64), 0, mu)
    ya = 2.0 * ca / mu - 1.0
    xa = np.sign(ya) * np.expm1(np.abs(ya) * math.log1p(mu)) / mu
    return xa.astype(np.float32)
