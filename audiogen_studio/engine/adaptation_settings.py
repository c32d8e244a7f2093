"""How an AudioLM engine adapts its LMs to a prompt: the settings alone, without torch (the
app's model cards read them in the GUI thread); the adaptation itself is
:mod:`audiogen_studio.engine.prompt_adaptation`."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from audiogen_studio.engine.api import MAX_ADAPT_STEPS, STAGES, GenerationError

__all__ = ["AdaptationSettings", "default_adapt_steps"]


@dataclass(frozen=True, slots=True)
class AdaptationSettings:
    """How an AudioLM engine adapts its LMs to a prompt (``bundle.json``
    ``generation.adaptation``; a request's ``adapt_steps`` overrides ``steps``).

    Attributes:
        steps: Adam steps on the prompt (0: no adaptation).
        lr: their learning rate (constant; Adam's moments start at zero for every prompt).
        stages: the LMs adapted (``semantic``, ``coarse``, ``fine``).
        windows: how many windows from the prompt's end one step trains on, as one batch.
        seconds: the prompt audio one window holds (``None``: as much as the LM's context,
            ``max_seq_len`` ids); a step's cost grows with it.
        mix: how far the weights used move towards the adapted ones, ``θ0 + mix·(θ − θ0)``:
            the weight-space ensemble of WiSE-FT (Wortsman et al. 2022, "Robust fine-tuning of
            zero-shot models", §2), which keeps more of the LM's general behaviour (here: the
            naturalness of its continuations) for most of the adaptation's gain. 1: the
            adapted weights as they are.
        blocks: train only the top ``blocks`` Transformer blocks of each adapted LM (and its
            final norm); the embeddings, the output projection and the lower blocks stay as
            they are, and the lower blocks' output is computed once per prompt, so a step
            costs about ``blocks / depth`` of a whole one. ``None``: every weight.
    """

    steps: int = 0
    lr: float = 1e-3
    stages: tuple[str, ...] = ("coarse",)
    windows: int = 1
    seconds: float | None = None
    mix: float = 1.0
    blocks: int | None = None

    def __post_init__(self) -> None:
        if isinstance(self.steps, bool) or not isinstance(self.steps, int):
            raise GenerationError(f"adaptation steps must be an integer, got {self.steps!r}")
        if not 0 <= self.steps <= MAX_ADAPT_STEPS:
            raise GenerationError(f"adaptation steps must be 0–{MAX_ADAPT_STEPS}, got {self.steps}")
        if not (isinstance(self.lr, int | float) and math.isfinite(self.lr) and self.lr > 0):
            raise GenerationError(f"adaptation lr must be a positive number, got {self.lr!r}")
        bad = [s for s in self.stages if s not in STAGES]
        if bad or not self.stages:
            raise GenerationError(
                f"adaptation stages must be among {', '.join(STAGES)}, got {list(self.stages)}"
            )
        if isinstance(self.windows, bool) or not isinstance(self.windows, int):
            raise GenerationError(f"adaptation windows must be an integer, got {self.windows!r}")
        if not 1 <= self.windows <= 16:
            raise GenerationError(f"adaptation windows must be 1–16, got {self.windows}")
        if self.seconds is not None and not (
            isinstance(self.seconds, int | float)
            and not isinstance(self.seconds, bool)
            and math.isfinite(self.seconds)
            and self.seconds > 0
        ):
            raise GenerationError(
                f"adaptation seconds must be a positive number, got {self.seconds!r}"
            )
        if not (
            isinstance(self.mix, int | float)
            and not isinstance(self.mix, bool)
            and math.isfinite(self.mix)
            and 0 < self.mix <= 1
        ):
            raise GenerationError(f"adaptation mix must be within (0, 1], got {self.mix!r}")
        if self.blocks is not None and (
            isinstance(self.blocks, bool) or not isinstance(self.blocks, int) or self.blocks < 1
        ):
            raise GenerationError(
                f"adaptation blocks must be a positive integer, got {self.blocks!r}"
            )

    @property
    def enabled(self) -> bool:
        """Whether any step is taken."""
        return self.steps > 0

    def with_steps(self, steps: int | None) -> AdaptationSettings:
        """These settings with ``steps`` (``None``: unchanged)."""
        if steps is None:
            return self
        return replace(self, steps=steps)

    def to_dict(self) -> dict[str, Any]:
        """JSON form (``bundle.json`` ``generation.adaptation``)."""
        return {
            "steps": self.steps,
            "lr": self.lr,
            "stages": list(self.stages),
            "windows": self.windows,
            "seconds": self.seconds,
            "mix": self.mix,
            "blocks": self.blocks,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AdaptationSettings:
        """Inverse of :meth:`to_dict`; unknown keys and bad values raise
        :class:`GenerationError`."""
        if not isinstance(data, Mapping):
            raise GenerationError(f"adaptation settings must be a mapping, got {data!r}")
        unknown = set(data) - {"steps", "lr", "stages", "windows", "seconds", "mix", "blocks"}
        if unknown:
            raise GenerationError(f"unknown adaptation setting(s): {', '.join(sorted(unknown))}")
        stages = data.get("stages", ["coarse"])
        if isinstance(stages, str) or not isinstance(stages, list | tuple):
            raise GenerationError(f"adaptation stages must be a list, got {stages!r}")
        return cls(
            steps=data.get("steps", 0),
            lr=data.get("lr", 1e-3),
            stages=tuple(stages),
            windows=data.get("windows", 1),
            seconds=data.get("seconds"),
            mix=data.get("mix", 1.0),
            blocks=data.get("blocks"),
        )


def default_adapt_steps(generation: Mapping[str, Any]) -> int:
    """The adaptation steps a bundle's ``generation`` section asks for (0 when it asks for
    none or its settings are not valid: loading the bundle reports those)."""
    try:
        return AdaptationSettings.from_dict(generation.get("adaptation", {})).steps
    except GenerationError:
        return 0
