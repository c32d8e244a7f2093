"""The main window: the editor (waveform + spectrogram), editing with undo, files and recovery.

The window is the document of one editing session: the open :attr:`MainWindow.clip`, its
selection and cursor (:class:`~audiogen_studio.app.selection.SelectionModel`), the undo history
(:attr:`MainWindow.undo_stack`, every edit a ``QUndoCommand`` from
:mod:`~audiogen_studio.app.edit_commands`), the session's takes (:attr:`MainWindow.takes`) and
the project file they are saved to (:mod:`~audiogen_studio.app.project`). Panels (generation,
recording, takes) are docks that talk to the window through the contract in
:mod:`~audiogen_studio.app.panel_support`. In both views a press within a few pixels of a
selection edge grabs that edge and the drag moves it (a size-hor cursor shows it,
:mod:`~audiogen_studio.app.edge_drag`).

No edit or take is lost: changes are autosaved (debounced after each change, and every
``autosave_seconds``) on a worker thread into the user data dir's ``recovery/`` folder; a window
that closes cleanly removes its autosave, so one that is found on start (its lock not held)
belongs to a session that crashed, and the window offers to restore it. The undo history is
saved with the project and the autosave, so after reopening or recovering, the edits made
before can still be undone (:mod:`~audiogen_studio.app.undo_history` says how much is kept).
Closing, quitting or opening another file with unsaved changes asks Save / Discard / Cancel.
Both prompts are injectable (``unsaved_prompt=``, ``recovery_prompt=``) so tests answer them.
Files open from File ▸ Open, File ▸ Open Recent (a file that is gone is dropped from it) or by
dropping audio files or projects onto the window.

The GUI thread only draws: loading happens before the views are (re)built, playback runs in
PortAudio's callback thread (:mod:`~audiogen_studio.app.transport`), and a 30 Hz timer moves the
playhead. Keyboard shortcuts follow Audacity (see :data:`SHORTCUTS`).
"""

from __future__ import annotations

import concurrent.futures
import logging
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Literal

from PySide6.QtCore import QPointF, QSettings, Qt, QTimer
from PySide6.QtGui import (
    QAction,
    QCloseEvent,
    QDragEnterEvent,
    QDragMoveEvent,
    QDropEvent,
    QIcon,
    QKeySequence,
    QUndoStack,
)
from PySide6.QtWidgets import (
    QApplication,
    QDockWidget,
    QFileDialog,
    QInputDialog,
    QLabel,
    QListWidget,
    QMainWindow,
    QMessageBox,
    QScrollArea,
    QScrollBar,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from audiogen_studio.app import loading, zoom
from audiogen_studio.app.clipboard import clipboard
from audiogen_studio.app.edge_drag import EdgeHover, frame_at, grab_tolerance_frames
from audiogen_studio.app.edit_commands import ClipEditor, EditError, history_of, restore_history
from audiogen_studio.app.export_dialog import ExportDialog, ExportOptions, export_clip
from audiogen_studio.app.generation import GenerationController
from audiogen_studio.app.generation_panel import GenerationPanel
from audiogen_studio.app.library_dock import LibraryDock, take_uids_from_mime
from audiogen_studio.app.project import (
    PROJECT_SUFFIX,
    AutosaveSession,
    ProjectError,
    ProjectState,
    RecoveryInfo,
    default_recovery_root,
    discard_recovery,
    find_recoverable,
    load_project,
    save_project,
)
from audiogen_studio.app.selection import SelectionModel, Span
from audiogen_studio.app.takes_model import TakeList
from audiogen_studio.app.transport import Transport
from audiogen_studio.app.views import COLORMAPS, SpectrogramView, WaveformView, format_time
from audiogen_studio.audio import devices
from audiogen_studio.audio.clip import Clip
from audiogen_studio.audio.errors import AudioError
from audiogen_studio.engine import bundles
from audiogen_studio.library import LibraryError, TakeLibrary

log = logging.getLogger(__name__)

ICON = Path(__file__).resolve().parents[2] / "resources" / "icons" / "audiogen-studio.svg"
AUDIO_FILTER = (
    f"Audio files and projects (*.wav *.flac *.ogg *.oga *.opus *.mp3 *.aif *.aiff "
    f"*{PROJECT_SUFFIX});;AudioGen Studio projects (*{PROJECT_SUFFIX});;All files (*)"
)
PROJECT_FILTER = f"AudioGen Studio project (*{PROJECT_SUFFIX})"
#: what a drop onto the window opens (the extensions of :data:`AUDIO_FILTER`)
DROP_SUFFIXES = frozenset(
    {".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff", PROJECT_SUFFIX}
)
MAX_RECENT = 10
AUTOSAVE_SECONDS = 30.0
AUTOSAVE_DELAY = 2.0  # debounce after an edit

UnsavedAnswer = Literal["save", "discard", "cancel"]
RecoveryAnswer = Literal["restore", "discard", "later"]
UnsavedPrompt = Callable[[str], UnsavedAnswer]
RecoveryPrompt = Callable[[list[RecoveryInfo]], RecoveryAnswer]

#: Audacity's keys for the editor's actions (action name -> key sequences).
SHORTCUTS: dict[str, tuple[str, ...]] = {
    "open": ("Ctrl+O",),
    "save": ("Ctrl+S",),
    "save_as": ("Ctrl+Shift+S",),
    "export": ("Ctrl+Shift+E",),
    "record": ("R",),
    "quit": ("Ctrl+Q",),
    "undo": ("Ctrl+Z",),
    "redo": ("Ctrl+Y", "Ctrl+Shift+Z"),
    "cut": ("Ctrl+X",),
    "copy": ("Ctrl+C",),
    "paste": ("Ctrl+V",),
    "delete": ("Del", "Backspace", "Ctrl+K"),
    "trim": ("Ctrl+T",),
    "silence": ("Ctrl+L",),
    "select_all": ("Ctrl+A",),
    "select_none": ("Ctrl+Shift+A",),
    "zoom_in": ("Ctrl+1",),
    "zoom_normal": ("Ctrl+2",),
    "zoom_out": ("Ctrl+3",),
    "zoom_selection": ("Ctrl+E",),
    "zoom_fit": ("Ctrl+F",),
    "play": ("Space",),
    "loop": ("Shift+Space",),
    "cursor_start": ("Home",),
    "cursor_end": ("End",),
}
#: Keys that act on the audio only while the waveform or spectrogram has focus (Delete and
#: Backspace also mean "delete the selected item" in the panels' lists).
EDITOR_ONLY_SHORTCUTS = frozenset({"delete"})
ZOOM_NORMAL_SECONDS = 10.0  # Ctrl+2: about ten seconds across the window


class MainWindow(QMainWindow):
    """AudioGen Studio's main window.

    Args:
        interactive: show modal dialogs (errors, prompts); False for screenshots and tests,
            where errors go to the status bar only and unanswered prompts discard / skip.
        recovery_root: where autosaves go (default: ``recovery/`` in the user data dir).
        autosave_seconds: period of the autosave timer.
        autosave_delay: debounce after a change before autosaving.
        unsaved_prompt: answers "unsaved changes in NAME": ``"save"``, ``"discard"`` or
            ``"cancel"`` (default: a message box when interactive, else ``"discard"``).
        recovery_prompt: answers "restore these crashed sessions?": ``"restore"`` (the newest),
            ``"discard"`` (all of them) or ``"later"``. The check runs once, right after the event
            loop starts, when interactive or when this is given (tests call
            :meth:`check_recovery` directly).
    """

    def __init__(
        self,
        *,
        interactive: bool = True,
        recovery_root: Path | None = None,
        autosave_seconds: float = AUTOSAVE_SECONDS,
        autosave_delay: float = AUTOSAVE_DELAY,
        unsaved_prompt: UnsavedPrompt | None = None,
        recovery_prompt: RecoveryPrompt | None = None,
    ) -> None:
        super().__init__()
        self.interactive = interactive
        self.clip: Clip | None = None
        self.path: Path | None = None  # the audio file the clip was opened from
        self.project_path: Path | None = None
        self._clip_token: str | None = None
        self._unsaved_content = False  # content that is in no file (recorded, generated, takes)
        self._loading = False
        self._shut_down = False
        self._opening: loading.BackgroundOpen | None = None  # a long file still converting
        self.unsaved_prompt: UnsavedPrompt = unsaved_prompt or self._ask_unsaved
        self.recovery_prompt: RecoveryPrompt = recovery_prompt or self._ask_recovery
        self.ask_project_path: Callable[[], Path | None] = self._ask_project_path
        self.export_options = ExportOptions()
        self.setWindowTitle("untitled[*] — AudioGen Studio")
        if ICON.is_file():
            self.setWindowIcon(QIcon(str(ICON)))
        self.setAcceptDrops(True)

        # -- the document ---------------------------------------------------------------------
        self.undo_stack = QUndoStack(self)
        # bound methods, not lambdas: Qt drops the connections when the window is destroyed
        self.undo_stack.cleanChanged.connect(self._on_clean_changed)
        self.undo_stack.indexChanged.connect(self._on_index_changed)
        self.takes = TakeList()
        self.takes.subscribe(self._takes_changed)
        self.selection_model = SelectionModel(self)
        self.selection_model.changed.connect(self._show_selection)
        self.clipboard = clipboard()
        self.clipboard.subscribe(self._update_actions)
        self.editor = ClipEditor(self, self.undo_stack, self.selection_model, self.clipboard)
        self.transport = Transport()

        # -- views ----------------------------------------------------------------------------
        self.waveform = WaveformView()
        self.spectrogram = SpectrogramView()
        self.spectrogram.setXLink(self.waveform)
        for view in (self.waveform, self.spectrogram):
            view.gesture.connect(self._on_gesture)
        # size-hor cursor near a selection edge (a press there drags the edge)
        self.edge_hovers = [
            EdgeHover(view, self.selection_model, self._clip_rate)
            for view in (self.waveform, self.spectrogram)
        ]
        splitter = QSplitter(Qt.Orientation.Vertical)
        splitter.addWidget(self.waveform)
        splitter.addWidget(self.spectrogram)
        splitter.setSizes([500, 400])
        self.scrollbar = QScrollBar(Qt.Orientation.Horizontal)
        self.scrollbar.setEnabled(False)
        self.scrollbar.valueChanged.connect(self._scrollbar_moved)
        self.waveform.view_box.sigXRangeChanged.connect(self._on_range_changed)
        central = QWidget()
        layout = QVBoxLayout(central)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        layout.addWidget(splitter, 1)
        layout.addWidget(self.scrollbar)
        self.setCentralWidget(central)
        self._editor_area = central

        # -- docks ----------------------------------------------------------------------------
        self._docks: dict[str, QDockWidget] = {}
        self.models_list = QListWidget()
        self.add_panel_dock("Models", self.models_list)
        # the one long-lived generation thread: created here, quit and waited for in closeEvent
        self.generation = GenerationController(self)
        self.generation_panel = GenerationPanel(self.generation, window=self)
        scroll = QScrollArea()  # the panel scrolls rather than forcing a tall window
        scroll.setWidgetResizable(True)
        scroll.setWidget(self.generation_panel)
        gen_dock = self.add_panel_dock("Generate", scroll, tabify_with="Models")
        self.recording_panel: QWidget | None = None
        self.takes_panel: QWidget | None = None
        self.library: TakeLibrary | None = None
        self.library_dock: LibraryDock | None = None
        self._add_optional_panels()
        self._add_library_dock()
        gen_dock.raise_()
        self.refresh_models()

        # -- status bar -----------------------------------------------------------------------
        self.file_label = QLabel("No file open: File ▸ Open, or drop an audio file here")
        self.statusBar().addWidget(self.file_label, 1)
        self.selection_label = QLabel("")
        self.statusBar().addPermanentWidget(self.selection_label)
        self.device_label = QLabel("")
        self.statusBar().addPermanentWidget(self.device_label)

        self.actions_by_name: dict[str, QAction] = {}
        self._build_menus()
        self._playhead_timer = QTimer(self)
        self._playhead_timer.setInterval(33)
        self._playhead_timer.timeout.connect(self._update_playhead)

        # -- autosave -------------------------------------------------------------------------
        self.recovery_root = Path(recovery_root) if recovery_root else default_recovery_root()
        self.autosave_session = AutosaveSession(self.recovery_root)
        self._autosave_executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._autosave_future: concurrent.futures.Future[Path] | None = None
        self._autosave_pending = False  # changed since the last autosave started
        self._autosave_debounce = QTimer(self)
        self._autosave_debounce.setSingleShot(True)
        self._autosave_debounce.setInterval(round(autosave_delay * 1000))
        self._autosave_debounce.timeout.connect(self.autosave_now)
        self._autosave_timer = QTimer(self)
        self._autosave_timer.setInterval(round(autosave_seconds * 1000))
        self._autosave_timer.timeout.connect(self._autosave_tick)
        self._autosave_timer.start()
        self._recovery_checked = False
        if interactive or recovery_prompt is not None:
            QTimer.singleShot(0, self, self.check_recovery)
        self._show_selection()
        self._update_title()

    # -- panels ------------------------------------------------------------------------------

    def add_panel_dock(
        self,
        title: str,
        widget: QWidget,
        *,
        area: Qt.DockWidgetArea = Qt.DockWidgetArea.RightDockWidgetArea,
        tabify_with: str | None = None,
    ) -> QDockWidget:
        """Put ``widget`` in a dock titled ``title`` (tabbed with the dock ``tabify_with``)."""
        dock = QDockWidget(title, self)
        dock.setObjectName(f"{title.lower().replace(' ', '-')}-dock")
        dock.setWidget(widget)
        self.addDockWidget(area, dock)
        other = self._docks.get(tabify_with) if tabify_with else None
        if other is not None:
            self.tabifyDockWidget(other, dock)
        self._docks[title] = dock
        return dock

    def _add_optional_panels(self) -> None:
        """The recording and takes panels, when their modules are installed."""
        try:
            from audiogen_studio.app.recording_panel import RecordingPanel
        except ImportError as exc:  # pragma: no cover - the panel ships with the app
            log.info("no recording panel: %s", exc)
        else:
            self.recording_panel = RecordingPanel(self)
            self.add_panel_dock("Record", self.recording_panel, tabify_with="Generate")
        try:
            from audiogen_studio.app.takes_panel import TakesPanel
        except ImportError as exc:  # pragma: no cover
            log.info("no takes panel: %s", exc)
        else:
            self.takes_panel = TakesPanel(self)
            self.add_panel_dock(
                "Takes", self.takes_panel, area=Qt.DockWidgetArea.BottomDockWidgetArea
            )

    def _add_library_dock(self) -> None:
        """The take library (issue 7): every generated take is recorded there by itself.

        A library that cannot be opened (a read-only data folder, a newer schema) is reported
        in the log and the dock is left out; the app works on without it.
        """
        try:
            self.library = TakeLibrary()
        except (LibraryError, OSError) as exc:
            log.warning("take library unavailable: %s", exc)
            return
        dock = LibraryDock(self.library, None, self)
        self.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, dock)
        models = self._docks.get("Models")
        if models is not None:
            self.tabifyDockWidget(models, dock)
        self._docks["Library"] = dock
        dock.watch(self.takes, prompt_source=lambda: str(self.path) if self.path else "")
        dock.insert_requested.connect(self._insert_library_take)
        self.library_dock = dock

    def _insert_library_take(self, uid: str, frame: int | None = None) -> bool:
        """Insert a library take's audio at ``frame`` (default: the cursor), one undo step."""
        if self.library is None:
            return False
        try:
            audio = self.library.audio(uid)
            name = self.library.get(uid).name or uid[:8]
        except (LibraryError, AudioError) as exc:
            self.report_error("Cannot insert the take", str(exc))
            return False
        at = self.selection_model.cursor if frame is None else frame
        if self.clip is not None:
            at = max(0, min(at, self.clip.frames))
        self.insert_clip(at, audio, f"Insert library take {name}")
        return True

    def _insert_library_takes(self, uids: list[str], frame: int | None) -> None:
        """Insert dropped library takes one after the other at ``frame`` (or the cursor)."""
        at = frame
        for uid in uids:
            before = self.clip.frames if self.clip is not None else 0
            if not self._insert_library_take(uid, at):
                return
            after = self.clip.frames if self.clip is not None else 0
            start = self.selection_model.cursor if at is None else at
            at = min(start, before) + (after - before)

    # -- menus -------------------------------------------------------------------------------

    def _action(
        self, name: str, text: str, slot: Callable[[], object], *, checkable: bool = False
    ) -> QAction:
        act = QAction(text, self)
        keys = SHORTCUTS.get(name, ())
        if keys:
            act.setShortcuts([QKeySequence(k) for k in keys])
        act.setCheckable(checkable)
        act.triggered.connect(lambda _=False: slot())
        if name in EDITOR_ONLY_SHORTCUTS:
            # only while the editor has focus: a panel's list keeps its own Delete key
            act.setShortcutContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
            self._editor_area.addAction(act)
        else:
            self.addAction(act)  # shortcuts work even when the menu bar is hidden
        self.actions_by_name[name] = act
        return act

    def _build_menus(self) -> None:
        bar = self.menuBar()
        file_menu = bar.addMenu("&File")
        self.open_action = self._action("open", "&Open…", self._open_dialog)
        file_menu.addAction(self.open_action)
        self.recent_menu = file_menu.addMenu("Open &Recent")
        self._rebuild_recent()
        file_menu.addSeparator()
        file_menu.addAction(self._action("save", "&Save Project", self.save_project))
        file_menu.addAction(self._action("save_as", "Save Project &As…", self.save_project_as))
        file_menu.addAction(self._action("export", "&Export Audio…", self._export_dialog))
        file_menu.addSeparator()
        self.record_action = self._action("record", "&Record / Stop Recording", self.toggle_record)
        file_menu.addAction(self.record_action)
        file_menu.addSeparator()
        file_menu.addAction(self._action("quit", "&Quit", self.close))

        edit_menu = bar.addMenu("&Edit")
        undo = self.undo_stack.createUndoAction(self, "&Undo")
        undo.setShortcuts([QKeySequence(k) for k in SHORTCUTS["undo"]])
        redo = self.undo_stack.createRedoAction(self, "&Redo")
        redo.setShortcuts([QKeySequence(k) for k in SHORTCUTS["redo"]])
        for name, act in (("undo", undo), ("redo", redo)):
            self.addAction(act)
            self.actions_by_name[name] = act
            edit_menu.addAction(act)
        self.undo_action, self.redo_action = undo, redo
        edit_menu.addSeparator()
        edit_groups: list[list[tuple[str, str, Callable[[], object]]]] = [
            [
                ("cut", "Cu&t", self.cut),
                ("copy", "&Copy", self.copy),
                ("paste", "&Paste", self.paste),
                ("delete", "&Delete", self.delete_selection),
            ],
            [
                ("trim", "Tri&m Audio (keep selection)", self.trim),
                ("silence", "&Silence Audio", self.silence),
                ("fade_in", "Fade &In", self.fade_in),
                ("fade_out", "Fade &Out", self.fade_out),
                ("gain", "&Gain…", self.gain),
                ("normalize", "&Normalize…", self.normalize),
            ],
            [
                ("select_all", "Select &All", self.select_all),
                ("select_none", "Select &None", self.clear_selection),
            ],
        ]
        for i, group in enumerate(edit_groups):
            if i:
                edit_menu.addSeparator()
            for name, text, slot in group:
                edit_menu.addAction(self._action(name, text, slot))

        view_menu = bar.addMenu("&View")
        for name, text, slot in (
            ("zoom_in", "Zoom &In", self.zoom_in),
            ("zoom_normal", "Zoom &Normal", self.zoom_normal),
            ("zoom_out", "Zoom &Out", self.zoom_out),
            ("zoom_selection", "Zoom to &Selection", self.zoom_to_selection),
            ("zoom_fit", "Zoom to &Fit", self.zoom_to_fit),
        ):
            view_menu.addAction(self._action(name, text, slot))
        view_menu.addSeparator()
        self.scale_actions: dict[str, QAction] = {}
        for scale in ("linear", "log", "mel"):
            act = self._action(
                f"scale_{scale}",
                f"Spectrogram: {scale} frequency",
                lambda s=scale: self._set_scale(s),  # type: ignore[misc]
                checkable=True,
            )
            act.setChecked(scale == self.spectrogram.scale)
            view_menu.addAction(act)
            self.scale_actions[scale] = act
        colormap_menu = view_menu.addMenu("Spectrogram &colours")
        self.colormap_actions: dict[str, QAction] = {}
        for label, name in COLORMAPS.items():
            act = self._action(
                f"colormap_{name}",
                label,
                lambda n=name: self.set_colormap(n),  # type: ignore[misc]
                checkable=True,
            )
            act.setChecked(name == self.spectrogram.colormap)
            colormap_menu.addAction(act)
            self.colormap_actions[name] = act
        view_menu.addSeparator()
        panels = view_menu.addMenu("&Panels")
        for dock in self._docks.values():
            panels.addAction(dock.toggleViewAction())

        transport = bar.addMenu("&Transport")
        self.play_action = self._action("play", "&Play / Stop", self.toggle_playback)
        transport.addAction(self.play_action)
        self.loop_action = self._action("loop", "Play &Looped / Stop", self.toggle_loop)
        transport.addAction(self.loop_action)
        transport.addSeparator()
        transport.addAction(
            self._action("cursor_start", "Cursor to &Start", lambda: self.set_cursor(0))
        )
        transport.addAction(
            self._action(
                "cursor_end",
                "Cursor to &End",
                lambda: self.set_cursor(self.clip.frames if self.clip else 0),
            )
        )
        self._update_actions()

    def _set_scale(self, scale: str) -> None:
        self.spectrogram.set_scale(scale)
        for name, act in self.scale_actions.items():
            act.setChecked(name == scale)

    def set_colormap(self, name: str) -> None:
        """Colour the spectrogram with pyqtgraph colormap ``name``."""
        self.spectrogram.set_colormap(name)
        for key, act in self.colormap_actions.items():
            act.setChecked(key == name)

    def _update_actions(self) -> None:
        if not hasattr(self, "actions_by_name"):
            return
        has_clip = self.clip is not None
        has_sel = self.selection_model.selection is not None
        enable = {
            "cut": has_sel,
            "copy": has_sel,
            "delete": has_sel,
            "trim": has_sel,
            "paste": has_clip and self.clipboard.clip is not None,
            "zoom_selection": has_sel,
        }
        for name in ("silence", "fade_in", "fade_out", "gain", "normalize", "select_all"):
            enable[name] = has_clip
        for name in ("play", "loop", "export", "zoom_in", "zoom_out", "zoom_fit", "zoom_normal"):
            enable[name] = has_clip
        for name, on in enable.items():
            act = self.actions_by_name.get(name)
            if act is not None:
                act.setEnabled(on)

    def _rebuild_recent(self) -> None:
        self.recent_menu.clear()
        recent = self.recent_files()
        for i, path in enumerate(recent):
            mnemonic = f"&{i + 1} " if i < 9 else ""
            act = QAction(mnemonic + path.replace("&", "&&"), self)
            act.setData(path)
            act.triggered.connect(lambda _=False, p=path: self.open_recent(Path(p)))
            self.recent_menu.addAction(act)
        if recent:
            self.recent_menu.addSeparator()
            clear = QAction("&Clear Recent Files", self)
            clear.triggered.connect(lambda _=False: self.clear_recent_files())
            self.recent_menu.addAction(clear)
        self.recent_menu.setEnabled(bool(recent))

    @staticmethod
    def recent_files() -> list[str]:
        """Recently opened files and projects, newest first."""
        # type=list: an INI file stores a one-element list as a plain string
        value = QSettings().value("recent_files", [], type=list)
        return [str(v) for v in value if str(v)] if isinstance(value, list) else []

    def _remember(self, path: Path) -> None:
        recent = [str(path)] + [p for p in self.recent_files() if p != str(path)]
        QSettings().setValue("recent_files", recent[:MAX_RECENT])
        self._rebuild_recent()

    def _forget(self, path: Path) -> None:
        QSettings().setValue("recent_files", [p for p in self.recent_files() if p != str(path)])
        self._rebuild_recent()

    def clear_recent_files(self) -> None:
        """Empty File ▸ Open Recent."""
        QSettings().setValue("recent_files", [])
        self._rebuild_recent()

    def open_recent(self, path: Path) -> bool:
        """Open a file from File ▸ Open Recent; one that no longer exists is reported and
        removed from the list."""
        if not Path(path).exists():
            self._forget(Path(path))
            self.report_error("Cannot open file", f"{path} no longer exists")
            return False
        return self.open_file(Path(path))

    # -- the document ------------------------------------------------------------------------

    def document_name(self) -> str:
        """The project's name, else the audio file's, else "untitled"."""
        if self.project_path is not None:
            return self.project_path.name
        return self.path.name if self.path else "untitled"

    def is_modified(self) -> bool:
        """True when something is not saved: edits since the last save, new audio or takes."""
        return self._unsaved_content or not self.undo_stack.isClean()

    def _on_clean_changed(self, clean: bool) -> None:
        self._update_title()

    def _on_index_changed(self, index: int) -> None:
        self._document_changed()

    def _on_range_changed(self, *args: object) -> None:
        self._sync_scrollbar()

    def _update_title(self) -> None:
        self.setWindowTitle(f"{self.document_name()}[*] — AudioGen Studio")
        self.setWindowModified(self.is_modified())

    def set_clip(self, clip: Clip, path: Path | None = None) -> None:
        """Start a new document with ``clip`` (from ``path``, or unsaved when ``None``).

        No prompt and no undo step: the undo history is cleared; the takes are kept. Use
        :meth:`apply_edit` or :meth:`insert_clip` to change the document undoably.
        """
        self._new_document(clip, path=path, project_path=None, unsaved=path is None)

    def _new_document(
        self,
        clip: Clip | None,
        *,
        path: Path | None,
        project_path: Path | None,
        unsaved: bool,
        token: str | None = None,
    ) -> None:
        self._cancel_opening()
        self.stop_playback()
        self._loading = True
        try:
            self.undo_stack.clear()
        finally:
            self._loading = False
        self.clip, self.path, self.project_path = clip, path, project_path
        self._clip_token = token or uuid.uuid4().hex[:16]
        self.waveform.set_clip(clip)
        self.spectrogram.set_clip(clip)
        self.waveform.zoom_to_fit()
        self.selection_model.reset(clip.frames if clip is not None else 0)
        self._unsaved_content = unsaved
        self.undo_stack.setClean()
        self._update_labels()
        self._update_title()
        self._update_actions()
        self._document_changed()
        if QApplication.focusWidget() is None:
            self.waveform.setFocus()  # the editor's keys (Del) work right away

    def show_edit(
        self, clip: Clip | None, selection: Span | None, cursor: int, changed_from: int
    ) -> None:
        """Show a new state of the document (called by undo commands; see ``EditTarget``)."""
        self.stop_playback()
        previous = self.clip
        new_shape = clip is None or previous is None or clip.channels != previous.channels
        self.clip = clip
        self._clip_token = uuid.uuid4().hex[:16]
        self.waveform.set_clip(clip, changed_from=None if new_shape else changed_from)
        self.spectrogram.set_clip(clip, changed_from=changed_from)
        if clip is not None:
            if previous is None or previous.frames == 0:
                self.waveform.zoom_to_fit()  # there was nothing to keep the view of
            else:  # keep the view, clamped to the new length
                self.waveform.set_view_range(*self.waveform.view_range())
        self.selection_model.set_length(clip.frames if clip is not None else 0)
        self.selection_model.restore(selection, cursor)
        self._update_labels()
        self._update_actions()

    def _update_labels(self) -> None:
        clip = self.clip
        if clip is None:
            self.file_label.setText("No clip: File ▸ Open, record, or drop an audio file here")
            return
        self.file_label.setText(
            f"{self.document_name()}: {clip.rate} Hz, {clip.channels} ch, "
            f"{format_time(clip.duration)}"
        )

    def refresh_views(self) -> None:
        """Redraw both views for the current visible range (used before screenshots)."""
        self.waveform.redraw()
        self.spectrogram.redraw()

    def refresh_models(self) -> None:
        """List the installed model bundles (or say that there are none)."""
        self.models_list.clear()
        found = list(bundles.discover())
        for b in found:
            if isinstance(b, bundles.BrokenBundle):
                self.models_list.addItem(f"⚠ {b.path.name}: {b.reason}")
            else:
                self.models_list.addItem(f"{b.name} {b.version} — {b.kind}, {b.sample_rate} Hz")
        if not found:
            self.models_list.addItem("No model bundles installed yet.")
            self.models_list.addItem("See README: default models.")
        if hasattr(self, "generation_panel"):
            self.generation_panel.refresh_models()

    def report_error(self, title: str, message: str) -> None:
        """Show an error without ever crashing: status bar, plus a dialog when interactive."""
        log.warning("%s: %s", title, message)
        self.statusBar().showMessage(f"{title}: {message}", 15000)
        if self.interactive:
            QMessageBox.warning(self, title, message)

    def _takes_changed(self) -> None:
        if self._loading:
            return
        self._unsaved_content = True
        self._update_title()
        self._document_changed()

    # -- selection and cursor ----------------------------------------------------------------

    def selection(self) -> Span | None:
        """The selected frames ``(start, end)`` with ``start < end``, or ``None``."""
        return self.selection_model.selection

    def set_selection(self, start: int, end: int) -> None:
        """Select frames ``[start, end)`` (clamped to the clip; order does not matter)."""
        self.selection_model.set_selection(start, end)

    def clear_selection(self) -> None:
        """Select nothing (the cursor stays)."""
        self.selection_model.clear()

    def select_all(self) -> None:
        """Select the whole clip (Ctrl+A)."""
        self.selection_model.select_all()

    def cursor_frame(self) -> int:
        """The cursor frame (where paste, record and play start)."""
        return self.selection_model.cursor

    def set_cursor(self, frame: int) -> None:
        """Move the cursor (clears the selection)."""
        self.selection_model.set_cursor(frame)

    def _clip_rate(self) -> int | None:
        return self.clip.rate if self.clip is not None else None

    def _on_gesture(self, kind: str, seconds: float, shift: bool) -> None:
        if self.clip is None:
            return
        frame = self.clip.seconds_to_frames(seconds)
        model = self.selection_model
        if kind == "press":
            sender = self.sender()
            view = self.spectrogram if sender is self.spectrogram else self.waveform
            tolerance = grab_tolerance_frames(view, self.clip.rate)
            model.press(frame, extend=shift, grab_tolerance=tolerance)
        elif kind == "drag":
            model.drag(frame)
        elif kind == "release":
            model.release(frame)
        elif kind == "click":
            model.click(frame, extend=shift)

    def _show_selection(self) -> None:
        clip = self.clip
        sel = self.selection_model.selection
        rate = clip.rate if clip is not None else 1
        span = (sel[0] / rate, sel[1] / rate) if sel is not None and clip is not None else None
        cursor = self.selection_model.cursor / rate if clip is not None and sel is None else None
        for view in (self.waveform, self.spectrogram):
            view.show_selection(span)
            view.show_cursor(cursor)
        if clip is None:
            self.selection_label.setText("")
        elif sel is not None:
            self.selection_label.setText(
                f"Selection {format_time(sel[0] / rate)} – {format_time(sel[1] / rate)} "
                f"({format_time((sel[1] - sel[0]) / rate)})"
            )
        else:
            self.selection_label.setText(
                f"Cursor {format_time(self.selection_model.cursor / rate)}"
            )
        self._update_actions()

    # -- editing -----------------------------------------------------------------------------

    def _edit(self, op: Callable[[], object]) -> bool:
        """Run an editor op; an :class:`EditError` becomes a status-bar message."""
        try:
            op()
        except EditError as exc:
            self.statusBar().showMessage(str(exc), 8000)
            return False
        return True

    def apply_edit(self, label: str, new_clip: Clip, selection: Span | None = None) -> None:
        """Replace the whole clip with ``new_clip`` as one undo step named ``label``.

        Only the frames that differ are kept for undo. ``selection`` is selected afterwards.
        """
        self._edit(lambda: self.editor.apply_edit(label, new_clip, selection))

    def insert_clip(self, frame: int, clip: Clip, label: str) -> None:
        """Insert ``clip`` before ``frame`` as one undo step (converted to the clip's rate and
        channels); without a document, ``clip`` becomes the document."""
        self._edit(lambda: self.editor.insert_clip(frame, clip, label))

    def cut(self) -> bool:
        """Cut the selection to the clipboard (Ctrl+X)."""
        return self._edit(self.editor.cut)

    def copy(self) -> bool:
        """Copy the selection to the clipboard (Ctrl+C)."""
        ok = self._edit(self.editor.copy)
        self._update_actions()
        return ok

    def paste(self) -> bool:
        """Paste at the cursor or over the selection (Ctrl+V)."""
        return self._edit(self.editor.paste)

    def delete_selection(self) -> bool:
        """Delete the selection (Del)."""
        return self._edit(self.editor.delete)

    def trim(self) -> bool:
        """Keep only the selection (Ctrl+T)."""
        return self._edit(self.editor.trim)

    def silence(self) -> bool:
        """Silence the selection, or the whole clip (Ctrl+L)."""
        return self._edit(self.editor.silence)

    def fade_in(self) -> bool:
        """Linear fade-in over the selection, or the whole clip."""
        return self._edit(self.editor.fade_in)

    def fade_out(self) -> bool:
        """Linear fade-out over the selection, or the whole clip."""
        return self._edit(self.editor.fade_out)

    def gain(self, db: float | None = None) -> bool:
        """Amplify the selection (or everything) by ``db`` dB; asks for it when ``None``."""
        if db is None:
            value, ok = QInputDialog.getDouble(self, "Gain", "Gain (dB):", 0.0, -60.0, 60.0, 1)
            if not ok:
                return False
            db = value
        gain_db = float(db)
        return self._edit(lambda: self.editor.gain(gain_db))

    def normalize(self, peak_db: float | None = None) -> bool:
        """Normalize the selection's peak to ``peak_db`` dBFS; asks for it when ``None``."""
        if peak_db is None:
            value, ok = QInputDialog.getDouble(
                self, "Normalize", "Peak level (dBFS):", -1.0, -60.0, 0.0, 1
            )
            if not ok:
                return False
            peak_db = value
        level = float(peak_db)
        return self._edit(lambda: self.editor.normalize(level))

    # -- zoom and scroll ---------------------------------------------------------------------

    def visible_range(self) -> tuple[float, float]:
        """The visible time range in seconds (both views show the same)."""
        return self.waveform.view_range()

    def set_visible_range(self, t0: float, t1: float) -> None:
        """Show ``[t0, t1]`` seconds in both views (clamped to the clip)."""
        self.waveform.set_view_range(t0, t1)

    def zoom_in(self) -> None:
        """Ctrl+1: twice the detail, about the centre."""
        self.waveform.zoom_by(zoom.ZOOM_STEP)

    def zoom_out(self) -> None:
        """Ctrl+3: half the detail, about the centre."""
        self.waveform.zoom_by(1.0 / zoom.ZOOM_STEP)

    def zoom_normal(self) -> None:
        """Ctrl+2: about ten seconds across the view, starting at the view's start."""
        t0, _ = self.visible_range()
        self.set_visible_range(t0, t0 + ZOOM_NORMAL_SECONDS)

    def zoom_to_selection(self) -> None:
        """Ctrl+E: the selection fills the view."""
        sel, clip = self.selection_model.selection, self.clip
        if sel is None or clip is None:
            return
        t0, t1 = zoom.selection_range(
            sel[0] / clip.rate, sel[1] / clip.rate, clip.duration, self.waveform.min_width
        )
        self.waveform.setXRange(t0, t1, padding=0.0)

    def zoom_to_fit(self) -> None:
        """Ctrl+F: the whole clip."""
        self.waveform.zoom_to_fit()

    def _sync_scrollbar(self) -> None:
        clip = self.clip
        bar = self.scrollbar
        bar.blockSignals(True)
        try:
            if clip is None:
                bar.setRange(0, 0)
                bar.setEnabled(False)
                return
            maximum, page, value = zoom.scrollbar_units(self.visible_range(), clip.duration)
            bar.setRange(0, maximum)
            bar.setPageStep(page)
            bar.setSingleStep(max(1, page // 10))
            bar.setValue(value)
            bar.setEnabled(maximum > 0)
        finally:
            bar.blockSignals(False)

    def _scrollbar_moved(self, value: int) -> None:
        clip = self.clip
        if clip is None:
            return
        view = self.visible_range()
        start = zoom.scrollbar_to_start(value, view, clip.duration)
        width = view[1] - view[0]
        self.waveform.setXRange(start, start + width, padding=0.0)

    # -- files -------------------------------------------------------------------------------

    def _open_dialog(self) -> None:
        name, _ = QFileDialog.getOpenFileName(self, "Open audio or project", "", AUDIO_FILTER)
        if name:
            self.open_file(Path(name))

    def open_file(self, path: Path) -> bool:
        """Open an audio file or a project (``.agsproj``) as a new document.

        Asks to save unsaved changes first. On failure the error is reported and the current
        document is kept. Opening an audio file starts a new project (the takes list is emptied).
        """
        path = Path(path)
        if path.suffix.lower() == PROJECT_SUFFIX:
            return self.open_project(path)
        if not self.maybe_save():
            return False
        try:  # a long file returns at once: shown now, editable once converted
            opened = loading.open_audio(path, views=(self.waveform, self.spectrogram))
        except AudioError as exc:
            self.report_error("Cannot open file", str(exc))
            return False
        self._replace_takes([])
        if isinstance(opened, Clip):
            self._new_document(opened, path=path, project_path=None, unsaved=False)
        else:
            self._new_document(None, path=path, project_path=None, unsaved=False)
            self._opening = opened
            opened.progress.connect(self._on_opening_progress)
            opened.loaded.connect(self._on_opening_loaded)
            opened.failed.connect(self._on_opening_failed)
            self.file_label.setText(opened.status_text())
        self._remember(path.resolve())
        return True

    @property
    def opening(self) -> loading.BackgroundOpen | None:
        """The long file being opened in the background (``None`` when there is none)."""
        return self._opening

    def _cancel_opening(self) -> None:
        opened, self._opening = self._opening, None
        if opened is not None:
            opened.cancel()

    def _on_opening_progress(self, fraction: float) -> None:
        if self._opening is not None:
            self.file_label.setText(self._opening.status_text())

    def _on_opening_loaded(self, clip: Clip) -> None:
        opened, self._opening = self._opening, None
        if opened is None or opened.clip is not clip:
            return  # a stale open (cancelled before its signal arrived)
        view = self.visible_range()  # the user may have zoomed meanwhile
        self._new_document(clip, path=opened.path, project_path=None, unsaved=False)
        self.set_visible_range(*view)

    def _on_opening_failed(self, message: str) -> None:
        if self._opening is None:
            return
        self._opening = None
        self._new_document(None, path=None, project_path=None, unsaved=False)
        self.report_error("Cannot open file", message)

    def open_project(self, path: Path) -> bool:
        """Open a project file (after the unsaved-changes prompt)."""
        if not self.maybe_save():
            return False
        try:
            state = load_project(path)
        except ProjectError as exc:
            self.report_error("Cannot open project", str(exc))
            return False
        self._apply_state(state, project_path=Path(path), unsaved=False)
        self._remember(Path(path).resolve())
        return True

    def _replace_takes(self, takes: list[object]) -> None:
        self._loading = True
        try:
            self.takes.replace_all(takes)  # type: ignore[arg-type]
        finally:
            self._loading = False

    def _apply_state(
        self, state: ProjectState, *, project_path: Path | None, unsaved: bool
    ) -> None:
        self._replace_takes(list(state.takes))
        source = Path(state.source_path) if state.source_path else None
        self._new_document(
            state.clip,
            path=source,
            project_path=project_path,
            unsaved=unsaved,
            token=state.clip_token,
        )
        if state.history is not None:  # edits made before the save can still be undone
            self._loading = True
            try:
                restore_history(self.undo_stack, state.history, self, self.takes)
                self.undo_stack.setClean()
            finally:
                self._loading = False
            self._update_title()
        if state.history_note:
            self.statusBar().showMessage(state.history_note, 15000)
        if state.clip is not None:
            self.selection_model.restore(state.selection, state.cursor)
            if state.view is not None:
                self.set_visible_range(*state.view)
        settings = state.settings
        scale = settings.get("spectrogram_scale")
        if scale in self.scale_actions:
            self._set_scale(str(scale))
        colormap = settings.get("colormap")
        if colormap in self.colormap_actions:
            self.set_colormap(str(colormap))

    def snapshot(self) -> ProjectState:
        """The document as an immutable :class:`ProjectState` (what Save and autosave write)."""
        clip = self.clip
        return ProjectState(
            clip=clip,
            takes=tuple(self.takes),
            clip_token=self._clip_token if clip is not None else None,
            selection=self.selection_model.selection,
            cursor=self.selection_model.cursor,
            view=self.visible_range() if clip is not None else None,
            source_path=str(self.path) if self.path else None,
            settings={
                "spectrogram_scale": self.spectrogram.scale,
                "colormap": self.spectrogram.colormap,
            },
            history=history_of(self.undo_stack),
        )

    def _ask_project_path(self) -> Path | None:
        if not self.interactive:
            return None
        start = str(
            self.project_path or (self.path.with_suffix(PROJECT_SUFFIX) if self.path else "")
        )
        name, _ = QFileDialog.getSaveFileName(self, "Save project", start, PROJECT_FILTER)
        return Path(name) if name else None

    def save_project(self, path: Path | None = None) -> bool:
        """Save the document and takes as a project (Ctrl+S); asks where when it has no file.

        Returns False when cancelled or when writing failed (reported).
        """
        target = path or self.project_path or self.ask_project_path()
        if target is None:
            return False
        try:
            written = save_project(target, self.snapshot())
        except ProjectError as exc:
            self.report_error("Cannot save project", str(exc))
            return False
        self.project_path = written
        self.undo_stack.setClean()
        self._unsaved_content = False
        self._update_title()
        self._update_labels()
        self._remember(written.resolve())
        self.statusBar().showMessage(f"Saved {written}", 5000)
        self._autosave_discard()  # the project file now holds everything
        return True

    def save_project_as(self) -> bool:
        """Save the project under a new name (always asks)."""
        target = self.ask_project_path()
        return False if target is None else self.save_project(target)

    def _export_dialog(self) -> None:
        if self.clip is None:
            return
        dialog = ExportDialog(
            self,
            options=self.export_options,
            has_selection=self.selection_model.selection is not None,
        )
        if not dialog.exec():
            return
        options = dialog.options()
        self.export_options = options
        base = self.project_path or self.path or Path("untitled")
        start = str(options.path_for(base.with_suffix("")))
        name, _ = QFileDialog.getSaveFileName(self, "Export audio", start, options.file_filter)
        if name:
            self.export_audio(Path(name), options)

    def export_audio(self, path: Path, options: ExportOptions | None = None) -> Path | None:
        """Write the clip (or the selection, per ``options``) to ``path`` in the chosen format.

        Returns the file written (its extension fixed to the format), or ``None`` on failure.
        """
        clip = self.clip
        if clip is None:
            self.report_error("Cannot export", "there is no audio to export")
            return None
        options = options or self.export_options
        sel = self.selection_model.selection
        if options.selection_only and sel is not None:
            clip = Clip(clip.samples[:, sel[0] : sel[1]], clip.rate, clip.metadata)
        try:
            written = export_clip(clip, path, options)
        except AudioError as exc:
            self.report_error("Cannot export", str(exc))
            return None
        self.statusBar().showMessage(f"Exported {written}", 5000)
        return written

    # -- unsaved changes ---------------------------------------------------------------------

    def _ask_unsaved(self, name: str) -> UnsavedAnswer:
        if not self.interactive:
            return "discard"
        buttons = (
            QMessageBox.StandardButton.Save
            | QMessageBox.StandardButton.Discard
            | QMessageBox.StandardButton.Cancel
        )
        answer = QMessageBox.warning(
            self,
            "Unsaved changes",
            f"Save changes to {name} before closing it?",
            buttons,
            QMessageBox.StandardButton.Save,
        )
        if answer == QMessageBox.StandardButton.Save:
            return "save"
        if answer == QMessageBox.StandardButton.Discard:
            return "discard"
        return "cancel"

    def maybe_save(self) -> bool:
        """Ask Save / Discard / Cancel when there are unsaved changes; True means go on."""
        if not self.is_modified():
            return True
        answer = self.unsaved_prompt(self.document_name())
        if answer == "save":
            return self.save_project()
        return answer == "discard"

    # -- autosave and recovery ---------------------------------------------------------------

    def _document_changed(self) -> None:
        if self._loading or self._shut_down:
            return
        self._autosave_pending = True
        self._autosave_debounce.start()

    def _autosave_tick(self) -> None:
        if self._autosave_pending:
            self.autosave_now()

    def autosave_now(self, *, wait: bool = False) -> bool:
        """Autosave now on the worker thread (``wait``: until written). False when skipped.

        Skipped when nothing is unsaved, or while the previous autosave is still being
        written (then it is retried after the debounce delay).
        """
        if self._shut_down:
            return False
        future = self._autosave_future
        if future is not None and not future.done():
            if wait:
                future.result()
            else:
                self._autosave_debounce.start()
                return False
        self._collect_autosave_result()
        if not self.is_modified() or (self.clip is None and len(self.takes) == 0):
            self._autosave_pending = False
            return False
        if self._autosave_executor is None:
            self._autosave_executor = concurrent.futures.ThreadPoolExecutor(
                max_workers=1, thread_name_prefix="autosave"
            )
        state = self.snapshot()
        self._autosave_pending = False
        self._autosave_future = self._autosave_executor.submit(
            self.autosave_session.write,
            state,
            title=self.document_name(),
            project_path=self.project_path,
        )
        if wait:
            self._autosave_future.result()
            self._collect_autosave_result()
        return True

    def _collect_autosave_result(self) -> None:
        future, self._autosave_future = self._autosave_future, None
        if future is None:
            return
        exc = future.exception()
        if exc is not None:
            log.error("autosave failed: %s", exc)
            self.statusBar().showMessage(f"Autosave failed: {exc}", 15000)

    def _autosave_wait(self) -> None:
        future = self._autosave_future
        if future is not None:
            concurrent.futures.wait([future])
            self._collect_autosave_result()

    def _autosave_discard(self) -> None:
        """Forget this session's autosave (the document is saved, or was discarded)."""
        self._autosave_wait()
        self.autosave_session.close()
        self._autosave_pending = False

    def _ask_recovery(self, infos: list[RecoveryInfo]) -> RecoveryAnswer:
        if not self.interactive:
            return "later"
        box = QMessageBox(self)
        box.setIcon(QMessageBox.Icon.Warning)
        box.setWindowTitle("Recover unsaved work")
        lines = "\n".join(f"• {info.describe()}" for info in infos)
        box.setText(
            "AudioGen Studio did not close cleanly. Restore the most recent autosave?\n\n" + lines
        )
        restore = box.addButton("Restore", QMessageBox.ButtonRole.AcceptRole)
        discard = box.addButton("Discard", QMessageBox.ButtonRole.DestructiveRole)
        box.addButton("Later", QMessageBox.ButtonRole.RejectRole)
        box.exec()
        clicked = box.clickedButton()
        if clicked is restore:
            return "restore"
        if clicked is discard:
            return "discard"
        return "later"

    def check_recovery(self) -> bool:
        """Offer to restore autosaves of sessions that did not close cleanly (runs once).

        Returns True when one was restored into this window.
        """
        if self._recovery_checked or self._shut_down:
            return False
        self._recovery_checked = True
        infos = find_recoverable(self.recovery_root)
        if not infos:
            return False
        answer = self.recovery_prompt(infos)
        if answer == "discard":
            for info in infos:
                discard_recovery(info)
            return False
        if answer != "restore" or not self.maybe_save():
            return False
        info = infos[0]
        try:
            state = load_project(info.project_file)
        except ProjectError as exc:
            self.report_error("Cannot restore the autosave", str(exc))
            return False
        self._apply_state(state, project_path=info.project_path, unsaved=True)
        self.autosave_now(wait=True)  # this session owns the work now ...
        discard_recovery(info)  # ... so the crashed session's copy can go
        self.statusBar().showMessage(f"Restored {info.describe()}", 10000)
        return True

    # -- recording ---------------------------------------------------------------------------

    def toggle_record(self) -> None:
        """R: start or stop recording (the recording panel)."""
        panel = self.recording_panel
        toggle = getattr(panel, "toggle_record", None)
        if toggle is None:
            self.statusBar().showMessage("Recording is not available", 5000)
            return
        toggle()

    # -- drag and drop -----------------------------------------------------------------------

    @staticmethod
    def _dropped_file(event: QDragEnterEvent | QDropEvent) -> Path | None:
        """The first local file of a drag (audio or project), or ``None``."""
        for url in event.mimeData().urls():
            if url.isLocalFile():
                path = Path(url.toLocalFile())
                if path.suffix.lower() in DROP_SUFFIXES:
                    return path
        return None

    def _dropped_takes(self, event: QDragEnterEvent | QDropEvent) -> list[str] | None:
        """The uids of a drag from this window's Library dock, or ``None``.

        Checked before the file URLs: a library drag also carries ``file://`` URLs of its FLACs
        (for other programs), which must not replace the document.
        """
        payload = take_uids_from_mime(event.mimeData())
        if payload is None or self.library is None:
            return None
        uids, root = payload
        if Path(root).resolve() != self.library.root.resolve():
            return None  # another library's takes: treat the drag as plain files
        return uids

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        # library takes, local audio files and projects: anything else shows "no drop"
        if self._dropped_takes(event) or self._dropped_file(event) is not None:
            event.acceptProposedAction()
        else:
            event.ignore()

    def dragMoveEvent(self, event: QDragMoveEvent) -> None:
        if self._dropped_takes(event) or self._dropped_file(event) is not None:
            event.acceptProposedAction()
        else:
            event.ignore()

    def _drop_frame(self, event: QDropEvent) -> int | None:
        """The frame under a drop onto the waveform or spectrogram, else ``None`` (cursor)."""
        rate = self._clip_rate()
        if rate is None:
            return None
        for view in (self.waveform, self.spectrogram):
            local = view.mapFrom(self, event.position().toPoint())
            if view.rect().contains(local):
                return frame_at(view, QPointF(local), rate)
        return None

    def dropEvent(self, event: QDropEvent) -> None:
        uids = self._dropped_takes(event)
        if uids:
            event.acceptProposedAction()
            frame = self._drop_frame(event)
            QTimer.singleShot(0, self, lambda: self._insert_library_takes(uids, frame))
            return
        path = self._dropped_file(event)
        if path is None:
            event.ignore()
            return
        event.acceptProposedAction()
        # open after the drop returns: the source application is not kept waiting for a load
        # (and a modal "unsaved changes" prompt does not run inside the drag-and-drop loop)
        QTimer.singleShot(0, self, lambda: self.open_file(path))

    # -- playback ----------------------------------------------------------------------------

    @property
    def _player(self) -> devices.Player | None:
        """The device player of the current playback (tests look at it)."""
        return self.transport.player

    def toggle_playback(self) -> None:
        """Space: play the selection, or from the cursor to the end / stop."""
        if self.transport.playing:
            self.stop_playback()
        else:
            self.start_playback()

    def toggle_loop(self) -> None:
        """Shift+Space: loop the selection (or the whole clip) / stop."""
        if self.transport.playing:
            self.stop_playback()
        else:
            self.start_playback(loop=True)

    def start_playback(self, *, loop: bool = False) -> None:
        """Play the selection, else from the cursor (from the start when it is at the end)."""
        clip = self.clip
        if clip is None or clip.frames == 0:
            return
        sel = self.selection_model.selection
        if sel is not None:
            start, end = sel
        else:
            start, end = self.selection_model.cursor, clip.frames
            if start >= end:
                start = 0
        try:
            self.transport.play(clip, start, end, loop=loop)
        except AudioError as exc:
            self.transport.stop()
            self.device_label.setText("playback unavailable")
            self.report_error("Cannot play", str(exc))
            return
        self.device_label.setText("looping" if loop else "playing")
        self._playhead_timer.start()

    def stop_playback(self) -> None:
        """Stop playback if it is running."""
        was_playing = self.transport.playing
        self.transport.stop()
        self._playhead_timer.stop()
        if was_playing:
            self.device_label.setText("")
        for view in (self.waveform, self.spectrogram):
            view.set_playhead(None)

    def _update_playhead(self) -> None:
        frame = self.transport.position()
        clip = self.clip
        if frame is None or clip is None:
            self.stop_playback()
            return
        seconds = frame / clip.rate
        for view in (self.waveform, self.spectrogram):
            view.set_playhead(seconds)
        view_range = self.visible_range()
        follow = zoom.follow_playhead(view_range, seconds, clip.duration)
        if follow != view_range:
            self.waveform.setXRange(*follow, padding=0.0)
        if self.transport.finished():
            self.stop_playback()

    # -- closing -----------------------------------------------------------------------------

    def closeEvent(self, event: QCloseEvent) -> None:
        if self._shut_down:
            super().closeEvent(event)
            return
        if not self.maybe_save():
            event.ignore()
            return
        self.shutdown()
        super().closeEvent(event)

    def shutdown(self) -> None:
        """Stop playback, generation and autosave; remove this session's autosave (a clean
        close). Called by :meth:`closeEvent`; idempotent."""
        if self._shut_down:
            return
        opened, self._opening = self._opening, None
        if opened is not None:
            opened.cancel(wait=True)
        self.stop_playback()
        self._autosave_debounce.stop()
        self._autosave_timer.stop()
        self.generation_panel.shutdown()
        self.generation.shutdown()
        for panel in (self.recording_panel, self.takes_panel):
            stop = getattr(panel, "shutdown", None)
            if stop is not None:
                stop()
        if self.library_dock is not None:
            self.library_dock.shutdown()  # finishes recording the last takes
        if self.library is not None:
            self.library.close()
        self._autosave_wait()
        if self._autosave_executor is not None:
            self._autosave_executor.shutdown(wait=True)
            self._autosave_executor = None
        self.autosave_session.close()
        self.takes.unsubscribe(self._takes_changed)
        self.clipboard.unsubscribe(self._update_actions)
        self._shut_down = True
