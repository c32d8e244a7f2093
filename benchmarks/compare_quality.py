"""Two ``benchmarks/quality.py`` runs on the same prompts, compared prompt by prompt (JSON).

For every continuation figure, over the prompts both runs scored (matched by clip id): the mean
of ``B - A``, its standard error and their ratio ``z``
(:mod:`audiogen_studio.evaluation.paired`: the standard error of each run's own mean hides
what pairing shows). Both reports need ``per_clip`` (quality.py writes it) and should come from
the same corpus, split, ``--clips`` and ``--seed``.

Run::

    .venv/bin/python benchmarks/quality.py --model models/music --speech '' --music CORPUS \\
        --split valid --clips 64 --seed 500 --no-codec -o a.json
    .venv/bin/python benchmarks/quality.py --model my-music --speech '' --music CORPUS \\
        --split valid --clips 64 --seed 500 --no-codec -o b.json
    .venv/bin/python benchmarks/compare_quality.py a.json b.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from audiogen_studio.evaluation.paired import paired_differences

SECTIONS = ("speech_continuation", "music_continuation")


def _per_clip(report: dict[str, Any], section: str) -> dict[str, dict[str, float | None]]:
    rows = report.get(section, {}).get("per_clip")
    if not isinstance(rows, list):
        return {}
    return {str(r["id"]): dict(r.get("model") or {}) for r in rows}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("a", help="quality.py JSON of the baseline")
    ap.add_argument("b", help="quality.py JSON of the candidate")
    args = ap.parse_args(argv)
    reports = []
    for path in (args.a, args.b):
        try:
            reports.append(json.loads(Path(path).read_text(encoding="utf-8")))
        except (OSError, ValueError) as exc:
            print(f"compare_quality: {path}: {exc}", file=sys.stderr)
            return 2
    result: dict[str, Any] = {"a": args.a, "b": args.b}
    for section in SECTIONS:
        a, b = (_per_clip(r, section) for r in reports)
        if a and b:
            result[section] = paired_differences(a, b)
    if len(result) == 2:
        print(
            "compare_quality: no continuation section with per_clip figures in both reports "
            "(rerun benchmarks/quality.py)",
            file=sys.stderr,
        )
        return 2
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
