"""Quality of a bundle on held-out data, printed as ONE JSON object (issue 6 item 4).

Needs the optional ``[eval]`` extra and opus-tools. For the bundle (default ``speech``; any
AudioLM or WaveNet bundle works: a WaveNet has no codec, and a mel vocoder gets the
``vocoder`` figures instead) it runs, on the ``test`` split of the corpora (voices and
instruments no model trained on):

- ``codec``: the bundle's codec on ``--codec-clips`` speech clips of ``--codec-seconds``
  (music clips when no speech corpus is given; ViSQOL then in its audio mode):
  PESQ-wb, ESTOI, ViSQOL (speech mode), log-mel L1 and, for speech, DNSMOS (with the input's),
  next to Opus at the codec's bitrate (raised to Opus' 6 kbit/s floor when lower) and at double
  it. The codes are searched with a beam of ``--codec-beam`` (default: as ``codec encode``; 1:
  the greedy encoder that gives the LMs' tokens). Target: PESQ-wb above Opus at the same
  bitrate; moonshot: Opus at double.
- ``speech_continuation`` / ``music_continuation``: the first ``--prompt-seconds`` of
  ``--clips`` held-out clips continued by ``--seconds``; speaker cosine (≥ 0.80), DNSMOS OVRL
  (≥ 2.8), pitch difference; key score (≥ 0.7), tempo ratio (±5 %), chroma correlation; the
  seam's click and loudness percentiles among the prompt's own points (≤ 95); the real-time
  factor (≤ 0.5). Every figure is printed next to its target, each mean over the takes with its
  standard error (``stderr``); ``real_continuation`` holds the
  same figures for the clips' real next seconds: the ceiling these metrics reach on that data;
  ``codec_continuation`` (AudioLM bundles) scores those real seconds after the bundle's codec
  with the quantizers its LMs generate: the ceiling the codec leaves the LMs. ``per_clip``
  holds each prompt's figures, so that two runs on the same prompts (same corpus, split,
  ``--clips`` and ``--seed``) compare prompt by prompt: ``benchmarks/compare_quality.py``.
- ``vocoder`` (mel WaveNet vocoders only): ``--clips`` held-out speech clips of
  ``--prompt-seconds`` + ``--seconds`` re-synthesized from their log-mel, with the codec
  figures, beside Griffin-Lim from the same mel frames
  (``evaluation/vocoder_quality.py``).

Run::

    .venv/bin/python benchmarks/quality.py                      # shipped speech, /tmp corpora
    .venv/bin/python benchmarks/quality.py --model models/speech --clips 8 -o quality.json
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import torch

from audiogen_studio.cli.argtypes import stage_temperatures
from audiogen_studio.cli.codec import DEFAULT_ENCODE_BEAM
from audiogen_studio.engine.api import ASPECTS
from audiogen_studio.evaluation import report
from audiogen_studio.evaluation.common import EvaluationError
from audiogen_studio.evaluation.held_out import (
    codec_summary,
    evaluate_codec_on_corpus,
    evaluate_continuations,
    load_bundle_codec,
    take_figures,
)


def _loadavg() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


def _rounded(figures: dict[str, float | None]) -> dict[str, float | None]:
    return {k: None if v is None else round(v, report.DECIMALS) for k, v in figures.items()}


def _met(summary: dict[str, Any]) -> dict[str, bool | None]:
    return {k: v["met"] for k, v in summary.items() if isinstance(v, dict) and "met" in v}


def _bundle_kind(model: str) -> str | None:
    from audiogen_studio.engine.bundles import BundleError, find_bundle

    try:
        return find_bundle(model).kind
    except BundleError:
        return None  # reported by the evaluations themselves


def _finish(result: dict[str, Any], started: float, output: str | None) -> int:
    result["seconds"] = round(time.perf_counter() - started, 1)
    result["machine"]["loadavg_1m_after"] = _loadavg()
    text = report.dumps(result)
    print(text)
    if output:
        report.write(result, output)
    return 0


def _vocoder(a: argparse.Namespace, result: dict[str, Any], started: float) -> int:
    from audiogen_studio.evaluation.vocoder_quality import evaluate_vocoder_on_corpus

    try:
        rep = evaluate_vocoder_on_corpus(
            a.model,
            a.speech,
            split=a.split,
            clips=a.clips,
            seconds=a.prompt_seconds + a.seconds,
            temperature=a.temperature,
            device=a.device,
            with_visqol=not a.no_visqol,
        )
        result["vocoder"] = rep.summary()
    except EvaluationError as exc:
        result["vocoder"] = {"note": str(exc)}
    return _finish(result, started, a.output)


def _rank_by(a: argparse.Namespace) -> str | None:
    """``--rank-by``, else the bundle's ``generation.rank_by``."""
    if a.rank_by:
        return str(a.rank_by)
    from audiogen_studio.engine.bundles import find_bundle
    from audiogen_studio.engine.take_ranking import bundle_aspect

    return bundle_aspect(find_bundle(a.model).generation)


def _choose_after(a: argparse.Namespace) -> float:
    """Seconds the bundle generates candidate beginnings before it keeps one."""
    from audiogen_studio.engine.api import DEFAULT_CHOOSE_AFTER
    from audiogen_studio.engine.bundles import find_bundle

    return float(find_bundle(a.model).generation.get("choose_after", DEFAULT_CHOOSE_AFTER))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n", 1)[0])
    ap.add_argument("--model", default="speech", help="bundle name or folder")
    ap.add_argument("--speech", default="/tmp/corpus_speech", help="speech corpus ('' skips)")
    ap.add_argument("--music", default="/tmp/corpus_music", help="music corpus ('' skips)")
    ap.add_argument("--split", default="test")
    ap.add_argument("--codec-clips", type=int, default=8)
    ap.add_argument("--codec-seconds", type=float, default=6.0)
    ap.add_argument(
        "--codec-beam",
        type=int,
        default=DEFAULT_ENCODE_BEAM,
        help="the codec's encoder search width, as 'codec encode --beam' (1: greedy)",
    )
    ap.add_argument("--clips", type=int, default=4, help="prompts per corpus")
    ap.add_argument("--prompt-seconds", type=float, default=3.0)
    ap.add_argument("--seconds", type=float, default=4.0, help="continuation length")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--temperature", type=float, default=1.0)
    ap.add_argument("--top-k", type=int, default=None)
    ap.add_argument(
        "--stage-temperatures",
        type=stage_temperatures,
        default=None,
        metavar="STAGE=F,...",
        help="AudioLM per-stage factors on --temperature (default: the bundle's tuned ones)",
    )
    ap.add_argument(
        "--adapt-steps",
        type=int,
        default=None,
        help="AudioLM prompt adaptation steps (default: the bundle's; 0: none)",
    )
    ap.add_argument(
        "--best-of",
        type=int,
        default=1,
        metavar="N",
        help="generate N takes per prompt together and score the one that matches its prompt "
        "best (engine/take_ranking.py; the RTF counts all N)",
    )
    ap.add_argument(
        "--rank-by",
        choices=list(ASPECTS),
        default=None,
        help="what --best-of and --candidates rank by (default: the bundle's generation.rank_by)",
    )
    ap.add_argument(
        "--candidates",
        type=int,
        default=None,
        metavar="N",
        help="candidate beginnings per take, the best kept early (default: the bundle's)",
    )
    ap.add_argument(
        "--beat-guidance",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="AudioLM music: steer the semantic stage onto the prompt's beat, or not "
        "(default: the bundle's generation.beat_guidance; engine/beat_guidance.py)",
    )
    ap.add_argument("--no-codec", action="store_true", help="skip the codec figures")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--no-visqol", action="store_true")
    ap.add_argument("--no-opus", action="store_true")
    ap.add_argument("-o", "--output", default=None, help="also write the JSON here")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    started = time.perf_counter()
    result: dict[str, Any] = {
        "benchmark": "quality",
        "bundle": a.model,
        "split": a.split,
        "machine": {
            "cpu": platform.processor() or platform.machine(),
            "cpus": os.cpu_count(),
            "threads": a.threads,
            "device": a.device,
            "loadavg_1m_before": _loadavg(),
        },
        "settings": {
            "codec_clips": a.codec_clips,
            "codec_seconds": a.codec_seconds,
            "codec_beam": a.codec_beam,
            "clips": a.clips,
            "prompt_seconds": a.prompt_seconds,
            "seconds": a.seconds,
            "seed": a.seed,
            "temperature": a.temperature,
            "stage_temperatures": a.stage_temperatures,
            "top_k": a.top_k,
            "adapt_steps": a.adapt_steps,
            "best_of": a.best_of,
            "candidates": a.candidates,
            "choose_after": _choose_after(a) if (a.candidates or 1) > 1 else None,
            "rank_by": _rank_by(a) if a.best_of > 1 or (a.candidates or 1) > 1 else None,
            "beat_guidance": a.beat_guidance,
        },
    }
    targets: dict[str, Any] = {}
    kind = _bundle_kind(a.model)
    if kind == "wavenet-vocoder":
        return _vocoder(a, result, started)
    # the codec on speech when a speech corpus is given, else on music (ViSQOL's audio mode;
    # PESQ and ESTOI are speech measures, so for music read log-mel L1 and ViSQOL)
    codec_corpus, visqol_mode = (a.speech, "speech") if a.speech else (a.music, "audio")
    if codec_corpus and Path(codec_corpus).is_dir() and not a.no_codec:
        try:
            _, codec = load_bundle_codec(a.model, a.device)
            codec_report = evaluate_codec_on_corpus(
                codec,
                codec_corpus,
                split=a.split,
                clips=a.codec_clips,
                seconds=a.codec_seconds,
                opus=not a.no_opus,
                with_visqol=not a.no_visqol,
                visqol_mode=visqol_mode,
                with_dnsmos=visqol_mode == "speech",
                beam=a.codec_beam,
            )
            summary = codec_summary(codec_report)
            result["codec"] = summary
            result["codec_corpus"] = "speech" if codec_corpus == a.speech else "music"
            result["codec_clips"] = codec_report.clip_ids
            targets.update({f"codec_{k}": v for k, v in _met(summary).items()})
        except EvaluationError as exc:
            result["codec"] = {"note": str(exc)}
    for kind, corpus in (("speech", a.speech), ("music", a.music)):
        key = f"{kind}_continuation"
        if not corpus or not Path(corpus).is_dir():
            result[key] = {"note": f"no {kind} corpus at {corpus!r}"}
            continue
        try:
            rep = evaluate_continuations(
                a.model,
                corpus,
                kind,  # type: ignore[arg-type]
                split=a.split,
                clips=a.clips,
                prompt_seconds=a.prompt_seconds,
                seconds=a.seconds,
                seed=a.seed,
                temperature=a.temperature,
                stage_temperatures=a.stage_temperatures,
                top_k=a.top_k,
                adapt_steps=a.adapt_steps,
                device=a.device,
                best_of=a.best_of,
                candidates=a.candidates,
                rank_by=_rank_by(a) if a.best_of > 1 else a.rank_by,
                beat_guidance=a.beat_guidance,
            )
        except EvaluationError as exc:
            result[key] = {"note": str(exc)}
            continue
        result[key] = {
            "model": rep.summary,
            "real_continuation": rep.reference_summary,
            "codec_continuation": rep.codec_reference_summary,
            "clips": [f"{c.id} ({c.speaker_id})" for c in rep.clips],
            # prompt by prompt, so that two runs on the same prompts compare pairwise
            # (benchmarks/compare_quality.py)
            "per_clip": [
                {
                    "id": c.id,
                    "model": _rounded(take_figures(c.model)),
                    "real_continuation": _rounded(take_figures(c.reference)),
                    "codec_continuation": _rounded(take_figures(c.codec_reference)),
                    **({"take": c.take, "match_scores": c.match_scores} if a.best_of > 1 else {}),
                }
                for c in rep.clips
            ],
        }
        targets.update({f"{kind}_{k}": v for k, v in _met(rep.summary).items()})
    result["targets_met"] = targets
    return _finish(result, started, a.output)


if __name__ == "__main__":
    sys.exit(main())
