"""Tests of the display DSP: peak pyramid and spectrogram tiles (audiogen_studio.audio.display)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from audiogen_studio.audio import display
from audiogen_studio.audio.display import (
    PeakPyramid,
    SpectrogramTiler,
    hz_to_mel,
    mel_filterbank,
    mel_to_hz,
    spectrogram_db,
)

# ---------------------------------------------------------------------------------- pyramid


def signal(channels: int, frames: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    # a random walk: neighbouring values are close, so envelopes of wrong ranges are detectable
    return np.cumsum(rng.standard_normal((channels, frames)), axis=1).astype(np.float32)


def widened_envelope(
    x: np.ndarray, start: int, end: int, columns: int, block: int
) -> tuple[np.ndarray, np.ndarray]:
    """The documented guarantee, computed naively column by column."""
    edges = [start + (j * (end - start)) // columns for j in range(columns)] + [end]
    mins, maxs = [], []
    for j in range(columns):
        e0, e1 = edges[j], max(edges[j + 1], edges[j] + 1)
        lo, hi = (e0 // block) * block, min(-(-e1 // block) * block, x.shape[1])
        mins.append(x[:, lo:hi].min(axis=1))
        maxs.append(x[:, lo:hi].max(axis=1))
    return np.stack(mins, axis=1), np.stack(maxs, axis=1)


def test_levels_structure() -> None:
    x = signal(2, 100_003, 0)
    pyramid = PeakPyramid(x, base_block=16, factor=4, min_blocks=50)
    blocks = [(level.block, level.n_blocks) for level in pyramid.levels]
    assert blocks == [(16, 6251), (64, 1563), (256, 391), (1024, 98), (4096, 25)]
    finest = pyramid.levels[0]
    assert finest.mins.dtype == np.float32 and finest.mins.shape == (2, 6251)
    np.testing.assert_array_equal(finest.maxs[:, 5], x[:, 80:96].max(axis=1))
    np.testing.assert_array_equal(finest.mins[:, -1], x[:, 100_000:].min(axis=1))  # partial
    coarsest = pyramid.levels[-1]
    np.testing.assert_array_equal(coarsest.maxs[:, -1], x[:, 24 * 4096 :].max(axis=1))
    assert pyramid.nbytes == 8 * 2 * (6251 + 1563 + 391 + 98 + 25)
    with pytest.raises(ValueError):
        pyramid.levels[0].mins[0, 0] = 1.0  # read-only views


def test_envelope_level_choice() -> None:
    x = signal(1, 200_000, 1)
    pyramid = PeakPyramid(x, base_block=16, factor=4, min_blocks=100)
    assert pyramid.block_for(0, 200_000, 100) == 1024  # 2000 frames/column; 4096 is too coarse
    assert pyramid.block_for(0, 200_000, 1600) == 64  # 125 frames/column
    assert pyramid.block_for(1000, 1000 + 15 * 50, 50) == 1  # 15 frames/column: raw samples
    assert pyramid.block_for(0, 16 * 50, 50) == 16
    mins, maxs = pyramid.envelope(100, 130, 60)  # more columns than frames: one frame each
    np.testing.assert_array_equal(mins, maxs)
    np.testing.assert_array_equal(mins[0], np.repeat(x[0, 100:130], 2))


def test_envelope_of_whole_file_brackets_signal() -> None:
    x = signal(2, 300_000, 2)
    pyramid = PeakPyramid(x)
    mins, maxs = pyramid.envelope(0, x.shape[1], 1600)
    assert mins.shape == maxs.shape == (2, 1600)
    np.testing.assert_array_equal(mins.min(axis=1), x.min(axis=1))
    np.testing.assert_array_equal(maxs.max(axis=1), x.max(axis=1))


@st.composite
def pyramid_queries(draw: st.DrawFn) -> tuple[np.ndarray, int, int, int, int, int, int]:
    channels = draw(st.integers(1, 2))
    frames = draw(st.integers(1, 3000))
    seed = draw(st.integers(0, 2**31))
    base = draw(st.integers(1, 8))
    factor = draw(st.integers(2, 5))
    start = draw(st.integers(0, frames - 1))
    end = draw(st.integers(start + 1, frames))
    columns = draw(st.integers(1, 120))
    return signal(channels, frames, seed), base, factor, start, end, columns, seed


@settings(max_examples=200, deadline=None)
@given(pyramid_queries())
def test_envelope_guarantee(case: tuple[np.ndarray, int, int, int, int, int, int]) -> None:
    """mins/maxs are exactly the min/max over each column widened to the chosen level's blocks;
    with raw samples (block 1) exactly the column's own min/max; always bracketing."""
    x, base, factor, start, end, columns, _ = case
    pyramid = PeakPyramid(x, base_block=base, factor=factor, min_blocks=4)
    block = pyramid.block_for(start, end, columns)
    per_column = (end - start) // columns
    coarser = [lv.block for lv in pyramid.levels if lv.block > block]
    if block == 1:  # raw samples (or a level of 1-frame blocks, the same thing)
        assert base > per_column or base == 1
    else:
        assert block <= per_column  # at least `columns` blocks in the range ...
        assert not coarser or coarser[0] > per_column  # ... and the coarsest such level
    mins, maxs = pyramid.envelope(start, end, columns)
    assert mins.shape == maxs.shape == (x.shape[0], columns)
    expected_mins, expected_maxs = widened_envelope(x, start, end, columns, block)
    np.testing.assert_array_equal(mins, expected_mins)
    np.testing.assert_array_equal(maxs, expected_maxs)
    own_mins, own_maxs = widened_envelope(x, start, end, columns, 1)
    assert np.all(mins <= own_mins) and np.all(maxs >= own_maxs)
    np.testing.assert_array_equal(pyramid.column_edges(start, end, columns)[0], start)


def assert_same_pyramid(a: PeakPyramid, b: PeakPyramid) -> None:
    assert a.frames == b.frames
    assert len(a.levels) == len(b.levels)
    for la, lb in zip(a.levels, b.levels, strict=True):
        assert la.block == lb.block
        np.testing.assert_array_equal(la.mins, lb.mins)
        np.testing.assert_array_equal(la.maxs, lb.maxs)


@settings(max_examples=100, deadline=None)
@given(
    st.integers(0, 2**31),
    st.integers(0, 500),
    st.lists(st.integers(0, 700), min_size=1, max_size=8),
    st.integers(1, 6),
)
def test_append_equals_scratch(seed: int, initial: int, chunks: list[int], base: int) -> None:
    total = initial + sum(chunks)
    x = signal(2, total, seed)
    grown = PeakPyramid(x[:, :initial], base_block=base, factor=3, min_blocks=5)
    position = initial
    for size in chunks:
        grown.append(x[:, position : position + size])
        position += size
        assert_same_pyramid(
            grown, PeakPyramid(x[:, :position], base_block=base, factor=3, min_blocks=5)
        )
    np.testing.assert_array_equal(grown.samples, x)
    if total:
        mins, maxs = grown.envelope(0, total, 1)
        np.testing.assert_array_equal(mins[:, 0], x.min(axis=1))
        np.testing.assert_array_equal(maxs[:, 0], x.max(axis=1))


def test_update_follows_an_external_buffer() -> None:
    x = signal(2, 50_000, 4)
    buffer = x.copy()
    pyramid = PeakPyramid(buffer[:, :20_000], base_block=8, factor=4, min_blocks=20)
    pyramid.update(buffer[:, :35_000], 20_000)  # grew
    assert_same_pyramid(pyramid, PeakPyramid(x[:, :35_000], base_block=8, min_blocks=20))
    buffer[:, 30_001:] *= -3.0  # tail rewritten from frame 30_001 on, and grew again
    pyramid.update(buffer, 30_001)
    assert_same_pyramid(pyramid, PeakPyramid(buffer.copy(), base_block=8, min_blocks=20))
    pyramid.update(buffer[:, :1000], 1000)  # truncated: fewer levels
    assert_same_pyramid(pyramid, PeakPyramid(buffer[:, :1000].copy(), base_block=8, min_blocks=20))
    assert len(pyramid.levels) < 5


def test_pyramid_errors() -> None:
    pyramid = PeakPyramid(signal(2, 1000, 5))
    with pytest.raises(ValueError, match="empty or reversed"):
        pyramid.envelope(10, 10, 5)
    with pytest.raises(ValueError, match="beyond"):
        pyramid.envelope(0, 1001, 5)
    with pytest.raises(ValueError, match="columns"):
        pyramid.envelope(0, 100, 0)
    with pytest.raises(ValueError, match="channels"):
        pyramid.append(np.zeros((1, 10), dtype=np.float32))
    with pytest.raises(ValueError, match="factor"):
        PeakPyramid(np.zeros(10), factor=1)
    mono = PeakPyramid(np.arange(40, dtype=np.float64), base_block=4)  # 1-D, converted
    assert mono.channels == 1 and mono.levels[0].maxs[0, 2] == 11.0


# ---------------------------------------------------------------------------------- spectrogram

RATE = 16_000


def tone(freq: float, seconds: float = 1.0, rate: int = RATE, amplitude: float = 0.5) -> np.ndarray:
    t = np.arange(round(seconds * rate)) / rate
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def peak_row(tile: display.SpectrogramTile) -> int:
    return int(np.argmax(tile.values[:, 4:-4].mean(axis=1)))


def test_linear_spectrogram_level_and_bin() -> None:
    tile = spectrogram_db(tone(1000.0), RATE, n_fft=1024, hop=256)  # 1000 Hz = bin 64
    assert tile.values.shape == (513, RATE // 256 + 1)
    assert tile.values.dtype == np.float32
    assert peak_row(tile) == 64 and tile.freqs[64] == 1000.0
    assert tile.values[64, 10] == pytest.approx(-6.02, abs=0.01)  # amplitude 0.5
    np.testing.assert_allclose(tile.times[:3], [0.0, 0.016, 0.032])
    silent = spectrogram_db(np.zeros(4000), RATE, n_fft=512, hop=128, top_db=60)
    assert np.all(silent.values == -60.0)


@pytest.mark.parametrize("scale", ["linear", "log", "mel"])
@pytest.mark.parametrize(("rate", "freq"), [(16_000, 440.0), (16_000, 3100.0), (48_000, 9000.0)])
def test_pure_tone_peak_in_right_bin(scale: display.FrequencyScale, rate: int, freq: float) -> None:
    tile = spectrogram_db(tone(freq, 0.5, rate), rate, n_fft=2048, hop=512, scale=scale)
    row = peak_row(tile)
    nearest = int(np.argmin(np.abs(tile.freqs - freq)))
    if scale == "linear":
        assert row == round(freq * 2048 / rate)
    else:  # the row nearest the tone, or its neighbour when the tone sits between two
        assert abs(row - nearest) <= 1
        spacing = np.abs(np.diff(tile.freqs))[min(row, tile.freqs.size - 2)]
        assert abs(tile.freqs[row] - freq) <= max(spacing, rate / 2048)


def test_log_scale_keeps_narrow_peaks_between_wide_rows() -> None:
    # 32 log rows over 50 Hz .. 8 kHz are ~17 % wide: at 6 kHz a row spans ~40 STFT bins
    tile = spectrogram_db(tone(6000.0), RATE, n_fft=1024, hop=256, scale="log", n_bins=32)
    row = peak_row(tile)
    assert tile.values[row, 10] == pytest.approx(-6.02, abs=0.05)  # not lost by interpolation
    edges = np.sqrt(tile.freqs[:-1] * tile.freqs[1:])
    assert edges[row - 1] <= 6000.0 < edges[row]


def test_mel_filterbank_hand_checked() -> None:
    assert hz_to_mel(700.0) == pytest.approx(2595 * np.log10(2.0))
    np.testing.assert_allclose(mel_to_hz(hz_to_mel([0.0, 440.0, 8000.0])), [0.0, 440.0, 8000.0])
    weights, centres = mel_filterbank(5, 0.0, 4000.0, 2, 8000)  # bins at 0, 1000, ..., 4000 Hz
    points = mel_to_hz(np.linspace(0, hz_to_mel(4000.0), 4))  # [0, 781.8, 2087.9, 4000] Hz
    np.testing.assert_allclose(centres, points[1:3])
    # filter 0 rises 0 -> 781.8 Hz and falls to 0 at 2087.9 Hz: at 1000 Hz (falling edge)
    assert weights[1, 0] == pytest.approx((points[2] - 1000) / (points[2] - points[1]))
    # filter 1 rises from 781.8 Hz: at 1000 and 2000 Hz; falls to 0 at 4000 Hz
    assert weights[1, 1] == pytest.approx((1000 - points[1]) / (points[2] - points[1]))
    assert weights[3, 1] == pytest.approx((4000 - 3000) / (4000 - points[2]))
    assert weights[0].sum() == 0 and weights[4].sum() == 0


def test_mel_filterbank_matches_torchaudio() -> None:
    functional = pytest.importorskip("torchaudio.functional")
    cases = [(513, 0.0, 8000.0, 80, 16_000), (1025, 40.0, 20_000.0, 128, 44_100)]
    for n_freqs, fmin, fmax, n_mels, rate in cases:
        ours, _ = mel_filterbank(n_freqs, fmin, fmax, n_mels, rate)
        theirs = functional.melscale_fbanks(n_freqs, fmin, fmax, n_mels, rate, None, "htk")
        np.testing.assert_allclose(ours, theirs.double().numpy(), atol=1e-5)


def test_downmix_and_validation() -> None:
    rng = np.random.default_rng(8)
    stereo = rng.uniform(-1, 1, (2, 5000)).astype(np.float32)
    a = spectrogram_db(stereo, RATE, n_fft=256, hop=64, scale="mel", n_bins=40)
    b = spectrogram_db(stereo.mean(axis=0), RATE, n_fft=256, hop=64, scale="mel", n_bins=40)
    np.testing.assert_allclose(a.values, b.values, atol=1e-4)
    bad: list[dict[str, object]] = [
        {"n_fft": 255},
        {"hop": 0},
        {"scale": "bark"},
        {"window": "kaiser"},
        {"fmin": 5000.0, "fmax": 4000.0},
        {"fmax": 9000.0},
        {"scale": "log", "fmin": 0.0},
        {"top_db": 0.0},
        {"scale": "mel", "n_bins": 1},
    ]
    for kwargs in bad:
        with pytest.raises(ValueError):
            spectrogram_db(stereo, RATE, **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("scale", ["linear", "log", "mel"])
def test_tiles_are_seamless(scale: display.FrequencyScale) -> None:
    rng = np.random.default_rng(9)
    x = rng.uniform(-0.5, 0.5, (2, 40_000)).astype(np.float32)
    x[:, 10_000:20_000] += tone(2500.0, 10_000 / RATE)
    kwargs = {"n_fft": 512, "hop": 160, "scale": scale}
    full = spectrogram_db(x, RATE, **kwargs)  # type: ignore[arg-type]
    tiler = SpectrogramTiler(x, RATE, tile_frames=37, **kwargs)  # type: ignore[arg-type]
    assert tiler.n_frames == full.frames == 40_000 // 160 + 1
    for k in range(tiler.n_tiles - 1):  # every pair k, k + 1 (the last tile is partial)
        pair = np.concatenate([tiler.tile(k).values, tiler.tile(k + 1).values], axis=1)
        np.testing.assert_allclose(pair, full.values[:, 37 * k : 37 * (k + 2)], atol=1e-4)
    assert tiler.tile(tiler.n_tiles - 1).frames == full.frames - 37 * (tiler.n_tiles - 1)
    shown = tiler.render(50, 200)
    assert shown.start_frame == 50 and shown.frames == 150
    np.testing.assert_allclose(shown.values, full.values[:, 50:200], atol=1e-4)
    np.testing.assert_array_equal(shown.freqs, full.freqs)
    np.testing.assert_allclose(shown.times, full.times[50:200])


def test_tiler_lru_cache_and_lazy_computation() -> None:
    x = np.random.default_rng(10).uniform(-1, 1, RATE * 600).astype(np.float32)  # 10 minutes
    tiler = SpectrogramTiler(x, RATE, tile_frames=100, max_tiles=2, n_fft=512, hop=256)
    assert tiler.n_tiles == 376
    first = tiler.tile(200)
    assert tiler.cache_info().misses == 1  # one tile computed, not the file
    assert tiler.tile(200) is first
    tiler.tile(201)
    tiler.tile(200)  # 200 becomes most recently used
    tiler.tile(202)  # evicts 201
    info = tiler.cache_info()
    assert (info.hits, info.misses, info.size) == (2, 3, 2)
    tiler.tile(201)
    assert tiler.cache_info().misses == 4
    assert tiler.tile(200) is not first  # 200 was evicted by 201 in turn
    assert tiler.frames_for(RATE, 2 * RATE) == (63, 125)
    with pytest.raises(ValueError, match="beyond"):
        tiler.tile(376)


def test_frequency_map_is_cached() -> None:
    display._frequency_map.cache_clear()
    spectrogram_db(tone(500.0, 0.1), RATE, n_fft=256, hop=64, scale="log", n_bins=20)
    spectrogram_db(tone(800.0, 0.2), RATE, n_fft=256, hop=128, scale="log", n_bins=20)
    info = display._frequency_map.cache_info()
    assert info.misses == 1 and info.hits >= 1


# ------------------------------------------------------------ 16-bit PCM (a mapped file)


def pcm16(channels: int, frames: int, seed: int) -> np.ndarray:
    """int16 ``[C, T]``: a random walk, clipped so both extremes occur."""
    walk = np.cumsum(np.random.default_rng(seed).integers(-3000, 3001, (channels, frames)), axis=1)
    return np.clip(walk, -32768, 32767).astype(np.int16)


def as_clip_samples(ints: np.ndarray) -> np.ndarray:
    """What the float32 clip of the same file holds (libsndfile's and io.load's scaling)."""
    return (ints.astype(np.float64) / 32768.0).astype(np.float32)


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**31), st.integers(1, 5000), st.integers(1, 300), st.integers(2, 5))
def test_int16_pyramid_equals_the_float_clips(seed: int, frames: int, base: int, f: int) -> None:
    ints = pcm16(2, frames, seed)
    floats = as_clip_samples(ints)
    from_ints = PeakPyramid(ints.T.copy().T, base_block=base, factor=f, min_blocks=3)  # strided
    from_floats = PeakPyramid(floats, base_block=base, factor=f, min_blocks=3)
    assert from_ints.samples.dtype == np.int16  # referenced, not converted
    assert_same_pyramid(from_ints, from_floats)
    rng = np.random.default_rng(seed)
    for _ in range(5):  # every query, zoomed in (raw samples) or out
        start = int(rng.integers(0, frames))
        end = int(rng.integers(start + 1, frames + 1))
        columns = int(rng.integers(1, 200))
        for a, b in zip(
            from_ints.envelope(start, end, columns),
            from_floats.envelope(start, end, columns),
            strict=True,
        ):
            assert a.dtype == np.float32
            np.testing.assert_array_equal(a, b)
    # the float32 clip replaces the int16 samples: nothing differs, nothing is recomputed
    from_ints.update(floats, frames)
    assert from_ints.samples.dtype == np.float32
    assert_same_pyramid(from_ints, from_floats)


def test_int16_pyramid_grows_with_float_frames() -> None:
    ints = pcm16(1, 3000, 1)
    more = as_clip_samples(pcm16(1, 1000, 2))
    grown = PeakPyramid(ints, base_block=16, min_blocks=5)
    grown.append(more)  # int16 followed by float32 frames: kept as float32
    whole = np.concatenate([as_clip_samples(ints), more], axis=1)
    assert grown.samples.dtype == np.float32
    assert_same_pyramid(grown, PeakPyramid(whole, base_block=16, min_blocks=5))
    np.testing.assert_array_equal(grown.samples, whole)


@pytest.mark.parametrize("scale", ["linear", "log", "mel"])
def test_int16_spectrogram_equals_the_float_clips(scale: display.FrequencyScale) -> None:
    ints = pcm16(2, 30_000, 3)
    floats = as_clip_samples(ints)
    kwargs = {"n_fft": 512, "hop": 160, "scale": scale}
    a = spectrogram_db(ints, RATE, **kwargs)  # type: ignore[arg-type]
    b = spectrogram_db(floats, RATE, **kwargs)  # type: ignore[arg-type]
    np.testing.assert_array_equal(a.values, b.values)
    tiler = SpectrogramTiler(ints.T.copy().T, RATE, tile_frames=29, **kwargs)  # type: ignore[arg-type]
    np.testing.assert_array_equal(tiler.render(7, 150).values, b.values[:, 7:150])


def test_mean_channels() -> None:
    x = np.random.default_rng(4).standard_normal((3, 4, 50)).astype(np.float32)
    np.testing.assert_array_equal(display.mean_channels(x[:2]), x[:2].mean(axis=0))
    np.testing.assert_allclose(display.mean_channels(x), x.mean(axis=0), rtol=1e-6)
    assert display.mean_channels(x[:1]).shape == (4, 50)
    assert display.mean_channels(x).dtype == np.float32
