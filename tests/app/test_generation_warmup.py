"""The app runs the start-up warm-up (``engine/warmup.py``) once, on the generation thread,
before the device probe, preloads and requests."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from audiogen_studio.app import generation
from audiogen_studio.app.generation import GenerationController
from audiogen_studio.engine import warmup


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
