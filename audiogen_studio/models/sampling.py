"""Next-token sampling for the token LMs: temperature, top-k, nucleus (top-p), allowed ids, seed.

AudioLM (Borsos et al. 2022, §4.3 and §5) samples every stage autoregressively with temperature
sampling; top-k (Fan et al. 2018) and nucleus sampling (Holtzman et al. 2020, "The Curious Case
of Neural Text Degeneration", §3.1) are the usual truncations. Order of operations, for logits
``[B, V]``:

1. **allowed**: restrict to the ids a step may produce -- a ``(lo, hi)`` range (only
   ``logits[:, lo:hi]`` is looked at, the sampled index is shifted back by ``lo``) or a ``[V]`` /
   ``[B, V]`` bool mask (``False`` → ``-inf``). The AudioLM coarse and fine stages use it to keep
   each step inside one quantizer's id range.
2. **temperature**: ``0`` → greedy ``argmax`` (deterministic, no random draw); otherwise
   ``logits / temperature``.
3. **top-k**: keep the ``k`` largest (exactly ``k``, ties broken by :func:`torch.topk`).
4. **top-p**: of what is left, sorted by probability, keep the smallest prefix whose mass reaches
   ``p`` (the most likely id is always kept).
5. draw one id per row with :func:`torch.multinomial` from the given ``torch.Generator`` -- one
   generator for the whole batch, or one per row so a take is reproducible alone or batched.

Every function is pure (no global RNG) and works on any device; a generator on another device
than the logits gets the probabilities moved to its device for the draw.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

__all__ = ["AllowedSpec", "check_sampling", "filter_logits", "sample_next"]

#: What a step may produce: everything (``None``), ids ``lo <= id < hi``, or a bool mask
#: ``[V]`` / ``[B, V]`` (``True`` = allowed).
AllowedSpec = tuple[int, int] | torch.Tensor | None

Generators = torch.Generator | Sequence[torch.Generator] | None


def check_sampling(
    temperature: float, top_k: int | None, top_p: float | None, vocab: int | None = None
) -> None:
    """Raise ``ValueError`` for a negative temperature, ``top_k < 1`` or ``top_p`` not in (0, 1]."""
    if not temperature >= 0.0:  # also rejects NaN
        raise ValueError(f"temperature must be >= 0, got {temperature!r}")
    if top_k is not None and (isinstance(top_k, bool) or int(top_k) != top_k or top_k < 1):
        raise ValueError(f"top_k must be a positive integer or None, got {top_k!r}")
    if top_p is not None and not 0.0 < top_p <= 1.0:
        raise ValueError(f"top_p must be within (0, 1] or None, got {top_p!r}")
    if vocab is not None and vocab < 1:
        raise ValueError(f"vocabulary must be non-empty, got {vocab}")


def _restrict(logits: torch.Tensor, allowed: AllowedSpec) -> tuple[torch.Tensor, int]:
    """``(logits to sample from, id offset)`` after applying ``allowed``."""
    if allowed is None:
        return logits, 0
    vocab = logits.shape[-1]
    if isinstance(allowed, torch.Tensor):
        if allowed.dtype != torch.bool or allowed.shape[-1] != vocab or allowed.dim() > 2:
            raise ValueError(
                f"an allowed mask must be a bool tensor [V] or [B, V] with V = {vocab}, "
                f"got {allowed.dtype} {list(allowed.shape)}"
            )
        mask = allowed.to(logits.device)
        return logits.masked_fill(~mask, float("-inf")), 0
    lo, hi = (int(v) for v in allowed)
    if not 0 <= lo < hi <= vocab:
        raise ValueError(f"allowed id range [{lo}, {hi}) is empty or outside [0, {vocab})")
    return logits[..., lo:hi], lo


def filter_logits(
    logits: torch.Tensor,
    *,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    allowed: AllowedSpec = None,
) -> torch.Tensor:
    """Logits ``[B, V]`` → float32 logits ``[B, V]`` with ``-inf`` at every id that cannot be
    sampled, divided by ``temperature`` (``temperature == 0`` leaves only the argmax finite).

    ``softmax`` of the result is exactly the distribution :func:`sample_next` draws from.
    """
    check_sampling(temperature, top_k, top_p, logits.shape[-1])
    x = logits.float()
    if allowed is not None:
        sub, lo = _restrict(x, allowed)
        if lo or sub.shape[-1] != x.shape[-1]:
            full = torch.full_like(x, float("-inf"))
            full[..., lo : lo + sub.shape[-1]] = sub
            x = full
        else:
            x = sub
    if temperature == 0.0:
        keep = torch.zeros_like(x, dtype=torch.bool)
        keep.scatter_(-1, x.argmax(-1, keepdim=True), True)
        return x.masked_fill(~keep, float("-inf"))
    x = x / temperature
    if top_k is None and (top_p is None or top_p >= 1.0):
        return x
    values, index = _truncate(x, top_k, top_p)
    out = torch.full_like(x, float("-inf"))
    out.scatter_(-1, index, values)
    return out


def _truncate(
    x: torch.Tensor, top_k: int | None, top_p: float | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sorted ``(values, ids)`` ``[B, k]`` of the top-k / nucleus set; dropped entries -inf."""
    k = x.shape[-1] if top_k is None else min(int(top_k), x.shape[-1])
    values, index = torch.topk(x, k, dim=-1, sorted=True)
    if top_p is not None and top_p < 1.0:
        probs = torch.softmax(values, dim=-1)
        before = probs.cumsum(-1) - probs  # mass of strictly more likely ids
        values = values.masked_fill(before >= top_p, float("-inf"))  # keeps index 0 always
    return values, index


def _draw(probs: torch.Tensor, generator: Generators) -> torch.Tensor:
    """One index per row of ``probs [B, n]`` → ``[B]`` (on ``probs.device``)."""
    if generator is None or isinstance(generator, torch.Generator):
        p = probs
        if generator is not None and generator.device != probs.device:
            p = probs.to(generator.device)
        return torch.multinomial(p, 1, generator=generator)[:, 0].to(probs.device)
    gens = list(generator)
    if len(gens) != probs.shape[0]:
        raise ValueError(f"{len(gens)} generators for a batch of {probs.shape[0]}")
    rows = [_draw(probs[i : i + 1], g) for i, g in enumerate(gens)]
    return torch.cat(rows)


def sample_next(
    logits: torch.Tensor,
    *,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    generator: Generators = None,
    allowed: AllowedSpec = None,
) -> torch.Tensor:
    """Draw the next id of every row: logits ``[B, V]`` → ``LongTensor [B]``.

    Args:
        logits: unnormalised scores (any float dtype; computed in float32).
        temperature: ``0`` = greedy argmax; ``1`` = the model's distribution.
        top_k: keep only the ``k`` most likely ids (``None`` = all).
        top_p: nucleus mass in ``(0, 1]`` (``None`` or ``1`` = no truncation).
        generator: ``torch.Generator`` for the whole batch, or one per row (reproducible per
            take); ``None`` uses torch's global RNG.
        allowed: ``(lo, hi)`` id range, ``[V]`` / ``[B, V]`` bool mask, or ``None``.

    Raises:
        ValueError: bad sampling parameters, an empty/invalid ``allowed``, or a row whose
            allowed set has no finite logit.
    """
    if logits.dim() != 2:
        raise ValueError(f"logits must be [B, V], got {list(logits.shape)}")
    check_sampling(temperature, top_k, top_p, logits.shape[-1])
    x, offset = _restrict(logits, allowed)
    x = x.float()
    if temperature == 0.0:
        ids = x.argmax(-1)
    else:
        if temperature != 1.0:
            x = x / temperature
        if top_k is None and (top_p is None or top_p >= 1.0):
            probs = torch.softmax(x, dim=-1)
            ids = _draw(_checked(probs), generator)
        else:
            values, index = _truncate(x, top_k, top_p)
            probs = torch.softmax(values, dim=-1)
            ids = index.gather(-1, _draw(_checked(probs), generator)[:, None])[:, 0]
    return ids + offset if offset else ids


def _checked(probs: torch.Tensor) -> torch.Tensor:
    # softmax of an all -inf row is NaN; multinomial would raise an opaque RuntimeError
    if probs.device.type == "cpu" and bool(torch.isnan(probs[:, 0]).any()):
        raise ValueError("no allowed id has a finite logit")
    return probs
