"""What the recording, generation and takes panels need from the main window, and small helpers.

:class:`EditorWindow` is the contract the panels are written against (the main window implements
it): the open clip, the selection and cursor, undoable edits, the session's takes and error
reporting. Panels hold the window and call only these members. :func:`conform` (the
clipboard's: resample, up- or downmix) is re-exported for the panels.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Protocol, runtime_checkable

from PySide6.QtCore import QEvent, QObject
from PySide6.QtWidgets import QDockWidget, QScrollArea, QWidget

from audiogen_studio.app.clipboard import conform
from audiogen_studio.app.takes_model import TakeList
from audiogen_studio.audio.clip import Clip

__all__ = ["CloseWatcher", "EditorWindow", "conform", "raise_dock", "reveal"]


@runtime_checkable
class EditorWindow(Protocol):
    """The main window as the panels see it (frames are those of :attr:`clip`)."""

    @property
    def clip(self) -> Clip | None: ...

    @property
    def takes(self) -> TakeList: ...

    def set_clip(self, clip: Clip, path: Path | None = None) -> None: ...

    def selection(self) -> tuple[int, int] | None: ...

    def cursor_frame(self) -> int: ...

    def apply_edit(
        self, label: str, new_clip: Clip, selection: tuple[int, int] | None = None
    ) -> None: ...

    def insert_clip(self, frame: int, clip: Clip, label: str) -> None: ...

    def report_error(self, title: str, message: str) -> None: ...


def raise_dock(widget: QWidget) -> None:
    """Show the dock that holds ``widget`` (bring its tab to the front), if it is in one."""
    parent = widget.parentWidget()
    while parent is not None and not isinstance(parent, QDockWidget):
        parent = parent.parentWidget()
    if parent is not None:
        parent.show()
        parent.raise_()


def reveal(widget: QWidget, margin: int = 0) -> None:
    """Scroll every scroll area that holds ``widget`` so that it (and ``margin`` pixels around
    it) is in view."""
    parent = widget.parentWidget()
    while parent is not None:
        content = parent.widget() if isinstance(parent, QScrollArea) else None
        if isinstance(parent, QScrollArea) and content is not None and content.isAncestorOf(widget):
            # (ensureWidgetVisible does nothing for a window that was never exposed: offscreen)
            center = widget.mapTo(content, widget.rect().center())
            half_w, half_h = widget.width() // 2, widget.height() // 2
            parent.ensureVisible(center.x(), center.y(), half_w + margin, half_h + margin)
        parent = parent.parentWidget()


class CloseWatcher(QObject):
    """Calls ``on_close()`` once ``window`` is closed (panels stop their audio and threads).

    Watches for the window being hidden by the program (a close that was accepted, or ``hide()``),
    not for the close request itself, which an unsaved-changes prompt may still cancel; a window
    minimized by the user is a spontaneous hide and is ignored. Lets a panel clean up on its own,
    whatever the window's ``closeEvent`` does.

    ``on_closing()``, if given, runs when the close is *requested*, before the window's own
    ``closeEvent`` (so before its unsaved-changes prompt): the recording panel stops and places
    a running recording there, so that the prompt knows about it.
    """

    def __init__(
        self,
        window: object,
        on_close: Callable[[], None],
        on_closing: Callable[[], None] | None = None,
    ) -> None:
        super().__init__(window if isinstance(window, QObject) else None)
        self._on_close = on_close
        self._on_closing = on_closing
        if isinstance(window, QObject):
            window.installEventFilter(self)

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        kind = event.type()
        if kind == QEvent.Type.Close and self._on_closing is not None:
            self._on_closing()
        elif kind == QEvent.Type.Hide and not event.spontaneous():
            self._on_close()
        return False
