"""Automatic quality figures for a take, when the ``[eval]`` extra is installed (issue 7 §2).

The library records whatever :mod:`audiogen_studio.evaluation` can measure cheaply about a
take; without that package (or its optional dependencies) nothing is stored and nothing fails.
Every figure is a ``float`` under a stable name (``"seam_..."``, ``"dnsmos_..."``), kept in the
``quality`` table; a metric that raises is logged and skipped, never fatal to adding the take.
"""

from __future__ import annotations

import importlib
import logging
import math
from collections.abc import Mapping
from typing import Any, Literal

from audiogen_studio.audio.clip import Clip

log = logging.getLogger(__name__)

__all__ = ["Level", "available", "compute", "is_speech"]

#: which figures to compute: none, the cheap ones, or all (DNSMOS included)
Level = Literal["none", "fast", "all"]


def _evaluation() -> Any | None:
    try:
        return importlib.import_module("audiogen_studio.evaluation")
    except ImportError:
        return None


def available() -> bool:
    """Whether the evaluation package is importable (figures may still be skipped one by one
    when an optional dependency is missing)."""
    return _evaluation() is not None


def _finite(figures: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
    out: dict[str, float] = {}
    for key, value in figures.items():
        if isinstance(value, bool) or not isinstance(value, int | float):
            continue
        if math.isfinite(float(value)):
            out[f"{prefix}{key}"] = float(value)
    return out


def compute(
    output: Clip,
    prompt_frames: int,
    settings: Mapping[str, Any],
    *,
    level: Level = "fast",
) -> dict[str, float]:
    """Quality figures of a take (``output`` = prompt + continuation, ``prompt_frames`` of it
    the prompt); ``{}`` when the evaluation package is absent or ``level`` is ``"none"``.

    ``"fast"`` computes the seam figures (a few ms); ``"all"`` adds DNSMOS for speech, which
    took ~3 s per take on a 2-core CPU (measured), too slow to run on every take by default.

    * ``seam_click_db`` / ``seam_click_percentile`` / ``seam_loudness_jump_db`` /
      ``seam_loudness_percentile``: :func:`audiogen_studio.evaluation.seam.score_seam` at the
      junction (takes with a prompt of at least 0.6 s and 0.1 s of continuation);
    * ``dnsmos_ovrl`` / ``dnsmos_sig`` / ``dnsmos_bak`` / ``dnsmos_p808`` of the continuation,
      for speech (``settings["domain"] == "speech"``, or a model whose name says speech or
      voice): :func:`audiogen_studio.evaluation.speech_quality.dnsmos`.
    """
    if level == "none" or _evaluation() is None:
        return {}
    figures: dict[str, float] = {}
    for hook in (_seam, _dnsmos) if level == "all" else (_seam,):
        try:
            figures.update(hook(output, prompt_frames, settings))
        except ImportError as exc:
            log.debug("quality figure skipped (missing optional dependency): %s", exc)
        except Exception as exc:  # a metric must never stop a take being recorded
            if type(exc).__name__ in ("EvaluationError", "MissingExtraError"):
                log.debug("quality figure skipped: %s", exc)
            else:
                log.warning("quality figure failed: %s", exc)
    return figures


def _seam(output: Clip, prompt_frames: int, settings: Mapping[str, Any]) -> dict[str, float]:
    if prompt_frames <= 0 or prompt_frames >= output.frames:
        return {}
    seam = importlib.import_module("audiogen_studio.evaluation.seam")
    scores = seam.score_seam(output.samples, output.rate, prompt_frames)
    return _finite(
        {
            "click_db": scores.click_db,
            "click_percentile": scores.click_percentile,
            "loudness_jump_db": scores.loudness_jump_db,
            "loudness_percentile": scores.loudness_percentile,
        },
        "seam_",
    )


def is_speech(settings: Mapping[str, Any]) -> bool:
    """Whether a take's settings say it is speech (``domain``, or the model's name)."""
    if str(settings.get("domain", "")).lower() == "speech":
        return True
    model = str(settings.get("model", "")).lower()
    return any(word in model for word in ("speech", "voice"))


def _dnsmos(output: Clip, prompt_frames: int, settings: Mapping[str, Any]) -> dict[str, float]:
    if not is_speech(settings):
        return {}
    continuation = output.samples[:, prompt_frames:]
    if continuation.shape[-1] < output.rate:  # DNSMOS wants at least about a second
        return {}
    speech = importlib.import_module("audiogen_studio.evaluation.speech_quality")
    scores = speech.dnsmos(continuation, output.rate)
    values = {k: getattr(scores, k) for k in ("ovrl", "sig", "bak", "p808")}
    return _finite({k: v for k, v in values.items() if v is not None}, "dnsmos_")
