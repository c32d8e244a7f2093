"""Collect a stream of `AudioChunk`s into takes: the original prompt followed by its continuation.

The prompt's own samples are never re-encoded: a take's output is the prompt clip, untouched, with
the generated audio (converted to the prompt's rate and channel count) appended. WaveNet is
sample-continuous with the prompt at the model's rate (it is conditioned on the prompt's last
samples), so it needs no crossfade. AudioLM works on codec frames: its first chunk carries a
``lead_in``, its own rendering of the prompt's last few milliseconds, and the take is joined to
the prompt with an equal-power crossfade over those frames (only they differ from the prompt).
A cancelled request still yields the part that was generated.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from audiogen_studio.audio import edit, io
from audiogen_studio.audio.clip import Clip
from audiogen_studio.engine.api import AudioChunk, Engine, GenerationRequest


@dataclass(frozen=True, slots=True)
class Take:
    """One generated take.

    Attributes:
        index: take number within its request.
        seed: the request's seed (take ``index`` of that seed reproduces it).
        prompt: the user's prompt clip, as given.
        generated: the generated audio at the prompt's rate and channel count.
        complete: False when generation was cancelled before the requested length.
        mode: ``"continue"`` or ``"vocode"``.
        lead_in: the engine's rendering of the prompt's last frames (crossfaded with them), or
            ``None`` for a plain append.
    """

    index: int
    seed: int
    prompt: Clip
    generated: Clip
    complete: bool
    mode: str = "continue"
    lead_in: Clip | None = None

    @property
    def output(self) -> Clip:
        """Prompt followed by the continuation (continuation mode), or the vocoded audio."""
        if self.mode == "vocode":
            return self.generated
        if self.lead_in is not None and self.lead_in.frames:
            joined = Clip(
                np.concatenate([self.lead_in.samples, self.generated.samples], axis=1),
                self.generated.rate,
            )
            return edit.crossfade_join(self.prompt, joined, self.lead_in.frames)
        return edit.insert(self.prompt, self.prompt.frames, self.generated)


class TakeCollector:
    """Accumulates chunks per take (in any interleaving) and builds :class:`Take` objects."""

    def __init__(self, request: GenerationRequest) -> None:
        self.request = request
        self._parts: dict[int, list[np.ndarray]] = {i: [] for i in range(request.takes)}
        self._frames = dict.fromkeys(range(request.takes), 0)
        self._rate: int | None = None
        self._lead: dict[int, np.ndarray] = {}
        self.seed = 0

    def add(self, chunk: AudioChunk) -> None:
        """Append ``chunk`` to its take; chunks of a take must arrive in order."""
        if chunk.take not in self._parts:
            raise ValueError(f"chunk of take {chunk.take}, request has {self.request.takes}")
        if chunk.start != self._frames[chunk.take]:
            raise ValueError(
                f"take {chunk.take}: chunk starts at {chunk.start}, expected "
                f"{self._frames[chunk.take]}"
            )
        self._rate = chunk.rate
        self.seed = chunk.seed
        if chunk.lead_in is not None and chunk.start == 0:
            self._lead[chunk.take] = np.atleast_2d(np.asarray(chunk.lead_in, dtype=np.float32))
        self._parts[chunk.take].append(np.asarray(chunk.samples, dtype=np.float32))
        self._frames[chunk.take] += chunk.frames

    def frames(self, take: int) -> int:
        """Frames generated so far for ``take`` (at the model's rate)."""
        return self._frames[take]

    def takes(self, *, expected_frames: int | None = None) -> list[Take]:
        """The takes so far; ``complete`` when a take reached ``expected_frames``."""
        prompt = self.request.prompt
        out = []
        for i, parts in self._parts.items():
            rate = self._rate or prompt.rate
            lead = self._lead.get(i)
            pieces = ([lead] if lead is not None else []) + parts
            mono = np.concatenate(pieces, axis=-1) if pieces else np.zeros((1, 0), np.float32)
            generated = Clip(np.atleast_2d(mono), rate)
            if rate != prompt.rate and generated.frames:
                generated = io.resample(generated, prompt.rate)
            if self.request.mode == "continue":
                generated = io.to_channels(generated, prompt.channels)
            lead_clip = None
            if lead is not None:  # split the lead-in off again at the prompt's rate
                m = min(round(lead.shape[-1] * prompt.rate / rate), generated.frames, prompt.frames)
                lead_clip = Clip(generated.samples[:, :m], generated.rate)
                generated = Clip(generated.samples[:, m:], generated.rate)
            complete = expected_frames is None or self._frames[i] >= expected_frames
            out.append(
                Take(
                    i,
                    self.seed,
                    prompt,
                    generated,
                    complete,
                    mode=self.request.mode,
                    lead_in=lead_clip,
                )
            )
        return out


def collect(
    engine: Engine,
    request: GenerationRequest,
    cancel: threading.Event | None = None,
    on_chunk: Callable[[AudioChunk], None] | None = None,
) -> list[Take]:
    """Run ``engine.stream`` to the end (or cancellation) and return every take."""
    collector = TakeCollector(request)
    for chunk in engine.stream(request, cancel):
        collector.add(chunk)
        if on_chunk is not None:
            on_chunk(chunk)
    return collector.takes(expected_frames=engine.expected_frames(request))
