"""Token LM: config, KV cache == full forward (RoPE and ALiBi, any chunking), truncate/refill,
generate == generate_uncached (also across sliding windows), allowed ids, cancel, learning a
pattern, checkpoints, bad input."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from audiogen_studio.models.checkpoint import load_into, load_state, save_module
from audiogen_studio.models.lm import LMConfig, TokenLM, alibi_slopes

TINY: dict[str, Any] = dict(vocab_size=40, dim=32, depth=2, heads=4, max_seq_len=64)
VARIANTS = [
    dict(positions="rotary"),
    dict(positions="alibi"),
    dict(positions="rotary", norm="layer", mlp="gelu", tie_embeddings=False),
    dict(positions="alibi", heads=2, ff_mult=2.0),
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
    with torch.no_grad():  # larger than the 0.02 init, so attention patterns are not flat
        for p in model.parameters():
            p.add_(0.2 * torch.randn_like(p))
    return model


def _tokens(b: int, t: int, vocab: int = 40, seed: int = 1) -> torch.Tensor:
    return torch.randint(0, vocab, (b, t), generator=torch.Generator().manual_seed(seed))


# --- config ------------------------------------------------------------------------------------


def test_config_round_trip_and_derived_sizes() -> None:
    c = LMConfig(vocab_size=500, positions="alibi", mlp="gelu", ff_mult=3.0)
    assert LMConfig.from_dict(c.to_dict()) == c
    assert c.head_dim == 32 and c.ff_hidden == 768
    assert LMConfig(vocab_size=500).ff_hidden == 688  # 2/3 · 4 · 256 = 682.7 → multiple of 8
    with pytest.raises(ValueError, match="unknown LM config keys: bogus"):
        LMConfig.from_dict({**c.to_dict(), "bogus": 1})
    with pytest.raises(ValueError, match="JSON object"):
        LMConfig.from_dict([1, 2])  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"vocab_size": 0}, "vocab_size"),
        ({"dim": 30, "heads": 4}, "multiple of heads"),
        ({"dim": 24, "heads": 8}, "even head size"),
        ({"positions": "learned"}, "positions"),
        ({"norm": "batch"}, "norm"),
        ({"mlp": "relu"}, "mlp"),
        ({"dropout": 1.0}, "dropout"),
        ({"ff_mult": 0}, "ff_mult"),
        ({"max_seq_len": True}, "max_seq_len"),
    ],
)
def test_config_rejects_bad_values(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        LMConfig(**{**TINY, **fields})


def test_alibi_slopes() -> None:
    assert torch.allclose(alibi_slopes(8), torch.tensor([2.0 ** -(i + 1) for i in range(8)]))
    six = alibi_slopes(6)  # 4 of the 4-head set, then every other one of the 8-head set
    expected = [2.0 ** (-2 * (i + 1)) for i in range(4)] + [2.0**-1, 2.0**-3]
    assert torch.allclose(six, torch.tensor(expected))


def test_parameter_count_and_tying() -> None:
    tied = TokenLM(LMConfig(vocab_size=500))
    untied = TokenLM(LMConfig(vocab_size=500, tie_embeddings=False))
    assert untied.num_parameters() - tied.num_parameters() == 500 * 256
    assert tied.output_weight is tied.embed.weight
    # the identical-configuration comparison model of benchmarks/audiolm.py: ~3.3 M parameters
    assert 3.2e6 < tied.num_parameters() < 3.4e6


# --- forward ------------------------------------------------------------------------------------


@pytest.mark.parametrize("fields", VARIANTS)
def test_forward_is_causal(fields: dict[str, Any]) -> None:
    model = _model(**fields)
    x = _tokens(2, 30)
    y = x.clone()
    y[:, 20:] = (y[:, 20:] + 1) % 40
    with torch.no_grad():
        a, b = model(x), model(y)
    assert a.shape == (2, 30, 40)
    torch.testing.assert_close(a[:, :20], b[:, :20], atol=1e-6, rtol=0)
    assert (a[:, 20:] - b[:, 20:]).abs().max() > 1e-3


@pytest.mark.parametrize("fields", VARIANTS)
def test_cached_prefill_and_decode_equal_full_forward(fields: dict[str, Any]) -> None:
    model = _model(**fields)
    x = _tokens(3, 50)
    with torch.inference_mode():
        full = model(x)
        # prefill 12, then one token at a time
        cache = model.new_cache(3, 64)
        parts = [model.forward_cached(x[:, :12], cache)]
        parts += [model.forward_cached(x[:, i : i + 1], cache) for i in range(12, 50)]
        assert cache.length == 50
        torch.testing.assert_close(torch.cat(parts, 1), full, atol=1e-5, rtol=0)
        # a mix of chunk sizes, including single tokens in between
        cache.reset()
        parts, i = [], 0
        for size in (1, 1, 7, 3, 1, 16, 2, 1, 18):
            parts.append(model.forward_cached(x[:, i : i + size], cache))
            i += size
        assert i == 50
        torch.testing.assert_close(torch.cat(parts, 1), full, atol=1e-5, rtol=0)
        # last_only: the logits of the last position only
        cache.reset()
        last = model.forward_cached(x[:, :20], cache, last_only=True)
        torch.testing.assert_close(last, full[:, 19:20], atol=1e-5, rtol=0)


@pytest.mark.parametrize("positions", ["rotary", "alibi"])
def test_truncate_and_refill_are_exact(positions: str) -> None:
    model = _model(positions=positions)
    x = _tokens(2, 40)
    y = x.clone()
    y[:, 25:] = _tokens(2, 15, seed=9)
    with torch.inference_mode():
        cache = model.new_cache(2, 48)
        model.forward_cached(x, cache)
        cache.truncate(25)  # keep the shared prefix, continue differently
        got = model.forward_cached(y[:, 25:], cache)
        torch.testing.assert_close(got, model(y)[:, 25:], atol=1e-5, rtol=0)
        # refill = reset + prefill of a window: the next-token logits of that window alone
        window = y[:, 10:40]
        nxt = model.refill(cache, window)
        assert cache.length == 30
        torch.testing.assert_close(nxt, model(window)[:, -1], atol=1e-5, rtol=0)
        with pytest.raises(ValueError, match="truncate"):
            cache.truncate(31)


def _block_sliding_forward(model: TokenLM, x: torch.Tensor, starts: list[int]) -> torch.Tensor:
    """Reference logits ``[B, T, V]``: position ``i`` attends to positions ``starts[i]..i`` only
    (every position at its absolute place; written out here, independent of the cache code)."""
    b, t = x.shape
    c = model.config
    allowed = torch.zeros(t, t, dtype=torch.bool)
    for i, s in enumerate(starts):
        allowed[i, s : i + 1] = True
    bias = torch.zeros(c.heads, t, t).masked_fill(~allowed, float("-inf"))
    if c.positions == "alibi":
        rel = torch.arange(t)[None, :] - torch.arange(t)[:, None]  # j - i
        bias = bias + model.alibi[:, None, None] * rel.clamp(max=0)
    h = model.embed(x)
    for blk in model.block_list:
        qkv = torch.nn.functional.linear(blk.norm1(h), blk.qkv.weight).view(b, t, 3, c.heads, -1)
        if c.positions == "rotary":
            qkv = torch.cat([model._rope(qkv[:, :, :2], 0), qkv[:, :, 2:]], dim=2)
        q, k, v = (qkv[:, :, i].transpose(1, 2) for i in range(3))
        a = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=bias)
        h = h + torch.nn.functional.linear(a.transpose(1, 2).reshape(b, t, -1), blk.proj.weight)
        h = h + model._mlp(blk, blk.norm2(h))
    return model._logits(h)


@pytest.mark.parametrize("fields", VARIANTS)
def test_evict_equals_attention_over_what_the_cache_held(fields: dict[str, Any]) -> None:
    """Evicting keeps the kept keys and values (RoPE keys rotated back): each position's logits
    equal the model over the whole sequence with position ``i`` attending to the positions the
    cache held when ``i`` was fed."""
    model = _model(**fields)
    x = _tokens(2, 40)
    plan = [(10, 0), (6, 7), (7, 9), (3, 0), (6, 12), (5, 2)]  # (tokens fed, positions dropped)
    starts: list[int] = []
    got = []
    start = fed = 0
    with torch.inference_mode():
        cache = model.new_cache(2, 16)
        for n, drop in plan:
            got.append(model.forward_cached(x[:, fed : fed + n], cache))
            starts += [start] * n
            fed += n
            model.evict(cache, drop)
            start += drop
            assert cache.length == fed - start
        want = _block_sliding_forward(model, x[:, :fed], starts)
        torch.testing.assert_close(torch.cat(got, dim=1), want, atol=2e-5, rtol=0)
        # layer 0 of an evicted cache is exactly a fresh prefill of the kept ids
        fresh = model.new_cache(2, 16)
        model.forward_cached(x[:, start:fed], fresh)
        torch.testing.assert_close(
            cache.kv[0, :, :, :, : cache.length],
            fresh.kv[0, :, :, :, : cache.length],
            atol=1e-6,
            rtol=0,
        )
        with pytest.raises(ValueError, match="cannot drop"):
            model.evict(cache, cache.length + 1)
        epoch = cache.epoch
        model.evict(cache, 0)
        assert cache.epoch == epoch  # nothing dropped, nothing for a fused mirror to re-read


def test_cache_errors_and_layout() -> None:
    model = _model()
    cache = model.new_cache(2, 10)
    assert tuple(cache.kv.shape) == (2, 2, 2, 4, 10, 8)
    assert cache.max_len == 10 and cache.batch == 2 and cache.free == 10
    with torch.inference_mode():
        model.forward_cached(_tokens(2, 8), cache)
        with pytest.raises(ValueError, match="do not fit"):
            model.forward_cached(_tokens(2, 3), cache)
        with pytest.raises(ValueError, match="batch"):
            model.forward_cached(_tokens(1, 1), cache)
    with pytest.raises(ValueError, match="cache length"):
        model.new_cache(1, 65)
    with pytest.raises(ValueError, match="max_seq_len"):
        model(_tokens(1, 65))


def test_dropout_only_in_training() -> None:
    model = _model(dropout=0.5)
    x = _tokens(2, 20)
    model.train()
    a, b = model(x), model(x)
    assert (a - b).abs().max() > 1e-3
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(model(x), model(x))


# --- generation ----------------------------------------------------------------------------------


@pytest.mark.parametrize("fields", VARIANTS[:3])
def test_generate_equals_uncached_token_for_token(fields: dict[str, Any]) -> None:
    model = _model(**fields)
    prompt = _tokens(2, 10)
    kw: dict[str, Any] = dict(temperature=0.9, top_k=20, top_p=0.95)
    a = model.generate(prompt, 30, generator=torch.Generator().manual_seed(4), **kw)
    b = model.generate_uncached(prompt, 30, generator=torch.Generator().manual_seed(4), **kw)
    assert a.shape == (2, 30) and a.dtype == torch.long
    assert torch.equal(a, b)
    c = model.generate(prompt, 30, generator=torch.Generator().manual_seed(5), **kw)
    assert not torch.equal(a, c)


@pytest.mark.parametrize("positions", ["rotary", "alibi"])
def test_sliding_window_generation_equals_uncached(positions: str) -> None:
    """Beyond max_seq_len the context slides by ``window_stride`` (re-prefilled, exact)."""
    model = _model(positions=positions, max_seq_len=24)
    prompt = _tokens(1, 20)
    for stride in (None, 5):
        kw: dict[str, Any] = dict(temperature=1.0, window_stride=stride)
        a = model.generate(prompt, 40, generator=torch.Generator().manual_seed(1), **kw)
        b = model.generate_uncached(prompt, 40, generator=torch.Generator().manual_seed(1), **kw)
        assert a.shape == (1, 40)
        assert torch.equal(a, b)
    # greedy continuation of a window equals greedy from the window alone at the first slide
    greedy = model.generate(prompt, 5, temperature=0.0)
    assert torch.equal(greedy[:, 0], model(prompt)[:, -1].argmax(-1))
    with pytest.raises(ValueError, match="window_stride"):
        model.generate(prompt, 40, window_stride=24)


def test_generate_respects_allowed_ranges_per_step() -> None:
    model = _model()
    prompt = _tokens(3, 6)
    ranges = [(0, 10), (10, 20), (20, 40)]
    out = model.generate(
        prompt, 24, allowed=lambda i: ranges[i % 3], generator=torch.Generator().manual_seed(0)
    )
    for i in range(24):
        lo, hi = ranges[i % 3]
        assert ((out[:, i] >= lo) & (out[:, i] < hi)).all()
    mask = torch.zeros(40, dtype=torch.bool)
    mask[[5, 6]] = True
    out = model.generate(prompt, 10, allowed=mask, temperature=2.0)
    assert set(out.flatten().tolist()) <= {5, 6}
    assert set(model.generate(prompt, 10, allowed=(33, 34)).flatten().tolist()) == {33}


def test_generate_cancel_and_on_token() -> None:
    model = _model()
    prompt = _tokens(2, 5)
    cancel = threading.Event()
    seen: list[tuple[int, list[int]]] = []

    def on_token(step: int, ids: torch.Tensor) -> None:
        seen.append((step, ids.tolist()))
        if step == 6:
            cancel.set()

    out = model.generate(prompt, 50, cancel=cancel, on_token=on_token)
    assert out.shape == (2, 7)
    assert [s for s, _ in seen] == list(range(7))
    assert [ids for _, ids in seen] == out.T.tolist()
    # already cancelled: nothing is generated
    assert model.generate(prompt, 50, cancel=cancel).shape == (2, 0)
    assert model.generate_uncached(prompt, 50, cancel=cancel).shape == (2, 0)
    assert model.generate(prompt, 0).shape == (2, 0)


def test_generation_bad_input_is_a_clear_error() -> None:
    model = _model()
    with pytest.raises(ValueError, match="longer than max_seq_len 64"):
        model.generate(_tokens(1, 65), 5)
    with pytest.raises(ValueError, match="longer than max_seq_len"):
        model.generate_uncached(_tokens(1, 65), 5)
    with pytest.raises(ValueError, match=r"within \[0, 40\)"):
        model.generate(torch.tensor([[1, 40]]), 5)
    with pytest.raises(ValueError, match=r"within \[0, 40\)"):
        model.generate(torch.tensor([[-1, 3]]), 5)
    with pytest.raises(ValueError, match="integer token ids"):
        model.generate(torch.zeros(1, 4), 5)
    with pytest.raises(ValueError, match=r"\[B, T\]"):
        model.generate(torch.tensor([1, 2, 3]), 5)
    with pytest.raises(ValueError, match="at least one token"):
        model.generate(torch.zeros(1, 0, dtype=torch.long), 5)
    with pytest.raises(ValueError, match="max_new_tokens"):
        model.generate(_tokens(1, 4), -1)
    with pytest.raises(ValueError, match="temperature"):
        model.generate(_tokens(1, 4), 3, temperature=-0.5)


def test_tiny_lm_learns_a_repeating_pattern_and_continues_it() -> None:
    pattern = torch.tensor([3, 1, 4, 1, 5, 9, 2, 6])  # a riff: 1 follows 3 and 4, so context
    seq = pattern.repeat(40)  # matters (not a bigram table)
    torch.manual_seed(0)
    model = TokenLM(LMConfig(vocab_size=10, dim=32, depth=2, heads=4, max_seq_len=48))
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(0)
    model.train()
    for _ in range(150):
        starts = torch.randint(0, len(seq) - 33, (16,), generator=g)
        batch = torch.stack([seq[s : s + 33] for s in starts.tolist()])
        logits = model(batch[:, :-1])
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, 10), batch[:, 1:].reshape(-1))
        opt.zero_grad()
        loss.backward()  # type: ignore[no-untyped-call]
        opt.step()
    model.eval()
    assert loss.item() < 0.1
    prompt = pattern.repeat(2)[3:14][None]  # 11 tokens starting mid-riff
    out = model.generate(prompt, 40, temperature=0.5, generator=torch.Generator().manual_seed(0))
    expected = pattern.repeat(8)[14 : 14 + 40]
    assert torch.equal(out[0], expected), (out[0].tolist(), expected.tolist())
    # 40 new tokens with max_seq_len 48 from an 11-token prompt: the window slid once
    out = model.generate(prompt, 80, temperature=0.0)
    assert torch.equal(out[0], pattern.repeat(16)[14 : 14 + 80])


def test_checkpoint_rebuilds_the_model(tmp_path: Path) -> None:
    model = _model(positions="alibi", tie_embeddings=False)
    path = save_module(model, tmp_path / "lm.safetensors", model.config)
    _, meta = load_state(path)
    rebuilt = TokenLM(LMConfig.from_dict(meta["config"])).eval()
    load_into(rebuilt, path)
    x = _tokens(1, 16)
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(x), model(x), atol=0, rtol=0)
    # derived tables are not stored
    assert not any("rope" in k or "alibi" in k for k in model.state_dict())


@pytest.mark.parametrize("fields", VARIANTS[:3])
def test_cached_rows_equal_full_logits_within_and_minus_inf_outside(
    fields: dict[str, Any],
) -> None:
    model = _model(**fields)  # torch alone: this layer installs no fused step
    x = _tokens(2, 24)
    with torch.inference_mode():
        full = model(x)
        cache = model.new_cache(2, 64)
        prefill = model.forward_cached(x[:, :10], cache, rows=(3, 17))  # t > 1 as well
        steps = [model.forward_cached(x[:, i : i + 1], cache, rows=(3, 17)) for i in range(10, 24)]
        got = torch.cat([prefill, *steps], 1)
    torch.testing.assert_close(got[..., 3:17], full[..., 3:17], atol=1e-5, rtol=0)
    assert bool(torch.isneginf(got[..., :3]).all() and torch.isneginf(got[..., 17:]).all())
    with pytest.raises(ValueError, match="logit rows"):
        model.forward_cached(x[:, :1], model.new_cache(2, 8), rows=(0, 41))
