"""Classifier-free guidance of the coarse stage: the guided stream equals the full guided
computation, bundles set it, and the trainer's semantic dropout teaches the unconditional LM."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from audiolm_stack import pushed_codes, random_audiolm_bundle

from audiogen_studio.audio import synth
from audiogen_studio.engine.api import GenerationRequest
from audiogen_studio.engine.audiolm_pipeline import AudioLMEngine, _GuidedStream, _Stream
from audiogen_studio.engine.bundles import BundleError, read_bundle
from audiogen_studio.engine.takes import collect
from audiogen_studio.models.audiolm_layout import TokenLayout
from audiogen_studio.training.audio_dataset import TrainingError
from audiogen_studio.training.lm_trainer import LMTrainOptions, drop_semantic


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.set_num_threads(1)
    return random_audiolm_bundle(tmp_path_factory.mktemp("guidance") / "b")


def _with_guidance(folder: Path, value: object) -> AudioLMEngine:
    manifest = folder / "bundle.json"
    data = json.loads(manifest.read_text())
    data["generation"] = {"coarse_guidance": value}
    manifest.write_text(json.dumps(data))
    return AudioLMEngine.from_bundle(read_bundle(folder), device="cpu")


def _coarse_ids(layout: TokenLayout, frames: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    semantic = torch.randint(0, layout.semantic_vocab, (2, frames), generator=g)
    coarse = torch.randint(
        0, layout.codebook_size, (2, layout.coarse_quantizers, frames * layout.ratio), generator=g
    )
    return layout.coarse_sequence(semantic, coarse)[0]  # [2, frames * group]


@pytest.mark.parametrize("scale", [0.0, 1.0, 3.0])
def test_guided_stream_equals_the_full_guided_computation(bundle: Path, scale: float) -> None:
    engine = AudioLMEngine.from_bundle(read_bundle(bundle), device="cpu")
    stage, layout = engine.stages["coarse"], engine.layout
    group = layout.coarse_group
    ids = _coarse_ids(layout, frames=6, seed=1)
    assert ids.shape[1] < stage.model.config.max_seq_len  # no slide: the whole is the context
    null = ids.clone()
    null[:, ::group] = layout.coarse_sep
    start = 2 * group
    stream = _GuidedStream(stage, ids[:, :start], scale=scale, null_id=layout.coarse_sep)
    model = stage.model
    with torch.inference_mode():
        for n in range(start, ids.shape[1]):
            got = stream.next_logits()
            cond = model(ids[:, :n])[:, -1].float()
            uncond = model(null[:, :n])[:, -1].float()
            torch.testing.assert_close(got, uncond + scale * (cond - uncond), atol=1e-4, rtol=1e-4)
            stream.push(ids[:, n : n + 1])  # semantic ids among them are nulled for uncond
    torch.testing.assert_close(stream.inner.tokens[ids.shape[0] :], null)
    torch.testing.assert_close(stream.tokens, ids)


def test_scale_one_is_the_plain_stream(bundle: Path) -> None:
    engine = AudioLMEngine.from_bundle(read_bundle(bundle), device="cpu")
    stage, layout = engine.stages["coarse"], engine.layout
    ids = _coarse_ids(layout, frames=3, seed=2)
    guided = _GuidedStream(stage, ids, scale=1.0, null_id=layout.coarse_sep)
    plain = _Stream(stage, ids)
    with torch.inference_mode():
        torch.testing.assert_close(guided.next_logits(), plain.next_logits().float())


def test_bundle_guidance_is_read_checked_and_steers_the_codes(bundle: Path, tmp_path: Path) -> None:
    request = GenerationRequest(
        prompt=synth.sine(330.0, 0.5, rate=16000, amp=0.4), seconds=0.4, seed=5
    )
    folder = random_audiolm_bundle(tmp_path / "g")
    plain = _with_guidance(folder, 1.0)
    guided = _with_guidance(folder, 3.0)
    assert plain.coarse_guidance == 1.0 and guided.coarse_guidance == 3.0
    a, b = pushed_codes(plain, request), pushed_codes(guided, request)
    assert a.shape == b.shape and not torch.equal(a, b)
    assert torch.equal(pushed_codes(guided, request), b)  # seeded: reproducible
    (take,) = collect(guided, request)
    assert take.generated.frames == round(0.4 * take.generated.rate)
    assert np.isfinite(take.generated.samples).all()
    for bad, message in (("3", "must be a number"), (True, "must be a number"), (-1, ">= 0")):
        with pytest.raises(BundleError, match=message):
            _with_guidance(folder, bad)


def test_semantic_dropout_nulls_whole_windows_at_its_rate() -> None:
    layout = TokenLayout(
        semantic_vocab=50,
        codebook_size=16,
        coarse_quantizers=2,
        fine_quantizers=2,
        semantic_rate=50.0,
        acoustic_rate=50.0,
    )
    semantic = torch.randint(0, 50, (4000, 10))
    rng = np.random.default_rng(0)
    assert drop_semantic(semantic, layout, 0.0, rng) is semantic
    out = drop_semantic(semantic, layout, 0.2, rng)
    dropped = (out == layout.coarse_sep).all(dim=1)
    kept = (out == semantic).all(dim=1)
    assert bool((dropped | kept).all())  # a window is dropped whole or not at all
    assert 0.17 < float(dropped.float().mean()) < 0.23
    assert bool((semantic != layout.coarse_sep).all())  # the input is untouched
    base = {"data": "d", "bundle": "b"}
    with pytest.raises(TrainingError, match="coarse stage only"):
        LMTrainOptions(stage="fine", semantic_dropout=0.2, **base).check()
    with pytest.raises(TrainingError, match=r"in \[0, 1\)"):
        LMTrainOptions(stage="coarse", semantic_dropout=1.0, **base).check()
    LMTrainOptions(stage="coarse", semantic_dropout=0.2, **base).check()


def test_a_span_gives_the_guided_logits_of_those_ids_alone(bundle: Path) -> None:
    engine = AudioLMEngine.from_bundle(read_bundle(bundle), device="cpu")
    stage, layout = engine.stages["coarse"], engine.layout
    ids = _coarse_ids(layout, frames=4, seed=3)
    start = layout.coarse_group
    whole = _GuidedStream(stage, ids[:, :start], scale=3.0, null_id=layout.coarse_sep)
    spanned = _GuidedStream(stage, ids[:, :start], scale=3.0, null_id=layout.coarse_sep)
    with torch.inference_mode():
        for n in range(start, ids.shape[1]):
            span = layout.coarse_range((n - start) % layout.coarse_quantizers)
            lo, hi = span
            want, got = whole.next_logits(), spanned.next_logits(span)
            torch.testing.assert_close(got[:, lo:hi], want[:, lo:hi], atol=1e-5, rtol=1e-5)
            assert bool(torch.isneginf(got[:, :lo]).all() and torch.isneginf(got[:, hi:]).all())
            whole.push(ids[:, n : n + 1])
            spanned.push(ids[:, n : n + 1])
