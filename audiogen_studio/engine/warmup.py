"""Warm the generation stack up in the background so the first Generate does not stall the GUI.

The first generation in a process used to freeze the event loop for 0.25-1.2 s
(``benchmarks/app.py``, ``warmup_worst_stall_ms``), although it ran on the generation thread.
Measured with a 2 ms probe in the main thread while each piece ran on a worker (2-core CPU):

- ``import torch``: 1.3-2 s, worst stall ~225 ms. Most of it is ``dlopen`` of
  ``libtorch*.so`` (relocations and C++ static initialisers) inside the import of
  ``torch._C``, which holds the GIL; the rest is a full garbage collection (below).
- numba's first compile or cache load initialises its CPU target (imports of
  ``numba.np.linalg``/``arraymath``/``charseq``, registries of every lowering): ~0.3-0.7 s and
  a ~90-130 ms stall, nearly all of it one generation-2 garbage collection: the imports allocate
  many objects, which triggers full collections over the ~270k objects torch and numba left on
  the heap, and a collection holds the GIL for its whole pass.
- Loading the cached kernels themselves (``cache=True`` in ``engine/wavenet_fast.py`` and
  ``engine/lm_fast.py``) after that: ~35 ms, stall < 10 ms.

So :func:`warm_up` runs, once per process and on the generation thread, shortly after the app
starts: the torch libraries are first ``dlopen``-ed through ctypes (a foreign call that releases
the GIL, so their static initialisers run while the GUI keeps the GIL), then torch, numba and
the engine modules are imported with the collector paused and what they allocated frozen
(:func:`frozen_allocations`: no full collection during the imports, and later ones -- in the GUI
thread too -- never traverse those objects again), numba's CPU target is initialised, and the
WaveNet and LM kernels run once on tiny models (loading them from numba's cache, or compiling
them on the very first run). Between pieces the worker sleeps a few milliseconds so the GUI
thread gets the GIL. What is left is ``torch._C``'s own module initialisation (a few tens of
ms holding the GIL, once, at start-up).

Measured after the change (``nice -n -15`` on the same loaded 2-core box; the GUI probe of
``benchmarks/app.py``): the first Generate's worst stall 8-44 ms with the default-size WaveNet
(148-249 ms without the warm-up), 10-11 ms with the tiny one (168-201 ms), 35 ms with the
shipped AudioLM (295 ms); the first 10 s after the window appears 33-79 ms (537-954 ms before,
when the device probe imported torch unprepared).

No Qt here: the app's :class:`~audiogen_studio.app.generation.GenerationWorker` calls it at
start-up, and the CLI's ``continue`` / ``generate`` / ``vocode`` once the model is loaded, so a
one-off generation's real-time factor measures the generation, not the process start-up (which
the CLI prints beside it).
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import importlib
import importlib.util
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

#: seconds the warm-up sleeps between pieces, so the GUI thread can take the GIL
PAUSE_SECONDS = 0.01
#: the torch libraries loaded before ``import torch`` (Linux), in torch's own order: the global
#: dependencies with RTLD_GLOBAL (as ``torch._load_global_deps`` does), then the C++ library
#: with everything it links; ``libtorch_python`` is left to the import (it is Python-aware)
_TORCH_LIBRARIES = (("libtorch_global_deps.so", True), ("libtorch.so", False))
#: engine modules imported by the warm-up (what loading an engine imports)
ENGINE_MODULES = (
    "audiogen_studio.engine.loader",
    "audiogen_studio.engine.wavenet_fast",
    "audiogen_studio.engine.lm_fast",
    "audiogen_studio.engine.wavenet_pipeline",
    "audiogen_studio.engine.audiolm_pipeline",
)


@dataclass
class WarmUpReport:
    """What :func:`warm_up` did: seconds per piece in order, and whether it ran to the end.

    Attributes:
        steps: ``(piece, seconds)``; pieces already done by an earlier call are absent.
        complete: every piece ran (False when stopped, or when a piece failed).
        errors: ``(piece, message)`` of pieces that failed (the warm-up goes on without them:
            generation then pays for that piece itself, or reports the real error).
    """

    steps: list[tuple[str, float]] = field(default_factory=list)
    complete: bool = False
    errors: list[tuple[str, str]] = field(default_factory=list)

    @property
    def seconds(self) -> float:
        """Total seconds of the pieces that ran."""
        return sum(s for _, s in self.steps)


_lock = threading.Lock()
_done: set[str] = set()


@contextlib.contextmanager
def frozen_allocations() -> Iterator[None]:
    """Run the ``with`` block with the cyclic garbage collector paused, then freeze what it
    allocated (:func:`gc.freeze`) and resume the collector.

    Import-heavy code allocates enough objects to trigger full collections, each a GIL-holding
    pass over the whole heap (~90 ms after torch and numba). Paused, nothing is collected during
    the block; frozen, its objects (modules, classes, functions: they live as long as the
    process) are never traversed again, and resuming does not start a collection of them.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if was_enabled:
            gc.enable()


def _torch_lib_dir() -> Path | None:
    spec = importlib.util.find_spec("torch")
    if spec is None or spec.origin is None:
        return None
    folder = Path(spec.origin).parent / "lib"
    return folder if folder.is_dir() else None


def preload_torch_libraries() -> list[str]:
    """``dlopen`` torch's shared libraries without holding the GIL (Linux; else a no-op).

    ``import torch`` loads the same files (already mapped and initialised then), so it holds
    the GIL for a fraction of the time. Best effort: returns the libraries loaded, and nothing
    when torch is already imported, is not installed, or the platform is not Linux.
    """
    if not sys.platform.startswith("linux") or "torch" in sys.modules:
        return []
    folder = _torch_lib_dir()
    if folder is None:
        return []
    try:
        dlopen = ctypes.CDLL(None).dlopen  # a CDLL call releases the GIL while it runs
    except (OSError, AttributeError):
        return []
    dlopen.restype = ctypes.c_void_p
    dlopen.argtypes = [ctypes.c_char_p, ctypes.c_int]
    loaded = []
    for name, global_symbols in _TORCH_LIBRARIES:
        path = folder / name
        if not path.is_file():
            continue
        flags = os.RTLD_NOW | (os.RTLD_GLOBAL if global_symbols else os.RTLD_LOCAL)
        if not dlopen(os.fsencode(path), flags):
            log.debug("preloading %s failed; import torch will load it", path)
            break
        loaded.append(name)
    return loaded


def _import(*names: str) -> Callable[[], None]:
    def run() -> None:
        with frozen_allocations():
            for name in names:
                importlib.import_module(name)

    return run


def _numba_target() -> None:
    """Initialise numba's CPU target (what its first compile or cache load does)."""
    with frozen_allocations():
        from numba.core.registry import cpu_target

        cpu_target.target_context.refresh()
        cpu_target.typing_context.refresh()


def _wavenet_kernel() -> None:
    """Run the fused WaveNet step (``engine/wavenet_fast.py``) on a tiny model: the kernels the
    engine uses (sampling, with float32 weights and with the float16 storage of bundles shipped
    as float16) are loaded from numba's cache or compiled."""
    import numpy as np
    import torch

    from audiogen_studio.engine.wavenet_fast import FastWaveNet
    from audiogen_studio.models.wavenet import WaveNet, WaveNetConfig

    torch.manual_seed(0)
    config = WaveNetConfig(
        layers=2, stacks=1, residual_channels=16, gate_channels=32, skip_channels=16
    )
    model = WaveNet(config).eval()
    for weights in (np.float32, np.float16):
        fast = FastWaveNet.from_model(model, weight_dtype=weights)
        fast.prime(np.zeros((1, 8), np.int64))
        fast.generate(4, temperature=1.0, uniforms=[np.random.default_rng(0)])


def _lm_kernel() -> None:
    """Run the fused LM decode step (``engine/lm_fast.py``) on a tiny model, with float32 and
    with float16 weight storage (what a bundle shipped as float16 gets)."""
    import torch

    from audiogen_studio.engine.lm_fast import accelerate
    from audiogen_studio.models.checkpoint import round_to_float16_
    from audiogen_studio.models.lm import LMConfig, TokenLM

    torch.manual_seed(0)
    model = TokenLM(LMConfig(vocab_size=16, dim=32, depth=1, heads=2, max_seq_len=32)).eval()
    accelerate(model)
    for _ in range(2):
        with torch.inference_mode():
            cache = model.new_cache(1, 16)
            model.forward_cached(torch.zeros((1, 2), dtype=torch.int64), cache)  # torch prefill
            model.forward_cached(torch.zeros((1, 1), dtype=torch.int64), cache)  # fused step
        round_to_float16_(model)  # the second pass packs float16


def _freeze() -> None:
    # no gc.collect() first: a full pass over this heap is itself a ~150 ms GIL-holding stall;
    # the few cycles already garbage now stay (bytes, once)
    gc.freeze()


#: the pieces in order: ``(name, function)``
STEPS: tuple[tuple[str, Callable[[], object]], ...] = (
    ("torch libraries", preload_torch_libraries),
    ("import torch", _import("torch")),
    ("import numba", _import("numba")),
    ("import engine", _import(*ENGINE_MODULES)),
    ("numba target", _numba_target),
    ("wavenet kernel", _wavenet_kernel),
    ("lm kernel", _lm_kernel),
    ("freeze heap", _freeze),
)


def warm_up(
    stop: threading.Event | None = None,
    *,
    pause: float = PAUSE_SECONDS,
    steps: tuple[tuple[str, Callable[[], object]], ...] = STEPS,
) -> WarmUpReport:
    """Run the warm-up pieces that have not run yet in this process (see the module doc).

    Args:
        stop: checked between pieces; when set, the warm-up returns early (``complete=False``)
            and a later call runs what is left.
        pause: seconds to sleep after each piece (the GIL goes to other threads meanwhile).
        steps: the pieces (tests pass their own).

    Thread-safe: concurrent calls run each piece once. A piece that raises is logged, reported
    in :attr:`WarmUpReport.errors` and not retried.
    """
    report = WarmUpReport()
    with _lock:
        for name, run in steps:
            if stop is not None and stop.is_set():
                return report
            if name in _done:
                continue
            started = time.perf_counter()
            try:
                run()
            except Exception as exc:  # a warm-up must never break the app
                log.warning("warm-up step %r failed: %s", name, exc)
                report.errors.append((name, f"{type(exc).__name__}: {exc}"))
            _done.add(name)
            report.steps.append((name, time.perf_counter() - started))
            if pause > 0:
                time.sleep(pause)
    report.complete = not report.errors
    log.info(
        "warm-up: %s",
        ", ".join(f"{name} {seconds * 1000:.0f} ms" for name, seconds in report.steps) or "done",
    )
    return report


def is_warm(steps: tuple[tuple[str, Callable[[], object]], ...] = STEPS) -> bool:
    """True when every piece has run in this process."""
    return all(name in _done for name, _ in steps)
