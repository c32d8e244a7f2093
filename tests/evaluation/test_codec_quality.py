"""Codec metrics and the Opus round trip on synthesized speech: each figure orders clean, coded
and destroyed audio the right way, and any codec-shaped object can be evaluated."""

from __future__ import annotations

import math
import shutil
from collections.abc import Callable

import numpy as np
import numpy.typing as npt
import pytest
import torch
from eval_signals import RATE, TEXT_B

pytest.importorskip("pesq", reason="needs the [eval] extra (pesq)")
pytest.importorskip("pystoi", reason="needs the [eval] extra (pystoi)")

from audiogen_studio.evaluation import codec_quality as cq
from audiogen_studio.evaluation.common import EvaluationError

Say = Callable[..., npt.NDArray[np.float32]]
needs_opus = pytest.mark.skipif(
    shutil.which("opusenc") is None or shutil.which("opusdec") is None,
    reason="opus-tools is not installed (scripts/setup.sh installs it)",
)


def _pesq(ref: npt.ArrayLike, deg: npt.ArrayLike, rate: int = RATE) -> float:
    value = cq.pesq_wb(ref, deg, rate)
    assert value is not None
    return value


def _noise(n: int, amp: float = 0.1) -> npt.NDArray[np.float32]:
    return (amp * np.random.default_rng(0).standard_normal(n)).astype(np.float32)


def test_pesq_of_a_clean_copy_is_high_and_of_noise_low(say: Say) -> None:
    x = say()
    assert _pesq(x, x.copy()) > 4.0
    assert _pesq(x, _noise(x.shape[0])) < 1.5
    noisy = x + _noise(x.shape[0], 0.02)
    assert 1.0 < _pesq(x, noisy) < 4.0


def test_pesq_resamples_other_rates(say: Say) -> None:
    from audiogen_studio.audio.io import resample_array

    x = resample_array(say()[None], RATE, 24_000)[0]
    assert _pesq(x, x.copy(), 24_000) > 4.0


def test_estoi_orders_clean_noisy_and_noise(say: Say) -> None:
    x = say()
    clean = cq.estoi(x, x.copy(), RATE)
    noisy = cq.estoi(x, x + _noise(x.shape[0], 0.05), RATE)
    noise = cq.estoi(x, _noise(x.shape[0]), RATE)
    assert clean is not None and noisy is not None and noise is not None
    assert clean > 0.99 > noisy > noise
    assert noise < 0.3


def test_visqol_speech_mode_orders_clean_and_noise(say: Say) -> None:
    pytest.importorskip("visqol", reason="needs the [eval] extra (visqol-python)")
    pytest.importorskip("ai_edge_litert", reason="needs the [eval] extra (ai-edge-litert)")
    x = say()
    clean = cq.visqol(x, x.copy(), RATE)
    noisy = cq.visqol(x, x + _noise(x.shape[0], 0.03), RATE)
    assert clean is not None and noisy is not None
    assert clean > 4.5
    assert noisy < clean - 1.5


def test_log_mel_l1_is_zero_for_a_copy_and_grows_with_damage(say: Say) -> None:
    x = say()
    assert cq.log_mel_l1(x, x.copy(), RATE) == pytest.approx(0.0, abs=1e-6)
    slight = cq.log_mel_l1(x, x + _noise(x.shape[0], 0.003), RATE)
    heavy = cq.log_mel_l1(x, x + _noise(x.shape[0], 0.1), RATE)
    assert 0 < slight < heavy
    mel = cq.log_mel(x, RATE)
    assert mel.shape[0] == 80 and mel.shape[1] == 1 + x.shape[0] // 256


@needs_opus
def test_opus_round_trip_keeps_length_and_orders_bitrates(say: Say) -> None:
    x = say()
    six = cq.opus_round_trip(x, RATE, 6)
    twelve = cq.opus_round_trip(x, RATE, 12)
    assert six.audio.shape == x.shape == twelve.audio.shape
    assert six.audio.dtype == np.float32
    # the decoded audio is time-aligned with the input (opusdec removes the pre-skip)
    lags = np.arange(-40, 41)
    corr = [float(np.dot(x[100:-100], np.roll(twelve.audio, -k)[100:-100])) for k in lags]
    assert abs(int(lags[int(np.argmax(corr))])) <= 2
    p6, p12 = _pesq(x, six.audio), _pesq(x, twelve.audio)
    assert p12 > p6 + 0.5
    assert 1.2 < p6 < 3.5
    assert six.kbps_file > twelve.kbps_file * 0.4
    assert six.kbps_file < twelve.kbps_file
    if six.kbps_payload is not None:  # opusinfo present
        assert 4.0 < six.kbps_payload < 8.0


@needs_opus
def test_opus_at_another_rate_comes_back_at_that_rate(say: Say) -> None:
    from audiogen_studio.audio.io import resample_array

    x = resample_array(say()[None], RATE, 22_050)[0]
    out = cq.opus_round_trip(x, 22_050, 24)
    assert out.audio.shape == x.shape
    assert _pesq(x, out.audio, 22_050) > 3.0


def test_opus_missing_or_below_its_floor_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch, say: Say
) -> None:
    x = say()
    with pytest.raises(EvaluationError, match="below 6"):
        cq.opus_round_trip(x, RATE, 3)
    monkeypatch.setattr("shutil.which", lambda name: None)
    assert not cq.opus_available()
    with pytest.raises(cq.OpusUnavailableError, match="opus-tools"):
        cq.opus_round_trip(x, RATE, 6)


class _Config:
    def __init__(self, rate: int, bits: float, n_q: int = 4) -> None:
        self.sample_rate = rate
        self.bits_per_second = bits
        self.n_q = n_q


class _DecimatingCodec(torch.nn.Module):
    """A stand-in codec: keeps every ``factor``-th sample (low-passed) as its "codes" and
    interpolates back; an optional ``latency`` delays the decoded audio like the mel codec."""

    def __init__(self, factor: int, *, rate: int = RATE, latency: int = 0) -> None:
        super().__init__()
        self.factor = factor
        self.config = _Config(rate, 16.0 * rate / factor)
        self.latency = latency
        self.calls: list[tuple[int, ...]] = []

    def encode(self, audio: torch.Tensor) -> torch.Tensor:
        assert audio.ndim == 3 and audio.shape[:2] == (1, 1)
        self.calls.append(tuple(audio.shape))
        if self.factor == 1:
            return audio
        low = torch.nn.functional.avg_pool1d(audio, self.factor, self.factor)
        return low

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        out = torch.nn.functional.interpolate(codes, scale_factor=self.factor, mode="linear")
        return torch.nn.functional.pad(out, (self.latency, 0))


def test_codec_round_trip_undoes_a_latency_and_keeps_the_length(say: Say) -> None:
    x = say()
    codec = _DecimatingCodec(1, latency=1536)
    y = cq.codec_round_trip(codec, x, RATE)
    assert y.shape == x.shape
    np.testing.assert_allclose(y, x, atol=1e-6)
    assert codec.calls[0][-1] == x.shape[0] + 1536  # padded so the lagging tail is decoded


def test_codec_round_trip_resamples_to_the_codec_rate(say: Say) -> None:
    x = say()
    codec = _DecimatingCodec(1, rate=24_000)
    y = cq.codec_round_trip(codec, x, RATE)
    assert y.shape == x.shape
    assert _pesq(x, y) > 4.0


def test_evaluate_codec_ranks_codecs_and_reports_opus(say: Say) -> None:
    clips = [say()[: 3 * RATE], say(TEXT_B, "en-us+f2")[: 3 * RATE]]
    good = cq.evaluate_codec(_DecimatingCodec(1), clips, RATE, opus=False, with_visqol=False)
    bad = cq.evaluate_codec(_DecimatingCodec(8), clips, RATE, opus=False, with_visqol=False)
    assert (good.systems["codec"].mean.pesq_wb or 0.0) > 4.0
    bad_mean = bad.systems["codec"].mean
    assert bad_mean.pesq_wb is not None and bad_mean.pesq_wb < 3.0
    assert bad_mean.log_mel_l1 is not None and bad_mean.log_mel_l1 > 0.1
    assert bad.codec_kbps == pytest.approx(32.0)
    assert len(bad.systems["codec"].clips) == 2 and bad.clip_seconds == [3.0, 3.0]
    assert set(bad.systems) == {"codec"}
    if cq.opus_available():
        with_opus = cq.evaluate_codec(
            _DecimatingCodec(40), clips[:1], RATE, opus=True, with_visqol=False
        )
        same, double = with_opus.systems["opus_same"], with_opus.systems["opus_double"]
        assert with_opus.codec_kbps == pytest.approx(6.4)
        assert same.kbps == pytest.approx(6.4) and double.kbps == pytest.approx(12.8)
        assert same.kbps_measured is not None and same.kbps_measured < double.kbps_measured  # type: ignore[operator]
        assert same.mean.pesq_wb < double.mean.pesq_wb  # type: ignore[operator]


def test_dnsmos_scores_each_re_synthesis_next_to_the_input(say: Say) -> None:
    pytest.importorskip("speechmos", reason="needs the [eval] extra (speechmos)")
    from audiogen_studio.evaluation.held_out import codec_summary

    clips = [say()[: 3 * RATE]]
    plain = cq.evaluate_codec(_DecimatingCodec(1), clips, RATE, opus=False, with_visqol=False)
    assert plain.input_dnsmos is None and plain.systems["codec"].mean.dnsmos is None
    assert "dnsmos" not in codec_summary(plain)
    kept, muffled = (
        cq.evaluate_codec(
            _DecimatingCodec(f), clips, RATE, opus=False, with_visqol=False, with_dnsmos=True
        )
        for f in (1, 8)
    )
    assert kept.input_dnsmos is not None and 1.0 < kept.input_dnsmos < 5.0
    # the identity codec sounds exactly like its input; a 1 kHz band does not
    assert kept.systems["codec"].mean.dnsmos == pytest.approx(kept.input_dnsmos, abs=1e-6)
    assert muffled.systems["codec"].mean.dnsmos < kept.input_dnsmos - 0.2  # type: ignore[operator]
    summary = codec_summary(muffled)
    assert summary["dnsmos_input"]["value"] == pytest.approx(kept.input_dnsmos, abs=1e-3)
    assert summary["dnsmos"]["value"] == pytest.approx(
        muffled.systems["codec"].mean.dnsmos, abs=1e-3
    )


def test_low_bitrate_codecs_get_opus_at_its_floor(say: Say) -> None:
    if not cq.opus_available():
        pytest.skip("opus-tools is not installed")
    codec = _DecimatingCodec(1)
    codec.config = _Config(RATE, 2000.0)
    report = cq.evaluate_codec(codec, [say()[: 2 * RATE]], RATE, with_visqol=False)
    assert report.systems["opus_same"].kbps == 6.0
    assert "floor" in report.systems["opus_same"].note
    assert report.systems["opus_double"].kbps == 6.0


def test_the_real_codec_fits_the_interface(say: Say) -> None:
    from audiogen_studio.models.codec import NAMED_CODEC_CONFIGS, Codec

    torch.manual_seed(0)
    codec = Codec(NAMED_CODEC_CONFIGS["tiny"]).eval()
    x = say()[:RATE]
    y = cq.codec_round_trip(codec, x, RATE)
    assert y.shape == x.shape and np.all(np.isfinite(y))
    assert cq.codec_bitrate(codec) == pytest.approx(codec.config.bits_per_second)
    half = cq.codec_bitrate(codec, n_q=1)
    assert half == pytest.approx(codec.config.bits_per_second / codec.config.n_q)
    report = cq.evaluate_codec(codec, [x], RATE, n_q=1, opus=False, with_visqol=False)
    assert report.n_q == 1 and report.beam == 1
    assert report.codec_kbps == pytest.approx(half / 1000)
    # a beam-searched encoder: same bitrate, the codes the codec's own search finds
    searched = cq.evaluate_codec(codec, [x], RATE, opus=False, with_visqol=False, beam=4)
    assert searched.beam == 4
    assert searched.codec_kbps == pytest.approx(codec.config.bits_per_second / 1000)
    with torch.inference_mode():
        codes = codec.encode(torch.from_numpy(x.copy())[None, None], beam=4)
        expected = codec.decode(codes)[0, 0, : x.shape[0]].numpy()
    np.testing.assert_allclose(cq.codec_round_trip(codec, x, RATE, beam=4), expected, atol=1e-6)
    assert not np.allclose(cq.codec_round_trip(codec, x, RATE), expected, atol=1e-6)


def test_silence_and_bad_input_are_handled(say: Say) -> None:
    silent = np.zeros(RATE, dtype=np.float32)
    assert cq.pesq_wb(silent, silent, RATE) is None  # no utterance: no score, no crash
    x = say()
    assert _pesq(x, np.zeros_like(x)) < 1.2  # a silent codec scores at the floor
    with pytest.raises(EvaluationError):
        cq.log_mel_l1(np.array([], dtype=np.float32), silent, RATE)
    with pytest.raises(EvaluationError, match="NaN"):
        cq.log_mel_l1(np.full(RATE, math.nan, dtype=np.float32), silent, RATE)
    with pytest.raises(EvaluationError, match="no clips"):
        cq.evaluate_codec(_DecimatingCodec(1), [], RATE)
