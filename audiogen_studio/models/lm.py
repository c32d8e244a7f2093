"""Decoder-only token LM with a preallocated KV cache: the three stages of AudioLM.

AudioLM (Borsos et al. 2022, §4.2-4.3) models semantic, coarse and fine acoustic tokens with
decoder-only Transformers; each stage here is one :class:`TokenLM` over a flat vocabulary (the
token layouts are ``models/audiolm_layout.py``'s). The block is the pre-norm GPT block (Radford
et al. 2019 §2.3) with modern parts:

    x  = embed(tokens)                                    [B, T, D]
    for each of `depth` blocks:
        h       = norm1(x)                                RMSNorm (Zhang & Sennrich 2019) or LN
        q, k, v = split(h @ W_qkv)                        fused projection → 3 × [B, H, T, Dh]
        q, k    = rotary(q, k, positions)                 RoPE (Su et al. 2021, §3.4.2)
        a       = softmax(q kᵀ / √Dh + bias + causal) v   torch scaled_dot_product_attention;
                                                          ALiBi bias (Press et al. 2022, §3)
                                                          instead of RoPE when chosen
        x       = x + drop(a @ W_o)
        x       = x + drop(mlp(norm2(x)))                 SwiGLU (Shazeer 2020, §2) or GELU
    logits = norm_f(x) @ Eᵀ                               tied to the embedding by default [B, T, V]

Teacher forcing: ``logits[:, t]`` is the distribution of ``tokens[:, t + 1]``.

**KV cache.** :meth:`TokenLM.new_cache` allocates one tensor ``kv [depth, 2, B, H, L, Dh]``
(keys, values) up front; :meth:`TokenLM.forward_cached` runs ``t`` new tokens at positions
``cache.length .. cache.length + t - 1`` (``t > 1``: prefill, ``t == 1``: decode), writes their
keys/values into the cache in place (no ``torch.cat`` per step) and attends over the first
``length + t`` positions. Its logits equal :meth:`TokenLM.forward` over the whole sequence (tested
to 1e-5 in float32 for any split into chunks, RoPE and ALiBi).

**Sliding windows.** Keys in the cache carry their absolute rotation, and in layers ≥ 1 they were
computed from hidden states that attended to everything before them, so dropping the oldest
positions of a cache is *not* equal to running the model on the kept window. The exact way, used by
:meth:`TokenLM.generate` when a sequence outgrows ``max_seq_len`` (or the cache), is to
``cache.reset()`` and re-prefill the kept window (:meth:`TokenLM.refill`): one parallel forward
every ``window_stride`` new tokens. :meth:`TokenLM.evict` is the cheap alternative the AudioLM
engine offers (``generation.context_slide``): it keeps the cached keys and values of the newer
positions, rotated back to their new places, so each position goes on attending to what the
cache held when it was fed (equal to the full model under that block-sliding mask; tested).

**Speed.** The cached step is written functionally over the module's weights (no
``nn.Module.__call__`` per op): one fused QKV ``linear``, RoPE as ``x·cos + swap(x)·sin`` from
precomputed tables, two in-place cache writes, SDPA over a view of the cache, out projection,
fused gate/up ``linear``, ``silu·mul``, down ``linear`` -- about 14 tensor ops per block, and only
the last position's logits during generation. On a CPU that is still dispatch-bound (~2 ms per
token at dim 256 / depth 4 on the 2-core development machine), so the engine installs a fused
numba step into :attr:`TokenLM.fused_decode` (``engine/lm_fast.py``, ~4x faster; this layer
imports no compiler). ``benchmarks/audiolm.py`` measures both against ``audiolm-pytorch``.
"""

from __future__ import annotations

import dataclasses
import math
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, cast

import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

from audiogen_studio.models.checkpoint import config_from_dict
from audiogen_studio.models.sampling import AllowedSpec, check_sampling, sample_next

__all__ = [
    "Allowed",
    "KVCache",
    "LMConfig",
    "TokenLM",
    "alibi_slopes",
    "check_rows",
]

#: ``allowed`` of :meth:`TokenLM.generate`: one spec for every step, or a function of the step
#: index (``0`` = the first new token) returning the spec for that step.
Allowed = AllowedSpec | Callable[[int], AllowedSpec]

Positions = Literal["rotary", "alibi"]


@dataclass(frozen=True, kw_only=True)
class LMConfig:
    """Hyper-parameters of a :class:`TokenLM`; ``LMConfig.from_dict(c.to_dict()) == c``.

    Attributes:
        vocab_size: ``V``, ids ``0 .. V-1``.
        dim: ``D``, width of the residual stream.
        depth: number of blocks.
        heads: ``H`` attention heads; ``D`` must be a multiple (head size ``Dh = D / H``, even
            for RoPE).
        max_seq_len: longest sequence the model attends over (RoPE table size, cache cap).
        ff_mult: MLP width multiplier: hidden ``ff_mult·D`` for GELU, ``⌊2/3·ff_mult·D⌋``
            rounded up to a multiple of 8 for SwiGLU (same parameter count).
        dropout: residual and attention dropout while training.
        positions: ``"rotary"`` (RoPE on q/k) or ``"alibi"`` (linear bias per head).
        norm: ``"rms"`` (RMSNorm) or ``"layer"`` (LayerNorm, no bias).
        mlp: ``"swiglu"`` or ``"gelu"``.
        tie_embeddings: output projection shares the input embedding matrix.
        rope_base: RoPE frequency base (θ_i = base^(-2i/Dh)).
    """

    vocab_size: int
    dim: int = 256
    depth: int = 4
    heads: int = 8
    max_seq_len: int = 2048
    ff_mult: float = 4.0
    dropout: float = 0.0
    positions: Positions = "rotary"
    norm: Literal["rms", "layer"] = "rms"
    mlp: Literal["swiglu", "gelu"] = "swiglu"
    tie_embeddings: bool = True
    rope_base: float = 10_000.0

    def __post_init__(self) -> None:
        for name in ("vocab_size", "dim", "depth", "heads", "max_seq_len"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"LMConfig.{name} must be a positive integer, got {value!r}")
        if self.dim % self.heads:
            raise ValueError(
                f"LMConfig: dim ({self.dim}) must be a multiple of heads ({self.heads})"
            )
        if self.positions not in ("rotary", "alibi"):
            raise ValueError(
                f"LMConfig.positions must be 'rotary' or 'alibi', got {self.positions!r}"
            )
        if self.positions == "rotary" and self.head_dim % 2:
            raise ValueError(f"LMConfig: RoPE needs an even head size, got {self.head_dim}")
        if self.norm not in ("rms", "layer"):
            raise ValueError(f"LMConfig.norm must be 'rms' or 'layer', got {self.norm!r}")
        if self.mlp not in ("swiglu", "gelu"):
            raise ValueError(f"LMConfig.mlp must be 'swiglu' or 'gelu', got {self.mlp!r}")
        if not self.ff_mult > 0:
            raise ValueError(f"LMConfig.ff_mult must be > 0, got {self.ff_mult!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"LMConfig.dropout must be within [0, 1), got {self.dropout!r}")
        if not self.rope_base > 1.0:
            raise ValueError(f"LMConfig.rope_base must be > 1, got {self.rope_base!r}")

    @property
    def head_dim(self) -> int:
        """``Dh = dim / heads``."""
        return self.dim // self.heads

    @property
    def ff_hidden(self) -> int:
        """Hidden width of the MLP."""
        if self.mlp == "gelu":
            return max(1, round(self.ff_mult * self.dim))
        hidden = int(2 * self.ff_mult * self.dim / 3)
        return max(8, -(-hidden // 8) * 8)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LMConfig:
        """Rebuild from :meth:`to_dict` output.

        Raises:
            ValueError: not a mapping, unknown keys, or invalid values.
        """
        return config_from_dict(cls, data, "LM config", article="an")


@dataclass(eq=False)
class KVCache:
    """Preallocated keys and values of every block.

    Attributes:
        kv: ``[depth, 2, B, H, L, Dh]``; ``kv[i, 0]`` keys (after RoPE), ``kv[i, 1]`` values of
            block ``i``. Only positions ``< length`` are meaningful.
        length: positions filled (the next token goes to position ``length``).
        epoch: bumped by every torch write, :meth:`truncate` and :meth:`reset`, so a fused
            decoder that mirrors the cache (``engine/lm_fast.py``) knows when to re-read it.
    """

    kv: torch.Tensor
    length: int = 0
    epoch: int = 0

    @property
    def max_len(self) -> int:
        """``L``, positions the cache can hold."""
        return int(self.kv.shape[4])

    @property
    def batch(self) -> int:
        """``B``."""
        return int(self.kv.shape[2])

    @property
    def free(self) -> int:
        """Positions still free."""
        return self.max_len - self.length

    def truncate(self, n: int) -> None:
        """Forget every position ``>= n`` (e.g. to re-run a different continuation of a prefix);
        exact: positions ``< n`` never depend on later ones."""
        if not 0 <= n <= self.length:
            raise ValueError(f"cannot truncate a cache of length {self.length} to {n}")
        self.length = n
        self.epoch += 1

    def take(self, rows: torch.Tensor) -> KVCache:
        """A new cache of the batch rows ``rows [B']`` (in that order; a row may repeat), with
        the same length and capacity: e.g. the hypotheses a search keeps. Exact: each kept
        row's positions are copied whole; this cache is left as it is."""
        index = torch.as_tensor(rows, dtype=torch.long, device=self.kv.device)
        if index.dim() != 1 or not bool(((index >= 0) & (index < self.batch)).all()):
            raise ValueError(f"rows must be indices into the batch of {self.batch}, got {rows}")
        return KVCache(kv=self.kv.index_select(2, index).contiguous(), length=self.length)

    def reset(self) -> None:
        """Empty the cache (keeps its memory). With :meth:`TokenLM.refill` this is how to slide
        the context window: re-prefill the kept tokens instead of cropping cached keys."""
        self.length = 0
        self.epoch += 1


def check_rows(rows: tuple[int, int], vocab: int) -> tuple[int, int]:
    """``(lo, hi)`` as ints, for an id range ``0 <= lo < hi <= vocab`` of logits to compute.

    Raises:
        ValueError: an empty range or one outside ``[0, vocab)``.
    """
    lo, hi = (int(v) for v in rows)
    if not 0 <= lo < hi <= vocab:
        raise ValueError(f"logit rows [{lo}, {hi}) are empty or outside [0, {vocab})")
    return lo, hi


def alibi_slopes(heads: int) -> torch.Tensor:
    """ALiBi head slopes ``[H]`` (Press et al. 2022, §3): ``2^(-8i/H)``, ``i = 1..H``, for a power
    of two; otherwise the power-of-two set below ``H`` plus every other slope of the next one."""

    def power_of_two(n: int) -> list[float]:
        start = 2.0 ** (-8.0 / n)
        return [start ** (i + 1) for i in range(n)]

    if heads & (heads - 1) == 0:
        slopes = power_of_two(heads)
    else:
        lower = 1 << (heads.bit_length() - 1)
        slopes = power_of_two(lower) + power_of_two(2 * lower)[0::2][: heads - lower]
    return torch.tensor(slopes, dtype=torch.float32)


def _norm(kind: str, dim: int) -> nn.Module:
    if kind == "rms":
        return nn.RMSNorm(dim, eps=1e-6)
    return nn.LayerNorm(dim, bias=False)


class Block(nn.Module):
    """One pre-norm block: attention (fused QKV) and MLP, each added to the residual stream."""

    def __init__(self, config: LMConfig) -> None:
        super().__init__()
        d, hidden = config.dim, config.ff_hidden
        self.norm1 = _norm(config.norm, d)
        self.qkv = nn.Linear(d, 3 * d, bias=False)
        self.proj = nn.Linear(d, d, bias=False)
        self.norm2 = _norm(config.norm, d)
        self.ff_in = nn.Linear(d, 2 * hidden if config.mlp == "swiglu" else hidden, bias=False)
        self.ff_out = nn.Linear(hidden, d, bias=False)


class TokenLM(nn.Module):
    """Decoder-only Transformer over token ids (see the module docstring for the layout).

    ``forward(tokens [B, T]) -> logits [B, T, V]`` is the training path (causal, dropout);
    ``new_cache`` + ``forward_cached`` is the incremental path; ``generate`` samples with it and
    ``generate_uncached`` recomputes the whole context every step (reference and benchmark).
    """

    rope_cos: torch.Tensor
    rope_sin: torch.Tensor
    alibi: torch.Tensor

    def __init__(self, config: LMConfig) -> None:
        super().__init__()
        self.config = config
        c = config
        self.embed = nn.Embedding(c.vocab_size, c.dim)
        self.blocks = nn.ModuleList(Block(c) for _ in range(c.depth))
        self.norm_f = _norm(c.norm, c.dim)
        self.head = None if c.tie_embeddings else nn.Linear(c.dim, c.vocab_size, bias=False)
        self._swiglu = c.mlp == "swiglu"
        self._rotary = c.positions == "rotary"
        # RoPE tables [max_seq_len, Dh] in the interleaved-pair layout: for the pair (2i, 2i+1)
        # at position p, out = x·cos(pθ_i) + swap(x)·(-sin, +sin)(pθ_i)  (not saved: derived)
        hd = c.head_dim
        if self._rotary:
            inv = c.rope_base ** (-torch.arange(0, hd, 2, dtype=torch.float64) / hd)
            ang = torch.arange(c.max_seq_len, dtype=torch.float64)[:, None] * inv[None, :]
            cos = ang.cos().repeat_interleave(2, -1)
            sin = torch.stack([-ang.sin(), ang.sin()], -1).flatten(-2)
            self.register_buffer("rope_cos", cos.float(), persistent=False)
            self.register_buffer("rope_sin", sin.float(), persistent=False)
        else:
            self.register_buffer("alibi", alibi_slopes(c.heads), persistent=False)
        #: Optional replacement of the cached step for one token or, when only the last
        #: position's logits are wanted, a few: ``f(tokens [B, t], cache, rows) -> logits
        #: [B, 1, V]`` of the last position (with ``rows``, only those ids' logits, the rest
        #: ``-inf``) or ``None`` to fall back to torch. ``engine/lm_fast.py`` installs a fused
        #: numba step here (models/ itself imports no compiler).
        self.fused_decode: (
            Callable[[torch.Tensor, KVCache, tuple[int, int] | None], torch.Tensor | None] | None
        ) = None
        self.reset_parameters()

    # --- parameters ------------------------------------------------------------------------------

    def reset_parameters(self) -> None:
        """GPT-2 initialisation: N(0, 0.02); residual output projections N(0, 0.02/√(2·depth))."""
        std = 0.02
        for name, p in self.named_parameters():
            if p.dim() < 2:
                continue  # norm gains stay 1
            scale = (
                std / math.sqrt(2 * self.config.depth)
                if name.endswith(("proj.weight", "ff_out.weight"))
                else std
            )
            nn.init.normal_(p, 0.0, scale)

    @property
    def block_list(self) -> list[Block]:
        """The blocks, typed."""
        return cast("list[Block]", self.blocks)

    @property
    def output_weight(self) -> torch.Tensor:
        """``[V, D]`` matrix of the output projection (the embedding when tied)."""
        return self.embed.weight if self.head is None else self.head.weight

    def num_parameters(self) -> int:
        """Parameters (tied weights counted once)."""
        return sum(p.numel() for p in self.parameters())

    # --- shared pieces ---------------------------------------------------------------------------

    def _rope(self, x: torch.Tensor, start: int) -> torch.Tensor:
        """RoPE on ``x [B, t, n, H, Dh]`` (any n: q and k together) at positions ``start..``."""
        t = x.shape[1]
        cos = self.rope_cos[start : start + t, None, None, :].to(x.dtype)
        sin = self.rope_sin[start : start + t, None, None, :].to(x.dtype)
        swapped = x.reshape(*x.shape[:-1], -1, 2).flip(-1).flatten(-2)  # (x1, x0) per pair
        return torch.addcmul(x * cos, swapped, sin)

    def _alibi_bias(self, start: int, t: int, n: int, dtype: torch.dtype) -> torch.Tensor:
        """Additive attention bias ``[H, t, n]`` for queries at ``start..start+t-1`` over keys
        ``0..n-1``: ``-slope·(i - j)`` for ``j <= i``, ``-inf`` above the diagonal."""
        dev = self.alibi.device
        rel = (
            torch.arange(n, device=dev)[None, :]
            - torch.arange(start, start + t, device=dev)[:, None]
        )
        bias = self.alibi[:, None, None] * rel.to(torch.float32)
        if t > 1:
            bias = bias.masked_fill(rel > 0, float("-inf"))
        return bias.to(dtype)

    def _mlp(self, blk: Block, h: torch.Tensor) -> torch.Tensor:
        u = F.linear(h, blk.ff_in.weight)
        if self._swiglu:
            a, b = u.chunk(2, dim=-1)
            u = F.silu(a) * b
        else:
            u = F.gelu(u)
        return F.linear(u, blk.ff_out.weight)

    def _logits(self, x: torch.Tensor, rows: tuple[int, int] | None = None) -> torch.Tensor:
        """Logits ``[B, T, V]`` of hidden states ``x [B, T, D]``; with ``rows = (lo, hi)`` only
        ids ``lo <= id < hi`` are projected (``hi - lo`` rows of the output matrix instead of
        ``V``) and every other logit is ``-inf``."""
        if rows is None:
            return F.linear(self.norm_f(x), self.output_weight)
        lo, hi = check_rows(rows, self.config.vocab_size)
        out = x.new_full((*x.shape[:-1], self.config.vocab_size), float("-inf"))
        out[..., lo:hi] = F.linear(self.norm_f(x), self.output_weight[lo:hi])
        return out

    # --- full forward (training) ---------------------------------------------------------------

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """Causal logits: ``tokens [B, T]`` (``T <= max_seq_len``) → ``[B, T, V]``."""
        return F.linear(self.features(tokens), self.output_weight)

    def features(self, tokens: torch.Tensor) -> torch.Tensor:
        """The normalised last hidden states ``[B, T, D]`` that :meth:`forward` projects onto
        the vocabulary (``output_weight``): for losses over part of the vocabulary."""
        return self.features_from(self.residual(tokens, upto=0), 0)

    def residual(self, tokens: torch.Tensor, *, upto: int) -> torch.Tensor:
        """The residual stream ``[B, T, D]`` after the first ``upto`` blocks (0: the token
        embeddings) of ``tokens [B, T]``: what :meth:`features_from` continues, so that a
        caller training only the upper blocks computes the lower ones once."""
        t = tokens.shape[1]
        if t > self.config.max_seq_len:
            raise ValueError(
                f"sequence of {t} tokens exceeds max_seq_len {self.config.max_seq_len}"
            )
        return self._run_blocks(self.embed(tokens), 0, upto)

    def features_from(self, residual: torch.Tensor, start: int) -> torch.Tensor:
        """:meth:`features` from the residual stream ``[B, T, D]`` after block ``start``."""
        return cast(torch.Tensor, self.norm_f(self._run_blocks(residual, start, None)))

    def _run_blocks(self, x: torch.Tensor, start: int, stop: int | None) -> torch.Tensor:
        """Blocks ``start:stop`` (causal, dropout when training) on the residual stream
        ``x [B, T, D]``."""
        b, t, _ = x.shape
        h_, hd = self.config.heads, self.config.head_dim
        p = self.config.dropout if self.training else 0.0
        bias = None if self._rotary else self._alibi_bias(0, t, t, x.dtype)
        for blk in self.block_list[start:stop]:
            qkv = F.linear(blk.norm1(x), blk.qkv.weight).view(b, t, 3, h_, hd)
            if self._rotary:
                qk = self._rope(qkv[:, :, :2], 0)
                q, k = qk[:, :, 0], qk[:, :, 1]
            else:
                q, k = qkv[:, :, 0], qkv[:, :, 1]
            v = qkv[:, :, 2]
            a = F.scaled_dot_product_attention(
                q.transpose(1, 2),
                k.transpose(1, 2),
                v.transpose(1, 2),
                attn_mask=None if bias is None else bias.to(q.dtype),
                dropout_p=p,
                is_causal=bias is None,
            )  # [B, H, T, Dh]
            a = F.linear(a.transpose(1, 2).reshape(b, t, -1), blk.proj.weight)
            x = x + F.dropout(a, p, self.training)
            x = x + F.dropout(self._mlp(blk, blk.norm2(x)), p, self.training)
        return x

    # --- cached forward --------------------------------------------------------------------------

    def new_cache(
        self,
        batch: int,
        max_len: int | None = None,
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> KVCache:
        """Allocate a :class:`KVCache` for ``batch`` sequences of up to ``max_len`` positions
        (default and cap: ``max_seq_len``) on the model's device and dtype unless given."""
        c = self.config
        max_len = c.max_seq_len if max_len is None else int(max_len)
        if not 1 <= max_len <= c.max_seq_len:
            raise ValueError(f"cache length must be within 1..{c.max_seq_len}, got {max_len}")
        if batch < 1:
            raise ValueError(f"batch must be >= 1, got {batch}")
        w = self.embed.weight
        kv = torch.empty(
            (c.depth, 2, batch, c.heads, max_len, c.head_dim),
            device=w.device if device is None else device,
            dtype=w.dtype if dtype is None else dtype,
        )
        return KVCache(kv)

    def forward_cached(
        self,
        tokens: torch.Tensor,
        cache: KVCache,
        *,
        last_only: bool = False,
        rows: tuple[int, int] | None = None,
    ) -> torch.Tensor:
        """Run ``tokens [B, t]`` at positions ``cache.length ..`` and append them to the cache.

        Returns logits ``[B, t, V]`` (``[B, 1, V]`` for the last position when ``last_only``),
        equal to ``forward(all tokens so far)`` at those positions. With ``rows = (lo, hi)``
        only the logits of ids ``lo <= id < hi`` are computed, equal to those of the full
        projection, and all others are ``-inf``: a caller that samples within one id range
        (the AudioLM coarse and fine stages: one quantizer's 1,024 codes of a vocabulary of
        up to ~8k) skips most of the output projection. Not for training (the cache write is
        in place); call it under ``torch.inference_mode()`` for speed.

        Raises:
            ValueError: batch mismatch, ``t`` more tokens than the cache has room for, or
                ``rows`` empty or outside ``[0, V)``.
        """
        b, t = tokens.shape
        start = cache.length
        n = start + t
        if b != cache.batch:
            raise ValueError(f"tokens have batch {b}, the cache {cache.batch}")
        if t < 1 or n > cache.max_len:
            raise ValueError(
                f"{t} tokens do not fit a cache holding {start} of {cache.max_len} positions"
            )
        if rows is not None:
            rows = check_rows(rows, self.config.vocab_size)
        if (t == 1 or last_only) and self.fused_decode is not None:
            fused = self.fused_decode(tokens, cache, rows)
            if fused is not None:
                return fused
        h_, hd = self.config.heads, self.config.head_dim
        kv = cache.kv
        x = self.embed(tokens)
        if self._rotary:
            bias = None
        elif t == 1:
            bias = self._alibi_bias(start, 1, n, kv.dtype)  # [H, 1, n]: nothing to mask
        else:
            bias = self._alibi_bias(start, t, n, kv.dtype)
        # queries attend to all n keys (t == 1) or causally with an offset (explicit mask)
        causal_mask = None
        if bias is None and t > 1 and start > 0:
            i = torch.arange(start, n, device=x.device)[:, None]
            causal_mask = torch.arange(n, device=x.device)[None, :] <= i  # [t, n]
        for layer, blk in enumerate(self.block_list):
            qkv = F.linear(blk.norm1(x), blk.qkv.weight).view(b, t, 3, h_, hd)
            if self._rotary:
                qk = self._rope(qkv[:, :, :2], start)
                q, k = qk[:, :, 0], qk[:, :, 1]
            else:
                q, k = qkv[:, :, 0], qkv[:, :, 1]
            kv[layer, 0, :, :, start:n].copy_(k.transpose(1, 2))
            kv[layer, 1, :, :, start:n].copy_(qkv[:, :, 2].transpose(1, 2))
            q = q.transpose(1, 2)  # [B, H, t, Dh]
            keys, values = kv[layer, 0, :, :, :n], kv[layer, 1, :, :, :n]
            if bias is not None:
                a = F.scaled_dot_product_attention(q, keys, values, attn_mask=bias.to(q.dtype))
            elif causal_mask is not None:
                a = F.scaled_dot_product_attention(q, keys, values, attn_mask=causal_mask)
            else:  # decode (t == 1: everything is visible) or prefill from position 0
                a = F.scaled_dot_product_attention(q, keys, values, is_causal=t > 1)
            x = x + F.linear(a.transpose(1, 2).reshape(b, t, -1), blk.proj.weight)
            x = x + self._mlp(blk, blk.norm2(x))
        cache.length = n
        cache.epoch += 1
        if last_only:
            x = x[:, -1:]
        return self._logits(x, rows)

    def refill(self, cache: KVCache, tokens: torch.Tensor) -> torch.Tensor:
        """Slide the window: empty ``cache`` and prefill it with ``tokens [B, t]`` (the kept
        context). Returns the logits of the next token ``[B, V]``."""
        cache.reset()
        return self.forward_cached(tokens, cache, last_only=True)[:, -1]

    @torch.no_grad()
    def evict(self, cache: KVCache, drop: int) -> None:
        """Slide the window by dropping ``cache``'s first ``drop`` positions, keeping the keys
        and values of the rest (StreamingLLM-style eviction, Xiao et al. 2024, without sinks):
        they move to positions ``0 .. length - drop - 1`` and RoPE keys are rotated back by
        ``drop`` positions, so attention sees the same relative distances. Unlike
        :meth:`refill` this costs no forward pass, and it is *not* equal to re-running the kept
        window: the kept positions' keys and values in layers ≥ 1 still carry what they
        attended to before. It equals :meth:`forward` with a block-sliding attention mask
        (each position attends to the positions the cache held when it was fed).
        """
        if not 0 <= drop <= cache.length:
            raise ValueError(f"cannot drop {drop} of {cache.length} cached positions")
        if drop == 0:
            return
        n = cache.length - drop
        kv = cache.kv  # [depth, 2, B, H, L, Dh]
        kept = kv[:, :, :, :, drop : drop + n].clone()
        if self._rotary and n:
            # R(-drop·θ): cos(drop·θ) and the negated sin table of position `drop`
            cos = self.rope_cos[drop].to(kv.dtype)
            sin = -self.rope_sin[drop].to(kv.dtype)
            keys = kept[:, 0]
            swapped = keys.reshape(*keys.shape[:-1], -1, 2).flip(-1).flatten(-2)
            kept[:, 0] = torch.addcmul(keys * cos, swapped, sin)
        kv[:, :, :, :, :n] = kept
        cache.length = n
        cache.epoch += 1

    # --- generation ------------------------------------------------------------------------------

    def _check_prompt(self, prompt: torch.Tensor, max_new_tokens: int) -> None:
        c = self.config
        if not isinstance(prompt, torch.Tensor) or prompt.dim() != 2:
            raise ValueError("prompt must be a LongTensor [B, T]")
        if prompt.dtype in (torch.float16, torch.bfloat16, torch.float32, torch.float64):
            raise ValueError(f"prompt must hold integer token ids, got {prompt.dtype}")
        if prompt.shape[0] < 1 or prompt.shape[1] < 1:
            raise ValueError(
                f"prompt must have at least one token per row, got {list(prompt.shape)}"
            )
        if prompt.shape[1] > c.max_seq_len:
            raise ValueError(
                f"prompt of {prompt.shape[1]} tokens is longer than max_seq_len {c.max_seq_len}"
            )
        lo, hi = int(prompt.min()), int(prompt.max())
        if lo < 0 or hi >= c.vocab_size:
            raise ValueError(f"prompt ids must be within [0, {c.vocab_size}), got {lo}..{hi}")
        if (
            isinstance(max_new_tokens, bool)
            or int(max_new_tokens) != max_new_tokens
            or (max_new_tokens < 0)
        ):
            raise ValueError(f"max_new_tokens must be an integer >= 0, got {max_new_tokens!r}")

    def _window(self, total: int, window_stride: int | None) -> tuple[int, int]:
        """``(capacity, stride)``: positions in the context, tokens dropped when it is full."""
        cap = min(total, self.config.max_seq_len)
        stride = max(1, cap // 4) if window_stride is None else int(window_stride)
        if not 1 <= stride <= cap - 1 and total > cap:
            raise ValueError(f"window_stride must be within 1..{cap - 1}, got {window_stride}")
        return cap, stride

    @torch.inference_mode()
    def generate(
        self,
        prompt: torch.Tensor,
        max_new_tokens: int,
        *,
        temperature: float = 1.0,
        top_k: int | None = None,
        top_p: float | None = None,
        generator: torch.Generator | Sequence[torch.Generator] | None = None,
        allowed: Allowed = None,
        cancel: threading.Event | None = None,
        on_token: Callable[[int, torch.Tensor], None] | None = None,
        window_stride: int | None = None,
    ) -> torch.Tensor:
        """Continue ``prompt [B, T0]`` by ``max_new_tokens`` sampled ids with the KV cache.

        Args:
            prompt: integer ids, ``1 <= T0 <= max_seq_len``.
            max_new_tokens: ids to generate; the context may grow past ``max_seq_len``: when
                it is full, the oldest ``window_stride`` tokens (default ``max_seq_len // 4``)
                are dropped and the kept window is re-prefilled (exact, see the module doc).
            temperature, top_k, top_p, generator: see :func:`~.sampling.sample_next`
                (``generator`` may be one per row).
            allowed: ``(lo, hi)``, a bool mask ``[V]`` / ``[B, V]``, or ``f(step) -> spec``
                called for every new token (``step`` = 0 for the first).
            cancel: when set (checked before every step) generation stops early.
            on_token: ``on_token(step, ids [B])`` after each new token (ids on the model's
                device).

        Returns:
            ``LongTensor [B, n]``: the new ids only, ``n == max_new_tokens`` unless cancelled.

        Raises:
            ValueError: bad prompt (not 2-D ints, empty, ids outside the vocabulary, longer than
                ``max_seq_len``) or bad sampling parameters.
        """
        self._check_prompt(prompt, max_new_tokens)
        check_sampling(temperature, top_k, top_p)
        b, t0 = prompt.shape
        dev = self.embed.weight.device
        out = torch.empty((b, max_new_tokens), dtype=torch.long, device=dev)
        if max_new_tokens == 0 or (cancel is not None and cancel.is_set()):
            return out[:, :0]
        total = t0 + max_new_tokens
        cap, stride = self._window(total, window_stride)
        seq = torch.empty((b, total), dtype=torch.long, device=dev)
        seq[:, :t0] = prompt
        cache = self.new_cache(b, cap)
        logits = self.refill(cache, seq[:, :t0])
        n = t0  # tokens in seq
        for i in range(max_new_tokens):
            spec = allowed(i) if callable(allowed) else allowed
            ids = sample_next(
                logits,
                temperature=temperature,
                top_k=top_k,
                top_p=top_p,
                generator=generator,
                allowed=spec,
            )
            out[:, i] = ids
            seq[:, n] = ids
            n += 1
            if on_token is not None:
                on_token(i, ids)
            if i == max_new_tokens - 1:
                break
            if cancel is not None and cancel.is_set():
                return out[:, : i + 1]
            if cache.length == cap:  # context full: keep the last cap - stride tokens
                logits = self.refill(cache, seq[:, n - (cap - stride) : n])
            else:
                logits = self.forward_cached(seq[:, n - 1 : n], cache)[:, -1]
        return out

    @torch.inference_mode()
    def generate_uncached(
        self,
        prompt: torch.Tensor,
        max_new_tokens: int,
        *,
        temperature: float = 1.0,
        top_k: int | None = None,
        top_p: float | None = None,
        generator: torch.Generator | Sequence[torch.Generator] | None = None,
        allowed: Allowed = None,
        cancel: threading.Event | None = None,
        on_token: Callable[[int, torch.Tensor], None] | None = None,
        window_stride: int | None = None,
    ) -> torch.Tensor:
        """:meth:`generate` without a cache: every step runs :meth:`forward` over the whole
        current context (same window rule), O(T²) work per token. Reference and benchmark."""
        self._check_prompt(prompt, max_new_tokens)
        check_sampling(temperature, top_k, top_p)
        b, t0 = prompt.shape
        dev = self.embed.weight.device
        out = torch.empty((b, max_new_tokens), dtype=torch.long, device=dev)
        if max_new_tokens == 0 or (cancel is not None and cancel.is_set()):
            return out[:, :0]
        total = t0 + max_new_tokens
        cap, stride = self._window(total, window_stride)
        seq = torch.empty((b, total), dtype=torch.long, device=dev)
        seq[:, :t0] = prompt
        n, s = t0, 0  # context is seq[:, s:n]
        for i in range(max_new_tokens):
            if n - s > cap:
                s = n - (cap - stride)
            logits = self.forward(seq[:, s:n])[:, -1]
            spec = allowed(i) if callable(allowed) else allowed
            ids = sample_next(
                logits,
                temperature=temperature,
                top_k=top_k,
                top_p=top_p,
                generator=generator,
                allowed=spec,
            )
            out[:, i] = ids
            seq[:, n] = ids
            n += 1
            if on_token is not None:
                on_token(i, ids)
            if i < max_new_tokens - 1 and cancel is not None and cancel.is_set():
                return out[:, : i + 1]
        return out
