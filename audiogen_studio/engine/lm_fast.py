"""Fused CPU decode step of :class:`~audiogen_studio.models.lm.TokenLM` (numba).

Eager torch pays framework dispatch on ~70 tiny ops per generated token (norms, 1-row matmuls
through MKL's generic path on this AMD CPU, SDPA's setup for one query): ~2 ms per token for the
dim-256 / depth-4 model. :class:`FusedDecoder` runs the whole one-token step -- embedding, every
block (norm, fused QKV matvec, RoPE, cache write, attention over the cache with ALiBi or not,
out projection, norm, SwiGLU/GELU MLP), final norm and the output projection -- as ONE
``numba.njit(fastmath=True)`` call over float32 copies of the weights, writing keys and values
into the same preallocated :class:`~audiogen_studio.models.lm.KVCache` tensor (a NumPy view of
it) that the torch prefill fills. The matrix-vector products are ``engine/wavenet_fast.py``'s
explicit 16-lane SIMD kernels over weights in blocks of 16 rows (no horizontal sums; each weight
vector feeds every take of the batch); attention scores are computed 16 positions per vector
from a transposed mirror of the cached keys, and the value sum 16 components per vector.

Three things keep the step cheap on the shipped bundles (``benchmarks/lm_step.py`` measures
each side by side):

- **Only the sampled rows of the output projection.** ``forward_cached(..., rows=(lo, hi))``
  passes the id range a step samples from; the kernel projects onto the 16-row blocks that hold
  it and leaves the other logits ``-inf``. An AudioLM coarse or fine step samples one
  quantizer's 1,024 codes from a vocabulary of ~3.6k or ~8.2k ids (AudioLM §4.2, the flattened
  codebooks), and the fine LM's output matrix was half of its weights.
- **float16 weight storage when it is lossless.** Bundles ship as float16 and are upcast on
  load, so their matrices hold float16 values: storing them as float16 bits (widened to float32
  lanes by the loads, math in float32) halves the bytes streamed per token and changes no logit.
  ``accelerate(fp16_weights=None)`` (the default) checks this at every pack; ``True`` rounds
  any weights.
- **No libm in the loops.** The attention softmax and SiLU use :func:`_exp_neg`, a
  range-reduced polynomial ``exp`` (relative error < 5e-7) that vectorises; libm's ``expf`` is a
  scalar call per element (~14x slower per element here).

Two more cut the calls per generated id (an AudioLM fine frame: 8 calls -> 1):

- **A few ids per call.** A call may feed up to :data:`MAX_TOKENS` ids per row and returns the
  last one's logits: the ``B·T`` tokens go through every matrix together (each weight vector
  loaded once), attention causal among them. The coarse stage feeds its last code and the next
  semantic token in one call, the fine stage its last code and a frame's coarse codes.
- **Greedy runs in the kernel.** :meth:`FusedDecoder.greedy` picks ``N`` ids in one call, each
  the argmax within its own id range and fed before the next: a stage at temperature 0 (the
  shipped bundles' fine stage) makes a frame's codes without a Python round trip per id.

Install it with :func:`accelerate`: ``TokenLM.forward_cached`` then routes every one-token call
on a CPU float32 model through it, and every call of up to :data:`MAX_TOKENS` ids that wants
only the last position's logits (longer ones, prefills, stay in torch: see :data:`MAX_TOKENS`), so
``TokenLM.generate`` and any caller of ``forward_cached`` get it with no other change. The copies
are refreshed when a parameter is replaced or modified in place (data pointer or version counter
changed), checked at the start of every decode run: any call that does not directly continue the
previous step on the same cache (a torch prefill, ``reset`` or ``truncate`` changed the cache's
``epoch``, or another cache). Anything the kernel cannot run (a CUDA/MPS or non-float32 model or
cache, gradients enabled, training mode) falls back to torch. Logits equal torch's
``forward_cached`` to ~1e-6 (``fastmath`` reorders the float32 sums; tested to 1e-5 in
``tests/engine/test_lm_fast.py``).

The first call in a process compiles the kernel (~5-10 s on a 2-core CPU) or loads it from
numba's on-disk cache (``cache=True``).
"""

from __future__ import annotations

import logging
import math
import weakref
from typing import Any, cast

import numba
import numpy as np
import torch
from llvmlite import ir
from numba import types
from numba.extending import intrinsic

from audiogen_studio.engine.wavenet_fast import (
    _VL,
    _blocked,
    _matvec,
    _vadd,
    _vfma,
    _vload,
    _vstore,
    _vzero,
)
from audiogen_studio.models.checkpoint import holds_float16_values
from audiogen_studio.models.lm import KVCache, TokenLM, check_rows

__all__ = ["MAX_TOKENS", "FusedDecoder", "accelerate", "decelerate"]

log = logging.getLogger(__name__)

_F32 = np.float32
_MATRICES = ("qkv", "proj", "ff_in", "ff_out")  # each block's weight matrices
#: The most tokens per row one fused call runs (a few given ids before a sampled one, e.g. an
#: AudioLM fine stage's coarse context). Longer inputs are prefills and stay in torch: at 100-200
#: ids its matrix products are as fast as the kernel's (fine LM, 2-core Xeon: 17-18 ms for 200),
#: and they keep the kernel's scratch buffers small.
MAX_TOKENS = 8


def _pow2_typer(typingctx: Any, k: Any) -> Any:
    """``2.0 ** k`` as float32 for an integer ``-126 <= k <= 127``, built from its bits
    (``(k + 127) << 23``), so a loop over it vectorises (no libm call)."""
    if not isinstance(k, types.Integer):
        return None

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        i32 = ir.IntType(32)
        k32 = builder.trunc(args[0], i32) if args[0].type.width > 32 else args[0]
        bits = builder.shl(builder.add(k32, ir.Constant(i32, 127)), ir.Constant(i32, 23))
        return builder.bitcast(bits, ir.FloatType())

    return types.float32(k), codegen


_pow2: Any = intrinsic(_pow2_typer)

_LOG2E = _F32(1.4426950408889634)
_LN2_HI = _F32(0.693145751953125)  # ln 2 split in two (Cody & Waite): exact k·hi for |k| < 2^8
_LN2_LO = _F32(1.428606765330187e-06)


@numba.njit(fastmath=True, error_model="numpy", cache=True, inline="always")
def _exp_neg(x: Any) -> Any:
    """``exp(x)`` for ``x <= 0`` without libm, so the softmax loops vectorise: ``2^k·p(r)``
    with ``k = round(x·log2 e)``, ``r = x - k·ln 2`` in ``[-ln2/2, ln2/2]`` and ``p`` the
    degree-6 Taylor polynomial (relative error < 5e-7). Below -87 it returns ``exp(-87)``
    (~1.6e-38: nothing next to the softmax's largest term, 1)."""
    x = max(x, _F32(-87.0))
    k = np.floor(x * _LOG2E + _F32(0.5))
    r = (x - k * _LN2_HI) - k * _LN2_LO
    p = _F32(1.0) + r * (
        _F32(1.0)
        + r
        * (
            _F32(0.5)
            + r
            * (
                _F32(1.0 / 6.0)
                + r * (_F32(1.0 / 24.0) + r * (_F32(1.0 / 120.0) + r * _F32(1.0 / 720.0)))
            )
        )
    )
    return p * _pow2(np.int32(k))


@numba.njit(fastmath=True, error_model="numpy", cache=True, inline="always")
def _norm(x: Any, g: Any, out: Any, layer_norm: bool, eps: float) -> None:
    """RMSNorm / LayerNorm (no bias) of every row of ``x [B, D]`` times gain ``g [D]``."""
    b_n, d = x.shape
    for b in range(b_n):
        mean = _F32(0.0)
        if layer_norm:
            for i in range(d):
                mean += x[b, i]
            mean /= d
        acc = _F32(0.0)
        for i in range(d):
            c = x[b, i] - mean
            acc += c * c
        r = _F32(1.0) / np.sqrt(acc / d + _F32(eps))
        for i in range(d):
            out[b, i] = (x[b, i] - mean) * r * g[i]


@numba.njit(fastmath=True, error_model="numpy", cache=True, nogil=True)
def _sync_keys(kv: Any, kt: Any, n: int) -> None:
    """Copy keys ``kv[:, 0, :, :, :n, :]`` transposed into the mirror ``kt [depth, B, H, Dh·Lp]``
    (row ``i`` of head ``h`` holds component ``i`` of every position; ``Lp`` = L rounded up to 16).
    """
    depth, _, b_n, heads, _, hd = kv.shape
    lp = kt.shape[3] // hd
    for layer in range(depth):
        for b in range(b_n):
            for hh in range(heads):
                src = kv[layer, 0, b, hh]
                dst = kt[layer, b, hh]
                for t in range(n):
                    for i in range(hd):
                        dst[i * lp + t] = src[t, i]


@numba.njit(fastmath=True, error_model="numpy", cache=True, nogil=True)
def _decode(
    ids: Any,  # int64 [B, T] (checked to lie in [0, V) before anything is written)
    pos: int,  # position of the first new token (== cache length before the step)
    emb: Any,  # [V, D]
    g1: Any,  # [depth, D]
    wqkv: Any,  # [depth, blocked 3D x D]  (weights in wavenet_fast's 16-row blocked layout)
    wo: Any,  # [depth, blocked D x D]
    g2: Any,  # [depth, D]
    wi: Any,  # [depth, blocked F_in x D]  (F_in = 2F for SwiGLU: first half gated by SiLU)
    wout: Any,  # [depth, blocked D x F]
    gf: Any,  # [D]
    whead: Any,  # blocked V x D
    f: int,  # F, hidden width of the MLP
    cos: Any,  # [max_seq_len, Dh]  RoPE tables of TokenLM (interleaved pairs)
    sin: Any,  # [max_seq_len, Dh]
    slopes: Any,  # [H] ALiBi slopes (unused with RoPE)
    kv: Any,  # [depth, 2, B, H, L, Dh] the cache, written at ``pos .. pos + T - 1``
    kt: Any,  # [depth, B, H, Dh·Lp] transposed mirror of the keys (_sync_keys), written too
    rotary: bool,
    swiglu: bool,
    layer_norm: bool,
    eps: float,
    lo: int,  # the logits of ids lo <= id < hi are computed (the 16-row blocks holding them)
    hi: int,
    out: Any,  # [B, V] output: those logits of each row's last token, -inf elsewhere
) -> bool:
    """``T`` tokens of every row at positions ``pos .. pos + T - 1``: ``False`` (and nothing
    written) when an id is outside ``[0, V)``; else writes the cache there and the logits of
    each row's last token into ``out``.

    The ``B·T`` tokens go through every matrix together (each weight vector is loaded once for
    all of them), so feeding a few given ids costs little more than one; attention is causal
    among them (a layer's keys and values of all ``T`` are written before any attends)."""
    b_n, t_n = ids.shape
    vocab = out.shape[1]
    for b in range(b_n):
        for t in range(t_n):
            if ids[b, t] < 0 or ids[b, t] >= vocab:
                return False
    r_n = b_n * t_n  # token rows: row r is token r % T of sequence r // T
    depth = kv.shape[0]
    heads = kv.shape[3]
    hd = kv.shape[5]
    d = heads * hd
    f_in = 2 * f if swiglu else f
    scale = _F32(1.0 / math.sqrt(hd))
    pad = _VL - 1
    x = np.empty((r_n, d), np.float32)
    h = np.empty((r_n, d), np.float32)
    qkv = np.empty((r_n, (3 * d + pad) // _VL * _VL), np.float32)
    att = np.empty((r_n, d), np.float32)
    tmp = np.empty((r_n, (d + pad) // _VL * _VL), np.float32)
    fi = np.empty((r_n, (f_in + pad) // _VL * _VL), np.float32)
    u = np.empty((r_n, f), np.float32)
    lp = kt.shape[3] // hd
    sc = np.empty((pos + t_n + pad) // _VL * _VL, np.float32)
    acc = np.empty((hd + pad) // _VL * _VL, np.float32)
    for r in range(r_n):
        x[r, :] = emb[ids[r // t_n, r % t_n]]
    for layer in range(depth):
        _norm(x, g1[layer], h, layer_norm, eps)
        _matvec(wqkv[layer], d, h, qkv, r_n)
        for r in range(r_n):  # rotate q and k, then write every token's key and value
            b = r // t_n
            p = pos + r % t_n
            if rotary:
                for off in (0, d):  # q, then k
                    for j in range(0, d, 2):
                        i = j % hd
                        c = cos[p, i]
                        s = sin[p, i + 1]
                        x0 = qkv[r, off + j]
                        x1 = qkv[r, off + j + 1]
                        qkv[r, off + j] = x0 * c - x1 * s
                        qkv[r, off + j + 1] = x1 * c + x0 * s
            for hh in range(heads):
                base = hh * hd
                keys = kt[layer, b, hh]  # [Dh·Lp]: component i of position t at i·Lp + t
                vals = kv[layer, 1, b, hh]  # [L, Dh]
                for i in range(hd):
                    kv[layer, 0, b, hh, p, i] = qkv[r, d + base + i]
                    keys[i * lp + p] = qkv[r, d + base + i]
                    vals[p, i] = qkv[r, 2 * d + base + i]
        for r in range(r_n):
            b = r // t_n
            p = pos + r % t_n
            n = p + 1  # positions token r attends to
            for hh in range(heads):
                base = hh * hd
                keys = kt[layer, b, hh]
                vals = kv[layer, 1, b, hh]
                # scores q·k of 16 positions per vector (no horizontal sums); beyond n: unused
                for t0 in range(0, n, _VL):
                    a0 = _vzero()
                    a1 = _vzero()
                    i = 0
                    while i + 2 <= hd:
                        a0 = _vfma(_vload(keys, i * lp + t0), qkv[r, base + i], a0)
                        a1 = _vfma(_vload(keys, (i + 1) * lp + t0), qkv[r, base + i + 1], a1)
                        i += 2
                    if i < hd:
                        a0 = _vfma(_vload(keys, i * lp + t0), qkv[r, base + i], a0)
                    _vstore(sc, t0, _vadd(a0, a1))
                if not rotary:
                    for t in range(n):
                        sc[t] += slopes[hh] * _F32(t - p) / scale
                m = sc[0]
                for t in range(n):
                    m = max(m, sc[t])
                for t in range(n):
                    sc[t] = _exp_neg((sc[t] - m) * scale)
                total = _F32(0.0)
                for t in range(n):
                    total += sc[t]
                inv = _F32(1.0) / total
                if hd % _VL == 0:  # weighted sum of value rows, 16 components per vector
                    flat = vals.reshape(vals.size)
                    for c0 in range(0, hd, _VL):
                        a0 = _vzero()
                        a1 = _vzero()
                        t = 0
                        while t + 2 <= n:
                            a0 = _vfma(_vload(flat, t * hd + c0), sc[t], a0)
                            a1 = _vfma(_vload(flat, (t + 1) * hd + c0), sc[t + 1], a1)
                            t += 2
                        if t < n:
                            a0 = _vfma(_vload(flat, t * hd + c0), sc[t], a0)
                        _vstore(acc, c0, _vadd(a0, a1))
                else:
                    for i in range(hd):
                        acc[i] = 0.0
                    for t in range(n):
                        w = sc[t]
                        for i in range(hd):
                            acc[i] += w * vals[t, i]
                for i in range(hd):
                    att[r, base + i] = acc[i] * inv
        _matvec(wo[layer], d, att, tmp, r_n)
        for r in range(r_n):
            for i in range(d):
                x[r, i] += tmp[r, i]
        _norm(x, g2[layer], h, layer_norm, eps)
        _matvec(wi[layer], d, h, fi, r_n)
        for r in range(r_n):
            if swiglu:
                for i in range(f):  # SiLU(a)·g, sigmoid from exp(-|a|) (no overflow)
                    a = fi[r, i]
                    e = _exp_neg(-abs(a))
                    sig = (_F32(1.0) if a >= 0 else e) / (_F32(1.0) + e)
                    u[r, i] = a * sig * fi[r, f + i]
            else:
                for i in range(f):
                    a = fi[r, i]
                    u[r, i] = _F32(0.5) * a * (_F32(1.0) + math.erf(a * _F32(0.7071067811865476)))
        _matvec(wout[layer], f, u, tmp, r_n)
        for r in range(r_n):
            for i in range(d):
                x[r, i] += tmp[r, i]
    last = np.empty((b_n, d), np.float32)  # each row's last token
    for b in range(b_n):
        last[b, :] = x[b * t_n + t_n - 1]
    hl = np.empty((b_n, d), np.float32)
    _norm(last, gf, hl, layer_norm, eps)
    h0 = lo // _VL
    h1 = (hi + pad) // _VL
    logits = np.empty((b_n, (h1 - h0) * _VL), np.float32)
    _matvec(whead[h0 * d * _VL : h1 * d * _VL], d, hl, logits, b_n)
    off = h0 * _VL
    minus_inf = _F32(-np.inf)
    for b in range(b_n):
        for i in range(lo):
            out[b, i] = minus_inf
        for i in range(lo, hi):
            out[b, i] = logits[b, i - off]
        for i in range(hi, vocab):
            out[b, i] = minus_inf
    return True


@numba.njit(fastmath=True, error_model="numpy", cache=True, nogil=True)
def _greedy(
    ids: Any,  # int64 [B, T], C-contiguous: the ids to feed before the first choice
    pos: int,
    emb: Any,
    g1: Any,
    wqkv: Any,
    wo: Any,
    g2: Any,
    wi: Any,
    wout: Any,
    gf: Any,
    whead: Any,
    f: int,
    cos: Any,
    sin: Any,
    slopes: Any,
    kv: Any,
    kt: Any,
    rotary: bool,
    swiglu: bool,
    layer_norm: bool,
    eps: float,
    spans: Any,  # int64 [N, 2]: id k is the argmax over [spans[k, 0], spans[k, 1])
    chosen: Any,  # int64 [B, N] output
    out: Any,  # [B, V] scratch for the logits
) -> bool:
    """``N`` greedy ids of every row: feed ``ids``, take the argmax of the next id's logits
    within ``spans[0]`` (the first maximum, as ``torch.argmax``), feed it, and so on; the last
    chosen id is not fed (a caller feeds it with what follows). Writes the cache at ``pos ..
    pos + T + N - 2``. ``False`` (nothing written) when an id of ``ids`` is outside ``[0, V)``."""
    b_n = ids.shape[0]
    cur = ids
    p = pos
    for k in range(spans.shape[0]):
        lo = spans[k, 0]
        hi = spans[k, 1]
        if not _decode(
            cur, p, emb, g1, wqkv, wo, g2, wi, wout, gf, whead, f, cos, sin, slopes, kv, kt,
            rotary, swiglu, layer_norm, eps, lo, hi, out,
        ):  # fmt: skip
            return False
        p += cur.shape[1]
        nxt = np.empty((b_n, 1), np.int64)
        for b in range(b_n):
            best = lo
            top = out[b, lo]
            for i in range(lo + 1, hi):
                if out[b, i] > top:
                    top = out[b, i]
                    best = i
            chosen[b, k] = best
            nxt[b, 0] = best
        cur = nxt
    return True


def _np(t: torch.Tensor) -> np.ndarray:
    return np.ascontiguousarray(t.detach().to("cpu", torch.float32).numpy())


class FusedDecoder:
    """The numba one-token step of one :class:`TokenLM` (see the module docstring).

    ``decoder(tokens [B, 1], cache) -> logits [B, 1, V]`` (float32, CPU), or ``None`` when it
    cannot run this call (the caller then uses torch).

    Besides the weights it keeps a transposed copy of the cache's keys (``[depth, B, H, Dh·Lp]``,
    ``Lp`` = L rounded up to 16) so attention scores are computed 16 positions per SIMD vector;
    it is rebuilt from the cache at the start of every decode run and then extended by each
    step. Not thread-safe: one generation at a time per model.
    """

    def __init__(self, model: TokenLM, *, fp16_weights: bool | None = None) -> None:
        self.model = model
        #: what was asked: ``True``/``False``, or ``None`` for "when lossless"
        self.fp16_weights = fp16_weights
        #: whether the packed matrices are float16 now (decided at every pack)
        self.packed_fp16 = False
        self._key: tuple[tuple[int, int], ...] | None = None
        # (cache, length, epoch) after the last step: a call that continues it with nothing
        # written by torch in between (same epoch) is the same decode run
        self._last: tuple[weakref.ref[KVCache], int, int] | None = None
        self._weights: tuple[np.ndarray, ...] = ()
        self._kt = np.zeros((0, 0, 0, 0), np.float32)
        self._kv = np.zeros((0, 0, 0, 0, 0, 0), np.float32)  # NumPy view of the run's cache
        c = model.config
        self._rotary = c.positions == "rotary"
        self._swiglu = c.mlp == "swiglu"
        self._layer_norm = c.norm == "layer"
        self._eps = float(getattr(model.norm_f, "eps", None) or 1e-6)
        self._vocab = c.vocab_size
        self._hidden = c.ff_hidden
        hd = c.head_dim
        if self._rotary:
            self._cos = _np(model.rope_cos)
            self._sin = _np(model.rope_sin)
            self._slopes = np.zeros(c.heads, np.float32)
        else:
            self._cos = self._sin = np.zeros((1, hd), np.float32)
            self._slopes = _np(model.alibi)

    def _fingerprint(self) -> tuple[tuple[int, int], ...]:
        return tuple((p.data_ptr(), p._version) for p in self.model.parameters())

    def _pack(self) -> None:
        m = self.model
        blocks = m.block_list

        def stack(name: str, blocked: bool) -> np.ndarray:
            mats = [_np(getattr(blk, name).weight) for blk in blocks]
            return np.ascontiguousarray(np.stack([mat(w) if blocked else w for w in mats]))

        fp16 = self.fp16_weights
        if fp16 is None:  # lossless only: every matrix already holds float16 values
            fp16 = holds_float16_values(
                [getattr(blk, name).weight for blk in blocks for name in _MATRICES]
                + [m.output_weight]
            )
        self.packed_fp16 = fp16

        def mat(w: np.ndarray) -> np.ndarray:
            if fp16:  # float16 bits, widened to float32 lanes by the kernel's loads
                return _blocked(np.ascontiguousarray(w.astype(np.float16).view(np.uint16)))
            return _blocked(w)

        self._weights = (
            _np(m.embed.weight),
            stack("norm1", False),
            stack("qkv", True),
            stack("proj", True),
            stack("norm2", False),
            stack("ff_in", True),
            stack("ff_out", True),
            _np(cast(torch.Tensor, m.norm_f.weight)),
            mat(_np(m.output_weight)),
        )
        log.debug(
            "packed the weights of a %s for the fused decode step (%s matrices)",
            type(m).__name__,
            "float16" if fp16 else "float32",
        )

    def supports(self, tokens: torch.Tensor, cache: KVCache) -> bool:
        """Whether :meth:`__call__` can run this call (else the caller uses torch)."""
        w = self.model.embed.weight
        kv = cache.kv
        return (
            tokens.dim() == 2
            and 1 <= tokens.shape[1] <= MAX_TOKENS
            and w.device.type == "cpu"
            and w.dtype == torch.float32
            and kv.device.type == "cpu"
            and kv.dtype == torch.float32
            and kv.is_contiguous()
            and not (torch.is_grad_enabled() and w.requires_grad)
            and not self.model.training
        )

    def _begin(self, tokens: torch.Tensor, cache: KVCache) -> np.ndarray | None:
        """The NumPy view of ``cache`` for a fused call feeding ``tokens [B, t]`` (``None``: not
        supported here). A call that continues the last one on the same cache reuses its
        checks and view; another starts a new decode run: re-check the weights and mirror the
        keys torch wrote.

        Python work per call is kept to a minimum: after the kernel has streamed the weights,
        every interpreter step runs from a cold cache (~1 µs per attribute access).
        """
        pos = cache.length
        last = self._last
        if last is not None and last[0]() is cache and last[1] == pos and last[2] == cache.epoch:
            if (
                tokens.dim() != 2
                or not 1 <= tokens.shape[1] <= MAX_TOKENS
                or (torch.is_grad_enabled() and self.model.embed.weight.requires_grad)
                or self.model.training
            ):
                return None
            kv = self._kv
        else:
            if not self.supports(tokens, cache):
                return None
            key = self._fingerprint()
            if key != self._key:
                self._pack()
                self._key = key
            kv = cache.kv.detach().numpy()
            depth, _, b, heads, length, hd = kv.shape
            shape = (depth, b, heads, hd * (-(-length // _VL) * _VL))
            if self._kt.shape != shape:
                self._kt = np.zeros(shape, np.float32)
            _sync_keys(kv, self._kt, pos)
        return kv

    @staticmethod
    def _ids(tokens: torch.Tensor, kv: np.ndarray, pos: int, fed: int) -> np.ndarray:
        """``tokens`` as C-contiguous int64, once checked that ``fed`` positions from ``pos``
        fit the cache (the kernel does not check)."""
        if tokens.shape[0] != kv.shape[2] or pos + fed > kv.shape[4]:
            raise ValueError(
                f"{tokens.shape[0]} rows of {fed} tokens at position {pos} do not fit a cache of "
                f"{kv.shape[2]} rows and {kv.shape[4]} positions"
            )
        ids = tokens.numpy() if tokens.dtype == torch.int64 else tokens.to(torch.int64).numpy()
        if not ids.flags.c_contiguous:  # e.g. a column of a [B, L] batch: one kernel layout
            ids = np.ascontiguousarray(ids)
        return ids

    def _end(self, cache: KVCache, kv: np.ndarray, length: int) -> None:
        cache.length = length
        self._kv = kv
        self._last = (weakref.ref(cache), length, cache.epoch)

    def __call__(
        self, tokens: torch.Tensor, cache: KVCache, rows: tuple[int, int] | None = None
    ) -> torch.Tensor | None:
        """Logits ``[B, 1, V]`` of the next id after ``tokens [B, t]`` (``t <=``
        :data:`MAX_TOKENS`: the last position's only), all appended to ``cache``; with
        ``rows = (lo, hi)`` only those ids' logits (the 16-row blocks that hold them go through
        the output projection), the rest ``-inf``. ``None``: not supported here."""
        vocab = self._vocab
        if rows is None:
            lo, hi = 0, vocab
        else:
            lo, hi = rows
            if not 0 <= lo < hi <= vocab:
                check_rows(rows, vocab)  # raises with the message
        kv = self._begin(tokens, cache)
        if kv is None:
            return None
        pos = cache.length
        t_n = tokens.shape[1]
        ids = self._ids(tokens, kv, pos, t_n)
        out = np.empty((ids.shape[0], vocab), np.float32)
        emb, g1, wqkv, wo, g2, wi, wout, gf, whead = self._weights
        if not _decode(
            ids, pos, emb, g1, wqkv, wo, g2, wi, wout, gf, whead, self._hidden, self._cos,
            self._sin, self._slopes, kv, self._kt, self._rotary, self._swiglu,
            self._layer_norm, self._eps, lo, hi, out,
        ):  # fmt: skip
            raise IndexError(f"token ids outside [0, {vocab})")
        self._end(cache, kv, pos + t_n)
        return torch.from_numpy(out)[:, None]

    def greedy(
        self, tokens: torch.Tensor, cache: KVCache, spans: list[tuple[int, int]]
    ) -> torch.Tensor | None:
        """``len(spans)`` greedy ids ``[B, N]`` after ``tokens [B, t]``, in ONE kernel call:
        id ``k`` is the argmax of its logits within ``spans[k] = (lo, hi)`` (the first maximum,
        as ``torch.argmax``), and each is fed before the next (the last is not: it is pending,
        as after a one-token call whose logits were sampled). Equal to feeding ``tokens``
        through :meth:`__call__` and then ``N - 1`` chosen ids, one call each; the cache grows
        by ``t + N - 1``. ``None``: not supported here (the caller loops in Python)."""
        if not spans:
            raise ValueError("greedy needs at least one span")
        vocab = self._vocab
        for span in spans:
            if not 0 <= span[0] < span[1] <= vocab:
                check_rows(span, vocab)
        kv = self._begin(tokens, cache)
        if kv is None:
            return None
        pos = cache.length
        fed = tokens.shape[1] + len(spans) - 1
        ids = self._ids(tokens, kv, pos, fed)
        chosen = np.empty((ids.shape[0], len(spans)), np.int64)
        out = np.empty((ids.shape[0], vocab), np.float32)
        emb, g1, wqkv, wo, g2, wi, wout, gf, whead = self._weights
        if not _greedy(
            ids, pos, emb, g1, wqkv, wo, g2, wi, wout, gf, whead, self._hidden, self._cos,
            self._sin, self._slopes, kv, self._kt, self._rotary, self._swiglu,
            self._layer_norm, self._eps, np.asarray(spans, np.int64), chosen, out,
        ):  # fmt: skip
            raise IndexError(f"token ids outside [0, {vocab})")
        self._end(cache, kv, pos + fed)
        return torch.from_numpy(chosen)


def accelerate(model: TokenLM, *, fp16_weights: bool | None = None) -> bool:
    """Install the fused CPU decode step on ``model`` (``forward_cached`` uses it for one-token
    calls whenever it can). Returns ``True`` when installed; safe to call more than once.

    ``fp16_weights`` stores the matrices as float16 (math stays float32): half the bytes streamed
    per token. ``True`` rounds any weights (logits then differ from torch's by the rounding,
    ~1e-3, so sampled tokens are no longer identical to the torch path's); ``None`` (default)
    does it only when it is lossless, i.e. every matrix already holds float16 values (a bundle
    stored as float16 and upcast on load), re-decided whenever the weights change (a prompt-
    adapted copy is float32); ``False`` never.
    """
    current = model.fused_decode
    if isinstance(current, FusedDecoder) and current.fp16_weights == fp16_weights:
        return True
    model.fused_decode = FusedDecoder(model, fp16_weights=fp16_weights)
    return True


def decelerate(model: TokenLM) -> None:
    """Remove the fused step: every call runs in torch again."""
    model.fused_decode = None
