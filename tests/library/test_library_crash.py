"""Crash safety: a writer killed (SIGKILL) at random moments never corrupts the library and
loses at most the take it was writing (issue 7 §1)."""

from __future__ import annotations

import os
import queue
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from audiogen_studio.library import Filters, TakeLibrary

WRITER = Path(__file__).with_name("crash_writer.py")
ROUNDS = 6


def _reader(stream: object, lines: queue.Queue[str]) -> None:
    for line in stream:  # type: ignore[attr-defined]
        lines.put(line.strip())


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_killing_a_writer_at_random_moments_never_corrupts_the_library(tmp_path: Path) -> None:
    root = tmp_path / "lib"
    rnd = random.Random(7)
    committed: set[str] = set()
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    for round_ in range(ROUNDS):
        proc = subprocess.Popen(
            [sys.executable, str(WRITER), str(root), str(round_)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        lines: queue.Queue[str] = queue.Queue()
        reader = threading.Thread(target=_reader, args=(proc.stdout, lines), daemon=True)
        reader.start()
        try:
            assert lines.get(timeout=60) == "ready", proc.stderr.read() if proc.stderr else ""
            time.sleep(rnd.uniform(0.05, 0.8))
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
            reader.join(timeout=10)
        assert proc.returncode == -signal.SIGKILL, proc.stderr.read() if proc.stderr else ""
        while not lines.empty():
            line = lines.get()
            if line.startswith("ok "):
                committed.add(line[3:])
        with TakeLibrary(root) as lib:
            # integrity_check, foreign keys, keyword index, and every referenced blob
            # present and decoding to its hash
            assert lib.check() == [], f"round {round_}"
            stored = {e.uid for e in lib.list_takes(Filters(deleted=None), limit=None)}
            assert committed <= stored, "a committed take was lost"
            # at most the take being written is missing from what the writer reported
            assert len(stored - committed) <= 1
            committed |= stored
    assert len(committed) > ROUNDS  # the writer got work done between kills
    with TakeLibrary(root) as lib:
        referenced = {lib.get(u).audio_hash for u in committed}
        report = lib.gc(orphan_grace=0, deleted_before=0)  # orphans only: keep the trash
        print(f"{len(committed)} takes; gc after the kills: {report}")
        assert set(lib.blobs) == referenced  # orphan blobs of killed writes are gone
        assert lib.check() == []
        assert not list(lib.blobs.root.glob("*/.*.partial"))
