"""Synthetic sounds shared by the take library tests."""

from __future__ import annotations

import numpy as np

from audiogen_studio.audio.clip import Clip

RATE = 16000


def tone(freq: float, seconds: float = 0.5, *, amp: float = 0.4, phase: float = 0.0) -> Clip:
    """A sine ``[1, T]`` at ``RATE``."""
    t = np.arange(int(seconds * RATE)) / RATE
    return Clip((amp * np.sin(2 * np.pi * freq * t + phase)).astype(np.float32), RATE)


def noise(seed: int, seconds: float = 0.5, *, amp: float = 0.2, smooth: int = 1) -> Clip:
    """White noise, low-passed by a moving average of ``smooth`` samples."""
    x = np.random.default_rng(seed).standard_normal(int(seconds * RATE))
    if smooth > 1:
        x = np.convolve(x, np.ones(smooth) / np.sqrt(smooth), mode="same")
    return Clip((amp * x / max(1e-9, np.abs(x).max())).astype(np.float32), RATE)


def pulses(rate_hz: float, seed: int, seconds: float = 0.5, *, amp: float = 0.5) -> Clip:
    """Short decaying noise bursts ``rate_hz`` times a second (clicks, crackle, drum-like)."""
    rng = np.random.default_rng(seed)
    n = int(seconds * RATE)
    x = np.zeros(n)
    burst = rng.standard_normal(160) * np.exp(-np.arange(160) / 30.0)
    period = int(RATE / rate_hz)
    for start in range(int(rng.integers(0, period)), n - 160, period):
        x[start : start + 160] += burst
    return Clip((amp * x / max(1e-9, np.abs(x).max())).astype(np.float32), RATE)
