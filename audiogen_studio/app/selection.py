"""The editor's selection and cursor, in frames, with Audacity's mouse rules.

:class:`SelectionModel` holds a half-open frame range ``[start, end)`` (``None`` when nothing is
selected) and a cursor frame (where paste, record-at-cursor and play-from-cursor happen). Rules:

- a click without Shift puts the cursor there and clears the selection;
- a drag selects from the press point to the pointer (either direction);
- Shift+click / Shift+drag extends: the edge of the current selection (or the cursor) that is
  farther from the pointer stays put, the pointer becomes the other edge;
- a press within ``grab_tolerance`` frames of a selection edge (the window passes a few pixels'
  worth, see :mod:`~audiogen_studio.app.edge_drag`) grabs that edge: the drag moves it and the
  other edge stays (dragged past the other edge, the two swap roles, as in Audacity);
- :meth:`select_all` selects the whole clip; an empty range is no selection.

Everything is clamped to ``[0, frames]``. :attr:`changed` fires after every change; the window
redraws the selection region on both views from it.
"""

from __future__ import annotations

from typing import Literal

from PySide6.QtCore import QObject, Signal

Span = tuple[int, int]
Edge = Literal["start", "end"]


class SelectionModel(QObject):
    """Selection ``[start, end)`` and cursor of the open clip, in frames."""

    changed = Signal()

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._frames = 0
        self._selection: Span | None = None
        self._cursor = 0
        self._anchor: int | None = None  # fixed edge of a drag in progress
        self._grabbed = False  # the drag in progress moves an edge of the selection

    # -- state ------------------------------------------------------------------------------

    @property
    def frames(self) -> int:
        """Length of the clip the selection refers to."""
        return self._frames

    @property
    def selection(self) -> Span | None:
        """``(start, end)`` with ``start < end``, or ``None``."""
        return self._selection

    @property
    def cursor(self) -> int:
        """The cursor frame (the selection's start while something is selected)."""
        return self._cursor

    @property
    def dragging(self) -> bool:
        """True between :meth:`press` and :meth:`release`."""
        return self._anchor is not None

    @property
    def dragging_edge(self) -> bool:
        """True while a drag that grabbed a selection edge is in progress."""
        return self._grabbed and self._anchor is not None

    def edge_near(self, frame: int, tolerance: int) -> Edge | None:
        """The selection edge within ``tolerance`` frames of ``frame`` (the nearer one when
        both are), or ``None`` (also when nothing is selected)."""
        sel = self._selection
        if sel is None or tolerance < 0:
            return None
        to_start, to_end = abs(int(frame) - sel[0]), abs(int(frame) - sel[1])
        if min(to_start, to_end) > tolerance:
            return None
        return "start" if to_start < to_end else "end"

    def _clamp(self, frame: int) -> int:
        return min(max(0, int(frame)), self._frames)

    def _set(self, selection: Span | None, cursor: int) -> None:
        if selection is not None and selection[0] >= selection[1]:
            cursor, selection = selection[0], None
        if selection != self._selection or cursor != self._cursor:
            self._selection, self._cursor = selection, cursor
            self.changed.emit()

    # -- programmatic changes ---------------------------------------------------------------

    def reset(self, frames: int) -> None:
        """A new clip of ``frames`` frames: cursor at 0, nothing selected."""
        self._frames = max(0, int(frames))
        self._anchor = None
        self._grabbed = False
        self._set(None, 0)

    def set_length(self, frames: int) -> None:
        """The clip changed length: clamp the selection and cursor to it."""
        self._frames = max(0, int(frames))
        sel = self._selection
        if sel is not None:
            sel = (self._clamp(sel[0]), self._clamp(sel[1]))
        self._set(sel, self._clamp(self._cursor))

    def set_selection(self, start: int, end: int) -> None:
        """Select ``[min, max)`` of the two frames (clamped); equal frames set the cursor."""
        a, b = sorted((self._clamp(start), self._clamp(end)))
        self._set((a, b), a)

    def set_cursor(self, frame: int) -> None:
        """Move the cursor to ``frame`` and clear the selection."""
        frame = self._clamp(frame)
        self._set(None, frame)

    def clear(self) -> None:
        """Clear the selection, keeping the cursor."""
        self._set(None, self._cursor)

    def select_all(self) -> None:
        """Select the whole clip (nothing when it is empty)."""
        self._set((0, self._frames), 0)

    def restore(self, selection: Span | None, cursor: int | None = None) -> None:
        """Set both at once (undo/redo, project load); ``cursor`` defaults to the start."""
        if selection is not None:
            a, b = sorted((self._clamp(selection[0]), self._clamp(selection[1])))
            self._set((a, b), a if cursor is None else self._clamp(cursor))
        else:
            self._set(None, self._clamp(self._cursor if cursor is None else cursor))

    # -- mouse gestures ---------------------------------------------------------------------

    def _far_edge(self, frame: int) -> int:
        """The edge of the selection (or the cursor) farther from ``frame``."""
        if self._selection is None:
            return self._cursor
        start, end = self._selection
        return start if abs(frame - start) > abs(frame - end) else end

    def press(self, frame: int, *, extend: bool = False, grab_tolerance: int = 0) -> None:
        """Mouse press at ``frame``: start a selection (Shift: extend the current one).

        Within ``grab_tolerance`` frames of a selection edge (no Shift), the press grabs that
        edge instead: the selection is unchanged until the pointer moves.
        """
        frame = self._clamp(frame)
        edge = None if extend else self.edge_near(frame, grab_tolerance)
        self._grabbed = edge is not None
        if edge is not None and self._selection is not None:
            start, end = self._selection
            self._anchor = end if edge == "start" else start  # the other edge stays put
            return
        self._anchor = self._far_edge(frame) if extend else frame
        if extend:
            self.set_selection(self._anchor, frame)
        else:
            self._set(None, frame)

    def drag(self, frame: int) -> None:
        """The pointer moved to ``frame`` with the button down."""
        if self._anchor is None:
            self.press(frame)
            return
        self.set_selection(self._anchor, frame)

    def release(self, frame: int) -> None:
        """Button released at ``frame``: the drag ends."""
        if self._anchor is not None:
            self.set_selection(self._anchor, frame)
        self._anchor = None
        self._grabbed = False

    def click(self, frame: int, *, extend: bool = False) -> None:
        """A click (press and release without moving)."""
        self.press(frame, extend=extend)
        self._anchor = None
        self._grabbed = False
