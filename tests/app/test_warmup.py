"""The start-up warm-up: it loads exactly the kernels a first generation needs, in GIL-friendly
pieces, once, on the generation thread, before the device probe, preloads and requests."""

from __future__ import annotations

import gc
import subprocess
import sys
import threading
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch

from audiogen_studio.app import generation, warmup
from audiogen_studio.app.generation import GenerationController


def test_pieces_run_once_in_order_and_stop_between_pieces() -> None:
    ran: list[str] = []
    steps = tuple((f"test-{name}", lambda n=name: ran.append(n)) for name in "abc")
    stop = threading.Event()
    first = warmup.warm_up(stop, pause=0, steps=steps[:1])
    assert ran == ["a"] and first.complete and [n for n, _ in first.steps] == ["test-a"]
    stop.set()
    stopped = warmup.warm_up(stop, pause=0, steps=steps)
    assert not stopped.complete and ran == ["a"] and not warmup.is_warm(steps)
    report = warmup.warm_up(pause=0, steps=steps)
    assert ran == ["a", "b", "c"] and [n for n, _ in report.steps] == ["test-b", "test-c"]
    assert warmup.is_warm(steps) and warmup.warm_up(pause=0, steps=steps).steps == []

    def broken() -> None:
        raise RuntimeError("no")

    failed = warmup.warm_up(pause=0, steps=(("test-broken", broken),))
    assert not failed.complete and failed.errors == [("test-broken", "RuntimeError: no")]
    assert warmup.warm_up(pause=0, steps=(("test-broken", broken),)).errors == []  # not retried


def test_frozen_allocations_leave_nothing_for_the_collector() -> None:
    frozen = gc.get_freeze_count()
    with warmup.frozen_allocations():
        assert not gc.isenabled()
        made = [[i] for i in range(5000)]  # container objects: tracked by the collector
    assert gc.isenabled()
    assert gc.get_freeze_count() >= frozen + len(made)
    assert gc.get_count()[0] < 700  # nothing pending: resuming starts no collection of them


def test_the_warm_up_loads_the_kernels_a_first_generation_uses() -> None:
    """After the warm-up, generating with a WaveNet and decoding with an LM of other sizes and
    options loads no further numba specialisation: nothing is left to compile or load."""
    from audiogen_studio.engine import lm_fast, wavenet_fast
    from audiogen_studio.engine.api import GenerationRequest
    from audiogen_studio.engine.wavenet_pipeline import WaveNetEngine
    from audiogen_studio.models.lm import LMConfig, TokenLM
    from audiogen_studio.models.wavenet import WaveNet, WaveNetConfig

    torch.set_num_threads(1)
    report = warmup.warm_up(pause=0)
    assert report.errors == [] and warmup.is_warm()
    kernels = (wavenet_fast._run_kernel, lm_fast._decode, lm_fast._sync_keys)
    before = [list(k.signatures) for k in kernels]
    assert all(before), "the warm-up did not load every kernel"

    torch.manual_seed(1)
    config = WaveNetConfig(layers=4, stacks=2, residual_channels=32, gate_channels=64,
                           skip_channels=32)  # fmt: skip
    engine = WaveNetEngine(WaveNet(config), device="auto")
    t = np.arange(4000) / 16000
    prompt = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    from audiogen_studio.audio.clip import Clip

    request = GenerationRequest(prompt=Clip(prompt, 16000), seconds=0.01, takes=2, seed=3)
    assert sum(c.frames for c in engine.stream(request, threading.Event())) == 2 * 160
    lm = TokenLM(LMConfig(vocab_size=40, dim=64, depth=2, heads=4, max_seq_len=64,
                          positions="alibi", norm="layer", mlp="gelu")).eval()  # fmt: skip
    lm_fast.accelerate(lm)
    with torch.inference_mode():
        cache = lm.new_cache(2, 32)
        lm.forward_cached(torch.zeros((2, 3), dtype=torch.int64), cache)
        for _ in range(3):
            lm.forward_cached(torch.ones((2, 1), dtype=torch.int64), cache)
    assert [list(k.signatures) for k in kernels] == before


def test_torch_libraries_load_without_the_import() -> None:
    """In a fresh process: the libraries are mapped, torch is not imported, and importing it
    afterwards works (a ctypes call: the GIL is free while the libraries initialise)."""
    code = (
        "import sys\n"
        "from audiogen_studio.app import warmup\n"
        "loaded = warmup.preload_torch_libraries()\n"
        "maps = open('/proc/self/maps').read()\n"
        "assert 'torch' not in sys.modules\n"
        "assert 'libtorch.so' in loaded and 'libtorch_cpu.so' in maps, (loaded,)\n"
        "import torch\n"
        "assert float(torch.ones(3).sum()) == 3.0\n"
        "assert warmup.preload_torch_libraries() == []  # torch imported: nothing to do\n"
    )
    if not sys.platform.startswith("linux"):
        pytest.skip("the preload is Linux only")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]


def test_the_controller_warms_up_first_then_probes_and_preloads(
    qtbot: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    order: list[tuple[str, bool]] = []
    main = threading.current_thread()

    def fake_warm_up(stop: threading.Event | None = None) -> warmup.WarmUpReport:
        order.append(("warm", threading.current_thread() is main))
        return warmup.WarmUpReport(steps=[("fake", 0.0)], complete=True)

    def fake_engine(self: Any, model: str, mode: str, device: str) -> Any:
        order.append((f"engine {model}", threading.current_thread() is main))
        raise RuntimeError("not a model")  # preload only logs it

    monkeypatch.setattr(warmup, "warm_up", fake_warm_up)
    monkeypatch.setattr(generation.GenerationWorker, "engine", fake_engine)
    monkeypatch.setattr(generation, "WARM_UP_DELAY_MS", 50)
    controller = GenerationController(playback=False)
    try:
        controller.probe_devices()  # asked for before the warm-up started: they wait for it
        assert controller.preload("some-model")
        assert order == []
        with qtbot.waitSignal(controller.warmed_up, timeout=5000):
            pass
        qtbot.waitUntil(lambda: controller.compute_devices is not None, timeout=5000)
        qtbot.waitUntil(lambda: len(order) == 2, timeout=5000)
        assert order == [("warm", False), ("engine some-model", False)]  # on the worker thread
        assert controller.warm_report is not None and controller.warm_report.complete
    finally:
        controller.shutdown()


def test_a_request_before_the_warm_up_starts_it_at_once(
    qtbot: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from audiogen_studio.audio.clip import Clip
    from audiogen_studio.engine.api import GenerationRequest

    order: list[str] = []
    monkeypatch.setattr(warmup, "warm_up", lambda stop=None: order.append("warm"))
    monkeypatch.setattr(generation, "WARM_UP_DELAY_MS", 60_000)  # would not start by itself
    controller = GenerationController(playback=False)
    failed: list[str] = []
    controller.failed.connect(failed.append)
    try:
        request = GenerationRequest(prompt=Clip(np.zeros(1600, np.float32), 16000), seconds=0.1)
        assert controller.generate(request, "no-such-model")
        qtbot.waitUntil(lambda: bool(failed), timeout=5000)
        assert order == ["warm"]  # ran first, on the worker, without waiting a minute
    finally:
        controller.shutdown()


def test_closing_during_the_warm_up_does_not_wait_for_all_of_it(
    qtbot: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    started = threading.Event()
    ran: list[int] = []

    def slow(i: int) -> Callable[[], None]:
        def run() -> None:
            started.set()
            ran.append(i)
            threading.Event().wait(0.2)

        return run

    steps = tuple((f"test-slow-{id(ran)}-{i}", slow(i)) for i in range(20))  # 4 s in all
    real = warmup.warm_up
    monkeypatch.setattr(warmup, "warm_up", lambda stop=None: real(stop, pause=0, steps=steps))
    monkeypatch.setattr(generation, "WARM_UP_DELAY_MS", 0)
    controller = GenerationController(playback=False)
    qtbot.waitUntil(started.is_set, timeout=5000)
    controller.shutdown()  # stops after the piece in progress
    assert len(ran) < 5
