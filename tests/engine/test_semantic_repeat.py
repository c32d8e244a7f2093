"""The semantic stage's repetition mixture: the lag a prompt repeats at, the mixture equal to the
full computation, and the bundle setting that turns it on."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from audiolm_stack import random_audiolm_bundle

from audiogen_studio.audio import synth
from audiogen_studio.audio.clip import Clip
from audiogen_studio.engine.api import GenerationRequest
from audiogen_studio.engine.audiolm_pipeline import AudioLMEngine, _CacheMixedStream
from audiogen_studio.engine.bundles import BundleError, read_bundle
from audiogen_studio.engine.repetition import MIN_AGREEMENT, repetition_lag


def test_the_lag_is_where_the_tokens_repeat() -> None:
    rng = np.random.default_rng(0)
    bar = rng.integers(0, 500, 37)  # a 37-frame pattern (0.74 s at 50 Hz), repeated
    tokens = np.tile(bar, 5)[:160]
    found = repetition_lag(tokens, 50.0)
    assert found.lag == 37 and found.agreement == 1.0
    # noisy: a third of the tokens replaced, still found
    noisy = tokens.copy()
    hit = rng.random(noisy.size) < 0.33
    noisy[hit] = rng.integers(0, 500, int(hit.sum()))
    found = repetition_lag(noisy, 50.0)
    assert found.lag == 37 and 0.3 < found.agreement < 0.6
    # no repetition: no lag (chance agreement among 500 ids is far below the threshold)
    found = repetition_lag(rng.integers(0, 500, 160), 50.0)
    assert found.lag is None and found.agreement < MIN_AGREEMENT
    # too short a prompt to compare any lag
    assert repetition_lag(tokens[:20], 50.0).lag is None
    # the rate sets the searched lags: at 12 Hz they end at 24 frames (2 s), short of the period
    assert repetition_lag(tokens, 12.0).lag is None


def _engine(folder: Path, generation: dict[str, object]) -> AudioLMEngine:
    manifest = folder / "bundle.json"
    data = json.loads(manifest.read_text())
    data["generation"] = generation
    manifest.write_text(json.dumps(data))
    return AudioLMEngine.from_bundle(read_bundle(folder), device="cpu")


def test_the_mixture_equals_the_full_computation(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    engine = _engine(random_audiolm_bundle(tmp_path / "b"), {})
    stage = engine.stages["semantic"]
    vocab = stage.model.config.vocab_size
    prompt = torch.tensor([[3, 4, 5, 3, 4, 5], [1, 1, 2, 2, 0, 0]])
    more = torch.tensor([[3, 9, 5], [2, 0, 7]])
    stream = _CacheMixedStream(stage, prompt, mix=0.3, repeat=0.25, lag=3)
    counts = torch.zeros(2, vocab)
    for b in range(2):
        counts[b].index_add_(0, prompt[b], torch.ones(prompt.shape[1]))
    q = (counts + 0.5) / (counts + 0.5).sum(dim=1, keepdim=True)
    with torch.inference_mode():
        for i in range(more.shape[1] + 1):
            seq = torch.cat([prompt, more[:, :i]], dim=1)
            p = torch.softmax(stage.model(seq)[:, -1].float(), dim=-1)
            earlier = torch.nn.functional.one_hot(seq[:, -3], vocab).float()
            want = torch.log(0.45 * p + 0.3 * q + 0.25 * earlier)
            got = stream.next_logits()
            torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(got.exp().sum(dim=1), torch.ones(2))
            if i < more.shape[1]:
                stream.push(more[:, i : i + 1])
    # without a lag the repetition's weight stays with the LM
    plain = _CacheMixedStream(stage, prompt, mix=0.3, repeat=0.25, lag=None)
    with torch.inference_mode():
        p = torch.softmax(stage.model(prompt)[:, -1].float(), dim=-1)
        torch.testing.assert_close(
            plain.next_logits(), torch.log(0.7 * p + 0.3 * q), atol=1e-5, rtol=1e-5
        )


def test_a_bundle_turns_it_on_and_it_is_checked(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    # a semantic LM whose context holds the prompt's last 80 tokens (1.6 s), where lags of up
    # to 55 tokens can be compared (the default 40 holds 20: too few to find one)
    folder = random_audiolm_bundle(
        tmp_path / "c", windows={"semantic": 160, "coarse": 12, "fine": 8}
    )
    # a prompt that repeats: two tones alternating every 0.3 s
    a = synth.sine(330.0, 0.3, rate=16000, amp=0.4).samples
    b = synth.sine(494.0, 0.3, rate=16000, amp=0.4).samples
    prompt = Clip(np.concatenate([a, b] * 5, axis=1), 16000)
    request = GenerationRequest(prompt=prompt, seconds=1.0, seed=5)
    plain = _engine(folder, {"semantic_cache": 0.3})
    repeating = _engine(folder, {"semantic_cache": 0.3, "semantic_repeat": 0.6})
    assert repeating.semantic_repeat == 0.6
    created: list[_CacheMixedStream] = []
    original = _CacheMixedStream.__init__

    def spy(self: _CacheMixedStream, *args: object, **kwargs: object) -> None:
        original(self, *args, **kwargs)  # type: ignore[arg-type]
        created.append(self)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(_CacheMixedStream, "__init__", spy)
        for _ in plain.stream(request):
            pass
        for _ in repeating.stream(request):
            pass
    assert created[0].repeat == 0.0
    lag = created[1].lag
    assert lag is not None and created[1].repeat == 0.6
    # the random tokenizer's tokens of the repeating prompt repeat at its period (0.6 s) or a
    # multiple of it, and the continuation follows them more often than without the mixture
    assert lag % 30 == 0 or abs(lag - 30) <= 1, lag
    generated = [s.tokens[0, -50:].numpy() for s in created]
    agree = [float(np.mean(g[lag:] == g[:-lag])) for g in generated]
    assert agree[1] > agree[0]
    for bad, message in (
        ({"semantic_repeat": 0.8, "semantic_cache": 0.3}, "below 1 - semantic_cache"),
        ({"semantic_repeat": -0.1}, "semantic_repeat must be >= 0"),
        ({"semantic_repeat": "0.2"}, "a number"),
    ):
        with pytest.raises(BundleError, match=message):
            _engine(folder, bad)
