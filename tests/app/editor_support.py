"""Helpers shared by the editor tests (test_editor, test_undo, test_project, test_files)."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from audiogen_studio.audio import devices
from audiogen_studio.audio.clip import Clip

RATE = 16_000


def make_clip(seconds: float = 1.0, *, channels: int = 2, rate: int = RATE, seed: int = 0) -> Clip:
    """A deterministic clip: a tone per channel plus a little noise (no two frames alike)."""
    frames = round(seconds * rate)
    t = np.arange(frames) / rate
    rng = np.random.default_rng(seed)
    rows = [
        0.5 * np.sin(2 * np.pi * (220.0 * (c + 1)) * t) + 0.05 * rng.standard_normal(frames)
        for c in range(channels)
    ]
    return Clip(np.asarray(rows, dtype=np.float32), rate)


def new_window(qtbot: Any, tmp_path: Path, **kwargs: Any) -> Any:
    """A shown, non-interactive main window with its recovery folder under ``tmp_path``;
    qtbot closes it after the test."""
    from audiogen_studio.app.main_window import MainWindow

    kwargs.setdefault("recovery_root", tmp_path / "recovery")
    window = MainWindow(interactive=False, **kwargs)
    window.resize(1000, 700)
    qtbot.addWidget(window)
    window.show()
    return window


def fake_devices(monkeypatch: pytest.MonkeyPatch) -> list[devices.Player]:
    """Players open no stream; returns the players started (tests drain their rings)."""
    started: list[devices.Player] = []
    monkeypatch.setattr(devices.Player, "start", lambda self: started.append(self))
    return started


def thread_names() -> set[str]:
    """Names of the live threads."""
    return {t.name for t in threading.enumerate()}


def same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    """Bit-for-bit equality of two float32 arrays (``-0.0 != 0.0``)."""
    return a.shape == b.shape and bool(
        np.array_equal(
            np.ascontiguousarray(a).view(np.uint32), np.ascontiguousarray(b).view(np.uint32)
        )
    )
