"""Tests of the pure edit ops and BS.1770 loudness (audiogen_studio.audio.edit)."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from audiogen_studio.audio import edit
from audiogen_studio.audio.clip import Clip
from audiogen_studio.audio.errors import ClipError

RATE = 16_000


def ramp(frames: int = 10, channels: int = 2, rate: int = RATE) -> Clip:
    """Channel c holds ``(c + 1) * [1, 2, ..., frames]`` (distinct, non-zero values)."""
    base = np.arange(1, frames + 1, dtype=np.float32)
    samples = np.stack([base * (c + 1) for c in range(channels)])
    return Clip(samples, rate, {"name": "ramp"})


# ---------------------------------------------------------------------------------- exact ops


def test_crop_keeps_half_open_range() -> None:
    out = edit.crop(ramp(), 2, 5)
    np.testing.assert_array_equal(out.samples, [[3, 4, 5], [6, 8, 10]])
    assert out.rate == RATE
    assert dict(out.metadata) == {"name": "ramp"}
    assert edit.crop(ramp(), 7).frames == 3  # end=None: to the end


def test_cut_returns_remaining_and_removed() -> None:
    remaining, removed = edit.cut(ramp(), 1, 4)
    np.testing.assert_array_equal(remaining.samples[0], [1, 5, 6, 7, 8, 9, 10])
    np.testing.assert_array_equal(removed.samples[1], [4, 6, 8])
    assert dict(removed.metadata) == {"name": "ramp"}


def test_delete() -> None:
    np.testing.assert_array_equal(edit.delete(ramp(), 0, 8).samples, [[9, 10], [18, 20]])
    assert edit.delete(ramp(), 3, 3).equals(ramp())


def test_insert_same_channels_and_mono_broadcast() -> None:
    other = Clip(np.array([[-1, -2], [-3, -4]], dtype=np.float32), RATE)
    out = edit.insert(ramp(4), 1, other)
    np.testing.assert_array_equal(out.samples, [[1, -1, -2, 2, 3, 4], [2, -3, -4, 4, 6, 8]])
    mono = Clip(np.array([-7, -8], dtype=np.float32), RATE)
    out = edit.insert(ramp(3), 3, mono)  # at the end
    np.testing.assert_array_equal(out.samples, [[1, 2, 3, -7, -8], [2, 4, 6, -7, -8]])
    np.testing.assert_array_equal(edit.insert(ramp(3), 0, mono).samples[1], [-7, -8, 2, 4, 6])


def test_insert_rejects_rate_and_channel_mismatch() -> None:
    with pytest.raises(ClipError, match="sample rates differ"):
        edit.insert(ramp(), 0, ramp(rate=22_050))
    with pytest.raises(ClipError, match="channel counts differ"):
        edit.insert(ramp(channels=2), 0, ramp(channels=3))
    with pytest.raises(ClipError, match="channel counts differ"):
        edit.insert(ramp(channels=1), 0, ramp(channels=2))  # stereo into mono: no downmix


def test_silence_zeroes_range_only() -> None:
    out = edit.silence(ramp(5), 1, 3)
    np.testing.assert_array_equal(out.samples, [[1, 0, 0, 4, 5], [2, 0, 0, 8, 10]])


def test_gain_on_range() -> None:
    out = edit.gain(ramp(4), 20 * math.log10(3.0), 2)
    np.testing.assert_allclose(out.samples, [[1, 2, 9, 12], [2, 4, 18, 24]], rtol=1e-6)
    np.testing.assert_array_equal(out.samples[:, :2], ramp(4).samples[:, :2])
    with pytest.raises(ValueError, match="finite"):
        edit.gain(ramp(), math.nan)


def test_normalize_peak() -> None:
    clip = Clip(np.array([[0.1, -0.25, 0.2], [0.05, 0.0, 0.1]], dtype=np.float32), RATE)
    out = edit.normalize_peak(clip, -6.0)
    np.testing.assert_allclose(out.peak, 10 ** (-6 / 20), rtol=1e-6)
    np.testing.assert_allclose(out.samples, clip.samples * (10 ** (-6 / 20) / 0.25), rtol=1e-6)
    # range: only frame 2 is scaled (its peak is 0.2)
    part = edit.normalize_peak(clip, 0.0, 2, 3)
    np.testing.assert_allclose(part.samples[:, 2], [1.0, 0.5], rtol=1e-6)
    np.testing.assert_array_equal(part.samples[:, :2], clip.samples[:, :2])
    silent = Clip(np.zeros((2, 8), dtype=np.float32), RATE, {"k": 1})
    kept = edit.normalize_peak(silent)
    assert kept.equals(silent)
    assert dict(kept.metadata) == {"k": 1}


def test_fades_exact_values() -> None:
    ones = Clip(np.ones((1, 8), dtype=np.float32), RATE)
    np.testing.assert_allclose(
        edit.fade_in(ones, 5).samples[0], [0, 0.25, 0.5, 0.75, 1, 1, 1, 1], atol=1e-7
    )
    np.testing.assert_allclose(
        edit.fade_out(ones, 5).samples[0], [1, 1, 1, 1, 0.75, 0.5, 0.25, 0], atol=1e-7
    )
    eq = edit.fade_in(ones, 3, "equal_power").samples[0]
    np.testing.assert_allclose(eq[:3], [0, math.sin(math.pi / 4), 1], atol=1e-7)
    ranged = edit.fade_out(ones, start=2, end=5).samples[0]
    np.testing.assert_allclose(ranged, [1, 1, 1, 0.5, 0, 1, 1, 1], atol=1e-7)
    whole = edit.fade_in(ones).samples[0]
    assert whole[0] == 0 and whole[-1] == 1
    with pytest.raises(ValueError, match="not both"):
        edit.fade_in(ones, 3, start=1)
    with pytest.raises(ValueError, match="does not fit"):
        edit.fade_out(ones, 9)
    with pytest.raises(ValueError, match="unknown fade curve"):
        edit.fade_in(ones, 3, "cubic")  # type: ignore[arg-type]


def test_fade_ramp_equal_power_is_power_complementary() -> None:
    up = edit.fade_ramp(1001, "equal_power").astype(np.float64)
    np.testing.assert_allclose(up**2 + up[::-1] ** 2, 1.0, atol=1e-6)
    lin = edit.fade_ramp(1001, "linear").astype(np.float64)
    np.testing.assert_allclose(lin + lin[::-1], 1.0, atol=1e-6)


def test_crossfade_join_exact() -> None:
    a = Clip(np.full((2, 6), 2.0, dtype=np.float32), RATE, {"from": "a"})
    b = Clip(np.full((1, 5), -1.0, dtype=np.float32), RATE)
    out = edit.crossfade_join(a, b, 3, "linear")
    assert out.frames == 6 + 5 - 3
    assert out.channels == 2 and dict(out.metadata) == {"from": "a"}
    # overlap: a * [.75, .5, .25] + b * [.25, .5, .75]
    np.testing.assert_allclose(out.samples[0], [2, 2, 2, 1.25, 0.5, -0.25, -1, -1], atol=1e-7)
    one = edit.crossfade_join(a, b, 1, "linear")  # a one-frame crossfade is a 50/50 blend
    np.testing.assert_allclose(one.samples[0, 4:7], [2, 0.5, -1], atol=1e-7)
    assert edit.crossfade_join(a, b, 0).frames == 11
    np.testing.assert_array_equal(edit.crossfade_join(a, b, 0).samples[1, 5:7], [2, -1])
    assert edit.crossfade_join(a, b, 100).frames == 6  # clamped to the shorter clip (5)
    with pytest.raises(ValueError, match=">= 0"):
        edit.crossfade_join(a, b, -1)
    with pytest.raises(ClipError, match="sample rates differ"):
        edit.crossfade_join(a, ramp(rate=RATE * 2), 2)


def test_crossfade_equal_power_keeps_noise_power() -> None:
    rng = np.random.default_rng(3)
    n = 4096
    a = Clip(rng.standard_normal((8, 3 * n)).astype(np.float32), RATE)
    b = Clip(rng.standard_normal((8, 3 * n)).astype(np.float32), RATE)
    out = edit.crossfade_join(a, b, n).samples
    overlap = out[:, 2 * n : 3 * n].astype(np.float64)
    power = (overlap**2).reshape(8, 8, n // 8).mean(axis=(0, 2))  # 8 windows over the overlap
    np.testing.assert_allclose(power, 1.0, atol=0.1)
    lin = edit.crossfade_join(a, b, n, "linear").samples[:, 2 * n : 3 * n].astype(np.float64)
    mid = (lin[:, n // 2 - 256 : n // 2 + 256] ** 2).mean()
    assert mid < 0.65  # linear dips ~3 dB in the middle for uncorrelated signals


def test_reverse_range() -> None:
    out = edit.reverse(ramp(5), 1, 4)
    np.testing.assert_array_equal(out.samples[0], [1, 4, 3, 2, 5])
    np.testing.assert_array_equal(edit.reverse(ramp(3)).samples[1], [6, 4, 2])


def test_mix_extends_and_broadcasts() -> None:
    a = ramp(4)
    b = Clip(np.array([10, 20, 30], dtype=np.float32), RATE)
    out = edit.mix(a, b, 2)
    np.testing.assert_array_equal(out.samples, [[1, 2, 13, 24, 30], [2, 4, 16, 28, 30]])
    half = edit.mix(a, b, 0, b_gain_db=20 * math.log10(0.5))
    np.testing.assert_allclose(half.samples[0], [6, 12, 18, 4], rtol=1e-6)


# ---------------------------------------------------------------------------------- bad ranges

RANGE_OPS: dict[str, Callable[[Clip, int, int | None], object]] = {
    "crop": edit.crop,
    "cut": edit.cut,
    "delete": edit.delete,
    "silence": edit.silence,
    "reverse": edit.reverse,
    "gain": lambda c, s, e: edit.gain(c, 3.0, s, e),
    "normalize_peak": lambda c, s, e: edit.normalize_peak(c, -1.0, s, e),
    "fade_in": lambda c, s, e: edit.fade_in(c, start=s, end=e),
    "fade_out": lambda c, s, e: edit.fade_out(c, start=s, end=e),
}


@pytest.mark.parametrize("name", sorted(RANGE_OPS))
@pytest.mark.parametrize(
    ("start", "end", "message"),
    [(-1, 3, "negative"), (5, 2, "reversed"), (0, 11, "beyond"), (11, None, "reversed")],
)
def test_bad_ranges_raise_value_error(name: str, start: int, end: int | None, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RANGE_OPS[name](ramp(10), start, end)


@pytest.mark.parametrize("name", sorted(RANGE_OPS))
def test_non_integer_frames_raise_type_error(name: str) -> None:
    with pytest.raises(TypeError, match="integer"):
        RANGE_OPS[name](ramp(10), 1.5, 4)  # type: ignore[arg-type]


def test_bad_positions() -> None:
    with pytest.raises(ValueError, match="beyond"):
        edit.insert(ramp(4), 5, ramp(1))
    with pytest.raises(ValueError, match="negative"):
        edit.mix(ramp(4), ramp(1), -1)


def test_numpy_integer_indices_accepted() -> None:
    out = edit.crop(ramp(), np.int64(2), np.int32(4))  # type: ignore[arg-type]
    np.testing.assert_array_equal(out.samples[0], [3, 4])


# ---------------------------------------------------------------------------------- properties


@st.composite
def clips(draw: st.DrawFn, min_frames: int = 0) -> Clip:
    channels = draw(st.integers(1, 3))
    frames = draw(st.integers(min_frames, 64))
    seed = draw(st.integers(0, 2**32 - 1))
    samples = np.random.default_rng(seed).uniform(-1, 1, (channels, frames)).astype(np.float32)
    return Clip(samples, RATE, {"seed": seed})


@st.composite
def clip_and_range(draw: st.DrawFn) -> tuple[Clip, int, int]:
    clip = draw(clips())
    start = draw(st.integers(0, clip.frames))
    end = draw(st.integers(start, clip.frames))
    return clip, start, end


@given(clip_and_range())
def test_cut_then_insert_restores_exactly(case: tuple[Clip, int, int]) -> None:
    clip, start, end = case
    remaining, removed = edit.cut(clip, start, end)
    assert remaining.frames + removed.frames == clip.frames
    assert edit.insert(remaining, start, removed).equals(clip)


@given(clip_and_range())
def test_delete_equals_concatenated_crops(case: tuple[Clip, int, int]) -> None:
    clip, start, end = case
    expected = np.concatenate(
        [edit.crop(clip, 0, start).samples, edit.crop(clip, end).samples], axis=1
    )
    np.testing.assert_array_equal(edit.delete(clip, start, end).samples, expected)


@given(clip_and_range())
def test_reverse_twice_is_identity(case: tuple[Clip, int, int]) -> None:
    clip, start, end = case
    once = edit.reverse(clip, start, end)
    assert edit.reverse(once, start, end).equals(clip)
    np.testing.assert_array_equal(once.samples[:, start:end], clip.samples[:, start:end][:, ::-1])


@given(clip_and_range(), st.floats(-40, 40))
def test_gain_then_inverse_gain(case: tuple[Clip, int, int], db: float) -> None:
    clip, start, end = case
    back = edit.gain(edit.gain(clip, db, start, end), -db, start, end)
    np.testing.assert_allclose(back.samples, clip.samples, rtol=1e-6, atol=0)


@given(clips(), clips(), st.integers(0, 80), st.sampled_from(["linear", "equal_power"]))
def test_crossfade_join_length(a: Clip, b: Clip, frames: int, curve: edit.FadeCurve) -> None:
    b = Clip(np.random.default_rng(0).uniform(-1, 1, (1, b.frames)).astype(np.float32), RATE)
    out = edit.crossfade_join(a, b, frames, curve)
    n = min(frames, a.frames, b.frames)
    assert out.frames == a.frames + b.frames - n
    b_wide = np.broadcast_to(b.samples, (a.channels, b.frames))
    np.testing.assert_array_equal(out.samples[:, : a.frames - n], a.samples[:, : a.frames - n])
    np.testing.assert_array_equal(out.samples[:, a.frames :], b_wide[:, n:])
    if curve == "linear":  # every overlap frame is a blend, between a's and b's values
        blend = out.samples[:, a.frames - n : a.frames]
        low = np.minimum(a.samples[:, a.frames - n :], b_wide[:, :n]) - 1e-6
        high = np.maximum(a.samples[:, a.frames - n :], b_wide[:, :n]) + 1e-6
        assert np.all((low <= blend) & (blend <= high))


@given(clip_and_range(), st.sampled_from(["linear", "equal_power"]))
def test_fades_hit_zero_and_one_at_the_ends(
    case: tuple[Clip, int, int], curve: edit.FadeCurve
) -> None:
    clip, start, end = case
    faded_in = edit.fade_in(clip, curve=curve, start=start, end=end)
    faded_out = edit.fade_out(clip, curve=curve, start=start, end=end)
    if end > start:
        assert not faded_in.samples[:, start].any()
        assert not faded_out.samples[:, end - 1].any()
    if end - start > 1:
        np.testing.assert_array_equal(faded_in.samples[:, end - 1], clip.samples[:, end - 1])
        np.testing.assert_array_equal(faded_out.samples[:, start], clip.samples[:, start])
    outside = np.r_[0:start, end : clip.frames]
    np.testing.assert_array_equal(faded_in.samples[:, outside], clip.samples[:, outside])
    gains = edit.fade_ramp(end - start, curve)
    assert np.all(np.diff(gains) >= 0)


@settings(max_examples=50, deadline=None)
@given(clip_and_range(), clips())
def test_input_clip_unchanged_after_every_op(case: tuple[Clip, int, int], other: Clip) -> None:
    clip, start, end = case
    other = Clip(other.samples[:1], RATE)
    before = clip.samples.copy()
    results = [
        edit.crop(clip, start, end),
        *edit.cut(clip, start, end),
        edit.delete(clip, start, end),
        edit.insert(clip, start, other),
        edit.silence(clip, start, end),
        edit.gain(clip, 6.0, start, end),
        edit.normalize_peak(clip, -3.0, start, end),
        edit.fade_in(clip, start=start, end=end),
        edit.fade_out(clip, curve="equal_power", start=start, end=end),
        edit.crossfade_join(clip, other, end - start),
        edit.reverse(clip, start, end),
        edit.mix(clip, other, start),
    ]
    np.testing.assert_array_equal(clip.samples, before)
    for result in results:
        assert result is not clip
        assert dict(result.metadata) == dict(clip.metadata)
        assert not np.shares_memory(result.samples, clip.samples)


# ---------------------------------------------------------------------------------- loudness


def sine(freq: float, seconds: float, rate: int, amplitude: float = 1.0) -> np.ndarray:
    t = np.arange(round(seconds * rate)) / rate
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def test_k_weighting_coefficients_match_bs1770_table_at_48k() -> None:
    (b1, a1), (b2, a2) = edit.k_weighting_coefficients(48_000)
    np.testing.assert_allclose(b1, [1.53512485958697, -2.69169618940638, 1.19839281085285])
    np.testing.assert_allclose(a1, [1.0, -1.69065929318241, 0.73248077421585])
    np.testing.assert_allclose(b2, [1.0, -2.0, 1.0])
    np.testing.assert_allclose(a2, [1.0, -1.99004745483398, 0.99007225036621])


def _k_response_db(rate: int, freqs: np.ndarray) -> np.ndarray:
    z = np.exp(-2j * np.pi * freqs / rate)
    response = np.ones_like(z)
    for b, a in edit.k_weighting_coefficients(rate):
        response *= (b[0] + b[1] * z + b[2] * z * z) / (a[0] + a[1] * z + a[2] * z * z)
    return 20 * np.log10(np.abs(response))


def test_k_weighting_response_is_the_same_at_every_rate() -> None:
    freqs = np.array([20.0, 40.0, 100.0, 500.0, 1000.0, 2000.0, 5000.0, 10_000.0, 15_000.0])
    at_48 = _k_response_db(48_000, freqs)
    assert at_48[0] == pytest.approx(-13.3, abs=0.1)  # RLB high-pass
    assert at_48[-1] == pytest.approx(4.04, abs=0.05)  # +4 dB shelf
    for rate in (44_100, 96_000):
        np.testing.assert_allclose(_k_response_db(rate, freqs), at_48, atol=0.03)


def _direct_form_reference(x: np.ndarray, rate: int) -> np.ndarray:
    y = x.astype(np.float64)
    for b, a in edit.k_weighting_coefficients(rate):
        out = np.zeros_like(y)
        for n in range(y.shape[1]):
            acc = b[0] * y[:, n]
            if n >= 1:
                acc = acc + b[1] * y[:, n - 1] - a[1] * out[:, n - 1]
            if n >= 2:
                acc = acc + b[2] * y[:, n - 2] - a[2] * out[:, n - 2]
            out[:, n] = acc
        y = out
    return y


def test_k_weighting_filter_is_exact_across_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    x = np.random.default_rng(7).standard_normal((2, 2500))
    reference = _direct_form_reference(x, 44_100)
    monkeypatch.setattr(edit, "_FILTER_CHUNK", 333)  # 320-frame chunks, a partial last one
    np.testing.assert_allclose(edit.k_weighting_filter(x, 44_100), reference, atol=1e-9)


@pytest.mark.parametrize("n", [1, 31, 32, 33, 517, 5000])
def test_linear_recurrence_matches_loop(n: int) -> None:
    """The vectorised scan behind the block IIR (several recursion levels for n = 5000)."""
    rng = np.random.default_rng(n)
    m = rng.standard_normal((3, 3))
    m *= 0.97 / np.max(np.abs(np.linalg.eigvals(m)))  # stable
    u = rng.standard_normal((2, n, 3))
    s = rng.standard_normal((2, 3))
    expected = np.empty_like(u)
    for k in range(n):
        expected[:, k] = s
        s = s @ m.T + u[:, k]
    states, end = edit._linear_recurrence(m, u, expected[:, 0].copy())
    np.testing.assert_allclose(states, expected, atol=1e-9)
    np.testing.assert_allclose(end, s, atol=1e-9)


@pytest.mark.parametrize("rate", [48_000, 44_100])
def test_full_scale_997hz_sine_reads_minus_3_01_lufs(rate: int) -> None:
    clip = Clip(sine(997, 5.0, rate), rate)
    assert edit.integrated_loudness(clip) == pytest.approx(-3.01, abs=0.1)
    stereo = Clip(np.stack([sine(997, 5.0, rate)] * 2), rate)  # two channels: +3.01 dB
    assert edit.integrated_loudness(stereo) == pytest.approx(0.0, abs=0.1)


def _stereo_sine_sequence(parts: list[tuple[float, float]], rate: int = 48_000) -> Clip:
    """EBU Tech 3341 style: 1 kHz stereo sine, consecutive (dBFS, seconds) parts."""
    mono = np.concatenate([sine(1000, sec, rate, 10 ** (db / 20)) for db, sec in parts])
    return Clip(np.stack([mono, mono]), rate)


@pytest.mark.parametrize(
    ("parts", "expected"),
    [
        ([(-23.0, 20.0)], -23.0),  # Tech 3341 case 1
        ([(-33.0, 20.0)], -33.0),  # case 2
        ([(-36.0, 10.0), (-23.0, 60.0), (-36.0, 10.0)], -23.0),  # case 3: relative gate
        ([(-72, 10.0), (-36, 10.0), (-23, 20.0), (-36, 10.0), (-72, 10.0)], -23.0),  # case 4
    ],
)
def test_ebu_tech_3341_gating_cases(parts: list[tuple[float, float]], expected: float) -> None:
    assert edit.integrated_loudness(_stereo_sine_sequence(parts)) == pytest.approx(
        expected, abs=0.1
    )


def _band_noise(kind: str, rate: int, seconds: float = 10.0, seed: int = 5) -> Clip:
    """Noise with the same spectral density (white or pink) in 20 Hz – 20 kHz at any rate."""
    n = round(seconds * rate)
    rng = np.random.default_rng(seed)
    spectrum = np.fft.rfft(rng.standard_normal(n))
    freqs = np.fft.rfftfreq(n, 1 / rate)
    band = (freqs >= 20) & (freqs <= 20_000)
    shape = np.where(band, 1.0 / np.sqrt(np.maximum(freqs, 1.0)) if kind == "pink" else 1.0, 0.0)
    x = np.fft.irfft(spectrum * shape, n)
    x *= 0.1 / np.sqrt(np.mean(x**2))  # same RMS -> same density in the shared band
    return Clip(x.astype(np.float32), rate)


@pytest.mark.parametrize("kind", ["white", "pink"])
def test_noise_loudness_consistent_across_rates(kind: str) -> None:
    at_44 = edit.integrated_loudness(_band_noise(kind, 44_100))
    at_48 = edit.integrated_loudness(_band_noise(kind, 48_000))
    assert abs(at_44 - at_48) < 0.2
    assert -30 < at_48 < -10  # RMS 0.1 (-20 dBFS): K-weighting moves it by a few dB only


def test_loudness_independent_of_chunking(monkeypatch: pytest.MonkeyPatch) -> None:
    clip = _band_noise("pink", 11_025, seconds=3.0)  # rate / 10 is not an integer
    whole = edit.integrated_loudness(clip)
    monkeypatch.setattr(edit, "_FILTER_CHUNK", 1237)
    assert edit.integrated_loudness(clip) == pytest.approx(whole, abs=1e-9)


def test_silence_and_short_clips() -> None:
    assert edit.integrated_loudness(Clip.silence(2.0, 48_000, 2)) == -math.inf
    quiet = Clip(sine(1000, 2.0, 48_000, 10 ** (-80 / 20)), 48_000)  # below the -70 gate
    assert edit.integrated_loudness(quiet) == -math.inf
    with pytest.raises(ValueError, match=r"at least 0\.4 s"):
        edit.integrated_loudness(Clip(np.zeros(19_199, dtype=np.float32), 48_000))
    assert edit.integrated_loudness(Clip(sine(997, 0.4, 48_000), 48_000)) == pytest.approx(
        -3.01, abs=0.1
    )


def test_surround_channel_weights() -> None:
    tone = sine(1000, 2.0, 48_000, 0.5)
    samples = np.zeros((6, tone.size), dtype=np.float32)
    samples[0] = tone
    front = edit.integrated_loudness(Clip(samples, 48_000))
    samples[0], samples[4] = 0, tone
    surround = edit.integrated_loudness(Clip(samples, 48_000))
    assert surround - front == pytest.approx(10 * math.log10(1.41), abs=0.01)
    samples[4], samples[3] = 0, tone  # LFE only
    assert edit.integrated_loudness(Clip(samples, 48_000)) == -math.inf


def test_normalize_loudness_hits_target() -> None:
    clip = _band_noise("pink", 48_000, seconds=4.0)
    out = edit.normalize_loudness(clip, -18.0)
    assert edit.integrated_loudness(out) == pytest.approx(-18.0, abs=0.01)
    ratio = out.samples[0, 1000] / clip.samples[0, 1000]
    np.testing.assert_allclose(out.samples, clip.samples * ratio, rtol=1e-5, atol=1e-8)
    silent = Clip.silence(1.0, 48_000)
    assert edit.normalize_loudness(silent).equals(silent)
