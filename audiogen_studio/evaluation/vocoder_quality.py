"""How well a mel-conditioned WaveNet vocoder (van den Oord et al. 2016, §3.2 "conditional
WaveNets", on log-mel frames as in Shen et al. 2018 §2.2) re-synthesizes held-out speech.

Each held-out clip ``[T]`` is vocoded from its own log-mel frames (``models/wavenet.log_mel``)
and scored against the original with the codec figures (PESQ-wb, ESTOI, ViSQOL, log-mel L1:
:func:`~audiogen_studio.evaluation.codec_quality.score_pair`). The baseline beside it needs no
training: Griffin-Lim (Griffin & Lim 1984; torchaudio, 32 iterations, momentum 0.99) from the
*same* mel frames, after a least-squares inverse of the mel filterbank. A vocoder that does not
beat it has learned little.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from audiogen_studio.evaluation.codec_quality import CodecScores, score_pair
from audiogen_studio.evaluation.common import EvaluationError
from audiogen_studio.evaluation.held_out import held_out_clips

GRIFFIN_LIM_ITERS = 32


def griffin_lim_from_log_mel(audio: npt.ArrayLike, config: Any) -> npt.NDArray[np.float32]:
    """Samples ``[T]`` rebuilt from the vocoder's own log-mel frames of ``audio`` by Griffin-Lim.

    ``config`` is a :class:`~audiogen_studio.models.wavenet.WaveNetConfig` with mel channels.
    Its frame ``j`` is centred on sample ``j·hop + hop/2`` while an ISTFT frame ``j`` is centred
    on ``j·hop``: the output is delayed by ``hop/2`` samples to line up with the input.
    """
    import torchaudio

    from audiogen_studio.models.wavenet import log_mel

    x = np.asarray(audio, dtype=np.float32)
    hop = int(config.hop_length)
    n_fft = 4 * hop
    rate = int(config.sample_rate)
    with torch.no_grad():
        mel = log_mel(torch.from_numpy(x.copy()), config).exp()  # [1, M, F]
        inverse = torchaudio.transforms.InverseMelScale(
            n_stft=n_fft // 2 + 1,
            n_mels=int(config.mel_channels),
            sample_rate=rate,
            f_min=0.0,
            f_max=rate / 2,
            norm="slaney",
            mel_scale="slaney",
        )
        magnitude = inverse(mel).clamp_min(0.0)  # [1, n_fft/2 + 1, F]
        torch.manual_seed(0)  # Griffin-Lim starts from random phases
        griffin_lim = torchaudio.transforms.GriffinLim(
            n_fft=n_fft,
            win_length=n_fft,
            hop_length=hop,
            power=1.0,
            n_iter=GRIFFIN_LIM_ITERS,
            momentum=0.99,
        )
        y = griffin_lim(magnitude)[0].numpy()
    y = np.concatenate([np.zeros(hop // 2, dtype=np.float32), y])
    out = np.zeros(x.shape[0], dtype=np.float32)
    n = min(out.shape[0], y.shape[0])
    out[:n] = y[:n]
    return out


@dataclass(frozen=True, slots=True)
class VocoderReport:
    """Mean scores of the vocoder and of Griffin-Lim over the same held-out clips.

    Attributes:
        bundle: the vocoder bundle's name; clip_ids: ``"id (speaker)"`` of each clip.
        vocoder, griffin_lim: mean :class:`CodecScores`; per_clip: the vocoder's per clip.
        rtf: the vocoder's compute seconds per second of audio.
    """

    bundle: str
    sample_rate: int
    clip_ids: list[str]
    vocoder: CodecScores
    griffin_lim: CodecScores
    per_clip: list[CodecScores]
    rtf: float
    temperature: float

    def summary(self) -> dict[str, Any]:
        """JSON-ready figures (the vocoder's beside the baseline's)."""

        def fields(s: CodecScores) -> dict[str, float | None]:
            return {
                "pesq_wb": s.pesq_wb,
                "estoi": s.estoi,
                "visqol": s.visqol,
                "log_mel_l1": s.log_mel_l1,
            }

        return {
            "bundle": self.bundle,
            "clips": self.clip_ids,
            "temperature": self.temperature,
            "rtf": round(self.rtf, 3),
            "vocoder": fields(self.vocoder),
            "griffin_lim": fields(self.griffin_lim),
            "beats_griffin_lim": (
                None
                if self.vocoder.pesq_wb is None or self.griffin_lim.pesq_wb is None
                else self.vocoder.pesq_wb > self.griffin_lim.pesq_wb
            ),
        }


def evaluate_vocoder(
    engine: Any,
    clips: Sequence[npt.ArrayLike],
    *,
    clip_ids: Sequence[str] | None = None,
    temperature: float = 1.0,
    seed: int = 0,
    with_visqol: bool = True,
) -> VocoderReport:
    """Vocode each clip ``[T]`` (at ``engine.sample_rate``) with a loaded vocoder engine and
    score it and Griffin-Lim against the clip.

    Raises:
        EvaluationError: no clips, or the engine is not a mel vocoder.
    """
    from audiogen_studio.audio.clip import Clip
    from audiogen_studio.engine.api import GenerationError, GenerationRequest
    from audiogen_studio.engine.takes import collect

    if not clips:
        raise EvaluationError("no clips to vocode")
    config = getattr(engine, "config", None)
    if config is None or int(getattr(config, "mel_channels", 0)) < 1:
        raise EvaluationError(f"{getattr(engine, 'name', engine)} is not a mel vocoder")
    rate = int(engine.sample_rate)
    ids = list(clip_ids) if clip_ids is not None else [f"clip{i}" for i in range(len(clips))]
    ours: list[CodecScores] = []
    baseline: list[CodecScores] = []
    compute = audio_seconds = 0.0
    for i, clip in enumerate(clips):
        ref = np.asarray(clip, dtype=np.float32)
        request = GenerationRequest(
            prompt=Clip(ref[None], rate),
            mode="vocode",
            seed=seed + i,
            temperature=temperature,
            chunk_seconds=0.5,
        )
        began = time.perf_counter()
        try:
            take = collect(engine, request)[0]
        except GenerationError as exc:
            raise EvaluationError(f"{ids[i]}: {exc}") from exc
        compute += time.perf_counter() - began
        audio_seconds += ref.shape[0] / rate
        ours.append(score_pair(ref, take.generated.samples[0], rate, with_visqol=with_visqol))
        rebuilt = griffin_lim_from_log_mel(ref, config)
        baseline.append(score_pair(ref, rebuilt, rate, with_visqol=with_visqol))
    return VocoderReport(
        bundle=str(getattr(engine, "name", "")),
        sample_rate=rate,
        clip_ids=ids,
        vocoder=CodecScores.mean(ours),
        griffin_lim=CodecScores.mean(baseline),
        per_clip=ours,
        rtf=compute / max(audio_seconds, 1e-9),
        temperature=temperature,
    )


def evaluate_vocoder_on_corpus(
    model: str | Path,
    corpus: str | Path,
    *,
    split: str = "test",
    clips: int = 4,
    seconds: float = 3.0,
    temperature: float = 1.0,
    device: str = "cpu",
    with_visqol: bool = True,
) -> VocoderReport:
    """:func:`evaluate_vocoder` of bundle ``model`` on held-out clips of ``corpus``.

    Raises:
        EvaluationError: no such vocoder bundle, not a corpus, no usable clip.
    """
    from audiogen_studio.engine.api import GenerationError
    from audiogen_studio.engine.bundles import BundleError
    from audiogen_studio.engine.loader import load_engine
    from audiogen_studio.models.checkpoint import CheckpointError

    try:
        engine = load_engine(str(model), mode="vocode", device=device)
    except (BundleError, CheckpointError, GenerationError) as exc:
        raise EvaluationError(str(exc)) from exc
    chosen = held_out_clips(
        corpus, split=split, clips=clips, seconds=seconds, rate=int(engine.sample_rate)
    )
    return evaluate_vocoder(
        engine,
        [c.audio for c in chosen],
        clip_ids=[f"{c.id} ({c.speaker_id})" for c in chosen],
        temperature=temperature,
        with_visqol=with_visqol,
    )
