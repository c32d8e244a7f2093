"""The bundles shipped in models/: they are found, fit the size budget, load and generate."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from audiogen_studio.audio import synth
from audiogen_studio.engine.api import GenerationRequest
from audiogen_studio.engine.bundles import BundleInfo, list_bundles, shipped_models_dir
from audiogen_studio.engine.loader import load_engine
from audiogen_studio.engine.model_card import render_model_card
from audiogen_studio.engine.takes import collect

MODELS = Path(__file__).resolve().parents[2] / "models"
#: what the README promises works out of the box
SHIPPED = {"speech", "music", "wavenet-music", "wavenet-vocoder"}


@pytest.fixture(autouse=True)
def shipped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AUDIOGEN_SHIPPED_MODELS", raising=False)
    monkeypatch.setenv("AUDIOGEN_MODELS", "")


def test_models_folder_is_found_and_within_its_budget() -> None:
    assert shipped_models_dir() == MODELS
    size = sum(p.stat().st_size for p in MODELS.rglob("*") if p.is_file())
    assert size <= 80 * 2**20, f"models/ holds {size / 2**20:.1f} MiB (budget 80)"
    names = {b.name for b in list_bundles([MODELS])}
    assert names >= SHIPPED, f"missing shipped bundles: {sorted(SHIPPED - names)}"


@pytest.mark.parametrize("bundle", list_bundles([MODELS]), ids=lambda b: b.name)
def test_every_shipped_bundle_has_its_card_and_measured_quality(bundle: BundleInfo) -> None:
    card = bundle.path / "README.md"
    assert card.is_file(), f"{bundle.name} has no model card (audiogen-studio models card)"
    assert card.read_text(encoding="utf-8") == render_model_card(bundle), "stale model card"
    quality = bundle.metrics.get("quality", {})
    assert any(isinstance(v, dict) and "value" in v for v in quality.values())
    assert quality.get("_measured_with")


@pytest.mark.parametrize("name", ["speech", "music"])
def test_audiolm_bundles_continue_a_prompt(name: str) -> None:
    torch.set_num_threads(1)
    engine = load_engine(name, device="cpu")
    prompt = synth.riff(repeats=1)
    (take,) = collect(engine, GenerationRequest(prompt=prompt, seconds=0.5, seed=0))
    assert take.complete and take.generated.frames == 8000
    assert np.isfinite(take.output.samples).all()
    np.testing.assert_array_equal(
        take.output.samples[:, : prompt.frames - 800], prompt.samples[:, : prompt.frames - 800]
    )


def test_wavenet_music_continues_a_prompt_sample_by_sample() -> None:
    torch.set_num_threads(1)
    engine = load_engine("wavenet-music", device="cpu")
    prompt = synth.riff(repeats=1)
    (take,) = collect(engine, GenerationRequest(prompt=prompt, seconds=0.1, seed=0))
    assert take.complete and take.generated.frames == 1600
    assert np.isfinite(take.generated.samples).all() and np.abs(take.generated.samples).max() > 0
    np.testing.assert_array_equal(take.output.samples[:, : prompt.frames], prompt.samples)


def test_wavenet_vocoder_resynthesizes_its_input_length() -> None:
    torch.set_num_threads(1)
    engine = load_engine("wavenet-vocoder", mode="vocode", device="cpu")
    clip = synth.riff(repeats=1)
    clip = type(clip)(clip.samples[:, :4000], clip.rate)
    (take,) = collect(engine, GenerationRequest(prompt=clip, mode="vocode", seed=0))
    assert take.complete and take.generated.frames >= clip.frames
    assert np.isfinite(take.generated.samples).all()
