"""Device names: ``auto`` resolves to the best device for training and to the CPU for
generation (its fused per-step kernels outrun a GPU's for small per-step models)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from audiogen_studio.engine.audiolm_pipeline import AudioLMEngine
from audiogen_studio.engine.bundles import read_bundle
from audiogen_studio.models.device import (
    ComputeDeviceError,
    generation_device,
    mps_available,
    resolve_device,
)

sys.path.insert(0, str(Path(__file__).parents[1] / "engine"))
from audiolm_stack import random_audiolm_bundle


def test_auto_generates_on_the_cpu_and_trains_on_the_best_device() -> None:
    assert generation_device("auto") == torch.device("cpu")
    assert generation_device(" AUTO ") == torch.device("cpu")
    assert generation_device("cpu") == torch.device("cpu")
    best = "cuda" if torch.cuda.is_available() else "mps" if mps_available() else "cpu"
    assert resolve_device("auto").type == best


def test_a_named_device_is_checked_for_generation_too() -> None:
    with pytest.raises(ComputeDeviceError, match="unknown device"):
        generation_device("tpu9")
    if not torch.cuda.is_available():
        with pytest.raises(ComputeDeviceError, match="no CUDA GPU"):
            generation_device("cuda")


def test_the_audiolm_engine_generates_on_the_cpu_by_default(tmp_path: Path) -> None:
    folder = random_audiolm_bundle(tmp_path / "random-audiolm")
    assert AudioLMEngine.from_bundle(read_bundle(folder)).device == torch.device("cpu")
