"""argparse ``type=`` validators shared by the commands: each turns bad text into a usage error."""

from __future__ import annotations

import argparse
import math


def _number(text: str, kind: type[int] | type[float]) -> float:
    try:
        return kind(text)
    except ValueError:
        noun = "an integer" if kind is int else "a number"
        raise argparse.ArgumentTypeError(f"not {noun}: {text!r}") from None


def positive_int(text: str) -> int:
    """An integer >= 1."""
    value = int(_number(text, int))
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {text}")
    return value


def non_negative_int(text: str) -> int:
    """An integer >= 0."""
    value = int(_number(text, int))
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text}")
    return value


def positive_float(text: str) -> float:
    """A finite number > 0."""
    value = _number(text, float)
    if not value > 0 or not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def non_negative_float(text: str) -> float:
    """A finite number >= 0."""
    value = _number(text, float)
    if not value >= 0 or not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be 0 or a positive number, got {text}")
    return value


def split_fraction(text: str) -> float:
    """A share of the data held out for a split: within [0, 0.5)."""
    value = _number(text, float)
    if not 0 <= value < 0.5:
        raise argparse.ArgumentTypeError(f"must be within [0, 0.5), got {text}")
    return value


def stage_temperatures(text: str) -> dict[str, float]:
    """``semantic=0.9,coarse=0.8,fine=0.5``: per-stage temperature factors of an AudioLM
    bundle (stages not named keep factor 1)."""
    from audiogen_studio.engine.api import GenerationError, check_stage_temperatures

    factors: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        stage, sep, value = part.partition("=")
        if not sep:
            raise argparse.ArgumentTypeError(f"expected STAGE=FACTOR, got {part!r}")
        factors[stage.strip()] = value.strip()
    if not factors:
        raise argparse.ArgumentTypeError("give at least one STAGE=FACTOR")
    try:
        return check_stage_temperatures(factors)
    except GenerationError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
