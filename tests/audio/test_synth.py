"""Synthesized signals have the pitch, length and determinism they promise."""

from __future__ import annotations

import numpy as np
import pytest

from audiogen_studio.audio import synth


def peak_hz(x: np.ndarray, rate: int) -> float:
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.fft.rfftfreq(len(x), 1 / rate)[int(np.argmax(spec))])


def autocorr_hz(x: np.ndarray, rate: int, fmin: float = 50, fmax: float = 2000) -> float:
    spec = np.fft.rfft(x, 2 * len(x))
    ac = np.fft.irfft(np.abs(spec) ** 2)[: len(x)]
    lo, hi = int(rate / fmax), int(rate / fmin)
    lag = lo + int(np.argmax(ac[lo:hi]))
    a, b, c = ac[lag - 1], ac[lag], ac[lag + 1]
    return rate / (lag + 0.5 * (a - c) / (a - 2 * b + c))  # parabolic peak interpolation


@pytest.mark.parametrize("freq", [110.0, 440.0, 1000.0])
def test_pluck_pitch(freq: float) -> None:
    clip = synth.pluck(freq, 1.0, rate=16000, seed=1)
    assert clip.frames == 16000
    # The string's period is a whole number of samples plus the averaging filter's half sample.
    designed = 16000 / (round(16000 / freq - 0.5) + 0.5)
    assert autocorr_hz(clip.samples[0], 16000) == pytest.approx(designed, rel=0.003)
    assert designed == pytest.approx(freq, rel=0.035)


def test_sine_and_chirp() -> None:
    assert abs(peak_hz(synth.sine(440, 1.0).samples[0], 16000) - 440) <= 1
    c = synth.chirp(200, 2000, 1.0)
    first, last = c.samples[0, :4000], c.samples[0, -4000:]
    assert peak_hz(first, 16000) < peak_hz(last, 16000)


def test_deterministic_seeds() -> None:
    assert synth.noise(0.1, seed=3).equals(synth.noise(0.1, seed=3))
    assert not synth.noise(0.1, seed=3).equals(synth.noise(0.1, seed=4))
    assert synth.riff(seed=2).equals(synth.riff(seed=2))
    assert synth.riff().peak == pytest.approx(0.5, rel=1e-5)


def test_negative_duration_rejected() -> None:
    with pytest.raises(ValueError):
        synth.sine(440, -1)
