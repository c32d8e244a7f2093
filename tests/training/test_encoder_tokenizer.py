"""Semantic tokenizers fitted without training: the chroma encoder and a user's SSL weights
into a bundle, and their CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from audiogen_studio.audio import synth
from audiogen_studio.cli.main import main
from audiogen_studio.engine.bundles import BundleError, read_bundle, write_component
from audiogen_studio.models.semantic import SemanticTokenizer
from audiogen_studio.training.encoder_tokenizer import tokenizer_from_chroma


def test_chroma_tokenizer_joins_a_bundle_and_tells_the_riffs_notes_apart(
    riff_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "bundle"
    path = tokenizer_from_chroma(riff_dir, out, n_clusters=12, kmeans_seconds=8.0, name="m")
    info = read_bundle(out)
    assert info.component_path("semantic") == path
    assert info.components["semantic"]["config"]["encoder"] == "chroma"
    assert info.training["semantic"]["source"].startswith("chroma encoder (no training)")
    metrics = info.metrics["semantic"]
    assert metrics["parameters"] == 0 and metrics["n_tokens"] == 12
    # four pitches in the riff: held-out note purity of the tokens is far above chance (0.25)
    assert metrics["riff_purity"] > 0.6
    tokenizer = SemanticTokenizer.from_pretrained(path)
    tokens = tokenizer.tokens(np.asarray(synth.riff(seed=5).samples[0]))
    assert tokens.shape == (1, tokenizer.num_tokens(synth.riff(seed=5).samples.shape[-1]))


def test_a_bundle_at_another_rate_is_refused_before_any_work(
    riff_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "bundle"
    write_component(
        out, "codec", file="codec.safetensors", config={}, kind="audiolm", sample_rate=24_000
    )
    with pytest.raises(BundleError, match="24000 Hz"):
        tokenizer_from_chroma(riff_dir, out, n_clusters=4, kmeans_seconds=4.0)


def test_cli_fits_the_chroma_tokenizer_and_refuses_a_training_config(
    riff_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "bundle"
    base = ["train", "semantic", "--encoder", "chroma", "--data", str(riff_dir)]
    args = [*base, "--bundle", str(out), "--tokens", "8", "--kmeans-seconds", "8", "--json"]
    assert main(args) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["encoder"] == "chroma" and Path(summary["tokenizer_path"]).is_file()
    assert read_bundle(out).components["semantic"]["config"]["n_tokens"] == 8
    assert summary["retrain"] == []
    assert main([*base, "--bundle", str(out), "--config", "tiny"]) == 2
    assert "nothing to train" in capsys.readouterr().err


def test_cli_warns_that_the_bundles_lms_read_the_former_tokens(
    riff_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "bundle"
    write_component(
        out,
        "lm_coarse",
        file="lm_coarse.safetensors",
        config={},
        kind="audiolm",
        sample_rate=16_000,
    )
    args = ["train", "semantic", "--encoder", "chroma", "--data", str(riff_dir)]
    assert main([*args, "--bundle", str(out), "--tokens", "4", "--kmeans-seconds", "4"]) == 0
    assert "lm_coarse read the semantic tokens it had before" in capsys.readouterr().err


def test_cli_fits_a_tokenizer_on_the_users_ssl_weights(
    riff_dir: Path, tmp_path: Path, tiny_ssl_weights: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "bundle"
    base = ["train", "semantic", "--data", str(riff_dir), "--bundle", str(out)]
    fit = ["--tokens", "8", "--kmeans-seconds", "8", "--device", "cpu"]
    args = [*base, "--encoder", "ssl", "--ssl-weights", str(tiny_ssl_weights), "--layer", "2"]
    assert main([*args, *fit, "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["encoder"] == "ssl"
    info = read_bundle(out)
    assert info.components["semantic"]["config"]["encoder"] == "torchaudio-ssl"
    assert info.components["semantic"]["config"]["n_tokens"] == 8
    assert SemanticTokenizer.from_pretrained(info.component_path("semantic")).n_tokens == 8
    # clear one-line errors: no weights, weights without --encoder ssl, a layer it lacks, a pickle
    assert main([*base, "--encoder", "ssl"]) == 2
    assert "needs --ssl-weights" in capsys.readouterr().err
    assert main([*base, "--ssl-weights", str(tiny_ssl_weights)]) == 2
    assert "needs --encoder ssl" in capsys.readouterr().err
    assert main([*args[:-1], "3", *fit]) == 2
    assert "layer must be within 1..2" in capsys.readouterr().err
    (tmp_path / "w.pt").write_bytes(b"not safetensors")
    assert main([*base, "--encoder", "ssl", "--ssl-weights", str(tmp_path / "w.pt"), *fit]) == 2
    assert "safetensors" in capsys.readouterr().err
