"""Tune an AudioLM bundle's per-stage temperature factors on held-out data; prints ONE JSON object.

Each ``--grid`` entry (``semantic=1,coarse=0.75,fine=0``; ``-`` for all factors 1) continues
the same ``--clips`` prompts of the ``--split`` split (default ``valid``: tune on validation
voices/instruments, report on ``test`` with ``benchmarks/quality.py``) with the same seeds, and
is scored like ``quality.py`` scores continuations: speaker cosine, DNSMOS and pitch difference
for speech; key score, tempo ratio and chroma correlation for music; the seam; the RTF. The
engine is loaded once and reused, so each entry costs only its generation and scoring. The
request temperature defaults to 1 and top-k to none, as in the app and the CLI, so the factors
found are the temperatures a user samples at by default.

``score`` ranks the entries by the issue's targets: speech ``speaker_cosine + dnsmos_ovrl / 5``
(both reach 1 at their best), music ``key_score + chroma_correlation``; ``best`` is
the top entry, ready for ``audiogen-studio models card BUNDLE --stage-temperatures ...``.

Run::

    .venv/bin/python benchmarks/sampling_sweep.py --model /tmp/bundles/speech \\
        --data /tmp/corpus_speech --kind speech --grid - fine=0 fine=0,coarse=0.75
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

import torch

from audiogen_studio.cli.argtypes import stage_temperatures
from audiogen_studio.evaluation import report
from audiogen_studio.evaluation.held_out import evaluate_continuations

#: figures of a continuation summary the table keeps
SHOWN = (
    "speaker_cosine",
    "dnsmos_ovrl",
    "pitch_difference_semitones",
    "key_score",
    "tempo_ratio",
    "chroma_correlation",
    "seam_click_percentile",
    "seam_loudness_percentile",
    "rtf",
)

#: the arguments every entry shares (passed to ``evaluate_continuations``)
SETTINGS = ("split", "clips", "prompt_seconds", "seconds", "seed", "temperature", "top_k")


def _value(summary: dict[str, Any], key: str) -> float | None:
    entry = summary.get(key)
    value = entry.get("value") if isinstance(entry, dict) else entry
    return float(value) if isinstance(value, int | float) else None


def score(kind: str, figures: dict[str, float | None]) -> float | None:
    """The ranking score of one entry (module doc); ``None`` when a figure is missing."""
    if kind == "speech":
        parts = (figures.get("speaker_cosine"), figures.get("dnsmos_ovrl"))
        weights = (1.0, 0.2)
    else:
        parts = (figures.get("key_score"), figures.get("chroma_correlation"))
        weights = (1.0, 1.0)
    known = [p for p in parts if p is not None]
    if len(known) < len(parts):
        return None
    return round(sum(w * p for w, p in zip(weights, known, strict=True)), 4)


def _grid_entry(text: str) -> dict[str, float]:
    return {} if text == "-" else stage_temperatures(text)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n", 1)[0])
    ap.add_argument("--model", required=True, help="AudioLM bundle name or folder")
    ap.add_argument("--data", required=True, help="corpus folder")
    ap.add_argument("--kind", required=True, choices=["speech", "music"])
    ap.add_argument("--grid", nargs="+", type=_grid_entry, required=True, metavar="STAGE=F,...")
    ap.add_argument("--split", default="valid")
    ap.add_argument("--clips", type=int, default=8)
    ap.add_argument("--prompt-seconds", type=float, default=3.0)
    ap.add_argument("--seconds", type=float, default=4.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--temperature", type=float, default=1.0)
    ap.add_argument("--top-k", type=int, default=0, help="0 (default): no top-k truncation")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("-o", "--output", default=None, help="also write the JSON here")
    a = ap.parse_args(argv)
    a.top_k = a.top_k or None
    torch.set_num_threads(a.threads)

    from audiogen_studio.engine.loader import load_engine

    started = time.perf_counter()
    engine = load_engine(a.model, mode="continue", device="cpu", engine="audiolm")
    rows: list[dict[str, Any]] = []
    settings = {k: getattr(a, k) for k in SETTINGS}
    for factors in a.grid:
        rep = evaluate_continuations(
            a.model,
            a.data,
            a.kind,
            **settings,
            stage_temperatures=factors,
            with_reference=False,
            engine=engine,
        )
        figures = {k: _value(rep.summary, k) for k in SHOWN if k in rep.summary}
        rows.append({"stage_temperatures": factors, "score": score(a.kind, figures), **figures})
        print(rows[-1], file=sys.stderr, flush=True)
    ranked = [r for r in rows if r["score"] is not None]
    best = max(ranked, key=lambda r: r["score"]) if ranked else None
    result = {
        "benchmark": "sampling_sweep",
        "model": a.model,
        "data": a.data,
        "kind": a.kind,
        "settings": settings,
        "rows": rows,
        "best": best,
        "best_flag": None
        if best is None
        else ",".join(f"{k}={v:g}" for k, v in best["stage_temperatures"].items()) or None,
        "seconds": round(time.perf_counter() - started, 1),
    }
    print(report.dumps(result))
    if a.output:
        report.write(result, a.output)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
