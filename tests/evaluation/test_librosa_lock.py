"""librosa's numba code is loaded by one process at a time (numba issue 10128)."""

from __future__ import annotations

import threading

import pytest

from audiogen_studio.evaluation import common

filelock = pytest.importorskip("filelock")


def test_librosa_waits_for_the_machine_wide_lock(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("librosa")
    monkeypatch.setattr(common, "_librosa", None)  # as in a fresh process
    loaded: list[object] = []
    holder = filelock.FileLock(str(common.LIBROSA_LOCK))
    with holder:  # another process compiling librosa's kernels
        worker = threading.Thread(target=lambda: loaded.append(common.librosa_module()))
        worker.start()
        worker.join(timeout=1.0)
        assert worker.is_alive() and not loaded  # waits instead of compiling alongside
    worker.join(timeout=120)
    assert len(loaded) == 1 and loaded[0] is common.librosa_module()
    assert hasattr(loaded[0], "pyin")
