"""`Clip`: float32 samples ``[C, T]`` plus a sample rate and metadata, validated on construction.

A clip is immutable: its sample array is a read-only view, and every edit op
(:mod:`audiogen_studio.audio.edit`) returns a new clip. The project's convention for audio arrays
is channels first, ``[C, T]`` (C channels, T frames), float32 in ``[-1, 1]`` nominally (values
beyond are allowed, non-finite values are not).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import numpy as np
import numpy.typing as npt

from audiogen_studio.audio.errors import ClipError

MIN_RATE = 8_000
MAX_RATE = 192_000
MAX_CHANNELS = 8
_FINITE_CHECK_BLOCK = 1 << 20  # frames per block, bounds the temporary memory of the check

FloatArray = npt.NDArray[np.float32]


def first_non_finite(samples: npt.NDArray[Any]) -> tuple[int, int] | None:
    """Return ``(channel, frame)`` of the first NaN/Inf in ``samples [C, T]``, or ``None``.

    Works block by block so that checking an hour of audio needs little extra memory.
    """
    frames = samples.shape[-1]
    for start in range(0, frames, _FINITE_CHECK_BLOCK):
        block = samples[..., start : start + _FINITE_CHECK_BLOCK]
        ok = np.isfinite(block)
        if not ok.all():
            ch, fr = np.argwhere(~ok)[0]
            return int(ch), int(start + fr)
    return None


@dataclass(frozen=True, eq=False, slots=True)
class Clip:
    """Audio samples ``[C, T]`` float32 at ``rate`` Hz, with free-form ``metadata``.

    Construction validates: 2-D (a 1-D array is taken as mono), 1–8 channels, a sample rate of
    8–192 kHz, finite values. Other float or integer dtypes are converted (integers scaled to
    ``[-1, 1)``). The stored array is read-only; edits produce new clips.

    Raises:
        ClipError: on any violation, with a message that says which.
    """

    samples: FloatArray
    rate: int
    metadata: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        samples = _as_float32(np.asarray(self.samples))
        if samples.ndim == 1:
            samples = samples[np.newaxis, :]
        if samples.ndim != 2:
            raise ClipError(f"samples must be [channels, frames], got shape {samples.shape}")
        channels = samples.shape[0]
        if not 1 <= channels <= MAX_CHANNELS:
            raise ClipError(f"{channels} channels: a clip has 1 to {MAX_CHANNELS}")
        given: object = self.rate
        if isinstance(given, float) and given.is_integer():
            given = int(given)
        if not isinstance(given, int | np.integer) or isinstance(given, bool):
            raise ClipError(f"sample rate must be an integer, got {given!r}")
        rate = int(given)
        if not MIN_RATE <= rate <= MAX_RATE:
            raise ClipError(f"sample rate {rate} Hz is outside {MIN_RATE}–{MAX_RATE} Hz")
        bad = first_non_finite(samples)
        if bad is not None:
            ch, fr = bad
            value = samples[ch, fr]
            raise ClipError(
                f"non-finite sample ({value}) at channel {ch}, frame {fr} ({fr / rate:.3f} s)"
            )
        view = samples.view()
        view.flags.writeable = False
        object.__setattr__(self, "samples", view)
        object.__setattr__(self, "rate", rate)
        object.__setattr__(self, "metadata", MappingProxyType(dict(self.metadata)))

    @classmethod
    def silence(cls, seconds: float, rate: int, channels: int = 1) -> Clip:
        """A clip of ``round(seconds * rate)`` zero frames."""
        frames = max(0, round(seconds * rate))
        return cls(np.zeros((channels, frames), dtype=np.float32), rate)

    @property
    def channels(self) -> int:
        """Number of channels C."""
        return int(self.samples.shape[0])

    @property
    def frames(self) -> int:
        """Number of frames T (samples per channel)."""
        return int(self.samples.shape[1])

    @property
    def duration(self) -> float:
        """Length in seconds."""
        return self.frames / self.rate

    @property
    def peak(self) -> float:
        """Largest absolute sample value (0.0 for an empty clip)."""
        return float(np.max(np.abs(self.samples))) if self.frames else 0.0

    def is_silent(self, threshold: float = 1e-4) -> bool:
        """True when no sample exceeds ``threshold`` in absolute value."""
        return self.peak <= threshold

    def replace(
        self,
        samples: npt.ArrayLike | None = None,
        rate: int | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> Clip:
        """A new clip with the given fields replaced (validated again)."""
        return Clip(
            np.asarray(self.samples if samples is None else samples),
            self.rate if rate is None else rate,
            self.metadata if metadata is None else metadata,
        )

    def seconds_to_frames(self, seconds: float) -> int:
        """The frame index nearest to ``seconds``, clamped to ``[0, frames]``."""
        return min(max(0, round(seconds * self.rate)), self.frames)

    def equals(self, other: Clip) -> bool:
        """Sample-exact equality of rate and samples (metadata ignored)."""
        return (
            self.rate == other.rate
            and self.samples.shape == other.samples.shape
            and bool(np.array_equal(self.samples, other.samples))
        )

    def __repr__(self) -> str:
        return (
            f"Clip(channels={self.channels}, frames={self.frames}, rate={self.rate}, "
            f"duration={self.duration:.3f}s)"
        )


def _as_float32(samples: npt.NDArray[Any]) -> FloatArray:
    """Convert any numeric array to float32; integers are scaled by their full range."""
    if samples.dtype == np.float32:
        return samples
    if np.issubdtype(samples.dtype, np.integer):
        info = np.iinfo(samples.dtype)
        if info.min == 0:  # unsigned: centre first (8-bit WAV is unsigned)
            mid = (int(info.max) + 1) // 2
            return ((samples.astype(np.float64) - mid) / mid).astype(np.float32)
        return (samples.astype(np.float64) / (int(info.max) + 1)).astype(np.float32)
    if np.issubdtype(samples.dtype, np.floating):
        return samples.astype(np.float32)
    if samples.dtype == np.bool_:
        raise ClipError("samples must be numeric, got booleans")
    raise ClipError(f"samples must be numeric, got dtype {samples.dtype}")
