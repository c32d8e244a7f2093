"""The takes dock: every generated take with its provenance; audition, A/B, keep, insert, export.

The panel draws ``window.takes`` (a :class:`~audiogen_studio.app.takes_model.TakeList`, which the
project file saves) and redraws on every change. Actions:

- **Audition**: the last :data:`AUDITION_PROMPT_SECONDS` of the prompt, then the take's
  continuation (a vocoded take plays whole).
- **A/B** (and A/B/C/…): two or more selected takes (up to :data:`MAX_COMPARED`) play in sync
  from the same point (the same prompt tail, then each continuation), lettered A, B, C … in
  list order; the **B** key (or the Switch button) moves on to the next one, cycling, and the
  keys **1**-**9** jump to that take of the comparison, always at the same position with a 5 ms
  equal-power crossfade. :class:`Audition` does the playback: a feeder
  thread copies short blocks of whichever take is active into a small ring that a
  :class:`~audiogen_studio.audio.devices.Player` plays, so a switch is heard within the ring's
  :data:`AHEAD_SECONDS` plus the device latency.
- **Rename** (double-click or F2 on the name), **Keep** (★), **Delete** (an undo step on
  ``window.undo_stack`` when the window has one, otherwise after a confirmation).
- **Insert after prompt**: the continuation goes into the editor's clip right after the prompt
  range it was generated from (``window.insert_clip``, undoable), converted to the clip's rate
  and channels.
- **Export** one take or all takes as WAV or FLAC (the whole take, or the continuation only).
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt
import shiboken6
from PySide6.QtCore import QEvent, QObject, QSize, Qt, QTimer
from PySide6.QtGui import QKeyEvent, QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QFileDialog,
    QFrame,
    QGridLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QMessageBox,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from audiogen_studio.app.edit_commands import DeleteTakeCommand
from audiogen_studio.app.panel_support import CloseWatcher, EditorWindow, conform
from audiogen_studio.app.takes_model import TakeList, TakeRecord
from audiogen_studio.audio import devices, edit, io
from audiogen_studio.audio.clip import Clip
from audiogen_studio.audio.errors import AudioError
from audiogen_studio.audio.ringbuffer import RingBuffer

log = logging.getLogger(__name__)

AUDITION_PROMPT_SECONDS = 2.0
AHEAD_SECONDS = 0.2
BLOCK_SECONDS = 0.02
CROSSFADE_SECONDS = 0.005
EXPORT_FORMATS = ("wav", "flac")
COLUMNS = ("★", "Name", "Length", "Provenance")
MAX_COMPARED = 9  # takes in one A/B comparison: the keys 1-9 pick one
_ID_ROLE = Qt.ItemDataRole.UserRole


class Audition:
    """Plays one source, or several aligned sources of which one is heard at a time.

    All sources are conformed to the first one's rate and channel count and played from frame 0;
    a shorter source is heard as silence past its end. :meth:`toggle` (or :meth:`select`) makes
    the feeder continue from the same frame with another source, crossfading over
    ``crossfade_seconds``. The feeder stays at most ``ahead_seconds`` ahead of the device (the
    ring's size), which bounds the delay until a switch is heard.

    Args:
        sources: clips ``[C, T]``; ``sources[0]`` sets rate and channels.
        device: output device (``None``: the default).
        start: index of the source heard first.

    Raises:
        ValueError: no sources.
    """

    def __init__(
        self,
        sources: Sequence[Clip],
        *,
        device: devices.Device = None,
        start: int = 0,
        ahead_seconds: float = AHEAD_SECONDS,
        block_seconds: float = BLOCK_SECONDS,
        crossfade_seconds: float = CROSSFADE_SECONDS,
    ) -> None:
        if not sources:
            raise ValueError("Audition needs at least one source")
        first = sources[0]
        self.rate, self.channels = first.rate, first.channels
        self.sources = [first] + [conform(s, self.rate, self.channels) for s in sources[1:]]
        self.length = max(s.frames for s in self.sources)
        self._active = int(start) % len(self.sources)
        self._block = max(1, round(block_seconds * self.rate))
        self._fade = max(1, round(crossfade_seconds * self.rate))
        capacity = max(self._block, round(ahead_seconds * self.rate))
        self.buffer = RingBuffer(capacity, self.channels)
        self.player = devices.Player(
            rate=self.rate,
            channels=self.channels,
            device=device,
            buffer=self.buffer,
            latency="low",
            preroll_frames=min(capacity, self.length),
        )
        #: ``(frame, source)``: from ``frame`` on, the feeder wrote ``source`` (0 = the start)
        self.switches: list[tuple[int, int]] = [(0, self._active)]
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def active(self) -> int:
        """The source the feeder writes now (heard after the ring's delay)."""
        return self._active

    def select(self, index: int) -> None:
        """Continue with source ``index`` from the current position."""
        self._active = int(index) % len(self.sources)

    def toggle(self) -> int:
        """Switch to the next source (A ↔ B); returns the new one."""
        self.select(self._active + 1)
        return self._active

    @property
    def position(self) -> int:
        """Frames played so far."""
        return self.player.position

    @property
    def heard(self) -> int:
        """The source audible at :attr:`position` (a switch is heard once played)."""
        pos = self.position
        source = self.switches[0][1]
        for frame, index in list(self.switches):
            if frame <= pos:
                source = index
        return source

    @property
    def finished(self) -> bool:
        """Everything was played (or playback was stopped)."""
        return self.player.finished.is_set() or self._stop.is_set()

    def start(self) -> None:
        """Open the output stream and start feeding it.

        Raises:
            AudioDeviceError: the output device cannot play.
        """
        self.player.start()
        self._thread = threading.Thread(target=self._feed, name="audition-feeder", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop playback and the feeder (waits for it). Idempotent."""
        self._stop.set()
        self.player.stop()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(2.0)

    def _segment(self, index: int, start: int, frames: int) -> npt.NDArray[np.float32]:
        src = self.sources[index].samples
        out = np.zeros((self.channels, frames), np.float32)
        end = min(src.shape[1], start + frames)
        if end > start:
            out[:, : end - start] = src[:, start:end]
        return out

    def _feed(self) -> None:
        pos, current = 0, self._active
        ring = self.buffer
        try:
            while pos < self.length and not self._stop.is_set():
                n = min(self._block, self.length - pos)
                wanted = self._active
                data = self._segment(wanted, pos, n)
                if wanted != current:
                    fade = min(n, self._fade)
                    t = (np.arange(fade, dtype=np.float32) + 0.5) / fade
                    old = self._segment(current, pos, fade)
                    data[:, :fade] = old * np.cos(0.5 * np.pi * t) + data[:, :fade] * np.sin(
                        0.5 * np.pi * t
                    )
                    self.switches.append((pos, wanted))
                    current = wanted
                done = 0
                while done < n and not self._stop.is_set():
                    done += ring.write_clip_samples(data[:, done:], block=True, timeout=0.05)
                pos += done
        finally:
            ring.close()


def describe_provenance(take: TakeRecord) -> str:
    """The take's provenance as a few lines of plain text."""
    p = take.provenance
    lines = [take.name + (" ★" if take.kept else "")]
    model = " ".join(str(p[k]) for k in ("model", "model_version") if p.get(k))
    if p.get("engine") or model:
        lines.append(f"{p.get('engine', '?')} · {model}")
    settings = []
    for key, label in (
        ("seed", "seed"),
        ("temperature", "T"),
        ("top_k", "top-k"),
        ("top_p", "top-p"),
        ("adapt_steps", "adapted"),
    ):
        value = p.get(key)
        if value is not None:
            settings.append(
                f"{label} {value:g}" if isinstance(value, float) else f"{label} {value}"
            )
    if isinstance(p.get("candidates"), int) and p["candidates"] > 1:
        settings.append(f"chosen of {p['candidates']} beginnings")
    if p.get("level_match") is True:
        settings.append("at the prompt's level")
    if p.get("beat_guidance") is True:
        settings.append("on the prompt's beat")
    if settings:
        lines.append(" · ".join(settings))
    if p.get("match_rank") and p.get("match_of"):
        lines.append(
            f"{p.get('rank_by') or 'prompt'} match {p.get('match', 0):.3f}: "
            f"{p['match_rank']} of {p['match_of']} takes"
        )
    state = "complete" if p.get("complete", True) else "partial (stopped)"
    length = f"{take.continuation.duration:.2f} s"
    if p.get("seconds") is not None:
        length += f" of {float(p['seconds']):.2f} s"
    lines.append(f"{length}, {state}")
    run = []
    if p.get("device_used") or p.get("device"):
        run.append(f"device {p.get('device_used') or p.get('device')}")
    if p.get("rtf") is not None:
        run.append(f"RTF {float(p['rtf']):.2f}")
    if run:
        lines.append(" · ".join(run))
    if take.prompt_range is not None:
        s, e = take.prompt_range
        rate = take.output.rate
        lines.append(f"prompt {s / rate:.2f}–{e / rate:.2f} s")
    if p.get("time"):
        lines.append(str(p["time"]))
    return "\n".join(lines)


def ab_letter(index: int) -> str:
    """The letter of take ``index`` in a comparison: A, B, C, …"""
    return chr(ord("A") + index)


def export_name(name: str) -> str:
    """A file-name-safe stem for a take name."""
    stem = re.sub(r"[^\w\- .]+", "_", name).strip(" .")
    return stem or "take"


class TakesPanel(QWidget):
    """The session's takes: list, provenance, audition, A/B, rename, keep, delete, insert, export.

    Args:
        window: the main window (:class:`~audiogen_studio.app.panel_support.EditorWindow`): its
            ``takes`` are shown and edited.
    """

    def __init__(self, window: EditorWindow) -> None:
        super().__init__()
        self.editor = window
        self.takes: TakeList = window.takes
        self.audition_player: Audition | None = None
        self._ab_ids: tuple[str, ...] = ()
        self._refreshing = False
        self._known: set[str] = set()

        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(list(COLUMNS))
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.table.setEditTriggers(
            QAbstractItemView.EditTrigger.DoubleClicked
            | QAbstractItemView.EditTrigger.EditKeyPressed
        )
        self.table.verticalHeader().setVisible(False)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(1, QHeaderView.ResizeMode.Interactive)
        header.setSectionResizeMode(2, QHeaderView.ResizeMode.ResizeToContents)
        header.setStretchLastSection(True)
        self.table.setColumnWidth(1, 90)
        self.details = QLabel("No takes yet: generate one")
        self.details.setWordWrap(True)
        self.details.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.details.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)
        self.playing_label = QLabel("")
        self.playing_label.setMinimumHeight(self.fontMetrics().lineSpacing())
        self.playing_label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Fixed)

        self.audition_button = QPushButton("▶ Audition")
        self.audition_button.setToolTip(
            f"Play the last {AUDITION_PROMPT_SECONDS:g} s of the prompt, then the take"
        )
        self.ab_button = QPushButton("A/B")
        self.ab_button.setToolTip(
            "Play the selected takes (two or more) in sync; B cycles through them, 1-9 picks one"
        )
        self.switch_button = QPushButton("Switch (B)")
        self.switch_button.setToolTip("Hear the next take of the comparison (B)")
        self.stop_button = QPushButton("■ Stop")
        self.keep_button = QPushButton("★ Keep")
        self.keep_button.setCheckable(True)
        self.rename_button = QPushButton("Rename")
        self.delete_button = QPushButton("Delete")
        self.insert_button = QPushButton("Insert after prompt")
        self.export_button = QPushButton("Export…")
        self.export_all_button = QPushButton("Export all…")
        self.format_combo = QComboBox()
        for fmt in EXPORT_FORMATS:
            self.format_combo.addItem(fmt.upper(), fmt)
        self.continuation_check = QCheckBox("continuation only")

        grid = QGridLayout()
        grid.setSpacing(4)
        buttons = (
            (self.audition_button, self.ab_button, self.switch_button, self.stop_button),
            (self.keep_button, self.rename_button, self.delete_button, self.insert_button),
        )
        for row, group in enumerate(buttons):
            for col, button in enumerate(group):
                grid.addWidget(button, row, col)
        export_row = QHBoxLayout()
        export_row.addWidget(self.export_button)
        export_row.addWidget(self.export_all_button)
        export_row.addWidget(self.format_combo)
        export_row.addWidget(self.continuation_check)
        export_row.addStretch(1)
        side = QVBoxLayout()
        side.addLayout(grid)
        side.addLayout(export_row)
        side.addWidget(self.playing_label)
        # the provenance scrolls inside a fixed area: a longer text never resizes the dock (a
        # resized dock relayouts the window and repaints every view: a GUI stall)
        self.details_area = QScrollArea()
        self.details_area.setWidgetResizable(True)
        self.details_area.setFrameShape(QFrame.Shape.NoFrame)
        self.details_area.setWidget(self.details)
        side.addWidget(self.details_area, 1)
        layout = QHBoxLayout(self)
        layout.addWidget(self.table, 3)
        layout.addLayout(side, 2)

        self.audition_button.clicked.connect(lambda: self.audition())
        self.ab_button.clicked.connect(lambda: self.start_ab())
        self.switch_button.clicked.connect(self.toggle_ab)
        self.stop_button.clicked.connect(self.stop_playback)
        self.keep_button.clicked.connect(lambda: self.toggle_keep())
        self.rename_button.clicked.connect(self._edit_name)
        self.delete_button.clicked.connect(lambda: self.delete())
        self.insert_button.clicked.connect(lambda: self.insert_after_prompt())
        self.export_button.clicked.connect(self._export_dialog)
        self.export_all_button.clicked.connect(self._export_all_dialog)
        self.table.itemSelectionChanged.connect(self._on_selection)
        self.table.itemChanged.connect(self._on_item_changed)
        self.ab_shortcut = QShortcut(QKeySequence("B"), self, self.toggle_ab)
        self.ab_shortcut.setContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
        self.pick_shortcuts = []  # 1-9: hear that take of the comparison
        for number in range(1, MAX_COMPARED + 1):
            shortcut = QShortcut(QKeySequence(str(number)), self)
            shortcut.setContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
            shortcut.activated.connect(lambda n=number: self.select_ab(n - 1))
            self.pick_shortcuts.append(shortcut)
        # Delete / Backspace in the list delete the take: claimed from the window's shortcuts
        # (its Delete edits the audio) while the list has focus
        self.table.installEventFilter(self)
        self._poll = QTimer(self)
        self._poll.setInterval(33)
        self._poll.timeout.connect(self._update_playing)

        self.takes.subscribe(self.refresh)
        takes, refresh = self.takes, self.refresh
        self.destroyed.connect(lambda *_: takes.unsubscribe(refresh))
        self._close_watcher = CloseWatcher(window, self.shutdown)
        self.refresh()

    # -- the list ---------------------------------------------------------------------------

    def refresh(self) -> None:
        """Redraw the table from ``window.takes``: keeps the selection by take id, or selects
        the newest take when takes were added."""
        if not shiboken6.isValid(self):  # the widget is gone, the take list lives on
            self.takes.unsubscribe(self.refresh)
            return
        selected = set(self.selected_ids())
        ids = [t.id for t in self.takes]
        added = [i for i in ids if i not in self._known]
        self._known = set(ids)
        if added:
            selected = {added[-1]}
        self._refreshing = True
        self.table.blockSignals(True)
        try:
            self.table.setRowCount(len(self.takes))
            for row, take in enumerate(self.takes):
                cells = (
                    "★" if take.kept else "",
                    take.name,
                    f"{take.continuation.duration:.2f} s",
                    take.describe(),
                )
                for col, text in enumerate(cells):
                    item = QTableWidgetItem(text)
                    item.setData(_ID_ROLE, take.id)
                    flags = Qt.ItemFlag.ItemIsSelectable | Qt.ItemFlag.ItemIsEnabled
                    if col == 1:
                        flags |= Qt.ItemFlag.ItemIsEditable
                    item.setFlags(flags)
                    item.setToolTip(describe_provenance(take))
                    self.table.setItem(row, col, item)
            self.table.clearSelection()
            mode = self.table.selectionModel()
            for row, take in enumerate(self.takes):
                if take.id in selected:
                    index = self.table.model().index(row, 0)
                    mode.select(
                        index,
                        mode.SelectionFlag.Select | mode.SelectionFlag.Rows,
                    )
        finally:
            self.table.blockSignals(False)
            self._refreshing = False
        self._on_selection()

    def selected_ids(self) -> list[str]:
        """Ids of the selected takes, in list order."""
        rows = sorted({i.row() for i in self.table.selectionModel().selectedRows()})
        out = []
        for row in rows:
            item = self.table.item(row, 1)
            if item is not None:
                out.append(str(item.data(_ID_ROLE)))
        return out

    def select(self, *take_ids: str) -> None:
        """Select the takes with ``take_ids`` (the first becomes current)."""
        self.table.clearSelection()
        mode = self.table.selectionModel()
        first = True
        for take_id in take_ids:
            row = self.takes.index_of(take_id)
            index = self.table.model().index(row, 1)
            if first:
                self.table.setCurrentCell(row, 1)
                first = False
            mode.select(index, mode.SelectionFlag.Select | mode.SelectionFlag.Rows)

    def current_take(self) -> TakeRecord | None:
        """The first selected take."""
        ids = self.selected_ids()
        return self.takes.get(ids[0]) if ids else None

    def _take(self, take_id: str | None) -> TakeRecord | None:
        if take_id is not None:
            return self.takes.get(take_id)
        return self.current_take()

    def _on_selection(self) -> None:
        take = self.current_take()
        count = len(self.selected_ids())
        if take is not None:
            self.details.setText(describe_provenance(take))
        else:
            self.details.setText(
                "Select a take" if len(self.takes) else "No takes yet: generate one"
            )
        has = take is not None
        for b in (self.audition_button, self.rename_button, self.delete_button,
                  self.insert_button, self.export_button, self.keep_button):  # fmt: skip
            b.setEnabled(has)
        self.keep_button.setChecked(bool(take is not None and take.kept))
        self.ab_button.setEnabled(2 <= count <= MAX_COMPARED)
        self.export_all_button.setEnabled(bool(len(self.takes)))
        playing = self.audition_player is not None
        self.stop_button.setEnabled(playing)
        self.switch_button.setEnabled(playing and len(self._ab_ids) >= 2)

    def _on_item_changed(self, item: QTableWidgetItem) -> None:
        if self._refreshing or item.column() != 1:
            return
        take_id = str(item.data(_ID_ROLE))
        name = item.text().strip()
        if name and name != self.takes.get(take_id).name:
            self.rename(take_id, name)
        else:
            self.refresh()

    def _edit_name(self) -> None:
        take = self.current_take()
        if take is not None:
            item = self.table.item(self.takes.index_of(take.id), 1)
            if item is not None:
                self.table.setCurrentItem(item)
                self.table.editItem(item)

    # -- editing ----------------------------------------------------------------------------

    def rename(self, take_id: str, name: str) -> None:
        """Give a take a new name."""
        self.takes.update(take_id, name=name.strip() or self.takes.get(take_id).name)

    def toggle_keep(self, take_id: str | None = None) -> bool:
        """Mark or unmark a take as a keeper; returns the new state."""
        take = self._take(take_id)
        if take is None:
            return False
        return self.takes.update(take.id, kept=not take.kept).kept

    def delete(self, take_id: str | None = None) -> bool:
        """Delete a take: one undo step on ``window.undo_stack`` if the window has one,
        otherwise after a confirmation (interactive windows only). Returns True if deleted."""
        take = self._take(take_id)
        if take is None:
            return False
        if self.audition_player is not None and take.id in self._playing_ids():
            self.stop_playback()
        stack = getattr(self.editor, "undo_stack", None)
        if stack is not None and hasattr(stack, "push"):
            stack.push(DeleteTakeCommand(self.takes, take))
            return True
        if getattr(self.editor, "interactive", False):
            answer = QMessageBox.question(
                self,
                "Delete take",
                f"Delete {take.name}? This cannot be undone.",
            )
            if answer != QMessageBox.StandardButton.Yes:
                return False
        self.takes.remove(take.id)
        return True

    def insert_after_prompt(self, take_id: str | None = None) -> bool:
        """Insert the take's continuation right after its prompt range in the editor's clip
        (undoable); with no clip open, the take becomes the clip. False when nothing to do."""
        take = self._take(take_id)
        if take is None:
            return False
        clip = self.editor.clip
        if clip is None:
            self.editor.set_clip(take.output, None)
            return True
        continuation = take.continuation
        if continuation.frames == 0:
            return False
        if take.prompt_range is not None:
            at = take.prompt_range[1]
        else:
            at = int(self.editor.cursor_frame())
        at = min(max(0, at), clip.frames)
        try:
            converted = conform(continuation, clip.rate, clip.channels)
        except AudioError as exc:
            self.editor.report_error("Cannot insert the take", str(exc))
            return False
        self.editor.insert_clip(at, converted, f"Insert {take.name}")
        return True

    # -- export -----------------------------------------------------------------------------

    def _export_clip(self, take: TakeRecord, continuation_only: bool) -> Clip:
        return take.continuation if continuation_only else take.output

    def export(self, take_id: str, path: str | Path, *, continuation_only: bool = False) -> Path:
        """Write one take to ``path`` (WAV or FLAC by extension; replaces an existing file).

        Raises:
            AudioFileError: unsupported extension or the file cannot be written.
        """
        take = self.takes.get(take_id)
        return io.save(self._export_clip(take, continuation_only), path, overwrite=True)

    def export_all(
        self, folder: str | Path, fmt: str = "wav", *, continuation_only: bool = False
    ) -> list[Path]:
        """Write every take to ``folder/<name>.<fmt>`` (names made unique); returns the paths.

        Raises:
            AudioFileError: a file cannot be written.
            ValueError: unknown format.
        """
        if fmt not in EXPORT_FORMATS:
            raise ValueError(f"unknown export format {fmt!r} (use {', '.join(EXPORT_FORMATS)})")
        out = Path(folder)
        used: set[str] = set()
        written = []
        for take in self.takes:
            stem = export_name(take.name)
            candidate, n = stem, 2
            while candidate.lower() in used:
                candidate, n = f"{stem} ({n})", n + 1
            used.add(candidate.lower())
            clip = self._export_clip(take, continuation_only)
            written.append(io.save(clip, out / f"{candidate}.{fmt}", overwrite=True))
        return written

    def _export_dialog(self) -> None:
        take = self.current_take()
        if take is None:
            return
        fmt = str(self.format_combo.currentData())
        name, _ = QFileDialog.getSaveFileName(
            self,
            "Export take",
            f"{export_name(take.name)}.{fmt}",
            "WAV (*.wav);;FLAC (*.flac)" if fmt == "wav" else "FLAC (*.flac);;WAV (*.wav)",
        )
        if not name:
            return
        path = Path(name)
        if path.suffix.lower() not in (".wav", ".flac"):
            path = path.with_name(f"{path.name}.{fmt}")
        try:
            self.export(take.id, path, continuation_only=self.continuation_check.isChecked())
        except AudioError as exc:
            self.editor.report_error("Export failed", str(exc))
            return
        self.playing_label.setText(f"exported {path.name}")

    def _export_all_dialog(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Export all takes to")
        if not folder:
            return
        try:
            paths = self.export_all(
                folder,
                str(self.format_combo.currentData()),
                continuation_only=self.continuation_check.isChecked(),
            )
        except (AudioError, ValueError) as exc:
            self.editor.report_error("Export failed", str(exc))
            return
        self.playing_label.setText(f"exported {len(paths)} take(s) to {folder}")

    # -- listening --------------------------------------------------------------------------

    @staticmethod
    def audition_clip(take: TakeRecord, prompt_seconds: float = AUDITION_PROMPT_SECONDS) -> Clip:
        """The end of the prompt (``prompt_seconds``) followed by the continuation."""
        out = take.output
        start = max(0, take.prompt_frames - round(prompt_seconds * out.rate))
        return edit.crop(out, start, out.frames)

    def audition(self, take_id: str | None = None) -> bool:
        """Play the end of the prompt, then the take; False (with a message) if it cannot."""
        take = self._take(take_id)
        if take is None:
            return False
        return self._play([self.audition_clip(take)], (take.id,))

    def start_ab(self, *take_ids: str) -> bool:
        """Play two or more takes in sync from the same point; :meth:`toggle_ab` cycles through
        them and :meth:`select_ab` picks one.

        Without ids, the selected takes (2 to :data:`MAX_COMPARED`). All start
        ``AUDITION_PROMPT_SECONDS`` before their continuations (less if a prompt is shorter), so
        their continuations line up; the first take sets rate and channels.
        """
        ids = list(take_ids) if take_ids else self.selected_ids()
        if not 2 <= len(ids) <= MAX_COMPARED:
            self.playing_label.setText(
                f"Select 2 to {MAX_COMPARED} takes (Ctrl+click) to compare them"
            )
            return False
        takes = [self.takes.get(i) for i in ids]
        first = takes[0].output
        outputs = [first] + [conform(t.output, first.rate, first.channels) for t in takes[1:]]
        prompts = [round(t.prompt_frames * first.rate / t.output.rate) for t in takes]
        lead = min([round(AUDITION_PROMPT_SECONDS * first.rate), *prompts])
        clips = [
            edit.crop(out, prompt - lead, out.frames)
            for out, prompt in zip(outputs, prompts, strict=True)
        ]
        return self._play(clips, tuple(t.id for t in takes))

    def toggle_ab(self) -> None:
        """Hear the next take of an A/B comparison (the B key; after the last, the first)."""
        player = self.audition_player
        if player is not None and len(player.sources) >= 2:
            player.toggle()
            self._update_playing()

    def select_ab(self, index: int) -> bool:
        """Hear take ``index`` (0 = A) of the running comparison; False when there is none."""
        player = self.audition_player
        if player is None or len(player.sources) < 2 or not 0 <= index < len(player.sources):
            return False
        player.select(index)
        self._update_playing()
        return True

    def _play(self, clips: list[Clip], ids: tuple[str, ...]) -> bool:
        self.stop_playback()
        try:
            player = Audition(clips)
            player.start()
        except (AudioError, ValueError) as exc:
            self.playing_label.setText(f"playback unavailable: {exc}")
            self.editor.report_error("Cannot play", str(exc))
            return False
        self.audition_player = player
        self._ab_ids = ids
        self._poll.start()
        self._update_playing()
        self._on_selection()
        return True

    def _playing_ids(self) -> tuple[str, ...]:
        return self._ab_ids if self.audition_player is not None else ()

    def _name(self, take_id: str) -> str:
        try:
            return self.takes.get(take_id).name
        except KeyError:
            return "(deleted)"

    def _update_playing(self) -> None:
        player = self.audition_player
        if player is None:
            return
        if player.finished:
            self.stop_playback()
            return
        seconds = player.position / player.rate
        count = len(self._ab_ids)
        if count >= 2:
            heard = player.heard
            letters = "/".join(ab_letter(i) for i in range(count))
            switching = (
                f" (switching to {ab_letter(player.active)}…)" if player.active != heard else ""
            )
            self.playing_label.setText(
                f"{letters}: hearing {ab_letter(heard)} = {self._name(self._ab_ids[heard])}"
                f"{switching} · {seconds:.1f} s"
            )
        else:
            self.playing_label.setText(f"playing {self._name(self._ab_ids[0])} · {seconds:.1f} s")

    def stop_playback(self) -> None:
        """Stop an audition or A/B comparison."""
        player, self.audition_player = self.audition_player, None
        self._poll.stop()
        if player is not None:
            player.stop()
            self.playing_label.setText("")
        self._ab_ids = ()
        self._on_selection()

    def shutdown(self) -> None:
        """Stop playback (the window is closing)."""
        self.stop_playback()

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if watched is self.table and event.type() in (
            QEvent.Type.ShortcutOverride,
            QEvent.Type.KeyPress,
        ):
            key = event.key() if isinstance(event, QKeyEvent) else None
            if key in (Qt.Key.Key_Delete, Qt.Key.Key_Backspace):
                if event.type() == QEvent.Type.KeyPress:
                    self.delete()
                event.accept()
                return True
        return super().eventFilter(watched, event)

    def sizeHint(self) -> QSize:
        return QSize(900, 200)

    def __repr__(self) -> str:
        return f"TakesPanel({len(self.takes)} takes)"
