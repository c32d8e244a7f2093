"""The Library dock: every take ever generated, searchable by words and by sound (issue 7 §4).

A :class:`QDockWidget` over a :class:`~audiogen_studio.library.TakeLibrary`:

- a search box (words, as-you-type, every word a prefix) and filters (engine, model, minimum
  rating), plus **Like this** (takes that sound like the selected one);
- a result list whose rows draw a mini waveform from the peak envelope stored with each take
  (no audio is decoded to draw), the take's name and provenance, tags, and five stars;
- **click the waveform** to play the take from that point (through the app's
  :class:`~audiogen_studio.app.transport.Transport`, or any object with ``play(clip, start,
  end)`` and ``stop()``); **click a star** to rate (the same star again clears the rating);
  **double-click** (or F2) edits the tags inline, comma separated;
- **drag** a row out: the MIME payload carries :data:`TAKE_MIME` (JSON with the take ids and the
  library folder; :func:`take_uids_from_mime` reads it) and the URLs of the takes' FLAC files
  (for other apps);
- **Delete** asks first, moves the take to the library's trash, and can be undone (Undo in the
  dock, or Ctrl+Z while the list has focus) until ``audiogen-studio library gc``.

Every generation lands here by itself: the host calls :meth:`LibraryDock.record_take` with the
session's :class:`~audiogen_studio.app.takes_model.TakeRecord` when a take is made (or lets
:meth:`LibraryDock.watch` follow a :class:`TakeList`). The slow part of recording (FLAC encode,
embedding) runs on one worker thread; :attr:`LibraryDock.recorded` is emitted in the GUI thread
once the take is committed, and the list refreshes.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import shiboken6
from PySide6.QtCore import (
    QAbstractListModel,
    QEvent,
    QMimeData,
    QModelIndex,
    QObject,
    QPersistentModelIndex,
    QPointF,
    QRect,
    QSize,
    Qt,
    QTimer,
    QUrl,
    Signal,
)
from PySide6.QtGui import QColor, QKeyEvent, QKeySequence, QMouseEvent, QPainter, QPen
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QDockWidget,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListView,
    QMenu,
    QMessageBox,
    QPushButton,
    QStyle,
    QStyledItemDelegate,
    QStyleOptionViewItem,
    QVBoxLayout,
    QWidget,
)

from audiogen_studio.app.takes_model import TakeList, TakeRecord
from audiogen_studio.audio.clip import Clip
from audiogen_studio.audio.errors import AudioError
from audiogen_studio.library import Filters, TakeEntry, TakeInfo, TakeLibrary, peaks

log = logging.getLogger(__name__)

__all__ = [
    "TAKE_MIME",
    "LibraryDock",
    "LibraryResultsModel",
    "Playback",
    "TakeDelegate",
    "take_uids_from_mime",
]

#: MIME type of dragged library takes: JSON ``{"uids": [...], "library": "<folder>"}``
TAKE_MIME = "application/x-audiogen-studio-take"
ENTRY_ROLE = Qt.ItemDataRole.UserRole + 1
SEARCH_DELAY_MS = 150
RESULT_LIMIT = 200
WAVE_WIDTH = 120
STAR_SIZE = 14
ROW_HEIGHT = 44


class Playback(Protocol):
    """What the dock needs to play a take (the app's :class:`Transport` has it)."""

    def play(self, clip: Clip, start: int, end: int, *, loop: bool = False) -> None: ...

    def stop(self) -> None: ...


def take_uids_from_mime(mime: QMimeData) -> tuple[list[str], str] | None:
    """``(take uids, library folder)`` of a library drag, or ``None`` for other drops."""
    if not mime.hasFormat(TAKE_MIME):
        return None
    try:
        data = json.loads(bytes(mime.data(TAKE_MIME).data()).decode("utf-8"))
        return [str(u) for u in data["uids"]], str(data["library"])
    except (ValueError, KeyError, TypeError):
        return None


class LibraryResultsModel(QAbstractListModel):
    """The current search results: one :class:`TakeEntry` per row (role :data:`ENTRY_ROLE`)."""

    def __init__(self, library: TakeLibrary, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.library = library
        self.entries: list[TakeEntry] = []
        self.similarity: dict[str, float] = {}

    def rowCount(self, parent: QModelIndex | QPersistentModelIndex | None = None) -> int:
        return 0 if parent is not None and parent.isValid() else len(self.entries)

    def set_entries(self, entries: Sequence[TakeEntry], similarity: dict[str, float]) -> None:
        """Replace the rows."""
        self.beginResetModel()
        self.entries = list(entries)
        self.similarity = dict(similarity)
        self.endResetModel()

    def replace_entry(self, entry: TakeEntry) -> None:
        """Show the new state of a take already listed."""
        for row, old in enumerate(self.entries):
            if old.uid == entry.uid:
                self.entries[row] = entry
                idx = self.index(row)
                self.dataChanged.emit(idx, idx)
                return

    def data(self, index: QModelIndex | QPersistentModelIndex, role: int = 0) -> Any:
        if not index.isValid() or not 0 <= index.row() < len(self.entries):
            return None
        entry = self.entries[index.row()]
        if role == Qt.ItemDataRole.DisplayRole:
            return entry.name or f"Take {entry.uid[:8]}"
        if role == Qt.ItemDataRole.EditRole:
            return ", ".join(entry.tags)
        if role == Qt.ItemDataRole.ToolTipRole:
            lines = [entry.describe(), f"id {entry.uid}"]
            if entry.notes:
                lines.append(entry.notes)
            if entry.quality:
                lines.append(", ".join(f"{k} {v:.3g}" for k, v in sorted(entry.quality.items())))
            return "\n".join(lines)
        if role == ENTRY_ROLE:
            return entry
        return None

    def setData(
        self, index: QModelIndex | QPersistentModelIndex, value: Any, role: int = 0
    ) -> bool:
        if role != Qt.ItemDataRole.EditRole or not index.isValid():
            return False
        entry = self.entries[index.row()]
        tags = [t for t in str(value).replace(";", ",").split(",") if t.strip()]
        self.entries[index.row()] = self.library.update(entry.uid, tags=tags)
        self.dataChanged.emit(index, index)
        return True

    def flags(self, index: QModelIndex | QPersistentModelIndex) -> Qt.ItemFlag:
        base = super().flags(index)
        if index.isValid():
            base |= Qt.ItemFlag.ItemIsDragEnabled | Qt.ItemFlag.ItemIsEditable
        return base

    def mimeTypes(self) -> list[str]:
        return [TAKE_MIME, "text/uri-list"]

    def mimeData(self, indexes: Sequence[QModelIndex]) -> QMimeData:
        rows = sorted({i.row() for i in indexes if i.isValid()})
        entries = [self.entries[r] for r in rows]
        mime = QMimeData()
        payload = {"uids": [e.uid for e in entries], "library": str(self.library.root)}
        mime.setData(TAKE_MIME, json.dumps(payload).encode("utf-8"))
        mime.setUrls(
            [QUrl.fromLocalFile(str(self.library.blobs.path(e.audio_hash))) for e in entries]
        )
        mime.setText("\n".join(e.uid for e in entries))
        return mime

    def supportedDragActions(self) -> Qt.DropAction:
        return Qt.DropAction.CopyAction


class TakeDelegate(QStyledItemDelegate):
    """Draws a row (mini waveform · name and provenance · stars) and handles clicks on the
    waveform (play from there) and on the stars (rate)."""

    play_at = Signal(str, float)  # uid, fraction of the take where the click was
    rate = Signal(str, int)  # uid, stars (0 clears)

    @staticmethod
    def wave_rect(rect: QRect) -> QRect:
        """Where the mini waveform is drawn within a row."""
        return QRect(rect.left() + 4, rect.top() + 4, WAVE_WIDTH, rect.height() - 8)

    @staticmethod
    def star_rect(rect: QRect, star: int) -> QRect:
        """Star ``star`` (1–5) of a row."""
        left = rect.right() - 5 * STAR_SIZE - 6 + (star - 1) * STAR_SIZE
        return QRect(left, rect.top() + 4, STAR_SIZE, STAR_SIZE)

    def sizeHint(
        self, option: QStyleOptionViewItem, index: QModelIndex | QPersistentModelIndex
    ) -> QSize:
        return QSize(360, ROW_HEIGHT)

    def paint(
        self,
        painter: QPainter,
        option: QStyleOptionViewItem,
        index: QModelIndex | QPersistentModelIndex,
    ) -> None:
        entry = index.data(ENTRY_ROLE)
        if not isinstance(entry, TakeEntry):
            return
        rect: QRect = option.rect
        palette = option.palette
        selected = bool(option.state & QStyle.StateFlag.State_Selected)
        painter.save()
        painter.setRenderHint(QPainter.RenderHint.Antialiasing, False)
        if selected:
            painter.fillRect(rect, palette.highlight())
        text_color = palette.highlightedText().color() if selected else palette.text().color()
        self._paint_wave(painter, self.wave_rect(rect), entry, selected)
        left = rect.left() + WAVE_WIDTH + 12
        width = rect.right() - 5 * STAR_SIZE - 12 - left
        painter.setPen(text_color)
        title = index.data(Qt.ItemDataRole.DisplayRole)
        font = painter.font()
        font.setBold(True)
        painter.setFont(font)
        painter.drawText(
            QRect(left, rect.top() + 3, width, 18), Qt.AlignmentFlag.AlignVCenter, str(title)
        )
        font.setBold(False)
        painter.setFont(font)
        model = " ".join(b for b in (entry.model, entry.model_version) if b)
        bits = [b for b in (entry.engine, model) if b]
        bits.append(f"{entry.duration:.1f} s")
        if entry.tags:
            bits.append("#" + " #".join(entry.tags))
        painter.setPen(QColor(text_color).darker(130) if not selected else text_color)
        painter.drawText(
            QRect(left, rect.top() + 22, width, 18),
            Qt.AlignmentFlag.AlignVCenter,
            " · ".join(bits),
        )
        rating = entry.rating or 0
        for star in range(1, 6):
            painter.setPen(QColor(230, 170, 30) if star <= rating else text_color)
            painter.drawText(
                self.star_rect(rect, star),
                Qt.AlignmentFlag.AlignCenter,
                "★" if star <= rating else "☆",
            )
        painter.restore()

    @staticmethod
    def _paint_wave(painter: QPainter, rect: QRect, entry: TakeEntry, selected: bool) -> None:
        painter.fillRect(rect, QColor(28, 32, 40))
        env = peaks.decode(entry.peaks)  # [2, buckets]: min row, max row
        if env.shape[1] == 0:
            return
        mid = rect.center().y()
        half = rect.height() / 2.0
        prompt_share = entry.prompt_frames / max(1, entry.frames)
        cols = np.linspace(0, env.shape[1] - 1, rect.width()).astype(np.int64)
        prompt_pen = QPen(QColor(120, 130, 150))
        take_pen = QPen(QColor(90, 200, 140) if not selected else QColor(150, 240, 190))
        for x, col in enumerate(cols):
            painter.setPen(prompt_pen if x < prompt_share * rect.width() else take_pen)
            top = mid - float(env[1, col]) * half
            bottom = mid - float(env[0, col]) * half
            painter.drawLine(QPointF(rect.left() + x, top), QPointF(rect.left() + x, bottom))

    def editorEvent(
        self,
        event: QEvent,
        model: Any,
        option: QStyleOptionViewItem,
        index: QModelIndex | QPersistentModelIndex,
    ) -> bool:
        if event.type() == QEvent.Type.MouseButtonRelease and isinstance(event, QMouseEvent):
            entry = index.data(ENTRY_ROLE)
            if isinstance(entry, TakeEntry) and event.button() == Qt.MouseButton.LeftButton:
                pos = event.position().toPoint()
                rect: QRect = option.rect
                wave = self.wave_rect(rect)
                if wave.contains(pos):
                    fraction = (pos.x() - wave.left()) / max(1, wave.width())
                    self.play_at.emit(entry.uid, min(max(fraction, 0.0), 1.0))
                    return False  # the click still selects the row
                for star in range(1, 6):
                    if self.star_rect(rect, star).contains(pos):
                        self.rate.emit(entry.uid, 0 if entry.rating == star else star)
                        return True
        return super().editorEvent(event, model, option, index)

    def createEditor(
        self,
        parent: QWidget,
        option: QStyleOptionViewItem,
        index: QModelIndex | QPersistentModelIndex,
    ) -> QWidget:
        editor = QLineEdit(parent)
        editor.setPlaceholderText("tags, comma separated")
        return editor

    def setEditorData(self, editor: QWidget, index: QModelIndex | QPersistentModelIndex) -> None:
        if isinstance(editor, QLineEdit):
            editor.setText(str(index.data(Qt.ItemDataRole.EditRole) or ""))

    def setModelData(
        self, editor: QWidget, model: Any, index: QModelIndex | QPersistentModelIndex
    ) -> None:
        if isinstance(editor, QLineEdit):
            model.setData(index, editor.text(), Qt.ItemDataRole.EditRole)

    def updateEditorGeometry(
        self,
        editor: QWidget,
        option: QStyleOptionViewItem,
        index: QModelIndex | QPersistentModelIndex,
    ) -> None:
        rect: QRect = option.rect
        left = rect.left() + WAVE_WIDTH + 12
        editor.setGeometry(
            QRect(left, rect.top() + 20, rect.right() - left - 5 * STAR_SIZE - 12, 22)
        )


class LibraryDock(QDockWidget):
    """The take library as a dock: search, filters, results, play, rate, tag, drag, delete.

    Args:
        library: the open library (the dock does not close it).
        transport: plays takes (the window's :class:`Transport`); ``None`` makes one.
        parent: the main window.

    Signals:
        recorded(str): a take handed to :meth:`record_take` is in the library (GUI thread).
        record_failed(str): recording a take failed (the message).
        insert_requested(str): the user asked to insert a take (context menu); the host
            inserts ``library.audio(uid)`` where it wants.
        deleted(str), restored(str): a take went to the trash / came back (undo).
    """

    recorded = Signal(str)
    record_failed = Signal(str)
    insert_requested = Signal(str)
    deleted = Signal(str)
    restored = Signal(str)
    _committed = Signal(str, str)  # uid, error message ("" = ok): worker → GUI thread

    def __init__(
        self,
        library: TakeLibrary,
        transport: Playback | None = None,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__("Library", parent)
        self.setObjectName("library-dock")
        self.library = library
        if transport is None:
            from audiogen_studio.app.transport import Transport

            transport = Transport()
        self.transport: Playback = transport
        #: asked before deleting: ``confirm(title, question) -> bool`` (tests replace it)
        self.confirm: Callable[[str, str], bool] = self._ask
        self.like_uid: str | None = None
        self.undo_stack: list[str] = []
        self.playing: str | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._pending: list[Future[Any]] = []
        self._lock = threading.Lock()
        self._watched: list[tuple[TakeList, Callable[[], None]]] = []
        self._seen: set[str] = set()
        self._shut_down = False

        body = QWidget()
        self.search_box = QLineEdit()
        self.search_box.setPlaceholderText("Search names, tags, notes, models…")
        self.search_box.setClearButtonEnabled(True)
        self.engine_combo = QComboBox()
        self.model_combo = QComboBox()
        self.rating_combo = QComboBox()
        self.rating_combo.addItem("Any rating", 0)
        for n in range(1, 6):
            self.rating_combo.addItem("★" * n + ("+" if n < 5 else ""), n)
        self.like_button = QPushButton("Like this")
        self.like_button.setToolTip("Show the takes that sound most like the selected one")
        self.like_button.setCheckable(True)
        self.model = LibraryResultsModel(library, self)
        self.delegate = TakeDelegate(self)
        self.view = QListView()
        self.view.setModel(self.model)
        self.view.setItemDelegate(self.delegate)
        self.view.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.view.setDragEnabled(True)
        self.view.setDragDropMode(QAbstractItemView.DragDropMode.DragOnly)
        self.view.setDefaultDropAction(Qt.DropAction.CopyAction)
        self.view.setEditTriggers(
            QAbstractItemView.EditTrigger.DoubleClicked
            | QAbstractItemView.EditTrigger.EditKeyPressed
        )
        self.view.setUniformItemSizes(True)
        self.view.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.status = QLabel("")
        self.undo_button = QPushButton("Undo delete")
        self.undo_button.setVisible(False)

        filters = QHBoxLayout()
        filters.addWidget(self.engine_combo)
        filters.addWidget(self.model_combo)
        filters.addWidget(self.rating_combo)
        filters.addWidget(self.like_button)
        bottom = QHBoxLayout()
        bottom.addWidget(self.status, 1)
        bottom.addWidget(self.undo_button)
        layout = QVBoxLayout(body)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(self.search_box)
        layout.addLayout(filters)
        layout.addWidget(self.view, 1)
        layout.addLayout(bottom)
        self.setWidget(body)

        self._search_timer = QTimer(self)
        self._search_timer.setSingleShot(True)
        self._search_timer.setInterval(SEARCH_DELAY_MS)
        self._search_timer.timeout.connect(self.refresh)
        self.search_box.textChanged.connect(self._search_timer.start)
        for combo in (self.engine_combo, self.model_combo, self.rating_combo):
            combo.currentIndexChanged.connect(self.refresh)
        self.like_button.toggled.connect(self._toggle_like)
        self.delegate.play_at.connect(self.play)
        self.delegate.rate.connect(self.set_rating)
        self.undo_button.clicked.connect(self.undo_delete)
        self.view.customContextMenuRequested.connect(self._context_menu)
        self._committed.connect(self._on_committed)
        # Delete / Backspace and Ctrl+Z in the list act on the library, claimed from the
        # window's shortcuts (which edit the audio) while the list has focus
        self.view.installEventFilter(self)
        self._update_facets()
        self.refresh()

    # -- searching ---------------------------------------------------------------------------

    def filters(self) -> Filters:
        """The filters the controls select."""
        rating = int(self.rating_combo.currentData() or 0)
        return Filters(
            engine=self.engine_combo.currentData() or None,
            model=self.model_combo.currentData() or None,
            min_rating=rating or None,
        )

    def _update_facets(self) -> None:
        facets = self.library.facets()
        for combo, key, label in (
            (self.engine_combo, "engine", "All engines"),
            (self.model_combo, "model", "All models"),
        ):
            current = combo.currentData()
            combo.blockSignals(True)
            combo.clear()
            combo.addItem(label, "")
            for value in facets[key]:
                combo.addItem(value, value)
            found = combo.findData(current) if current else 0
            combo.setCurrentIndex(max(found, 0))
            combo.blockSignals(False)

    def refresh(self) -> None:
        """Run the search the controls describe and show the results (keeps the selection)."""
        if not shiboken6.isValid(self):
            return
        self._search_timer.stop()
        selected = set(self.selected_uids())
        text = self.search_box.text()
        filters = self.filters()
        try:
            if self.like_uid is not None:
                results = self.library.search(
                    text, like=self.like_uid, filters=filters, limit=RESULT_LIMIT
                )
            else:
                results = self.library.search(text, filters=filters, limit=RESULT_LIMIT)
        except AudioError as exc:
            self.status.setText(f"search failed: {exc}")
            return
        similarity = {r.take.uid: r.similarity for r in results if r.similarity is not None}
        self.model.set_entries([r.take for r in results], similarity)
        total = self.library.count(filters)
        what = "like the selected take" if self.like_uid else "in the library"
        self.status.setText(f"{len(results)} of {total} takes {what}")
        if selected:
            self.select(*selected)

    def _toggle_like(self, on: bool) -> None:
        if on:
            uids = self.selected_uids()
            if not uids:
                self.like_button.setChecked(False)
                self.status.setText("Select a take first")
                return
            self.like_uid = uids[0]
        else:
            self.like_uid = None
        self.refresh()

    def like_this(self, uid: str | None) -> None:
        """Show the takes that sound like ``uid`` (``None`` goes back to the plain search)."""
        if uid is not None:
            self.select(uid)
        self.like_button.setChecked(uid is not None)

    def selected_uids(self) -> list[str]:
        """Uids of the selected rows, in list order."""
        rows = sorted(i.row() for i in self.view.selectionModel().selectedRows())
        return [self.model.entries[r].uid for r in rows if r < len(self.model.entries)]

    def select(self, *uids: str) -> None:
        """Select the rows of ``uids`` that are listed."""
        sel = self.view.selectionModel()
        sel.clearSelection()
        for row, entry in enumerate(self.model.entries):
            if entry.uid in uids:
                sel.select(
                    self.model.index(row),
                    sel.SelectionFlag.Select | sel.SelectionFlag.Rows,
                )
                self.view.setCurrentIndex(self.model.index(row))

    # -- play, rate, tag ---------------------------------------------------------------------

    def play(self, uid: str, fraction: float = 0.0) -> bool:
        """Play a take from ``fraction`` (0–1) of it; False (with a message) if it cannot."""
        try:
            clip = self.library.audio(uid)
            start = int(min(max(fraction, 0.0), 1.0) * clip.frames)
            if start >= clip.frames:
                start = 0
            self.transport.play(clip, start, clip.frames)
        except AudioError as exc:
            self.status.setText(f"cannot play: {exc}")
            return False
        self.playing = uid
        self.status.setText(f"playing {self.library.get(uid).name or uid[:8]}")
        return True

    def stop(self) -> None:
        """Stop a take that is playing."""
        if self.playing is not None:
            self.transport.stop()
            self.playing = None

    def set_rating(self, uid: str, stars: int) -> None:
        """Rate a take 1–5 (0 clears)."""
        entry = self.library.update(uid, rating=stars or None)
        self.model.replace_entry(entry)

    def set_tags(self, uid: str, tags: Sequence[str]) -> None:
        """Replace a take's tags."""
        self.model.replace_entry(self.library.update(uid, tags=list(tags)))

    def rename(self, uid: str, name: str) -> None:
        """Rename a take."""
        self.model.replace_entry(self.library.update(uid, name=name))

    # -- delete and undo ----------------------------------------------------------------------

    def _ask(self, title: str, question: str) -> bool:
        answer = QMessageBox.question(
            self, title, question, QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No
        )
        return answer == QMessageBox.StandardButton.Yes

    def delete_selected(self) -> bool:
        """Delete the selected takes after asking; False when nothing was deleted."""
        uids = self.selected_uids()
        if not uids:
            return False
        return self.delete(*uids)

    def delete(self, *uids: str) -> bool:
        """Move takes to the trash after asking (undo: :meth:`undo_delete`)."""
        if not uids:
            return False
        names = [self.library.get(u).name or u[:8] for u in uids]
        what = f"'{names[0]}'" if len(names) == 1 else f"{len(names)} takes"
        if not self.confirm("Delete from library", f"Delete {what} from the library?"):
            return False
        for uid in uids:
            if self.playing == uid:
                self.stop()
            self.library.delete(uid)
            self.undo_stack.append(uid)
            self.deleted.emit(uid)
        self.undo_button.setVisible(True)
        self.undo_button.setToolTip(f"Bring back {what}")
        self.refresh()
        self.status.setText(f"Deleted {what} (Undo brings it back)")
        return True

    def undo_delete(self) -> str | None:
        """Bring back the last deleted take; returns its uid (``None`` if there is none)."""
        while self.undo_stack:
            uid = self.undo_stack.pop()
            if uid in self.library:
                self.library.undelete(uid)
                self.undo_button.setVisible(bool(self.undo_stack))
                self._update_facets()
                self.refresh()
                self.select(uid)
                self.restored.emit(uid)
                return uid
        self.undo_button.setVisible(False)
        return None

    def _context_menu(self, pos: Any) -> None:
        index = self.view.indexAt(pos)
        if not index.isValid():
            return
        entry = self.model.entries[index.row()]
        menu = QMenu(self)
        menu.addAction("Play", lambda: self.play(entry.uid))
        menu.addAction("Insert into the editor", lambda: self.insert_requested.emit(entry.uid))
        menu.addAction("Find takes like this", lambda: self.like_this(entry.uid))
        menu.addAction("Edit tags", lambda: self.view.edit(index))
        menu.addSeparator()
        menu.addAction("Delete…", lambda: self.delete(entry.uid))
        menu.popup(self.view.viewport().mapToGlobal(pos))

    # -- recording generations -----------------------------------------------------------------

    def record_take(
        self,
        record: TakeRecord,
        *,
        prompt: Clip | None = None,
        prompt_source: str | Path = "",
        model_hash: str = "",
    ) -> Future[Any]:
        """Add a session take to the library in the background; :attr:`recorded` follows.

        Args:
            record: the take (``id`` becomes the library uid; provenance, name, created …).
            prompt: the prompt clip it continued (default: the first ``prompt_frames`` of the
                take's output); stored once per distinct prompt.
            prompt_source: the file the prompt came from, if any.
            model_hash: the bundle's fingerprint; when empty it is computed from the
                provenance's ``model_path`` where that is a bundle folder.

        Returns:
            A future resolving to the stored :class:`TakeEntry` (or raising).
        """
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="library")
        self._seen.add(record.id)
        future = self._executor.submit(self._record, record, prompt, str(prompt_source), model_hash)
        with self._lock:
            self._pending.append(future)
        return future

    def _record(
        self, record: TakeRecord, prompt: Clip | None, source: str, model_hash: str
    ) -> TakeEntry:
        try:
            if record.id in self.library:
                entry = self.library.get(record.id)
                self._committed.emit(record.id, "")
                return entry
            prompt_id = None
            if record.prompt_frames > 0:
                clip = prompt
                if clip is None:
                    head = record.output.samples[:, : record.prompt_frames]
                    clip = Clip(head, record.output.rate)
                stored = self.library.add_prompt(clip, source=source, range=record.prompt_range)
                prompt_id = stored.id
            info = TakeInfo.from_provenance(
                record.provenance,
                name=record.name,
                uid=record.id,
                created=record.created,
                rating=5 if record.kept else None,
                model_hash=model_hash or _bundle_hash(record.provenance),
            )
            entry = self.library.add_take(
                record.output, info, prompt_id=prompt_id, prompt_frames=record.prompt_frames
            )
        except Exception as exc:
            log.warning("could not record take %s in the library: %s", record.id, exc)
            self._committed.emit(record.id, str(exc) or type(exc).__name__)
            raise
        self._committed.emit(record.id, "")
        return entry

    def _on_committed(self, uid: str, error: str) -> None:
        with self._lock:
            self._pending = [f for f in self._pending if not f.done()]
        if error:
            self.status.setText(f"could not add a take to the library: {error}")
            self.record_failed.emit(error)
            return
        if self._shut_down:  # queued from the last commits of a closing window
            self.recorded.emit(uid)
            return
        self._update_facets()
        self.refresh()
        self.recorded.emit(uid)

    def watch(self, takes: TakeList, *, prompt_source: Callable[[], str] | None = None) -> None:
        """Record every take that appears in ``takes`` from now on (the session's takes
        panel list); ``prompt_source()`` names the file the prompts came from."""
        self._seen.update(t.id for t in takes)

        def changed() -> None:
            if not shiboken6.isValid(self):
                takes.unsubscribe(changed)
                return
            for record in takes:
                if record.id not in self._seen:
                    self.record_take(record, prompt_source=prompt_source() if prompt_source else "")

        takes.subscribe(changed)
        self._watched.append((takes, changed))

    def wait_idle(self, timeout: float = 30.0) -> None:
        """Block until every take handed to :meth:`record_take` is committed (or failed)."""
        with self._lock:
            pending = list(self._pending)
        for future in pending:
            with contextlib.suppress(Exception):  # failures go to record_failed
                future.result(timeout=timeout)

    def shutdown(self) -> None:
        """Finish recording, stop playback, stop following take lists (window closing); the
        library may be closed afterwards."""
        self._shut_down = True
        self.stop()
        for takes, listener in self._watched:
            takes.unsubscribe(listener)
        self._watched.clear()
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if watched is self.view and event.type() in (
            QEvent.Type.ShortcutOverride,
            QEvent.Type.KeyPress,
        ):
            if not isinstance(event, QKeyEvent) or self.view.state() == (
                QAbstractItemView.State.EditingState
            ):
                return super().eventFilter(watched, event)
            action: Callable[[], object] | None = None
            if event.key() in (Qt.Key.Key_Delete, Qt.Key.Key_Backspace):
                action = self.delete_selected
            elif event.matches(QKeySequence.StandardKey.Undo):
                action = self.undo_delete
            if action is not None:
                if event.type() == QEvent.Type.KeyPress:
                    action()
                event.accept()
                return True
        return super().eventFilter(watched, event)

    def closeEvent(self, event: Any) -> None:
        self.shutdown()
        super().closeEvent(event)

    def sizeHint(self) -> QSize:
        return QSize(420, 500)


def _bundle_hash(provenance: dict[str, Any]) -> str:
    """The fingerprint of the bundle folder named by ``provenance["model_path"]``, if any."""
    path = provenance.get("model_path")
    if not path:
        return ""
    folder = Path(str(path))
    if not (folder / "bundle.json").is_file():
        try:
            from audiogen_studio.engine import bundles

            folder = bundles.find_bundle(str(path)).path
        except Exception:
            return ""
    try:
        from audiogen_studio.library.fingerprint import bundle_fingerprint

        return bundle_fingerprint(folder)
    except (OSError, ValueError):
        return ""
