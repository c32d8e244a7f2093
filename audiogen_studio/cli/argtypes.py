"""argparse ``type=`` validators shared by the commands: each turns bad text into a usage error."""

from __future__ import annotations

import argparse
import math
from typing import Any


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


def positive_int_list(text: str) -> tuple[int, ...]:
    """``3`` or ``3,4,8``: integers >= 1."""
    parts = [p.strip() for p in text.split(",") if p.strip()]
    if not parts:
        raise argparse.ArgumentTypeError("give at least one integer")
    return tuple(positive_int(p) for p in parts)


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


def adaptation_settings(text: str) -> dict[str, Any]:
    """``steps=12,lr=8e-4[,mix=0.5,blocks=2,seconds=2,windows=1,stages=coarse+semantic]``:
    an AudioLM bundle's prompt adaptation defaults (``engine/prompt_adaptation.py``); ``off``
    removes them."""
    from audiogen_studio.engine.adaptation_settings import AdaptationSettings
    from audiogen_studio.engine.api import GenerationError

    if text.strip().lower() in ("off", "none", "0"):
        return {}
    raw: dict[str, Any] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = part.partition("=")
        key, value = key.strip(), value.strip()
        if not sep:
            raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {part!r}")
        try:
            if key in ("steps", "windows", "blocks"):
                raw[key] = int(value)
            elif key in ("lr", "seconds", "mix"):
                raw[key] = float(value)
            elif key == "stages":
                raw[key] = [s.strip() for s in value.split("+") if s.strip()]
            else:
                raw[key] = value  # rejected below with the known keys
        except ValueError:
            raise argparse.ArgumentTypeError(f"{key} must be a number, got {value!r}") from None
    try:
        return AdaptationSettings.from_dict(raw).to_dict()
    except GenerationError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def beat_guidance_settings(text: str) -> dict[str, Any] | bool:
    """``on``, ``off`` or ``strength=3[,width_seconds=0.03,off_beat=0.3,min_clarity=0]``: a
    music bundle's beat guidance (``engine/beat_guidance.py``); ``off`` removes it."""
    from audiogen_studio.engine.api import GenerationError
    from audiogen_studio.engine.beat_guidance import BeatGuidanceSettings

    word = text.strip().lower()
    if word in ("on", "off"):
        return word == "on"
    raw: dict[str, Any] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = part.partition("=")
        if not sep:
            raise argparse.ArgumentTypeError(f"expected on, off or KEY=VALUE, got {part!r}")
        try:
            raw[key.strip()] = float(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{key} must be a number, got {value!r}") from None
    try:
        return BeatGuidanceSettings.from_generation({"beat_guidance": raw}).to_dict()
    except GenerationError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
