"""The undo history as plain data, saved with a project so undo survives reopening and crashes.

No Qt here. The editor's undo commands (:mod:`~audiogen_studio.app.edit_commands`) each
describe themselves as one record:

- :class:`SpliceRecord` -- an edit of the clip as a list of :class:`Splice`: "frames
  ``[start, start + n_old)`` held ``old`` and now hold ``new``". ``new`` is stored
  (cut/delete: empty; paste/insert/record: the inserted frames; any whole-clip change reduced to
  the frames that differ), or recomputed from ``old`` by a named, deterministic
  :class:`Effect` (silence, fades, gain, normalize: op name + parameters), so a range effect is
  saved as the range's original frames plus a few bytes of JSON;
- :class:`ReplaceRecord` -- the whole document swapped (a clip where there was none, another
  rate or channel count): both clips;
- :class:`DeleteTakeRecord` -- a take removed from the takes list: the take and its position.

:func:`write_history` stores an :class:`UndoHistory` (the records, oldest first, and the stack's
index: records before it are done, from it on they are redoable) as JSON plus one ``.npy`` file
per non-empty sample array in the project's audio folder, named ``undo-<key>-<role>.npy``
(``float32 [C, n]``: bit-exact for any value, and written once: a key names immutable data, so
saving again writes only new edits). :func:`read_history` reads it back and checks every file
(name, dtype, shape) and the chain of lengths against the clip the project holds; a history
that does not fit is reported as :class:`HistoryError` (the project itself still opens, without
its history).

Bounds (:meth:`UndoHistory.bounded`): at most :data:`MAX_SAVED_COMMANDS` records and
:data:`MAX_SAVED_BYTES` of sample data are saved. The steps nearest the current state are kept:
undo steps first (newest to oldest), then redo steps with what budget is left; older undo steps
and later redo steps beyond the bound are dropped from the file (the open session keeps its
unlimited in-memory history).
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import re
import tempfile
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from audiogen_studio.app.takes_model import TakeRecord
from audiogen_studio.audio import edit
from audiogen_studio.audio.clip import Clip, FloatArray
from audiogen_studio.audio.errors import ClipError

log = logging.getLogger(__name__)

HISTORY_FORMAT = 1
#: records saved at most (the newest undo steps, then redo steps)
MAX_SAVED_COMMANDS = 100
#: sample bytes (float32) saved at most: 256 MiB is ~23 min of 48 kHz stereo
MAX_SAVED_BYTES = 256 * 2**20
#: file name prefix of the history's arrays in a project's audio folder
FILE_PREFIX = "undo-"
_FILE_NAME = re.compile(r"^undo-[0-9A-Za-z_-]+\.npy$")

Span = tuple[int, int]


class HistoryError(Exception):
    """A saved undo history cannot be read or does not fit the project's clip."""


def _new_key() -> str:
    return uuid.uuid4().hex[:16]


# ------------------------------------------------------------------------------------------
# effects: named, deterministic range ops
# ------------------------------------------------------------------------------------------


def _fade_curve(params: Mapping[str, Any]) -> edit.FadeCurve:
    curve = str(params.get("curve", "linear"))
    if curve not in ("linear", "equal_power"):
        raise ValueError(f"unknown fade curve {curve!r}")
    return curve  # type: ignore[return-value]


#: effect name -> ``(clip, params) -> clip`` over the whole given segment
EFFECTS: dict[str, Callable[[Clip, Mapping[str, Any]], Clip]] = {
    "silence": lambda c, p: edit.silence(c, 0),
    "fade_in": lambda c, p: edit.fade_in(c, curve=_fade_curve(p)),
    "fade_out": lambda c, p: edit.fade_out(c, curve=_fade_curve(p)),
    "gain": lambda c, p: edit.gain(c, float(p["db"])),
    "normalize": lambda c, p: edit.normalize_peak(c, float(p["peak_db"])),
}


@dataclass(frozen=True, slots=True)
class Effect:
    """A range effect by name (a key of :data:`EFFECTS`) with its parameters (JSON values)."""

    name: str
    params: tuple[tuple[str, float | str], ...] = ()

    @classmethod
    def of(cls, name: str, **params: float | str) -> Effect:
        """``Effect.of("gain", db=3.0)``; raises ``ValueError`` for an unknown name."""
        if name not in EFFECTS:
            raise ValueError(f"unknown effect {name!r}")
        return cls(name, tuple(sorted(params.items())))

    def apply(self, segment: FloatArray, rate: int) -> FloatArray:
        """The effect over the whole ``segment [C, n]`` (same shape)."""
        return EFFECTS[self.name](Clip(segment, rate), dict(self.params)).samples

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "params": dict(self.params)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Effect:
        params = data.get("params") or {}
        if not isinstance(params, Mapping):
            raise ValueError("effect params must be an object")
        for key, value in params.items():
            if not isinstance(value, (int, float, str)) or isinstance(value, bool):
                raise ValueError(f"effect parameter {key!r} has a non-scalar value")
            if isinstance(value, float) and not math.isfinite(value):
                raise ValueError(f"effect parameter {key!r} is not finite")
        return cls.of(str(data["name"]), **{str(k): v for k, v in params.items()})


# ------------------------------------------------------------------------------------------
# splices
# ------------------------------------------------------------------------------------------


def replace_frames(samples: FloatArray, start: int, remove: int, insert: FloatArray) -> FloatArray:
    """``samples [C, T]`` with frames ``[start, start + remove)`` replaced by ``insert [C, n]``."""
    if insert.shape[1] == remove:
        out = np.array(samples, dtype=np.float32, copy=True)
        out[:, start : start + remove] = insert
        return out
    return np.concatenate([samples[:, :start], insert, samples[:, start + remove :]], axis=1)


@dataclass(frozen=True, eq=False, slots=True)
class Splice:
    """Frames ``[start, start + old.shape[1])`` held ``old [C, n_old]`` and now hold ``new``.

    ``new`` is stored (``stored [C, n_new]``), or recomputed from ``old`` by a named
    ``effect`` at ``rate`` (saved with the history) or by a plain ``transform`` function (not
    saved: a history containing one is only kept in memory). Exactly one of the three is set.
    ``key`` names this splice's arrays in a saved history.
    """

    start: int
    old: FloatArray
    stored: FloatArray | None = None
    transform: Callable[[FloatArray], FloatArray] | None = None
    effect: Effect | None = None
    rate: int = 0
    key: str = field(default_factory=_new_key)

    def __post_init__(self) -> None:
        given = sum(x is not None for x in (self.stored, self.transform, self.effect))
        if given != 1:
            raise ValueError("a splice needs exactly one of stored, transform or effect")
        if self.effect is not None and self.rate <= 0:
            raise ValueError("an effect splice needs the clip's rate")

    @property
    def new(self) -> FloatArray:
        """The frames after the edit ``[C, n_new]``."""
        if self.stored is not None:
            return self.stored
        if self.effect is not None:
            return self.effect.apply(self.old, self.rate)
        assert self.transform is not None
        return self.transform(self.old)

    @property
    def new_frames(self) -> int:
        """Frames after the edit (effects and transforms keep the length)."""
        return int(self.stored.shape[1] if self.stored is not None else self.old.shape[1])

    @property
    def saveable(self) -> bool:
        """Whether the splice can be written to a project (no plain function in it)."""
        return self.transform is None

    def apply(self, samples: FloatArray) -> FloatArray:
        """``samples`` before the edit -> after it."""
        return replace_frames(samples, self.start, self.old.shape[1], self.new)

    def revert(self, samples: FloatArray, new_frames: int | None = None) -> FloatArray:
        """``samples`` after the edit -> before it, exactly (``new_frames``: the length of the
        edited range there, default :attr:`new_frames`)."""
        n = self.new_frames if new_frames is None else new_frames
        return replace_frames(samples, self.start, n, self.old)

    @property
    def nbytes(self) -> int:
        """Bytes this splice keeps alive (the stored frames; a paste shares its clip's)."""
        return int(self.old.nbytes + (0 if self.stored is None else self.stored.nbytes))


# ------------------------------------------------------------------------------------------
# records
# ------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ViewState:
    """Selection and cursor shown before / after a command."""

    selection: Span | None
    cursor: int


@dataclass(frozen=True, eq=False, slots=True)
class SpliceRecord:
    """An edit of the clip: ``splices`` applied in order (undo: reverse order)."""

    text: str
    splices: tuple[Splice, ...]
    before: ViewState
    after: ViewState

    @property
    def nbytes(self) -> int:
        return sum(s.nbytes for s in self.splices)


@dataclass(frozen=True, eq=False, slots=True)
class ReplaceRecord:
    """The whole document swapped: ``before`` -> ``after`` (either may be ``None``)."""

    text: str
    before: Clip | None
    after: Clip | None
    view_before: ViewState
    view_after: ViewState
    key: str = field(default_factory=_new_key)

    @property
    def nbytes(self) -> int:
        return sum(int(c.samples.nbytes) for c in (self.before, self.after) if c is not None)


@dataclass(frozen=True, eq=False, slots=True)
class DeleteTakeRecord:
    """Take ``take`` removed from position ``index`` of the takes list."""

    text: str
    take: TakeRecord
    index: int

    @property
    def nbytes(self) -> int:
        return int(self.take.output.samples.nbytes)


Record = SpliceRecord | ReplaceRecord | DeleteTakeRecord


@dataclass(frozen=True, slots=True)
class UndoHistory:
    """Undo records, oldest first; ``records[:index]`` are done, ``records[index:]`` redoable."""

    records: tuple[Record, ...]
    index: int

    def __post_init__(self) -> None:
        if not 0 <= self.index <= len(self.records):
            raise ValueError(f"history index {self.index} outside 0..{len(self.records)}")

    @property
    def nbytes(self) -> int:
        """Sample bytes the records hold."""
        return sum(r.nbytes for r in self.records)

    def bounded(
        self, max_records: int = MAX_SAVED_COMMANDS, max_bytes: int = MAX_SAVED_BYTES
    ) -> UndoHistory:
        """The contiguous part around :attr:`index` within the bounds (see the module doc)."""
        lo = hi = self.index
        used = 0

        def fits(record: Record) -> bool:
            return hi - lo < max_records and used + record.nbytes <= max_bytes

        while lo > 0 and fits(self.records[lo - 1]):
            lo -= 1
            used += self.records[lo].nbytes
        while hi < len(self.records) and fits(self.records[hi]):
            used += self.records[hi].nbytes
            hi += 1
        return UndoHistory(self.records[lo:hi], self.index - lo)

    def check(self, clip: Clip | None) -> None:
        """Raise :class:`HistoryError` unless the records chain up to ``clip`` (the document
        at :attr:`index`): every splice lies inside the clip it edits, channel counts match,
        whole-document swaps start and end where their neighbours do."""
        shape = None if clip is None else (clip.channels, clip.frames)
        state = shape
        for i in range(self.index - 1, -1, -1):  # undo side: walk back from the clip
            state = _before(self.records[i], state, i)
        state = shape
        for i in range(self.index, len(self.records)):  # redo side: walk forward
            state = _after(self.records[i], state, i)


Shape = tuple[int, int] | None  # (channels, frames) of the document, None: no clip


def _splice_forward(record: SpliceRecord, shape: Shape, i: int) -> Shape:
    if shape is None:
        raise HistoryError(f"step {i + 1} ({record.text}) edits a clip, but there is none")
    channels, frames = shape
    for s in record.splices:
        if s.old.shape[0] != channels or (s.stored is not None and s.stored.shape[0] != channels):
            raise HistoryError(f"step {i + 1} ({record.text}) has another channel count")
        if not 0 <= s.start <= s.start + s.old.shape[1] <= frames:
            raise HistoryError(f"step {i + 1} ({record.text}) edits outside the clip")
        frames += s.new_frames - s.old.shape[1]
    return channels, frames


def _before(record: Record, shape: Shape, i: int) -> Shape:
    """The document shape before ``record``, given the shape after it."""
    if isinstance(record, DeleteTakeRecord):
        return shape
    if isinstance(record, ReplaceRecord):
        if _shape(record.after) != shape:
            raise HistoryError(f"step {i + 1} ({record.text}) does not end at the next state")
        return _shape(record.before)
    if shape is None:
        raise HistoryError(f"step {i + 1} ({record.text}) edits a clip, but there is none")
    channels, frames = shape
    start = (channels, frames - sum(s.new_frames - s.old.shape[1] for s in record.splices))
    if start[1] < 0 or _splice_forward(record, start, i) != shape:
        raise HistoryError(f"step {i + 1} ({record.text}) does not fit the clip")
    return start


def _after(record: Record, shape: Shape, i: int) -> Shape:
    """The document shape after ``record``, given the shape before it."""
    if isinstance(record, DeleteTakeRecord):
        return shape
    if isinstance(record, ReplaceRecord):
        if _shape(record.before) != shape:
            raise HistoryError(f"step {i + 1} ({record.text}) does not start at the state before")
        return _shape(record.after)
    return _splice_forward(record, shape, i)


def _shape(clip: Clip | None) -> Shape:
    return None if clip is None else (clip.channels, clip.frames)


# ------------------------------------------------------------------------------------------
# takes as JSON (shared with the project file)
# ------------------------------------------------------------------------------------------


def json_ready(value: Any) -> Any:
    """``value`` as plain JSON data (unknown objects become strings)."""
    import json

    return json.loads(json.dumps(value, default=str))


def take_fields(take: TakeRecord) -> dict[str, Any]:
    """A take's JSON fields, without its audio."""
    return {
        "id": take.id,
        "name": take.name,
        "prompt_frames": int(take.prompt_frames),
        "prompt_range": list(take.prompt_range) if take.prompt_range else None,
        "provenance": json_ready(dict(take.provenance)),
        "created": float(take.created),
        "kept": bool(take.kept),
    }


def take_from_fields(fields: Mapping[str, Any], output: Clip) -> TakeRecord:
    """The inverse of :func:`take_fields` (``KeyError``/``TypeError``/``ValueError`` if bad)."""
    prompt_range = fields.get("prompt_range")
    return TakeRecord(
        id=str(fields["id"]),
        name=str(fields["name"]),
        output=output,
        prompt_frames=int(fields.get("prompt_frames", 0)),
        prompt_range=(int(prompt_range[0]), int(prompt_range[1])) if prompt_range else None,
        provenance=dict(fields.get("provenance") or {}),
        created=float(fields.get("created", 0.0)),
        kept=bool(fields.get("kept", False)),
    )


# ------------------------------------------------------------------------------------------
# files
# ------------------------------------------------------------------------------------------


def _safe_key(key: str) -> str:
    if not re.fullmatch(r"[0-9A-Za-z_-]{1,64}", key):
        raise HistoryError(f"invalid history key {key!r}")
    return key


class _Writer:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.used: set[str] = set()

    def array(self, samples: FloatArray, name: str) -> dict[str, Any]:
        """``{"file", "channels", "frames"}``; empty arrays are described, not written."""
        channels, frames = int(samples.shape[0]), int(samples.shape[1])
        if frames == 0:
            return {"file": None, "channels": channels, "frames": 0}
        file = f"{FILE_PREFIX}{name}.npy"
        self.used.add(file)
        target = self.folder / file
        if not target.is_file():  # a key names immutable samples: written once
            _save_npy(target, samples)
        return {"file": file, "channels": channels, "frames": frames}

    def clip(self, clip: Clip | None, name: str) -> dict[str, Any] | None:
        if clip is None:
            return None
        entry = self.array(clip.samples, name)
        entry["rate"] = clip.rate
        entry["metadata"] = json_ready(dict(clip.metadata))
        return entry


def _save_npy(target: Path, samples: FloatArray) -> None:
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as f:
            np.save(f, np.ascontiguousarray(samples, dtype=np.float32), allow_pickle=False)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def _view_json(view: ViewState) -> dict[str, Any]:
    return {"selection": list(view.selection) if view.selection else None, "cursor": view.cursor}


def _view_from(data: Mapping[str, Any]) -> ViewState:
    sel = data.get("selection")
    return ViewState((int(sel[0]), int(sel[1])) if sel else None, int(data.get("cursor", 0)))


def write_history(history: UndoHistory, folder: Path) -> tuple[dict[str, Any], set[str]]:
    """Write the history's arrays into ``folder``; returns its JSON and the files it uses.

    Raises:
        OSError: a file cannot be written.
        ValueError: a record holds a splice that cannot be saved (a plain transform).
    """
    w = _Writer(folder)
    records: list[dict[str, Any]] = []
    for record in history.records:
        if isinstance(record, SpliceRecord):
            splices = []
            for s in record.splices:
                if not s.saveable:
                    raise ValueError(f"'{record.text}' holds an edit that cannot be saved")
                key = _safe_key(s.key)
                splices.append(
                    {
                        "start": int(s.start),
                        "key": key,
                        "old": w.array(s.old, f"{key}-old"),
                        "new": None if s.stored is None else w.array(s.stored, f"{key}-new"),
                        "effect": None if s.effect is None else s.effect.to_json(),
                        "rate": int(s.rate),
                    }
                )
            records.append(
                {
                    "type": "splice",
                    "text": record.text,
                    "before": _view_json(record.before),
                    "after": _view_json(record.after),
                    "splices": splices,
                }
            )
        elif isinstance(record, ReplaceRecord):
            key = _safe_key(record.key)
            records.append(
                {
                    "type": "replace",
                    "text": record.text,
                    "key": key,
                    "before": w.clip(record.before, f"{key}-before"),
                    "after": w.clip(record.after, f"{key}-after"),
                    "view_before": _view_json(record.view_before),
                    "view_after": _view_json(record.view_after),
                }
            )
        else:
            take = record.take
            records.append(
                {
                    "type": "delete_take",
                    "text": record.text,
                    "index": int(record.index),
                    "take": take_fields(take),
                    "audio": w.clip(take.output, f"take-{_safe_key(take.id)}"),
                }
            )
    doc = {"format": HISTORY_FORMAT, "index": history.index, "records": records}
    return doc, w.used


class _Reader:
    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def array(self, entry: Mapping[str, Any], what: str) -> FloatArray:
        channels, frames = int(entry["channels"]), int(entry["frames"])
        if channels < 1 or frames < 0:
            raise HistoryError(f"{what}: invalid shape {channels} x {frames}")
        name = entry.get("file")
        if frames == 0:
            return np.zeros((channels, 0), np.float32)
        if not isinstance(name, str) or not _FILE_NAME.match(name):
            raise HistoryError(f"{what}: invalid file name {name!r}")
        path = self.folder / name
        try:
            samples = np.load(path, allow_pickle=False)
        except FileNotFoundError as exc:
            raise HistoryError(f"{what}: {path} is missing") from exc
        except (OSError, ValueError) as exc:
            raise HistoryError(f"{what}: {path} is not a readable .npy file ({exc})") from exc
        if samples.dtype != np.float32 or samples.shape != (channels, frames):
            raise HistoryError(
                f"{what}: {path.name} holds {samples.dtype} {samples.shape}, expected float32 "
                f"({channels}, {frames})"
            )
        samples.setflags(write=False)
        return np.asarray(samples, dtype=np.float32)

    def clip(self, entry: Mapping[str, Any] | None, what: str) -> Clip | None:
        if entry is None:
            return None
        samples = self.array(entry, what)
        metadata = entry.get("metadata")
        try:
            return Clip(samples, int(entry["rate"]), metadata if isinstance(metadata, dict) else {})
        except ClipError as exc:
            raise HistoryError(f"{what}: {exc}") from exc


def read_history(doc: Mapping[str, Any], folder: Path) -> UndoHistory:
    """Read a history written by :func:`write_history` (arrays from ``folder``).

    Raises:
        HistoryError: unknown format, malformed JSON, missing or mismatched files.
    """
    if doc.get("format") != HISTORY_FORMAT:
        raise HistoryError(f"undo history format {doc.get('format')!r} is not supported")
    r = _Reader(folder)
    records: list[Record] = []
    try:
        for i, data in enumerate(doc["records"]):
            kind, text = data["type"], str(data["text"])
            what = f"undo step {i + 1} ({text})"
            if kind == "splice":
                splices = []
                for s in data["splices"]:
                    key = _safe_key(str(s["key"]))
                    old = r.array(s["old"], what)
                    effect = Effect.from_json(s["effect"]) if s.get("effect") else None
                    stored = None if s.get("new") is None else r.array(s["new"], what)
                    splices.append(
                        Splice(
                            int(s["start"]),
                            old,
                            stored=stored,
                            effect=effect,
                            rate=int(s.get("rate", 0)),
                            key=key,
                        )
                    )
                records.append(
                    SpliceRecord(
                        text, tuple(splices), _view_from(data["before"]), _view_from(data["after"])
                    )
                )
            elif kind == "replace":
                records.append(
                    ReplaceRecord(
                        text,
                        r.clip(data.get("before"), what),
                        r.clip(data.get("after"), what),
                        _view_from(data["view_before"]),
                        _view_from(data["view_after"]),
                        key=_safe_key(str(data["key"])),
                    )
                )
            elif kind == "delete_take":
                output = r.clip(data["audio"], what)
                if output is None:
                    raise HistoryError(f"{what}: the take has no audio")
                take = take_from_fields(data["take"], output)
                records.append(DeleteTakeRecord(text, take, int(data["index"])))
            else:
                raise HistoryError(f"{what}: unknown kind {kind!r}")
        return UndoHistory(tuple(records), int(doc["index"]))
    except HistoryError:
        raise
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise HistoryError(f"malformed undo history ({exc!r})") from exc


def is_history_file(name: str) -> bool:
    """Whether ``name`` is one of the history's files in a project's audio folder."""
    return bool(_FILE_NAME.match(name))
