"""The takes of an editing session as plain data: what the takes panel shows and the project saves.

No widgets here (Qt-free on purpose, so the project file code and its tests use it directly):
:class:`TakeList` is an ordered list of :class:`TakeRecord` with change listeners. The main
window owns one instance; the takes panel draws it and edits it (rename, keep, delete); the
project store serialises it (audio as files beside the project JSON, provenance as JSON).
"""

from __future__ import annotations

import itertools
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

from audiogen_studio.audio.clip import Clip

Listener = Callable[[], None]


@dataclass(frozen=True, slots=True)
class TakeRecord:
    """One take of a session.

    Attributes:
        id: stable unique id (a hex uuid), also the stem of the take's audio file in a project.
        name: user-visible name ("Take 3"), renamable.
        output: the take's audio ``[C, T]``: the prompt followed by the continuation (or the
            vocoded audio for ``mode == "vocode"``).
        prompt_frames: frames of ``output`` that are the prompt (0 for vocoding); the
            continuation starts there.
        prompt_range: ``(start, end)`` frames of the prompt within the editor's clip when the take
            was generated, or ``None`` if unknown.
        provenance: engine, model, seed, settings, device, rtf, complete … (JSON-ready values).
        created: ``time.time()`` when the take was made.
        kept: the user marked this take as a keeper.
    """

    id: str
    name: str
    output: Clip
    prompt_frames: int = 0
    prompt_range: tuple[int, int] | None = None
    provenance: dict[str, Any] = field(default_factory=dict)
    created: float = field(default_factory=time.time)
    kept: bool = False

    @property
    def continuation(self) -> Clip:
        """The generated part alone ``[C, T - prompt_frames]``."""
        samples = self.output.samples[:, self.prompt_frames :]
        return Clip(samples, self.output.rate)

    def describe(self) -> str:
        """One line of provenance for lists and tooltips."""
        p = self.provenance
        parts = [str(p.get(k)) for k in ("engine", "model") if p.get(k)]
        if "seed" in p:
            parts.append(f"seed {p['seed']}")
        if "temperature" in p:
            parts.append(f"T {p['temperature']:g}")
        if p.get("top_k"):
            parts.append(f"top-k {p['top_k']}")
        if p.get("adapt_steps"):
            parts.append(f"adapted {p['adapt_steps']}")
        if isinstance(p.get("candidates"), int) and p["candidates"] > 1:
            parts.append(f"chosen of {p['candidates']} beginnings")
        parts.append(f"{self.continuation.duration:.2f} s")
        if p.get("match_rank") and p.get("match_of"):
            rank, of, by = p["match_rank"], p["match_of"], p.get("rank_by") or "prompt"
            parts.append(f"best {by} match of {of}" if rank == 1 else f"{by} match {rank}/{of}")
        if p.get("complete") is False:
            parts.append("partial")
        return " · ".join(parts)


def new_take_id() -> str:
    """A fresh unique take id."""
    return uuid.uuid4().hex


class TakeList:
    """Ordered takes with change notification (listeners are called after every change)."""

    def __init__(self) -> None:
        self._takes: list[TakeRecord] = []
        self._listeners: list[Listener] = []
        self._counter = itertools.count(1)

    def __len__(self) -> int:
        return len(self._takes)

    def __iter__(self) -> Iterator[TakeRecord]:
        return iter(list(self._takes))

    def __getitem__(self, index: int) -> TakeRecord:
        return self._takes[index]

    def subscribe(self, listener: Listener) -> None:
        """Call ``listener()`` after every change."""
        self._listeners.append(listener)

    def unsubscribe(self, listener: Listener) -> None:
        """Stop calling ``listener``."""
        if listener in self._listeners:
            self._listeners.remove(listener)

    def _changed(self) -> None:
        for listener in list(self._listeners):
            listener()

    def next_name(self) -> str:
        """A default name for the next take ("Take N")."""
        used = {t.name for t in self._takes}
        while True:
            name = f"Take {next(self._counter)}"
            if name not in used:
                return name

    def index_of(self, take_id: str) -> int:
        """Position of the take with ``take_id``; ``KeyError`` if absent."""
        for i, take in enumerate(self._takes):
            if take.id == take_id:
                return i
        raise KeyError(take_id)

    def get(self, take_id: str) -> TakeRecord:
        """The take with ``take_id``."""
        return self._takes[self.index_of(take_id)]

    def add(self, take: TakeRecord, index: int | None = None) -> None:
        """Append ``take`` (or insert it at ``index``); ids must be unique."""
        if any(t.id == take.id for t in self._takes):
            raise ValueError(f"a take with id {take.id} is already in the list")
        if index is None:
            self._takes.append(take)
        else:
            self._takes.insert(index, take)
        self._changed()

    def update(self, take_id: str, **changes: Any) -> TakeRecord:
        """Replace fields of a take (``name=``, ``kept=``, ...); returns the new record."""
        i = self.index_of(take_id)
        new = replace(self._takes[i], **changes)
        self._takes[i] = new
        self._changed()
        return new

    def remove(self, take_id: str) -> tuple[int, TakeRecord]:
        """Remove a take; returns ``(index, record)`` so an undo can put it back."""
        i = self.index_of(take_id)
        take = self._takes.pop(i)
        self._changed()
        return i, take

    def replace_all(self, takes: list[TakeRecord]) -> None:
        """Set the whole list (project load / recovery)."""
        self._takes = list(takes)
        self._changed()

    def clear(self) -> None:
        """Remove every take."""
        self.replace_all([])
