"""Score one take: the seam plus the speech or music figures of its continuation.

A take is ``prompt + continuation`` (what ``audiogen-studio continue`` writes and what the
app keeps); the junction is at the prompt's end. The prompt figures are taken from the take's
own head, so prompt and continuation share one rate and one channel mix.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import numpy.typing as npt

from audiogen_studio.evaluation.common import EvaluationError, as_mono
from audiogen_studio.evaluation.music_quality import (
    MusicContinuationScores,
    score_music_continuation,
)
from audiogen_studio.evaluation.seam import SeamScores, score_seam
from audiogen_studio.evaluation.speech_quality import (
    SpeechContinuationScores,
    score_speech_continuation,
)

Kind = Literal["speech", "music"]
KINDS: tuple[Kind, ...] = ("speech", "music")
MIN_PART_SECONDS = 0.5


@dataclass(frozen=True, slots=True)
class ContinuationScores:
    """All figures of one take.

    Attributes:
        kind: ``"speech"`` or ``"music"``.
        sample_rate: rate the take was scored at.
        prompt_seconds, continuation_seconds: lengths of both parts.
        seam: click and loudness jump at the junction (``None`` when the prompt is too short to
            sample its natural range).
        speech: speech figures (``kind="speech"``), else ``None``.
        music: music figures (``kind="music"``), else ``None``.
        level_difference_db: the continuation's level (mean power, dB) minus the prompt's:
            how much louder (or, negative, softer) the continuation is than its prompt
            (``None`` when either part is silent).
    """

    kind: Kind
    sample_rate: int
    prompt_seconds: float
    continuation_seconds: float
    seam: SeamScores | None
    speech: SpeechContinuationScores | None = None
    music: MusicContinuationScores | None = None
    level_difference_db: float | None = None


def level_difference_db(prompt: npt.ArrayLike, continuation: npt.ArrayLike) -> float | None:
    """Mean power of ``continuation [T]`` over that of ``prompt [T']``, in dB (``None`` when
    either is silent: below -120 dB FS)."""
    powers = [
        float(np.mean(np.square(as_mono(x).astype(np.float64)))) for x in (prompt, continuation)
    ]
    if min(powers) < 1e-12:
        return None
    return float(10.0 * np.log10(powers[1] / powers[0]))


def score_continuation(
    take: npt.ArrayLike,
    rate: int,
    prompt_frames: int,
    kind: Kind,
    *,
    with_dnsmos: bool = True,
    seed: int = 0,
) -> ContinuationScores:
    """Score ``take [T]`` (or ``[C, T]``) at ``rate`` whose first ``prompt_frames`` samples
    are the prompt.

    Raises:
        EvaluationError: an unknown kind, or a prompt or continuation shorter than 0.5 s.
    """
    if kind not in KINDS:
        raise EvaluationError(f"unknown kind {kind!r}: use speech or music")
    x = as_mono(take)
    j = int(prompt_frames)
    min_frames = round(MIN_PART_SECONDS * rate)
    if j < min_frames or x.shape[0] - j < min_frames:
        raise EvaluationError(
            f"prompt ({j / rate:.2f} s) and continuation ({(x.shape[0] - j) / rate:.2f} s) "
            f"must each be at least {MIN_PART_SECONDS} s"
        )
    prompt, continuation = x[:j], x[j:]
    try:
        seam: SeamScores | None = score_seam(x, rate, j, seed=seed)
    except EvaluationError:
        seam = None
    speech = music = None
    if kind == "speech":
        speech = score_speech_continuation(prompt, continuation, rate, with_dnsmos=with_dnsmos)
    else:
        music = score_music_continuation(prompt, continuation, rate)
    return ContinuationScores(
        kind=kind,
        sample_rate=rate,
        prompt_seconds=j / rate,
        continuation_seconds=(x.shape[0] - j) / rate,
        seam=seam,
        speech=speech,
        music=music,
        level_difference_db=level_difference_db(prompt, continuation),
    )


def load_take(
    take_path: str | Path,
    *,
    prompt_path: str | Path | None = None,
    prompt_seconds: float | None = None,
) -> tuple[npt.NDArray[np.float32], int, int]:
    """``(take [T] mono, rate, prompt_frames)`` of a take file whose prompt is ``prompt_path``
    (its length sets the junction) or ``prompt_seconds`` long (which wins when both are given).

    Raises:
        EvaluationError: neither is given, or the junction is not inside the take.
        AudioFileError: an unreadable file.
    """
    from audiogen_studio.audio import io

    clip = io.load(take_path)
    take = as_mono(clip.samples)
    if prompt_seconds is not None:
        if not prompt_seconds > 0:
            raise EvaluationError(f"prompt seconds must be positive, got {prompt_seconds}")
        frames = round(prompt_seconds * clip.rate)
    elif prompt_path is not None:
        meta = io.info(prompt_path)
        frames = round(meta.frames * clip.rate / meta.rate)
    else:
        raise EvaluationError("give the prompt file or its length in seconds")
    if not 0 < frames < take.shape[0]:
        raise EvaluationError(
            f"{take_path}: the prompt ({frames / clip.rate:.2f} s) must be shorter than the "
            f"take ({take.shape[0] / clip.rate:.2f} s), which holds prompt + continuation"
        )
    return take, clip.rate, frames
