"""Test helpers shared by the trainer tests (imported by path, like ``tests/riff_signal.py``):
the one-riff training folder and a two-rank ``torchrun`` launch."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from riff_signal import RATE, four_note_riff

from audiogen_studio.audio import io
from audiogen_studio.audio.clip import Clip


def write_riff_folder(folder: Path) -> Path:
    """``folder/riff.wav``: one repeat of the four-note riff at ``RATE``; returns ``folder``."""
    io.save(Clip(four_note_riff(repeats=1), RATE), folder / "riff.wav")
    return folder


def torchrun(
    args: list[str], tmp_path: Path, *, timeout: float = 240
) -> subprocess.CompletedProcess[str]:
    """``torchrun --standalone --nproc_per_node 2 ARGS`` (``python -m torch.distributed.run``),
    one CPU thread per rank; the elastic agent's ``torchelastic_*`` folder goes under
    ``tmp_path``, not the machine's /tmp. The caller checks ``returncode`` and the outputs."""
    scratch = tmp_path / "torchrun-tmp"
    scratch.mkdir(exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore", "TMPDIR": str(scratch)}
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node"]
    return subprocess.run(
        [*launcher, "2", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        check=False,
    )


def run_two_ranks(script: str, data: Path, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """Run ``script`` (Python source) under :func:`torchrun` with the arguments ``data``,
    ``tmp_path/bundle`` and ``tmp_path`` (where the ranks write what they saw)."""
    path = tmp_path / "ddp.py"
    path.write_text(script)
    return torchrun([str(path), str(data), str(tmp_path / "bundle"), str(tmp_path)], tmp_path)
