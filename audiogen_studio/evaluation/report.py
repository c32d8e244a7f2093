"""Evaluation results as JSON: dataclasses → plain objects, and the issue's targets.

Every result type of :mod:`audiogen_studio.evaluation` is a dataclass; :func:`to_jsonable`
turns any nesting of them (and numpy scalars/arrays) into JSON-ready objects, with NaN and
infinities as ``null`` and floats rounded to 4 decimals. :data:`TARGETS` lists the targets of
issue 6 (measured on held-out voices and instruments); :func:`figure` puts a value next to its
target and says whether it is met.
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

Op = Literal[">=", "<=", ">", "within"]
DECIMALS = 4


@dataclass(frozen=True, slots=True)
class Target:
    """A target: ``value op bound`` (``within``: ``low <= value <= high``)."""

    op: Op
    bound: float
    high: float | None = None
    note: str = ""

    def met(self, value: float | None) -> bool | None:
        """Whether ``value`` meets the target (``None`` when there is no value)."""
        if value is None or not math.isfinite(value):
            return None
        if self.op == ">=":
            return value >= self.bound
        if self.op == ">":
            return value > self.bound
        if self.op == "<=":
            return value <= self.bound
        assert self.high is not None
        return self.bound <= value <= self.high

    def describe(self) -> str:
        """E.g. ``">= 0.8"`` or ``"0.95..1.05"``."""
        if self.op == "within":
            return f"{self.bound:g}..{self.high:g}"
        return f"{self.op} {self.bound:g}"


#: Issue 6 targets. The codec targets are relative to Opus and are set per run by
#: :func:`codec_targets`.
TARGETS: dict[str, Target] = {
    "speaker_cosine": Target(">=", 0.80, note="same speaker scores >= 0.92, different <= 0.75"),
    "dnsmos_ovrl": Target(">=", 2.8),
    "key_score": Target(">=", 0.7, note="mir_eval weighted score"),
    "tempo_ratio": Target("within", 0.95, 1.05, note="continuation / prompt tempo, +-5 %"),
    "seam_click_percentile": Target(
        "<=", 95.0, note="within the prompt's own natural range (its 95th percentile)"
    ),
    "seam_loudness_percentile": Target("<=", 95.0, note="within the prompt's natural range"),
    "rtf": Target("<=", 0.5, note="compute seconds per generated second, 2-core CPU"),
}


def codec_targets(
    opus_same_pesq: float | None, opus_double_pesq: float | None
) -> dict[str, Target]:
    """The codec targets of one run: PESQ-wb above Opus at the same bitrate; the moonshot at or
    above Opus at double the bitrate."""
    out: dict[str, Target] = {}
    if opus_same_pesq is not None:
        out["pesq_wb"] = Target(">", opus_same_pesq, note="above Opus at the same bitrate")
    if opus_double_pesq is not None:
        out["pesq_wb_moonshot"] = Target(
            ">=", opus_double_pesq, note="moonshot: Opus at double the bitrate"
        )
    return out


def figure(value: float | None, target: Target | None = None) -> dict[str, Any]:
    """``{"value", "target", "met"}`` (``target``/``met`` omitted without a target)."""
    out: dict[str, Any] = {"value": _number(value)}
    if target is not None:
        out["target"] = target.describe()
        out["met"] = target.met(value)
        if target.note:
            out["note"] = target.note
    return out


def _number(value: Any) -> Any:
    if value is None:
        return None
    v = float(value)
    return round(v, DECIMALS) if math.isfinite(v) else None


def to_jsonable(obj: Any) -> Any:
    """``obj`` (dataclasses, mappings, sequences, numpy values, paths) as JSON-ready objects."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, Mapping):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, bool | np.bool_):
        return bool(obj)
    if isinstance(obj, int | np.integer):
        return int(obj)
    if isinstance(obj, float | np.floating):
        return _number(obj)
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())
    if isinstance(obj, list | tuple):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    return obj


def dumps(obj: Any) -> str:
    """Indented JSON of ``obj`` (via :func:`to_jsonable`; no NaN ever)."""
    return json.dumps(to_jsonable(obj), indent=2, allow_nan=False)


def write(obj: Any, path: str | Path | None = None) -> None:
    """JSON of ``obj`` to ``path`` (written atomically), or to stdout when ``None``/``"-"``."""
    text = dumps(obj) + "\n"
    if path is None or str(path) == "-":
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    target = Path(path)
    tmp = target.with_name(f".{target.name}.partial")
    try:
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(target)
    finally:
        tmp.unlink(missing_ok=True)
