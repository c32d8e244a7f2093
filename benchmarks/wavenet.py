"""WaveNet generation speed, printed as one JSON object (issue 3 §6, DESIGN.md §7).

For the peer's configuration (``peer``: 20 layers, 2 stacks, 64/128/64, kernel 3, 256 classes)
and the shipped ``default`` (models/wavenet.py ``NAMED_CONFIGS``), with random weights:

- ``fast_*``: the numba step of ``engine/wavenet_fast.py`` (1 take, and 4 batched takes), with
  float32 weights (the path tested to 1e-4 against the model) and, under ``"fp16"``, float16
  weight storage (float32 math);
- ``torch_incremental_samples_per_s``: the model's own ``prime`` + ``step`` in eager torch;
- ``naive_samples_per_s``: the full forward over the last receptive field for every new sample;
- ``peer_samples_per_s``: r9y9 ``wavenet_vocoder`` 0.1.1 ``incremental_forward`` on the identical
  configuration, run by ``../shared/peers/peer_wavenet.py`` in a subprocess (null with
  ``peer_error`` when the package is not installed);
- ``floor_us_per_sample``: one matrix-vector pass over all the weights the step reads, same
  storage dtype: the fastest of the kernel's own matvec over rows of 64/192/1024 and (float32)
  numpy's BLAS ``sgemv`` -- the cost of streaming every weight once, with no other work.

Every timing is the median of ``--reps`` runs; the machine is shared, so the load average is
reported before and after. Run::

    .venv/bin/python benchmarks/wavenet.py [--samples 4000] [--reps 5] [--configs peer default]

The peer: ``.venv/bin/pip install --no-deps --target .peers/site wavenet_vocoder==0.1.1`` (its
only run-time needs, numpy and torch, are ours) is found at ``.peers/site``; or set
``AUDIOGEN_PEER_PATH`` (a directory put on ``PYTHONPATH``) or ``AUDIOGEN_PEER_PYTHON`` (a Python
that imports ``wavenet_vocoder``, e.g. ``.peers/bin/python`` of a separate venv).
"""

from __future__ import annotations

import os

# The floor is a single-core figure like the fast path: keep numpy's BLAS on one thread.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import json
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch

from audiogen_studio.engine.wavenet_fast import FastWaveNet, _blocked, _floor_kernel
from audiogen_studio.models.wavenet import NAMED_CONFIGS, WaveNet, WaveNetConfig, count_parameters

ROOT = Path(__file__).resolve().parents[1]


def _median_time(fn: Callable[[], object], reps: int) -> float:
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


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


# --- our paths ----------------------------------------------------------------------------------


def _fast(
    model: WaveNet, dtype: Any, samples: int, reps: int, prompt: np.ndarray
) -> dict[str, Any]:
    fast = FastWaveNet.from_model(model, weight_dtype=dtype)
    out: dict[str, Any] = {"weight_bytes": fast.weight_bytes}
    per_step: dict[int, float] = {}
    for batch in (1, 4):
        fast.prime(np.repeat(prompt, batch, axis=0))
        fast.generate(200, uniforms=np.random.default_rng(0))  # warm caches and the JIT
        rng = np.random.default_rng(1)
        dt = _median_time(partial(fast.generate, samples, uniforms=rng), reps)
        per_step[batch] = dt / samples
    out["fast_samples_per_s"] = round(1.0 / per_step[1], 1)
    out["fast_us_per_sample"] = round(per_step[1] * 1e6, 2)
    out["batch4_us_per_step"] = round(per_step[4] * 1e6, 2)
    out["batch4_over_batch1"] = round(per_step[4] / per_step[1], 3)
    out["rtf_16k"] = round(16000 * per_step[1], 4)
    floor = _floor(fast.weight_bytes // (2 if np.dtype(dtype) == np.float16 else 4), dtype)
    out["floor_us_per_sample"] = floor["us"]
    out["floor_method"] = floor["method"]
    out["fast_over_floor"] = round(per_step[1] * 1e6 / floor["us"], 3)
    return out


def _floor(params: int, dtype: Any) -> dict[str, Any]:
    """Fastest single pass over ``params`` weights of ``dtype``: the kernel's own matvec over a
    matrix of that many weights (rows of 64, 192 or 1024), or, for float32, numpy's sgemv."""
    fp16 = np.dtype(dtype) == np.float16
    rng = np.random.default_rng(0)
    best = (float("inf"), "")
    reps = 200
    for cols in (64, 192, 1024):
        rows = max(16, params // cols // 16 * 16)
        w = (rng.random((rows, cols), dtype=np.float32) - 0.5).astype(np.float32)
        wk = _blocked(np.ascontiguousarray(w.astype(np.float16).view(np.uint16)) if fp16 else w)
        u = rng.random((1, cols), dtype=np.float32)
        out = np.empty((1, rows), np.float32)
        _floor_kernel(wk, cols, u, out, 2)
        run = lambda wk=wk, c=cols, u=u, out=out: _floor_kernel(wk, c, u, out, reps)  # noqa: E731
        per = _median_time(run, 5)
        per = per / reps * params / (rows * cols)
        if per < best[0]:
            best = (per, f"kernel matvec, rows of {cols}")
        if not fp16:
            v = u[0]
            o = np.empty(rows, np.float32)

            def blas(w: np.ndarray = w, v: np.ndarray = v, o: np.ndarray = o) -> None:
                for _ in range(reps):
                    np.dot(w, v, out=o)

            per = _median_time(blas, 5) / reps * params / (rows * cols)
            if per < best[0]:
                best = (per, f"numpy sgemv, rows of {cols}")
    return {"us": round(best[0] * 1e6, 2), "method": best[1]}


def _cuda(model: WaveNet, prompt: np.ndarray, samples: int) -> dict[str, Any] | None:
    """The CUDA-graph path, when a GPU is present (never run on the development machines)."""
    if not torch.cuda.is_available():
        return None
    out: dict[str, Any] = {"device": torch.cuda.get_device_name()}
    try:
        fast = FastWaveNet.from_model(model, device="cuda")
        for batch in (1, 4):
            fast.prime(np.repeat(prompt, batch, axis=0))
            fast.generate(100, uniforms=np.random.default_rng(0))  # captures the graph
            rng = np.random.default_rng(1)
            dt = _median_time(partial(fast.generate, samples, uniforms=rng), 3)
            out[f"batch{batch}_samples_per_s"] = round(samples / dt, 1)
    except Exception as exc:  # report, do not hide, a failure of the untested path
        out["error"] = f"{type(exc).__name__}: {exc}"
    return out


def _sample_torch(logits: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    return torch.multinomial(torch.softmax(logits, dim=-1), 1, generator=gen)[:, 0]


@torch.no_grad()
def _torch_incremental(model: WaveNet, prompt: np.ndarray, samples: int, reps: int) -> float:
    x = torch.as_tensor(prompt)
    gen = torch.Generator().manual_seed(0)

    def run() -> None:
        state = model.prime(x[:, :-1])
        x_t = x[:, -1]
        for _ in range(samples):
            x_t = _sample_torch(model.step(x_t, state), gen)

    run()
    return samples / _median_time(run, reps)


@torch.no_grad()
def _naive(model: WaveNet, prompt: np.ndarray, samples: int, reps: int) -> float:
    rf = model.config.receptive_field
    gen = torch.Generator().manual_seed(0)

    def run() -> None:
        x = torch.as_tensor(prompt)
        for _ in range(samples):
            logits = model(x[:, -rf:], output_from=min(rf, x.shape[1]) - 1)[:, :, -1]
            x = torch.cat([x, _sample_torch(logits, gen)[:, None]], dim=1)

    run()
    return samples / _median_time(run, reps)


def _compile_latency() -> dict[str, Any]:
    """First-call latency of a fresh process: cold (empty numba cache) and cached."""
    code = (
        "import time; t0 = time.perf_counter()\n"
        "import numpy as np, torch\n"
        "from audiogen_studio.engine.wavenet_fast import FastWaveNet\n"
        "from audiogen_studio.models.wavenet import NAMED_CONFIGS, WaveNet\n"
        "t1 = time.perf_counter()\n"
        "for dt in (np.float32, np.float16):\n"
        "    f = FastWaveNet.from_model(WaveNet(NAMED_CONFIGS['tiny']), weight_dtype=dt)\n"
        "    f.prime(np.zeros((1, 8), np.int64)); f.generate(4)\n"
        "print(time.perf_counter() - t1, t1 - t0)\n"
    )
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache)
        for key in ("cold_s", "cached_s"):
            res = subprocess.run(
                [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600
            )
            if res.returncode:
                return {"error": res.stderr.strip()[-500:]}
            first, imports = (float(v) for v in res.stdout.split())
            out[key] = round(first, 3)
            out["import_s"] = round(imports, 3)
    out["note"] = "first prime+generate (fp32 and fp16 kernels) in a fresh process, after imports"
    return out


# --- the peer -----------------------------------------------------------------------------------


def _peer(
    cfg: WaveNetConfig, samples: int, threads: int
) -> tuple[float | None, str | None, dict[str, Any] | None]:
    script = os.environ.get("AUDIOGEN_PEER_SCRIPT")
    candidates = [script] if script else []
    candidates += [
        str(ROOT.parent / "shared/peers/peer_wavenet.py"),
        "/work/shared/peers/peer_wavenet.py",
    ]
    script = next((s for s in candidates if s and Path(s).is_file()), None)
    if script is None:
        return None, "peer script peer_wavenet.py not found (set AUDIOGEN_PEER_SCRIPT)", None
    python = os.environ.get("AUDIOGEN_PEER_PYTHON")
    if not python and (ROOT / ".peers/bin/python").exists():
        python = str(ROOT / ".peers/bin/python")
    python = python or sys.executable
    env = dict(os.environ)
    extra = [os.environ.get("AUDIOGEN_PEER_PATH", ""), str(ROOT / ".peers/site")]
    env["PYTHONPATH"] = os.pathsep.join(
        [p for p in extra if p and Path(p).is_dir()] + [env.get("PYTHONPATH", "")]
    ).strip(os.pathsep)
    if cfg.kernel_size != 3 or cfg.classes != 256:
        return None, "the peer script supports kernel 3 and 256 classes only", None
    cmd = [
        python, script, "--samples", str(samples), "--layers", str(cfg.layers),
        "--stacks", str(cfg.stacks), "--res", str(cfg.residual_channels),
        "--gate", str(cfg.gate_channels), "--skip", str(cfg.skip_channels), "--reps", "3",
        "--threads", str(threads),
    ]  # fmt: skip
    try:
        res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return None, f"peer run failed: {exc}", None
    if res.returncode:
        tail = res.stderr.strip().splitlines()[-1:] or ["?"]
        return None, f"peer not available ({tail[0]})", None
    info = json.loads(res.stdout.strip().splitlines()[-1])
    return float(info["samples_per_s_median"]), None, info


# --- main ---------------------------------------------------------------------------------------


def bench_config(name: str, cfg: WaveNetConfig, args: argparse.Namespace) -> dict[str, Any]:
    torch.manual_seed(0)
    model = WaveNet(cfg).eval()
    rf = cfg.receptive_field
    prompt = np.random.default_rng(0).integers(0, cfg.classes, size=(1, rf + 1)).astype(np.int64)
    res: dict[str, Any] = {
        "receptive_field": rf,
        "params": count_parameters(model),
        "macs_per_sample": sum(
            p.numel() for n, p in model.named_parameters() if n.endswith("weight")
        )
        - model.embed.weight.numel(),
    }
    fp32 = _fast(model, np.float32, args.samples, args.reps, prompt)
    fp16 = _fast(model, np.float16, args.samples, args.reps, prompt)
    res.update(fp32)
    res["fp16"] = fp16
    res["cuda"] = _cuda(model, prompt, args.samples)
    res["torch_incremental_samples_per_s"] = round(
        _torch_incremental(model, prompt, args.torch_samples, 3), 1
    )
    res["naive_samples_per_s"] = round(_naive(model, prompt, args.naive_samples, 3), 3)
    peer: float | None = None
    err: str | None = "skipped (--no-peer)"
    info: dict[str, Any] | None = None
    if not args.no_peer:
        peer, err, info = _peer(cfg, args.peer_samples, args.torch_threads)
    res["peer_samples_per_s"] = peer
    if err:
        res["peer_error"] = err
    if info:
        res["peer_info"] = {
            k: info[k] for k in ("wavenet_vocoder", "torch", "params_M", "threads", "loadavg_1m")
        }
    best = max(fp32["fast_samples_per_s"], fp16["fast_samples_per_s"])
    res["fast_over_naive"] = round(fp32["fast_samples_per_s"] / res["naive_samples_per_s"], 1)
    res["torch_incremental_over_naive"] = round(
        res["torch_incremental_samples_per_s"] / res["naive_samples_per_s"], 1
    )
    res["fast_over_torch_incremental"] = round(
        fp32["fast_samples_per_s"] / res["torch_incremental_samples_per_s"], 1
    )
    if peer:
        res["fast_over_peer"] = round(fp32["fast_samples_per_s"] / peer, 1)
        res["fast_fp16_over_peer"] = round(fp16["fast_samples_per_s"] / peer, 1)
    res["targets"] = {
        "fast_ge_15x_peer": None if not peer else best >= 15 * peer,
        "fast_le_2x_floor": fp32["fast_over_floor"] <= 2 and fp16["fast_over_floor"] <= 2,
        "cached_ge_100x_naive_at_rf_ge_2047": (
            None if rf < 2047 else res["fast_over_naive"] >= 100
        ),
        "batch4_le_2x_batch1": min(fp32["batch4_over_batch1"], fp16["batch4_over_batch1"]) <= 2,
        "real_time_16k": best >= 16000,
    }
    del name
    return res


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--configs", nargs="+", default=["peer", "default"])
    parser.add_argument("--samples", type=int, default=4000, help="fast-path samples per run")
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--torch-samples", type=int, default=400)
    parser.add_argument("--naive-samples", type=int, default=4)
    parser.add_argument("--peer-samples", type=int, default=2000)
    parser.add_argument("--no-peer", action="store_true")
    parser.add_argument("--no-compile", action="store_true", help="skip the JIT latency runs")
    parser.add_argument(
        "--torch-threads",
        type=int,
        default=1,
        help="intra-op threads of our torch paths and of the peer (the fast path uses one core)",
    )
    args = parser.parse_args()
    torch.set_num_threads(args.torch_threads)

    load_before = _loadavg()
    result: dict[str, Any] = {"configs": {}}
    for name in args.configs:
        result["configs"][name] = bench_config(name, NAMED_CONFIGS[name], args)
    if not args.no_compile:
        result["compile"] = _compile_latency()
    import numba

    result["machine"] = {
        "cpu": _cpu_name(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "numba": numba.__version__,
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "fast_path_threads": 1,
    }
    result["loadavg"] = {"before": load_before, "after": _loadavg()}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
