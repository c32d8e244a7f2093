"""The main window: waveform + spectrogram views of the open clip, transport, model list.

The editor, generation and takes panels of the desktop-app issue grow out of this window. The GUI
thread only draws: loading happens before the views are (re)built, playback runs in PortAudio's
callback thread (``audio.devices``), and a 30 Hz timer moves the playhead.
"""

from __future__ import annotations

import logging
from pathlib import Path

from PySide6.QtCore import QSettings, Qt, QTimer
from PySide6.QtGui import QAction, QDragEnterEvent, QDropEvent, QIcon, QKeySequence
from PySide6.QtWidgets import (
    QDockWidget,
    QFileDialog,
    QLabel,
    QListWidget,
    QMainWindow,
    QMessageBox,
    QScrollArea,
    QSplitter,
)

from audiogen_studio.app.generation import GenerationController
from audiogen_studio.app.generation_panel import GenerationPanel
from audiogen_studio.app.views import SpectrogramView, WaveformView
from audiogen_studio.audio import io
from audiogen_studio.audio.clip import Clip
from audiogen_studio.audio.errors import AudioError
from audiogen_studio.engine import bundles

log = logging.getLogger(__name__)

ICON = Path(__file__).resolve().parents[2] / "resources" / "icons" / "audiogen-studio.svg"
AUDIO_FILTER = "Audio files (*.wav *.flac *.ogg *.oga *.opus *.mp3 *.aif *.aiff);;All files (*)"
MAX_RECENT = 10


class MainWindow(QMainWindow):
    """AudioGen Studio's main window.

    Args:
        interactive: show modal message boxes for errors (False for screenshots and tests,
            where errors go to the status bar only).
    """

    def __init__(self, *, interactive: bool = True) -> None:
        super().__init__()
        self.interactive = interactive
        self.clip: Clip | None = None
        self.path: Path | None = None
        self._player: object | None = None
        self._play_start = 0
        self.setWindowTitle("AudioGen Studio")
        if ICON.is_file():
            self.setWindowIcon(QIcon(str(ICON)))
        self.setAcceptDrops(True)

        self.waveform = WaveformView()
        self.spectrogram = SpectrogramView()
        self.spectrogram.setXLink(self.waveform)
        splitter = QSplitter(Qt.Orientation.Vertical)
        splitter.addWidget(self.waveform)
        splitter.addWidget(self.spectrogram)
        splitter.setSizes([500, 400])
        self.setCentralWidget(splitter)

        self.models_list = QListWidget()
        dock = QDockWidget("Models", self)
        dock.setObjectName("models-dock")
        dock.setWidget(self.models_list)
        self.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, dock)

        # the one long-lived generation thread: created here, quit and waited for in closeEvent
        self.generation = GenerationController(self)
        self.generation_panel = GenerationPanel(
            self.generation,
            prompt=lambda: self.clip,
            apply_clip=lambda clip: self.set_clip(clip, None),
            report=self.report_error,
        )
        gen_dock = QDockWidget("Generate", self)
        gen_dock.setObjectName("generation-dock")
        scroll = QScrollArea()  # the panel scrolls rather than forcing a tall window
        scroll.setWidgetResizable(True)
        scroll.setWidget(self.generation_panel)
        gen_dock.setWidget(scroll)
        self.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, gen_dock)
        self.tabifyDockWidget(dock, gen_dock)
        gen_dock.raise_()
        self.refresh_models()

        self.file_label = QLabel("No file open: File ▸ Open, or drop an audio file here")
        self.statusBar().addWidget(self.file_label, 1)
        self.device_label = QLabel("")
        self.statusBar().addPermanentWidget(self.device_label)

        self._build_menus()
        self._playhead_timer = QTimer(self)
        self._playhead_timer.setInterval(33)
        self._playhead_timer.timeout.connect(self._update_playhead)

    # -- menus -------------------------------------------------------------------------------

    def _build_menus(self) -> None:
        file_menu = self.menuBar().addMenu("&File")
        self.open_action = QAction(
            "&Open…", self, shortcut=QKeySequence(QKeySequence.StandardKey.Open)
        )
        self.open_action.triggered.connect(self._open_dialog)
        file_menu.addAction(self.open_action)
        self.recent_menu = file_menu.addMenu("Open &Recent")
        self._rebuild_recent()
        file_menu.addSeparator()
        quit_action = QAction("&Quit", self, shortcut=QKeySequence(QKeySequence.StandardKey.Quit))
        quit_action.triggered.connect(self.close)
        file_menu.addAction(quit_action)

        view_menu = self.menuBar().addMenu("&View")
        fit = QAction("Zoom to &Fit", self, shortcut=QKeySequence("Ctrl+F"))
        fit.triggered.connect(self.waveform.zoom_to_fit)
        view_menu.addAction(fit)
        self.scale_actions: dict[str, QAction] = {}
        for scale in ("linear", "log", "mel"):
            act = QAction(f"Spectrogram: {scale} frequency", self, checkable=True)
            act.setChecked(scale == self.spectrogram.scale)
            act.triggered.connect(lambda _=False, s=scale: self._set_scale(s))
            view_menu.addAction(act)
            self.scale_actions[scale] = act

        transport = self.menuBar().addMenu("&Transport")
        self.play_action = QAction("&Play / Stop", self, shortcut=QKeySequence(Qt.Key.Key_Space))
        self.play_action.triggered.connect(self.toggle_playback)
        transport.addAction(self.play_action)

    def _set_scale(self, scale: str) -> None:
        self.spectrogram.set_scale(scale)
        for name, act in self.scale_actions.items():
            act.setChecked(name == scale)

    def _rebuild_recent(self) -> None:
        self.recent_menu.clear()
        recent = self.recent_files()
        for path in recent:
            act = QAction(path, self)
            act.triggered.connect(lambda _=False, p=path: self.open_file(Path(p)))
            self.recent_menu.addAction(act)
        self.recent_menu.setEnabled(bool(recent))

    @staticmethod
    def recent_files() -> list[str]:
        """Recently opened files, newest first."""
        value = QSettings().value("recent_files", [])
        return [str(v) for v in value] if isinstance(value, list) else []

    def _remember(self, path: Path) -> None:
        recent = [str(path)] + [p for p in self.recent_files() if p != str(path)]
        QSettings().setValue("recent_files", recent[:MAX_RECENT])
        self._rebuild_recent()

    # -- files -------------------------------------------------------------------------------

    def _open_dialog(self) -> None:
        name, _ = QFileDialog.getOpenFileName(self, "Open audio", "", AUDIO_FILTER)
        if name:
            self.open_file(Path(name))

    def open_file(self, path: Path) -> bool:
        """Load ``path`` and show it; on failure report the error and keep the current clip."""
        try:
            clip = io.load(path)
        except AudioError as exc:
            self.report_error("Cannot open file", str(exc))
            return False
        self.set_clip(clip, path)
        self._remember(path.resolve())
        return True

    def set_clip(self, clip: Clip, path: Path | None = None) -> None:
        """Show ``clip`` in both views."""
        self.stop_playback()
        self.clip, self.path = clip, path
        self.waveform.set_clip(clip)
        self.spectrogram.set_clip(clip)
        self.waveform.zoom_to_fit()
        name = path.name if path else "untitled"
        self.setWindowTitle(f"{name} — AudioGen Studio")
        self.file_label.setText(
            f"{name}: {clip.rate} Hz, {clip.channels} ch, {clip.duration:.2f} s, "
            f"peak {clip.peak:.3f}"
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

    # -- drag and drop ---------------------------------------------------------------------

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        if event.mimeData().hasUrls():
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:
        urls = [u for u in event.mimeData().urls() if u.isLocalFile()]
        if urls:
            self.open_file(Path(urls[0].toLocalFile()))
            event.acceptProposedAction()

    # -- playback ----------------------------------------------------------------------------

    def toggle_playback(self) -> None:
        """Space: play the selection (or from the view start) / stop."""
        if self._player is not None:
            self.stop_playback()
        else:
            self.start_playback()

    def start_playback(self) -> None:
        """Play the visible part of the clip through the default output device."""
        if self.clip is None:
            return
        from audiogen_studio.audio import devices, edit

        start, end = self.waveform.visible_frames()
        try:
            self._player = devices.play_clip(
                edit.crop(self.clip, start, end), blocking=False, latency="low"
            )
        except AudioError as exc:
            self._player = None
            self.device_label.setText("playback unavailable")
            self.report_error("Cannot play", str(exc))
            return
        self._play_start = start
        self.device_label.setText("playing")
        self._playhead_timer.start()

    def stop_playback(self) -> None:
        """Stop playback if it is running."""
        player, self._player = self._player, None
        self._playhead_timer.stop()
        if player is not None:
            player.stop()  # type: ignore[attr-defined]
            self.device_label.setText("")
        self.waveform.set_playhead(None)

    def _update_playhead(self) -> None:
        player = self._player
        if player is None or self.clip is None:
            return
        frame = self._play_start + int(player.position)  # type: ignore[attr-defined]
        self.waveform.set_playhead(frame / self.clip.rate)
        if player.finished.is_set():  # type: ignore[attr-defined]
            self.stop_playback()

    def closeEvent(self, event: object) -> None:
        self.stop_playback()
        self.generation_panel.shutdown()
        self.generation.shutdown()
        super().closeEvent(event)  # type: ignore[arg-type]
