"""A four-note plucked riff and a pitch estimator, shared by the codec and AudioLM tests."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from audiogen_studio.audio import synth

RATE = 16000
NOTES = (220.0, 277.18, 329.63, 440.0)
NOTE_SECONDS = 0.24  # 12 codec frames of 20 ms
NOTE_FRAMES = int(NOTE_SECONDS * RATE)


def four_note_riff(repeats: int = 2, seed: int = 0) -> npt.NDArray[np.float32]:
    """A, C#, E, A' plucked strings (Karplus–Strong), one after the other, ``repeats`` times."""
    notes = list(NOTES) * repeats
    parts = [
        synth.pluck(f, NOTE_SECONDS, rate=RATE, decay=0.998, seed=seed + i).samples[0]
        for i, f in enumerate(notes)
    ]
    return np.concatenate(parts).astype(np.float32)


def f0(x: npt.NDArray[np.float32], rate: int, lo: float = 80.0, hi: float = 1000.0) -> float:
    """Autocorrelation pitch: the first lag peak within 15 % of the best one (avoids octave-down
    errors), refined by parabolic interpolation."""
    x = x.astype(np.float64) - float(np.mean(x))
    n = x.shape[0]
    spec = np.fft.rfft(x * np.hanning(n), 2 * n)
    ac = np.fft.irfft(np.abs(spec) ** 2)[:n]
    ac /= ac[0] + 1e-12
    a, b = int(rate / hi), int(rate / lo)
    seg = ac[a:b]
    k = int(np.argmax(seg))
    threshold = 0.85 * seg[k]
    for i in range(1, len(seg) - 1):
        if seg[i] >= threshold and seg[i] >= seg[i - 1] and seg[i] >= seg[i + 1]:
            k = i
            break
    i = k + a
    y0, y1, y2 = ac[i - 1], ac[i], ac[i + 1]
    shift = 0.5 * (y0 - y2) / (y0 - 2 * y1 + y2 + 1e-12)
    return float(rate / (i + shift))


def note_pitches(x: npt.NDArray[np.float32], first_note: int = 0) -> list[float]:
    """The pitch of each whole note slot of ``x`` from slot ``first_note`` on (2048 samples
    after each attack)."""
    count = len(x) // NOTE_FRAMES
    return [
        f0(x[i * NOTE_FRAMES + 400 : i * NOTE_FRAMES + 400 + 2048], RATE)
        for i in range(first_note, count)
    ]


def pitch_errors(x: npt.NDArray[np.float32], first_note: int = 0) -> npt.NDArray[np.float64]:
    """Relative pitch error of every note slot against the riff's note at that slot."""
    pitches = note_pitches(x, first_note)
    expected = [NOTES[(first_note + i) % len(NOTES)] for i in range(len(pitches))]
    return np.abs(np.array(pitches) / np.array(expected) - 1.0)
