"""Pure, sample-exact edit operations on :class:`~audiogen_studio.audio.clip.Clip`.

Every function takes a clip and returns a *new* clip (the input is never modified; its metadata
is carried over to the result). Frame ranges are half-open ``[start, end)`` frame indices with
``0 <= start <= end <= clip.frames``; ``end=None`` means "to the end of the clip". An empty range
(``start == end``) is allowed and changes nothing. Bad ranges raise :class:`ValueError` saying
which bound is wrong; non-integer indices raise :class:`TypeError`. Operations on two clips
(``insert``, ``crossfade_join``, ``mix``) need equal sample rates and equal channel counts, or a
mono second clip, which is broadcast to every channel; anything else raises
:class:`~audiogen_studio.audio.errors.ClipError` (a :class:`ValueError`).

Loudness follows ITU-R BS.1770-4: K-weighting (pre-filter shelf + RLB high-pass, the two
biquads designed for the clip's own sample rate), 400 ms blocks with 75 % overlap, an absolute
gate at -70 LUFS and a relative gate 10 LU below the absolute-gated loudness.

All arrays are channels first, ``[C, T]`` float32.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import lru_cache
from typing import Literal

import numpy as np
import numpy.typing as npt

from audiogen_studio.audio.clip import Clip, FloatArray
from audiogen_studio.audio.errors import ClipError

__all__ = [
    "FadeCurve",
    "crop",
    "crossfade_join",
    "cut",
    "delete",
    "fade_in",
    "fade_out",
    "fade_ramp",
    "gain",
    "insert",
    "integrated_loudness",
    "k_weighting_coefficients",
    "k_weighting_filter",
    "mix",
    "normalize_loudness",
    "normalize_peak",
    "reverse",
    "silence",
]

FadeCurve = Literal["linear", "equal_power"]
Float64Array = npt.NDArray[np.float64]

_BLOCK_SECONDS = 0.4  # BS.1770 gating block
_SEGMENTS_PER_BLOCK = 4  # 75 % overlap: blocks advance by a quarter block (100 ms)
_ABSOLUTE_GATE_LUFS = -70.0
_RELATIVE_GATE_LU = -10.0
_LOUDNESS_OFFSET = -0.691
_FILTER_CHUNK = 1 << 20  # frames per chunk when K-weighting, bounds temporary memory


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------


def _check_range(frames: int, start: int, end: int | None) -> tuple[int, int]:
    """Validate a half-open frame range ``[start, end)`` of a clip with ``frames`` frames.

    ``end=None`` means ``frames``. Returns ``(start, end)`` as Python ints. A single position
    (e.g. an insertion point) is checked as the empty range ``[at, at)``.
    """
    end = frames if end is None else end
    for name, value in (("start", start), ("end", end)):
        if isinstance(value, bool) or not isinstance(value, int | np.integer):
            raise TypeError(f"{name} must be an integer frame index, got {value!r}")
    start, end = int(start), int(end)
    if start < 0:
        raise ValueError(f"start frame {start} is negative")
    if end < start:
        raise ValueError(f"range is reversed: end frame {end} is before start frame {start}")
    if end > frames:
        raise ValueError(f"end frame {end} is beyond the clip's {frames} frames")
    return start, end


def _conform(clip: Clip, other: Clip, what: str) -> FloatArray:
    """``other``'s samples shaped like ``clip``'s channels: ``[clip.channels, other.frames]``.

    Rates must match; a mono ``other`` is broadcast (read-only view, no copy).
    """
    if other.rate != clip.rate:
        raise ClipError(
            f"cannot {what}: sample rates differ ({clip.rate} Hz vs {other.rate} Hz); "
            "resample first"
        )
    if other.channels == clip.channels:
        return other.samples
    if other.channels == 1:
        return np.broadcast_to(other.samples, (clip.channels, other.frames))
    raise ClipError(
        f"cannot {what}: channel counts differ ({clip.channels} vs {other.channels}); "
        "only a mono clip is broadcast"
    )


def _edit_range(
    clip: Clip, start: int, end: int | None, op: Callable[[FloatArray], FloatArray | None]
) -> Clip:
    """Copy ``clip``'s samples, let ``op`` modify the ``[C, end-start]`` range, return a clip.

    ``op`` either modifies its (writable) argument in place and returns ``None``, or returns the
    new values for the range (same shape).
    """
    start, end = _check_range(clip.frames, start, end)
    out = np.array(clip.samples, dtype=np.float32, copy=True)  # [C, T]
    if end > start:
        segment = out[:, start:end]
        result = op(segment)
        if result is not None:
            segment[...] = result
    return clip.replace(samples=out)


def _db_to_factor(db: float) -> float:
    if not math.isfinite(db):
        raise ValueError(f"gain must be a finite number of dB, got {db!r}")
    factor = float(10.0 ** (db / 20.0))
    if not math.isfinite(factor) or factor > float(np.finfo(np.float32).max):
        raise ValueError(f"gain of {db} dB is too large")
    return factor


def fade_ramp(frames: int, curve: FadeCurve = "linear") -> FloatArray:
    """Fade-in gains ``[frames]`` float32 rising from exactly 0 (first) to exactly 1 (last).

    ``linear``: ``t``; ``equal_power``: ``sin(pi/2 * t)``, with ``t = linspace(0, 1, frames)``.
    The matching fade-out is the reversed ramp; for ``equal_power`` the squares of a fade-in and
    the matching fade-out sum to 1, so uncorrelated signals keep constant power across a
    crossfade. A one-frame ramp is ``[0]``.
    """
    if frames < 0:
        raise ValueError(f"fade length must be >= 0 frames, got {frames}")
    t = np.linspace(0.0, 1.0, frames)
    if curve == "linear":
        ramp = t
    elif curve == "equal_power":
        ramp = np.sin(0.5 * np.pi * t)
        if frames > 1:
            ramp[-1] = 1.0  # sin(pi/2) is 1 - 1e-16 in float64; make the end exact
    else:
        raise ValueError(f"unknown fade curve {curve!r}: use 'linear' or 'equal_power'")
    return ramp.astype(np.float32)


def _fade_range(
    clip: Clip, frames: int | None, start: int | None, end: int | None, *, fade_in: bool
) -> tuple[int, int]:
    if frames is None:
        return _check_range(clip.frames, 0 if start is None else start, end)
    if start is not None or end is not None:
        raise ValueError("give either frames or start/end for a fade, not both")
    if isinstance(frames, bool) or not isinstance(frames, int | np.integer):
        raise TypeError(f"fade length must be an integer number of frames, got {frames!r}")
    if not 0 <= frames <= clip.frames:
        raise ValueError(f"fade of {frames} frames does not fit the clip's {clip.frames} frames")
    if fade_in:
        return 0, int(frames)
    return clip.frames - int(frames), clip.frames


# --------------------------------------------------------------------------------------------
# structural edits
# --------------------------------------------------------------------------------------------


def crop(clip: Clip, start: int, end: int | None = None) -> Clip:
    """Keep frames ``[start, end)``; the result has ``end - start`` frames."""
    start, end = _check_range(clip.frames, start, end)
    return clip.replace(samples=clip.samples[:, start:end].copy())


def cut(clip: Clip, start: int, end: int | None = None) -> tuple[Clip, Clip]:
    """Split out frames ``[start, end)``: returns ``(remaining, removed)``.

    ``remaining`` is the clip without the range, ``removed`` is the range itself, so
    ``insert(remaining, start, removed)`` restores the original exactly.
    """
    start, end = _check_range(clip.frames, start, end)
    samples = clip.samples
    remaining = np.concatenate([samples[:, :start], samples[:, end:]], axis=1)
    return clip.replace(samples=remaining), clip.replace(samples=samples[:, start:end].copy())


def delete(clip: Clip, start: int, end: int | None = None) -> Clip:
    """The clip without frames ``[start, end)``."""
    return cut(clip, start, end)[0]


def insert(clip: Clip, at: int, other: Clip) -> Clip:
    """Insert ``other`` before frame ``at`` (``0 <= at <= clip.frames``).

    ``other`` must have ``clip``'s rate and channel count, or be mono (then it is copied to
    every channel). The result has ``clip.frames + other.frames`` frames and ``clip``'s metadata.
    """
    at, _ = _check_range(clip.frames, at, at)
    inserted = _conform(clip, other, "insert")
    samples = clip.samples
    return clip.replace(samples=np.concatenate([samples[:, :at], inserted, samples[:, at:]], 1))


def mix(a: Clip, b: Clip, at: int = 0, *, b_gain_db: float = 0.0) -> Clip:
    """Add ``b`` (times ``b_gain_db``) into ``a`` starting at frame ``at`` of ``a``.

    The result has ``a``'s channels and metadata and ``max(a.frames, at + b.frames)`` frames
    (``a`` is extended with silence where ``b`` runs past its end). No limiting is applied.
    """
    at, _ = _check_range(a.frames, at, at)
    added = _conform(a, b, "mix")
    factor = np.float32(_db_to_factor(b_gain_db))
    total = max(a.frames, at + b.frames)
    out = np.zeros((a.channels, total), dtype=np.float32)
    out[:, : a.frames] = a.samples
    out[:, at : at + b.frames] += added * factor
    return a.replace(samples=out)


def crossfade_join(a: Clip, b: Clip, frames: int, curve: FadeCurve = "equal_power") -> Clip:
    """``a`` followed by ``b``, overlapping the last/first ``n`` frames with a crossfade.

    ``n = min(frames, a.frames, b.frames)`` (longer crossfades are clamped to the shorter
    clip); the result has ``a.frames + b.frames - n`` frames, ``a``'s channels and metadata.
    Over the overlap ``a`` fades out and ``b`` fades in: ``b``'s gains are
    ``fade_ramp(n + 2, curve)[1:-1]`` (the ramp from the last pure-``a`` frame to the first
    pure-``b`` frame, so every overlap frame is a blend, even for ``n = 1``), ``a``'s are the
    same reversed. ``equal_power`` (sin/cos) keeps the
    power of uncorrelated signals constant; ``linear`` keeps correlated (identical) signals at
    constant amplitude. ``frames=0`` is plain concatenation.
    """
    if isinstance(frames, bool) or not isinstance(frames, int | np.integer):
        raise TypeError(f"crossfade length must be an integer number of frames, got {frames!r}")
    if frames < 0:
        raise ValueError(f"crossfade length must be >= 0 frames, got {frames}")
    tail = _conform(a, b, "crossfade-join")
    n = min(int(frames), a.frames, b.frames)
    ramp = fade_ramp(n + 2, curve)[1:-1]  # b's fade-in; a's fade-out is the reverse
    out = np.empty((a.channels, a.frames + b.frames - n), dtype=np.float32)
    split = a.frames - n
    out[:, :split] = a.samples[:, :split]
    out[:, split : a.frames] = a.samples[:, split:] * ramp[::-1] + tail[:, :n] * ramp
    out[:, a.frames :] = tail[:, n:]
    return a.replace(samples=out)


# --------------------------------------------------------------------------------------------
# range edits
# --------------------------------------------------------------------------------------------


def silence(clip: Clip, start: int, end: int | None = None) -> Clip:
    """Set frames ``[start, end)`` to zero; the length is unchanged."""

    def zero(segment: FloatArray) -> None:
        segment[...] = 0.0

    return _edit_range(clip, start, end, zero)


def reverse(clip: Clip, start: int = 0, end: int | None = None) -> Clip:
    """Play frames ``[start, end)`` backwards; frames outside the range are unchanged."""
    return _edit_range(clip, start, end, lambda segment: segment[:, ::-1].copy())


def gain(clip: Clip, db: float, start: int = 0, end: int | None = None) -> Clip:
    """Multiply frames ``[start, end)`` by ``10 ** (db / 20)``. No limiting is applied."""
    factor = np.float32(_db_to_factor(db))

    def scale(segment: FloatArray) -> None:
        segment *= factor

    return _edit_range(clip, start, end, scale)


def normalize_peak(
    clip: Clip, peak_db: float = -1.0, start: int = 0, end: int | None = None
) -> Clip:
    """Scale frames ``[start, end)`` so their largest absolute sample is ``peak_db`` dBFS.

    The peak is measured over the range and all channels (channels keep their balance). A
    silent range (all zeros) is returned unchanged.
    """
    target = _db_to_factor(peak_db)
    start, end = _check_range(clip.frames, start, end)
    peak = float(np.max(np.abs(clip.samples[:, start:end]))) if end > start else 0.0
    if peak == 0.0:
        return clip.replace(samples=clip.samples.copy())
    return gain(clip, 20.0 * math.log10(target / peak), start, end)


def fade_in(
    clip: Clip,
    frames: int | None = None,
    curve: FadeCurve = "linear",
    *,
    start: int | None = None,
    end: int | None = None,
) -> Clip:
    """Fade in over the first ``frames`` frames, or over ``[start, end)``.

    Gains rise from exactly 0 at the range's first frame to exactly 1 at its last frame
    (:func:`fade_ramp`); frames outside the range are unchanged. With neither ``frames`` nor
    ``start``/``end`` the whole clip is faded.
    """
    first, last = _fade_range(clip, frames, start, end, fade_in=True)
    ramp = fade_ramp(last - first, curve)
    return _edit_range(clip, first, last, lambda segment: segment * ramp)


def fade_out(
    clip: Clip,
    frames: int | None = None,
    curve: FadeCurve = "linear",
    *,
    start: int | None = None,
    end: int | None = None,
) -> Clip:
    """Fade out over the last ``frames`` frames, or over ``[start, end)``.

    Gains fall from exactly 1 at the range's first frame to exactly 0 at its last frame;
    frames outside the range are unchanged. With neither ``frames`` nor ``start``/``end`` the
    whole clip is faded.
    """
    first, last = _fade_range(clip, frames, start, end, fade_in=False)
    ramp = fade_ramp(last - first, curve)[::-1]
    return _edit_range(clip, first, last, lambda segment: segment * ramp)


# --------------------------------------------------------------------------------------------
# loudness (ITU-R BS.1770-4)
# --------------------------------------------------------------------------------------------

Biquad = tuple[tuple[float, float, float], tuple[float, float, float]]


@lru_cache(maxsize=16)
def k_weighting_coefficients(rate: int) -> tuple[Biquad, Biquad]:
    """The two K-weighting biquads ``((b, a) shelf, (b, a) high-pass)`` designed for ``rate``.

    The analog prototypes (high-shelf +4 dB at ~1.68 kHz, RLB high-pass at ~38 Hz) are
    transformed with the bilinear transform pre-warped at their corner frequencies, as in
    libebur128; at 48 kHz this reproduces the coefficients tabulated in BS.1770-4.
    """
    f0, gain_db, q = 1681.974450955533, 3.999843853973347, 0.7071752369554196
    k = math.tan(math.pi * f0 / rate)
    vh = 10.0 ** (gain_db / 20.0)
    vb = vh**0.4996667741545416
    a0 = 1.0 + k / q + k * k
    shelf: Biquad = (
        (
            (vh + vb * k / q + k * k) / a0,
            2.0 * (k * k - vh) / a0,
            (vh - vb * k / q + k * k) / a0,
        ),
        (1.0, 2.0 * (k * k - 1.0) / a0, (1.0 - k / q + k * k) / a0),
    )
    f0, q = 38.13547087602444, 0.5003270373238773
    k = math.tan(math.pi * f0 / rate)
    a0 = 1.0 + k / q + k * k
    highpass: Biquad = (
        (1.0, -2.0, 1.0),
        (1.0, 2.0 * (k * k - 1.0) / a0, (1.0 - k / q + k * k) / a0),
    )
    return shelf, highpass


class _Biquad:
    """Streaming biquad (direct form I, float64) over ``[C, n]`` chunks, exact across chunks.

    Each chunk is filtered from zero state by torchaudio's compiled ``lfilter``; the state left
    by the previous chunk (two past inputs and outputs) enters as the zero-input response
    ``e0 * g[n] + e1 * g[n-1]``, with ``g`` the impulse response of ``1 / A(z)``.
    """

    def __init__(self, coefficients: Biquad, channels: int) -> None:
        self.b = np.asarray(coefficients[0], dtype=np.float64)
        self.a = np.asarray(coefficients[1], dtype=np.float64)
        self.x_past = np.zeros((channels, 2))  # [C, (x[-2], x[-1])]
        self.y_past = np.zeros((channels, 2))
        self._g = np.zeros(0)

    def _impulse_response(self, n: int) -> Float64Array:
        if self._g.size < n:
            impulse = np.zeros((1, n))
            impulse[0, 0] = 1.0
            self._g = _lfilter_zero_state((1.0, 0.0, 0.0), self.a, impulse)[0]
        return self._g[:n]

    def process(self, x: Float64Array) -> Float64Array:
        """Filter ``x [C, n]`` (float64), continuing from the previous chunk."""
        n = x.shape[1]
        if n == 0:
            return x.copy()
        y = _lfilter_zero_state(self.b, self.a, x)
        b, a = self.b, self.a
        xm1, xm2 = self.x_past[:, 1], self.x_past[:, 0]
        ym1, ym2 = self.y_past[:, 1], self.y_past[:, 0]
        e0 = b[1] * xm1 + b[2] * xm2 - a[1] * ym1 - a[2] * ym2  # [C]
        e1 = b[2] * xm1 - a[2] * ym1
        if np.any(e0) or np.any(e1):
            g = self._impulse_response(n)
            y += e0[:, None] * g[None, :]
            y[:, 1:] += e1[:, None] * g[None, : n - 1]
        tail = min(n, 2)
        self.x_past = np.concatenate([self.x_past, x[:, -tail:]], axis=1)[:, -2:]
        self.y_past = np.concatenate([self.y_past, y[:, -tail:]], axis=1)[:, -2:]
        return y


def _lfilter_zero_state(b: npt.ArrayLike, a: npt.ArrayLike, x: Float64Array) -> Float64Array:
    """``y = B(z)/A(z) x`` along the last axis from zero state, float64 (no clamping)."""
    import torch  # deferred: importing this module stays light
    from torchaudio.functional import lfilter

    a_t = torch.as_tensor(np.asarray(a, dtype=np.float64))
    b_t = torch.as_tensor(np.asarray(b, dtype=np.float64))
    y = lfilter(torch.from_numpy(np.ascontiguousarray(x)), a_t, b_t, clamp=False)
    result: Float64Array = y.numpy()
    return result


def k_weighting_filter(samples: npt.ArrayLike, rate: int) -> Float64Array:
    """K-weight ``samples [C, T]`` at ``rate`` Hz; returns float64 ``[C, T]`` (for inspection)."""
    x = np.atleast_2d(np.asarray(samples, dtype=np.float64))
    stages = [_Biquad(c, x.shape[0]) for c in k_weighting_coefficients(rate)]
    out = np.empty_like(x)
    for lo in range(0, x.shape[1], _FILTER_CHUNK):
        y = x[:, lo : lo + _FILTER_CHUNK]
        for stage in stages:
            y = stage.process(y)
        out[:, lo : lo + _FILTER_CHUNK] = y
    return out


def _channel_weights(channels: int) -> Float64Array:
    """BS.1770 channel weights: 1.0, except 5.1 (L R C LFE Ls Rs): LFE 0, surrounds 1.41."""
    if channels == 6:
        return np.array([1.0, 1.0, 1.0, 0.0, 1.41, 1.41])
    return np.ones(channels)


def _segment_energies(clip: Clip, chunk: int = _FILTER_CHUNK) -> Float64Array:
    """Sums of squared K-weighted samples per 100 ms segment: ``[C, n_segments]`` float64.

    Segment ``k`` holds frames ``t`` with ``floor(10 t / rate) == k``, i.e. it starts at frame
    ``ceil(k * rate / 10)``, so four consecutive segments form one 400 ms gating block even when
    ``rate / 10`` is not an integer. Works chunk by chunk: memory stays bounded.
    """
    rate, total = clip.rate, clip.frames
    n_segments = (10 * (total - 1)) // rate + 1 if total else 0
    energies = np.zeros((clip.channels, n_segments))
    stages = [_Biquad(c, clip.channels) for c in k_weighting_coefficients(rate)]
    for lo in range(0, total, chunk):
        hi = min(lo + chunk, total)
        y = clip.samples[:, lo:hi].astype(np.float64)
        for stage in stages:
            y = stage.process(y)
        first, last = (10 * lo) // rate, (10 * (hi - 1)) // rate
        ks = np.arange(first + 1, last + 1)
        starts = np.concatenate([[0], (ks * rate + 9) // 10 - lo])  # ceil(k*rate/10) - lo
        energies[:, first : last + 1] += np.add.reduceat(y * y, starts, axis=1)
    return energies


def integrated_loudness(clip: Clip) -> float:
    """Integrated loudness of ``clip`` in LUFS (ITU-R BS.1770-4), ``-inf`` for silence.

    K-weighted mean squares per channel over 400 ms blocks (75 % overlap), weighted per channel
    (1.0 each; for 6 channels the 5.1 weights with LFE excluded), gated at -70 LUFS and then at
    10 LU below the loudness of the blocks that passed the absolute gate. Returns ``-inf`` when
    no block passes the absolute gate.

    Raises:
        ValueError: when the clip is shorter than one 400 ms block.
    """
    block = math.ceil(_BLOCK_SECONDS * clip.rate)
    if clip.frames < block:
        raise ValueError(
            f"integrated loudness needs at least {_BLOCK_SECONDS} s of audio; the clip has "
            f"{clip.duration:.3f} s"
        )
    energies = _segment_energies(clip)  # [C, S]
    # segment k starts at frame ceil(k * rate / 10); block j = segments j..j+3, kept only when
    # it ends inside the clip
    bounds = (np.arange(energies.shape[1] + 1) * clip.rate + 9) // 10
    ends = bounds[_SEGMENTS_PER_BLOCK:]
    n_blocks = int(np.searchsorted(ends, clip.frames, side="right"))
    block_sums = sum(energies[:, k : k + n_blocks] for k in range(_SEGMENTS_PER_BLOCK))  # [C, J]
    lengths = ends[:n_blocks] - bounds[:n_blocks]
    power = _channel_weights(clip.channels) @ (block_sums / lengths)  # [J]
    absolute = 10.0 ** ((_ABSOLUTE_GATE_LUFS - _LOUDNESS_OFFSET) / 10.0)
    gated = power[power > absolute]
    if gated.size == 0:
        return -math.inf
    relative = float(np.mean(gated)) * 10.0 ** (_RELATIVE_GATE_LU / 10.0)
    gated = gated[gated > relative]
    return _LOUDNESS_OFFSET + 10.0 * math.log10(float(np.mean(gated)))


def normalize_loudness(clip: Clip, target_lufs: float = -23.0) -> Clip:
    """Apply one gain so that :func:`integrated_loudness` becomes ``target_lufs``.

    Silence (``-inf`` LUFS) is returned unchanged. No limiter: the result may exceed full scale
    when the target is high for the material's crest factor.
    """
    if not math.isfinite(target_lufs):
        raise ValueError(f"target loudness must be finite, got {target_lufs!r}")
    loudness = integrated_loudness(clip)
    if loudness == -math.inf:
        return clip.replace(samples=clip.samples.copy())
    return gain(clip, target_lufs - loudness)
