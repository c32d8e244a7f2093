"""Shared pieces of the quality evaluation: errors, the optional ``[eval]`` extra, mono signals.

The metric libraries (pesq, pystoi, visqol-python, resemblyzer, speechmos, librosa, mir_eval,
scipy) are optional: they are imported only when a metric is computed, through :func:`require`,
which turns a missing package into one clear :class:`MissingExtraError` that names the extra.
"""

from __future__ import annotations

import importlib
import math
import tempfile
import warnings
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import numpy.typing as npt

from audiogen_studio.audio.errors import AudioError

EXTRA_HINT = "pip install 'audiogen_studio[eval]'"
#: Peak below which a clip counts as silent (no metric can score it).
SILENT_PEAK = 1e-6


class EvaluationError(AudioError):
    """An evaluation cannot run: bad input, a missing tool, a corpus without that split."""


class MissingExtraError(EvaluationError):
    """A package of the optional ``[eval]`` extra (or an external tool) is not installed."""


def require(module: str, package: str | None = None) -> ModuleType:
    """Import ``module`` of the ``[eval]`` extra, or raise :class:`MissingExtraError`.

    ``pkg_resources`` deprecation warnings that some of these packages (webrtcvad, under
    resemblyzer) raise on import are silenced: they are not ours to fix.
    """
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*pkg_resources.*")
            warnings.filterwarnings("ignore", category=DeprecationWarning)
            return importlib.import_module(module)
    except ImportError as exc:
        name = package or module.split(".")[0]
        raise MissingExtraError(
            f"this metric needs the '{name}' package of the optional [eval] extra "
            f"({EXTRA_HINT}): {exc}"
        ) from exc


#: held while a process loads librosa's numba code (see :func:`librosa_module`)
LIBROSA_LOCK = Path(tempfile.gettempdir()) / "audiogen-studio-librosa-numba.lock"
_librosa: ModuleType | None = None


def librosa_module() -> ModuleType:
    """``librosa``, with the numba code the metrics run compiled or loaded from numba's disk
    cache under a lock shared by every process on the machine (once per process).

    librosa's ``@guvectorize(cache=True)`` kernels are compiled when their modules are imported
    and written to numba's cache as two files each. Two processes doing that at once -- two
    evaluations started together on a fresh install -- can leave a pair written by different
    processes, after which every process that loads it crashes with a segmentation fault
    (numba issue 10128; it happened here with two ``benchmarks/quality.py`` runs). The lock
    makes the first process compile alone and the others load what it wrote.
    """
    global _librosa
    if _librosa is None:
        filelock = require("filelock")
        with filelock.FileLock(str(LIBROSA_LOCK), timeout=900):
            librosa = require("librosa")
            # what the metrics call, once on tiny signals: imports the lazily loaded
            # submodules (compiling their gufuncs) and compiles the lazily jitted functions
            t = np.arange(16000, dtype=np.float32) / 16000
            tone = (0.5 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
            with warnings.catch_warnings():  # about the signals' shortness
                warnings.simplefilter("ignore")
                librosa.pyin(tone, fmin=50, fmax=600, sr=16000, frame_length=1024, hop_length=160)
                librosa.feature.chroma_cqt(y=tone, sr=16000, hop_length=512)
                onsets = librosa.onset.onset_strength(y=tone, sr=16000, hop_length=512)
                librosa.feature.tempo(onset_envelope=onsets, sr=16000, hop_length=512)
        _librosa = librosa
    return _librosa


def as_mono(audio: npt.ArrayLike) -> npt.NDArray[np.float32]:
    """A float32 ``[T]`` copy of ``audio`` given as ``[T]``, ``[C, T]`` or ``[B=1, C, T]``
    (channels averaged).

    Raises:
        EvaluationError: empty, more than 3 dimensions, or non-finite samples.
    """
    x = np.asarray(audio, dtype=np.float32)
    if x.ndim == 3:
        if x.shape[0] != 1:
            raise EvaluationError(f"expected one signal, got a batch of shape {x.shape}")
        x = x[0]
    if x.ndim == 2:
        x = x.mean(axis=0, dtype=np.float32)
    if x.ndim != 1:
        raise EvaluationError(f"expected audio [T] or [C, T], got shape {x.shape}")
    if x.shape[0] == 0:
        raise EvaluationError("the audio is empty")
    if not np.all(np.isfinite(x)):
        raise EvaluationError("the audio holds NaN or infinite samples")
    return np.ascontiguousarray(x)


def resample_mono(audio: npt.ArrayLike, rate: int, target: int) -> npt.NDArray[np.float32]:
    """:func:`as_mono` of ``audio`` resampled from ``rate`` to ``target`` Hz (band-limited)."""
    from audiogen_studio.audio.io import resample_array

    x = as_mono(audio)
    if rate == target:
        return x
    out: npt.NDArray[np.float32] = resample_array(x[None], int(rate), int(target))[0]
    return out


def finite(value: Any) -> float | None:
    """``float(value)``, or ``None`` for NaN/inf/None (JSON has no NaN)."""
    if value is None:
        return None
    v = float(value)
    return v if math.isfinite(v) else None


def mean_or_none(values: list[float | None]) -> float | None:
    """Mean of the finite values (``None`` when there are none)."""
    good = [v for v in values if v is not None and math.isfinite(v)]
    return float(np.mean(good)) if good else None


def percentile_of(value: float, population: npt.ArrayLike) -> float:
    """Percentile rank (0–100) of ``value`` in ``population``: the share below it, ties count
    half (so a value equal to every member ranks 50)."""
    pop = np.asarray(population, dtype=np.float64)
    if pop.size == 0:
        raise EvaluationError("empty reference population")
    below = float(np.mean(pop < value))
    equal = float(np.mean(pop == value))
    return 100.0 * (below + 0.5 * equal)
