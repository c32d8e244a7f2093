"""One generated token of each LM of an AudioLM bundle, side by side, printed as ONE JSON object.

What the fused CPU decode step (``engine/lm_fast.py``) costs per call on the bundle's own LMs
(``--bundle``, default the shipped ``music``), in three ways, measured in interleaved rounds on
one machine so that the ratios compare like with like:

- ``full_fp32``: every logit of the vocabulary, weights streamed as float32 (how the step ran
  before the two savings below);
- ``rows_fp32``: only the logits of the id range the stage samples from (one quantizer's
  ``codebook_size`` ids for the coarse and fine stages; the semantic stage samples from its
  whole vocabulary, so there it equals ``full``);
- ``rows_auto``: the same with the weight storage the engine picks: float16 when the bundle's
  weights hold float16 values (a bundle shipped as float16), which is lossless.

Each stage runs at the batch it decodes with one take (the coarse stage: 2, the conditional and
unconditional rows of its classifier-free guidance when the bundle sets ``coarse_guidance``) and
from several cache lengths (``--contexts``, clipped to fit the LM's ``max_seq_len``). Figures are
the median over ``--rounds`` rounds of the mean of ``--steps`` consecutive calls, in ms, and
``speedup`` = ``full_fp32 / rows_auto`` per stage and context.

``feed``: per coarse and fine stage, the ids it feeds before each sampled one (the last sampled
id and the given ones: a semantic token, or a frame's coarse codes) in ONE fused call, as the
engine does, against one call per id, from a cache of 200.

``exp``: nanoseconds per element of the kernel's libm-free ``exp`` (used in the attention
softmax and SiLU) against ``np.exp`` in the same numba loop.

Run::

    .venv/bin/python benchmarks/lm_step.py                    # the shipped music bundle
    .venv/bin/python benchmarks/lm_step.py --bundle speech --contexts 100 300
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from typing import Any

import numba
import numpy as np
import torch
from audiolm import _cpu_name  # benchmarks/ is on the path when this script runs

from audiogen_studio.engine.audiolm_pipeline import AudioLMEngine
from audiogen_studio.engine.bundles import find_bundle
from audiogen_studio.engine.lm_fast import FusedDecoder, _exp_neg

VARIANTS = ("full_fp32", "rows_fp32", "rows_auto")


def _span(engine: AudioLMEngine, stage: str) -> tuple[int, int] | None:
    layout = engine.layout
    if stage == "coarse":
        return layout.coarse_range(0)
    if stage == "fine":
        return layout.fine_range(0)
    return None


def _time_calls(
    decoder: FusedDecoder, cache: Any, context: int, rows: tuple[int, int] | None, steps: int
) -> float:
    """Mean seconds of ``steps`` consecutive one-token calls from cache length ``context``."""
    tokens = torch.zeros(cache.batch, 1, dtype=torch.long)
    cache.length = context
    decoder(tokens, cache, rows)  # a new decode run: packs (once) and mirrors the keys
    started = time.perf_counter()
    for _ in range(steps):
        decoder(tokens, cache, rows)
    return (time.perf_counter() - started) / steps


def stage_steps(
    engine: AudioLMEngine, contexts: list[int], rounds: int, steps: int
) -> dict[str, Any]:
    """Per stage and context: milliseconds per call of each variant, and the speedup."""
    out: dict[str, Any] = {}
    for name, stage in engine.stages.items():
        model = stage.model
        batch = 2 if name == "coarse" and engine.coarse_guidance != 1.0 else 1
        span = _span(engine, name)
        decoders = {
            "full_fp32": (FusedDecoder(model, fp16_weights=False), None),
            "rows_fp32": (FusedDecoder(model, fp16_weights=False), span),
            "rows_auto": (FusedDecoder(model, fp16_weights=None), span),
        }
        per: dict[str, Any] = {
            "batch": batch,
            "vocab": model.config.vocab_size,
            "rows": None if span is None else list(span),
        }
        for context in contexts:
            context = min(context, model.config.max_seq_len - steps - 1)
            cache = model.new_cache(batch)
            with torch.inference_mode():
                model.forward_cached(torch.zeros(batch, context, dtype=torch.long), cache)
                times: dict[str, list[float]] = {v: [] for v in VARIANTS}
                for _ in range(rounds):
                    for variant in VARIANTS:
                        decoder, rows = decoders[variant]
                        times[variant].append(_time_calls(decoder, cache, context, rows, steps))
            ms = {v: round(1000 * statistics.median(t), 4) for v, t in times.items()}
            per[f"context_{context}"] = {
                **{f"{v}_ms": ms[v] for v in VARIANTS},
                "speedup": round(ms["full_fp32"] / ms["rows_auto"], 3),
            }
        per["fp16_storage"] = decoders["rows_auto"][0].packed_fp16
        out[name] = per
    return out


def _fed_ids(engine: AudioLMEngine, stage: str) -> int:
    """Ids a stage feeds in one call before it samples: the last sampled id and the given ones
    (coarse: a semantic token; fine: a frame's coarse codes)."""
    layout = engine.layout
    return {"coarse": 2, "fine": layout.coarse_quantizers + 1}.get(stage, 1)


def _time_feed(
    decoder: FusedDecoder,
    cache: Any,
    context: int,
    t: int,
    span: tuple[int, int] | None,
    together: bool,
    steps: int,
) -> float:
    """Mean seconds to feed ``t`` ids per row and get the last one's logits within ``span``,
    from cache length ``context``: in one call (``together``) or in ``t`` one-token calls (the
    fed ones projecting onto one output row, as the engine did)."""
    tokens = torch.zeros(cache.batch, t, dtype=torch.long)
    cache.length = context
    decoder(tokens[:, :1], cache, None)  # a new decode run: packs and mirrors the keys
    started = time.perf_counter()
    for _ in range(steps):  # the cache grows by t per step, alike both ways
        if together:
            decoder(tokens, cache, span)
        else:
            for i in range(t - 1):
                decoder(tokens[:, i : i + 1], cache, (0, 1))
            decoder(tokens[:, t - 1 :], cache, span)
    return (time.perf_counter() - started) / steps


def feed_costs(engine: AudioLMEngine, context: int, rounds: int, steps: int) -> dict[str, Any]:
    """Per coarse and fine stage: ms to feed its given ids before a sampled one in one fused
    call (``together_ms``, how the engine runs) against one call per id (``one_by_one_ms``,
    how it ran before), and their ratio."""
    out: dict[str, Any] = {}
    for name, stage in engine.stages.items():
        t = _fed_ids(engine, name)
        if t < 2:
            continue
        model = stage.model
        batch = 2 if name == "coarse" and engine.coarse_guidance != 1.0 else 1
        start = min(context, model.config.max_seq_len - steps * t - 2)
        decoder = FusedDecoder(model)
        span = _span(engine, name)
        cache = model.new_cache(batch)
        with torch.inference_mode():
            model.forward_cached(torch.zeros(batch, start, dtype=torch.long), cache)
            times: dict[str, list[float]] = {"together": [], "one_by_one": []}
            for _ in range(rounds):
                for key in times:
                    times[key].append(
                        _time_feed(decoder, cache, start, t, span, key == "together", steps)
                    )
        ms = {k: round(1000 * statistics.median(v), 4) for k, v in times.items()}
        out[name] = {
            "ids": t,
            "batch": batch,
            "context": start,
            "together_ms": ms["together"],
            "one_by_one_ms": ms["one_by_one"],
            "speedup": round(ms["one_by_one"] / ms["together"], 3),
        }
    return out


@numba.njit(fastmath=True, cache=True)
def _ours(x: Any, out: Any, reps: int) -> None:
    for _ in range(reps):
        for i in range(x.size):
            out[i] = _exp_neg(x[i])


@numba.njit(fastmath=True, cache=True)
def _libm(x: Any, out: Any, reps: int) -> None:
    for _ in range(reps):
        for i in range(x.size):
            out[i] = np.exp(x[i])


def exp_cost(rounds: int) -> dict[str, float]:
    """Nanoseconds per element of the kernel's exp and of libm's, on 400 softmax-like inputs."""
    x = -np.abs(np.random.default_rng(0).standard_normal(400).astype(np.float32)) * 5
    out = np.empty_like(x)
    reps = 2000
    _ours(x, out, 1)
    _libm(x, out, 1)
    result: dict[str, list[float]] = {"ours_ns": [], "libm_ns": []}
    for _ in range(rounds):
        for key, fn in (("ours_ns", _ours), ("libm_ns", _libm)):
            started = time.perf_counter()
            fn(x, out, reps)
            result[key].append(1e9 * (time.perf_counter() - started) / (reps * x.size))
    ours, libm = statistics.median(result["ours_ns"]), statistics.median(result["libm_ns"])
    return {"ours_ns": round(ours, 3), "libm_ns": round(libm, 3), "speedup": round(libm / ours, 2)}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bundle", default="music", help="AudioLM bundle folder or name")
    ap.add_argument("--contexts", type=int, nargs="+", default=[50, 200, 350])
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    if args.steps < 1 or args.rounds < 1:
        ap.error("--steps and --rounds must be at least 1")
    torch.set_num_threads(args.threads)
    engine = AudioLMEngine.from_bundle(find_bundle(args.bundle), device="cpu")
    load_before = [round(x, 2) for x in os.getloadavg()]
    stages = stage_steps(engine, args.contexts, args.rounds, args.steps)
    report = {
        "benchmark": "lm_step",
        "bundle": args.bundle,
        "machine": {
            "cpu": _cpu_name(),
            "cpus": os.cpu_count(),
            "threads": args.threads,
            "loadavg_1m_before": load_before[0],
            "loadavg_1m_after": round(os.getloadavg()[0], 2),
        },
        "settings": {"contexts": args.contexts, "rounds": args.rounds, "steps": args.steps},
        "stages": stages,
        "feed": feed_costs(engine, 200, args.rounds, args.steps),
        "exp": exp_cost(args.rounds),
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
