"""Prompt-by-prompt comparison of two evaluations."""

from __future__ import annotations

import math

import pytest

from audiogen_studio.evaluation.paired import paired_differences


def test_a_small_consistent_gain_shows_where_the_runs_own_errors_hide_it() -> None:
    # prompts of very different difficulty; b is 0.05 better on each, give or take 0.01
    hard = [0.1 * i for i in range(10)]
    a = {f"p{i}": {"key_score": v} for i, v in enumerate(hard)}
    b = {f"p{i}": {"key_score": v + 0.05 + (0.01 if i % 2 else -0.01)} for i, v in enumerate(hard)}
    row = paired_differences(a, b)["key_score"]
    assert row["prompts"] == 10 and row["difference"] == pytest.approx(0.05)
    assert row["stderr"] == pytest.approx(0.01 * math.sqrt(10 / 9) / math.sqrt(10), abs=1e-4)
    assert row["z"] is not None and row["z"] > 10
    # (each run's own standard error is ~0.09: the gain hides in it, not in the pairs)
    assert row["a"] == pytest.approx(0.45) and row["b"] == pytest.approx(0.5)


def test_only_prompts_and_figures_both_runs_have_count() -> None:
    a = {
        "x": {"key_score": 0.5, "tempo_ratio": 1.0},
        "y": {"key_score": 0.2},
        "z": {"key_score": 1.0},
    }
    b = {
        "x": {"key_score": 0.7, "tempo_ratio": None},
        "y": {"key_score": 0.2},
        "w": {"key_score": 0.0},
    }
    out = paired_differences(a, b)
    assert set(out) == {"key_score"}  # tempo: b has no value for x
    assert out["key_score"]["prompts"] == 2 and out["key_score"]["difference"] == pytest.approx(0.1)
    assert (
        paired_differences({"x": {"key_score": 0.5}}, {"x": {"key_score": 0.5}})["key_score"][
            "stderr"
        ]
        is None
    )
    assert paired_differences(a, {}) == {}
