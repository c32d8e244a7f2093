"""Pick the torch device to compute on: ``auto`` = CUDA, then Apple MPS, then CPU (DESIGN.md §4);
for generation, ``auto`` = the CPU (:func:`generation_device`)."""

from __future__ import annotations

import torch

from audiogen_studio.audio.errors import AudioError


class ComputeDeviceError(AudioError, ValueError):
    """The requested compute device does not exist on this machine (or is not a device name)."""


def mps_available() -> bool:
    """Whether Apple's Metal backend can run here."""
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def resolve_device(name: str | torch.device = "auto") -> torch.device:
    """The ``torch.device`` for ``name``.

    Args:
        name: ``"auto"`` (CUDA, then MPS, then CPU), ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or
            ``"mps"``, or a ``torch.device``.

    Raises:
        ComputeDeviceError: an unknown name, or a device this machine lacks.
    """
    if isinstance(name, torch.device):
        device = name
    else:
        text = name.strip().lower()
        if text == "auto":
            if torch.cuda.is_available():
                return torch.device("cuda")
            if mps_available():
                return torch.device("mps")
            return torch.device("cpu")
        try:
            device = torch.device(text)
        except (RuntimeError, ValueError) as exc:
            raise ComputeDeviceError(
                f"unknown device {name!r} (use auto, cpu, cuda, cuda:N or mps)"
            ) from exc
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ComputeDeviceError("CUDA was requested but no CUDA GPU is available")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ComputeDeviceError(
                f"{device} was requested but only {torch.cuda.device_count()} CUDA GPU(s) exist"
            )
    elif device.type == "mps":
        if not mps_available():
            raise ComputeDeviceError("MPS was requested but Apple's Metal backend is unavailable")
    elif device.type != "cpu":
        raise ComputeDeviceError(f"unsupported device {device} (use auto, cpu, cuda or mps)")
    return device


def generation_device(name: str | torch.device = "auto") -> torch.device:
    """The device a generation engine runs on: :func:`resolve_device`, except that ``"auto"``
    means the CPU.

    Generation is a chain of small steps (one token, one sample), bound by latency rather than
    arithmetic: the fused numba CPU steps (``engine/lm_fast.py``, ``engine/wavenet_fast.py``)
    beat a GPU step that launches dozens to hundreds of small kernels per token or sample.
    Measured with the shipped bundles (``audiogen-studio continue --seconds 6``, one take), an
    NVIDIA H100 alone ran speech at a real-time factor of 0.48-0.79 and music at 0.93-1.28,
    ``wavenet-music`` at 10.8 and the vocoder at 11.3, where a 2-core CPU runs them at 0.31,
    0.43, 0.39 and 0.64 (README). Name ``"cuda"`` or ``"mps"`` to generate there (many takes
    at once, or bundles far larger than the defaults, can favour the GPU).
    """
    if isinstance(name, str) and name.strip().lower() == "auto":
        return torch.device("cpu")
    return resolve_device(name)
