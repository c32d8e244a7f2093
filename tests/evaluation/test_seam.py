"""The seam: a click or a loudness jump at the junction ranks at the top of the prompt's own
distribution; a clean crossfade, or the real continuation, stays inside it."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest
from eval_signals import RATE, riff

pytest.importorskip("scipy", reason="needs the [eval] extra (scipy)")

from audiogen_studio.audio import edit
from audiogen_studio.audio.clip import Clip
from audiogen_studio.evaluation.common import EvaluationError, percentile_of
from audiogen_studio.evaluation.seam import click_energy_db, loudness_jump_db, score_seam

J = 3 * RATE  # the junction


def _tone(seconds: float = 5.0) -> npt.NDArray[np.float32]:
    """A sustained harmonic tone with a slow tremolo (no attacks of its own)."""
    t = np.arange(round(seconds * RATE)) / RATE
    x = sum(np.sin(2 * np.pi * 220 * k * t) / k for k in range(1, 6))
    return (0.2 * x * (1 + 0.3 * np.sin(2 * np.pi * 3 * t))).astype(np.float32)


def _crossfade(
    prompt: npt.NDArray[np.float32], lead_and_rest: npt.NDArray[np.float32], n: int
) -> npt.NDArray[np.float32]:
    joined = edit.crossfade_join(Clip(prompt[None], RATE), Clip(lead_and_rest[None], RATE), n)
    out: npt.NDArray[np.float32] = joined.samples[0]
    return out


def test_real_continuations_sit_inside_the_prompts_range() -> None:
    for signal in (_tone(), riff(note_seconds=0.35, repeats=3)):  # junction mid-note
        s = score_seam(signal[: J + 2 * RATE], RATE, J)
        assert s.click_percentile < 90
        assert s.loudness_percentile < 95
        assert s.junction_seconds == 3.0 and s.points == 500


def test_a_click_at_the_seam_ranks_at_the_top() -> None:
    x = _tone()
    x[J] += 0.3
    s = score_seam(x, RATE, J)
    assert s.click_percentile >= 99
    assert s.click_db > s.click_prompt_p95_db + 10


def test_a_hard_cut_clicks_and_a_crossfade_does_not() -> None:
    x = _tone(6.0)
    offset = 37  # the continuation starts out of phase with the prompt
    cut = np.concatenate([x[:J], x[J + offset :]])
    assert score_seam(cut, RATE, J).click_percentile >= 99
    lead = x[J - 160 + offset : J + offset]  # the engine's rendering of the prompt's last 10 ms
    smooth = _crossfade(x[:J], np.concatenate([lead, x[J + offset :]]), 160)
    assert smooth.shape == cut.shape
    assert score_seam(smooth, RATE, J).click_percentile < 90
    r = riff(note_seconds=0.35, repeats=3)  # the junction falls mid-note
    smooth_riff = _crossfade(r[:J], np.concatenate([r[J - 160 + 57 : J + 57], r[J + 57 :]]), 160)
    assert score_seam(smooth_riff, RATE, J).click_percentile < 95


def test_a_loudness_jump_ranks_at_the_top() -> None:
    x = _tone()
    louder = np.concatenate([x[:J], 4 * x[J:]])  # +12 dB
    s = score_seam(louder, RATE, J)
    assert 9.0 < s.loudness_jump_db < 16.0  # 12 dB, give or take the tremolo
    assert s.loudness_percentile == 100.0
    assert s.loudness_jump_db > s.loudness_prompt_p95_db + 5


def test_percentiles_and_windows() -> None:
    assert percentile_of(5.0, [1, 2, 3, 4]) == 100.0
    assert percentile_of(0.0, [1, 2, 3, 4]) == 0.0
    assert percentile_of(2.0, [2, 2]) == 50.0
    x = np.zeros(RATE, dtype=np.float32)
    x[RATE // 2] = 1.0
    e = click_energy_db(x, RATE, [RATE // 2, RATE // 4])
    assert e[0] > -40 and e[1] == -120.0  # only the window around the impulse hears it
    step = np.concatenate([np.full(RATE, 0.1), np.full(RATE, 0.2)]).astype(np.float32)
    assert loudness_jump_db(step, RATE, [RATE])[0] == pytest.approx(6.02, abs=0.01)


def test_bad_junctions_are_clear_errors() -> None:
    x = _tone()
    with pytest.raises(EvaluationError, match="both sides"):
        score_seam(x, RATE, x.shape[0] - 10)
    with pytest.raises(EvaluationError, match="too short"):
        score_seam(x, RATE, RATE // 4)
    with pytest.raises(EvaluationError, match="no band"):
        score_seam(x[::2], RATE // 2, J // 2)
