"""The generation dock: settings, Generate / Stop, progress, and a simple list of takes.

The prompt is the **whole open clip** (the editor has no selection yet; "vocoding of the
selection" likewise re-synthesizes the whole clip). Finished takes are listed with their
provenance; "Play" auditions the last second of the prompt followed by the take, "Insert after
prompt" replaces the window's clip with ``take.output`` (prompt + continuation). The full takes
panel (A/B, rename, export) is later work.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable

from PySide6.QtCore import QTimer, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from audiogen_studio.app.generation import GeneratedTake, GenerationController
from audiogen_studio.app.views import WaveformView
from audiogen_studio.audio.clip import Clip
from audiogen_studio.audio.errors import AudioError
from audiogen_studio.engine import bundles
from audiogen_studio.engine.api import MAX_TAKES, GenerationError, GenerationRequest
from audiogen_studio.engine.loader import KINDS_FOR_MODE
from audiogen_studio.engine.takes import Take

log = logging.getLogger(__name__)

MODES = (("WaveNet continuation", "continue"), ("WaveNet vocoding (whole clip)", "vocode"))
DEVICES = ("auto", "cpu", "cuda", "mps")
MAX_SEED = 2**31 - 1
AUDITION_SECONDS = 1.0


class GenerationPanel(QWidget):
    """Generation settings and takes; talks to the generation thread only via ``controller``.

    Args:
        controller: the window's :class:`GenerationController`.
        prompt: returns the clip to continue (``None`` when nothing is open).
        apply_clip: called with a take's output for "Insert after prompt".
        report: called with ``(title, message)`` for errors.
    """

    takes_changed = Signal()

    def __init__(
        self,
        controller: GenerationController,
        *,
        prompt: Callable[[], Clip | None],
        apply_clip: Callable[[Clip], None],
        report: Callable[[str, str], None],
    ) -> None:
        super().__init__()
        self.controller = controller
        self._prompt = prompt
        self._apply_clip = apply_clip
        self._report = report
        self._job: tuple[GenerationRequest, str, str] | None = None
        self.takes: list[GeneratedTake] = []
        self._audition: object | None = None

        self.mode_combo = QComboBox()
        for label, mode in MODES:
            self.mode_combo.addItem(label, mode)
        self.model_combo = QComboBox()
        self.seconds_spin = QDoubleSpinBox(decimals=1, minimum=0.1, maximum=600.0, value=4.0)
        self.seconds_spin.setSuffix(" s")
        self.temperature_spin = QDoubleSpinBox(
            decimals=2, minimum=0.0, maximum=2.0, singleStep=0.05, value=1.0
        )
        self.top_k_spin = QSpinBox(minimum=0, maximum=256, value=0)
        self.top_k_spin.setSpecialValueText("off")
        self.seed_spin = QSpinBox(minimum=0, maximum=MAX_SEED, value=random.randint(0, 99999))
        self.new_seed_button = QPushButton("New seed")
        self.takes_spin = QSpinBox(minimum=1, maximum=MAX_TAKES, value=1)
        self.device_combo = QComboBox()
        self.device_combo.addItems(list(DEVICES))
        self.generate_button = QPushButton("Generate")
        self.stop_button = QPushButton("Stop")
        self.stop_button.setEnabled(False)
        self.progress_bar = QProgressBar()
        self.progress_bar.setRange(0, 1000)
        self.progress_bar.setValue(0)
        self.progress_bar.setTextVisible(True)
        self.progress_bar.setFormat("idle")
        self.status_label = QLabel("")
        self.playback_label = QLabel("")
        self.status_label.setWordWrap(True)
        self.live_view = WaveformView()  # take 0's continuation growing while it is generated
        self.live_view.placeholder.setText("live take")
        self.live_view.setMinimumHeight(110)
        self.live_view.setMaximumHeight(160)
        self.live_view.setLabel("left", "")
        self.live_view.setLabel("bottom", "")
        self._live_frames = -1
        self._live_timer = QTimer(self)
        self._live_timer.setInterval(150)
        self._live_timer.timeout.connect(self.update_live_view)
        self.takes_list = QListWidget()
        self.play_button = QPushButton("Play")
        self.insert_button = QPushButton("Insert after prompt")

        seed_row = QHBoxLayout()
        seed_row.addWidget(self.seed_spin, 1)
        seed_row.addWidget(self.new_seed_button)
        form = QFormLayout()
        form.addRow("Engine", self.mode_combo)
        form.addRow("Model", self.model_combo)
        form.addRow("Seconds", self.seconds_spin)
        form.addRow("Temperature", self.temperature_spin)
        form.addRow("Top-k", self.top_k_spin)
        form.addRow("Seed", seed_row)
        form.addRow("Takes", self.takes_spin)
        form.addRow("Device", self.device_combo)
        buttons = QHBoxLayout()
        buttons.addWidget(self.generate_button)
        buttons.addWidget(self.stop_button)
        take_buttons = QHBoxLayout()
        take_buttons.addWidget(self.play_button)
        take_buttons.addWidget(self.insert_button)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addLayout(buttons)
        layout.addWidget(self.progress_bar)
        layout.addWidget(self.playback_label)
        layout.addWidget(self.live_view)
        layout.addWidget(self.status_label)
        layout.addWidget(QLabel("Takes"))
        layout.addWidget(self.takes_list, 1)
        layout.addLayout(take_buttons)

        self.mode_combo.currentIndexChanged.connect(lambda _: self.refresh_models())
        self.new_seed_button.clicked.connect(self.new_seed)
        self.generate_button.clicked.connect(self.generate)
        self.stop_button.clicked.connect(self.stop)
        self.play_button.clicked.connect(self.play_selected)
        self.insert_button.clicked.connect(self.insert_selected)
        self.takes_list.currentRowChanged.connect(lambda _: self._update_buttons())
        controller.progress.connect(self._on_progress)
        controller.finished.connect(self._on_finished)
        controller.failed.connect(self._on_failed)
        controller.playback_unavailable.connect(self._on_playback_unavailable)
        controller.playback_state.connect(self._on_playback_state)
        self.refresh_models()

    # -- settings ---------------------------------------------------------------------------

    @property
    def mode(self) -> str:
        """``"continue"`` or ``"vocode"``."""
        return str(self.mode_combo.currentData())

    def refresh_models(self) -> None:
        """Fill the model combo with installed bundles of the kinds the mode needs."""
        current = self.model_combo.currentData()
        self.model_combo.clear()
        kinds = KINDS_FOR_MODE[self.mode]
        for b in bundles.list_bundles():
            if b.kind in kinds:
                self.model_combo.addItem(f"{b.name} {b.version} ({b.sample_rate} Hz)", str(b.path))
        if self.model_combo.count() == 0:
            self.model_combo.addItem("No models installed", None)
            self.model_combo.setEnabled(False)
        else:
            self.model_combo.setEnabled(True)
            index = self.model_combo.findData(current)
            if index >= 0:
                self.model_combo.setCurrentIndex(index)
        self._update_buttons()

    def new_seed(self) -> None:
        """Pick a fresh random seed."""
        self.seed_spin.setValue(random.randint(0, MAX_SEED))

    def _update_buttons(self) -> None:
        busy = self.controller.busy
        has_model = self.model_combo.currentData() is not None
        self.generate_button.setEnabled(not busy and has_model)
        self.stop_button.setEnabled(busy)
        has_take = 0 <= self.takes_list.currentRow() < len(self.takes)
        self.play_button.setEnabled(has_take)
        self.insert_button.setEnabled(has_take)

    # -- generation -------------------------------------------------------------------------

    def generate(self) -> bool:
        """Start generating from the whole open clip; False (with a message) if it cannot."""
        model = self.model_combo.currentData()
        prompt = self._prompt()
        if model is None:
            self._fail("No model installed for this engine")
            return False
        if prompt is None:
            self._fail("Open or record a clip first: it is the prompt")
            return False
        try:
            request = GenerationRequest(
                prompt=prompt,
                seconds=self.seconds_spin.value(),
                mode=self.mode,  # type: ignore[arg-type]
                takes=self.takes_spin.value(),
                seed=self.seed_spin.value(),
                temperature=self.temperature_spin.value(),
                top_k=self.top_k_spin.value() or None,
                chunk_seconds=0.1,
            )
        except GenerationError as exc:
            self._fail(str(exc))
            return False
        device = self.device_combo.currentText()
        if not self.controller.generate(request, str(model), device):
            return False
        self._job = (request, self.model_combo.currentText().split(" (")[0], device)
        self.progress_bar.setValue(0)
        self.progress_bar.setFormat("loading model…")
        self._live_frames = -1
        self._live_timer.start()
        self.status_label.setText("")
        self._update_buttons()
        return True

    def stop(self) -> None:
        """Stop generating (the partial takes are kept) and stop the live playback."""
        self.controller.stop()
        self.status_label.setText("stopping…")

    def _on_progress(self, done: float, total: float, rtf: float) -> None:
        self.progress_bar.setValue(round(1000 * min(1.0, done / total)) if total > 0 else 0)
        self.progress_bar.setFormat(f"{done:.1f} / {total:.1f} s · RTF {rtf:.2f}")

    def update_live_view(self) -> None:
        """Redraw the growing continuation and the live playhead (GUI thread, ~7 Hz)."""
        preview = self.controller.worker.preview
        if preview is None:
            return
        player = self.controller.worker.player
        frames = preview.frames
        view = self.live_view
        if frames != self._live_frames and frames > 0:
            if self._live_frames <= 0 or view.clip is None:
                view.set_clip(preview.clip())
            else:  # only the new frames: the peak pyramid grows instead of being rebuilt
                view.extend(preview.samples[:, self._live_frames : frames].copy())
            self._live_frames = frames
            extent = max(preview.total, frames) / preview.rate
            view.setLimits(xMin=0.0, xMax=extent)
            view.setXRange(0.0, extent, padding=0.0)
            view.redraw()
        if player is not None and not player.finished.is_set():
            view.set_playhead(player.position / preview.rate)
        else:
            view.set_playhead(None)
        if not self.controller.busy and (player is None or player.finished.is_set()):
            self._live_timer.stop()

    def _on_finished(self, takes: list[Take]) -> None:
        job, self._job = self._job, None
        self.update_live_view()
        kept = [t for t in takes if t.generated.frames > 0]
        if job is not None:
            request, model, device = job
            for take in kept:
                self._add_take(GeneratedTake(take, model, device, request))
        partial = any(not t.complete for t in takes)
        self.status_label.setText(
            f"{len(kept)} take(s) {'kept (stopped early)' if partial else 'done'}"
            if kept
            else "stopped before any audio was generated"
        )
        if not partial:
            self.progress_bar.setValue(1000)
        self._update_buttons()

    def _on_failed(self, message: str) -> None:
        self._job = None
        self._live_timer.stop()
        self.progress_bar.setValue(0)
        self.progress_bar.setFormat("failed")
        self._fail(message)
        self._update_buttons()

    def _on_playback_unavailable(self, message: str) -> None:
        self.status_label.setText(message)

    def _on_playback_state(self, state: str) -> None:
        self.playback_label.setText(f"playback: {state}" if state else "")

    def _fail(self, message: str) -> None:
        self.status_label.setText(message)
        self._report("Generation failed", message)

    # -- takes ------------------------------------------------------------------------------

    def _add_take(self, take: GeneratedTake) -> None:
        self.takes.append(take)
        item = QListWidgetItem(take.provenance())
        item.setToolTip(take.provenance())
        self.takes_list.addItem(item)
        self.takes_list.setCurrentRow(self.takes_list.count() - 1)
        self.takes_changed.emit()

    def selected_take(self) -> GeneratedTake | None:
        """The take highlighted in the list."""
        row = self.takes_list.currentRow()
        return self.takes[row] if 0 <= row < len(self.takes) else None

    def play_selected(self) -> None:
        """Audition: the last second of the prompt, then the take."""
        take = self.selected_take()
        if take is None:
            return
        from audiogen_studio.audio import devices, edit

        self.stop_audition()
        self.controller.worker.stop_playback()
        out = take.take.output
        start = 0
        if take.take.mode == "continue":
            start = max(0, take.take.prompt.frames - round(AUDITION_SECONDS * out.rate))
        try:
            self._audition = devices.play_clip(
                edit.crop(out, start, out.frames), blocking=False, latency="low"
            )
        except AudioError as exc:
            self._audition = None
            self._fail(f"playback unavailable: {exc}")

    def stop_audition(self) -> None:
        """Stop a take being auditioned."""
        player, self._audition = self._audition, None
        if player is not None:
            player.stop()  # type: ignore[attr-defined]

    def insert_selected(self) -> None:
        """Replace the window's clip with the selected take's output (prompt + take)."""
        take = self.selected_take()
        if take is not None:
            self._apply_clip(take.take.output)

    def shutdown(self) -> None:
        """Stop auditioning and the live view (the window shuts the controller down)."""
        self._live_timer.stop()
        self.stop_audition()
