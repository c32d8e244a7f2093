"""Undoable edits of the open clip: QUndoCommands over the pure ops of :mod:`audio.edit`.

Every edit is stored as a list of :class:`Splice` — "frames ``[start, start + n_old)`` were
``old`` and become ``new``" — so that undo restores the exact samples (the removed or
overwritten frames are kept bit for bit) while memory stays proportional to what changed, not to
the clip: a cut keeps the cut frames, a paste keeps a reference to the pasted clip, a fade or a
gain keeps the original frames of the selection and recomputes the new ones on redo from a named
:class:`~audiogen_studio.app.undo_history.Effect` (the ops are deterministic, so redo reproduces
the first result exactly). A whole-clip replacement
(:meth:`ClipEditor.apply_edit`, e.g. "insert take after prompt") is reduced to the frames that
differ (common prefix and suffix compared bit for bit), so inserting a take at the end stores
only the take.

:class:`ClipEditor` turns the editor's actions (cut, copy, paste, delete, trim, silence, fade
in/out, gain, normalize, insert) into commands on a ``QUndoStack``; the window implements
:class:`EditTarget` to show each new state. Range ops (silence, fades, gain, normalize) act on
the selection, or on the whole clip when nothing is selected (Audacity's "select all if none");
cut, copy, delete and trim need a selection. Applying an op to a segment equals applying it to
the whole clip with that range (the tests check ``np.array_equal`` against :mod:`audio.edit`).

Every command describes itself as a plain-data record (:func:`history_of`), which the project
file saves (:mod:`~audiogen_studio.app.undo_history`); :func:`restore_history` rebuilds the stack
from those records after a project is reopened or recovered, so edits made before the save (or
the crash) can still be undone, exactly. Deleting a take (:class:`DeleteTakeCommand`) is on the
same stack.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Protocol

import numpy as np
from PySide6.QtGui import QUndoCommand, QUndoStack

from audiogen_studio.app.clipboard import AudioClipboard, conform
from audiogen_studio.app.selection import SelectionModel, Span
from audiogen_studio.app.takes_model import TakeList, TakeRecord
from audiogen_studio.app.undo_history import (
    DeleteTakeRecord,
    Effect,
    Record,
    ReplaceRecord,
    Splice,
    SpliceRecord,
    UndoHistory,
    ViewState,
)
from audiogen_studio.audio import edit
from audiogen_studio.audio.clip import Clip, FloatArray
from audiogen_studio.audio.edit import FadeCurve
from audiogen_studio.audio.errors import ClipError

__all__ = [
    "ClipEditor",
    "DeleteTakeCommand",
    "EditError",
    "EditTarget",
    "ReplaceClipCommand",
    "Splice",
    "SpliceCommand",
    "diff_splice",
    "history_of",
    "restore_history",
]

Transform = Callable[[FloatArray], FloatArray]
_DIFF_CHUNK = 1 << 20  # frames compared per step when diffing two clips


class EditError(Exception):
    """An edit that cannot be done now (nothing selected, nothing to paste, ...)."""


class EditTarget(Protocol):
    """What the commands edit: the window's current clip and how to show a new one."""

    @property
    def clip(self) -> Clip | None: ...

    def show_edit(
        self, clip: Clip | None, selection: Span | None, cursor: int, changed_from: int
    ) -> None:
        """Make ``clip`` the document (frames before ``changed_from`` are unchanged)."""
        ...


# ------------------------------------------------------------------------------------------
# splices (no Qt)
# ------------------------------------------------------------------------------------------


def _copy_range(samples: FloatArray, start: int, end: int) -> FloatArray:
    """A private copy of ``samples[:, start:end]`` (a view would keep the whole clip alive)."""
    return np.array(samples[:, start:end], dtype=np.float32, copy=True)


def diff_splice(before: FloatArray, after: FloatArray) -> Splice | None:
    """The smallest splice that turns ``before [C, T1]`` into ``after [C, T2]`` (same C).

    Frames are compared bit for bit (``-0.0`` differs from ``0.0``); ``None`` when identical.
    """
    if before.shape[0] != after.shape[0]:
        raise ValueError("diff_splice needs equal channel counts")
    a, b = before.view(np.uint32), after.view(np.uint32)
    limit = min(a.shape[1], b.shape[1])
    prefix = limit
    for lo in range(0, limit, _DIFF_CHUNK):
        hi = min(lo + _DIFF_CHUNK, limit)
        differs = np.any(a[:, lo:hi] != b[:, lo:hi], axis=0)
        if differs.any():
            prefix = lo + int(np.argmax(differs))
            break
    if prefix == limit and a.shape[1] == b.shape[1]:
        return None
    suffix_limit = limit - prefix
    suffix = suffix_limit
    for lo in range(0, suffix_limit, _DIFF_CHUNK):
        hi = min(lo + _DIFF_CHUNK, suffix_limit)
        # frames counted from the end: offset k is frame T - 1 - k
        ra = a[:, a.shape[1] - hi : a.shape[1] - lo]
        rb = b[:, b.shape[1] - hi : b.shape[1] - lo]
        differs = np.any(ra != rb, axis=0)[::-1]  # index 0 = the frame nearest the end
        if differs.any():
            suffix = lo + int(np.argmax(differs))
            break
    old = _copy_range(before, prefix, before.shape[1] - suffix)
    new = _copy_range(after, prefix, after.shape[1] - suffix)
    return Splice(prefix, old, stored=new)


# ------------------------------------------------------------------------------------------
# commands
# ------------------------------------------------------------------------------------------


_View = ViewState


class _Restorable(QUndoCommand):
    """A command that describes itself as a :mod:`~audiogen_studio.app.undo_history` record.

    While :attr:`silent` (set during :func:`restore_history`), redo and undo do nothing: the
    document is already in the state the restored stack says.
    """

    silent = False

    def record(self) -> Record | None:
        """This command as a saveable record, or ``None`` when it cannot be saved."""
        raise NotImplementedError

    def redo(self) -> None:
        if not self.silent:
            self.apply_redo()

    def undo(self) -> None:
        if not self.silent:
            self.apply_undo()

    def apply_redo(self) -> None:
        raise NotImplementedError

    def apply_undo(self) -> None:
        raise NotImplementedError


class SpliceCommand(_Restorable):
    """An edit of the current clip made of splices applied in order (undo: reverse order)."""

    def __init__(
        self, target: EditTarget, text: str, splices: list[Splice], before: _View, after: _View
    ) -> None:
        super().__init__(text)
        self._target = target
        self.splices = splices
        self._before, self._after = before, after

    @property
    def nbytes(self) -> int:
        """Bytes kept for undo/redo."""
        return sum(s.nbytes for s in self.splices)

    def record(self) -> SpliceRecord | None:
        if not all(s.saveable for s in self.splices):
            return None
        return SpliceRecord(self.text(), tuple(self.splices), self._before, self._after)

    def apply_redo(self) -> None:
        clip = self._target.clip
        assert clip is not None, "a splice edit needs a clip"
        samples: FloatArray = clip.samples
        for splice in self.splices:
            samples = splice.apply(samples)
        changed = min(s.start for s in self.splices)
        view = self._after
        self._target.show_edit(clip.replace(samples=samples), view.selection, view.cursor, changed)

    def apply_undo(self) -> None:
        clip = self._target.clip
        assert clip is not None, "a splice edit needs a clip"
        samples: FloatArray = clip.samples
        for splice in reversed(self.splices):
            samples = splice.revert(samples)
        changed = min(s.start for s in self.splices)
        view = self._before
        self._target.show_edit(clip.replace(samples=samples), view.selection, view.cursor, changed)


class ReplaceClipCommand(_Restorable):
    """Swap the whole document (used when a splice cannot describe the change: no clip before
    or after, or another rate or channel count)."""

    def __init__(
        self,
        target: EditTarget,
        text: str,
        before: Clip | None,
        after: Clip | None,
        view_before: _View,
        view_after: _View,
        *,
        key: str | None = None,
    ) -> None:
        super().__init__(text)
        self._target = target
        self._clips = (before, after)
        self._views = (view_before, view_after)
        self._key = key or uuid.uuid4().hex[:16]  # names the clips' files in a saved history

    def record(self) -> ReplaceRecord:
        return ReplaceRecord(self.text(), *self._clips, *self._views, key=self._key)

    def apply_redo(self) -> None:
        view = self._views[1]
        self._target.show_edit(self._clips[1], view.selection, view.cursor, 0)

    def apply_undo(self) -> None:
        view = self._views[0]
        self._target.show_edit(self._clips[0], view.selection, view.cursor, 0)


class DeleteTakeCommand(_Restorable):
    """Undoable removal of one take (undo puts it back at its place)."""

    def __init__(self, takes: TakeList, take: TakeRecord, index: int | None = None) -> None:
        super().__init__(f"Delete {take.name}")
        self.takes = takes
        self.take = take
        self.index = takes.index_of(take.id) if index is None else index

    def record(self) -> DeleteTakeRecord:
        return DeleteTakeRecord(self.text(), self.take, self.index)

    def apply_redo(self) -> None:
        self.index, self.take = self.takes.remove(self.take.id)

    def apply_undo(self) -> None:
        self.takes.add(self.take, min(self.index, len(self.takes)))


def history_of(stack: QUndoStack) -> UndoHistory:
    """The stack as an :class:`~audiogen_studio.app.undo_history.UndoHistory` (plain data).

    Commands that cannot be saved cut the history there: on the undo side the steps before
    such a command are dropped (undo could not get past it), on the redo side the command and
    those after it.
    """
    index = stack.index()
    records: list[Record] = []
    first = 0
    for i in range(stack.count()):
        command = stack.command(i)
        record = command.record() if isinstance(command, _Restorable) else None
        if record is None:
            if i < index:
                records, first = [], i + 1  # nothing before this can be undone after a reload
                continue
            break
        records.append(record)
    return UndoHistory(tuple(records), index - first)


def restore_history(
    stack: QUndoStack, history: UndoHistory, target: EditTarget, takes: TakeList
) -> None:
    """Rebuild ``stack`` from ``history`` without touching the document, which must already be
    in the state at ``history.index`` (the clip and takes a project holds)."""
    stack.clear()
    commands: list[_Restorable] = []
    for record in history.records:
        command: _Restorable
        if isinstance(record, SpliceRecord):
            command = SpliceCommand(
                target, record.text, list(record.splices), record.before, record.after
            )
        elif isinstance(record, ReplaceRecord):
            command = ReplaceClipCommand(
                target,
                record.text,
                record.before,
                record.after,
                record.view_before,
                record.view_after,
                key=record.key,
            )
        else:
            command = DeleteTakeCommand(takes, record.take, record.index)
        command.setText(record.text)
        command.silent = True
        commands.append(command)
    try:
        for command in commands:
            stack.push(command)  # silent: push's redo does nothing
        stack.setIndex(history.index)  # silent: the undos it runs do nothing
    finally:
        for command in commands:
            command.silent = False


# ------------------------------------------------------------------------------------------
# the editor's actions
# ------------------------------------------------------------------------------------------


class ClipEditor:
    """Turns editor actions into undoable commands on ``stack``.

    Args:
        target: the document (the main window).
        stack: where commands go.
        selection: the selection model (read for ranges, restored by undo/redo).
        clipboard: where cut/copy put audio and paste reads it.
    """

    def __init__(
        self,
        target: EditTarget,
        stack: QUndoStack,
        selection: SelectionModel,
        clipboard: AudioClipboard,
    ) -> None:
        self.target = target
        self.stack = stack
        self.selection = selection
        self.clipboard = clipboard

    # -- helpers ----------------------------------------------------------------------------

    def _clip(self) -> Clip:
        clip = self.target.clip
        if clip is None:
            raise EditError("Nothing to edit: open, record or generate a clip first")
        return clip

    def _selected(self) -> Span:
        span = self.selection.selection
        if span is None:
            raise EditError("Select a range first (drag on the waveform, or Ctrl+A)")
        return span

    def _range_or_all(self) -> Span:
        clip = self._clip()
        span = self.selection.selection
        return span if span is not None else (0, clip.frames)

    def _now(self) -> _View:
        return _View(self.selection.selection, self.selection.cursor)

    def _push_splices(self, text: str, splices: list[Splice], after: _View) -> SpliceCommand:
        command = SpliceCommand(self.target, text, splices, self._now(), after)
        self.stack.push(command)
        return command

    def _range_effect(self, text: str, effect: Effect) -> SpliceCommand:
        clip = self._clip()
        start, end = self._range_or_all()
        if end <= start:
            raise EditError("The clip is empty")
        old = _copy_range(clip.samples, start, end)
        splice = Splice(start, old, effect=effect, rate=clip.rate)
        return self._push_splices(text, [splice], self._now())

    # -- clipboard --------------------------------------------------------------------------

    def copy(self) -> Clip:
        """Put the selection on the clipboard (not undoable: the document does not change)."""
        clip = self._clip()
        start, end = self._selected()
        copied = Clip(_copy_range(clip.samples, start, end), clip.rate, clip.metadata)
        self.clipboard.set(copied)
        return copied

    def cut(self) -> SpliceCommand:
        """Copy the selection, then delete it."""
        self.copy()
        command = self.delete(text="Cut")
        return command

    def delete(self, *, text: str = "Delete") -> SpliceCommand:
        """Remove the selection; the cursor goes to where it started."""
        clip = self._clip()
        start, end = self._selected()
        splice = Splice(start, _copy_range(clip.samples, start, end), stored=_empty(clip, 0))
        return self._push_splices(text, [splice], _View(None, start))

    def paste(self) -> SpliceCommand:
        """Insert the clipboard at the cursor, or replace the selection with it.

        The pasted audio is converted to the clip's rate and channels; it is selected after.
        """
        source = self.clipboard.clip
        if source is None:
            raise EditError("The clipboard is empty: cut or copy a range first")
        clip = self._clip()
        try:
            pasted = conform(source, clip.rate, clip.channels)
        except ClipError as exc:
            raise EditError(str(exc)) from exc
        span = self.selection.selection
        start, end = span if span is not None else (self.selection.cursor,) * 2
        splice = Splice(start, _copy_range(clip.samples, start, end), stored=pasted.samples)
        after = _View((start, start + pasted.frames) if pasted.frames else None, start)
        return self._push_splices("Paste", [splice], after)

    # -- structure --------------------------------------------------------------------------

    def trim(self) -> SpliceCommand:
        """Keep only the selection (Audacity's "Trim Audio")."""
        clip = self._clip()
        start, end = self._selected()
        samples = clip.samples
        splices = [
            Splice(end, _copy_range(samples, end, clip.frames), stored=_empty(clip, 0)),
            Splice(0, _copy_range(samples, 0, start), stored=_empty(clip, 0)),
        ]
        return self._push_splices("Trim", splices, _View((0, end - start), 0))

    def insert_clip(self, frame: int, inserted: Clip, text: str) -> QUndoCommand:
        """Insert ``inserted`` before ``frame`` (converted to the clip's rate and channels).

        Without a document the inserted clip becomes the document. The inserted range is
        selected after.
        """
        clip = self.target.clip
        if clip is None:
            after = _View((0, inserted.frames) if inserted.frames else None, 0)
            command = ReplaceClipCommand(self.target, text, None, inserted, self._now(), after)
            self.stack.push(command)
            return command
        if not 0 <= frame <= clip.frames:
            raise EditError(f"Cannot insert at frame {frame}: the clip has {clip.frames}")
        try:
            new = conform(inserted, clip.rate, clip.channels)
        except ClipError as exc:
            raise EditError(str(exc)) from exc
        splice = Splice(int(frame), _empty(clip, 0), stored=new.samples)
        after = _View((frame, frame + new.frames) if new.frames else None, int(frame))
        return self._push_splices(text, [splice], after)

    def apply_edit(
        self, text: str, new_clip: Clip, selection: Span | None = None
    ) -> QUndoCommand | None:
        """Make ``new_clip`` the document, undoably; only the frames that differ are stored.

        Returns ``None`` (nothing pushed) when ``new_clip`` equals the current clip exactly.
        """
        clip = self.target.clip
        if selection is not None:
            a, b = sorted((int(selection[0]), int(selection[1])))
            selection = (max(0, a), min(new_clip.frames, b))
        after = _View(selection, selection[0] if selection else 0)
        if clip is None or clip.rate != new_clip.rate or clip.channels != new_clip.channels:
            command: QUndoCommand = ReplaceClipCommand(
                self.target, text, clip, new_clip, self._now(), after
            )
            self.stack.push(command)
            return command
        splice = diff_splice(clip.samples, new_clip.samples)
        if splice is None:
            return None
        return self._push_splices(text, [splice], after)

    # -- effects on the selection (or everything) -------------------------------------------

    def silence(self) -> SpliceCommand:
        """Set the range to zero."""
        return self._range_effect("Silence", Effect.of("silence"))

    def fade_in(self, curve: FadeCurve = "linear") -> SpliceCommand:
        """Fade the range in (gain 0 at its first frame, 1 at its last)."""
        return self._range_effect("Fade In", Effect.of("fade_in", curve=curve))

    def fade_out(self, curve: FadeCurve = "linear") -> SpliceCommand:
        """Fade the range out (gain 1 at its first frame, 0 at its last)."""
        return self._range_effect("Fade Out", Effect.of("fade_out", curve=curve))

    def gain(self, db: float) -> SpliceCommand:
        """Amplify the range by ``db`` decibels (no limiting)."""
        _check_db(db)
        return self._range_effect(f"Gain {db:+g} dB", Effect.of("gain", db=float(db)))

    def normalize(self, peak_db: float = -1.0) -> SpliceCommand:
        """Scale the range so its peak (over all channels) is ``peak_db`` dBFS."""
        _check_db(peak_db)
        return self._range_effect(
            f"Normalize to {peak_db:g} dB", Effect.of("normalize", peak_db=float(peak_db))
        )


def _empty(clip: Clip, frames: int) -> FloatArray:
    return np.zeros((clip.channels, frames), dtype=np.float32)


def _check_db(db: float) -> None:
    """Raise :class:`EditError` for a gain ``audio.edit`` would reject (NaN, inf, too large)."""
    try:
        edit.gain(Clip(np.zeros((1, 0), np.float32), 8000), db)
    except ValueError as exc:
        raise EditError(str(exc)) from exc
