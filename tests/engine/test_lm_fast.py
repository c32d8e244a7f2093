"""Fused numba decode step of the token LM: equals torch's cached step, follows weight changes,
falls back where it cannot run."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import torch

from audiogen_studio.engine.lm_fast import MAX_TOKENS, FusedDecoder, accelerate, decelerate
from audiogen_studio.models.lm import LMConfig, TokenLM

TINY: dict[str, Any] = dict(vocab_size=40, dim=32, depth=2, heads=4, max_seq_len=64)
VARIANTS = [
    dict(positions="rotary"),
    dict(positions="alibi"),
    dict(positions="rotary", norm="layer", mlp="gelu", tie_embeddings=False),
    dict(positions="alibi", heads=2, norm="layer"),
    dict(positions="rotary", dim=64, heads=2, vocab_size=40),  # 32-wide heads, as shipped
]


@pytest.fixture(autouse=True)
def _one_torch_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _model(seed: int = 0, **fields: object) -> TokenLM:
    torch.manual_seed(seed)
    model = TokenLM(LMConfig(**{**TINY, **fields})).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.2 * torch.randn_like(p))
    return model


def _tokens(b: int, t: int, seed: int = 1) -> torch.Tensor:
    return torch.randint(0, 40, (b, t), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("fields", VARIANTS)
def test_fused_steps_equal_torch(fields: dict[str, Any]) -> None:
    model = _model(**fields)
    x = _tokens(3, 45)
    with torch.inference_mode():
        full = model(x)
        assert accelerate(model) and isinstance(model.fused_decode, FusedDecoder)
        cache = model.new_cache(3, 64)
        parts = [model.forward_cached(x[:, :9], cache)]  # torch prefill
        calls = 0
        for i in range(9, 45):
            step = model.fused_decode(x[:, i : i + 1], cache)  # the kernel itself
            assert step is not None
            calls += 1
            parts.append(step)
        assert cache.length == 45 and calls == 36
        torch.testing.assert_close(torch.cat(parts, 1), full, atol=1e-5, rtol=1e-5)
        # a torch prefill chunk in between reads the keys the kernel wrote
        cache.truncate(30)
        more = [model.forward_cached(x[:, 30:31], cache), model.forward_cached(x[:, 31:40], cache)]
        torch.testing.assert_close(torch.cat(more, 1), full[:, 30:40], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("fields", VARIANTS)
def test_fused_calls_of_several_tokens_equal_torch(fields: dict[str, Any]) -> None:
    """A call of t <= MAX_TOKENS ids per row (given ids fed before a sampled one) returns the
    last one's logits and leaves the cache as t one-token steps would, causally within them."""
    model = _model(**fields)
    x = _tokens(3, 45)
    with torch.inference_mode():
        full = model(x)
        accelerate(model)
        cache = model.new_cache(3, 64)
        model.forward_cached(x[:, :9], cache)  # torch prefill
        i = 9
        for t in (1, 3, 2, MAX_TOKENS, 4, 1, 5, 7, 1):
            out = model.forward_cached(x[:, i : i + t], cache, last_only=True, rows=(8, 29))
            assert out.shape == (3, 1, 40) and cache.length == i + t
            torch.testing.assert_close(
                out[:, 0, 8:29], full[:, i + t - 1, 8:29], atol=1e-5, rtol=1e-5
            )
            assert torch.isneginf(out[:, 0, :8]).all() and torch.isneginf(out[:, 0, 29:]).all()
            i += t
        # every key and value the kernel wrote is the full computation's: torch reads them
        torch.testing.assert_close(
            model.forward_cached(x[:, i : i + 3], cache), full[:, i : i + 3], atol=1e-5, rtol=1e-5
        )
        # all positions asked for: torch (the kernel gives the last one's logits only)
        cache.truncate(20)
        assert model.forward_cached(x[:, 20:23], cache).shape == (3, 3, 40)


@pytest.mark.parametrize("fields", VARIANTS)
def test_greedy_ids_in_one_call_equal_torch_step_by_step(fields: dict[str, Any]) -> None:
    """FusedDecoder.greedy: the argmax within each step's span, fed before the next (the last
    one not), in one kernel call -- the ids and the cache torch gives one step at a time."""
    model = _model(**fields)
    x = _tokens(2, 12)
    spans = [(3, 19), (0, 40), (16, 33), (33, 40), (5, 6)]
    with torch.inference_mode():
        reference = model.new_cache(2, 64)
        logits = model.forward_cached(x, reference)[:, -1]  # torch all the way
        expected = []
        for i, (lo, hi) in enumerate(spans):
            ids = logits[:, lo:hi].argmax(-1) + lo
            expected.append(ids)
            if i + 1 < len(spans):
                logits = model.forward_cached(ids[:, None], reference)[:, -1]
        accelerate(model)
        decoder = model.fused_decode
        assert isinstance(decoder, FusedDecoder)
        cache = model.new_cache(2, 64)
        model.forward_cached(x[:, :9], cache)  # torch prefill, then 3 ids and 5 choices fused
        chosen = decoder.greedy(x[:, 9:], cache, spans)
        assert chosen is not None and chosen.dtype == torch.int64
        assert torch.equal(chosen, torch.stack(expected, 1))
        assert cache.length == reference.length == 12 + len(spans) - 1
        n = cache.length
        torch.testing.assert_close(
            cache.kv[:, :, :, :, :n], reference.kv[:, :, :, :, :n], atol=1e-5, rtol=1e-5
        )
        with pytest.raises(ValueError, match="do not fit"):
            decoder.greedy(x[:, :1], cache, [(0, 40)] * (64 - n + 1))
        with pytest.raises(ValueError):
            decoder.greedy(x[:, :1], cache, [(0, 41)])
        assert cache.length == n
        assert decoder.greedy(_tokens(2, MAX_TOKENS + 1), cache, [(0, 40)]) is None


@pytest.mark.parametrize("fields", VARIANTS[:2])
def test_generate_with_the_fused_step_is_unchanged(fields: dict[str, Any]) -> None:
    model = _model(**fields)
    prompt = _tokens(2, 12)
    kw: dict[str, Any] = dict(temperature=0.8, top_k=15)
    plain = model.generate(prompt, 40, generator=torch.Generator().manual_seed(3), **kw)
    accelerate(model)
    fused = model.generate(prompt, 40, generator=torch.Generator().manual_seed(3), **kw)
    assert torch.equal(plain, fused)
    # sliding windows too (max_seq_len 64 < 12 + 80)
    fused = model.generate(prompt, 80, generator=torch.Generator().manual_seed(3), **kw)
    decelerate(model)
    assert model.fused_decode is None
    plain = model.generate(prompt, 80, generator=torch.Generator().manual_seed(3), **kw)
    assert torch.equal(plain, fused)


def test_fused_step_rereads_the_cache_after_torch_writes() -> None:
    """Truncate and re-prefill back to the same length: the mirrored keys must be re-read."""
    model = _model(dim=64, heads=2)
    accelerate(model)
    x = _tokens(1, 30)
    y = x.clone()
    y[:, 20:] = _tokens(1, 10, seed=7)
    with torch.inference_mode():
        cache = model.new_cache(1, 32)
        model.forward_cached(x[:, :20], cache)
        for i in range(20, 25):
            model.forward_cached(x[:, i : i + 1], cache)  # fused steps up to length 25
        cache.truncate(20)
        model.forward_cached(y[:, 20:25], cache)  # torch writes other keys at 20..24
        got = model.forward_cached(y[:, 25:26], cache)  # fused, at the length it left off
        torch.testing.assert_close(got, model(y[:, :26])[:, -1:], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("fields", VARIANTS[:2])
def test_fused_steps_after_an_eviction_equal_torch(fields: dict[str, Any]) -> None:
    """``TokenLM.evict`` moves and re-rotates the keys: the fused step's mirror must follow."""
    model = _model(**fields)
    x = _tokens(2, 40)
    got, want = [], []
    for fused in (True, False):
        (accelerate if fused else decelerate)(model)
        out = got if fused else want
        with torch.inference_mode():
            cache = model.new_cache(2, 24)
            model.forward_cached(x[:, :12], cache)
            for i in range(12, 24):  # fused steps up to a full cache
                out.append(model.forward_cached(x[:, i : i + 1], cache))
            model.evict(cache, 14)
            for i in range(24, 34):  # and on after the eviction
                out.append(model.forward_cached(x[:, i : i + 1], cache))
    torch.testing.assert_close(torch.cat(got, 1), torch.cat(want, 1), atol=1e-5, rtol=1e-5)


def test_fp16_weights_equal_torch_with_rounded_weights() -> None:
    """float16 matrix storage == torch with those matrices rounded to float16 (embedding rows and
    norm gains stay float32; the tied output matrix is rounded)."""
    model = _model(dim=64, heads=2)
    accelerate(model, fp16_weights=True)
    ref = TokenLM(LMConfig(**{**TINY, "dim": 64, "heads": 2, "tie_embeddings": False})).eval()
    state = {
        k: (v.half().float() if v.dim() == 2 and k.startswith("blocks.") else v)
        for k, v in model.state_dict().items()
    }
    state["head.weight"] = model.embed.weight.detach().half().float()
    ref.load_state_dict(state)
    x = _tokens(2, 24)
    with torch.inference_mode():
        cache = model.new_cache(2, 32)  # every position through the kernel, from position 0
        got = torch.cat([model.forward_cached(x[:, i : i + 1], cache) for i in range(24)], 1)
        torch.testing.assert_close(got, ref(x), atol=1e-5, rtol=1e-5)
        exact = model(x)  # the float32 model itself: close, not equal
        assert 1e-5 < (got - exact).abs().max() < 0.05


def test_fused_step_follows_weight_changes() -> None:
    model = _model()
    accelerate(model)
    x = _tokens(1, 20)
    other = _model(seed=5)
    with torch.inference_mode():
        cache = model.new_cache(1, 32)
        model.forward_cached(x[:, :19], cache)
        model.forward_cached(x[:, 19:], cache)  # packs the weights
    model.load_state_dict(other.state_dict())  # in place: version counters change
    with torch.inference_mode():
        cache.reset()
        model.forward_cached(x[:, :19], cache)
        got = model.forward_cached(x[:, 19:], cache)
        torch.testing.assert_close(got, other(x)[:, -1:], atol=1e-5, rtol=1e-5)


def test_fused_step_declines_what_it_cannot_run() -> None:
    model = _model()
    accelerate(model)
    decoder = model.fused_decode
    assert isinstance(decoder, FusedDecoder)
    x = _tokens(1, 5)
    cache = model.new_cache(1, 8)
    with torch.inference_mode():
        model.forward_cached(x[:, :4], cache)
        assert decoder(x[:, 4:], model.new_cache(1, 8, dtype=torch.float64)) is None
        too_many = _tokens(1, MAX_TOKENS + 1)
        assert decoder(too_many, model.new_cache(1, 16)) is None  # a prefill: torch's
    # gradients enabled on a model that needs them: torch (the kernel has no backward)
    assert decoder(x[:, 4:], cache) is None
    out = model.forward_cached(x[:, 4:], cache)
    assert out.requires_grad
    with torch.inference_mode():
        model.train()
        assert decoder(x[:, 4:], cache) is None
        model.eval()
        cache.truncate(4)
        with pytest.raises(IndexError):
            decoder(torch.tensor([[40]]), cache)


@pytest.mark.parametrize("rows", [(0, 1), (5, 37), (16, 32), (33, 40), (0, 40)])
@pytest.mark.parametrize("fields", VARIANTS[:3])
def test_fused_rows_equal_torch_within_and_are_minus_inf_outside(
    fields: dict[str, Any], rows: tuple[int, int]
) -> None:
    model = _model(**fields)
    x = _tokens(2, 30)
    lo, hi = rows
    with torch.inference_mode():
        full = model(x)
        accelerate(model)
        cache = model.new_cache(2, 64)
        model.forward_cached(x[:, :10], cache)
        for i in range(10, 30):
            got = model.forward_cached(x[:, i : i + 1], cache, rows=rows)[:, 0]
            assert model.fused_decode is not None and cache.length == i + 1
            torch.testing.assert_close(got[:, lo:hi], full[:, i, lo:hi], atol=1e-5, rtol=1e-5)
            outside = torch.cat([got[:, :lo], got[:, hi:]], dim=1)
            assert bool(torch.isneginf(outside).all())


def test_rows_outside_the_vocabulary_are_refused_before_anything_runs() -> None:
    model = _model()
    accelerate(model)
    cache = model.new_cache(1, 8)
    with torch.inference_mode():
        model.forward_cached(_tokens(1, 3), cache)
        for rows in [(0, 0), (5, 3), (-1, 4), (30, 41)]:
            with pytest.raises(ValueError, match="logit rows"):
                model.forward_cached(_tokens(1, 1), cache, rows=rows)
    assert cache.length == 3  # nothing was written


def _float16_valued(model: TokenLM) -> TokenLM:
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(p.half().float())
    return model


def test_float16_storage_is_chosen_only_when_lossless() -> None:
    x = _tokens(2, 24)
    plain = _model()
    halved = _float16_valued(_model())
    with torch.inference_mode():
        for model, expect_fp16 in [(plain, False), (halved, True)]:
            full = model(x)
            accelerate(model)
            decoder = model.fused_decode
            assert isinstance(decoder, FusedDecoder)
            cache = model.new_cache(2, 64)
            model.forward_cached(x[:, :8], cache)
            steps = [model.forward_cached(x[:, i : i + 1], cache) for i in range(8, 24)]
            assert decoder.packed_fp16 is expect_fp16
            # float16 storage of float16 values: the same logits as torch's float32 step
            torch.testing.assert_close(torch.cat(steps, 1), full[:, 8:], atol=1e-5, rtol=1e-5)
        # weights that leave float16 values (e.g. an adapted copy) are packed as float32 again
        with torch.no_grad():
            halved.block_list[0].qkv.weight.mul_(1.0001)
        cache = halved.new_cache(2, 64)
        halved.forward_cached(x[:, :8], cache)
        halved.forward_cached(x[:, 8:9], cache)
        decoder = halved.fused_decode
        assert isinstance(decoder, FusedDecoder) and decoder.packed_fp16 is False


def test_kernel_exp_matches_libm() -> None:
    import numba
    import numpy as np

    from audiogen_studio.engine.lm_fast import _exp_neg

    @numba.njit(fastmath=True)
    def run(x: Any, out: Any) -> None:
        for i in range(x.size):
            out[i] = _exp_neg(x[i])

    x = -np.concatenate([np.linspace(0, 90, 200_001), [0.0, 1e-8, 87.0, 1e4]]).astype(np.float32)
    out = np.empty_like(x)
    run(x, out)
    ref = np.exp(x.astype(np.float64))
    inside = x >= -87
    assert np.max(np.abs(out[inside] - ref[inside]) / ref[inside]) < 1e-6
    assert np.all(out[~inside] <= 2e-38) and np.all(out >= 0)
    assert out[0] == 1.0


def test_the_kernel_is_never_called_beyond_its_cache() -> None:
    model = _model()
    accelerate(model)
    decoder = model.fused_decode
    assert isinstance(decoder, FusedDecoder)
    cache = model.new_cache(1, 4)
    with torch.inference_mode():
        model.forward_cached(_tokens(1, 3), cache)
        decoder(_tokens(1, 1), cache)  # position 3: the last one
        with pytest.raises(ValueError, match="do not fit"):
            decoder(_tokens(1, 1), cache)  # position 4: full
        cache.truncate(2)
        decoder(_tokens(1, 1), cache)
        with pytest.raises(ValueError, match="do not fit"):
            decoder(_tokens(2, 1), cache)  # two rows, a cache of one, in the same run
        with pytest.raises(ValueError, match="do not fit"):
            decoder(_tokens(1, 2), cache)  # positions 3 and 4: one too many
        decoder(_tokens(1, 1), cache)
        cache.truncate(2)
        decoder(_tokens(1, 2), cache)  # positions 2 and 3: the last two
    assert cache.length == 4
