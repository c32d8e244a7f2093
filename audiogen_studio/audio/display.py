"""Display DSP for long recordings: multi-resolution peak envelopes and spectrogram tiles.

* :class:`PeakPyramid` keeps min/max envelopes of ``[C, T]`` samples at block sizes
  ``base_block * factor**k`` so that drawing any range at any zoom reads at most a few thousand
  values per channel; it grows incrementally while a take is being recorded or generated.
* :func:`spectrogram_db` computes a dB spectrogram on a linear, log or mel frequency axis;
  :class:`SpectrogramTiler` computes fixed-size tiles of it on demand (LRU-cached), so any
  visible range of an hour-long file can be drawn without computing the whole file. Tiles are
  seamless: frames are centred on ``frame * hop`` with zero padding only outside the signal,
  and dB values are floored at an absolute level, never relative to a tile's maximum.

Mel scale: HTK (``2595 * log10(1 + f / 700)``) with unnormalised triangular filters (peak 1),
the same as ``torchaudio.functional.melscale_fbanks(..., norm=None, mel_scale="htk")``.

All sample arrays are channels first ``[C, T]`` (a 1-D array is one channel), float32 or int16:
int16 samples are 16-bit PCM, read as ``v / 32768`` (exactly what a loaded clip of the same file
holds), so that a file mapped without decoding (:func:`audiogen_studio.audio.io.map_pcm16`) draws
the same envelopes and spectrograms as its float32 clip while that is still being converted.
"""

from __future__ import annotations

import logging
import math
import threading
from collections import OrderedDict
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal, TypeVar

import numpy as np
import numpy.typing as npt

from audiogen_studio.audio.clip import FloatArray

__all__ = [
    "PCM16_SCALE",
    "FrequencyScale",
    "PeakLevel",
    "PeakPyramid",
    "SampleArray",
    "SpectrogramTile",
    "SpectrogramTiler",
    "WindowName",
    "as_float",
    "hz_to_mel",
    "mean_channels",
    "mel_filterbank",
    "mel_to_hz",
    "spectrogram_db",
]

logger = logging.getLogger(__name__)

FrequencyScale = Literal["linear", "log", "mel"]
WindowName = Literal["hann", "hamming", "blackman", "rectangular"]
Float64Array = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
_ArrayT = TypeVar("_ArrayT", bound=npt.NDArray[Any])

_PYRAMID_CHUNK = 1 << 20  # frames per chunk when building level 0


#: What the display DSP reads: float32, or int16 16-bit PCM (``v / 32768``), ``[C, T]``.
SampleArray = npt.NDArray[np.float32] | npt.NDArray[np.int16]
PCM16_SCALE = np.float32(1.0 / 32768.0)


def _as_channels(samples: npt.ArrayLike) -> SampleArray:
    """``samples`` as a ``[C, T]`` float32 or int16 array (no copy when already one of them,
    2-D); other dtypes are converted to float32."""
    array = np.asarray(samples)
    if array.ndim == 1:
        array = array[np.newaxis, :]
    if array.ndim != 2:
        raise ValueError(f"samples must be [channels, frames] or [frames], got {array.shape}")
    if array.dtype not in (np.float32, np.int16):
        array = array.astype(np.float32)
    return array


def as_float(samples: npt.NDArray[Any]) -> FloatArray:
    """float32 samples of a float32 or int16 (16-bit PCM, ``v / 32768``) array; a float32
    array is returned as is, int16 ones are converted (exactly)."""
    if samples.dtype == np.int16:
        scaled: FloatArray = np.multiply(samples, PCM16_SCALE, dtype=np.float32)
        return scaled
    return np.asarray(samples, dtype=np.float32)


def mean_channels(x: FloatArray) -> FloatArray:
    """The mean over channels of float32 ``x [C, ...]``: ``[...]`` (``x[0]`` itself for mono).

    Adds whole channel rows, then divides by C in float32: numpy's ``mean(axis=0)`` walks the
    short channel axis innermost and is ~50x slower on long rows (57 ms for 2 x 1.35 M).
    """
    if x.shape[0] == 1:
        mono: FloatArray = x[0]
        return mono
    out: FloatArray = np.add(x[0], x[1], dtype=np.float32)
    for c in range(2, x.shape[0]):
        out += x[c]
    out /= np.float32(x.shape[0])
    return out


def _check_int(name: str, value: int, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


# ============================================================================================
# peak envelopes
# ============================================================================================


@dataclass(frozen=True, slots=True)
class PeakLevel:
    """One pyramid level: per block of ``block`` frames, the min and max of each channel.

    ``mins``/``maxs`` are float32 ``[C, n_blocks]``; block ``i`` covers frames
    ``[i * block, min((i + 1) * block, frames))`` (the last block may be partial).
    """

    block: int
    mins: FloatArray
    maxs: FloatArray

    @property
    def n_blocks(self) -> int:
        """Number of blocks."""
        return int(self.mins.shape[1])


class _GrowableLevel:
    """Min/max arrays ``[C, capacity]`` of which the first ``n`` blocks are valid."""

    def __init__(self, channels: int, block: int) -> None:
        self.block = block
        self.n = 0
        self.mins = np.empty((channels, 0), dtype=np.float32)
        self.maxs = np.empty((channels, 0), dtype=np.float32)

    def resize(self, n: int) -> None:
        """Make room for ``n`` blocks (amortised doubling), keeping the valid prefix."""
        if n > self.mins.shape[1]:
            capacity = max(n, 2 * self.mins.shape[1])
            for name in ("mins", "maxs"):
                old = getattr(self, name)
                new = np.empty((old.shape[0], capacity), dtype=np.float32)
                new[:, : self.n] = old[:, : self.n]
                setattr(self, name, new)
        self.n = n

    def view(self) -> PeakLevel:
        mins, maxs = self.mins[:, : self.n], self.maxs[:, : self.n]
        mins.flags.writeable = False
        maxs.flags.writeable = False
        return PeakLevel(self.block, mins, maxs)


class PeakPyramid:
    """Multi-resolution min/max envelopes of samples ``[C, T]`` for drawing waveforms.

    Level 0 has blocks of ``base_block`` frames; level ``k + 1`` combines ``factor`` blocks of
    level ``k``; levels are added while the finest-so-far level still has ``>= min_blocks``
    blocks, so the coarsest level has fewer than ``min_blocks`` blocks. Building is vectorised
    (reshape + min/max per chunk of 2**20 frames); memory is about ``2 * 4 * C * T / base_block
    * factor / (factor - 1)`` bytes: a 60-minute 48 kHz stereo file (1.4 GB of samples) needs
    ~15 MB at the defaults (``base_block=64``: ~58 MB). Below ``base_block`` frames per column
    queries read the raw samples, at most ``base_block * columns`` frames per channel (~2 MB
    for 2000 columns). The default block of 256 frames is where building stops being dominated
    by numpy's per-row overhead of the short min/max reductions: an hour of 48 kHz stereo takes
    ~0.3 s of CPU at 256, ~0.75 s at 64.

    The pyramid keeps a reference to the samples (no copy) to answer zoomed-in queries from the
    raw samples. int16 samples (16-bit PCM) give the envelopes of ``v / 32768`` in float32,
    identical to those of the float32 clip of the same file. :meth:`append` adds frames at the
    end (the pyramid then keeps its own growable copy); :meth:`update` follows an external
    buffer that grew or changed from a frame on (e.g. the float32 clip that replaces the int16
    samples it was built from: ``update(clip.samples, clip.frames)`` recomputes nothing).
    Either way the result equals a pyramid built from scratch on the same samples. Not
    thread-safe: build it on one thread, then grow and query it from one thread at a time.

    Args:
        samples: ``[C, T]`` (or ``[T]``) samples; float32 and int16 arrays are referenced, not
            copied.
        base_block: frames per level-0 block (>= 1).
        factor: blocks of one level per block of the next (>= 2).
        min_blocks: stop adding levels once a level has fewer blocks than this (>= 1).
    """

    def __init__(
        self,
        samples: npt.ArrayLike,
        *,
        base_block: int = 256,
        factor: int = 4,
        min_blocks: int = 1000,
    ) -> None:
        self._base = _check_int("base_block", base_block, 1)
        self._factor = _check_int("factor", factor, 2)
        self._min_blocks = _check_int("min_blocks", min_blocks, 1)
        self._samples = _as_channels(samples)
        self._owned: SampleArray | None = None  # growable buffer once append() is used
        self._levels: list[_GrowableLevel] = []
        self._rebuild_from(0)

    # ---------------------------------------------------------------- properties
    @property
    def channels(self) -> int:
        """Number of channels C."""
        return int(self._samples.shape[0])

    @property
    def frames(self) -> int:
        """Number of frames T covered."""
        return int(self._samples.shape[1])

    @property
    def samples(self) -> SampleArray:
        """The samples ``[C, T]`` the pyramid describes (read-only view; float32 or int16)."""
        view = self._samples.view()
        view.flags.writeable = False
        return view

    @property
    def levels(self) -> tuple[PeakLevel, ...]:
        """Levels from finest (``base_block``) to coarsest, as read-only views."""
        return tuple(level.view() for level in self._levels)

    @property
    def nbytes(self) -> int:
        """Bytes held by the envelopes (valid blocks only; excludes the samples)."""
        return sum(2 * 4 * self.channels * level.n for level in self._levels)

    # ---------------------------------------------------------------- growth
    def append(self, samples: npt.ArrayLike) -> None:
        """Append frames ``[C, n]`` (or ``[n]`` for mono) at the end and extend the envelopes.

        The first call copies the existing samples into a growable buffer (amortised doubling),
        so recording an hour in small chunks costs linear time overall.
        """
        new = _as_channels(samples)
        if new.shape[0] != self.channels:
            raise ValueError(f"appending {new.shape[0]} channels to a {self.channels}-channel take")
        old_frames, total = self.frames, self.frames + new.shape[1]
        if new.dtype != self._samples.dtype:  # mixing int16 and float32: keep float32
            new = as_float(new)
            if self._samples.dtype != np.float32:
                self._samples, self._owned = as_float(self._samples), None
        if self._owned is None or self._owned.shape[1] < total:
            capacity = max(total, 2 * old_frames, 1 << 16)
            buffer = np.empty((self.channels, capacity), dtype=self._samples.dtype)
            buffer[:, :old_frames] = self._samples
            self._owned = buffer
        self._owned[:, old_frames:total] = new
        self._samples = self._owned[:, :total]
        self._rebuild_from(old_frames)

    def update(self, samples: npt.ArrayLike, start: int) -> None:
        """Follow ``samples [C, T']``, identical to the previous samples before frame ``start``.

        Use it when an external buffer grew (``start`` = the old length) or its tail was
        rewritten from ``start`` on; ``T'`` may also be smaller than before. Only blocks from
        ``start`` on are recomputed. ``samples`` is referenced, not copied.
        """
        array = _as_channels(samples)
        if array.shape[0] != self.channels:
            raise ValueError(f"update has {array.shape[0]} channels, the pyramid {self.channels}")
        start = _check_int("start", start, 0)
        if start > array.shape[1]:
            raise ValueError(f"start frame {start} is beyond the {array.shape[1]} frames given")
        self._samples = array
        self._owned = None
        self._rebuild_from(min(start, array.shape[1]))

    def _rebuild_from(self, frame: int) -> None:
        """Recompute every block that contains frames at or after ``frame``."""
        x, channels, total = self._samples, self.channels, self.frames
        base = self._base
        if not self._levels:
            self._levels.append(_GrowableLevel(channels, base))
        level0 = self._levels[0]
        first = min(frame // base, level0.n)
        level0.resize(-(-total // base))
        chunk = max(base, (_PYRAMID_CHUNK // base) * base)
        for lo in range(first * base, total, chunk):
            hi = min(lo + chunk, total)
            full = (hi - lo) // base
            block0 = lo // base
            if full:  # int16: min/max of the integers, then scaled (exact, and monotonic)
                blocks = x[:, lo : lo + full * base].reshape(channels, full, base)
                level0.mins[:, block0 : block0 + full] = as_float(blocks.min(axis=2))
                level0.maxs[:, block0 : block0 + full] = as_float(blocks.max(axis=2))
            if lo + full * base < hi:  # partial last block
                rest = x[:, lo + full * base : hi]
                level0.mins[:, block0 + full] = as_float(rest.min(axis=1))
                level0.maxs[:, block0 + full] = as_float(rest.max(axis=1))
        k = 0
        while self._levels[k].n >= self._min_blocks:
            finer = self._levels[k]
            if k + 1 == len(self._levels):
                self._levels.append(_GrowableLevel(channels, finer.block * self._factor))
                coarse_first = 0
            else:
                coarse_first = min(first // self._factor, self._levels[k + 1].n)
            coarser = self._levels[k + 1]
            coarser.resize(-(-finer.n // self._factor))
            if coarse_first < coarser.n:
                idx = np.arange(coarse_first * self._factor, finer.n, self._factor)
                lo_block = int(idx[0])
                idx -= lo_block
                sl = slice(lo_block, finer.n)
                out = slice(coarse_first, coarser.n)
                coarser.mins[:, out] = np.minimum.reduceat(finer.mins[:, sl], idx, axis=1)
                coarser.maxs[:, out] = np.maximum.reduceat(finer.maxs[:, sl], idx, axis=1)
            first = coarse_first
            k += 1
        del self._levels[k + 1 :]

    # ---------------------------------------------------------------- queries
    def block_for(self, start: int, end: int, columns: int) -> int:
        """Block size used by :meth:`envelope` for this query (1 = raw samples).

        The coarsest level whose block is at most ``(end - start) // columns`` frames, i.e.
        which has at least ``columns`` blocks in the range; raw samples when even
        ``base_block`` is coarser than that.
        """
        start, end, columns = self._check_query(start, end, columns)
        per_column = (end - start) // columns
        chosen = 1
        for level in self._levels:
            if level.block <= per_column:
                chosen = level.block
        return chosen

    def column_edges(self, start: int, end: int, columns: int) -> IntArray:
        """First frame of each column ``[columns]``: ``start + floor(j * (end - start) / columns)``.

        Column ``j`` covers frames ``[edge[j], max(edge[j + 1], edge[j] + 1))`` with
        ``edge[columns] = end``: when zoomed in past one frame per column, a column shows the
        single frame at its left edge.
        """
        start, end, columns = self._check_query(start, end, columns)
        return start + (np.arange(columns, dtype=np.int64) * (end - start)) // columns

    def envelope(self, start: int, end: int, columns: int) -> tuple[FloatArray, FloatArray]:
        """Min and max per pixel column of frames ``[start, end)``: two float32 ``[C, columns]``.

        Guarantee (exact): with ``B = block_for(start, end, columns)`` and column ``j``
        covering frames ``[e0, e1)`` (see :meth:`column_edges`), ``mins[:, j]``/``maxs[:, j]``
        are the true min/max of the samples in ``[floor(e0 / B) * B, min(ceil(e1 / B) * B, T))``
        -- the column's frames widened outward to whole blocks of the chosen level. So every
        sample lies within its column's ``[min, max]``; with ``B == 1`` (zoomed in) the values
        are exactly the column's min/max, otherwise they may include up to ``B - 1 <= (end -
        start) // columns`` frames of each neighbouring column.
        """
        start, end, columns = self._check_query(start, end, columns)
        block = self.block_for(start, end, columns)
        edges = start + (np.arange(columns, dtype=np.int64) * (end - start)) // columns
        if block == 1:
            raw = as_float(self._samples[:, start:end])
            idx = edges - start
            mins = np.minimum.reduceat(raw, idx, axis=1)
            maxs = np.maximum.reduceat(raw, idx, axis=1)
            return mins.astype(np.float32, copy=False), maxs.astype(np.float32, copy=False)
        level = next(lv for lv in self._levels if lv.block == block)
        first = edges // block  # first block of each column (strictly increasing: B <= width)
        stop_block = -(-end // block)  # one past the last block touched by the range
        lo = int(first[0])
        idx = first - lo
        mins = np.minimum.reduceat(level.mins[:, lo:stop_block], idx, axis=1)
        maxs = np.maximum.reduceat(level.maxs[:, lo:stop_block], idx, axis=1)
        # a column whose right edge falls inside a block also touches that block, which
        # reduceat assigned to the next column only
        right = np.append(edges[1:], end)
        straddle = np.nonzero(right % block)[0]
        straddle = straddle[straddle < columns - 1]
        if straddle.size:
            shared = right[straddle] // block
            mins[:, straddle] = np.minimum(mins[:, straddle], level.mins[:, shared])
            maxs[:, straddle] = np.maximum(maxs[:, straddle], level.maxs[:, shared])
        return mins, maxs

    def _check_query(self, start: int, end: int, columns: int) -> tuple[int, int, int]:
        start = _check_int("start", start, 0)
        end = _check_int("end", end, 0)
        columns = _check_int("columns", columns, 1)
        if end <= start:
            raise ValueError(f"envelope range [{start}, {end}) is empty or reversed")
        if end > self.frames:
            raise ValueError(f"end frame {end} is beyond the {self.frames} frames")
        return start, end, columns


# ============================================================================================
# spectrograms
# ============================================================================================


def hz_to_mel(hz: npt.ArrayLike) -> Float64Array:
    """HTK mel: ``2595 * log10(1 + f / 700)``."""
    return np.asarray(2595.0 * np.log10(1.0 + np.asarray(hz, dtype=np.float64) / 700.0))


def mel_to_hz(mel: npt.ArrayLike) -> Float64Array:
    """Inverse of :func:`hz_to_mel`."""
    return np.asarray(700.0 * (10.0 ** (np.asarray(mel, dtype=np.float64) / 2595.0) - 1.0))


def mel_filterbank(
    n_freqs: int, fmin: float, fmax: float, n_mels: int, rate: int
) -> tuple[Float64Array, Float64Array]:
    """HTK triangular mel filters over ``n_freqs`` STFT bins from 0 to ``rate / 2``.

    Returns ``(weights [n_freqs, n_mels], centres [n_mels] Hz)``. Filters are unnormalised
    (peak 1 at the centre) and equal ``torchaudio.functional.melscale_fbanks(n_freqs, fmin,
    fmax, n_mels, rate, norm=None, mel_scale="htk")`` for even ``rate``.
    """
    bins = np.linspace(0.0, rate / 2.0, n_freqs)  # [F]
    points = mel_to_hz(np.linspace(hz_to_mel(fmin), hz_to_mel(fmax), n_mels + 2))  # [M + 2]
    widths = np.diff(points)  # [M + 1]
    slopes = points[np.newaxis, :] - bins[:, np.newaxis]  # [F, M + 2]
    down = -slopes[:, :-2] / widths[:-1]  # rising edge, [F, M]
    up = slopes[:, 2:] / widths[1:]  # falling edge, [F, M]
    weights = np.maximum(0.0, np.minimum(down, up))
    return weights, points[1:-1]


@dataclass(frozen=True, slots=True)
class SpectrogramTile:
    """A block of spectrogram frames.

    Attributes:
        values: float32 ``[F, frames]`` power in dB re a full-scale sine (a 0 dBFS sine at a bin
            centre reads 0 dB on the linear scale), floored at ``-top_db``.
        freqs: ``[F]`` centre frequency of each row in Hz (ascending).
        start_frame: index of the first column in the whole signal's frame sequence; frame
            ``i`` is centred on sample ``i * hop``.
        hop: frames advance by ``hop`` samples.
        rate: sample rate in Hz.
        scale: ``"linear"``, ``"log"`` or ``"mel"``.
    """

    values: FloatArray
    freqs: Float64Array
    start_frame: int
    hop: int
    rate: int
    scale: FrequencyScale

    @property
    def frames(self) -> int:
        """Number of columns."""
        return int(self.values.shape[1])

    @property
    def times(self) -> Float64Array:
        """Centre time of each column in seconds, ``[frames]``."""
        return np.asarray((self.start_frame + np.arange(self.frames)) * self.hop / self.rate)


@dataclass(frozen=True, slots=True)
class _FrequencyMap:
    """Maps a power spectrum ``[frames, n_fft // 2 + 1]`` onto the display rows ``[frames, F]``.

    ``linear``: a contiguous slice of bins. ``log``: per row, linear interpolation of the power
    at the row's centre frequency, raised to the maximum of the STFT bins inside the row's band
    (between the geometric midpoints to its neighbours) so that narrow peaks are not lost where
    the rows are wider than the bins. ``mel``: triangular filterbank (matrix product).
    """

    freqs: Float64Array
    bin_slice: slice | None = None
    lower: IntArray | None = None  # log: interpolation pair and weight per row
    weight: Float64Array | None = None
    band_starts: IntArray | None = None  # log: reduceat starts of non-empty bands
    band_rows: IntArray | None = None  # log: the rows those bands belong to
    filters: Float64Array | None = None  # mel: [n_bins_stft, F]

    def apply(self, power: Float64Array) -> Float64Array:
        if self.bin_slice is not None:
            return power[:, self.bin_slice]
        if self.filters is not None:
            return np.asarray(power @ self.filters)
        assert self.lower is not None and self.weight is not None
        assert self.band_starts is not None and self.band_rows is not None
        out = power[:, self.lower] * (1.0 - self.weight) + power[:, self.lower + 1] * self.weight
        if self.band_rows.size:
            pooled = np.maximum.reduceat(power, self.band_starts, axis=1)[:, ::2]
            out[:, self.band_rows] = np.maximum(out[:, self.band_rows], pooled)
        return np.asarray(out)


@lru_cache(maxsize=32)
def _frequency_map(
    rate: int, n_fft: int, scale: FrequencyScale, n_bins: int, fmin: float, fmax: float
) -> _FrequencyMap:
    """Precomputed weights for one ``(rate, n_fft, scale, n_bins, fmin, fmax)`` (LRU-cached)."""
    n_stft = n_fft // 2 + 1
    bin_hz = rate / n_fft
    if scale == "linear":
        lo = math.ceil(fmin / bin_hz - 1e-9)
        hi = math.floor(fmax / bin_hz + 1e-9)
        freqs = np.arange(lo, hi + 1, dtype=np.float64) * bin_hz
        return _FrequencyMap(_readonly(freqs), bin_slice=slice(lo, hi + 1))
    if scale == "mel":
        filters, centres = mel_filterbank(n_stft, fmin, fmax, n_bins, rate)
        return _FrequencyMap(_readonly(centres), filters=_readonly(filters))
    centres = np.geomspace(fmin, fmax, n_bins)
    position = centres / bin_hz
    lower = np.minimum(np.floor(position).astype(np.int64), n_stft - 2)
    weight = position - lower
    # band of row i: [sqrt(c[i-1] c[i]), sqrt(c[i] c[i+1])), the outer rows open by half a step
    ratio = math.sqrt(fmax / fmin) ** (1.0 / (n_bins - 1)) if n_bins > 1 else 1.0
    edges = np.concatenate([[centres[0] / ratio], np.sqrt(centres[:-1] * centres[1:])])
    edges = np.append(edges, centres[-1] * ratio)
    first = np.clip(np.ceil(edges[:-1] / bin_hz - 1e-9).astype(np.int64), 0, n_stft)
    last = np.clip(np.ceil(edges[1:] / bin_hz - 1e-9).astype(np.int64), 0, n_stft)
    rows = np.nonzero(last > first)[0]  # rows whose band holds at least one STFT bin
    # reduceat over [first, last) pairs: interleave starts and stops, keep every other result;
    # only the last band can stop at the end of the spectrum, where reduceat needs no stop
    starts = np.stack([first[rows], last[rows]], axis=1).reshape(-1)
    if starts.size and starts[-1] >= n_stft:
        starts = starts[:-1]
    return _FrequencyMap(
        _readonly(centres),
        lower=_readonly(lower),
        weight=_readonly(weight),
        band_starts=_readonly(starts),
        band_rows=_readonly(rows),
    )


def _readonly(array: _ArrayT) -> _ArrayT:
    array.flags.writeable = False
    return array


@lru_cache(maxsize=16)
def _window(name: WindowName, n_fft: int) -> FloatArray:
    """Periodic analysis window ``[n_fft]`` float32 (read-only)."""
    n = np.arange(n_fft) * (2.0 * np.pi / n_fft)
    if name == "hann":
        w = 0.5 - 0.5 * np.cos(n)
    elif name == "hamming":
        w = 0.54 - 0.46 * np.cos(n)
    elif name == "blackman":
        w = 0.42 - 0.5 * np.cos(n) + 0.08 * np.cos(2.0 * n)
    elif name == "rectangular":
        w = np.ones(n_fft)
    else:
        raise ValueError(f"unknown window {name!r}: use hann, hamming, blackman or rectangular")
    return _readonly(w.astype(np.float32))


@dataclass(frozen=True, slots=True)
class _SpectrogramParams:
    """Validated analysis settings shared by :func:`spectrogram_db` and the tiler."""

    rate: int
    n_fft: int
    hop: int
    window: WindowName
    scale: FrequencyScale
    n_bins: int
    fmin: float
    fmax: float
    top_db: float

    @classmethod
    def make(
        cls,
        rate: int,
        n_fft: int,
        hop: int,
        window: WindowName,
        scale: FrequencyScale,
        n_bins: int | None,
        fmin: float | None,
        fmax: float | None,
        top_db: float,
    ) -> _SpectrogramParams:
        rate = _check_int("rate", rate, 1)
        n_fft = _check_int("n_fft", n_fft, 2)
        hop = _check_int("hop", hop, 1)
        if n_fft % 2:
            raise ValueError(f"n_fft must be even, got {n_fft}")
        if scale not in ("linear", "log", "mel"):
            raise ValueError(f"unknown frequency scale {scale!r}: use linear, log or mel")
        _window(window, n_fft)  # validates the name
        nyquist = rate / 2.0
        if fmin is None:
            fmin = max(20.0, rate / n_fft) if scale == "log" else 0.0
        if fmax is None:
            fmax = nyquist
        fmin, fmax = float(fmin), float(fmax)
        if not 0.0 <= fmin < fmax <= nyquist:
            raise ValueError(f"need 0 <= fmin < fmax <= {nyquist} Hz, got {fmin}, {fmax}")
        if scale == "log" and fmin <= 0.0:
            raise ValueError("a log frequency scale needs fmin > 0 Hz")
        if scale == "linear":
            n_bins = 0  # decided by n_fft, fmin and fmax
        elif n_bins is None:
            n_bins = 256 if scale == "log" else 128
        else:
            n_bins = _check_int("n_bins", n_bins, 2)
        if not (math.isfinite(top_db) and top_db > 0):
            raise ValueError(f"top_db must be a positive number of dB, got {top_db!r}")
        return cls(rate, n_fft, hop, window, scale, n_bins, fmin, fmax, float(top_db))

    @property
    def frequency_map(self) -> _FrequencyMap:
        return _frequency_map(self.rate, self.n_fft, self.scale, self.n_bins, self.fmin, self.fmax)

    def n_frames(self, total: int) -> int:
        """Frames of a ``total``-sample signal: centres at ``0, hop, ...`` up to ``total``."""
        return total // self.hop + 1

    def compute(self, x: SampleArray, first: int, count: int) -> SpectrogramTile:
        """Frames ``[first, first + count)`` of the (downmixed) spectrogram of ``x [C, T]``.

        Frame ``i`` analyses samples ``[i * hop - n_fft / 2, i * hop + n_fft / 2)``, zero
        outside the signal; only the samples these frames need are read.
        """
        half = self.n_fft // 2
        lo = first * self.hop - half
        span = (count - 1) * self.hop + self.n_fft if count else 0
        segment = np.zeros(span, dtype=np.float32)
        a, b = max(lo, 0), min(lo + span, x.shape[1])
        if b > a:
            segment[a - lo : b - lo] = mean_channels(as_float(x[:, a:b]))
        fmap = self.frequency_map
        if count == 0:
            values = np.zeros((fmap.freqs.size, 0), dtype=np.float32)
        else:
            frames = np.lib.stride_tricks.sliding_window_view(segment, self.n_fft)[:: self.hop]
            spectrum = np.fft.rfft(frames * _window(self.window, self.n_fft), axis=1)
            # scale so that a full-scale sine at a bin centre has power 1 (0 dB)
            norm = (2.0 / float(np.sum(_window(self.window, self.n_fft), dtype=np.float64))) ** 2
            power = (spectrum.real.astype(np.float64) ** 2 + spectrum.imag**2) * norm
            mapped = fmap.apply(power)  # [count, F]
            floor = 10.0 ** (-self.top_db / 10.0)
            values = (10.0 * np.log10(np.maximum(mapped, floor))).T.astype(np.float32)
        return SpectrogramTile(values, fmap.freqs, first, self.hop, self.rate, self.scale)


def spectrogram_db(
    samples: npt.ArrayLike,
    rate: int,
    *,
    n_fft: int = 2048,
    hop: int = 512,
    window: WindowName = "hann",
    scale: FrequencyScale = "linear",
    n_bins: int | None = None,
    fmin: float | None = None,
    fmax: float | None = None,
    top_db: float = 80.0,
) -> SpectrogramTile:
    """dB spectrogram of ``samples [T]`` or ``[C, T]`` (channels averaged) at ``rate`` Hz.

    ``samples`` may be float32 or int16 (16-bit PCM, ``v / 32768``), see the module docstring.

    Frames are centred on samples ``0, hop, 2 hop, ...`` (``T // hop + 1`` frames), zero padded
    outside the signal. Rows by ``scale``:

    * ``linear``: the STFT bins ``k * rate / n_fft`` within ``[fmin, fmax]`` (default all);
    * ``log``: ``n_bins`` (default 256) geometrically spaced centres from ``fmin`` (default
      ``max(20, rate / n_fft)`` Hz) to ``fmax``; interpolated power, max-pooled over the STFT
      bins of each row's band where rows are wider than bins;
    * ``mel``: ``n_bins`` (default 128) HTK mel filters from ``fmin`` (default 0) to ``fmax``
      applied to the power spectrum.

    Values are ``10 log10(power)`` with the power scaled so that a 0 dBFS sine reads 0 dB on a
    linear bin, floored at the absolute level ``-top_db`` dB (not relative to the maximum, so
    that tiles computed separately agree).
    """
    x = _as_channels(samples)
    params = _SpectrogramParams.make(rate, n_fft, hop, window, scale, n_bins, fmin, fmax, top_db)
    return params.compute(x, 0, params.n_frames(x.shape[1]))


@dataclass(frozen=True, slots=True)
class TileCacheInfo:
    """Counters of the tile cache."""

    hits: int
    misses: int
    size: int
    max_tiles: int


class SpectrogramTiler:
    """Spectrogram of a long signal computed in tiles of ``tile_frames`` frames, on demand.

    Tile ``k`` holds frames ``[k * tile_frames, (k + 1) * tile_frames)`` of exactly what
    :func:`spectrogram_db` would return for the whole signal (same settings); only the samples
    a tile needs are read. The ``max_tiles`` most recently used tiles are cached (LRU);
    access is thread-safe.

    Args:
        samples: ``[C, T]`` or ``[T]`` samples (referenced, not copied, when float32 or int16:
            a tile converts only the samples it reads).
        rate: sample rate in Hz.
        tile_frames: frames (columns) per tile.
        max_tiles: tiles kept in the cache.
        n_fft, hop, window, scale, n_bins, fmin, fmax, top_db: as in :func:`spectrogram_db`.
    """

    def __init__(
        self,
        samples: npt.ArrayLike,
        rate: int,
        *,
        tile_frames: int = 256,
        max_tiles: int = 64,
        n_fft: int = 2048,
        hop: int = 512,
        window: WindowName = "hann",
        scale: FrequencyScale = "linear",
        n_bins: int | None = None,
        fmin: float | None = None,
        fmax: float | None = None,
        top_db: float = 80.0,
    ) -> None:
        self._x = _as_channels(samples)
        self._params = _SpectrogramParams.make(
            rate, n_fft, hop, window, scale, n_bins, fmin, fmax, top_db
        )
        self._tile_frames = _check_int("tile_frames", tile_frames, 1)
        self._max_tiles = _check_int("max_tiles", max_tiles, 1)
        self._cache: OrderedDict[int, SpectrogramTile] = OrderedDict()
        self._lock = threading.Lock()
        self._hits = 0
        self._misses = 0

    @property
    def n_frames(self) -> int:
        """Frames of the whole signal (``T // hop + 1``)."""
        return self._params.n_frames(self._x.shape[1])

    @property
    def n_tiles(self) -> int:
        """Number of tiles."""
        return -(-self.n_frames // self._tile_frames)

    @property
    def tile_frames(self) -> int:
        """Frames per tile."""
        return self._tile_frames

    @property
    def hop(self) -> int:
        """Hop in samples."""
        return self._params.hop

    @property
    def freqs(self) -> Float64Array:
        """Row centre frequencies ``[F]`` in Hz."""
        return self._params.frequency_map.freqs

    def cache_info(self) -> TileCacheInfo:
        """Hits, misses and size of the tile cache."""
        with self._lock:
            return TileCacheInfo(self._hits, self._misses, len(self._cache), self._max_tiles)

    def tile(self, index: int) -> SpectrogramTile:
        """Tile ``index`` (the last one may be shorter), from the cache when possible."""
        index = _check_int("tile index", index, 0)
        if index >= self.n_tiles:
            raise ValueError(f"tile {index} is beyond the {self.n_tiles} tiles")
        with self._lock:
            cached = self._cache.get(index)
            if cached is not None:
                self._cache.move_to_end(index)
                self._hits += 1
                return cached
            self._misses += 1
        first = index * self._tile_frames
        count = min(self._tile_frames, self.n_frames - first)
        tile = self._params.compute(self._x, first, count)
        tile.values.flags.writeable = False
        with self._lock:
            self._cache[index] = tile
            self._cache.move_to_end(index)
            while len(self._cache) > self._max_tiles:
                self._cache.popitem(last=False)
        return tile

    def frames_for(self, start: int, end: int) -> tuple[int, int]:
        """Frames ``[first, last)`` whose centres lie in samples ``[start, end)``."""
        start = _check_int("start", start, 0)
        end = _check_int("end", end, start)
        hop = self._params.hop
        return min(-(-start // hop), self.n_frames), min(-(-end // hop), self.n_frames)

    def render(self, first: int, last: int) -> SpectrogramTile:
        """Frames ``[first, last)`` assembled from (cached) tiles."""
        first = _check_int("first", first, 0)
        last = _check_int("last", last, first)
        if last > self.n_frames:
            raise ValueError(f"frame {last} is beyond the {self.n_frames} frames")
        size = self._tile_frames
        tiles = [self.tile(k) for k in range(first // size, -(-last // size))]
        if tiles:
            values = np.concatenate([t.values for t in tiles], axis=1)
            offset = first - tiles[0].start_frame
            values = values[:, offset : offset + last - first]
        else:
            values = np.zeros((self.freqs.size, 0), dtype=np.float32)
        p = self._params
        return SpectrogramTile(values, self.freqs, first, p.hop, p.rate, p.scale)
