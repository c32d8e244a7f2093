"""AudioLM LM-stage trainer: token cache, layouts, learning, resume, bundle registration."""

from __future__ import annotations

import json
import logging
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from audiogen_studio.audio import io, synth
from audiogen_studio.engine.bundles import read_bundle
from audiogen_studio.models.audiolm_layout import TokenLayout
from audiogen_studio.models.semantic import SemanticTokenizer
from audiogen_studio.training.audio_dataset import TrainingError
from audiogen_studio.training.lm_trainer import LMTrainOptions, export_tokens, train_lm
from audiogen_studio.training.token_cache import encoder_digest, read_token_export

sys.path.insert(0, str(Path(__file__).parents[1] / "engine"))
from audiolm_stack import random_audiolm_bundle
from trainer_runs import torchrun


@pytest.fixture
def data(riff_pair: Path) -> Path:
    return riff_pair


def test_layout_round_trips_and_ranges() -> None:
    layout = TokenLayout(
        semantic_vocab=10,
        codebook_size=4,
        coarse_quantizers=2,
        fine_quantizers=1,
        semantic_rate=25.0,
        acoustic_rate=50.0,
    )
    assert layout.ratio == 2 and layout.coarse_vocab == 10 + 1 + 8 and layout.fine_vocab == 13
    codes = torch.randint(0, 4, (3, 3, 6))
    ids = layout.coarse_ids(codes[:, :2])
    assert torch.equal(layout.coarse_codes(ids), codes[:, :2])
    for i in range(ids.shape[1]):
        lo, hi = layout.coarse_range(i % 2)
        assert bool(((ids[:, i] >= lo) & (ids[:, i] < hi)).all())
    fine = layout.fine_ids(codes[:, 2:])
    assert torch.equal(layout.fine_codes(fine), codes[:, 2:])
    sem = torch.randint(0, 10, (3, 3))
    seq, mask = layout.stage_sequence("coarse", sem, codes)
    # per semantic token: its id, then 2 frames x 2 coarse quantizers
    assert seq.shape == (3, 3 * 5) and layout.coarse_group == 5
    assert torch.equal(seq[:, ::5], sem)
    assert mask.tolist() == [False, True, True, True, True] * 3
    assert torch.equal(
        layout.coarse_codes(seq.reshape(3, 3, 5)[:, :, 1:].reshape(3, -1)), codes[:, :2]
    )
    seq, mask = layout.stage_sequence("fine", sem, codes)
    # per codec frame: 2 coarse ids (conditioning), then 1 fine id
    assert seq.shape == (3, 6 * 3) and mask.tolist() == [False, False, True] * 6
    assert torch.equal(layout.fine_codes(seq[:, 2::3]), codes[:, 2:])
    # every predicted id lies in the span generation samples it from; given ids have none
    for stage in ("coarse", "fine"):
        seq, mask = layout.stage_sequence(stage, sem, codes)
        spans = layout.stage_spans(stage, seq.shape[1])
        assert [s is not None for s in spans] == mask.tolist()
        for i, span in enumerate(spans):
            if span is not None:
                assert bool(((seq[:, i] >= span[0]) & (seq[:, i] < span[1])).all())
    assert layout.stage_spans("semantic", 4) == [None] * 4
    with pytest.raises(ValueError, match="integer multiple"):
        TokenLayout(
            semantic_vocab=10,
            codebook_size=4,
            coarse_quantizers=1,
            fine_quantizers=0,
            semantic_rate=30.0,
            acoustic_rate=50.0,
        )


def test_stage_trains_resumes_and_registers(tmp_path: Path, data: Path) -> None:
    torch.set_num_threads(1)
    bundle = random_audiolm_bundle(tmp_path / "bundle", windows={})
    first = train_lm(_lm_options(data, bundle, steps=30, val_every=0))
    assert first.step == 30 and first.completed
    assert (bundle / "work").is_dir() and list((bundle / "work").glob("tokens-*"))
    info = read_bundle(bundle)
    entry = info.components["lm_coarse"]
    assert entry["config"]["window"] == 12
    assert TokenLayout.from_dict(entry["config"]["layout"]).coarse_quantizers == 2
    losses = info.metrics["lm_coarse"]
    assert np.isfinite(losses["train_loss"])
    # learning: the coarse codes of a riff are far from uniform over 2 x 64 ids
    assert losses["train_loss"] < np.log(64) - 0.5
    assert info.training["lm_coarse"]["size"] == "tiny"
    # a resume trains the stored config, whatever --size says, and records that size
    again = train_lm(_lm_options(data, bundle, steps=40, val_every=0, size="small"))
    assert again.start_step == 30 and again.step == 40
    assert read_bundle(bundle).training["lm_coarse"]["size"] == "tiny"


def test_missing_codec_or_tokenizer_is_a_clear_error(tmp_path: Path, data: Path) -> None:
    with pytest.raises(TrainingError, match="train the codec"):
        train_lm(LMTrainOptions(stage="semantic", data=data, bundle=tmp_path / "nothing"))
    with pytest.raises(TrainingError, match="unknown stage"):
        train_lm(LMTrainOptions(stage="medium", data=data, bundle=tmp_path))  # type: ignore[arg-type]


@pytest.mark.slow
def test_torchrun_trains_a_stage_with_two_cpu_processes(tmp_path: Path, data: Path) -> None:
    bundle = random_audiolm_bundle(tmp_path / "bundle", windows={})
    proc = torchrun(
        [
            "-m", "audiogen_studio", "train", "lm-fine", "--data", str(data), "--bundle",
            str(bundle), "--size", "tiny", "--window", "8", "--steps", "4", "--batch", "2",
            "--device", "cpu", "--no-progress", "--save-every", "2", "--json",
        ],
        tmp_path,
        timeout=180,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout[proc.stdout.index("{") :])  # only rank 0 prints
    assert report["world_size"] == 2 and report["step"] == 4
    info = read_bundle(bundle)
    assert info.training["lm_fine"]["world_size"] == 2 and info.training["lm_fine"]["steps"] == 4


def _lm_options(data: Path, bundle: Path, **extra: object) -> LMTrainOptions:
    common: dict[str, object] = {
        "stage": "coarse",
        "data": data,
        "bundle": bundle,
        "batch": 4,
        "size": "tiny",
        "window": 12,
        "threads": 1,
        "progress": False,
        "save_every": 0,
        "warmup": 5,
        "lr": 3e-3,
    }
    return LMTrainOptions(**{**common, **extra})  # type: ignore[arg-type]


def test_the_bundle_gets_the_weights_of_the_best_validation_loss(
    tmp_path: Path, data: Path
) -> None:
    from safetensors.torch import load_file

    torch.set_num_threads(1)
    bundle = random_audiolm_bundle(tmp_path / "bundle", windows={})
    result = train_lm(_lm_options(data, bundle, steps=40, val_every=5, lr=3e-2))
    state = json.loads(
        (bundle / "checkpoint" / "lm_coarse" / "trainer_state.json").read_text("utf-8")
    )
    vals = [(h["val"], h["step"]) for h in state["history"] if h["val"] is not None]
    assert len(vals) == 8
    best_val, best_step = min(vals)
    assert state["best"]["step"] == best_step == result.weights_step
    info = read_bundle(bundle)
    assert info.metrics["lm_coarse"]["val_loss"] == pytest.approx(best_val)
    assert info.metrics["lm_coarse"]["last_val_loss"] == pytest.approx(vals[-1][0])
    shipped = load_file(bundle / "lm_coarse.safetensors")
    kept = load_file(bundle / "checkpoint" / "lm_coarse.best.safetensors")
    last = load_file(bundle / "checkpoint" / "lm_coarse" / "model.safetensors")
    assert shipped.keys() == kept.keys()
    assert all(torch.equal(shipped[k], kept[k]) for k in shipped)
    if best_step != 40:
        assert not all(torch.equal(shipped[k], last[k]) for k in shipped)
    # --keep last writes the last step's weights
    again = train_lm(_lm_options(data, bundle, steps=45, val_every=5, keep="last"))
    assert again.weights_step == 45
    assert read_bundle(bundle).training["lm_coarse"]["weights_step"] == 45


def test_patience_stops_when_validation_stops_improving(tmp_path: Path, data: Path) -> None:
    torch.set_num_threads(1)
    bundle = random_audiolm_bundle(tmp_path / "bundle", windows={})
    # a learning rate this small cannot move the validation loss by MIN_IMPROVEMENT
    result = train_lm(_lm_options(data, bundle, steps=100, val_every=5, patience=2, lr=1e-12))
    assert result.step == 15 and not result.completed and result.weights_step == 5
    with pytest.raises(TrainingError, match="patience needs validation"):
        train_lm(_lm_options(data, bundle, patience=2, val_every=0))


def test_a_stage_keeps_the_layout_the_bundles_lms_stored(tmp_path: Path, data: Path) -> None:
    torch.set_num_threads(1)
    bundle = random_audiolm_bundle(tmp_path / "bundle")  # its LMs: 2 coarse + 2 fine codebooks
    # another coarse split asked for: the bundle's own layout wins, so its LMs still fit together
    train_lm(_lm_options(data, bundle, stage="semantic", steps=2, val_every=0, coarse_quantizers=1))
    entry = read_bundle(bundle).components["lm_semantic"]["config"]
    layout = TokenLayout.from_dict(entry["layout"])
    assert (layout.coarse_quantizers, layout.fine_quantizers) == (2, 2)
    with pytest.raises(TrainingError, match="another token layout"):
        train_lm(_lm_options(data, bundle, stage="fine", steps=2, val_every=0, fine_quantizers=1))


def test_init_from_fine_tunes_another_bundles_lm(tmp_path: Path, data: Path) -> None:
    from safetensors.torch import load_file

    from audiogen_studio.models.checkpoint import save_module
    from audiogen_studio.models.lm import LMConfig, TokenLM

    torch.set_num_threads(1)
    source = random_audiolm_bundle(tmp_path / "source", windows={})
    train_lm(_lm_options(data, source, steps=20, val_every=0))
    target = random_audiolm_bundle(tmp_path / "target", windows={})
    before = load_file(target / "lm_coarse.safetensors")
    # a learning rate this small leaves the started weights where they were
    result = train_lm(
        _lm_options(data, target, steps=1, val_every=0, lr=1e-12, size="small", init_from=source)
    )
    assert result.start_step == 0 and result.step == 1
    started = load_file(source / "lm_coarse.safetensors")
    tuned = load_file(target / "lm_coarse.safetensors")
    assert tuned.keys() == started.keys()
    assert all(torch.allclose(tuned[k], started[k], atol=1e-6) for k in tuned)
    assert not all(torch.equal(tuned[k], before[k]) for k in tuned)
    prov = read_bundle(target).training["lm_coarse"]
    assert prov["init_from"] == str(source) and prov["size"] == "tiny"  # the source's size
    # a resumed run keeps training its checkpoint (and its provenance)
    again = train_lm(_lm_options(data, target, steps=3, val_every=0, init_from=tmp_path / "nope"))
    assert again.start_step == 1
    assert read_bundle(target).training["lm_coarse"]["init_from"] == str(source)
    # bad sources are clear errors
    fresh = random_audiolm_bundle(tmp_path / "fresh", windows={})
    (fresh / "checkpoint").exists() and pytest.fail("a fresh bundle has no checkpoint")
    with pytest.raises(TrainingError, match="init-from"):
        train_lm(_lm_options(data, fresh, steps=1, init_from=tmp_path / "data"))
    with pytest.raises(TrainingError, match="not a token LM"):
        train_lm(_lm_options(data, fresh, steps=1, init_from=source / "codec.safetensors"))
    other = LMConfig(vocab_size=7, max_seq_len=64, dim=16, depth=1, heads=2)
    save_module(TokenLM(other), tmp_path / "other.safetensors", other)
    with pytest.raises(TrainingError, match="vocabulary of 7"):
        train_lm(_lm_options(data, fresh, steps=1, init_from=tmp_path / "other.safetensors"))
    assert not (fresh / "checkpoint" / "lm_coarse").exists()


def test_a_resume_on_other_data_restarts_the_best_weights(
    tmp_path: Path, data: Path, caplog: pytest.LogCaptureFixture
) -> None:
    torch.set_num_threads(1)
    bundle = random_audiolm_bundle(tmp_path / "bundle", windows={})
    train_lm(_lm_options(data, bundle, steps=20, val_every=5))
    first = json.loads((bundle / "checkpoint" / "lm_coarse" / "trainer_state.json").read_text())
    assert first["best"]["step"] <= 20 and first["valid_key"]
    other = tmp_path / "other"
    other.mkdir()
    for i in range(2):
        io.save(synth.riff(repeats=2, seed=10 + i), other / f"riff{i}.wav")
    with caplog.at_level("WARNING", logger="audiogen_studio.training.lm_trainer"):
        result = train_lm(_lm_options(data=other, bundle=bundle, steps=25, val_every=5))
    assert "validation split differs" in caplog.text
    state = json.loads((bundle / "checkpoint" / "lm_coarse" / "trainer_state.json").read_text())
    assert state["valid_key"] != first["valid_key"]
    # the bundle's weights come from a validation on the new split, whatever the old losses were
    assert state["best"]["step"] == result.weights_step == 25
    caplog.clear()
    # the same data again: the bookkeeping carries on
    with caplog.at_level("WARNING", logger="audiogen_studio.training.lm_trainer"):
        train_lm(_lm_options(data=other, bundle=bundle, steps=30, val_every=5))
    assert "validation split differs" not in caplog.text


def _rewrite_codec(path: Path, prefix: str) -> None:
    """Perturb every tensor of the codec checkpoint at ``path`` under ``prefix``, keeping its
    metadata (what a decoder-only training run or a re-fitted quantizer does to the file)."""
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    with safe_open(str(path), framework="pt") as f:
        metadata = f.metadata()
    tensors = load_file(path)
    changed = [n for n in tensors if n.startswith(prefix) and tensors[n].is_floating_point()]
    assert changed
    for name in changed:
        tensors[name] = tensors[name] + 0.01
    save_file(tensors, path, metadata=metadata)


def test_the_token_cache_survives_decoder_training_not_a_new_quantizer(
    tmp_path: Path, data: Path
) -> None:
    torch.set_num_threads(1)
    bundle = random_audiolm_bundle(tmp_path / "bundle", windows={})
    codec = bundle / "codec.safetensors"
    train_lm(_lm_options(data, bundle, steps=5, val_every=0))
    caches = sorted((bundle / "work").glob("tokens-*"))
    assert len(caches) == 1
    before = encoder_digest(codec)
    _rewrite_codec(codec, "decoder.")
    assert encoder_digest(codec) == before
    train_lm(_lm_options(data, bundle, steps=8, val_every=0))
    assert sorted((bundle / "work").glob("tokens-*")) == caches  # reused: tokens are unchanged
    _rewrite_codec(codec, "quantizer.")
    assert encoder_digest(codec) != before
    train_lm(_lm_options(data, bundle, steps=10, val_every=0))
    rebuilt = sorted((bundle / "work").glob("tokens-*"))
    assert len(rebuilt) == 1 and rebuilt != caches  # re-tokenised (the stale cache removed)


def test_an_unreadable_codec_file_is_a_clear_error(tmp_path: Path) -> None:
    broken = tmp_path / "codec.safetensors"
    broken.write_bytes(b"not a checkpoint")
    with pytest.raises(TrainingError, match="cannot read codec weights"):
        encoder_digest(broken)


def test_exported_tokens_train_a_stage_as_the_audio_does(tmp_path: Path, data: Path) -> None:
    from safetensors.torch import load_file

    torch.set_num_threads(1)
    from_audio = random_audiolm_bundle(tmp_path / "audio-bundle")
    train_lm(_lm_options(data, from_audio, steps=12, val_every=6))
    exporter = random_audiolm_bundle(tmp_path / "exporter")  # the same weights (seeded)
    out = export_tokens(data, exporter, tmp_path / "tokens", progress=False)
    corpus, meta = read_token_export(out)
    assert corpus.train_tokens == meta["train_tokens"] > 0 and meta["valid_tokens"] > 0
    assert meta["layout"] == read_bundle(exporter).components["lm_coarse"]["config"]["layout"]
    # elsewhere: a copy of the bundle and the tokens, no audio
    elsewhere = tmp_path / "elsewhere"
    shutil.copytree(exporter, elsewhere, ignore=shutil.ignore_patterns("work"))
    shutil.move(str(out), tmp_path / "moved")
    train_lm(_lm_options(tmp_path / "moved", elsewhere, steps=12, val_every=6))
    a, b = read_bundle(from_audio), read_bundle(elsewhere)
    assert a.metrics["lm_coarse"]["val_loss"] == b.metrics["lm_coarse"]["val_loss"]
    assert a.training["lm_coarse"]["train_hours"] == b.training["lm_coarse"]["train_hours"]
    wa, wb = load_file(a.component_path("lm_coarse")), load_file(b.component_path("lm_coarse"))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert not (elsewhere / "work").exists()  # nothing was tokenised there


def test_exported_tokens_refuse_other_tokenizers_layouts_and_damage(
    tmp_path: Path, data: Path
) -> None:
    torch.set_num_threads(1)
    bundle = random_audiolm_bundle(tmp_path / "bundle")
    out = export_tokens(data, bundle, tmp_path / "tokens", progress=False)
    other = random_audiolm_bundle(tmp_path / "other")
    with torch.no_grad():  # another semantic tokenizer: other tokens
        tokenizer = SemanticTokenizer.from_pretrained(other / "semantic.safetensors")
        tokenizer.centroids.mul_(2.0)
        tokenizer.save(other / "semantic.safetensors")
    with pytest.raises(TrainingError, match="another codec or semantic tokenizer"):
        train_lm(_lm_options(out, other, steps=2, val_every=0))
    fresh = random_audiolm_bundle(tmp_path / "fresh", windows={})
    for stage in ("semantic", "coarse", "fine"):
        (fresh / f"lm_{stage}.safetensors").unlink()
    info = json.loads((fresh / "bundle.json").read_text())
    info["components"] = {k: v for k, v in info["components"].items() if not k.startswith("lm_")}
    (fresh / "bundle.json").write_text(json.dumps(info))
    with pytest.raises(TrainingError, match="tokens exported for the layout"):
        train_lm(_lm_options(out, fresh, steps=2, val_every=0, coarse_quantizers=1))
    meta = json.loads((out / "tokens.json").read_text())
    (out / "tokens.json").write_text(json.dumps({k: v for k, v in meta.items() if k != "layout"}))
    with pytest.raises(TrainingError, match="lacks layout"):
        read_token_export(out)
    (out / "tokens.json").write_text(json.dumps(meta))
    np.save(out / "train.semantic.npy", np.zeros(3, dtype=np.int16))
    with pytest.raises(TrainingError, match="do not fit each other"):
        read_token_export(out)
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    with pytest.raises(TrainingError, match="not empty"):
        export_tokens(data, bundle, tmp_path / "busy", progress=False)
    assert (tmp_path / "busy" / "notes.txt").read_text() == "mine"


def test_cli_exports_tokens_and_a_stage_trains_on_them(
    tmp_path: Path, data: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    from audiogen_studio.cli.main import main

    torch.set_num_threads(1)
    bundle = random_audiolm_bundle(tmp_path / "bundle")
    out = tmp_path / "tokens"
    args = ["train", "tokens", "--data", str(data), "--bundle", str(bundle), "--out", str(out)]
    assert main([*args, "--no-progress", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["out"] == str(out) and summary["train_tokens"] > 0
    lm = ["train", "lm-fine", "--data", str(out), "--bundle", str(bundle), "--size", "tiny"]
    small = ["--window", "8", "--steps", "3", "--batch", "2", "--no-progress", "--val-every", "2"]
    try:
        assert main([*lm, *small]) == 0
    finally:
        logging.getLogger("audiogen_studio.training").setLevel(logging.NOTSET)
    assert read_bundle(bundle).training["lm_fine"]["data"] == str(out)
    # without a progress bar, each validation is a log line (a background run's only news)
    assert "lm-fine step 2/3: train loss" in caplog.text and "(best)" in caplog.text
    assert main([*args[:-1], str(tmp_path / "data")]) == 2  # a folder of audio, not empty
    assert "not empty" in capsys.readouterr().err
