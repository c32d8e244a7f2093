"""Ctrl-C / SIGTERM stop a training command cleanly: checkpoint and bundle written, exit 128+n."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from audiogen_studio.audio import io, synth
from audiogen_studio.cli.interrupt import graceful_stop
from audiogen_studio.engine.bundles import read_bundle

sys.path.insert(0, str(Path(__file__).parents[1] / "engine"))
from audiolm_stack import random_audiolm_bundle


def test_the_first_signal_sets_the_event_the_second_aborts() -> None:
    before = signal.getsignal(signal.SIGINT)
    with graceful_stop() as stop:
        assert not stop.event.is_set() and stop.exit_status(3) == 3
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.event.wait(5) and stop.signal == signal.SIGTERM
        assert stop.exit_status() == 128 + signal.SIGTERM
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(5)  # the handler raises in this thread before the sleep ends
    assert signal.getsignal(signal.SIGINT) is before


def test_ctrl_c_stops_lm_training_with_its_checkpoint_and_bundle(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    for i in range(2):
        io.save(synth.riff(repeats=2, seed=i), data / f"riff{i}.wav")
    bundle = random_audiolm_bundle(tmp_path / "bundle", windows={})
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    proc = subprocess.Popen(
        [
            sys.executable, "-m", "audiogen_studio", "train", "lm-coarse", "--data", str(data),
            "--bundle", str(bundle), "--size", "tiny", "--window", "8", "--steps", "1000000",
            "--batch", "2", "--device", "cpu", "--threads", "1", "--no-progress",
            "--save-every", "0", "--val-every", "100000", "--json",
        ],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while not list((bundle / "work").glob("tokens-*/info.json")):
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            assert time.monotonic() < deadline, "the token cache never appeared"
            time.sleep(0.2)
        time.sleep(2)  # some steps
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 130, err[-3000:]
    assert "SIGINT: stopping after this step" in err
    report = json.loads(out[out.index("{") :])
    assert 0 < report["step"] < 1_000_000 and not report["completed"]
    state = json.loads((bundle / "checkpoint" / "lm_coarse" / "trainer_state.json").read_text())
    assert state["step"] == report["step"]
    prov = read_bundle(bundle).training["lm_coarse"]
    assert prov["steps"] == report["step"] and prov["completed"] is False
