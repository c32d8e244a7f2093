"""Grab and drag the selection's edges in the editor views (the pixel side of it).

:class:`~audiogen_studio.app.selection.SelectionModel` decides in frames (``press(...,
grab_tolerance=)``, ``edge_near``); this module turns :data:`EDGE_GRAB_PIXELS` into frames at a
view's current zoom (:func:`grab_tolerance_frames`) and shows a size-hor cursor while the pointer
hovers within that distance of an edge, or while an edge is being dragged (:class:`EdgeHover`, an
event filter on a view's viewport: the views themselves need no change).
"""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import QEvent, QObject, QPointF, Qt
from PySide6.QtGui import QMouseEvent

from audiogen_studio.app.selection import SelectionModel
from audiogen_studio.app.views import TimeView

#: how close (logical pixels) to an edge a press grabs it
EDGE_GRAB_PIXELS = 5


def grab_tolerance_frames(view: TimeView, rate: int, pixels: float = EDGE_GRAB_PIXELS) -> int:
    """``pixels`` of ``view``'s plot area in frames at its current zoom (at least 0)."""
    x0, x1 = view.view_range()
    width = max(1.0, float(view.view_box.width()))
    return max(0, round(pixels * (x1 - x0) / width * rate))


def frame_at(view: TimeView, pos: QPointF, rate: int) -> int:
    """The frame under viewport position ``pos`` of ``view``."""
    seconds = view.view_box.mapSceneToView(view.mapToScene(pos.toPoint())).x()
    return round(float(seconds) * rate)


class EdgeHover(QObject):
    """Size-hor cursor over ``view`` near a selection edge, and during an edge drag.

    Args:
        view: the waveform or spectrogram view (the filter sits on its viewport).
        model: the selection model.
        rate: the open clip's rate, or ``None`` without a clip.
    """

    def __init__(
        self, view: TimeView, model: SelectionModel, rate: Callable[[], int | None]
    ) -> None:
        super().__init__(view)
        self.view = view
        self.model = model
        self.rate = rate
        self.showing = False  # the size-hor cursor is set (tests read it)
        view.viewport().installEventFilter(self)
        model.changed.connect(self._on_model_changed)

    def near_edge(self, pos: QPointF) -> bool:
        """Whether viewport position ``pos`` is within grabbing distance of an edge."""
        rate = self.rate()
        if rate is None or self.model.selection is None:
            return False
        frame = frame_at(self.view, pos, rate)
        return self.model.edge_near(frame, grab_tolerance_frames(self.view, rate)) is not None

    def _show(self, on: bool) -> None:
        if on == self.showing:
            return
        self.showing = on
        viewport = self.view.viewport()
        if on:
            viewport.setCursor(Qt.CursorShape.SizeHorCursor)
        else:
            viewport.unsetCursor()

    def _on_model_changed(self) -> None:
        if self.model.dragging_edge:
            self._show(True)
        elif self.model.selection is None:
            self._show(False)

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        kind = event.type()
        if kind == QEvent.Type.MouseMove and isinstance(event, QMouseEvent):
            if self.model.dragging_edge:
                self._show(True)
            elif event.buttons() == Qt.MouseButton.NoButton:
                self._show(self.near_edge(event.position()))
        elif kind == QEvent.Type.MouseButtonPress and isinstance(event, QMouseEvent):
            shift = bool(event.modifiers() & Qt.KeyboardModifier.ShiftModifier)
            if event.button() == Qt.MouseButton.LeftButton and not shift:
                self._show(self.near_edge(event.position()))  # the press grabs that edge
        elif kind == QEvent.Type.MouseButtonRelease and isinstance(event, QMouseEvent):
            self._show(self.near_edge(event.position()))
        elif kind == QEvent.Type.Leave and not self.model.dragging_edge:
            self._show(False)
        return False  # the view still gets every event
