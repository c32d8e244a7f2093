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
gate at -70 LUFS and a relative gate 10 LU below the absolute-gated loudness. The filter runs in
numpy as one 4-state linear system evaluated block-wise with matrix products (exact up to float64
rounding, chunked so that memory stays bounded for hour-long clips).

All arrays are channels first, ``[C, T]`` float32.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal

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


_BLOCK = 32  # samples per block of the block-matrix IIR
_SCAN = 16  # elements per block when scanning the block states


def _matrix_powers(m: Float64Array, count: int) -> Float64Array:
    """``[count, d, d]``: ``m**0, m**1, ..., m**(count - 1)``."""
    out = np.empty((count, *m.shape))
    out[0] = np.eye(m.shape[0])
    for i in range(1, count):
        out[i] = out[i - 1] @ m
    return out


def _linear_recurrence(
    m: Float64Array, u: Float64Array, s0: Float64Array
) -> tuple[Float64Array, Float64Array]:
    """Solve ``s[k + 1] = m @ s[k] + u[k]`` for ``u [B, n, d]`` from ``s[0] = s0 [B, d]``.

    Returns ``(s[0..n-1] [B, n, d], s[n] [B, d])``. Vectorised: groups of ``_SCAN`` elements
    are solved from zero state with one matrix product, the group starts recursively.
    """
    batch, n, d = u.shape
    if n <= 2 * _SCAN:
        states = np.empty_like(u)
        s = s0
        for k in range(n):
            states[:, k] = s
            s = s @ m.T + u[:, k]
        return states, s
    k_ = _SCAN
    groups = -(-n // k_)
    padded = np.zeros((batch, groups * k_, d))
    padded[:, :n] = u
    flat = padded.reshape(batch, groups, k_ * d)  # element j, component b at j * d + b
    powers = _matrix_powers(m, k_ + 1)  # [K + 1, d, d]
    # local[k] = sum_{j<k} m^(k-1-j) u[j]  ->  W[(j, b), (k, a)] = (m^(k-1-j))[a, b]
    lag = np.arange(k_)[None, :] - 1 - np.arange(k_)[:, None]  # [j, k]
    w = np.where((lag >= 0)[:, :, None, None], powers[np.clip(lag, 0, k_)], 0.0)  # [j,k,a,b]
    w = w.transpose(0, 3, 1, 2).reshape(k_ * d, k_ * d)
    e = powers[k_ - 1 - np.arange(k_)].transpose(0, 2, 1).reshape(k_ * d, d)  # -> group end
    f = powers[:k_].transpose(2, 0, 1).reshape(d, k_ * d)  # start state -> each element
    starts, _ = _linear_recurrence(powers[k_], flat @ e, s0)  # [B, groups, d]
    states = (flat @ w + starts @ f).reshape(batch, groups * k_, d)
    end = states[:, n - 1] @ m.T + u[:, n - 1]
    return states[:, :n], end


@dataclass(frozen=True, slots=True)
class _BlockIIR:
    """A linear state-space filter ``s' = A s + B x, y = C s + D x`` run block-wise.

    A block of ``L`` samples is ``y = T x + O s`` and ``s_end = A^L s + R x`` (``T`` the
    lower-triangular Toeplitz matrix of the impulse response); the block start states come
    from :func:`_linear_recurrence`. Everything is a matrix product: exact up to float64
    rounding, and far faster than a per-sample loop.
    """

    a_block: Float64Array  # A^L [d, d]
    toeplitz_t: Float64Array  # T^T [L, L]
    observe_t: Float64Array  # O^T [d, L]: column i is C A^i
    reach: Float64Array  # R [L, d]: row j is (A^(L-1-j) B)

    @classmethod
    def from_state_space(
        cls, a: Float64Array, b: Float64Array, c: Float64Array, d: float
    ) -> _BlockIIR:
        powers = _matrix_powers(a, _BLOCK + 1)
        impulse = np.concatenate([[d], np.einsum("a,nab,b->n", c, powers[: _BLOCK - 1], b)])
        lag = np.arange(_BLOCK)[:, None] - np.arange(_BLOCK)[None, :]
        toeplitz = np.where(lag >= 0, impulse[np.clip(lag, 0, _BLOCK - 1)], 0.0)
        observe = np.einsum("a,nab->nb", c, powers[:_BLOCK])  # [L, d]
        reach = np.einsum("nab,b->na", powers[_BLOCK - 1 - np.arange(_BLOCK)], b)
        return cls(powers[_BLOCK], toeplitz.T.copy(), observe.T.copy(), reach)

    @property
    def order(self) -> int:
        return int(self.a_block.shape[0])

    def run(self, x: Float64Array, state: Float64Array) -> tuple[Float64Array, Float64Array]:
        """Filter ``x [C, n]`` (``n`` a multiple of the block) from ``state [C, d]``.

        Returns ``(y [C, n], state after x [C, d])``.
        """
        channels, n = x.shape
        blocks = x.reshape(channels, n // _BLOCK, _BLOCK)
        starts, end = _linear_recurrence(self.a_block, blocks @ self.reach, state)
        y = blocks @ self.toeplitz_t + starts @ self.observe_t
        return y.reshape(channels, n), end


@lru_cache(maxsize=16)
def _k_weighting_system(rate: int) -> _BlockIIR:
    """Both K-weighting biquads as one 4-state system (transposed direct form II each)."""
    stages = []
    for num, den in k_weighting_coefficients(rate):
        b0, b1, b2 = num
        _, a1, a2 = den
        stages.append(
            (
                np.array([[-a1, 1.0], [-a2, 0.0]]),
                np.array([b1 - a1 * b0, b2 - a2 * b0]),
                np.array([1.0, 0.0]),
                b0,
            )
        )
    (a1_, b1_, c1_, d1_), (a2_, b2_, c2_, d2_) = stages
    # stage 2 is driven by stage 1's output y1 = c1 s1 + d1 x
    a = np.block([[a1_, np.zeros((2, 2))], [np.outer(b2_, c1_), a2_]])
    b = np.concatenate([b1_, b2_ * d1_])
    c = np.concatenate([d2_ * c1_, c2_])
    return _BlockIIR.from_state_space(a, b, c, d2_ * d1_)


def _k_weighted_chunks(
    samples: npt.NDArray[np.floating[Any]], rate: int
) -> Iterator[tuple[int, Float64Array]]:
    """Yield ``(first frame, K-weighted float64 [C, n])`` chunk by chunk, continuing state."""
    system = _k_weighting_system(rate)
    channels, total = samples.shape
    chunk = max(_BLOCK, (_FILTER_CHUNK // _BLOCK) * _BLOCK)
    state = np.zeros((channels, system.order))
    for lo in range(0, total, chunk):
        x = samples[:, lo : lo + chunk].astype(np.float64)
        n = x.shape[1]
        if n % _BLOCK:  # only the last chunk: pad; the state after it is never used
            x = np.pad(x, ((0, 0), (0, _BLOCK - n % _BLOCK)))
        y, state = system.run(x, state)
        yield lo, y[:, :n]


def k_weighting_filter(samples: npt.ArrayLike, rate: int) -> Float64Array:
    """K-weight ``samples [C, T]`` at ``rate`` Hz; returns float64 ``[C, T]`` (for inspection)."""
    x = np.atleast_2d(np.asarray(samples, dtype=np.float64))
    out = np.empty_like(x)
    for lo, y in _k_weighted_chunks(x, rate):
        out[:, lo : lo + y.shape[1]] = y
    return out


def _channel_weights(channels: int) -> Float64Array:
    """BS.1770 channel weights: 1.0, except 5.1 (L R C LFE Ls Rs): LFE 0, surrounds 1.41."""
    if channels == 6:
        return np.array([1.0, 1.0, 1.0, 0.0, 1.41, 1.41])
    return np.ones(channels)


def _segment_energies(clip: Clip) -> Float64Array:
    """Sums of squared K-weighted samples per 100 ms segment: ``[C, n_segments]`` float64.

    Segment ``k`` holds frames ``t`` with ``floor(10 t / rate) == k``, i.e. it starts at frame
    ``ceil(k * rate / 10)``, so four consecutive segments form one 400 ms gating block even when
    ``rate / 10`` is not an integer. Works chunk by chunk: memory stays bounded.
    """
    rate, total = clip.rate, clip.frames
    n_segments = (10 * (total - 1)) // rate + 1 if total else 0
    energies = np.zeros((clip.channels, n_segments))
    for lo, y in _k_weighted_chunks(clip.samples, rate):
        hi = lo + y.shape[1]
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
