"""Fast cached WaveNet generation ("Fast WaveNet", Paine et al. 2016) for CPU and GPU.

A :class:`FastWaveNet` takes the weights out of a WaveNet state dict (the parameter names and
shapes of ``models/wavenet.py``), primes per-layer circular queues from a prompt in ONE parallel
torch pass, then continues ``B`` takes sample by sample:

- ``device="cpu"``: a numba-compiled kernel (``njit(fastmath=True, cache=True)``) runs the whole
  step for every take with no Python or framework dispatch per sample: the dilated conv reads
  its taps from the layer's queue, gated unit with a rational tanh/sigmoid (abs. error < 1e-6),
  the residual and skip 1x1s as one fused matrix, ReLU-1x1-ReLU-1x1 head, softmax sampling
  with temperature by inverse CDF from a given uniform, and the sampled class is fed back. The
  matrix-vector products use explicit 16-lane SIMD over weights stored in blocks of 16 rows
  (no horizontal reductions), with the takes looped *inside* (4 at a time) so each weight is
  read once per sample for all takes. Weights may be stored as float16 (math stays float32):
  half the bytes streamed per sample -- faster for 1-2 takes; for 4+ takes (compute bound) the
  float16 -> float32 conversions cost more than they save.
- ``device="cuda"``: the same step written in torch over static buffers, captured in a
  ``torch.cuda.CUDAGraph`` and replayed per sample (sampling on the GPU from the same uniforms).
  **Untested: the development machines have no GPU** (the eager form of the very same code is
  tested on the CPU with ``backend="torch"``).
- ``device="mps"`` (or ``backend="torch"`` anywhere): the same torch step, run eagerly.

The first call in a process compiles the kernel (~5 s per weight dtype on a 2-core CPU) or,
with numba's on-disk cache (``__pycache__`` next to this file, else numba's user-wide cache
dir, or ``NUMBA_CACHE_DIR``), loads it in a fraction of a second.

Sampling uses one uniform ``u`` in ``[0, 1)`` per take and sample: the class is the first ``c``
whose cumulative softmax weight exceeds ``u`` times the total (``temperature == 0``: argmax), so
a seed reproduces a take exactly, batched or alone (one Generator per take), on every backend
up to float rounding of the probabilities between backends.

Indexing convention (shared by every method): after :meth:`FastWaveNet.prime` with
``prompt[:, :T]`` the *pending input* is ``prompt[:, T-1]``; each step feeds the pending input
(the model's position ``p``), computes the distribution of the NEXT sample, and makes the
sampled (or, in :meth:`~FastWaveNet.logits_teacher_forced`, the given) class the new pending
input. So ``logits_teacher_forced(x)[:, j]`` is the distribution of ``x[:, j]`` given everything
before it, i.e. the model's full forward ``logits[:, :, T - 1 + j]`` over ``concat(prompt, x)``.
Local conditioning goes with the position: step ``j`` uses the features of position
``T - 1 + j`` (the pending input's). With the model's output-aligned vocoder convention (the
input at position ``t`` is sample ``t - 1``, the features are sample ``t``'s), priming on one
silence sample and passing ``c_up[:, :, j]`` at step ``j`` generates sample ``j``.

A prompt shorter than the receptive field is padded on the left with the mu-law class of 0.0
(silence) by default (``pad="silence"``); ``pad="zeros"`` instead zero-fills the queues, which is
what the model's zero-padded parallel forward (and ``WaveNet.prime``) sees at the start.

Not thread-safe: one object holds one generation state; use one object per concurrent stream.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numba
import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F  # noqa: N812
from llvmlite import ir
from numba.core import cgutils, types
from numba.extending import intrinsic, models, register_model

from audiogen_studio.models.mulaw import silence_class

__all__ = [
    "FastWaveNet",
    "WaveNetLayout",
    "fast_sigmoid",
    "fast_tanh",
]

log = logging.getLogger(__name__)

Pad = Literal["silence", "zeros"]
Uniforms = (
    npt.NDArray[np.floating[Any]] | np.random.Generator | Sequence[np.random.Generator] | None
)

_SQRT_HALF = np.float32(math.sqrt(0.5))


# --------------------------------------------------------------------------------------------
# numba kernel
# --------------------------------------------------------------------------------------------


# Rational (13/6) minimax approximation of tanh on [-7.905, 7.905] (the coefficients Eigen uses
# for float); beyond the clamp tanh is 1 to float32 precision. Max abs error ~1e-7.
_T_CLAMP = np.float32(7.90531110763549805)
_A1 = np.float32(4.89352455891786e-03)
_A3 = np.float32(6.37261928875436e-04)
_A5 = np.float32(1.48572235717979e-05)
_A7 = np.float32(5.12229709037114e-08)
_A9 = np.float32(-8.60467152213735e-11)
_A11 = np.float32(2.00018790482477e-13)
_A13 = np.float32(-2.76076847742355e-16)
_B0 = np.float32(4.89352518554385e-03)
_B2 = np.float32(2.26843463243900e-03)
_B4 = np.float32(1.18534705686654e-04)
_B6 = np.float32(1.19825839466702e-06)
_HALF = np.float32(0.5)


@numba.njit(fastmath=True, error_model="numpy", cache=True, inline="always")
def _tanh(x: Any) -> Any:
    x = min(max(x, -_T_CLAMP), _T_CLAMP)
    x2 = x * x
    p = x2 * _A13 + _A11
    p = x2 * p + _A9
    p = x2 * p + _A7
    p = x2 * p + _A5
    p = x2 * p + _A3
    p = x2 * p + _A1
    p = x * p
    q = x2 * _B6 + _B4
    q = x2 * q + _B2
    q = x2 * q + _B0
    return p / q


def _pow2i_typer(typingctx: Any, n: Any) -> Any:
    """``2.0 ** n`` as float32 for an int32 ``n`` in [-126, 127] (built from the exponent bits)."""
    if n != types.int32:
        return None

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        i32 = ir.IntType(32)
        bits = builder.shl(builder.add(args[0], ir.Constant(i32, 127)), ir.Constant(i32, 23))
        return builder.bitcast(bits, ir.FloatType())

    return types.float32(n), codegen


_pow2i: Any = intrinsic(_pow2i_typer)
_LOG2E = np.float32(1.4426950408889634)
_LN2_HI = np.float32(0.693359375)
_LN2_LO = np.float32(-2.12194440e-4)
_EXP_MIN = np.float32(-87.0)
_E2 = np.float32(1.0 / 2)
_E3 = np.float32(1.0 / 6)
_E4 = np.float32(1.0 / 24)
_E5 = np.float32(1.0 / 120)
_E6 = np.float32(1.0 / 720)
_ONE = np.float32(1.0)


@numba.njit(fastmath=True, error_model="numpy", cache=True, inline="always")
def _exp_neg(x: Any) -> Any:
    """``exp(x)`` for float32 ``x <= 0`` (relative error < 5e-7; clamped at -87), vectorisable."""
    x = max(x, _EXP_MIN)
    k = np.floor(x * _LOG2E + _HALF)
    r = x - k * _LN2_HI - k * _LN2_LO
    p = r * _E6 + _E5
    p = r * p + _E4
    p = r * p + _E3
    p = r * p + _E2
    p = r * p + _ONE
    p = r * p + _ONE
    return p * _pow2i(np.int32(k))


@numba.njit(fastmath=True, error_model="numpy", cache=True)
def _exp_array(x: np.ndarray, out: np.ndarray) -> None:
    for i in range(x.shape[0]):
        out[i] = _exp_neg(x[i])


@numba.njit(fastmath=True, error_model="numpy", cache=True)
def _tanh_array(x: np.ndarray, out: np.ndarray) -> None:
    for i in range(x.shape[0]):
        out[i] = _tanh(x[i])


@numba.njit(fastmath=True, error_model="numpy", cache=True)
def _sigmoid_array(x: np.ndarray, out: np.ndarray) -> None:
    for i in range(x.shape[0]):
        out[i] = _HALF * _tanh(_HALF * x[i]) + _HALF


def fast_tanh(x: npt.ArrayLike) -> npt.NDArray[np.float32]:
    """The kernel's rational tanh, elementwise over a 1-D float32 array (for tests)."""
    a = np.ascontiguousarray(np.asarray(x, dtype=np.float32).ravel())
    out = np.empty_like(a)
    _tanh_array(a, out)
    return out


def fast_sigmoid(x: npt.ArrayLike) -> npt.NDArray[np.float32]:
    """The kernel's sigmoid ``0.5 * tanh(x / 2) + 0.5``, elementwise (for tests)."""
    a = np.ascontiguousarray(np.asarray(x, dtype=np.float32).ravel())
    out = np.empty_like(a)
    _sigmoid_array(a, out)
    return out


# Explicit 16-lane SIMD for the matrix-vector products. numba's auto-vectorised dot products pay
# a horizontal reduction per output row (costly for rows of 48-192 weights) and reload the
# takes' inputs for every row; here a matrix is stored in blocks of 16 rows, transposed, so that
# one vector load brings weight j of 16 consecutive rows and the 16 outputs accumulate in one
# register: no reductions, and with 4 takes every weight vector feeds 4 FMAs. ``<16 x float>``
# is a generic LLVM vector: AVX-512 uses one register, AVX2 two, NEON four.
_VL = 16


class _Vec16(types.Type):
    """numba type of a ``<16 x float>`` SIMD register value."""

    def __init__(self) -> None:
        super().__init__(name="Vec16f32")


_vec16 = _Vec16()


@register_model(_Vec16)
class _Vec16Model(models.PrimitiveModel):
    def __init__(self, dmm: Any, fe_type: Any) -> None:
        super().__init__(  # type: ignore[no-untyped-call]
            dmm, fe_type, ir.VectorType(ir.FloatType(), _VL)
        )


def _flat_ptr(context: Any, builder: Any, arrty: Any, arr: Any, idx: Any) -> Any:
    ary = context.make_array(arrty)(context, builder, arr)
    return cgutils.get_item_pointer(  # type: ignore[no-untyped-call]
        context, builder, arrty, ary, [idx], wraparound=False, boundscheck=False
    )


def _vzero_typer(typingctx: Any) -> Any:
    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        return ir.Constant(ir.VectorType(ir.FloatType(), _VL), [0.0] * _VL)

    return _vec16(), codegen


_vzero: Any = intrinsic(_vzero_typer)


def _vload_typer(typingctx: Any, arr: Any, idx: Any) -> Any:
    """Elements ``idx .. idx+15`` of a 1-D C-contiguous float32 (or float16-bits uint16) array,
    as float32 lanes."""
    if not isinstance(arr, types.Array) or arr.ndim != 1 or arr.layout != "C":
        return None
    if arr.dtype not in (types.float32, types.uint16):
        return None
    half = arr.dtype == types.uint16

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        ptr = _flat_ptr(context, builder, signature.args[0], args[0], args[1])
        fvec = ir.VectorType(ir.FloatType(), _VL)
        if half:
            hvec = ir.VectorType(ir.HalfType(), _VL)
            return builder.fpext(
                builder.load(builder.bitcast(ptr, hvec.as_pointer()), align=2), fvec
            )
        return builder.load(builder.bitcast(ptr, fvec.as_pointer()), align=4)

    return _vec16(arr, idx), codegen


_vload: Any = intrinsic(_vload_typer)


def _vstore_typer(typingctx: Any, arr: Any, idx: Any, v: Any) -> Any:
    """Store 16 lanes to ``arr[idx .. idx+15]`` (1-D C-contiguous float32)."""
    if not isinstance(arr, types.Array) or arr.ndim != 1 or arr.dtype != types.float32:
        return None
    if arr.layout != "C" or v != _vec16:
        return None

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        ptr = _flat_ptr(context, builder, signature.args[0], args[0], args[1])
        fvec = ir.VectorType(ir.FloatType(), _VL)
        builder.store(args[2], builder.bitcast(ptr, fvec.as_pointer()), align=4)
        return context.get_dummy_value()

    return types.none(arr, idx, v), codegen


_vstore: Any = intrinsic(_vstore_typer)


def _vfma_typer(typingctx: Any, a: Any, s: Any, acc: Any) -> Any:
    """``acc + a * s`` with the float32 scalar ``s`` broadcast to every lane."""
    if a != _vec16 or acc != _vec16 or s != types.float32:
        return None

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        fvec = ir.VectorType(ir.FloatType(), _VL)
        undef = ir.Constant(fvec, ir.Undefined)
        one = builder.insert_element(undef, args[1], ir.Constant(ir.IntType(32), 0))
        mask = ir.Constant(ir.VectorType(ir.IntType(32), _VL), [0] * _VL)
        bcast = builder.shuffle_vector(one, undef, mask)
        fma = cgutils.get_or_insert_function(  # type: ignore[no-untyped-call]
            builder.module, ir.FunctionType(fvec, [fvec, fvec, fvec]), "llvm.fma.v16f32"
        )
        return builder.call(fma, [args[0], bcast, args[2]])

    return _vec16(a, s, acc), codegen


_vfma: Any = intrinsic(_vfma_typer)


def _vadd_typer(typingctx: Any, a: Any, b: Any) -> Any:
    if a != _vec16 or b != _vec16:
        return None

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        return builder.fadd(args[0], args[1])

    return _vec16(a, b), codegen


_vadd: Any = intrinsic(_vadd_typer)


def _blocked(w: np.ndarray) -> np.ndarray:
    """``[N, J]`` → flat ``[ceil(N/16) * J * 16]``: blocks of 16 rows (zero-padded), each stored
    transposed, so element ``(blk * J + j) * 16 + lane`` is ``w[blk * 16 + lane, j]``."""
    n, j = w.shape
    npad = -(-n // _VL) * _VL
    padded = np.zeros((npad, j), w.dtype)
    padded[:n] = w
    return np.ascontiguousarray(padded.reshape(npad // _VL, _VL, j).transpose(0, 2, 1)).ravel()


@numba.njit(fastmath=True, error_model="numpy", cache=True)
def _mv1(Wb: np.ndarray, J: int, U: np.ndarray, out: np.ndarray, b0: int) -> None:
    """``out[b0, :Npad] = Wb @ U[b0, :J]`` for one take (two row blocks, two j-phases at a time
    so that four independent FMA chains are in flight)."""
    nblk = Wb.shape[0] // (J * _VL)
    row = out[b0]
    blk = 0
    while blk + 2 <= nblk:
        p0 = blk * J * _VL
        p1 = p0 + J * _VL
        a0 = _vzero()
        a1 = _vzero()
        c0 = _vzero()
        c1 = _vzero()
        j = 0
        while j + 2 <= J:
            u0 = U[b0, j]
            u1 = U[b0, j + 1]
            a0 = _vfma(_vload(Wb, p0 + j * _VL), u0, a0)
            a1 = _vfma(_vload(Wb, p1 + j * _VL), u0, a1)
            c0 = _vfma(_vload(Wb, p0 + (j + 1) * _VL), u1, c0)
            c1 = _vfma(_vload(Wb, p1 + (j + 1) * _VL), u1, c1)
            j += 2
        if j < J:
            u0 = U[b0, j]
            a0 = _vfma(_vload(Wb, p0 + j * _VL), u0, a0)
            a1 = _vfma(_vload(Wb, p1 + j * _VL), u0, a1)
        _vstore(row, blk * _VL, _vadd(a0, c0))
        _vstore(row, (blk + 1) * _VL, _vadd(a1, c1))
        blk += 2
    if blk < nblk:
        p0 = blk * J * _VL
        a0 = _vzero()
        a1 = _vzero()
        c0 = _vzero()
        c1 = _vzero()
        j = 0
        while j + 4 <= J:
            a0 = _vfma(_vload(Wb, p0 + j * _VL), U[b0, j], a0)
            c0 = _vfma(_vload(Wb, p0 + (j + 1) * _VL), U[b0, j + 1], c0)
            a1 = _vfma(_vload(Wb, p0 + (j + 2) * _VL), U[b0, j + 2], a1)
            c1 = _vfma(_vload(Wb, p0 + (j + 3) * _VL), U[b0, j + 3], c1)
            j += 4
        while j < J:
            a0 = _vfma(_vload(Wb, p0 + j * _VL), U[b0, j], a0)
            j += 1
        _vstore(row, blk * _VL, _vadd(_vadd(a0, c0), _vadd(a1, c1)))


@numba.njit(fastmath=True, error_model="numpy", cache=True)
def _mv2(Wb: np.ndarray, J: int, U: np.ndarray, out: np.ndarray, b0: int) -> None:
    """Two takes ``b0, b0 + 1``: each weight vector feeds two FMAs."""
    nblk = Wb.shape[0] // (J * _VL)
    r0 = out[b0]
    r1 = out[b0 + 1]
    blk = 0
    while blk + 2 <= nblk:
        p0 = blk * J * _VL
        p1 = p0 + J * _VL
        a0 = _vzero()
        a1 = _vzero()
        c0 = _vzero()
        c1 = _vzero()
        for j in range(J):
            w = _vload(Wb, p0 + j * _VL)
            v = _vload(Wb, p1 + j * _VL)
            u0 = U[b0, j]
            u1 = U[b0 + 1, j]
            a0 = _vfma(w, u0, a0)
            a1 = _vfma(w, u1, a1)
            c0 = _vfma(v, u0, c0)
            c1 = _vfma(v, u1, c1)
        _vstore(r0, blk * _VL, a0)
        _vstore(r1, blk * _VL, a1)
        _vstore(r0, (blk + 1) * _VL, c0)
        _vstore(r1, (blk + 1) * _VL, c1)
        blk += 2
    if blk < nblk:
        p0 = blk * J * _VL
        a0 = _vzero()
        a1 = _vzero()
        c0 = _vzero()
        c1 = _vzero()
        j = 0
        while j + 2 <= J:
            w = _vload(Wb, p0 + j * _VL)
            v = _vload(Wb, p0 + (j + 1) * _VL)
            a0 = _vfma(w, U[b0, j], a0)
            a1 = _vfma(w, U[b0 + 1, j], a1)
            c0 = _vfma(v, U[b0, j + 1], c0)
            c1 = _vfma(v, U[b0 + 1, j + 1], c1)
            j += 2
        if j < J:
            w = _vload(Wb, p0 + j * _VL)
            a0 = _vfma(w, U[b0, j], a0)
            a1 = _vfma(w, U[b0 + 1, j], a1)
        _vstore(r0, blk * _VL, _vadd(a0, c0))
        _vstore(r1, blk * _VL, _vadd(a1, c1))


@numba.njit(fastmath=True, error_model="numpy", cache=True)
def _mv4(Wb: np.ndarray, J: int, U: np.ndarray, out: np.ndarray, b0: int) -> None:
    """Four takes ``b0 .. b0 + 3``: two row blocks x four takes = eight accumulators; each
    weight vector feeds four FMAs."""
    nblk = Wb.shape[0] // (J * _VL)
    r0 = out[b0]
    r1 = out[b0 + 1]
    r2 = out[b0 + 2]
    r3 = out[b0 + 3]
    blk = 0
    while blk + 2 <= nblk:
        p0 = blk * J * _VL
        p1 = p0 + J * _VL
        a0 = _vzero()
        a1 = _vzero()
        a2 = _vzero()
        a3 = _vzero()
        c0 = _vzero()
        c1 = _vzero()
        c2 = _vzero()
        c3 = _vzero()
        for j in range(J):
            w = _vload(Wb, p0 + j * _VL)
            v = _vload(Wb, p1 + j * _VL)
            u0 = U[b0, j]
            u1 = U[b0 + 1, j]
            u2 = U[b0 + 2, j]
            u3 = U[b0 + 3, j]
            a0 = _vfma(w, u0, a0)
            a1 = _vfma(w, u1, a1)
            a2 = _vfma(w, u2, a2)
            a3 = _vfma(w, u3, a3)
            c0 = _vfma(v, u0, c0)
            c1 = _vfma(v, u1, c1)
            c2 = _vfma(v, u2, c2)
            c3 = _vfma(v, u3, c3)
        _vstore(r0, blk * _VL, a0)
        _vstore(r1, blk * _VL, a1)
        _vstore(r2, blk * _VL, a2)
        _vstore(r3, blk * _VL, a3)
        _vstore(r0, (blk + 1) * _VL, c0)
        _vstore(r1, (blk + 1) * _VL, c1)
        _vstore(r2, (blk + 1) * _VL, c2)
        _vstore(r3, (blk + 1) * _VL, c3)
        blk += 2
    if blk < nblk:
        p0 = blk * J * _VL
        a0 = _vzero()
        a1 = _vzero()
        a2 = _vzero()
        a3 = _vzero()
        for j in range(J):
            w = _vload(Wb, p0 + j * _VL)
            a0 = _vfma(w, U[b0, j], a0)
            a1 = _vfma(w, U[b0 + 1, j], a1)
            a2 = _vfma(w, U[b0 + 2, j], a2)
            a3 = _vfma(w, U[b0 + 3, j], a3)
        _vstore(r0, blk * _VL, a0)
        _vstore(r1, blk * _VL, a1)
        _vstore(r2, blk * _VL, a2)
        _vstore(r3, blk * _VL, a3)


@numba.njit(fastmath=True, error_model="numpy", cache=True)
def _matvec(Wb: np.ndarray, J: int, U: np.ndarray, out: np.ndarray, nb: int) -> None:
    """``out[b, :Npad] = W @ U[b, :J]`` for takes ``b < nb``; ``Wb`` from :func:`_blocked`.

    ``out`` rows must be C-contiguous and at least ``Npad`` (N rounded up to 16) wide.
    """
    b = 0
    while b + 4 <= nb:
        _mv4(Wb, J, U, out, b)
        b += 4
    if b + 2 <= nb:
        _mv2(Wb, J, U, out, b)
        b += 2
    if b < nb:
        _mv1(Wb, J, U, out, b)


@numba.njit(fastmath=True, error_model="numpy", cache=True)
def _floor_kernel(Wb: np.ndarray, J: int, U: np.ndarray, out: np.ndarray, reps: int) -> None:
    """``reps`` single-take matvecs over one blocked matrix (the weight-streaming floor)."""
    for _ in range(reps):
        _matvec(Wb, J, U, out, 1)


@numba.njit(error_model="numpy", cache=True)
def _sample_truncated(probs: np.ndarray, u: float, top_k: int, top_p: float) -> int:
    """Inverse-CDF sample over the top-k / top-p set, walked in order of decreasing probability."""
    C = probs.shape[0]
    order = np.argsort(-probs, kind="mergesort")  # stable: ties keep class order
    k = C if top_k <= 0 or top_k > C else top_k
    total = 0.0
    for r in range(k):
        total += probs[order[r]]
    if top_p < 1.0:
        kept = 0.0
        kk = 0
        while kk < k:
            kept += probs[order[kk]]
            kk += 1
            if kept >= top_p * total:
                break
        k = kk
        total = kept
    target = u * total
    acc = 0.0
    for r in range(k):
        acc += probs[order[r]]
        if acc > target:
            return int(order[r])
    return int(order[k - 1])


@numba.njit(fastmath=True, error_model="numpy", cache=True)
def _softmax_weights(logits: np.ndarray, m: Any, inv_temp: Any, w: np.ndarray) -> None:
    """``w[c] = exp((logits[c] - m) * inv_temp)`` (unnormalised), vectorised."""
    for c in range(logits.shape[0]):
        w[c] = _exp_neg((logits[c] - m) * inv_temp)


@numba.njit(error_model="numpy", cache=True)
def _sample(
    logits: np.ndarray,
    temperature: float,
    u: float,
    top_k: int,
    top_p: float,
    w: np.ndarray,
    probs: np.ndarray,
) -> int:
    """Sample one class from ``softmax(logits / temperature)`` by inverse CDF at ``u``.

    The weights are float32, their running sum float64 in class order; the class is the first
    whose cumulative weight exceeds ``u`` times the total.
    """
    C = logits.shape[0]
    best = 0
    m = logits[0]
    for c in range(1, C):
        if logits[c] > m:
            m = logits[c]
            best = c
    if temperature <= 0.0:
        return best
    _softmax_weights(logits, m, np.float32(1.0 / temperature), w)
    total = 0.0
    for c in range(C):
        p = float(w[c])
        probs[c] = p
        total += p
    if top_k > 0 or top_p < 1.0:
        return _sample_truncated(probs, u, top_k, top_p)
    target = u * total
    acc = 0.0
    last = best
    for c in range(C):
        p = probs[c]
        acc += p
        if p > 0.0:
            last = c
        if acc > target:
            return c
    return last


@numba.njit(fastmath=True, error_model="numpy", cache=True, nogil=True)
def _run_kernel(
    n: int,
    t: int,
    kernel_size: int,
    emb: np.ndarray,  # [C, R] float32
    conv_w: np.ndarray,  # [L, blocked [G, K*R]] (float32 | uint16 float16 bits); col k*R+r: tap k
    take_bias: np.ndarray,  # [B, L, G] float32: conv bias (+ global conditioning term)
    rs_w: np.ndarray,  # [L, blocked [R+S, H]]: residual rows then skip rows
    rs_b: np.ndarray,  # [L, R+S] float32
    o1_w: np.ndarray,  # blocked [S, S]
    o1_b: np.ndarray,  # [S]
    o2_w: np.ndarray,  # blocked [C, S]
    o2_b: np.ndarray,  # [C]
    dil: np.ndarray,  # [L] int64
    qoff: np.ndarray,  # [L] int64: first row of layer i's queue in `queue`
    qlen: np.ndarray,  # [L] int64: (K - 1) * d_i rows
    queue: np.ndarray,  # [B, sum(qlen), R] float32, updated
    pending: np.ndarray,  # [B] int64: the class fed at the next step, updated
    cterm: np.ndarray,  # [B, n, L, G] float32 local conditioning term (used if use_cterm)
    use_cterm: bool,
    force: np.ndarray,  # [B, n] int64: teacher-forced classes (used if teacher)
    teacher: bool,
    uniforms: np.ndarray,  # [B, n] float64 in [0, 1) (used when sampling)
    temperature: float,
    top_k: int,
    top_p: float,
    out_classes: np.ndarray,  # [B, n] int64
    out_logits: np.ndarray,  # [B, n, C] float32 (written if want_logits)
    want_logits: bool,
) -> int:
    """Run ``n`` steps for all takes; returns the new time counter ``t``.

    Releases the GIL (``nogil``): a GUI or audio thread keeps running while a chunk is computed.
    """
    nb = queue.shape[0]
    L = conv_w.shape[0]
    G = take_bias.shape[2]
    H = G // 2
    R = emb.shape[1]
    S = o1_b.shape[0]
    C = o2_b.shape[0]
    K = kernel_size
    KR = K * R
    U = np.empty((nb, KR), np.float32)
    A = np.empty((nb, (G + _VL - 1) // _VL * _VL), np.float32)  # outputs padded to 16
    Z = np.empty((nb, H), np.float32)
    Y = np.empty((nb, (R + S + _VL - 1) // _VL * _VL), np.float32)
    X = np.empty((nb, R), np.float32)
    SK = np.empty((nb, S), np.float32)
    H1 = np.empty((nb, (S + _VL - 1) // _VL * _VL), np.float32)
    LG = np.empty((nb, (C + _VL - 1) // _VL * _VL), np.float32)
    probs = np.empty(C, np.float64)
    wts = np.empty(C, np.float32)
    for s in range(n):
        for b in range(nb):
            c = pending[b]
            for r in range(R):
                X[b, r] = emb[c, r]
            for k in range(S):
                SK[b, k] = 0.0
        for i in range(L):
            d = dil[i]
            ql = qlen[i]
            off = qoff[i]
            wslot = off + t % ql
            for b in range(nb):
                for k in range(K - 1):
                    slot = off + (t - (K - 1 - k) * d) % ql
                    for r in range(R):
                        U[b, k * R + r] = queue[b, slot, r]
                base = (K - 1) * R
                for r in range(R):
                    U[b, base + r] = X[b, r]
                    queue[b, wslot, r] = X[b, r]
            _matvec(conv_w[i], KR, U, A, nb)
            for b in range(nb):
                if use_cterm:
                    for h in range(H):
                        a1 = A[b, h] + take_bias[b, i, h] + cterm[b, s, i, h]
                        a2 = A[b, H + h] + take_bias[b, i, H + h] + cterm[b, s, i, H + h]
                        Z[b, h] = _tanh(a1) * (_HALF * _tanh(_HALF * a2) + _HALF)
                else:
                    for h in range(H):
                        a1 = A[b, h] + take_bias[b, i, h]
                        a2 = A[b, H + h] + take_bias[b, i, H + h]
                        Z[b, h] = _tanh(a1) * (_HALF * _tanh(_HALF * a2) + _HALF)
            _matvec(rs_w[i], H, Z, Y, nb)
            for b in range(nb):
                for r in range(R):
                    X[b, r] = (X[b, r] + Y[b, r] + rs_b[i, r]) * _SQRT_HALF
                for k in range(S):
                    SK[b, k] += Y[b, R + k] + rs_b[i, R + k]
        for b in range(nb):
            for k in range(S):
                SK[b, k] = max(SK[b, k], np.float32(0.0))
        _matvec(o1_w, S, SK, H1, nb)
        for b in range(nb):
            for k in range(S):
                H1[b, k] = max(H1[b, k] + o1_b[k], np.float32(0.0))
        _matvec(o2_w, S, H1, LG, nb)
        for b in range(nb):
            for c in range(C):
                LG[b, c] += o2_b[c]
            if want_logits:
                for c in range(C):
                    out_logits[b, s, c] = LG[b, c]
            if teacher:
                nxt = force[b, s]
            else:
                nxt = _sample(LG[b, :C], temperature, uniforms[b, s], top_k, top_p, wts, probs)
            out_classes[b, s] = nxt
            pending[b] = nxt
        t += 1
    return t


# --------------------------------------------------------------------------------------------
# weights and layout
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WaveNetLayout:
    """Sizes read from a WaveNet config (any object or mapping with the spec's fields)."""

    layers: int
    stacks: int
    residual_channels: int
    gate_channels: int
    skip_channels: int
    kernel_size: int
    bits: int
    sample_rate: int
    mel_channels: int
    global_classes: int
    global_dim: int

    @classmethod
    def from_config(cls, config: Any) -> WaveNetLayout:
        """Build from a ``WaveNetConfig``, a dataclass-like object, or a JSON dict."""

        def get(name: str, default: int) -> int:
            if isinstance(config, Mapping):
                return int(config.get(name, default))
            return int(getattr(config, name, default))

        lay = cls(
            layers=get("layers", 20),
            stacks=get("stacks", 2),
            residual_channels=get("residual_channels", 64),
            gate_channels=get("gate_channels", 128),
            skip_channels=get("skip_channels", 64),
            kernel_size=get("kernel_size", 3),
            bits=get("bits", 8),
            sample_rate=get("sample_rate", 16000),
            mel_channels=get("mel_channels", 0),
            global_classes=get("global_classes", 0),
            global_dim=get("global_dim", 0),
        )
        if lay.kernel_size < 2:
            raise ValueError(f"kernel_size must be >= 2 for a cached step, got {lay.kernel_size}")
        if lay.gate_channels % 2:
            raise ValueError(f"gate_channels must be even, got {lay.gate_channels}")
        if lay.stacks < 1 or lay.layers % lay.stacks:
            raise ValueError(f"layers ({lay.layers}) must be a multiple of stacks ({lay.stacks})")
        return lay

    @property
    def classes(self) -> int:
        return int(2**self.bits)

    @property
    def half(self) -> int:
        return self.gate_channels // 2

    @property
    def dilations(self) -> list[int]:
        per = self.layers // self.stacks
        return [2 ** (i % per) for i in range(self.layers)]

    @property
    def receptive_field(self) -> int:
        return (self.kernel_size - 1) * sum(self.dilations) + 1

    @property
    def queue_lengths(self) -> list[int]:
        return [(self.kernel_size - 1) * d for d in self.dilations]


class _TorchWeights:
    """float32 torch copies of the (possibly float16-rounded) weights, for priming and the
    torch step."""

    def __init__(
        self, lay: WaveNetLayout, sd: Mapping[str, torch.Tensor], device: torch.device
    ) -> None:
        def t(name: str) -> torch.Tensor:
            return sd[name].to(device=device, dtype=torch.float32)

        L = lay.layers
        self.embed = t("embed.weight")  # [C, R]
        self.conv_w = [t(f"layers.{i}.conv.weight") for i in range(L)]  # [G, R, K]
        self.conv_b = torch.stack([t(f"layers.{i}.conv.bias") for i in range(L)])  # [L, G]
        self.res_w = [t(f"layers.{i}.res.weight")[:, :, 0] for i in range(L)]  # [R, H]
        self.res_b = [t(f"layers.{i}.res.bias") for i in range(L)]
        self.skip_w = [t(f"layers.{i}.skip.weight")[:, :, 0] for i in range(L)]  # [S, H]
        self.skip_b = [t(f"layers.{i}.skip.bias") for i in range(L)]
        self.cond_w: torch.Tensor | None = None  # [L, G, M]
        if lay.mel_channels > 0:
            self.cond_w = torch.stack([t(f"layers.{i}.cond.weight")[:, :, 0] for i in range(L)])
        self.gcond_w: torch.Tensor | None = None  # [L, G, Dg]
        self.gembed: torch.Tensor | None = None  # [global_classes, Dg]
        if lay.global_classes > 0 or lay.global_dim > 0:
            self.gcond_w = torch.stack([t(f"layers.{i}.gcond.weight")[:, :, 0] for i in range(L)])
            if lay.global_classes > 0:
                self.gembed = t(_global_embedding_key(lay, sd))
        self.out1_w = t("out1.weight")[:, :, 0]
        self.out1_b = t("out1.bias")
        self.out2_w = t("out2.weight")[:, :, 0]
        self.out2_b = t("out2.bias")


def _global_embedding_key(lay: WaveNetLayout, sd: Mapping[str, torch.Tensor]) -> str:
    """The state-dict key of the global-id embedding table ``[global_classes, global_dim]``."""
    for key in ("global_embed.weight", "gembed.weight", "global_embedding.weight"):
        if key in sd:
            return key
    want = (lay.global_classes, lay.global_dim)
    hits = [
        k
        for k, v in sd.items()
        if k.endswith("weight")
        and tuple(v.shape) == want
        and not k.startswith(("layers.", "embed.", "out1.", "out2.", "upsample"))
    ]
    if len(hits) != 1:
        raise KeyError(f"cannot find the global embedding [{want[0]}, {want[1]}] in the state dict")
    return hits[0]


def _round_state(sd: Mapping[str, torch.Tensor], fp16: bool) -> dict[str, torch.Tensor]:
    out = {}
    for k, v in sd.items():
        v = v.detach().to("cpu")
        if v.is_floating_point():
            v = v.to(torch.float16).to(torch.float32) if fp16 else v.to(torch.float32)
        out[k] = v
    return out


def _np_weight(x: torch.Tensor, fp16: bool) -> np.ndarray:
    a = np.ascontiguousarray(x.detach().cpu().numpy().astype(np.float32))
    if fp16:
        return np.ascontiguousarray(a.astype(np.float16).view(np.uint16))
    return a


def _resolve_weight_dtype(weight_dtype: Any) -> bool:
    """True for float16 storage, False for float32."""
    if weight_dtype in (torch.float16, "fp16", "half"):
        return True
    if weight_dtype in (torch.float32, "fp32", "float"):
        return False
    dt = np.dtype(weight_dtype)
    if dt == np.float16:
        return True
    if dt == np.float32:
        return False
    raise ValueError(f"weight_dtype must be float32 or float16, got {weight_dtype!r}")


def _as_classes(x: Any, name: str) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    a = np.asarray(x)
    if a.ndim == 1:
        a = a[None, :]
    if a.ndim != 2 or not np.issubdtype(a.dtype, np.integer):
        raise ValueError(f"{name} must be integer classes [B, T], got {a.dtype} {a.shape}")
    return np.ascontiguousarray(a.astype(np.int64))


# --------------------------------------------------------------------------------------------
# the generator
# --------------------------------------------------------------------------------------------


class FastWaveNet:
    """Cached sample-by-sample WaveNet generation from a WaveNet state dict.

    Build with :meth:`from_model` (a ``WaveNet`` module, with ``.config``) or
    :meth:`from_state_dict`. Then :meth:`prime` with the prompt's classes, and :meth:`generate`
    (or :meth:`stream`) the continuation. Array shapes: classes int64 ``[B, T]``; local
    conditioning features ``[B, M, T]`` (already upsampled to one vector per sample); their
    per-layer projections ``[B, T, L, G]``; logits float32 ``[B, T, classes]``.

    Example (continuation, 4 takes of one prompt, reproducible per take)::

        fast = FastWaveNet.from_model(model, weight_dtype=np.float16)
        prompt = np.repeat(mulaw_encode(samples)[None], 4, axis=0)  # [4, T]
        rngs = [np.random.default_rng([seed, i]) for i in range(4)]
        for classes in fast.stream(prompt, 32000, 1600, 1.0, rngs, cancel):
            audio = mulaw_decode(classes)  # [4, 1600] float32
    """

    def __init__(
        self,
        config: Any,
        state_dict: Mapping[str, torch.Tensor],
        *,
        device: str | torch.device = "cpu",
        weight_dtype: Any = np.float32,
        backend: Literal["auto", "numba", "torch"] = "auto",
    ) -> None:
        self.layout = lay = WaveNetLayout.from_config(config)
        self.fp16 = _resolve_weight_dtype(weight_dtype)
        self.device = torch.device(device)
        if backend == "auto":
            backend = "numba" if self.device.type == "cpu" else "torch"
        if backend == "numba" and self.device.type != "cpu":
            raise ValueError("the numba backend runs on the CPU only")
        self.backend: Literal["numba", "torch"] = backend
        self.use_cuda_graph = self.device.type == "cuda"

        sd = _round_state(state_dict, self.fp16)
        self._tw = _TorchWeights(lay, sd, self.device)
        self._dil = np.asarray(lay.dilations, dtype=np.int64)
        self._qlen = np.asarray(lay.queue_lengths, dtype=np.int64)
        self._qoff = np.concatenate([[0], np.cumsum(self._qlen)[:-1]]).astype(np.int64)
        if self.backend == "numba":
            self._init_numba(lay, sd)
        self._batch = 0
        self._t = 0
        self._torch_step: _TorchStepper | None = None
        self._primed = False

    # -- construction ---------------------------------------------------------------------

    @classmethod
    def from_model(
        cls,
        model: torch.nn.Module,
        *,
        device: str | torch.device = "cpu",
        weight_dtype: Any = np.float32,
        backend: Literal["auto", "numba", "torch"] = "auto",
    ) -> FastWaveNet:
        """From a ``WaveNet`` module (reads ``model.config`` and ``model.state_dict()``)."""
        config = getattr(model, "config", None)
        if config is None:
            raise ValueError("the model has no .config (a WaveNetConfig)")
        return cls(
            config, model.state_dict(), device=device, weight_dtype=weight_dtype, backend=backend
        )

    @classmethod
    def from_state_dict(
        cls,
        state_dict: Mapping[str, torch.Tensor],
        config: Any,
        *,
        device: str | torch.device = "cpu",
        weight_dtype: Any = np.float32,
        backend: Literal["auto", "numba", "torch"] = "auto",
    ) -> FastWaveNet:
        """From a state dict (e.g. loaded from safetensors) and its config (object or dict)."""
        return cls(config, state_dict, device=device, weight_dtype=weight_dtype, backend=backend)

    def _init_numba(self, lay: WaveNetLayout, sd: Mapping[str, torch.Tensor]) -> None:
        L, K, R = lay.layers, lay.kernel_size, lay.residual_channels
        G = lay.gate_channels
        f16 = self.fp16
        # conv weight [G, R, K] -> [G, K, R] -> [G, K*R]: column k*R + r multiplies tap k
        conv = torch.stack(
            [sd[f"layers.{i}.conv.weight"].permute(0, 2, 1).reshape(G, K * R) for i in range(L)]
        )
        rs_w = torch.stack(
            [
                torch.cat(
                    [sd[f"layers.{i}.res.weight"][:, :, 0], sd[f"layers.{i}.skip.weight"][:, :, 0]]
                )
                for i in range(L)
            ]
        )
        rs_b = torch.stack(
            [torch.cat([sd[f"layers.{i}.res.bias"], sd[f"layers.{i}.skip.bias"]]) for i in range(L)]
        )
        self._emb = _np_weight(sd["embed.weight"], False)
        self._conv_w = np.stack([_blocked(w) for w in _np_weight(conv, f16)])
        self._rs_w = np.stack([_blocked(w) for w in _np_weight(rs_w, f16)])
        self._rs_b = _np_weight(rs_b, False)
        self._o1_w = _blocked(_np_weight(sd["out1.weight"][:, :, 0], f16))
        self._o1_b = _np_weight(sd["out1.bias"], False)
        self._o2_w = _blocked(_np_weight(sd["out2.weight"][:, :, 0], f16))
        self._o2_b = _np_weight(sd["out2.bias"], False)
        self._dummy_cterm = np.zeros((1, 1, 1, 1), np.float32)
        self._dummy_force = np.zeros((1, 1), np.int64)
        self._dummy_logits = np.zeros((1, 1, 1), np.float32)
        self._dummy_uniforms = np.zeros((1, 1), np.float64)

    # -- properties -------------------------------------------------------------------------

    @property
    def receptive_field(self) -> int:
        return self.layout.receptive_field

    @property
    def classes(self) -> int:
        return self.layout.classes

    @property
    def batch(self) -> int:
        """Number of takes of the current state (0 before :meth:`prime`)."""
        return self._batch

    @property
    def weight_bytes(self) -> int:
        """Bytes of weights the per-sample step streams (numba backend)."""
        if self.backend != "numba":
            return 0
        return int(sum(a.nbytes for a in (self._conv_w, self._rs_w, self._o1_w, self._o2_w)))

    # -- conditioning helpers -------------------------------------------------------------

    def cond_terms(self, c: Any) -> npt.NDArray[np.float32]:
        """Per-sample local-conditioning terms of every layer.

        Args:
            c: upsampled conditioning features ``[B, M, T]`` (one vector per sample).
        Returns:
            float32 ``[B, T, L, G]``: ``cond_i(c_t)`` for each layer ``i``, in one batched matmul.
        """
        tw = self._tw
        if tw.cond_w is None:
            raise ValueError("this WaveNet has no local conditioning (mel_channels == 0)")
        ct = torch.as_tensor(c, dtype=torch.float32).to(self.device)
        if ct.ndim != 3 or ct.shape[1] != self.layout.mel_channels:
            raise ValueError(
                f"conditioning must be [B, {self.layout.mel_channels}, T], got {tuple(ct.shape)}"
            )
        L, G, M = tw.cond_w.shape
        with torch.no_grad():
            proj = torch.matmul(ct.transpose(1, 2), tw.cond_w.reshape(L * G, M).T)
        return np.ascontiguousarray(
            proj.reshape(ct.shape[0], ct.shape[2], L, G).cpu().numpy(), dtype=np.float32
        )

    def _global_term(self, g: Any, batch: int) -> torch.Tensor | None:
        """``gcond_i(g)`` for every layer, ``[B, L, G]`` (None when unconditioned)."""
        tw = self._tw
        if g is None:
            if tw.gcond_w is not None:
                raise ValueError("this WaveNet is globally conditioned: pass g")
            return None
        if tw.gcond_w is None:
            raise ValueError("this WaveNet has no global conditioning, but g was given")
        gt = torch.as_tensor(g).to(self.device)
        if tw.gembed is not None:
            ids = gt.long().reshape(-1)
            if ids.numel() == 1:
                ids = ids.expand(batch)
            vec = tw.gembed[ids]
        else:
            vec = gt.float().reshape(-1, self.layout.global_dim)
            if vec.shape[0] == 1:
                vec = vec.expand(batch, -1)
        if vec.shape[0] != batch:
            raise ValueError(f"g has {vec.shape[0]} rows for {batch} takes")
        return torch.einsum("lgd,bd->blg", tw.gcond_w, vec)

    def _cterm_for(self, cond: Any, batch: int, n: int) -> np.ndarray | None:
        if cond is None:
            if self._tw.cond_w is not None:
                raise ValueError("this WaveNet is mel-conditioned: pass cond for every sample")
            return None
        arr = cond.detach().cpu().numpy() if isinstance(cond, torch.Tensor) else np.asarray(cond)
        lay = self.layout
        if arr.ndim == 3:
            arr = self.cond_terms(arr)
        want = (batch, n, lay.layers, lay.gate_channels)
        if arr.shape != want:
            raise ValueError(f"conditioning terms must be {list(want)}, got {list(arr.shape)}")
        return np.ascontiguousarray(arr, dtype=np.float32)

    # -- priming --------------------------------------------------------------------------

    def _layer_inputs(
        self,
        x: torch.Tensor,  # [B, T] long
        c: torch.Tensor | None,  # [B, M, T]
        gterm: torch.Tensor | None,  # [B, L, G]
    ) -> list[torch.Tensor]:
        """Every layer's input ``[B, R, T]`` over ``x`` in one parallel pass (zero-padded)."""
        tw, lay = self._tw, self.layout
        H = lay.half
        h = tw.embed[x].transpose(1, 2)
        ins = []
        for i, d in enumerate(lay.dilations):
            ins.append(h)
            a = F.conv1d(
                F.pad(h, ((lay.kernel_size - 1) * d, 0)), tw.conv_w[i], tw.conv_b[i], dilation=d
            )
            if c is not None and tw.cond_w is not None:
                a = a + torch.einsum("gm,bmt->bgt", tw.cond_w[i], c)
            if gterm is not None:
                a = a + gterm[:, i, :, None]
            z = torch.tanh(a[:, :H]) * torch.sigmoid(a[:, H:])
            h = (h + torch.einsum("rh,bht->brt", tw.res_w[i], z) + tw.res_b[i][:, None]) * (
                math.sqrt(0.5)
            )
        return ins

    def prime(
        self,
        prompt_classes: Any,
        cond: Any = None,
        g: Any = None,
        *,
        pad: Pad = "silence",
    ) -> None:
        """Fill every layer's queue from the prompt in one parallel pass.

        Args:
            prompt_classes: int ``[B, T]`` (or ``[T]``) mu-law classes, ``T >= 1``. The last one
                becomes the pending input (the first step predicts the sample after it).
            cond: mel-conditioned models: upsampled features ``[B, M, T]`` aligned with the prompt
                (column ``t`` goes with input ``prompt[:, t]``; the last column is not used here
                -- the first :meth:`generate` step takes the pending input's features). May be
                None for a one-sample prompt.
            g: globally conditioned models: ids ``[B]`` (or one id) or vectors ``[B, Dg]``.
            pad: a prompt shorter than the receptive field is padded on the left with the class
                of silence (``"silence"``, default) or the queues are zero-filled (``"zeros"``,
                what the zero-padded parallel forward sees).
        """
        x = _as_classes(prompt_classes, "prompt_classes")
        B, T = x.shape
        lay = self.layout
        if T < 1:
            raise ValueError("the prompt needs at least one sample")
        if x.min() < 0 or x.max() >= lay.classes:
            raise ValueError(f"prompt classes must be in [0, {lay.classes})")
        need = lay.receptive_field - 1  # inputs before the pending one that the queues can see
        ctx = x[:, :-1][:, max(0, T - 1 - need) :]
        c_ctx = None
        if cond is not None and self._tw.cond_w is None:
            raise ValueError("this WaveNet has no local conditioning, but cond was given")
        if cond is None and self._tw.cond_w is not None:
            if T > 1:
                raise ValueError("this WaveNet is mel-conditioned: pass cond for the prompt")
            cond = torch.zeros(B, self.layout.mel_channels, 1)  # unused: no context to prime
        if cond is not None:
            c_all = torch.as_tensor(cond, dtype=torch.float32)
            if c_all.ndim != 3 or c_all.shape[0] != B or c_all.shape[2] != T:
                raise ValueError(f"cond must be [B, M, T] = [{B}, M, {T}], got {list(c_all.shape)}")
            c_ctx = c_all[:, :, :-1][:, :, max(0, T - 1 - need) :]
        if pad not in ("silence", "zeros"):
            raise ValueError(f"pad must be 'silence' or 'zeros', got {pad!r}")
        if pad == "silence" and ctx.shape[1] < need:
            fill = need - ctx.shape[1]
            log.debug("prompt of %d samples padded with %d samples of silence", T, fill)
            ctx = np.concatenate(
                [np.full((B, fill), silence_class(lay.bits), np.int64), ctx], axis=1
            )
            if c_ctx is not None:
                c_ctx = F.pad(c_ctx, (fill, 0))
        gterm = self._global_term(g, B)
        with torch.no_grad():
            xt = torch.as_tensor(ctx, device=self.device)
            ct = c_ctx.to(self.device) if c_ctx is not None else None
            ins = self._layer_inputs(xt, ct, gterm) if ctx.shape[1] else []
            take_bias = self._tw.conv_b[None].expand(B, -1, -1)
            if gterm is not None:
                take_bias = take_bias + gterm
        # time counter: the pending input is at time t; queue row (t - m) % qlen holds lag m
        t0 = int(lay.receptive_field)
        tails = []
        for i, ql in enumerate(lay.queue_lengths):
            tail = torch.zeros(B, lay.residual_channels, ql, device=self.device)
            if ins:
                have = min(ql, ins[i].shape[2])
                tail[:, :, ql - have :] = ins[i][:, :, ins[i].shape[2] - have :]
            tails.append(tail)  # column j holds lag ql - j
        self._batch, self._t = B, t0
        if self.backend == "numba":
            rows = np.empty((B, int(self._qlen.sum()), lay.residual_channels), np.float32)
            for i, ql in enumerate(lay.queue_lengths):
                lags = np.arange(ql, 0, -1)
                slots = self._qoff[i] + (t0 - lags) % ql
                rows[:, slots, :] = tails[i].permute(0, 2, 1).cpu().numpy()
            self._queue = rows
            self._pending = np.ascontiguousarray(x[:, -1])
            self._take_bias = np.ascontiguousarray(take_bias.cpu().numpy(), dtype=np.float32)
        else:
            self._torch_step = _TorchStepper(self, tails, x[:, -1], take_bias, t0)
        self._primed = True

    # -- generation ------------------------------------------------------------------------

    def _uniforms(self, uniforms: Uniforms, n: int) -> np.ndarray:
        B = self._batch
        if uniforms is None:
            uniforms = np.random.default_rng()
        if isinstance(uniforms, np.random.Generator):
            return uniforms.random((B, n))
        if isinstance(uniforms, Sequence) and not isinstance(uniforms, np.ndarray):
            if len(uniforms) != B or not all(isinstance(r, np.random.Generator) for r in uniforms):
                raise ValueError(f"pass one numpy Generator per take ({B})")
            return np.stack([r.random(n) for r in uniforms])
        u = np.ascontiguousarray(uniforms, dtype=np.float64)
        if u.shape != (B, n):
            raise ValueError(f"uniforms must be [B, n] = [{B}, {n}], got {list(u.shape)}")
        if u.size and not (u.min() >= 0.0 and u.max() < 1.0):
            raise ValueError("uniforms must lie in [0, 1)")
        return u

    def generate(
        self,
        n: int,
        *,
        temperature: float = 1.0,
        uniforms: Uniforms = None,
        cond: Any = None,
        top_k: int | None = None,
        top_p: float | None = None,
        out: npt.NDArray[np.int64] | None = None,
    ) -> npt.NDArray[np.int64]:
        """Continue every take by ``n`` samples.

        Args:
            n: samples to generate.
            temperature: softmax temperature; 0 takes the argmax.
            uniforms: ``[B, n]`` floats in ``[0, 1)``, one per take and sample (the class is
                the inverse CDF at it); or a numpy Generator (draws ``[B, n]``), or one Generator
                per take (take ``b`` draws ``n`` from its own; batched == one at a time); None:
                a fresh Generator.
            cond: mel-conditioned models: per-sample projections ``[B, n, L, G]`` (see
                :meth:`cond_terms`) or upsampled features ``[B, M, n]``; column ``j`` goes with
                step ``j``'s input (the pending class), see the module docstring.
            top_k, top_p: optional truncation of the distribution before sampling.
            out: optional int64 ``[B, n]`` buffer to write into.
        Returns:
            int64 ``[B, n]`` sampled classes (``out`` when given).
        """
        return self._run(
            n,
            temperature=float(temperature),
            uniforms=self._uniforms(uniforms, n),
            cond=cond,
            top_k=int(top_k or 0),
            top_p=1.0 if top_p is None else float(top_p),
            force=None,
            out=out,
        )[0]

    def logits_teacher_forced(self, classes: Any, *, cond: Any = None) -> npt.NDArray[np.float32]:
        """Run the same step feeding the given classes; return the logits.

        Args:
            classes: int ``[B, n]``: ``classes[:, j]`` is fed after step ``j``.
            cond: as in :meth:`generate`.
        Returns:
            float32 ``[B, n, classes]``: ``[:, j]`` is the distribution of ``classes[:, j]``.
        """
        x = _as_classes(classes, "classes")
        if x.shape[0] != self._batch:
            raise ValueError(f"classes has {x.shape[0]} takes, the state {self._batch}")
        _, logits = self._run(
            x.shape[1],
            temperature=1.0,
            uniforms=None,
            cond=cond,
            top_k=0,
            top_p=1.0,
            force=x,
            out=None,
        )
        assert logits is not None
        return logits

    def _run(
        self,
        n: int,
        *,
        temperature: float,
        uniforms: np.ndarray | None,
        cond: Any,
        top_k: int,
        top_p: float,
        force: np.ndarray | None,
        out: np.ndarray | None,
    ) -> tuple[np.ndarray, np.ndarray | None]:
        if not self._primed:
            raise RuntimeError("call prime() before generating")
        if not temperature >= 0:
            raise ValueError(f"temperature must be >= 0, got {temperature}")
        if top_p is not None and not 0.0 < top_p <= 1.0:
            raise ValueError(f"top_p must be in (0, 1], got {top_p}")
        B = self._batch
        if out is None:
            out = np.empty((B, n), np.int64)
        elif out.shape != (B, n) or out.dtype != np.int64 or not out.flags.c_contiguous:
            raise ValueError(f"out must be a C-contiguous int64 [{B}, {n}] array")
        cterm = self._cterm_for(cond, B, n)
        teacher = force is not None
        if force is not None and (force.min(initial=0) < 0 or force.max(initial=0) >= self.classes):
            raise ValueError(f"classes must be in [0, {self.classes})")
        if n == 0:
            empty = np.empty((B, 0, self.classes), np.float32) if teacher else None
            return out, empty
        if self.backend == "numba":
            logits = np.empty((B, n, self.classes), np.float32) if teacher else None
            self._t = _run_kernel(
                n,
                self._t,
                self.layout.kernel_size,
                self._emb,
                self._conv_w,
                self._take_bias,
                self._rs_w,
                self._rs_b,
                self._o1_w,
                self._o1_b,
                self._o2_w,
                self._o2_b,
                self._dil,
                self._qoff,
                self._qlen,
                self._queue,
                self._pending,
                cterm if cterm is not None else self._dummy_cterm,
                cterm is not None,
                force if force is not None else self._dummy_force,
                teacher,
                uniforms if uniforms is not None else self._dummy_uniforms,
                temperature,
                top_k,
                top_p,
                out,
                logits if logits is not None else self._dummy_logits,
                teacher,
            )
            return out, logits
        assert self._torch_step is not None
        return self._torch_step.run(
            n,
            temperature=temperature,
            uniforms=uniforms,
            cterm=cterm,
            top_k=top_k,
            top_p=top_p,
            force=force,
            out=out,
        )

    def stream(
        self,
        prompt_classes: Any,
        n_total: int,
        chunk: int,
        temperature: float = 1.0,
        rng: np.random.Generator | Sequence[np.random.Generator] | None = None,
        cancel: threading.Event | None = None,
        cond_fn: Callable[[int, int], Any] | None = None,
        *,
        prompt_cond: Any = None,
        g: Any = None,
        top_k: int | None = None,
        top_p: float | None = None,
        pad: Pad = "silence",
    ) -> Iterator[npt.NDArray[np.int64]]:
        """Prime on the prompt, then yield the continuation ``chunk`` samples at a time.

        Args:
            prompt_classes: int ``[B, T]`` prompt classes (B takes; rows may be equal).
            n_total: samples to generate per take.
            chunk: samples per yielded array (~800–1600 = 50–100 ms at 16 kHz); the last
                array may be shorter.
            temperature, top_k, top_p: sampling (see :meth:`generate`).
            rng: one Generator per take (reproducible per take, batched or not), or one
                Generator for all takes, or None.
            cancel: checked before every chunk; once set the stream ends (within one chunk).
            cond_fn: mel-conditioned models: ``cond_fn(start, length)`` returns the upsampled
                features ``[B, M, length]`` (or projections ``[B, length, L, G]``) for steps
                ``start .. start + length`` (step ``j`` feeds the pending input and makes
                generated sample ``j``; with the model's output-aligned vocoder convention and a
                one-sample silence prompt that is ``c_up[:, :, start : start + length]``).
            prompt_cond: mel-conditioned models: features ``[B, M, T]`` of the prompt.
            g: global conditioning (see :meth:`prime`).
            pad: see :meth:`prime`.
        Yields:
            int64 ``[B, chunk]`` arrays of sampled classes (fresh arrays, the caller keeps them).
        """
        if chunk < 1:
            raise ValueError(f"chunk must be >= 1, got {chunk}")
        if n_total < 0:
            raise ValueError(f"n_total must be >= 0, got {n_total}")
        if rng is None:
            rng = np.random.default_rng()
        self.prime(prompt_classes, prompt_cond, g, pad=pad)
        done = 0
        while done < n_total:
            if cancel is not None and cancel.is_set():
                log.debug("stream cancelled after %d of %d samples", done, n_total)
                return
            m = min(chunk, n_total - done)
            cond = cond_fn(done, m) if cond_fn is not None else None
            yield self.generate(
                m, temperature=temperature, uniforms=rng, cond=cond, top_k=top_k, top_p=top_p
            )
            done += m


# --------------------------------------------------------------------------------------------
# torch step (GPU with CUDA graphs; MPS / CPU eagerly)
# --------------------------------------------------------------------------------------------


class _TorchStepper:
    """The same cached step in torch over static device buffers.

    On CUDA one step (feed the pending class, run every layer, sample from the uniform of the
    current column, write the class, advance the counters) is captured once per
    (chunk capacity, mode) in a ``torch.cuda.CUDAGraph`` and replayed per sample; the chunk's
    uniforms, conditioning terms and sampled classes live in device buffers indexed by a device
    counter, so a chunk costs one upload, ``n`` replays and one download.
    UNTESTED ON A GPU HERE (no GPU on the development machines); the eager variant of the very
    same code runs in the tests on the CPU.
    """

    def __init__(
        self,
        fw: FastWaveNet,
        tails: list[torch.Tensor],  # per layer [B, R, ql]: column j holds lag ql - j
        pending: np.ndarray,
        take_bias: torch.Tensor,  # [B, L, G]
        t0: int,
    ) -> None:
        self.fw = fw
        lay = fw.layout
        dev = fw.device
        self.B = B = int(pending.shape[0])
        self.float_dtype = torch.float32 if dev.type == "mps" else torch.float64
        self.queues = []
        for i, ql in enumerate(lay.queue_lengths):
            q = torch.zeros(B, lay.residual_channels, ql, device=dev)
            lags = torch.arange(ql, 0, -1)
            slots = (t0 - lags) % ql
            q[:, :, slots.to(dev)] = tails[i]
            self.queues.append(q)
        self.t = torch.tensor([t0], dtype=torch.long, device=dev)
        self.col = torch.zeros(1, dtype=torch.long, device=dev)
        self.pending = torch.as_tensor(pending, dtype=torch.long, device=dev).clone()
        self.take_bias = take_bias.contiguous().clone()
        self.lags = [
            torch.tensor(
                [(lay.kernel_size - 1 - k) * d for k in range(lay.kernel_size - 1)],
                dtype=torch.long,
                device=dev,
            )
            for d in lay.dilations
        ]
        self.qlen = [torch.tensor(ql, dtype=torch.long, device=dev) for ql in lay.queue_lengths]
        self.temperature = torch.ones(1, dtype=torch.float32, device=dev)
        self.cap = 0
        self.graphs: dict[tuple[Any, ...], Any] = {}

    def _alloc(self, n: int) -> None:
        if n <= self.cap:
            return
        lay, dev, B = self.fw.layout, self.fw.device, self.B
        self.cap = n
        self.u_buf = torch.zeros(B, n, dtype=self.float_dtype, device=dev)
        self.force_buf = torch.zeros(B, n, dtype=torch.long, device=dev)
        self.cterm_buf = torch.zeros(B, n, lay.layers, lay.gate_channels, device=dev)
        self.out_buf = torch.zeros(B, n, dtype=torch.long, device=dev)
        self.logit_buf = torch.zeros(B, n, lay.classes, device=dev)
        self.graphs.clear()  # captured graphs refer to the old buffers

    def _body(self, use_cterm: bool, teacher: bool, top_k: int, top_p: float) -> None:
        """One step over the static buffers (graph-capturable: no host sync, no allocation
        that depends on data)."""
        lay, tw = self.fw.layout, self.fw._tw
        H = lay.half
        col = self.col
        x = tw.embed.index_select(0, self.pending)  # [B, R]
        skip = torch.zeros(self.B, lay.skip_channels, device=x.device)
        ct = self.cterm_buf.index_select(1, col)[:, 0] if use_cterm else None  # [B, L, G]
        for i in range(lay.layers):
            q, ql = self.queues[i], self.qlen[i]
            slots = torch.remainder(self.t - self.lags[i], ql)
            taps = q.index_select(2, slots)  # [B, R, K-1] (oldest tap first)
            u = torch.cat([taps, x[:, :, None]], dim=2)  # [B, R, K]
            q.index_copy_(2, torch.remainder(self.t, ql), x[:, :, None])
            a = torch.einsum("brk,grk->bg", u, tw.conv_w[i]) + self.take_bias[:, i]
            if ct is not None:
                a = a + ct[:, i]
            z = torch.tanh(a[:, :H]) * torch.sigmoid(a[:, H:])
            x = (x + z @ tw.res_w[i].T + tw.res_b[i]) * math.sqrt(0.5)
            skip = skip + z @ tw.skip_w[i].T + tw.skip_b[i]
        h = torch.relu(torch.relu(skip) @ tw.out1_w.T + tw.out1_b)
        logits = h @ tw.out2_w.T + tw.out2_b  # [B, C]
        if teacher:
            self.logit_buf.index_copy_(1, col, logits[:, None, :])
            nxt = self.force_buf.index_select(1, col)[:, 0]
        else:
            nxt = self._sample(logits, self.u_buf.index_select(1, col)[:, 0], top_k, top_p)
        self.out_buf.index_copy_(1, col, nxt[:, None])
        self.pending.copy_(nxt)
        self.t.add_(1)
        self.col.add_(1)

    def _sample(
        self, logits: torch.Tensor, u: torch.Tensor, top_k: int, top_p: float
    ) -> torch.Tensor:
        C = logits.shape[1]
        greedy = logits.argmax(dim=1)
        temp = self.temperature
        scaled = (logits - logits.max(dim=1, keepdim=True).values).to(self.float_dtype)
        probs = torch.exp(scaled / torch.clamp(temp, min=1e-30).to(self.float_dtype))
        if top_k > 0 or top_p < 1.0:
            sp, order = torch.sort(probs, dim=1, descending=True, stable=True)
            rank = torch.arange(C, device=logits.device)[None, :]
            keep = torch.ones_like(sp, dtype=torch.bool)
            if 0 < top_k < C:
                keep = keep & (rank < top_k)
            sp = sp * keep
            if top_p < 1.0:
                csum = torch.cumsum(sp, dim=1)
                total = csum[:, -1:]
                # keep r while the mass before it is below top_p * total (always keep rank 0)
                before = csum - sp
                keep = keep & ((before < top_p * total) | (rank == 0))
                sp = sp * keep
            cdf = torch.cumsum(sp, dim=1)
            target = u[:, None] * cdf[:, -1:]
            r = torch.searchsorted(cdf, target, right=True).clamp_(max=C - 1)
            # rounding at the top: fall back to the last kept rank
            last = (keep.long().sum(dim=1, keepdim=True) - 1).clamp_(min=0)
            r = torch.minimum(r, last)
            sampled = order.gather(1, r)[:, 0]
        else:
            cdf = torch.cumsum(probs, dim=1)
            target = u[:, None] * cdf[:, -1:]
            sampled = torch.searchsorted(cdf, target, right=True).clamp_(max=C - 1)[:, 0]
        return torch.where(temp > 0, sampled, greedy)

    def run(
        self,
        n: int,
        *,
        temperature: float,
        uniforms: np.ndarray | None,
        cterm: np.ndarray | None,
        top_k: int,
        top_p: float,
        force: np.ndarray | None,
        out: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray | None]:
        self._alloc(n)
        teacher = force is not None
        with torch.no_grad():
            self.temperature.fill_(temperature)
            self.col.zero_()
            if uniforms is not None:
                self.u_buf[:, :n].copy_(torch.as_tensor(uniforms).to(self.float_dtype))
            if force is not None:
                self.force_buf[:, :n].copy_(torch.as_tensor(force))
            if cterm is not None:
                self.cterm_buf[:, :n].copy_(torch.as_tensor(cterm))
            key = (cterm is not None, teacher, top_k, top_p)
            if self.fw.use_cuda_graph:
                graph = self.graphs.get(key)
                if graph is None:
                    graph = self._capture(key)
                    self.col.zero_()
                for _ in range(n):
                    graph.replay()
            else:
                for _ in range(n):
                    self._body(*key)
            out[:] = self.out_buf[:, :n].cpu().numpy()
            logits = self.logit_buf[:, :n].cpu().numpy().copy() if teacher else None
        return out, logits

    def _capture(self, key: tuple[Any, ...]) -> Any:
        """Capture one step in a CUDA graph; the warm-up runs on a side stream and its effect
        on the state is undone by snapshotting and restoring the mutable buffers."""
        state = [*self.queues, self.t, self.col, self.pending, self.out_buf, self.logit_buf]
        saved = [s.clone() for s in state]
        side = torch.cuda.Stream()  # type: ignore[no-untyped-call]
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(3):
                self._body(*key)
        torch.cuda.current_stream().wait_stream(side)
        for s, v in zip(state, saved, strict=True):
            s.copy_(v)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            self._body(*key)
        # capture does not execute the kernels; the state is as before the warm-up
        for s, v in zip(state, saved, strict=True):
            s.copy_(v)
        self.graphs[key] = graph
        return graph
