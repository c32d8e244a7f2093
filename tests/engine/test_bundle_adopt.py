"""`models adopt`: components move between bundles that tokenise alike, and only those."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from audiogen_studio.cli.main import main
from audiogen_studio.engine.bundle_adopt import adopt_components, probe_tokens
from audiogen_studio.engine.bundles import BundleError, read_bundle, write_component
from audiogen_studio.models.codec import NAMED_CODEC_CONFIGS, Codec

sys.path.insert(0, str(Path(__file__).parent))
from audiolm_stack import random_audiolm_bundle


def _retrained(bundle: Path, component: str) -> None:
    """Other weights and provenance for ``component``, as another training run leaves them."""
    info = read_bundle(bundle)
    path = info.component_path(component)
    with safe_open(str(path), "pt") as f:
        metadata = f.metadata()
    tensors = {k: v + 1 for k, v in load_file(path).items()}
    save_file(tensors, str(path), metadata=metadata)
    entry = info.components[component]
    write_component(
        bundle,
        component,
        file=entry["file"],
        config=entry["config"],
        sample_rate=info.sample_rate,
        training={"steps": 7, "data": "/corpora/more"},
        metrics={"val_loss": 1.5},
    )


def test_adopt_copies_weights_and_manifest_entries(tmp_path: Path) -> None:
    dest = random_audiolm_bundle(tmp_path / "dest")
    source = random_audiolm_bundle(tmp_path / "source")
    _retrained(source, "lm_coarse")
    codec_before = (dest / "codec.safetensors").read_bytes()
    fine_entry = read_bundle(dest).components["lm_fine"]
    info = adopt_components(dest, source, ["lm_coarse"])
    assert (dest / "lm_coarse.safetensors").read_bytes() == (
        source / "lm_coarse.safetensors"
    ).read_bytes()
    assert info.training["lm_coarse"] == {"steps": 7, "data": "/corpora/more"}
    assert info.metrics["lm_coarse"] == {"val_loss": 1.5}
    assert (dest / "codec.safetensors").read_bytes() == codec_before  # the rest untouched
    assert info.components["lm_fine"] == fine_entry
    assert not list(dest.glob(".*partial"))
    # the CLI
    _retrained(source, "lm_fine")
    assert main(["models", "adopt", str(dest), str(source), "lm_fine"]) == 0
    assert read_bundle(dest).training["lm_fine"]["steps"] == 7
    with pytest.raises(BundleError, match="lm_nothing"):
        adopt_components(dest, source, ["lm_nothing"])
    with pytest.raises(BundleError, match="itself"):
        adopt_components(dest, dest, ["lm_fine"])


def test_bundles_that_tokenise_differently_are_refused(tmp_path: Path) -> None:
    dest = random_audiolm_bundle(tmp_path / "dest")
    torch.manual_seed(5)
    other_codec = Codec(NAMED_CODEC_CONFIGS["tiny"]).eval()
    source = random_audiolm_bundle(tmp_path / "source", codec=other_codec)
    tokens = probe_tokens(read_bundle(dest))
    assert set(tokens) == {"acoustic", "semantic"} and tokens["acoustic"].ndim == 2
    manifest = json.loads((dest / "bundle.json").read_text())
    with pytest.raises(BundleError, match="tokenise differently"):
        adopt_components(dest, source, ["lm_coarse"])
    assert json.loads((dest / "bundle.json").read_text()) == manifest
