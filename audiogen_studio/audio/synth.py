"""Seeded test and demo signals: sine, chirp, noise, Karplus–Strong plucked strings, a riff.

Every function returns a mono :class:`Clip` ``[1, T]`` at ``rate`` Hz and is deterministic given
its ``seed``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from audiogen_studio.audio.clip import Clip


def _frames(seconds: float, rate: int) -> int:
    if seconds < 0:
        raise ValueError(f"seconds must be non-negative, got {seconds}")
    return round(seconds * rate)


def sine(freq: float, seconds: float, rate: int = 16000, amp: float = 0.5) -> Clip:
    """A sine tone of ``freq`` Hz."""
    t = np.arange(_frames(seconds, rate)) / rate
    return Clip((amp * np.sin(2 * np.pi * freq * t)).astype(np.float32), rate)


def chirp(f0: float, f1: float, seconds: float, rate: int = 16000, amp: float = 0.5) -> Clip:
    """A linear chirp from ``f0`` to ``f1`` Hz."""
    n = _frames(seconds, rate)
    t = np.arange(n) / rate
    phase = 2 * np.pi * (f0 * t + (f1 - f0) * t**2 / (2 * max(seconds, 1e-9)))
    return Clip((amp * np.sin(phase)).astype(np.float32), rate)


def noise(seconds: float, rate: int = 16000, amp: float = 0.1, seed: int = 0) -> Clip:
    """Gaussian white noise with standard deviation ``amp``."""
    rng = np.random.default_rng(seed)
    return Clip((amp * rng.standard_normal(_frames(seconds, rate))).astype(np.float32), rate)


def _pluck_samples(
    freq: float, frames: int, rate: int, decay: float, rng: np.random.Generator
) -> npt.NDArray[np.float32]:
    """Karplus–Strong string: a noise burst in a delay line with a two-tap averaging filter."""
    period = max(2, round(rate / freq - 0.5))  # the averaging filter adds half a sample
    out = np.zeros(frames, dtype=np.float64)
    line = rng.uniform(-1.0, 1.0, period)
    line -= line.mean()
    # Vectorised by whole periods: each period is the damped average of the previous one.
    pos = 0
    while pos < frames:
        n = min(period, frames - pos)
        out[pos : pos + n] = line[:n]
        line = decay * 0.5 * (line + np.roll(line, 1))
        pos += n
    return out.astype(np.float32)


def pluck(
    freq: float, seconds: float, rate: int = 16000, decay: float = 0.996, seed: int = 0
) -> Clip:
    """One plucked string note of ``freq`` Hz (Karplus–Strong)."""
    rng = np.random.default_rng(seed)
    return Clip(0.5 * _pluck_samples(freq, _frames(seconds, rate), rate, decay, rng), rate)


def riff(
    notes: Sequence[float] = (220.0, 277.18, 329.63, 440.0, 329.63, 277.18),
    note_seconds: float = 0.35,
    repeats: int = 3,
    rate: int = 16000,
    seed: int = 0,
) -> Clip:
    """A repeating plucked-string riff (A major arpeggio by default), overlapping note tails."""
    rng = np.random.default_rng(seed)
    step = _frames(note_seconds, rate)
    tail = 3 * step
    total = step * len(notes) * repeats + tail
    out = np.zeros(total, dtype=np.float32)
    for i, freq in enumerate(list(notes) * repeats):
        start = i * step
        out[start : start + tail] += _pluck_samples(freq, tail, rate, 0.995, rng)
    out *= 0.5 / max(float(np.max(np.abs(out))), 1e-9)
    return Clip(out, rate)
