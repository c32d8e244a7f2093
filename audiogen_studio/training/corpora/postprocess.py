"""Turn a tool's raw output into a corpus file: 16 kHz mono, trimmed, cut, gain-normalised."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from audiogen_studio.audio import io
from audiogen_studio.audio.clip import Clip
from audiogen_studio.audio.errors import AudioError
from audiogen_studio.training.corpora.common import CORPUS_RATE, ItemError

FloatArray = npt.NDArray[np.float32]


@dataclass(frozen=True, slots=True)
class FinishSettings:
    """How raw audio is finished.

    Attributes:
        trim_db: frames quieter than this, relative to the loudest 10 ms frame, count as silence
            at the ends.
        pad_start, pad_end: seconds of the quiet edge kept before the first / after the last
            loud frame (so trimming stays light and keeps breaths and release tails).
        target_rms_db: RMS of the active (non-silent) frames after normalisation, in dBFS.
        peak_db: the gain is lowered so the peak never exceeds this (dBFS).
        max_seconds: longer audio is cut to this length with a fade-out; ``None``: no cut.
        fade_seconds: the fade-out length at a cut.
        min_seconds: shorter results are rejected (:class:`ItemError`).
    """

    trim_db: float = -40.0
    pad_start: float = 0.1
    pad_end: float = 0.15
    target_rms_db: float = -20.0
    peak_db: float = -1.0
    max_seconds: float | None = None
    fade_seconds: float = 0.5
    min_seconds: float = 0.3


@dataclass(frozen=True, slots=True)
class Finished:
    """The finished mono samples ``[1, T]`` at :data:`CORPUS_RATE` and what was done to them."""

    samples: FloatArray
    source_rate: int
    source_seconds: float
    trimmed_start: float
    trimmed_end: float
    cut: bool
    gain_db: float

    @property
    def frames(self) -> int:
        return int(self.samples.shape[1])

    @property
    def duration(self) -> float:
        return self.frames / CORPUS_RATE

    def params(self) -> dict[str, float | int | bool]:
        """The processing record stored in the manifest's ``params``."""
        return {
            "source_rate": self.source_rate,
            "source_seconds": round(self.source_seconds, 4),
            "trimmed_start": round(self.trimmed_start, 4),
            "trimmed_end": round(self.trimmed_end, 4),
            "cut": self.cut,
            "gain_db": round(self.gain_db, 2),
        }


def _frame_rms(x: FloatArray, hop: int) -> FloatArray:
    """RMS of each ``hop``-sample frame of ``x [T]`` (the last, shorter frame included)."""
    n = -(-x.shape[0] // hop)
    if n == 0:
        return np.zeros(0, dtype=np.float32)
    padded = np.zeros(n * hop, dtype=np.float64)
    padded[: x.shape[0]] = x
    sums = np.square(padded).reshape(n, hop).sum(axis=1)
    lengths = np.full(n, hop, dtype=np.float64)
    lengths[-1] = x.shape[0] - (n - 1) * hop
    rms: FloatArray = np.sqrt(sums / lengths).astype(np.float32)
    return rms


def finish(samples: FloatArray, rate: int, settings: FinishSettings) -> Finished:
    """Downmix ``samples [C, T]`` (any rate) to mono 16 kHz, trim, cut and normalise.

    Raises:
        ItemError: silent, too short, or non-finite audio.
    """
    x = np.asarray(samples, dtype=np.float32)
    if x.ndim == 1:
        x = x[np.newaxis, :]
    if x.shape[1] == 0:
        raise ItemError("the tool wrote no audio")
    if not np.isfinite(x).all():
        raise ItemError("the tool wrote non-finite samples")
    source_seconds = x.shape[1] / rate
    mono = x.mean(axis=0, keepdims=True, dtype=np.float32) if x.shape[0] > 1 else x
    if rate != CORPUS_RATE:
        mono = io.resample_array(mono, rate, CORPUS_RATE)
    y = mono[0]
    hop = CORPUS_RATE // 100
    rms = _frame_rms(y, hop)
    loudest = float(rms.max())
    if loudest < 1e-5:
        raise ItemError("silent output")
    threshold = max(loudest * 10 ** (settings.trim_db / 20), 1e-5)
    loud = np.flatnonzero(rms >= threshold)
    start = max(0, int(loud[0]) * hop - int(settings.pad_start * CORPUS_RATE))
    end = min(y.shape[0], (int(loud[-1]) + 1) * hop + int(settings.pad_end * CORPUS_RATE))
    trimmed_start, trimmed_end = start / CORPUS_RATE, (y.shape[0] - end) / CORPUS_RATE
    y = y[start:end]
    cut = False
    if settings.max_seconds is not None and y.shape[0] > settings.max_seconds * CORPUS_RATE:
        y = y[: int(settings.max_seconds * CORPUS_RATE)].copy()
        fade = min(int(settings.fade_seconds * CORPUS_RATE), y.shape[0])
        if fade > 0:
            y[-fade:] *= np.linspace(1.0, 0.0, fade, dtype=np.float32)
        cut = True
    if y.shape[0] < settings.min_seconds * CORPUS_RATE:
        raise ItemError(
            f"too short after trimming: {y.shape[0] / CORPUS_RATE:.2f} s "
            f"< {settings.min_seconds:g} s"
        )
    frame_rms = _frame_rms(y, hop)
    active = frame_rms[frame_rms >= max(float(frame_rms.max()) * 10 ** (-30 / 20), 1e-6)]
    active_rms = float(np.sqrt(np.mean(np.square(active, dtype=np.float64))))
    peak = float(np.abs(y).max())
    gain = min(
        10 ** (settings.target_rms_db / 20) / active_rms, 10 ** (settings.peak_db / 20) / peak
    )
    y = (y * gain).astype(np.float32)
    return Finished(
        samples=y[np.newaxis, :],
        source_rate=int(rate),
        source_seconds=source_seconds,
        trimmed_start=trimmed_start,
        trimmed_end=trimmed_end,
        cut=cut,
        gain_db=float(20 * np.log10(gain)),
    )


def finish_file(raw: Path, target: Path, settings: FinishSettings) -> Finished:
    """Load a tool's output file, :func:`finish` it and save it atomically as ``target``.

    The target (``.flac`` or ``.wav``, 16-bit PCM) appears only once it is complete.
    """
    try:
        clip = io.load(raw)
    except AudioError as exc:
        raise ItemError(f"unreadable tool output: {exc}") from exc
    return finish_samples(np.asarray(clip.samples), clip.rate, target, settings)


def finish_samples(
    samples: FloatArray, rate: int, target: Path, settings: FinishSettings
) -> Finished:
    """:func:`finish` ``samples [C, T]`` and save them atomically as ``target`` (16-bit PCM)."""
    done = finish(samples, rate, settings)
    target.parent.mkdir(parents=True, exist_ok=True)
    io.save(Clip(done.samples, CORPUS_RATE), target, overwrite=True, subtype="PCM_16")
    return done
