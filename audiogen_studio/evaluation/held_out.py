"""Evaluate a bundle on the held-out split of a corpus: its codec, and its continuations.

Corpora are those of ``audiogen-studio corpus`` (``manifest.jsonl`` with a ``split`` per entry;
the ``test`` split holds voices and instruments no model trained on). Clips are taken round-robin
over speakers/instruments (``speaker_id``), so a few clips already cover several voices.

- :func:`evaluate_codec_on_corpus`: the codec against the clips, next to Opus at the same and at
  double the bitrate (:mod:`~audiogen_studio.evaluation.codec_quality`).
- :func:`evaluate_continuations`: each clip's first ``prompt_seconds`` are continued by the
  bundle's engine for ``seconds``; the take is scored
  (:func:`~audiogen_studio.evaluation.continuation.score_continuation`), and so is the *real*
  continuation (the clip's next ``seconds``), the ceiling the metrics can reach on that material.
  The real-time factor is compute seconds per generated second after one warm-up request.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from audiogen_studio.evaluation.codec_quality import (
    CodecLike,
    CodecReport,
    codec_round_trip,
    evaluate_codec,
)
from audiogen_studio.evaluation.common import (
    EvaluationError,
    as_mono,
    finite,
    mean_or_none,
    resample_mono,
)
from audiogen_studio.evaluation.continuation import ContinuationScores, Kind, score_continuation
from audiogen_studio.evaluation.report import DECIMALS, TARGETS, Target, figure

log = logging.getLogger(__name__)

MANIFEST = "manifest.jsonl"
WARMUP_SECONDS = 0.5


@dataclass(frozen=True, slots=True)
class HeldOutClip:
    """One clip of a corpus split: mono float32 ``audio [T]`` at ``rate``."""

    id: str
    speaker_id: str
    path: Path
    audio: npt.NDArray[np.float32]
    rate: int

    @property
    def seconds(self) -> float:
        """Length in seconds."""
        return float(self.audio.shape[0] / self.rate)


def _manifest_rows(corpus: Path) -> list[dict[str, Any]]:
    from audiogen_studio.training.corpora.manifest import read_manifest

    if not (corpus / MANIFEST).is_file():
        raise EvaluationError(f"{corpus}: not a corpus folder (no {MANIFEST})")
    return read_manifest(corpus)


def held_out_clips(
    corpus: str | Path,
    *,
    split: str = "test",
    clips: int = 8,
    seconds: float | None = None,
    min_seconds: float = 1.0,
    rate: int = 16_000,
) -> list[HeldOutClip]:
    """Up to ``clips`` clips of ``split``, round-robin over speakers (sorted ids), each loaded
    mono at ``rate`` and cut to its first ``seconds`` (whole clip when ``None``); clips shorter
    than ``min_seconds`` (or than ``seconds``) are skipped.

    Raises:
        EvaluationError: not a corpus, or no usable clip in that split.
    """
    from audiogen_studio.audio import io

    folder = Path(corpus)
    rows = _manifest_rows(folder)
    in_split = [r for r in rows if r.get("split") == split]
    if not in_split:
        splits = sorted({str(r.get("split")) for r in rows})
        raise EvaluationError(
            f"{folder}: no clips in split '{split}' (splits: {', '.join(splits) or 'none'})"
        )
    need = max(min_seconds, seconds or 0.0)
    groups: dict[str, list[dict[str, Any]]] = {}
    for row in sorted(in_split, key=lambda r: str(r["id"])):
        if float(row.get("duration", 0.0)) >= need:
            groups.setdefault(str(row.get("speaker_id", row["id"])), []).append(row)
    order: list[dict[str, Any]] = []
    queues = [groups[k] for k in sorted(groups)]
    while len(order) < clips and any(queues):
        for q in queues:
            if q and len(order) < clips:
                order.append(q.pop(0))
    if not order:
        raise EvaluationError(f"{folder}: no clip in split '{split}' is {need:g} s long")
    out = []
    for row in order:
        path = folder / str(row["path"])
        clip = io.load(path, rate=rate, mono=True)
        audio = clip.samples[0]
        if seconds is not None:
            audio = audio[: round(seconds * rate)]
        out.append(
            HeldOutClip(
                id=str(row["id"]),
                speaker_id=str(row.get("speaker_id", "")),
                path=path,
                audio=np.ascontiguousarray(audio, dtype=np.float32),
                rate=rate,
            )
        )
    return out


def load_bundle_codec(model: str | Path, device: str = "cpu") -> tuple[str, Any]:
    """``(bundle name, codec)`` of a bundle's ``codec`` component (SoundStream or mel codec).

    Raises:
        EvaluationError: no such bundle, or no codec in it.
    """
    from audiogen_studio.engine.bundles import BundleError, find_bundle
    from audiogen_studio.models.checkpoint import CheckpointError
    from audiogen_studio.models.device import resolve_device

    try:
        bundle = find_bundle(model)
        if "codec" not in bundle.components:
            raise EvaluationError(f"bundle '{bundle.name}' has no codec (a {bundle.kind} bundle)")
        bundle.component_path("codec")
        try:
            from audiogen_studio.models.acoustic_codec import load_acoustic_codec as load
        except ImportError:  # before the mel codec existed
            from audiogen_studio.models.codec import load_codec as load
        codec = load(bundle.path, device=resolve_device(device))
    except (BundleError, CheckpointError) as exc:
        raise EvaluationError(str(exc)) from exc
    return bundle.name, codec


def evaluate_codec_on_corpus(
    codec: CodecLike,
    corpus: str | Path,
    *,
    split: str = "test",
    clips: int = 8,
    seconds: float = 6.0,
    n_q: int | None = None,
    opus: bool = True,
    with_visqol: bool = True,
    visqol_mode: str = "speech",
    with_dnsmos: bool = False,
    beam: int = 1,
) -> CodecReport:
    """:func:`~audiogen_studio.evaluation.codec_quality.evaluate_codec` on held-out clips of
    ``corpus`` (each cut to ``seconds``), at the codec's rate; ``beam``: the encoder's search
    width (1: greedy)."""
    rate = int(codec.config.sample_rate)
    chosen = held_out_clips(corpus, split=split, clips=clips, seconds=seconds, rate=rate)
    return evaluate_codec(
        codec,
        [c.audio for c in chosen],
        rate,
        clip_ids=[f"{c.id} ({c.speaker_id})" for c in chosen],
        n_q=n_q,
        opus=opus,
        with_visqol=with_visqol,
        visqol_mode=visqol_mode,
        with_dnsmos=with_dnsmos,
        beam=beam,
    )


def codec_summary(report: CodecReport) -> dict[str, Any]:
    """The codec's means next to Opus', with the PESQ-wb targets of the issue."""
    from audiogen_studio.evaluation.report import codec_targets

    systems = report.systems
    codec = systems["codec"].mean
    same = systems.get("opus_same")
    double = systems.get("opus_double")
    targets = codec_targets(
        same.mean.pesq_wb if same else None, double.mean.pesq_wb if double else None
    )
    out: dict[str, Any] = {
        "codec_kbps": report.codec_kbps,
        "encoder_beam": report.beam,
        "pesq_wb": figure(codec.pesq_wb, targets.get("pesq_wb")),
        "pesq_wb_moonshot": figure(codec.pesq_wb, targets.get("pesq_wb_moonshot")),
        "estoi": figure(codec.estoi),
        "visqol": figure(codec.visqol),
        "log_mel_l1": figure(codec.log_mel_l1),
    }
    if report.input_dnsmos is not None:
        out["dnsmos"] = figure(codec.dnsmos)
        out["dnsmos_input"] = figure(report.input_dnsmos)
    for name, sys_ in systems.items():
        if name == "codec":
            continue
        out[name] = {
            "kbps": sys_.kbps,
            "kbps_measured": sys_.kbps_measured,
            "pesq_wb": sys_.mean.pesq_wb,
            "estoi": sys_.mean.estoi,
            "visqol": sys_.mean.visqol,
            "log_mel_l1": sys_.mean.log_mel_l1,
            **({"dnsmos": sys_.mean.dnsmos} if report.input_dnsmos is not None else {}),
            "note": sys_.note,
        }
    return out


# --- continuations ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ClipContinuation:
    """One held-out prompt: the model's take and the real continuation, both scored.

    ``take`` is the take kept (the best-matching of ``match_scores``, one per take generated,
    when the evaluation keeps the best of several; else 0 and no scores).
    """

    id: str
    speaker_id: str
    seed: int
    generated_seconds: float
    compute_seconds: float
    model: ContinuationScores
    reference: ContinuationScores | None
    codec_reference: ContinuationScores | None = None
    take: int = 0
    match_scores: tuple[float, ...] = ()


@dataclass(frozen=True, slots=True)
class ContinuationReport:
    """A bundle's continuations of held-out prompts.

    Attributes:
        bundle, kind, corpus, split: what was evaluated.
        prompt_seconds, seconds: prompt and continuation lengths.
        rtf: compute seconds per generated second over all prompts (after a warm-up).
        summary: each figure's mean over the takes, next to its target.
        reference_summary: the same figures of the real continuations (the ceiling).
        codec_reference_summary: the same figures of the real continuations passed through the
            bundle's codec with the quantizers its LMs generate (AudioLM bundles only): the
            ceiling the codec leaves the LMs.
        clips: per-prompt results.
        best_of: takes generated per prompt, of which the best-matching one is scored
            (:mod:`~audiogen_studio.engine.take_ranking`, by ``rank_by``); 1: the one take.
    """

    bundle: str
    kind: Kind
    corpus: str
    split: str
    sample_rate: int
    prompt_seconds: float
    seconds: float
    temperature: float
    top_k: int | None
    rtf: float | None
    summary: dict[str, Any]
    reference_summary: dict[str, Any]
    clips: list[ClipContinuation] = field(default_factory=list)
    codec_reference_summary: dict[str, Any] = field(default_factory=dict)
    best_of: int = 1
    rank_by: str | None = None


def _fraction(values: Sequence[bool | None]) -> float | None:
    known = [v for v in values if v is not None]
    return float(np.mean(known)) if known else None


def _stderr(values: Sequence[float | None]) -> float | None:
    """Standard error of the mean of the finite values (``None`` below two of them)."""
    good = [float(v) for v in values if v is not None and np.isfinite(v)]
    if len(good) < 2:
        return None
    return float(np.std(good, ddof=1) / np.sqrt(len(good)))


def take_figures(score: ContinuationScores | None) -> dict[str, float | None]:
    """The figures of one take, by name (``None`` where a figure could not be measured): the
    seam's, then speech's or music's. :func:`summarize` averages them; benchmarks write them
    per prompt so that two runs on the same prompts can be compared prompt by prompt."""
    if score is None:
        return {}
    seam = score.seam
    out: dict[str, float | None] = {
        "seam_click_percentile": seam.click_percentile if seam else None,
        "seam_loudness_percentile": seam.loudness_percentile if seam else None,
        "seam_click_db": seam.click_db if seam else None,
        "seam_loudness_jump_db": seam.loudness_jump_db if seam else None,
        "level_difference_db": score.level_difference_db,
        "level_mismatch_db": (
            abs(score.level_difference_db) if score.level_difference_db is not None else None
        ),
    }
    if score.kind == "speech":
        sp = score.speech
        if sp is not None:
            out["speaker_cosine"] = sp.speaker_cosine
            out["dnsmos_ovrl"] = sp.dnsmos.ovrl if sp.dnsmos else None
            out["dnsmos_ovrl_prompt"] = sp.dnsmos_prompt.ovrl if sp.dnsmos_prompt else None
            out["dnsmos_sig"] = sp.dnsmos.sig if sp.dnsmos else None
            out["dnsmos_bak"] = sp.dnsmos.bak if sp.dnsmos else None
            out["pitch_difference_semitones"] = sp.pitch_difference_semitones
    elif score.music is not None:
        mu = score.music
        out["key_score"] = mu.key_score
        out["tempo_ratio"] = mu.tempo_ratio
        out["tempo_ratio_folded"] = mu.tempo_ratio_folded
        out["chroma_correlation"] = mu.chroma_correlation
    return {k: finite(v) for k, v in out.items()}


def summarize(scores: Sequence[ContinuationScores], kind: Kind) -> dict[str, Any]:
    """Mean figures over takes, each with its standard error over the takes (``stderr``: how
    far another set of prompts may move it), next to its target (and the share of takes that
    meet it)."""

    def fig(values: list[float | None], target: Target | None = None) -> dict[str, Any]:
        out = figure(mean_or_none(values), target)
        spread = _stderr(values)
        if spread is not None:
            out["stderr"] = round(spread, DECIMALS)
        if target is not None:
            out["takes_meeting"] = _fraction([target.met(v) for v in values])
        return out

    wanted = {
        "speech": ("speaker_cosine", "dnsmos_ovrl", "dnsmos_ovrl_prompt", "dnsmos_sig",
                   "dnsmos_bak", "pitch_difference_semitones"),
        "music": ("key_score", "tempo_ratio", "tempo_ratio_folded", "chroma_correlation"),
    }[kind]  # fmt: skip
    seam_names = ("seam_click_percentile", "seam_loudness_percentile", "seam_click_db",
                  "seam_loudness_jump_db", "level_difference_db", "level_mismatch_db")  # fmt: skip
    per_take = [take_figures(s) for s in scores]
    # the seam over every take; speech's and music's figures over the takes that have them
    kept = [t for t, s in zip(per_take, scores, strict=True) if getattr(s, kind) is not None]
    out: dict[str, Any] = {"takes": len(scores)}
    for name, takes in [(n, per_take) for n in seam_names] + [(n, kept) for n in wanted]:
        out[name] = fig([t.get(name) for t in takes], TARGETS.get(name))
    if kind == "speech":
        # the median too: a pitch tracker's octave error (±12) or a take without voiced frames
        # moves the mean of a few takes by semitones
        tracked = [
            float(v)
            for t in kept
            if (v := t.get("pitch_difference_semitones")) is not None and np.isfinite(v)
        ]
        out["pitch_difference_median_semitones"] = figure(
            float(np.median(tracked)) if tracked else None
        )
    return out


def _through_codec(
    engine: Any, audio: npt.NDArray[np.float32], rate: int
) -> npt.NDArray[np.float32] | None:
    """``audio [T]`` through an AudioLM engine's codec with the quantizers its generated audio
    is decoded from (``decode_quantizers``: by default coarse + fine), ``[T]``; ``None`` for
    engines without a codec (WaveNet)."""
    codec, layout = getattr(engine, "codec", None), getattr(engine, "layout", None)
    if codec is None or layout is None:
        return None
    n_q = int(
        getattr(engine, "decode_quantizers", None)
        or layout.coarse_quantizers + layout.fine_quantizers
    )
    return codec_round_trip(codec, audio, rate, n_q=n_q)


def evaluate_continuations(
    model: str | Path,
    corpus: str | Path,
    kind: Kind,
    *,
    split: str = "test",
    clips: int = 4,
    prompt_seconds: float = 3.0,
    seconds: float = 4.0,
    seed: int = 0,
    temperature: float = 1.0,
    top_k: int | None = None,
    device: str = "cpu",
    with_dnsmos: bool = True,
    with_reference: bool = True,
    engine: Any = None,
    stage_temperatures: Mapping[str, float] | None = None,
    adapt_steps: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    best_of: int = 1,
    rank_by: str | None = None,
    candidates: int | None = None,
    beat_guidance: bool | None = None,
) -> ContinuationReport:
    """Continue held-out prompts of ``corpus`` with bundle ``model`` and score the takes.

    Args:
        stage_temperatures: AudioLM per-stage factors on ``temperature`` (default: the
            bundle's tuned ones).
        adapt_steps: AudioLM prompt adaptation steps (default: the bundle's; its time counts
            in the real-time factor: the warm-up does not adapt, so no prompt is adapted
            before it is timed).
        engine: an already loaded :class:`~audiogen_studio.engine.api.Engine` to use instead of
            loading ``model`` (tests, or several runs on one engine).
        progress: called as ``progress(done, total)`` after each prompt.
        best_of: takes generated together per prompt; the one whose continuation matches its
            prompt best in ``rank_by`` (an aspect of
            :mod:`~audiogen_studio.engine.take_ranking`, needed when ``best_of > 1``) is
            scored. The real-time factor counts every take's compute and the ranking, per
            second of the kept take.
        rank_by: what ``best_of`` ranks the takes by, and the engine the candidates
            (``None``: the bundle's ``generation.rank_by`` for the candidates).
        candidates: candidate beginnings per take, the best kept early by the engine
            (:attr:`~audiogen_studio.engine.api.GenerationRequest.candidates`; ``None``: the
            bundle's default).
        beat_guidance: AudioLM music: keep to the prompt's beat or not
            (:attr:`~audiogen_studio.engine.api.GenerationRequest.beat_guidance`; ``None``:
            the bundle's default).

    Raises:
        EvaluationError: no such bundle, a bundle that cannot continue audio, no clip long
            enough for prompt + continuation, or ``best_of`` out of 1..8 or without ``rank_by``.
    """
    from audiogen_studio.audio.clip import Clip
    from audiogen_studio.engine.api import MAX_TAKES, GenerationError, GenerationRequest
    from audiogen_studio.engine.take_ranking import ASPECTS, match_score
    from audiogen_studio.engine.takes import collect

    if not 1 <= best_of <= MAX_TAKES:
        raise EvaluationError(f"best_of must be 1..{MAX_TAKES}, got {best_of}")
    if best_of > 1 and rank_by not in ASPECTS:
        raise EvaluationError(
            f"keeping the best of {best_of} takes needs rank_by {' or '.join(ASPECTS)}, "
            f"got {rank_by!r}"
        )
    if engine is None:
        from audiogen_studio.engine.loader import load_engine

        try:
            engine = load_engine(str(model), mode="continue", device=device)
        except GenerationError as exc:
            raise EvaluationError(str(exc)) from exc
    rate = int(engine.sample_rate)
    need = prompt_seconds + (seconds if with_reference else 0.0)
    chosen = held_out_clips(
        corpus, split=split, clips=clips, seconds=need, min_seconds=need, rate=rate
    )
    p = round(prompt_seconds * rate)
    # warm-up: JIT compilation and caches are not part of the real-time factor
    warm = GenerationRequest(
        prompt=Clip(chosen[0].audio[None, :p].copy(), rate),
        seconds=WARMUP_SECONDS,
        seed=0,
        adapt_steps=0,
    )
    try:
        for _ in engine.stream(warm):
            pass
    except GenerationError as exc:
        raise EvaluationError(f"{model}: {exc}") from exc
    results: list[ClipContinuation] = []
    total_compute = total_generated = 0.0
    for i, clip in enumerate(chosen):
        request = GenerationRequest(
            prompt=Clip(clip.audio[None, :p].copy(), rate),
            seconds=seconds,
            seed=seed + i,
            temperature=temperature,
            top_k=top_k,
            stage_temperatures=stage_temperatures,
            adapt_steps=adapt_steps,
            takes=best_of,
            candidates=candidates,
            rank_by=rank_by if rank_by in ASPECTS else None,
            beat_guidance=beat_guidance,
        )
        started = time.perf_counter()
        try:
            takes = collect(engine, request)
        except GenerationError as exc:
            raise EvaluationError(f"{model}, prompt {clip.id}: {exc}") from exc
        matches: tuple[float, ...] = ()
        take = takes[0]
        if best_of > 1:
            matches = tuple(
                match_score(t.prompt.samples, t.generated.samples, t.generated.rate, rank_by)  # type: ignore[arg-type]
                for t in takes
            )
            take = takes[int(np.argmax(matches))]
        compute = time.perf_counter() - started
        generated = take.generated.frames / take.generated.rate
        total_compute += compute
        total_generated += generated
        out = as_mono(take.output.samples)
        if take.output.rate != rate:
            out = resample_mono(out, take.output.rate, rate)
        scored = score_continuation(out, rate, p, kind, with_dnsmos=with_dnsmos, seed=seed + i)
        reference = coded = None
        if with_reference:
            real = clip.audio[: p + round(seconds * rate)]
            reference = score_continuation(
                real, rate, p, kind, with_dnsmos=with_dnsmos, seed=seed + i
            )
            resynthesized = _through_codec(engine, real, rate)
            if resynthesized is not None:
                # the prompt as the user gave it, then the codec's version of what followed
                joined = np.concatenate([real[:p], resynthesized[p:]])
                coded = score_continuation(
                    joined, rate, p, kind, with_dnsmos=with_dnsmos, seed=seed + i
                )
        results.append(
            ClipContinuation(
                id=clip.id,
                speaker_id=clip.speaker_id,
                seed=seed + i,
                generated_seconds=generated,
                compute_seconds=compute,
                model=scored,
                reference=reference,
                codec_reference=coded,
                take=take.index,
                match_scores=matches,
            )
        )
        if progress is not None:
            progress(i + 1, len(chosen))
    rtf = total_compute / total_generated if total_generated > 0 else None
    summary = summarize([r.model for r in results], kind)
    summary["rtf"] = figure(rtf, TARGETS["rtf"])
    reference_summary = (
        summarize([r.reference for r in results if r.reference is not None], kind)
        if with_reference
        else {}
    )
    coded_scores = [r.codec_reference for r in results if r.codec_reference is not None]
    return ContinuationReport(
        bundle=str(getattr(engine, "name", model)),
        kind=kind,
        corpus=str(corpus),
        split=split,
        sample_rate=rate,
        prompt_seconds=prompt_seconds,
        seconds=seconds,
        temperature=temperature,
        top_k=top_k,
        rtf=rtf,
        summary=summary,
        reference_summary=reference_summary,
        clips=results,
        codec_reference_summary=summarize(coded_scores, kind) if coded_scores else {},
        best_of=best_of,
        rank_by=rank_by if best_of > 1 else None,
    )
