"""Semantic training (training/semantic_trainer.py): the tiny in-memory tokenizer separates the
notes of a riff, training lowers the masked-prediction loss and writes the bundle component, a
stopped run resumes exactly like an uninterrupted one (across the HuBERT iteration boundary),
time limits, bad input, and DDP with two CPU processes under torchrun."""

from __future__ import annotations

import dataclasses
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from trainer_runs import torchrun

from audiogen_studio.audio import synth
from audiogen_studio.engine.bundles import BundleError, read_bundle
from audiogen_studio.models.checkpoint import load_state
from audiogen_studio.models.semantic import NAMED_CONFIGS, SemanticInputError, SemanticTokenizer
from audiogen_studio.models.ssl_adapter import (
    SSLWeightsError,
)
from audiogen_studio.training.audio_dataset import TrainingError
from audiogen_studio.training.semantic_trainer import (
    SemanticStepReport,
    SemanticTrainOptions,
    fit_tiny_tokenizer,
    mfcc_frames,
    options_dict,
    read_semantic_state,
    result_dict,
    riff_labels,
    riff_purity,
    tokenizer_from_ssl,
    train_semantic,
)

RATE = 16_000


@pytest.fixture(autouse=True)
def _one_torch_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _options(data: Path, out: Path, **overrides: Any) -> SemanticTrainOptions:
    base: dict[str, Any] = {
        "data": data,
        "out": out,
        "config": "tiny",
        "n_clusters": 16,
        "steps": 30,
        "iterations": 2,
        "batch": 4,
        "crop_seconds": 1.0,
        "lr": 2e-3,
        "warmup": 5,
        "kmeans_seconds": 16.0,
        "kmeans_iters": 10,
        "val_every": 10,
        "save_every": 10,
        "val_crops": 4,
        "progress": False,
        "device": "cpu",
    }
    base.update(overrides)
    return SemanticTrainOptions(**base)


# --- the in-memory fast path ----------------------------------------------------------------------


def test_tiny_tokenizer_separates_the_notes_of_a_riff() -> None:
    """Tokens → majority note on one rendition; purity measured on another (held out)."""
    audio = np.asarray(synth.riff(seed=0).samples[0])
    tokenizer = fit_tiny_tokenizer(audio, RATE, steps=150, seed=0)
    assert tokenizer.token_rate == 50.0 and tokenizer.n_tokens == 32
    trained = riff_purity(tokenizer)
    assert min(trained["per_label"].values()) >= 0.8, trained
    assert len(trained["per_label"]) == 4  # four pitches
    # it is the training: the same encoder untrained separates them worse
    untrained = riff_purity(fit_tiny_tokenizer(audio, RATE, steps=0, seed=0))
    assert trained["purity"] > untrained["purity"] + 0.03, (trained, untrained)


def test_riff_labels_follow_the_struck_notes() -> None:
    labels = riff_labels(synth.riff().samples.shape[1], 320, RATE)
    # 0.35 s per note = 17.5 frames; pitches sorted: 220 → 0, 277 → 1, 330 → 2, 440 → 3
    assert labels[:17].tolist() == [0] * 17
    assert labels[18:35].unique().tolist() == [1]
    assert labels[53:70].unique().tolist() == [3] and labels[71] == 2 and labels[-1] == -1


def test_mfcc_targets_are_frame_aligned_and_both_first_targets_train() -> None:
    audio = torch.randn(2, 7 * 320 + 5)
    assert mfcc_frames(audio, RATE, 320).shape == (2, 8, 39)
    config = dataclasses.replace(NAMED_CONFIGS["tiny"], first_targets="mfcc", first_clusters=8)
    tok = fit_tiny_tokenizer(
        np.asarray(synth.riff(seed=0).samples[0]), RATE, steps=4, config=config, n_clusters=8
    )
    assert tok.tokens(audio).shape == (2, 8)


# --- train semantic -------------------------------------------------------------------------------


def test_training_lowers_the_masked_loss_and_writes_the_bundle(
    riff_dir: Path, tmp_path: Path
) -> None:
    reports: list[SemanticStepReport] = []
    out = tmp_path / "bundle"
    result = train_semantic(
        _options(riff_dir, out, steps=100, batch=8, iterations=1, val_every=20),
        on_step=reports.append,
    )
    assert result.completed and result.step == 100 and result.iteration == 1
    assert [r.step for r in reports] == list(range(1, 101))
    history = read_semantic_state(out)["history"]  # type: ignore[index]
    assert [h["step"] for h in history] == [20, 40, 60, 80, 100]
    first, last = history[0], history[-1]
    assert last["val_loss"] < 0.7 * first["val_loss"], history
    assert last["val_accuracy"] > first["val_accuracy"]
    info = read_bundle(out)
    assert info.kind == "audiolm" and info.sample_rate == RATE
    component = info.components["semantic"]
    assert component["file"] == "semantic.safetensors"
    assert component["config"]["n_tokens"] == 16 and component["config"]["hop"] == 320
    metrics = info.metrics["semantic"]
    assert metrics["masked_accuracy"] == pytest.approx(result.val_accuracy)
    assert 0 < metrics["token_usage"] <= 1 and 1 <= metrics["token_perplexity"] <= 16
    assert metrics["riff_purity"] > 0.7 and metrics["masked_metrics_on"] == "valid"
    assert info.training["semantic"]["steps"] == 100
    tokenizer = SemanticTokenizer.from_pretrained(info.component_path("semantic"))
    assert tokenizer.tokens(torch.zeros(1, 16_000)).shape == (1, 50)


def test_a_stopped_run_resumes_exactly_like_an_uninterrupted_one(
    riff_dir: Path, tmp_path: Path
) -> None:
    """30 steps, 2 iterations (boundary after step 12): stop at 20, then resume to 30."""
    whole = train_semantic(_options(riff_dir, tmp_path / "whole"))
    assert whole.completed and whole.iteration == 2

    stop = threading.Event()

    def stop_at_20(report: SemanticStepReport) -> None:
        if report.step == 20:
            stop.set()

    out = tmp_path / "parts"
    first = train_semantic(_options(riff_dir, out), on_step=stop_at_20, stop=stop)
    assert (first.step, first.completed, first.iteration) == (20, False, 2)
    assert read_bundle(out).training["semantic"]["completed"] is False  # a usable bundle anyway
    state = read_semantic_state(out)
    assert state is not None and (state["step"], state["iteration"]) == (20, 2)
    second = train_semantic(_options(riff_dir, out))
    assert (second.start_step, second.step, second.completed) == (20, 30, True)

    ckpt_whole = tmp_path / "whole" / "checkpoint" / "semantic"
    ckpt_parts = out / "checkpoint" / "semantic"
    for name in ("encoder", "head", "targets", "teacher"):
        a, _ = load_state(ckpt_whole / f"{name}.safetensors")
        b, _ = load_state(ckpt_parts / f"{name}.safetensors")
        for key in a:
            assert torch.equal(a[key], b[key]), f"{name}.{key}"
    a, _ = load_state(tmp_path / "whole" / "semantic.safetensors")
    b, _ = load_state(out / "semantic.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_time_limit_stops_and_still_writes_the_tokenizer(riff_dir: Path, tmp_path: Path) -> None:
    result = train_semantic(_options(riff_dir, tmp_path / "b", steps=1000, time_limit=0.0))
    assert (result.step, result.completed) == (1, False)
    assert result.tokenizer_path is not None and result.tokenizer_path.is_file()
    report = result_dict(result)
    assert json.loads(json.dumps(report))["step"] == 1 and report["config"]["dim"] == 64
    assert options_dict(_options(riff_dir, tmp_path))["data"] == str(riff_dir)


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"steps": 0}, "steps must be at least 1"),
        ({"iterations": 5}, "iterations must be within"),
        ({"steps": 1, "iterations": 2}, "at least the number of iterations"),
        ({"lr": float("nan")}, "lr must be a positive number"),
        ({"n_clusters": 1}, "n_clusters must be at least 2"),
        ({"config": "gigantic"}, "unknown semantic config"),
    ],
)
def test_bad_options_are_clear_errors(
    riff_dir: Path, tmp_path: Path, overrides: dict[str, Any], match: str
) -> None:
    with pytest.raises(TrainingError, match=match):
        train_semantic(_options(riff_dir, tmp_path / "b", **overrides))


def test_bad_data_bundles_and_audio_are_clear_errors(riff_dir: Path, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(TrainingError, match="no audio files"):
        train_semantic(_options(empty, tmp_path / "b"))
    wavenet = tmp_path / "wavenet"
    wavenet.mkdir()
    (wavenet / "bundle.json").write_text(
        json.dumps(
            {"format": 1, "name": "w", "version": "1", "kind": "wavenet", "sample_rate": RATE,
             "components": {}}
        )
    )  # fmt: skip
    with pytest.raises(BundleError, match="a wavenet bundle"):
        train_semantic(_options(riff_dir, wavenet, steps=2, iterations=1))
    assert not (wavenet / "checkpoint").exists()  # refused before any training
    # a checkpoint in iteration 2 resumes only with its own config and enough iterations
    out = tmp_path / "b"
    train_semantic(_options(riff_dir, out, steps=2, iterations=2, kmeans_seconds=4.0))
    other = dataclasses.replace(NAMED_CONFIGS["tiny"], dim=32, pos_conv_groups=4)
    with pytest.raises(TrainingError, match="another config"):
        train_semantic(_options(riff_dir, out, steps=3, config=other))
    with pytest.raises(TrainingError, match="iteration 2; resume with iterations >= 2"):
        train_semantic(_options(riff_dir, out, steps=3, iterations=1))
    for audio, match in [
        (np.zeros(0, dtype=np.float32), "empty"),
        (np.array([0.1, np.nan], dtype=np.float32), "NaN"),
        (np.zeros((2, 1000), dtype=np.float32), "mono"),
    ]:
        with pytest.raises(SemanticInputError, match=match):
            fit_tiny_tokenizer(audio, RATE, steps=1)


def test_a_users_ssl_weights_become_the_same_bundle_component(
    riff_dir: Path, tmp_path: Path, tiny_ssl_weights: Path
) -> None:
    weights = tiny_ssl_weights
    out = tmp_path / "bundle"
    path = tokenizer_from_ssl(
        weights, riff_dir, out, layer=2, n_clusters=8, kmeans_seconds=8.0, device="cpu"
    )
    info = read_bundle(out)
    assert info.component_path("semantic") == path
    assert info.components["semantic"]["config"]["encoder"] == "torchaudio-ssl"
    assert 0 < info.metrics["semantic"]["token_usage"] <= 1
    tokenizer = SemanticTokenizer.from_pretrained(path)
    assert tokenizer.tokens(torch.zeros(1, 16_000)).shape == (1, 50)
    with pytest.raises(TrainingError, match="layer must be within 1..2"):
        tokenizer_from_ssl(weights, riff_dir, out, layer=3)
    torch.save({}, tmp_path / "w.pth")
    with pytest.raises(SSLWeightsError, match="pickle"):
        tokenizer_from_ssl(tmp_path / "w.pth", riff_dir, out)


@pytest.mark.slow
def test_torchrun_trains_with_two_cpu_processes(riff_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "ddp"
    script = tmp_path / "run.py"
    script.write_text(
        "import json, torch\n"
        "from audiogen_studio.training.semantic_trainer import SemanticTrainOptions, "
        "train_semantic\n"
        f"o = SemanticTrainOptions(data={str(riff_dir)!r}, out={str(out)!r}, config='tiny', "
        "n_clusters=8, steps=6, iterations=2, batch=2, crop_seconds=0.5, kmeans_seconds=4.0, "
        "kmeans_iters=5, val_every=3, save_every=3, val_crops=2, progress=False, device='cpu', "
        "threads=1)\n"
        "r = train_semantic(o)\n"
        # one file per rank: two processes printing to one pipe can interleave their lines
        f"open({str(tmp_path)!r} + f'/rank{{r.rank}}.json', 'w').write("
        "json.dumps({'rank': r.rank, 'world': r.world_size, 'step': r.step}))\n"
    )
    proc = torchrun([str(script)], tmp_path, timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    reports = [json.loads(p.read_text()) for p in sorted(tmp_path.glob("rank*.json"))]
    assert sorted(r["rank"] for r in reports) == [0, 1]
    assert all(r["world"] == 2 and r["step"] == 6 for r in reports)
    info = read_bundle(out)
    assert info.training["semantic"]["world_size"] == 2
    assert read_semantic_state(out)["iteration"] == 2  # type: ignore[index]
    SemanticTokenizer.from_pretrained(info.component_path("semantic"))
