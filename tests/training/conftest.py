"""Fixtures shared by the training tests."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from audiogen_studio.audio import io, synth
from audiogen_studio.audio.clip import Clip

RATE = 16_000


@pytest.fixture(scope="module")
def riff_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three renditions of the riff (7.35 s each, other pluck noise): two train, one valid."""
    folder = tmp_path_factory.mktemp("riffs")
    lines = []
    for i, split in enumerate(("train", "train", "valid")):
        clip = synth.riff(seed=i + 10)
        io.save(Clip(np.asarray(clip.samples), RATE), folder / f"riff{i}.wav")
        lines.append(json.dumps({"path": f"riff{i}.wav", "split": split}))
    (folder / "riffs.jsonl").write_text("\n".join(lines) + "\n")
    return folder / "riffs.jsonl"
