"""AudioLM token-LM generation speed, printed as ONE JSON object (issue 4 §8, DESIGN.md §7).

Random weights, batch 1, CPU, ``--threads`` torch threads for ours (default 1: on a shared 2-core
machine a second spinning OpenMP thread makes eager torch several times slower whenever another
process is busy; the fused decode step is single-threaded anyway). What is measured:

- ``ours_tokens_per_s``: ``TokenLM.generate`` with the fused numba decode step
  (``engine/lm_fast.py``) on the peer's configuration -- dim 256, depth 4, 8 heads, vocab 500
  (~3.3 M parameters) -- continuing a 250-token prompt by 250 tokens (prefill included), median
  of ``--reps`` runs. ``ours_torch_tokens_per_s``: the same in eager torch (no fused step);
  ``ours_fp16_weights_tokens_per_s``: the fused step with float16 weight storage (opt-in).
- ``peer_tokens_per_s``: PyPI ``audiolm-pytorch`` 2.4.0 ``SemanticTransformer`` on the identical
  configuration and prompt (its KV cache on; 3.78 M parameters: multi-query attention with
  64-wide heads, GEGLU), run by ``../shared/peers/peer_audiolm.py`` in a subprocess with the
  Python in ``$AUDIOGEN_PEER_PYTHON`` (null, with ``peer_note``, when unset or failing), once
  per ``--peer-threads`` count (default 1, like ours; ``--peer-threads 1 2`` also tries the
  peer's own default of 2, which collapses to a few tokens/s whenever the machine is busy);
  ``peer_tokens_per_s`` is its best. Ours runs before and after the peer
  (``ours_tokens_per_s`` is the median of the two medians), so both sides see the same machine
  load; the load average is reported before and after.
- ``kv_speedup[N]`` (N = 250, 1000, 2000): tokens/s of generating N tokens from a 1-token prompt
  with the KV cache (fused step), over the same without a cache (``generate_uncached``: a full
  forward over the whole context for every token), medians of ``--reps`` rounds that time both
  back to back (``kv_speedup_best``: the fastest rounds). The uncached runs are measured in full
  up to ``--uncached-full-max`` tokens; beyond that the per-token cost is timed at 12 context
  lengths and summed over 1..N by linear interpolation -- ``kv_method`` says which; at 250 both
  are reported, so the estimate can be checked. ``kv_speedup_torch``: the same ratio with the
  eager torch cache; ``kv_speedup_at_context``: one token's cost at context N, uncached/cached.
- ``stages``: per configuration (``--configs``; default just the peer's), parameters, cached
  and uncached tokens/s at each N, and the per-token cost at context N (``step_ms_at``).
- ``rtf`` / ``first_chunk_ms``: end to end for a bundle (``end_to_end``; TODO, null for now).

Run::

    AUDIOGEN_PEER_PYTHON=/tmp/peers/bin/python .venv/bin/python benchmarks/audiolm.py
    .venv/bin/python benchmarks/audiolm.py --configs stages.json   # {"semantic": {LMConfig}, ...}
    .venv/bin/python benchmarks/audiolm.py --configs models/speech  # the LMs of a bundle
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from audiogen_studio.engine.lm_fast import accelerate, decelerate
from audiogen_studio.models.lm import LMConfig, TokenLM

ROOT = Path(__file__).resolve().parents[1]
PEER_SCRIPT = ROOT.parent / "shared" / "peers" / "peer_audiolm.py"
PEER_CONFIG = {"vocab_size": 500, "dim": 256, "depth": 4, "heads": 8, "max_seq_len": 2048}
PROMPT, NEW = 250, 250


def _loadavg() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _median_time(fn: Callable[[], object], reps: int) -> float:
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _model(config: LMConfig, seed: int = 0) -> TokenLM:
    torch.manual_seed(seed)
    return TokenLM(config).eval()


def _prompt(config: LMConfig, length: int, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, config.vocab_size, (1, length), generator=g)


# --- ours ---------------------------------------------------------------------------------------


def ours_tokens_per_s(
    config: LMConfig, *, fused: bool, reps: int, fp16_weights: bool = False
) -> float:
    """Tokens/s continuing a ``PROMPT``-token prompt by ``NEW`` tokens (prefill included)."""
    model = _model(config)
    if fused:
        accelerate(model, fp16_weights=fp16_weights)
    prompt = _prompt(config, PROMPT)
    g = torch.Generator().manual_seed(0)
    model.generate(prompt, 16, generator=g)  # warm-up (and numba's compile or cache load)
    dt = _median_time(lambda: model.generate(prompt, NEW, generator=g), reps)
    return NEW / dt


def _cached_once(model: TokenLM, n: int) -> tuple[float, list[float]]:
    """(seconds to generate ``n`` tokens from a 1-token prompt, seconds of each token)."""
    prompt = _prompt(model.config, 1)
    g = torch.Generator().manual_seed(0)
    stamps: list[float] = []

    def stamp(i: int, ids: torch.Tensor) -> None:
        stamps.append(time.perf_counter())

    t0 = time.perf_counter()
    model.generate(prompt, n, generator=g, on_token=stamp)
    return time.perf_counter() - t0, list(np.diff([t0, *stamps]))


def _uncached_step(model: TokenLM, context: int, reps: int = 3) -> float:
    """Seconds of one uncached token at ``context`` tokens (a forward over all of them)."""
    from audiogen_studio.models.sampling import sample_next

    x = _prompt(model.config, context)
    g = torch.Generator().manual_seed(0)

    def step() -> None:
        sample_next(model(x)[:, -1], generator=g)

    with torch.inference_mode():
        return _median_time(step, reps)


def _uncached_once(model: TokenLM, n: int, full_max: int) -> tuple[float, str]:
    """Seconds to generate ``n`` tokens from a 1-token prompt without a cache, measured in full
    when ``n <= full_max``, else integrated from per-token timings at 12 context lengths."""
    if n <= full_max:
        t0 = time.perf_counter()
        model.generate_uncached(
            _prompt(model.config, 1), n, generator=torch.Generator().manual_seed(0)
        )
        return time.perf_counter() - t0, "measured"
    points = sorted({round(float(c)) for c in np.linspace(1, n, 12)})
    costs = [_uncached_step(model, c, reps=1) for c in points]
    # token i (0-based) runs a forward over i + 1 tokens: sum over contexts 1..n
    total = float(np.interp(np.arange(1, n + 1), points, costs).sum())
    return total, f"integrated from forward timings at {len(points)} context lengths"


def stage_report(
    config: LMConfig, counts: list[int], *, reps: int, full_max: int
) -> dict[str, Any]:
    """Cached (fused and eager torch) and uncached tokens/s of one LM configuration at each
    count: ``reps`` rounds, each timing the three back to back (so a change in the machine's
    load hits all three); medians and bests (fastest round) are reported."""
    model = _model(config)
    keys = ("cached", "cached_torch", "uncached")
    out: dict[str, Any] = {"config": config.to_dict(), "params": model.num_parameters()}
    for k in keys:
        out[f"{k}_tokens_per_s"] = {}
        out[f"{k}_tokens_per_s_best"] = {}
    out["uncached_method"] = {}
    out["step_ms_at"] = {}
    for n in counts:
        if n + 1 > config.max_seq_len:
            continue
        accelerate(model)
        _cached_once(model, 16)  # warm-up (and numba's compile or cache load)
        times: dict[str, list[float]] = {k: [] for k in keys}
        per_token: list[tuple[float, list[float]]] = []
        for _ in range(reps):
            accelerate(model)
            fused = _cached_once(model, n)
            per_token.append(fused)
            times["cached"].append(fused[0])
            decelerate(model)
            times["cached_torch"].append(_cached_once(model, n)[0])
            unc, method = _uncached_once(model, n, full_max)
            times["uncached"].append(unc)
            out["uncached_method"][str(n)] = method
        for k in keys:
            out[f"{k}_tokens_per_s"][str(n)] = round(n / statistics.median(times[k]), 2)
            out[f"{k}_tokens_per_s_best"][str(n)] = round(n / min(times[k]), 2)
        if n == min(counts) and out["uncached_method"][str(n)] == "measured":
            est, _ = _uncached_once(model, n, 0)
            out["uncached_integrated_check_tokens_per_s"] = round(n / est, 2)
        per_token.sort(key=lambda r: r[0])
        tail = per_token[len(per_token) // 2][1][-32:]
        out["step_ms_at"][str(n)] = {
            "cached": round(1e3 * float(np.median(tail)), 3),
            "uncached": round(1e3 * _uncached_step(model, n), 3),
        }
    return out


# --- the peer -----------------------------------------------------------------------------------


def peer_tokens_per_s(threads: int, reps: int) -> tuple[float | None, str, dict[str, Any] | None]:
    """Run ``peer_audiolm.py`` with ``$AUDIOGEN_PEER_PYTHON``: (tokens/s, note, its JSON)."""
    python = os.environ.get("AUDIOGEN_PEER_PYTHON")
    if not python:
        return None, "AUDIOGEN_PEER_PYTHON is not set (a Python with audiolm-pytorch 2.4.0)", None
    if not PEER_SCRIPT.is_file():
        return None, f"{PEER_SCRIPT} not found", None
    cmd = [python, str(PEER_SCRIPT), "--dim", "256", "--depth", "4", "--heads", "8"]
    cmd += ["--vocab", "500", "--tokens", str(NEW), "--prompt", str(PROMPT)]
    cmd += ["--threads", str(threads), "--reps", str(reps)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return None, f"peer failed to run: {exc}", None
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        return None, f"peer exited {proc.returncode}: {' | '.join(tail)}", None
    data = json.loads(lines[-1])
    return float(data["tokens_per_s_median"]), "audiolm-pytorch SemanticTransformer", data


# --- end to end (the lead adds it) --------------------------------------------------------------


def end_to_end(bundle: str | None) -> dict[str, Any]:
    """Real-time factor and time to first audible chunk of an AudioLM bundle (3 s prompt);
    see ``benchmarks/audiolm_end_to_end.py``."""
    sys.path.insert(0, str(Path(__file__).parent))
    from audiolm_end_to_end import end_to_end as run

    return run(bundle)


# --- main -----------------------------------------------------------------------------------------


def _stage_configs(spec: str | None) -> dict[str, LMConfig]:
    """``--configs``: inline JSON, a JSON file ``{stage: LMConfig dict}``, or a bundle folder."""
    if spec is None:
        return {"peer": LMConfig.from_dict(PEER_CONFIG)}
    path = Path(spec)
    if path.is_dir():
        from audiogen_studio.engine.bundles import read_bundle

        info = read_bundle(path)
        found = {
            name.removeprefix("lm_"): LMConfig.from_dict(comp["config"]["lm"])
            for name, comp in info.components.items()
            if isinstance(comp.get("config"), dict) and "lm" in comp["config"]
        }
        if not found:
            raise SystemExit(f"{path}: no LM components in bundle.json")
        return found
    data = json.loads(path.read_text(encoding="utf-8") if path.is_file() else spec)
    return {str(k): LMConfig.from_dict(v) for k, v in data.items()}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--peer-threads", type=int, nargs="+", default=[1])
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--counts", type=int, nargs="+", default=[250, 1000, 2000])
    ap.add_argument("--uncached-full-max", type=int, default=250)
    ap.add_argument(
        "--configs", default=None, help="JSON {stage: LMConfig}, a .json file, or a bundle"
    )
    ap.add_argument(
        "--bundle",
        default="speech",
        help="AudioLM bundle (name or folder) for the end-to-end figures; 'none' skips them",
    )
    ap.add_argument("--no-peer", action="store_true")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    load_before = _loadavg()
    result: dict[str, Any] = {"benchmark": "audiolm-token-lm"}

    peer_cfg = LMConfig.from_dict(PEER_CONFIG)
    ours = ours_tokens_per_s(peer_cfg, fused=True, reps=a.reps)
    peer: float | None = None
    note, peer_json = "skipped (--no-peer)", None
    peer_runs: dict[str, Any] = {}
    for threads in [] if a.no_peer else a.peer_threads:
        tps, note_t, data = peer_tokens_per_s(threads, a.reps)
        peer_runs[str(threads)] = data if data is not None else note_t
        if tps is not None and (peer is None or tps > peer):
            peer, note, peer_json = tps, f"{note_t}, best of threads {a.peer_threads}", data
        elif peer is None:
            note = note_t
    ours_again = ours_tokens_per_s(peer_cfg, fused=True, reps=a.reps)  # after the peer, too
    ours_torch = ours_tokens_per_s(peer_cfg, fused=False, reps=a.reps)
    ours_fp16 = ours_tokens_per_s(peer_cfg, fused=True, reps=a.reps, fp16_weights=True)
    result["ours_tokens_per_s"] = round(statistics.median([ours, ours_again]), 1)
    result["ours_tokens_per_s_before_after_peer"] = [round(ours, 1), round(ours_again, 1)]
    result["ours_torch_tokens_per_s"] = round(ours_torch, 1)
    result["ours_fp16_weights_tokens_per_s"] = round(ours_fp16, 1)
    result["peer_tokens_per_s"] = peer
    result["peer_note"] = note
    result["ours_over_peer"] = round(result["ours_tokens_per_s"] / peer, 2) if peer else None
    result["workload"] = f"batch 1, {PROMPT}-token prompt + {NEW} new tokens, prefill included"
    result["ours_params"] = _model(peer_cfg).num_parameters()
    if peer_json:
        result["peer_params_M"] = peer_json.get("params_M")
    if peer_runs:
        result["peer_runs"] = peer_runs

    stages = {
        name: stage_report(cfg, a.counts, reps=a.reps, full_max=a.uncached_full_max)
        for name, cfg in _stage_configs(a.configs).items()
    }
    if "peer" not in stages:
        stages["peer"] = stage_report(peer_cfg, a.counts, reps=a.reps, full_max=a.uncached_full_max)
    ref = stages["peer"]

    def ratio(kind: str, n: int, best: bool = False) -> float | None:
        suffix = "_best" if best else ""
        c = ref[f"{kind}_tokens_per_s{suffix}"].get(str(n))
        u = ref[f"uncached_tokens_per_s{suffix}"].get(str(n))
        return round(c / u, 1) if c and u else None

    result["kv_speedup"] = {str(n): ratio("cached", n) for n in a.counts}
    result["kv_speedup_best"] = {str(n): ratio("cached", n, best=True) for n in a.counts}
    result["kv_speedup_torch"] = {str(n): ratio("cached_torch", n) for n in a.counts}
    result["kv_speedup_at_context"] = {
        k: round(v["uncached"] / v["cached"], 1) for k, v in ref["step_ms_at"].items()
    }
    result["kv_method"] = {
        "definition": "tokens/s generating N tokens from a 1-token prompt, cached (fused step) "
        "/ uncached (full forward per token), medians of --reps interleaved rounds; _best: "
        "fastest rounds; _at_context: one token's cost at context N",
        "uncached": ref["uncached_method"],
    }
    result["stages"] = stages

    e2e = end_to_end(None if a.bundle == "none" else a.bundle)
    result["rtf"] = e2e.get("rtf")
    result["first_chunk_ms"] = e2e.get("first_chunk_ms")
    if e2e:
        result["end_to_end"] = e2e
    result["threads"] = a.threads
    result["fused_step_threads"] = 1
    result["loadavg_before"] = load_before
    result["loadavg_after"] = _loadavg()
    result["machine"] = {
        "cpu": _cpu_name(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numba": __import__("numba").__version__,
    }
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
