"""Transposition of chroma semantic tokens (the semantic LM's key augmentation)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from audiogen_studio.engine.bundles import read_bundle
from audiogen_studio.models.chroma_encoder import ChromaEncoder
from audiogen_studio.models.semantic import SemanticTokenizer
from audiogen_studio.training.audio_dataset import TrainingError
from audiogen_studio.training.encoder_tokenizer import tokenizer_from_chroma
from audiogen_studio.training.lm_trainer import LMTrainOptions, train_lm
from audiogen_studio.training.transposition import transpose_windows, transposition_table

sys.path.insert(0, str(Path(__file__).parents[1] / "engine"))
from audiolm_stack import random_audiolm_bundle


def _pitch_class_tokenizer() -> SemanticTokenizer:
    """24 centroids: each pitch class alone, quiet (energy 0) and loud (energy 1), with a
    feature normalisation that is not the identity, so the table must roll raw features."""
    raw = torch.zeros(24, 14)
    for i in range(24):
        raw[i, i % 12] = 1.0
        raw[i, 12] = float(i // 12)
        raw[i, 13] = 0.5
    mean = torch.linspace(-0.2, 0.3, 14)
    std = torch.linspace(0.5, 2.0, 14)
    return SemanticTokenizer(
        ChromaEncoder(), layer=0, centroids=(raw - mean) / std, mean=mean, std=std
    )


def test_the_table_rolls_pitch_classes_and_keeps_the_rest() -> None:
    table = transposition_table(_pitch_class_tokenizer())
    assert table.shape == (12, 24) and table.dtype == torch.int64
    ids = torch.arange(24)
    for k in range(12):
        # token i is pitch class i % 12 at loudness i // 12: up k semitones, same loudness
        assert torch.equal(table[k], (ids % 12 + k) % 12 + 12 * (ids // 12)), k
    assert torch.equal(table[0], ids)


def test_windows_are_shifted_whole_at_the_given_rate() -> None:
    table = transposition_table(_pitch_class_tokenizer())
    sem = torch.randint(0, 24, (400, 9))
    assert transpose_windows(sem, table, 0.0, np.random.default_rng(0)) is sem
    out = transpose_windows(sem, table, 0.5, np.random.default_rng(1))
    again = transpose_windows(sem, table, 0.5, np.random.default_rng(1))
    assert torch.equal(out, again)  # the seed decides
    shift = (out % 12 - sem % 12) % 12  # [B, S]: the interval of every token
    assert bool((shift == shift[:, :1]).all())  # one interval per window
    moved = shift[:, 0] != 0
    assert 0.4 < float(moved.float().mean()) < 0.6
    assert set(shift[moved, 0].tolist()) == set(range(1, 12))  # every interval is drawn
    assert torch.equal(out // 12, sem // 12)  # loudness kept
    every = transpose_windows(sem, table, 1.0, np.random.default_rng(2))
    assert bool(((every % 12 - sem % 12) % 12 != 0).all())


def test_a_semantic_lm_trains_on_transposed_windows(
    tmp_path: Path, riff_pair: Path, riff_dir: Path
) -> None:
    torch.set_num_threads(1)
    bundle = random_audiolm_bundle(tmp_path / "bundle", windows={})
    options = {
        "stage": "semantic",
        "data": riff_pair,
        "bundle": bundle,
        "batch": 4,
        "size": "tiny",
        "window": 12,
        "steps": 6,
        "val_every": 0,
        "save_every": 0,
        "threads": 1,
        "progress": False,
    }
    # the random bundle's tokens are not pitch classes: nothing to transpose
    with pytest.raises(TrainingError, match="pitch-class"):
        train_lm(LMTrainOptions(**options, transpose=0.5))  # type: ignore[arg-type]
    # as many tokens as the random tokenizer had: the LMs keep their layout
    tokenizer_from_chroma(riff_dir, bundle, n_clusters=16, kmeans_seconds=8.0)
    result = train_lm(LMTrainOptions(**options, transpose=0.5))  # type: ignore[arg-type]
    assert result.step == 6 and result.train_loss is not None and np.isfinite(result.train_loss)
    assert read_bundle(bundle).training["lm_semantic"]["transpose"] == 0.5


def test_only_the_semantic_stage_is_transposed() -> None:
    base = {"data": "d", "bundle": "b"}
    with pytest.raises(TrainingError, match="semantic stage only"):
        LMTrainOptions(stage="coarse", transpose=0.5, **base).check()
    with pytest.raises(TrainingError, match="transpose"):
        LMTrainOptions(stage="semantic", transpose=1.5, **base).check()
    LMTrainOptions(stage="semantic", transpose=1.0, **base).check()
