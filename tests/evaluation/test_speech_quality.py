"""Speech continuation metrics on espeak-ng voices: speaker similarity separates voices, pitch
differences come out in semitones, DNSMOS prefers clean speech to noisy speech."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import numpy.typing as npt
import pytest
from eval_signals import RATE, TEXT_A, TEXT_B

pytest.importorskip("resemblyzer", reason="needs the [eval] extra (resemblyzer)")
pytest.importorskip("librosa", reason="needs the [eval] extra (librosa)")

from audiogen_studio.evaluation import speech_quality as sq
from audiogen_studio.evaluation.common import EvaluationError

Say = Callable[..., npt.NDArray[np.float32]]


def test_same_speaker_scores_higher_than_different_speakers(say: Say) -> None:
    a = say(TEXT_A, "en-us+m3")
    same = sq.speaker_similarity(a, say(TEXT_B, "en-us+m3"), RATE)
    other_female = sq.speaker_similarity(a, say(TEXT_B, "en-us+f2"), RATE)
    other_male = sq.speaker_similarity(a, say(TEXT_B, "en-us+m7"), RATE)
    assert same > 0.82
    assert other_female < 0.75
    assert same > max(other_female, other_male) + 0.1


def test_speaker_embedding_is_unit_norm_and_rate_independent(say: Say) -> None:
    from audiogen_studio.audio.io import resample_array

    a = say()
    e16 = sq.speaker_embedding(a, RATE)
    e44 = sq.speaker_embedding(resample_array(a[None], RATE, 44_100)[0], 44_100)
    assert e16.shape == (256,)
    assert float(np.linalg.norm(e16)) == pytest.approx(1.0, abs=1e-4)
    assert float(np.dot(e16, e44)) > 0.97


def test_noise_still_gets_an_embedding_but_silence_does_not(say: Say) -> None:
    noise = (0.1 * np.random.default_rng(0).standard_normal(2 * RATE)).astype(np.float32)
    assert sq.speaker_similarity(say(), noise, RATE) < 0.7
    with pytest.raises(EvaluationError, match="silent"):
        sq.speaker_embedding(np.zeros(RATE, dtype=np.float32), RATE)


def test_median_pitch_difference_is_in_semitones(say: Say) -> None:
    low = sq.median_f0(say(TEXT_A, "en-us+m3", pitch=50), RATE)
    high = sq.median_f0(say(TEXT_B, "en-us+m3", pitch=80), RATE)
    again = sq.median_f0(say(TEXT_B, "en-us+m3", pitch=50), RATE)
    assert low is not None and high is not None and again is not None
    assert 70 < low < 200
    assert sq.semitones(low, high) == pytest.approx(5.0, abs=1.0)  # espeak-ng: +30 pitch
    assert (sq.semitones(low, again) or 99.0) < 1.0
    assert sq.semitones(None, high) is None
    assert sq.median_f0(np.zeros(RATE, dtype=np.float32), RATE) is None


def test_dnsmos_prefers_clean_speech(say: Say) -> None:
    pytest.importorskip("speechmos", reason="needs the [eval] extra (speechmos)")
    pytest.importorskip("onnxruntime", reason="needs the [eval] extra (onnxruntime)")
    x = say()
    noise = np.asarray(np.random.default_rng(1).standard_normal(x.shape[0]), dtype=np.float32)
    noisy = x + 0.1 * noise
    clean, bad = sq.dnsmos(x, RATE), sq.dnsmos(noisy, RATE)
    assert clean.ovrl is not None and bad.ovrl is not None
    assert clean.bak is not None and bad.bak is not None
    assert 1.0 <= bad.ovrl < clean.ovrl - 0.5 <= 5.0
    assert bad.bak < clean.bak - 1.0


def test_score_speech_continuation_of_one_voice_and_of_two(say: Say) -> None:
    prompt = say(TEXT_A, "en-us+m3")
    same = sq.score_speech_continuation(prompt, say(TEXT_B, "en-us+m3"), RATE, with_dnsmos=False)
    other = sq.score_speech_continuation(
        prompt, say(TEXT_B, "en-us+f2", pitch=70), RATE, with_dnsmos=False
    )
    assert same.dnsmos is None and same.dnsmos_prompt is None
    assert same.speaker_cosine is not None and other.speaker_cosine is not None
    assert same.speaker_cosine > other.speaker_cosine + 0.1
    assert same.pitch_difference_semitones is not None
    assert other.pitch_difference_semitones is not None
    assert same.pitch_difference_semitones < 1.0 < other.pitch_difference_semitones
