"""Test helpers shared by the codec and mel codec trainer tests (imported by path, like
``tests/riff_signal.py``): the one-riff training folder and a two-rank ``torchrun`` launch."""

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


def run_two_ranks(script: str, data: Path, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """Run ``script`` (Python source) under ``torchrun --standalone --nproc_per_node 2`` with the
    arguments ``data``, ``tmp_path/bundle`` and ``tmp_path`` (where the ranks write what they
    saw), one CPU thread each; the caller checks ``returncode`` and the files."""
    path = tmp_path / "ddp.py"
    path.write_text(script)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node",
            "2",
            str(path),
            str(data),
            str(tmp_path / "bundle"),
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=240,
        env=env,
        check=False,
    )
