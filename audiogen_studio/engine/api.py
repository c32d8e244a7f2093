"""The engine's contract: a `GenerationRequest` in, a stream of `AudioChunk`s out (DESIGN.md §3).

``Engine.stream(request, cancel)`` is a plain Python generator with no Qt: the CLI writes its
chunks to files, the app's generation thread writes them into the playback buffer. The engine
checks ``cancel`` (a :class:`threading.Event`) between steps and returns promptly once it is set;
whatever was generated up to then has been yielded, so a partial take is never lost.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from audiogen_studio.audio.clip import Clip

Mode = Literal["continue", "vocode"]
#: What takes and candidate beginnings can be ranked by against their prompt
#: (``engine/take_ranking.py`` computes each score).
Aspect = Literal["voice", "pitch", "rhythm", "pitch+rhythm"]
ASPECTS: tuple[Aspect, ...] = ("voice", "pitch", "rhythm", "pitch+rhythm")
#: How an AudioLM stream whose KV cache is full slides its context (``generation.context_slide``;
#: ``engine/audiolm_pipeline.py``): re-run the kept half, or evict the older half of the cache.
ContextSlide = Literal["refill", "evict"]
CONTEXT_SLIDES: tuple[ContextSlide, ...] = ("refill", "evict")
MAX_TAKES = 8
#: most candidate beginnings per take a request may ask for (:attr:`GenerationRequest.candidates`)
MAX_CANDIDATES = 8
#: seconds of candidate beginnings generated before the best is kept: the default, and the
#: range a bundle's ``generation.choose_after`` may set (shorter is too short to rank)
DEFAULT_CHOOSE_AFTER = 1.5
CHOOSE_AFTER_RANGE = (0.5, 60.0)
MAX_ADAPT_STEPS = 1000
#: The token stages of an AudioLM bundle, in generation order.
STAGES = ("semantic", "coarse", "fine")


class GenerationError(ValueError):
    """A request the engine cannot serve: silent or empty prompt, bad settings, wrong bundle."""


def read_switch(
    generation: Mapping[str, Any], key: str, numbers: Collection[str]
) -> tuple[bool, dict[str, float]]:
    """A bundle's switchable setting ``generation[key]``: absent (off), ``true``/``false``, or an
    object of ``enabled`` (true when absent) and any of the named ``numbers``. Returns
    ``(enabled, {number: value})`` with only the numbers given.

    Raises:
        GenerationError: another type, an unknown key, an ``enabled`` that is not a boolean or a
            number that is not one.
    """
    value = generation.get(key, False)
    if isinstance(value, bool):
        return value, {}
    if not isinstance(value, Mapping):
        raise GenerationError(f"{key} must be true, false or an object, got {value!r}")
    unknown = set(value) - {"enabled", *numbers}
    if unknown:
        raise GenerationError(f"{key}: unknown keys {sorted(unknown)}")
    enabled = value.get("enabled", True)
    if not isinstance(enabled, bool):
        raise GenerationError(f"{key}.enabled must be true or false, got {enabled!r}")
    given = {}
    for name in numbers:
        if name in value:
            v = value[name]
            if isinstance(v, bool) or not isinstance(v, int | float):
                raise GenerationError(f"{key}.{name} must be a number, got {v!r}")
            given[name] = float(v)
    return enabled, given


def check_stage_temperatures(factors: Mapping[str, Any]) -> dict[str, float]:
    """``factors`` as ``{stage: float}``, checked: stages among :data:`STAGES`, each a finite
    number >= 0. Raises :class:`GenerationError` naming the bad entry."""
    if not isinstance(factors, Mapping):
        raise GenerationError(f"stage temperatures must be a mapping, got {factors!r}")
    out: dict[str, float] = {}
    for stage, value in factors.items():
        if stage not in STAGES:
            raise GenerationError(
                f"unknown stage {stage!r} in stage temperatures: use {', '.join(STAGES)}"
            )
        try:
            factor = float(value)
        except (TypeError, ValueError):
            raise GenerationError(f"stage temperature of {stage} must be a number") from None
        if not (math.isfinite(factor) and factor >= 0):
            raise GenerationError(f"stage temperature of {stage} must be >= 0, got {value!r}")
        out[stage] = factor
    return out


@dataclass(frozen=True, slots=True)
class GenerationRequest:
    """What to generate.

    Attributes:
        prompt: the user's clip ``[C, T]`` at any rate (downmixed and resampled for the model;
            the original samples are what the output starts with).
        seconds: length of the continuation (``mode="continue"``); ignored for vocoding.
        mode: ``"continue"`` the prompt, or ``"vocode"`` it (re-synthesize from its log-mel).
        takes: independent takes generated together (1–8).
        seed: makes takes reproducible: take ``i`` draws from ``numpy.random.default_rng([seed,
            i])``; ``None`` picks a fresh seed (reported in each chunk's take).
        temperature: softmax temperature (0 = greedy). Token models with several stages
            (AudioLM) multiply it by each stage's factor: ``stage_temperatures`` if given, else
            the bundle's tuned defaults (``bundle.json`` ``generation.stage_temperatures``), else 1.
        stage_temperatures: per-stage factors (``semantic``, ``coarse``, ``fine``) overriding the
            bundle's; stages not named keep factor 1. Engines with one stage ignore it.
        top_k, top_p: optional truncation of the sampling distribution.
        chunk_seconds: audio per yielded chunk (~0.05–0.1 s keeps playback responsive).
        adapt_steps: AudioLM: gradient steps that adapt the LMs to the prompt before generating
            (``engine/prompt_adaptation.py``); ``None``: the bundle's default
            (``generation.adaptation``), ``0``: none. Engines without LMs ignore it.
        candidates: continuation: beginnings sampled per take (1–8); the engine generates them
            together for the bundle's first ``choose_after`` seconds, keeps the one that matches
            the prompt best (``engine/take_ranking.py``, by ``rank_by``) and goes on with it
            alone, so a take's audio starts once the choice is made. ``None``: the bundle's
            default (``generation.candidates``, else 1: no choice).
        rank_by: what candidate beginnings are ranked by (one of :data:`ASPECTS`); ``None``: the
            bundle's (``generation.rank_by``).
        level_match: continuation: keep the generated audio at the prompt's level
            (``engine/level_match.py``; token models, whose level is the decoder's, not the
            prompt's). ``None``: the bundle's default (``generation.level_match``, else off).
        beat_guidance: AudioLM music: steer the semantic stage towards attacks on the prompt's
            beat (``engine/beat_guidance.py``). ``None``: the bundle's default
            (``generation.beat_guidance``, else off).
            Engines that continue the prompt's own samples (WaveNet) ignore it.
    """

    prompt: Clip
    seconds: float = 4.0
    mode: Mode = "continue"
    takes: int = 1
    seed: int | None = None
    temperature: float = 1.0
    top_k: int | None = None
    top_p: float | None = None
    chunk_seconds: float = 0.1
    stage_temperatures: Mapping[str, float] | None = None
    adapt_steps: int | None = None
    candidates: int | None = None
    level_match: bool | None = None
    rank_by: Aspect | None = None
    beat_guidance: bool | None = None

    def __post_init__(self) -> None:
        if self.mode not in ("continue", "vocode"):
            raise GenerationError(f"unknown mode {self.mode!r}: use 'continue' or 'vocode'")
        if self.mode == "continue" and not self.seconds > 0:
            raise GenerationError(f"seconds must be positive, got {self.seconds}")
        if not 1 <= self.takes <= MAX_TAKES:
            raise GenerationError(f"takes must be 1–{MAX_TAKES}, got {self.takes}")
        if not self.temperature >= 0:
            raise GenerationError(f"temperature must be >= 0, got {self.temperature}")
        if self.stage_temperatures is not None:
            # stored checked, as {stage: float}: engines read it per token without re-checking
            object.__setattr__(
                self, "stage_temperatures", check_stage_temperatures(self.stage_temperatures)
            )
        if self.top_k is not None and self.top_k < 1:
            raise GenerationError(f"top_k must be >= 1, got {self.top_k}")
        if self.top_p is not None and not 0 < self.top_p <= 1:
            raise GenerationError(f"top_p must be in (0, 1], got {self.top_p}")
        if not 0.005 <= self.chunk_seconds <= 2.0:
            raise GenerationError(f"chunk_seconds must be 0.005–2, got {self.chunk_seconds}")
        if self.prompt.frames == 0:
            raise GenerationError("the prompt is empty")
        if self.rank_by is not None and self.rank_by not in ASPECTS:
            raise GenerationError(
                f"rank_by must be one of {', '.join(ASPECTS)} or None, got {self.rank_by!r}"
            )
        for name in ("level_match", "beat_guidance"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, bool):
                raise GenerationError(f"{name} must be true, false or None, got {value!r}")
        for name, lo, hi in (
            ("adapt_steps", 0, MAX_ADAPT_STEPS),
            ("candidates", 1, MAX_CANDIDATES),
        ):
            value = getattr(self, name)
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi
            ):
                raise GenerationError(f"{name} must be an integer {lo}–{hi}, got {value!r}")

    def resolved_seed(self) -> int:
        """The seed to use: the given one, or a fresh random one."""
        if self.seed is not None:
            return int(self.seed)
        return int(np.random.SeedSequence().entropy % (2**31))  # type: ignore[operator]


@dataclass(frozen=True, slots=True)
class AudioChunk:
    """A piece of one take's generated audio.

    Attributes:
        take: index of the take (0-based).
        start: frame of ``samples[:, 0]`` within the take's generated audio (excluding the prompt).
        samples: float32 ``[C, n]`` at ``rate``.
        rate: sample rate of ``samples`` (the model's rate).
        progress: fraction of the whole request done after this chunk, in ``(0, 1]``.
        seed: the seed of the request (resolved when the request had none).
        info: figures about the generation so far (e.g. ``rtf``).
        lead_in: only on a take's first chunk, from engines that re-synthesise the end of the
            prompt (AudioLM): float32 ``[C, m]`` at ``rate``, the generated audio of the prompt's
            last ``m`` frames. :class:`~audiogen_studio.engine.takes.TakeCollector` joins the
            take to the prompt with an equal-power crossfade over those frames; players may
            ignore it (``samples`` starts exactly where the prompt ends).
    """

    take: int
    start: int
    samples: npt.NDArray[np.float32]
    rate: int
    progress: float
    seed: int = 0
    info: dict[str, float] = field(default_factory=dict)
    lead_in: npt.NDArray[np.float32] | None = None

    @property
    def frames(self) -> int:
        """Number of frames in the chunk."""
        return int(self.samples.shape[-1])


@runtime_checkable
class Engine(Protocol):
    """Anything that turns a request into a stream of audio chunks."""

    name: str
    sample_rate: int

    def stream(
        self, request: GenerationRequest, cancel: threading.Event | None = None
    ) -> Iterator[AudioChunk]:
        """Yield every take's chunks in generation order; stop promptly once ``cancel`` is set."""
        ...

    def expected_frames(self, request: GenerationRequest) -> int:
        """Frames (at :attr:`sample_rate`) each take has when the request completes."""
        ...
