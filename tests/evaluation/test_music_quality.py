"""Music continuation metrics on plucked riffs: a transposed riff loses key agreement and chroma
correlation, a faster riff changes the tempo ratio."""

from __future__ import annotations

import numpy as np
import pytest
from eval_signals import RATE, riff

pytest.importorskip("librosa", reason="needs the [eval] extra (librosa)")
pytest.importorskip("mir_eval", reason="needs the [eval] extra (mir_eval)")

from audiogen_studio.evaluation import music_quality as mq


def test_key_of_profiles_themselves() -> None:
    for name, (major, minor) in mq.KEY_PROFILES.items():
        for shift in (0, 5, 9):
            est = mq.key_from_chroma(np.roll(major, shift), profiles=name)
            assert est.key == f"{mq.PITCH_CLASSES[shift]} major"
            assert est.correlation == pytest.approx(1.0)
            assert mq.key_from_chroma(np.roll(minor, shift), profiles=name).mode == "minor"
    with pytest.raises(ValueError):
        mq.key_from_chroma(np.ones(11))
    with pytest.raises(ValueError):
        mq.key_from_chroma(np.ones(12), profiles="nope")


def test_a_c_major_riff_is_in_c_major_and_its_transposition_is_not() -> None:
    assert mq.estimate_key(riff(), RATE).key == "C major"
    assert mq.estimate_key(riff(semitones=7), RATE).key == "G major"
    assert mq.key_agreement("C major", "C major") == 1.0
    assert mq.key_agreement("C major", "G major") == 0.5
    assert mq.key_agreement("C major", "F# major") == 0.0


def test_key_shifted_continuation_scores_lower() -> None:
    prompt = riff(seed=0)
    same = mq.score_music_continuation(prompt, riff(seed=1), RATE)
    shifted = mq.score_music_continuation(prompt, riff(semitones=6, seed=1), RATE)
    assert same.key_score == 1.0
    assert shifted.key_score == 0.0
    assert same.key_prompt == same.key_continuation == "C major"
    assert same.chroma_correlation is not None and shifted.chroma_correlation is not None
    assert same.chroma_correlation > 0.9
    assert shifted.chroma_correlation < same.chroma_correlation - 0.5


def test_tempo_ratio_follows_the_note_rate() -> None:
    prompt = riff(note_seconds=0.3, repeats=3, seed=0)  # 200 notes/min
    same = mq.score_music_continuation(prompt, riff(note_seconds=0.3, repeats=3, seed=2), RATE)
    faster = mq.score_music_continuation(prompt, riff(note_seconds=0.24, repeats=3, seed=2), RATE)
    assert same.tempo_ratio is not None and faster.tempo_ratio is not None
    assert same.tempo_ratio == pytest.approx(1.0, abs=0.05)
    assert faster.tempo_ratio_folded == pytest.approx(1.25, abs=0.08)
    assert mq.fold_octave(2.1) == pytest.approx(1.05)
    assert mq.fold_octave(0.5) == pytest.approx(1.0)


def test_silence_has_no_tempo() -> None:
    assert mq.estimate_tempo(np.zeros(3 * RATE, dtype=np.float32), RATE) is None
    flat = np.ones(12)
    assert mq.chroma_correlation(flat, np.arange(12.0)) is None
