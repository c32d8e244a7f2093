"""Two evaluations of the same held-out prompts, compared prompt by prompt.

Held-out prompts differ far more from one another than two models differ on one prompt, so the
standard error of each run's mean hides differences that a paired comparison shows (the paired
t statistic; Student 1908): for every figure, over the prompts both runs scored, the mean of
``b - a`` and that mean's standard error, and their ratio ``z`` (|z| above ~2: unlikely to be
noise).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

__all__ = ["paired_differences"]

Figures = Mapping[str, float | None]


def paired_differences(
    a: Mapping[str, Figures], b: Mapping[str, Figures]
) -> dict[str, dict[str, float | int | None]]:
    """``{figure: {prompts, a, b, difference, stderr, z}}`` of two runs' per-prompt figures
    (``{prompt id: {figure: value}}``), over the prompts where both have the figure.

    ``a`` and ``b`` are the two runs' means over those prompts, ``difference`` the mean of
    ``b - a``, ``stderr`` its standard error (``None`` for one prompt), ``z`` their ratio
    (``None`` when the differences do not vary).
    """
    common = sorted(a.keys() & b.keys())
    names = sorted({n for c in common for n in a[c]} & {n for c in common for n in b[c]})
    out: dict[str, dict[str, float | int | None]] = {}
    for name in names:
        pairs = [
            (float(x), float(y))
            for c in common
            if (x := a[c].get(name)) is not None and (y := b[c].get(name)) is not None
        ]
        n = len(pairs)
        if not n:
            continue
        diffs = [y - x for x, y in pairs]
        mean = sum(diffs) / n
        se = math.sqrt(sum((d - mean) ** 2 for d in diffs) / (n - 1) / n) if n > 1 else None
        out[name] = {
            "prompts": n,
            "a": round(sum(x for x, _ in pairs) / n, 4),
            "b": round(sum(y for _, y in pairs) / n, 4),
            "difference": round(mean, 4),
            "stderr": None if se is None else round(se, 4),
            "z": round(mean / se, 2) if se else None,
        }
    return out
