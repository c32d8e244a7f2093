"""Vocoder evaluation: the Griffin-Lim baseline rebuilds speech from the vocoder's own mel
frames (aligned, intelligible), and a vocoder engine is scored beside it on the same clips."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import numpy.typing as npt
import pytest
import torch

pytest.importorskip("pesq", reason="needs the [eval] extra (pesq)")
pytest.importorskip("pystoi", reason="needs the [eval] extra (pystoi)")

from audiogen_studio.engine.wavenet_pipeline import WaveNetEngine
from audiogen_studio.evaluation.codec_quality import estoi, log_mel_l1
from audiogen_studio.evaluation.common import EvaluationError
from audiogen_studio.evaluation.vocoder_quality import evaluate_vocoder, griffin_lim_from_log_mel
from audiogen_studio.models.wavenet import WaveNet, named_config

Say = Callable[..., npt.NDArray[np.float32]]
RATE = 16_000


def test_griffin_lim_baseline_is_aligned_and_intelligible(say: Say) -> None:
    x = say("the quick brown fox jumps over the lazy dog")[: 3 * RATE]
    config = named_config("default", mel=True)
    y = griffin_lim_from_log_mel(x, config)
    assert y.shape == x.shape and np.isfinite(y).all()
    aligned = estoi(x, y, RATE)
    assert aligned is not None and aligned > 0.6
    # half a hop later it is measurably worse: the hop/2 shift is what lines it up
    late = np.concatenate([np.zeros(config.hop_length, np.float32), y])[: x.shape[0]]
    late_score = estoi(x, late, RATE)
    assert late_score is not None and late_score < aligned
    noise = np.random.default_rng(0).normal(0, 0.05, x.shape).astype(np.float32)
    assert log_mel_l1(x, y, RATE) < log_mel_l1(x, noise, RATE)


def test_an_untrained_vocoder_is_scored_and_does_not_beat_the_baseline(say: Say) -> None:
    torch.manual_seed(0)
    engine = WaveNetEngine(WaveNet(named_config("tiny", mel=True)), device="cpu", name="untrained")
    x = say("hello there")[:RATE]
    report = evaluate_vocoder(engine, [x], clip_ids=["hello"], with_visqol=False)
    summary = report.summary()
    assert summary["bundle"] == "untrained" and summary["clips"] == ["hello"]
    assert summary["vocoder"]["pesq_wb"] is not None and summary["griffin_lim"]["estoi"] > 0.5
    assert summary["beats_griffin_lim"] is False and report.rtf > 0
    continuation = WaveNetEngine(WaveNet(named_config("tiny")), device="cpu")
    with pytest.raises(EvaluationError, match="not a mel vocoder"):
        evaluate_vocoder(continuation, [x])
    with pytest.raises(EvaluationError, match="no clips"):
        evaluate_vocoder(engine, [])
