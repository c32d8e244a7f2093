"""Ranking takes by how well their continuation matches the prompt (engine/take_ranking.py)."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest

from audiogen_studio.engine.take_ranking import (
    RankingError,
    bundle_aspect,
    match_score,
    rank,
)

RATE = 16_000


def _shaped_noise(seconds: float, lo: float, hi: float, seed: int) -> npt.NDArray[np.float32]:
    """Noise band-limited to ``lo..hi`` Hz, with a syllable-like loudness envelope."""
    n = round(seconds * RATE)
    spectrum = np.fft.rfft(np.random.default_rng(seed).standard_normal(n))
    f = np.fft.rfftfreq(n, 1 / RATE)
    spectrum[(f < lo) | (f > hi)] = 0
    x = np.fft.irfft(spectrum, n)
    envelope = 0.55 + 0.45 * np.sin(2 * np.pi * 4 * np.arange(n) / RATE)
    return (0.2 * x / np.abs(x).max() * envelope).astype(np.float32)


def _chord(seconds: float, midi: list[int], seed: int = 0) -> npt.NDArray[np.float32]:
    """Plucked-sounding notes of ``midi`` (a chord played as an arpeggio, repeated)."""
    rng = np.random.default_rng(seed)
    n = round(seconds * RATE)
    t = np.arange(n) / RATE
    x = np.zeros(n)
    note = 0.25
    for k in range(int(seconds / note)):
        m = midi[k % len(midi)] + 12 * int(rng.integers(0, 2))
        f = 440.0 * 2 ** ((m - 69) / 12)
        start = round(k * note * RATE)
        tt = t[: n - start]
        x[start:] += np.exp(-tt * 6) * (
            np.sin(2 * np.pi * f * tt) + 0.3 * np.sin(4 * np.pi * f * tt)
        )
    return (0.2 * x / np.abs(x).max()).astype(np.float32)


def test_voice_prefers_the_continuation_with_the_prompts_spectrum() -> None:
    prompt = _shaped_noise(3.0, 100, 2500, seed=0)
    same = _shaped_noise(2.0, 100, 2500, seed=1)  # other noise, same spectrum
    brighter = _shaped_noise(2.0, 1500, 6000, seed=2)
    assert match_score(prompt, same, RATE, "voice") > match_score(prompt, brighter, RATE, "voice")
    assert rank(prompt, [brighter, same], RATE, "voice")[0][0] == 1
    # the score is minus a distance: at most 0, and 0 for identical statistics
    assert match_score(prompt, prompt, RATE, "voice") == pytest.approx(0.0, abs=1e-6)
    assert match_score(prompt, brighter, RATE, "voice") < 0
    # loudness alone moves the mean of every band equally, so it costs little beside timbre
    quieter = 0.5 * same
    assert match_score(prompt, quieter, RATE, "voice") > match_score(
        prompt, brighter, RATE, "voice"
    )


def test_pitch_prefers_the_continuation_in_the_prompts_key() -> None:
    c_major = [60, 64, 67, 72]
    prompt = _chord(3.0, c_major, seed=0)
    same_key = _chord(2.0, [64, 67, 72, 60], seed=1)  # the same pitch classes, other order
    tritone = _chord(2.0, [66, 70, 73, 78], seed=2)  # F# major: none of C major's triad
    good = match_score(prompt, same_key, RATE, "pitch")
    bad = match_score(prompt, tritone, RATE, "pitch")
    assert good > 0.8 and bad < 0.2 and -1.0 <= bad <= good <= 1.0
    order = rank(prompt, [tritone, same_key, tritone], RATE, "pitch")
    assert [i for i, _ in order] == [1, 0, 2]  # best first, ties in their order
    assert order[0][1] == pytest.approx(good, abs=1e-6)


def _beats(seconds: float, period: float, seed: int) -> npt.NDArray[np.float32]:
    """Decaying noise bursts every ``period`` s, every fourth one louder (a bar of four)."""
    rng = np.random.default_rng(seed)
    n = round(seconds * RATE)
    x = np.zeros(n)
    burst = rng.standard_normal(round(0.12 * RATE)) * np.exp(-np.arange(round(0.12 * RATE)) / 400)
    for k in range(int(seconds / period) + 1):
        start = round(k * period * RATE)
        piece = burst[: max(0, n - start)] * (1.0 if k % 4 == 0 else 0.5)
        x[start : start + piece.size] += piece
    return (0.2 * x / np.abs(x).max()).astype(np.float32)


def test_rhythm_prefers_the_continuation_at_the_prompts_pulse() -> None:
    prompt = _beats(3.0, 0.5, seed=0)  # 120 BPM
    same = _beats(4.0, 0.5, seed=1)  # other bursts, the same pulse
    slower, faster = _beats(4.0, 0.6, seed=2), _beats(4.0, 0.4, seed=3)  # 100 and 150 BPM
    good = match_score(prompt, same, RATE, "rhythm")
    assert -1.0 <= match_score(prompt, slower, RATE, "rhythm") < good <= 1.0
    assert match_score(prompt, faster, RATE, "rhythm") < good
    assert good > 0.8
    assert rank(prompt, [slower, same, faster], RATE, "rhythm")[0][0] == 1
    # pitch+rhythm is the sum of the two scores
    chord = _chord(3.0, [60, 64, 67]) + prompt
    take = _chord(4.0, [64, 67, 72], seed=4) + same
    both = match_score(chord, take, RATE, "pitch+rhythm")
    assert both == pytest.approx(
        match_score(chord, take, RATE, "pitch") + match_score(chord, take, RATE, "rhythm"),
        abs=1e-9,
    )
    # silence has no pulse: a flat envelope scores 0, not NaN
    assert match_score(prompt, np.zeros(2 * RATE, np.float32), RATE, "rhythm") == 0.0


def test_channels_and_rates_are_handled_and_bad_audio_is_refused() -> None:
    prompt = _chord(2.0, [60, 64, 67])
    prompt.setflags(write=False)  # a Clip's samples are read-only: scored without a warning
    stereo = np.stack([prompt, prompt])
    assert match_score(stereo, prompt, RATE, "pitch") == pytest.approx(
        match_score(prompt, prompt, RATE, "pitch"), abs=1e-6
    )
    # the same audio at 22.05 kHz: resampled to 16 kHz before the analysis
    t = np.arange(round(2.0 * 22_050)) / 22_050
    a440 = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    t16 = np.arange(2 * RATE) / RATE
    a440_16k = (0.3 * np.sin(2 * np.pi * 440 * t16)).astype(np.float32)
    assert match_score(a440, a440, 22_050, "pitch") == pytest.approx(1.0, abs=1e-5)
    assert match_score(a440_16k, a440_16k, RATE, "pitch") == pytest.approx(1.0, abs=1e-5)
    with pytest.raises(RankingError, match="too short"):
        match_score(prompt, prompt[:1000], RATE, "voice")
    bad = prompt.copy()
    bad[10] = np.nan
    with pytest.raises(RankingError, match="NaN"):
        match_score(prompt, bad, RATE, "pitch")
    with pytest.raises(RankingError, match="unknown aspect"):
        match_score(prompt, prompt, RATE, "timbre")  # type: ignore[arg-type]
    with pytest.raises(RankingError, match="shape"):
        match_score(np.zeros((2, 2, 100)), prompt, RATE, "voice")


def test_a_bundle_names_its_aspect() -> None:
    assert bundle_aspect({}) is None
    assert bundle_aspect({"rank_by": "voice"}) == "voice"
    assert bundle_aspect({"rank_by": "pitch", "semantic_cache": 0.5}) == "pitch"
    with pytest.raises(RankingError, match="rank_by must be voice or pitch"):
        bundle_aspect({"rank_by": "loudness"})
