"""Prompt adaptation: settings, training windows, the adapted copy, and the engine using it."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F  # noqa: N812
from audiolm_stack import pushed_codes, random_audiolm_bundle

from audiogen_studio.audio import synth
from audiogen_studio.audio.clip import Clip
from audiogen_studio.engine import audiolm_pipeline
from audiogen_studio.engine.adaptation_settings import default_adapt_steps
from audiogen_studio.engine.api import GenerationError, GenerationRequest
from audiogen_studio.engine.audiolm_pipeline import AudioLMEngine
from audiogen_studio.engine.bundles import BundleError, read_bundle
from audiogen_studio.engine.prompt_adaptation import (
    AdaptationCache,
    AdaptationCancelledError,
    AdaptationSettings,
    adapt_copy,
    last_windows,
)
from audiogen_studio.engine.takes import collect
from audiogen_studio.models.lm import LMConfig, TokenLM


def _prompt(seconds: float = 0.5) -> Clip:
    return synth.sine(330.0, seconds, rate=16000, amp=0.4)


def _loss(model: TokenLM, seq: torch.Tensor, mask: torch.Tensor) -> float:
    with torch.no_grad():
        logits = model(seq[:, :-1])
        targets = seq[:, 1:].masked_fill(~mask[1:][None, :], -100)
        return float(F.cross_entropy(logits.transpose(1, 2), targets, ignore_index=-100))


@pytest.fixture()
def tiny_lm() -> TokenLM:
    torch.manual_seed(0)
    return TokenLM(LMConfig(vocab_size=40, dim=32, depth=2, heads=2, max_seq_len=64, dropout=0.1))


# --- settings ------------------------------------------------------------------------------------


def test_settings_round_trip_and_reject_bad_values() -> None:
    settings = AdaptationSettings(
        steps=12, lr=5e-4, stages=("coarse", "fine"), windows=2, seconds=1.5
    )
    assert AdaptationSettings.from_dict(settings.to_dict()) == settings
    assert settings.enabled and not AdaptationSettings().enabled
    assert settings.with_steps(None) is settings
    for bad, message in (
        ({"steps": -1}, "steps"),
        ({"steps": 2.5}, "integer"),
        ({"lr": 0}, "lr"),
        ({"lr": float("nan")}, "lr"),
        ({"stages": ["voice"]}, "stages"),
        ({"stages": "coarse"}, "list"),
        ({"windows": 0}, "windows"),
        ({"seconds": 0}, "seconds"),
        ({"seconds": True}, "seconds"),
        ({"mix": 0}, "mix"),
        ({"mix": 1.5}, "mix"),
        ({"temperature": 1}, "unknown"),
    ):
        with pytest.raises(GenerationError, match=message):
            AdaptationSettings.from_dict(bad)
    with pytest.raises(GenerationError, match="adapt_steps"):
        GenerationRequest(prompt=_prompt(), adapt_steps=-3)
    # a request's steps replace the steps only: rate, stages, windows, seconds and mix stay
    assert settings.with_steps(0).to_dict() == {**settings.to_dict(), "steps": 0}
    assert default_adapt_steps({"adaptation": settings.to_dict()}) == 12
    assert default_adapt_steps({}) == 0
    assert default_adapt_steps({"adaptation": "lots"}) == 0  # loading reports it, not a menu


def test_last_windows_end_at_the_prompt_end_on_group_boundaries() -> None:
    seq = torch.arange(50)[None]
    mask = (torch.arange(50) % 5) != 0  # group of 5, first id conditioning
    one, m = last_windows(seq, mask, capacity=22, group=5, windows=1)
    assert one.tolist() == [list(range(30, 50))]  # 22 ids -> 4 whole groups, ending at the end
    assert torch.equal(m, mask[:20])
    three, _ = last_windows(seq, mask, capacity=22, group=5, windows=3)
    assert [int(w[0]) for w in three] == [0, 15, 30]
    assert all(int(w[0]) % 5 == 0 for w in three)
    short, _ = last_windows(seq[:, :15], mask[:15], capacity=22, group=5, windows=4)
    assert short.shape == (1, 15)  # a prompt shorter than a window is one whole window
    with pytest.raises(GenerationError, match="too short"):
        last_windows(seq[:, :7], mask[:7], capacity=22, group=5, windows=1)


# --- the adapted copy ----------------------------------------------------------------------------


def test_adapt_copy_learns_the_prompt_and_leaves_the_model_alone(tiny_lm: TokenLM) -> None:
    torch.manual_seed(1)
    seq = torch.randint(0, 40, (2, 48))
    mask = torch.ones(48, dtype=torch.bool)
    before = {k: v.clone() for k, v in tiny_lm.state_dict().items()}
    loss0 = _loss(tiny_lm.eval(), seq, mask)
    with torch.inference_mode():  # the engine calls it from inside inference mode
        adapted = adapt_copy(tiny_lm, seq, mask, steps=30, lr=3e-3)
    assert _loss(adapted, seq, mask) < 0.6 * loss0
    assert not adapted.training and not any(p.requires_grad for p in adapted.parameters())
    for k, v in tiny_lm.state_dict().items():
        torch.testing.assert_close(v, before[k], rtol=0, atol=0)
    again = adapt_copy(tiny_lm, seq, mask, steps=30, lr=3e-3)  # reproducible
    for (k, v), w in zip(adapted.state_dict().items(), again.state_dict().values(), strict=True):
        torch.testing.assert_close(v, w, rtol=0, atol=0, msg=k)
    # mix: the weights end a fraction of the way from the model's to the adapted ones
    third = adapt_copy(tiny_lm, seq, mask, steps=30, lr=3e-3, mix=1 / 3)
    for name, p in third.named_parameters():
        expected = before[name] + (dict(adapted.named_parameters())[name] - before[name]) / 3
        torch.testing.assert_close(p, expected, rtol=1e-5, atol=1e-6, msg=name)
    assert loss0 > _loss(third, seq, mask) > _loss(adapted, seq, mask)


def test_adapt_copy_of_the_top_blocks_trains_those_alone(tiny_lm: TokenLM) -> None:
    from audiogen_studio.engine.prompt_adaptation import _span_loss

    torch.manual_seed(1)
    seq = torch.randint(0, 40, (2, 48))
    mask = torch.ones(48, dtype=torch.bool)
    loss0 = _loss(tiny_lm.eval(), seq, mask)
    before = {k: v.clone() for k, v in tiny_lm.state_dict().items()}
    top = adapt_copy(tiny_lm, seq, mask, steps=30, lr=3e-3, blocks=1)
    assert _loss(top, seq, mask) < 0.9 * loss0
    moved = {k for k, v in top.state_dict().items() if not torch.equal(v, before[k])}
    assert moved and all(k.startswith(("blocks.1.", "norm_f.")) for k in moved)
    assert not any(p.requires_grad for p in top.parameters())
    # the same steps with the lower block's output computed in the usual forward pass: equal
    reference = TokenLM(tiny_lm.config)
    reference.load_state_dict(tiny_lm.state_dict())
    reference.eval()
    reference.requires_grad_(False)
    trained = [*reference.block_list[1].parameters(), *reference.norm_f.parameters()]
    for p in trained:
        p.requires_grad_(True)
    optimizer = torch.optim.Adam(trained, lr=3e-3)
    whole = {(0, 40): torch.arange(47)}
    for _ in range(30):
        loss = _span_loss(reference, reference.features(seq[:, :-1]), seq[:, 1:], whole)
        optimizer.zero_grad()
        loss.backward()  # type: ignore[no-untyped-call]
        optimizer.step()
    for (k, v), w in zip(top.state_dict().items(), reference.state_dict().values(), strict=True):
        torch.testing.assert_close(v, w, rtol=1e-5, atol=1e-6, msg=k)
    with pytest.raises(GenerationError, match="blocks"):
        AdaptationSettings(steps=3, blocks=0)


def test_adam_is_torchs_adam(tiny_lm: TokenLM) -> None:
    from audiogen_studio.engine.prompt_adaptation import _Adam

    torch.manual_seed(3)
    ours, theirs = TokenLM(tiny_lm.config).eval(), TokenLM(tiny_lm.config).eval()  # no dropout
    ours.load_state_dict(tiny_lm.state_dict())
    theirs.load_state_dict(tiny_lm.state_dict())
    a = _Adam(list(ours.parameters()), lr=3e-3)
    b = torch.optim.Adam(theirs.parameters(), lr=3e-3)
    seq = torch.randint(0, 40, (2, 20))
    for _ in range(4):
        for model, opt in ((ours, a), (theirs, b)):
            opt.zero_grad()
            F.cross_entropy(model(seq[:, :-1]).transpose(1, 2), seq[:, 1:]).backward()
            opt.step()
    for (name, p), q in zip(ours.named_parameters(), theirs.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6, msg=name)


def test_span_loss_is_the_softmax_over_each_positions_span(tiny_lm: TokenLM) -> None:
    from audiogen_studio.engine.prompt_adaptation import _span_loss

    torch.manual_seed(2)
    tiny_lm.eval()
    seq = torch.randint(10, 20, (2, 16))
    whole = {(0, 40): torch.arange(15)}
    with torch.no_grad():
        logits = tiny_lm(seq[:, :-1])
        full = F.cross_entropy(logits.transpose(1, 2), seq[:, 1:])
        features = tiny_lm.features(seq[:, :-1])
        torch.testing.assert_close(_span_loss(tiny_lm, features, seq[:, 1:], whole), full)
        spans = {(10, 20): torch.arange(0, 15, 2), (5, 25): torch.arange(1, 15, 2)}
        parts = []
        for (lo, hi), positions in spans.items():
            part = logits[:, positions, lo:hi]
            parts.append(
                F.cross_entropy(
                    part.transpose(1, 2), seq[:, 1:][:, positions] - lo, reduction="sum"
                )
            )
        expected = sum(parts) / (2 * 15)
        torch.testing.assert_close(_span_loss(tiny_lm, features, seq[:, 1:], spans), expected)


def test_adapt_copy_stops_when_asked(tiny_lm: TokenLM) -> None:
    calls = []

    def stop() -> bool:
        calls.append(1)
        return len(calls) > 2

    seq = torch.randint(0, 40, (1, 32))
    with pytest.raises(AdaptationCancelledError):
        adapt_copy(
            tiny_lm, seq, torch.ones(32, dtype=torch.bool), steps=50, lr=1e-3, should_stop=stop
        )
    assert len(calls) == 3


def test_cache_keeps_the_most_recent(tiny_lm: TokenLM) -> None:
    cache = AdaptationCache(size=2)
    settings = AdaptationSettings(steps=3)
    keys = [AdaptationCache.key("coarse", settings, torch.full((1, 8), i)) for i in range(3)]
    assert len(set(keys)) == 3
    assert keys[0] != AdaptationCache.key("coarse", settings.with_steps(4), torch.full((1, 8), 0))
    mixed = AdaptationSettings(steps=3, mix=0.5)
    assert keys[0] != AdaptationCache.key("coarse", mixed, torch.full((1, 8), 0))
    for key in keys:
        cache.put(key, tiny_lm)
    assert len(cache) == 2 and cache.get(keys[0]) is None and cache.get(keys[2]) is tiny_lm


# --- the engine ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return random_audiolm_bundle(tmp_path_factory.mktemp("adapt") / "b")


def _coarse_codes(engine: AudioLMEngine, request: GenerationRequest) -> torch.Tensor:
    """The coarse codes ``[B, Qc, F]`` the engine generated (after the decoder's priming)."""
    return pushed_codes(engine, request)[:, : engine.layout.coarse_quantizers]


@pytest.fixture()
def adapt_calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the engine's calls of ``adapt_copy`` (which still runs)."""
    calls: list[int] = []
    real = audiolm_pipeline.adapt_copy

    def counting(*args: object, **kwargs: object) -> TokenLM:
        calls.append(1)
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(audiolm_pipeline, "adapt_copy", counting)
    return calls


def test_adapted_engine_continues_with_the_prompts_codes(bundle: Path) -> None:
    torch.set_num_threads(1)
    engine = AudioLMEngine.from_bundle(read_bundle(bundle), device="cpu")
    engine.adaptation = AdaptationSettings(lr=1e-2)  # a random tiny LM needs big steps
    prompt = _prompt(0.6)
    audio = torch.from_numpy(prompt.samples[0].copy())[None, None]
    with torch.no_grad():
        prompt_codes = engine.codec.encode(audio, n_q=engine.layout.coarse_quantizers)[0]
    plain = GenerationRequest(prompt=prompt, seconds=0.6, seed=5)
    adapted = GenerationRequest(prompt=prompt, seconds=0.6, seed=5, adapt_steps=40)

    def share_in_prompt(codes: torch.Tensor) -> float:
        hits = [
            torch.isin(codes[0, q], prompt_codes[q]).float().mean() for q in range(codes.shape[1])
        ]
        return float(torch.stack(hits).mean())

    before = {k: v.clone() for k, v in engine.stages["coarse"].model.state_dict().items()}
    base = share_in_prompt(_coarse_codes(engine, plain))
    # random LMs sample codes all over the codebook; adapted, mostly the prompt's own
    assert base < 0.5
    assert share_in_prompt(_coarse_codes(engine, adapted)) > base + 0.3
    for k, v in engine.stages["coarse"].model.state_dict().items():
        torch.testing.assert_close(v, before[k], rtol=0, atol=0)
    # adapt_steps=0 is exactly the engine without adaptation
    off = GenerationRequest(prompt=prompt, seconds=0.6, seed=5, adapt_steps=0)
    torch.testing.assert_close(
        _coarse_codes(engine, off), _coarse_codes(engine, plain), rtol=0, atol=0
    )


def test_one_prompt_is_adapted_once_and_takes_stay_reproducible(
    bundle: Path, adapt_calls: list[int]
) -> None:
    torch.set_num_threads(1)
    engine = AudioLMEngine.from_bundle(read_bundle(bundle), device="cpu")
    request = GenerationRequest(prompt=_prompt(), seconds=0.3, seed=2, takes=2, adapt_steps=5)
    first = collect(engine, request)
    second = collect(engine, request)
    assert len(adapt_calls) == 1  # the second request found the adapted copy in the cache
    for a, b in zip(first, second, strict=True):
        torch.testing.assert_close(
            torch.tensor(a.generated.samples), torch.tensor(b.generated.samples)
        )
    fresh = AudioLMEngine.from_bundle(read_bundle(bundle), device="cpu")
    (take,) = collect(
        fresh, GenerationRequest(prompt=_prompt(), seconds=0.3, seed=2, adapt_steps=5)
    )
    torch.testing.assert_close(  # a fresh engine adapts to the same weights
        torch.tensor(take.generated.samples), torch.tensor(first[0].generated.samples)
    )
    collect(engine, GenerationRequest(prompt=_prompt(0.4), seconds=0.3, adapt_steps=5))
    assert len(adapt_calls) == 2  # another prompt is adapted anew


def test_a_prompt_too_short_to_adapt_to_is_continued_as_it_is(bundle: Path) -> None:
    engine = AudioLMEngine.from_bundle(read_bundle(bundle), device="cpu")
    short = _prompt(0.035)  # one semantic token: no window of two frames to train on
    plain = collect(engine, GenerationRequest(prompt=short, seconds=0.2, seed=4, adapt_steps=0))
    (take,) = collect(engine, GenerationRequest(prompt=short, seconds=0.2, seed=4, adapt_steps=5))
    assert len(engine._adapted) == 0
    torch.testing.assert_close(
        torch.tensor(take.generated.samples), torch.tensor(plain[0].generated.samples)
    )


def test_cancel_while_adapting_yields_nothing(bundle: Path) -> None:
    engine = AudioLMEngine.from_bundle(read_bundle(bundle), device="cpu")
    cancel = threading.Event()
    cancel.set()
    request = GenerationRequest(prompt=_prompt(), seconds=0.3, adapt_steps=5)
    assert list(engine.stream(request, cancel)) == []


def test_prepare_adapts_ahead_and_the_stream_equals_an_unprepared_one(
    bundle: Path, adapt_calls: list[int]
) -> None:
    torch.set_num_threads(1)
    request = GenerationRequest(prompt=_prompt(), seconds=0.3, seed=3, takes=2, adapt_steps=4)
    cold = AudioLMEngine.from_bundle(read_bundle(bundle), device="cpu")
    unprepared = collect(cold, request)
    assert len(adapt_calls) == 1
    engine = AudioLMEngine.from_bundle(read_bundle(bundle), device="cpu")
    # another seed, take count and length adapt to the same prompt: the same copy serves them
    ahead = GenerationRequest(prompt=_prompt(), seconds=2.0, seed=9, adapt_steps=4)
    assert engine.prepare(ahead) is True
    assert len(adapt_calls) == 2 and len(engine._adapted) == 1
    assert engine.prepare(ahead) is True  # already there: nothing more to do
    prepared = collect(engine, request)
    assert len(adapt_calls) == 2  # the stream used the prepared copy
    for a, b in zip(prepared, unprepared, strict=True):
        torch.testing.assert_close(
            torch.tensor(a.generated.samples), torch.tensor(b.generated.samples), rtol=0, atol=0
        )


def test_prepare_has_nothing_to_do_without_adaptation_and_reports_bad_prompts(
    bundle: Path, adapt_calls: list[int]
) -> None:
    engine = AudioLMEngine.from_bundle(read_bundle(bundle), device="cpu")
    assert engine.prepare(GenerationRequest(prompt=_prompt(), adapt_steps=0)) is False
    short = GenerationRequest(prompt=_prompt(0.035), adapt_steps=5)  # one frame: not adapted
    assert engine.prepare(short) is False
    cancel = threading.Event()
    cancel.set()
    assert engine.prepare(GenerationRequest(prompt=_prompt(), adapt_steps=5), cancel) is False
    assert len(engine._adapted) == 0
    silent = Clip(torch.zeros(1, 8000).numpy(), 16000)
    with pytest.raises(GenerationError, match="silent"):
        engine.prepare(GenerationRequest(prompt=silent, adapt_steps=5))


def test_bundle_adaptation_defaults_are_loaded_and_checked(tmp_path: Path) -> None:
    folder = random_audiolm_bundle(tmp_path / "b")
    manifest = folder / "bundle.json"
    data = json.loads(manifest.read_text())
    data["generation"] = {"adaptation": {"steps": 7, "lr": 2e-3, "stages": ["coarse", "fine"]}}
    manifest.write_text(json.dumps(data))
    engine = AudioLMEngine.from_bundle(read_bundle(folder), device="cpu")
    assert engine.adaptation == AdaptationSettings(steps=7, lr=2e-3, stages=("coarse", "fine"))
    request = GenerationRequest(prompt=_prompt())
    assert engine.adaptation_for(request).steps == 7
    assert engine.adaptation_for(GenerationRequest(prompt=_prompt(), adapt_steps=0)).steps == 0
    # a window holds the LM's context (12 semantic tokens x 3 ids), or the seconds asked for
    assert engine._adaptation_ids(engine.adaptation, "coarse") == 36
    short = AdaptationSettings(steps=1, seconds=0.1)  # 5 tokens at 50 Hz
    assert engine._adaptation_ids(short, "coarse") == 15
    assert engine._adaptation_span(short) == 5
    data["generation"] = {"adaptation": {"steps": "many"}}
    manifest.write_text(json.dumps(data))
    with pytest.raises(BundleError, match="generation.adaptation"):
        AudioLMEngine.from_bundle(read_bundle(folder), device="cpu")


def test_end_to_end_benchmark_times_every_adaptation(bundle: Path, adapt_calls: list[int]) -> None:
    import sys

    sys.path.insert(0, str(Path(__file__).parents[2] / "benchmarks"))
    from audiolm_end_to_end import end_to_end

    torch.set_num_threads(1)
    result = end_to_end(str(bundle), prompt_seconds=0.5, seconds=0.3, runs=2, adapt_steps=3)
    # one per timed run, and one per run prepared ahead: none for the warm-up or from the cache
    assert len(adapt_calls) == 4
    assert result["e2e_adapt_steps"] == 3
    assert result["rtf"] > 0 and result["rtf_no_adaptation"] > 0
    assert result["prepare_ms"] > 0 and result["first_chunk_ms_prepared"] > 0
    plain = end_to_end(str(bundle), prompt_seconds=0.5, seconds=0.3, runs=1)
    assert plain["e2e_adapt_steps"] == 0 and "rtf_no_adaptation" not in plain


def test_the_copy_of_a_float16_bundle_keeps_to_float16_values(
    bundle: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from audiogen_studio.models.checkpoint import holds_float16_values, round_to_float16_

    copies: list[TokenLM] = []
    real = audiolm_pipeline.adapt_copy

    def recording(*args: object, **kwargs: object) -> TokenLM:
        copies.append(real(*args, **kwargs))  # type: ignore[arg-type]
        return copies[-1]

    monkeypatch.setattr(audiolm_pipeline, "adapt_copy", recording)
    torch.set_num_threads(1)
    request = GenerationRequest(prompt=_prompt(), seconds=0.2, seed=1, adapt_steps=3)
    engine = AudioLMEngine.from_bundle(read_bundle(bundle), device="cpu")
    collect(engine, request)  # a float32 bundle: the adapted copy stays float32
    assert not holds_float16_values(copies[-1].parameters())
    half = AudioLMEngine.from_bundle(read_bundle(bundle), device="cpu")
    round_to_float16_(half.stages["coarse"].model)  # as a bundle shipped as float16 loads
    collect(half, request)
    adapted = copies[-1]
    assert holds_float16_values(adapted.parameters())  # so the fused step packs it as float16
    source = half.stages["coarse"].model
    changed = [
        not torch.equal(a, b)
        for a, b in zip(adapted.parameters(), source.parameters(), strict=True)
    ]
    assert any(changed)  # the adaptation's change survives the rounding
