"""A fixed-size sound embedding per take, for "search by sound" (issue 7 §3).

No model and no training: log-mel statistics, the classic texture descriptor (the summary
statistics of auditory texture models, McDermott & Simoncelli 2011, reduced to their first
moments; the "bag of frames" of Aucouturier & Pachet 2007). For a clip ``[C, T]``:

1. downmix to mono; frames of ~32 ms (``n_fft`` = the power of two nearest ``0.032 * rate``),
   hop ``n_fft / 2``, Hann window, so the analysis covers the same time span at every rate;
2. power spectrum → :data:`N_MELS` HTK mel bands from 40 Hz to ``min(8 kHz, rate / 2)``
   (:func:`audiogen_studio.audio.display.mel_filterbank`), in dB, floored 80 dB below the
   loudest band-frame (and at -100 dBFS), so the result does not depend on the level;
3. per band over time: the mean with the mean over bands removed (the spectral envelope,
   independent of level), the standard deviation (how much each band moves) and the mean
   absolute frame-to-frame change (spectral flux: steady tone vs. crackle);
4. the three ``[N_MELS]`` groups, scaled by 1/10 dB and weighted, concatenated and
   L2-normalised, so the dot product of two embeddings is their cosine similarity.

Output: float32 ``[DIM]`` with ``DIM = 3 * N_MELS = 192``; a silent or empty clip gives the
zero vector (similar to nothing). ``EMBEDDING_MODEL`` names the recipe in the database, so a
future embedding (e.g. pooled semantic-encoder features) can live beside this one.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import numpy.typing as npt

from audiogen_studio.audio.clip import Clip
from audiogen_studio.audio.display import mel_filterbank

__all__ = ["DIM", "EMBEDDING_MODEL", "N_MELS", "embed", "embed_samples", "from_bytes", "to_bytes"]

EMBEDDING_MODEL = "logmel-stats-v1"
N_MELS = 64
DIM = 3 * N_MELS
_FMIN = 40.0
_FMAX = 8000.0
_FLOOR_DB = -100.0
_RANGE_DB = 80.0  # floor relative to the loudest band-frame: level-independent
_WEIGHTS = (1.0, 0.8, 0.8)  # envelope, spread, flux
_MAX_FRAMES = 4096  # longer clips are analysed on evenly spaced frames (~65 s at the hop)


@lru_cache(maxsize=16)
def _analysis(rate: int) -> tuple[int, npt.NDArray[np.float32], npt.NDArray[np.float32]]:
    """``(n_fft, hann window [n_fft], mel weights [n_fft // 2 + 1, N_MELS])`` for ``rate``."""
    n_fft = 1 << max(6, round(math.log2(0.032 * rate)))
    window = np.hanning(n_fft + 1)[:-1].astype(np.float32)  # periodic Hann
    fmax = min(_FMAX, rate / 2.0)
    weights, _ = mel_filterbank(n_fft // 2 + 1, _FMIN, fmax, N_MELS, rate)
    return n_fft, window, weights.astype(np.float32)


def embed_samples(samples: npt.ArrayLike, rate: int) -> npt.NDArray[np.float32]:
    """Embedding of ``samples [C, T]`` (or ``[T]``) at ``rate`` Hz → float32 ``[DIM]``."""
    x = np.asarray(samples, dtype=np.float32)
    mono = x if x.ndim == 1 else x.mean(axis=0, dtype=np.float32)
    n_fft, window, weights = _analysis(int(rate))
    hop = n_fft // 2
    if mono.size == 0 or not np.any(mono):
        return np.zeros(DIM, np.float32)
    if mono.size < n_fft:
        mono = np.pad(mono, (0, n_fft - mono.size))
    count = 1 + (mono.size - n_fft) // hop
    starts = np.arange(count) * hop
    if count > _MAX_FRAMES:
        starts = starts[np.linspace(0, count - 1, _MAX_FRAMES).astype(np.int64)]
    frames = mono[starts[:, None] + np.arange(n_fft)[None, :]] * window  # [F, n_fft]
    spectrum = np.fft.rfft(frames, axis=1)  # [F, n_fft // 2 + 1]
    power = spectrum.real**2 + spectrum.imag**2
    mel = power.astype(np.float32) @ weights  # [F, N_MELS]
    db = 10.0 * np.log10(np.maximum(mel, 1e-10))
    db = np.maximum(db, max(_FLOOR_DB, float(db.max()) - _RANGE_DB))
    mean = db.mean(axis=0)
    envelope = mean - mean.mean()
    spread = db.std(axis=0)
    flux = np.abs(np.diff(db, axis=0)).mean(axis=0) if db.shape[0] > 1 else np.zeros(N_MELS)
    parts = [w * g / 10.0 for w, g in zip(_WEIGHTS, (envelope, spread, flux), strict=True)]
    vector = np.concatenate(parts).astype(np.float32)
    norm = float(np.linalg.norm(vector))
    if not math.isfinite(norm) or norm < 1e-12:
        return np.zeros(DIM, np.float32)
    result: npt.NDArray[np.float32] = vector / np.float32(norm)
    return result


def embed(clip: Clip) -> npt.NDArray[np.float32]:
    """Embedding of a clip → float32 ``[DIM]``, L2-normalised (or all zeros for silence)."""
    return embed_samples(clip.samples, clip.rate)


def to_bytes(vector: npt.ArrayLike) -> bytes:
    """float32 little-endian bytes of a ``[DIM]`` vector (the database's BLOB format)."""
    return np.ascontiguousarray(vector, dtype="<f4").tobytes()


def from_bytes(blob: bytes) -> npt.NDArray[np.float32]:
    """Inverse of :func:`to_bytes`."""
    return np.frombuffer(blob, dtype="<f4").astype(np.float32)
