"""Speech continuation quality: same voice, clean sound, same pitch (issue 6 item 4).

- **Speaker similarity**: cosine of the GE2E d-vectors (Wan et al. 2018) of prompt and
  continuation from ``resemblyzer``'s pretrained ``VoiceEncoder`` (weights inside its wheel).
  The embeddings are L2-normalised, so the cosine is their dot product. Same-speaker TTS clips
  score ≥ 0.92 here, different speakers ≤ 0.75.
- **DNSMOS** P.835 (Reddy et al. 2022) through ``speechmos`` (ONNX models inside its wheel,
  run by onnxruntime): SIG, BAK, OVRL and the P.808 MOS, averaged over 9.01 s windows at 1 s
  hops; shorter audio is repeated to exactly one window (~0.5 s of CPU).
- **Median pitch difference**: ``|12 log2(f0_cont / f0_prompt)|`` semitones between the median
  voiced f0 of each part, estimated with probabilistic YIN (Mauch & Dixon 2014,
  ``librosa.pyin``). pYIN was chosen over torchcrepe because it is fast enough on a 2-core CPU
  (about 1 s per 6 s of 16 kHz audio, against ~7 s for crepe "tiny" and ~47 s for "full" on one
  thread) and median f0 of a whole part does not need crepe's frame accuracy.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from audiogen_studio.evaluation.common import (
    SILENT_PEAK,
    EvaluationError,
    as_mono,
    finite,
    librosa_module,
    require,
    resample_mono,
)

SPEECH_RATE = 16_000
MIN_EMBED_SECONDS = 0.5
PITCH_FMIN = 50.0
PITCH_FMAX = 600.0


@functools.lru_cache(maxsize=1)
def _voice_encoder() -> object:
    resemblyzer = require("resemblyzer")
    return resemblyzer.VoiceEncoder("cpu", verbose=False)


def speaker_embedding(audio: npt.ArrayLike, rate: int) -> npt.NDArray[np.float32]:
    """Unit-norm 256-d speaker embedding ``[256]`` of ``audio [T]`` at ``rate``.

    resemblyzer's preprocessing normalises the volume and shortens long silences (WebRTC VAD);
    when that leaves under 0.5 s (e.g. a continuation that is mostly noise) the untrimmed,
    volume-normalised audio is embedded instead, so every clip gets an embedding.
    """
    resemblyzer = require("resemblyzer")
    audio_mod = require("resemblyzer.audio", "resemblyzer")
    hparams = require("resemblyzer.hparams", "resemblyzer")
    wav = resample_mono(audio, rate, int(hparams.sampling_rate))
    peak = float(np.max(np.abs(wav)))
    if peak < SILENT_PEAK:
        raise EvaluationError("cannot embed a silent clip")
    wav = np.clip(wav, -1.0, 1.0)
    processed = resemblyzer.preprocess_wav(wav)
    if processed.shape[0] < MIN_EMBED_SECONDS * hparams.sampling_rate:
        processed = audio_mod.normalize_volume(
            wav, hparams.audio_norm_target_dBFS, increase_only=True
        )
    encoder = _voice_encoder()
    emb = np.asarray(encoder.embed_utterance(processed.astype(np.float32)), dtype=np.float32)  # type: ignore[attr-defined]
    return emb


def speaker_similarity(a: npt.ArrayLike, b: npt.ArrayLike, rate: int) -> float:
    """Cosine similarity (−1…1) of the speaker embeddings of ``a`` and ``b`` (``[T]`` at
    ``rate``)."""
    ea, eb = speaker_embedding(a, rate), speaker_embedding(b, rate)
    denom = float(np.linalg.norm(ea) * np.linalg.norm(eb)) or 1.0
    return float(np.dot(ea, eb) / denom)


@dataclass(frozen=True, slots=True)
class DnsmosScores:
    """DNSMOS P.835 (``sig``, ``bak``, ``ovrl``) and P.808 (``p808``) MOS, 1–5."""

    ovrl: float | None
    sig: float | None
    bak: float | None
    p808: float | None


def dnsmos(audio: npt.ArrayLike, rate: int) -> DnsmosScores:
    """DNSMOS of ``audio [T]`` at ``rate`` (resampled to 16 kHz, clipped to ±1)."""
    require("onnxruntime")
    dnsmos_mod = require("speechmos.dnsmos", "speechmos")
    x = np.clip(resample_mono(audio, rate, SPEECH_RATE), -1.0, 1.0).astype(np.float64)
    if float(np.max(np.abs(x))) < SILENT_PEAK:
        raise EvaluationError("DNSMOS of a silent clip")
    window = int(dnsmos_mod.INPUT_LENGTH * SPEECH_RATE)
    if x.shape[0] < window:  # repeat to exactly one window (speechmos would double it
        x = np.resize(x, window)  # past 9 s and score every 1 s hop of the repeats)
    result = dnsmos_mod.run(x, SPEECH_RATE)
    return DnsmosScores(
        ovrl=finite(result["ovrl_mos"]),
        sig=finite(result["sig_mos"]),
        bak=finite(result["bak_mos"]),
        p808=finite(result["p808_mos"]),
    )


def median_f0(audio: npt.ArrayLike, rate: int) -> float | None:
    """Median f0 (Hz) over the voiced frames of ``audio [T]`` (pYIN, 50–600 Hz, 16 kHz,
    64 ms frames, 10 ms hop); ``None`` when no frame is voiced."""
    librosa = librosa_module()
    x = resample_mono(audio, rate, SPEECH_RATE)
    if x.shape[0] < 1024:
        return None
    f0, voiced, _ = librosa.pyin(
        x,
        fmin=PITCH_FMIN,
        fmax=PITCH_FMAX,
        sr=SPEECH_RATE,
        frame_length=1024,
        hop_length=160,
    )
    values = f0[voiced & np.isfinite(f0)]
    return float(np.median(values)) if values.size else None


def semitones(f_a: float | None, f_b: float | None) -> float | None:
    """``|12 log2(f_b / f_a)|``, or ``None`` when either is missing."""
    if not f_a or not f_b:
        return None
    return abs(12.0 * math.log2(f_b / f_a))


@dataclass(frozen=True, slots=True)
class SpeechContinuationScores:
    """Speech figures of one take (prompt vs continuation).

    Attributes:
        speaker_cosine: resemblyzer cosine prompt ↔ continuation (target ≥ 0.80).
        dnsmos: DNSMOS of the continuation (target OVRL ≥ 2.8).
        dnsmos_prompt: DNSMOS of the prompt, the ceiling the continuation is compared with.
        f0_prompt_hz, f0_continuation_hz: median voiced f0.
        pitch_difference_semitones: ``|12 log2(f0_cont / f0_prompt)|``.
    """

    speaker_cosine: float | None
    dnsmos: DnsmosScores | None
    dnsmos_prompt: DnsmosScores | None
    f0_prompt_hz: float | None
    f0_continuation_hz: float | None
    pitch_difference_semitones: float | None


def score_speech_continuation(
    prompt: npt.ArrayLike, continuation: npt.ArrayLike, rate: int, *, with_dnsmos: bool = True
) -> SpeechContinuationScores:
    """All speech figures of ``continuation`` against ``prompt`` (``[T]`` at ``rate``)."""
    p, c = as_mono(prompt), as_mono(continuation)
    try:
        cosine: float | None = speaker_similarity(p, c, rate)
    except EvaluationError:
        cosine = None
    mos_c = mos_p = None
    if with_dnsmos:
        try:
            mos_c = dnsmos(c, rate)
        except EvaluationError:
            mos_c = None
        try:
            mos_p = dnsmos(p, rate)
        except EvaluationError:
            mos_p = None
    fp, fc = median_f0(p, rate), median_f0(c, rate)
    return SpeechContinuationScores(
        speaker_cosine=cosine,
        dnsmos=mos_c,
        dnsmos_prompt=mos_p,
        f0_prompt_hz=fp,
        f0_continuation_hz=fc,
        pitch_difference_semitones=semitones(fp, fc),
    )
