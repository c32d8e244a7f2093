"""The semantic stage's cache mixture: equals the full computation, set and checked by bundles."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from audiolm_stack import pushed_codes, random_audiolm_bundle

from audiogen_studio.audio import synth
from audiogen_studio.engine.api import GenerationRequest
from audiogen_studio.engine.audiolm_pipeline import AudioLMEngine, _CacheMixedStream
from audiogen_studio.engine.bundles import BundleError, read_bundle


def _engine(folder: Path, generation: dict[str, object]) -> AudioLMEngine:
    manifest = folder / "bundle.json"
    data = json.loads(manifest.read_text())
    data["generation"] = generation
    manifest.write_text(json.dumps(data))
    return AudioLMEngine.from_bundle(read_bundle(folder), device="cpu")


def _semantic_tokens(engine: AudioLMEngine, request: GenerationRequest) -> torch.Tensor:
    """The semantic ids ``[B, n]`` the engine sampled for ``request``."""
    sampled: list[torch.Tensor] = []
    sample_into = engine._sample_into

    def recording(stream, count, *args, **kwargs):  # type: ignore[no-untyped-def]
        out = sample_into(stream, count, *args, **kwargs)
        if stream.stage == "semantic":
            sampled.append(out.clone())
        return out

    engine._sample_into = recording  # type: ignore[method-assign]
    try:
        for _ in engine.stream(request):
            pass
    finally:
        del engine._sample_into
    return torch.cat(sampled, dim=1)


def test_cache_mixture_equals_the_full_computation(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    engine = _engine(random_audiolm_bundle(tmp_path / "b"), {})
    stage = engine.stages["semantic"]
    vocab = stage.model.config.vocab_size
    prompt = torch.tensor([[3, 3, 3, 7, 7, 1], [0, 0, 0, 0, 0, 0]])
    more = torch.tensor([[5, 3, 9], [2, 0, 0]])
    stream = _CacheMixedStream(stage, prompt, mix=0.4)
    counts = torch.zeros(2, vocab)
    for b in range(2):
        counts[b].index_add_(0, prompt[b], torch.ones(prompt.shape[1]))
    q = (counts + 0.5) / (counts + 0.5).sum(dim=1, keepdim=True)
    with torch.inference_mode():
        for i in range(more.shape[1] + 1):
            seq = torch.cat([prompt, more[:, :i]], dim=1)
            p = torch.softmax(stage.model(seq)[:, -1].float(), dim=-1)
            got = stream.next_logits()
            torch.testing.assert_close(got, torch.log(0.6 * p + 0.4 * q), atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(got.exp().sum(dim=1), torch.ones(2))
            if i < more.shape[1]:
                stream.push(more[:, i : i + 1])  # the cache keeps the prompt's frequencies


def test_bundle_cache_is_read_checked_and_steers_the_tokens(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    folder = random_audiolm_bundle(tmp_path / "c")
    request = GenerationRequest(
        prompt=synth.sine(330.0, 0.5, rate=16000, amp=0.4), seconds=0.4, seed=5
    )
    plain = _engine(folder, {})
    cached = _engine(folder, {"semantic_cache": 0.9})
    assert plain.semantic_cache == 0.0 and cached.semantic_cache == 0.9
    assert not torch.equal(_semantic_tokens(plain, request), _semantic_tokens(cached, request))
    assert pushed_codes(cached, request).shape == pushed_codes(plain, request).shape
    for bad, message in ((1.0, r"in \[0, 1\)"), (-0.1, r"in \[0, 1\)"), ("0.5", "a number")):
        with pytest.raises(BundleError, match=message):
            _engine(folder, {"semantic_cache": bad})
