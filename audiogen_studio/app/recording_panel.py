"""The recording dock: input device, live level meter, record into a new clip or at the cursor.

Recording runs in PortAudio's callback thread and the
:class:`~audiogen_studio.audio.devices.Recorder`'s worker thread (DESIGN.md §3); neither
touches Qt. The worker hands peak/RMS levels to the meter's
:class:`~audiogen_studio.app.level_meter.LevelStore`; the GUI thread polls it (~30 Hz) and also
polls the frame counter for the elapsed time and a stall watchdog.

Targets: **New clip** makes the recording the open clip (``window.set_clip``); **At cursor**
inserts it at the cursor frame captured when recording started (``window.insert_clip``, one undo
step), converted to the open clip's rate and channel count.

Every device failure — no PortAudio, no input device, a device that vanished, a rate or channel
count the device refuses, a device that stops delivering audio — ends up as a message (status
line plus ``window.report_error``); whatever was recorded before a failure is kept.
"""

from __future__ import annotations

import logging
import time
from typing import Literal

from PySide6.QtCore import Qt, QTimer
from PySide6.QtGui import QShowEvent
from PySide6.QtWidgets import (
    QComboBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from audiogen_studio.app.level_meter import LevelMeter
from audiogen_studio.app.panel_support import CloseWatcher, EditorWindow, conform
from audiogen_studio.audio import devices
from audiogen_studio.audio.clip import Clip
from audiogen_studio.audio.errors import AudioDeviceError, AudioError

log = logging.getLogger(__name__)

RATES = (8000, 16000, 22050, 32000, 44100, 48000, 96000)
#: seconds without a new frame before the input is declared dead. PulseAudio's sine source
#: delivers 2 s blocks, and some Bluetooth inputs pause ~1 s, so this is generous.
STALL_SECONDS = 6.0
POLL_MS = 33

Target = Literal["new", "cursor"]


class RecordingPanel(QWidget):
    """Input device, rate, channels, target, Record / Stop, level meter, elapsed time.

    Args:
        window: the main window (see :class:`~audiogen_studio.app.panel_support.EditorWindow`).
    """

    def __init__(self, window: EditorWindow) -> None:
        super().__init__()
        self.editor = window
        self.recorder: devices.Recorder | None = None
        self.last_clip: Clip | None = None
        self._target: Target = "new"
        self._cursor = 0
        self._listed = False
        self._last_frames = 0
        self._last_progress = 0.0

        self.device_combo = QComboBox()
        self.device_combo.setToolTip("Input device (PortAudio)")
        self.rescan_button = QPushButton("Rescan")
        self.rescan_button.setToolTip("Look for devices plugged in or started since")
        self.rate_combo = QComboBox()
        self.rate_combo.addItem("device default", None)
        for rate in RATES:
            self.rate_combo.addItem(f"{rate} Hz", rate)
        self.channels_combo = QComboBox()
        self.channels_combo.addItem("Mono", 1)
        self.channels_combo.addItem("Stereo", 2)
        self.target_combo = QComboBox()
        self.target_combo.addItem("New clip", "new")
        self.target_combo.addItem("At cursor", "cursor")
        self.record_button = QPushButton("● Record")
        self.record_button.setToolTip("Start / stop recording (R)")
        self.meter = LevelMeter(1)
        self.level_label = QLabel("")
        self.time_label = QLabel("0.0 s")
        self.status_label = QLabel("")
        self.status_label.setWordWrap(True)

        device_row = QHBoxLayout()
        device_row.addWidget(self.device_combo, 1)
        device_row.addWidget(self.rescan_button)
        form = QFormLayout()
        form.addRow("Input", device_row)
        form.addRow("Rate", self.rate_combo)
        form.addRow("Channels", self.channels_combo)
        form.addRow("Record", self.target_combo)
        buttons = QHBoxLayout()
        buttons.addWidget(self.record_button)
        buttons.addWidget(self.time_label, 1)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addLayout(buttons)
        layout.addWidget(self.meter)
        layout.addWidget(self.level_label)
        layout.addWidget(self.status_label)
        layout.addStretch(1)

        self._poll = QTimer(self)
        self._poll.setInterval(POLL_MS)
        self._poll.timeout.connect(self._on_poll)
        self.rescan_button.clicked.connect(lambda: self.refresh_devices(rescan=True))
        self.record_button.clicked.connect(self.toggle_record)
        # closing the window while recording: stop and place the recording first, so that the
        # window's unsaved-changes prompt (and its autosave) know about it
        self._close_watcher = CloseWatcher(window, self.shutdown, on_closing=self._on_closing)

    # -- devices ----------------------------------------------------------------------------

    def showEvent(self, event: QShowEvent) -> None:
        # PortAudio is loaded on first sight of the panel, not when the window is built.
        if not self._listed:
            self.refresh_devices()
        super().showEvent(event)

    def refresh_devices(self, *, rescan: bool = False) -> bool:
        """List the input devices (re-initialising PortAudio first with ``rescan``).

        Returns False (with a message in the status line) when none can be listed.
        """
        self._listed = True
        current = self.device_combo.currentData()
        self.device_combo.clear()
        try:
            if rescan:
                devices.rescan()
            found = [d for d in devices.list_devices() if d.max_input_channels > 0]
        except AudioDeviceError as exc:
            self.device_combo.addItem("No input devices", None)
            self.status_label.setText(f"Cannot list input devices: {exc}")
            return False
        default = next((d for d in found if d.is_default_input), None)
        label = f"Default input ({default.name})" if default else "Default input"
        self.device_combo.addItem(label, None)
        for d in found:
            self.device_combo.addItem(f"{d.name} ({d.hostapi}, {d.max_input_channels} ch)", d.index)
            self.device_combo.setItemData(
                self.device_combo.count() - 1, str(d), Qt.ItemDataRole.ToolTipRole
            )
        index = self.device_combo.findData(current)
        self.device_combo.setCurrentIndex(max(0, index))
        if found:
            self.status_label.setText("" if not rescan else f"{len(found)} input device(s)")
        else:
            self.status_label.setText(
                "No input device found: plug one in (or start a sound server) and press Rescan"
            )
        return bool(found)

    def _device_info(self, device: int | None) -> devices.DeviceInfo:
        if device is None:
            return devices.default_input_device()
        for d in devices.list_devices():
            if d.index == device and d.max_input_channels > 0:
                return d
        raise AudioDeviceError(
            f"input device {self.device_combo.currentText()!r} is gone (unplugged?): "
            "press Rescan and pick another"
        )

    # -- recording --------------------------------------------------------------------------

    @property
    def recording(self) -> bool:
        """True while a recording runs."""
        return self.recorder is not None

    def toggle_record(self) -> None:
        """Start recording, or stop and place the recording (the ``R`` key)."""
        if self.recording:
            self.stop_record()
        else:
            self.start_record()

    def start_record(self) -> bool:
        """Open the input stream and start recording; False (with a message) if it cannot."""
        if self.recording:
            return False
        if not self._listed:
            self.refresh_devices()
        target: Target = "cursor" if self.target_combo.currentData() == "cursor" else "new"
        device = self.device_combo.currentData()
        try:
            info = self._device_info(device)
            rate = self.rate_combo.currentData() or round(info.default_samplerate)
            channels = min(int(self.channels_combo.currentData()), info.max_input_channels)
            recorder = devices.Recorder(
                rate=int(rate),
                channels=channels,
                device=info.index if device is not None else None,
                level_callback=self.meter.store.update,  # worker thread: no Qt there
                latency="high",
            )
            recorder.start()
        except (AudioError, ValueError, RuntimeError) as exc:
            self._fail("Cannot record", str(exc))
            return False
        self.recorder = recorder
        self._target = target
        self._cursor = self._cursor_frame() if target == "cursor" else 0
        self._last_frames = 0
        self._last_progress = time.monotonic()
        self.meter.reset(channels)
        self.meter.start()
        self._poll.start()
        self.record_button.setText("■ Stop")
        where = f" (inserting at frame {self._cursor})" if target == "cursor" else ""
        self.status_label.setText(
            f"Recording from {info.name} at {recorder.rate} Hz, {channels} ch{where}"
        )
        self._set_inputs_enabled(False)
        return True

    def stop_record(self, *, reason: str | None = None) -> Clip | None:
        """Stop recording and place the clip (see module doc); returns it (``None`` if empty).

        Args:
            reason: why recording stopped early (a device failure); reported as an error.
        """
        recorder, self.recorder = self.recorder, None
        if recorder is None:
            return None
        self._poll.stop()
        self.meter.stop()
        self.record_button.setText("● Record")
        self._set_inputs_enabled(True)
        try:
            clip = recorder.stop()
        except (AudioError, RuntimeError) as exc:
            self._fail("Recording failed", str(exc))
            return None
        self.meter.reset()
        self.level_label.setText("")
        if clip.frames == 0:
            self._fail("Nothing recorded", reason or "the input delivered no audio")
            return None
        self.last_clip = clip
        kept = f"{clip.duration:.2f} s recorded"
        if recorder.overflows:
            kept += f" ({recorder.overflows} overflow(s), {recorder.dropped_frames} frames lost)"
        try:
            self._place(clip)
        except (AudioError, ValueError) as exc:
            self._fail("Cannot place the recording", str(exc))
            return clip
        if reason is not None:
            self._fail("Recording stopped", f"{reason}; kept the {kept}")
        else:
            self.status_label.setText(kept)
        return clip

    def _place(self, clip: Clip) -> None:
        current = self.editor.clip
        if self._target == "cursor" and current is not None:
            converted = conform(clip, current.rate, current.channels)
            at = min(max(0, self._cursor), current.frames)
            self.editor.insert_clip(at, converted, "Record")
        else:
            self.editor.set_clip(clip, None)

    def _cursor_frame(self) -> int:
        try:
            return int(self.editor.cursor_frame())
        except (AttributeError, TypeError):
            return 0

    def _on_poll(self) -> None:
        recorder = self.recorder
        if recorder is None:
            return
        frames = recorder.frames_recorded
        now = time.monotonic()
        self.time_label.setText(f"{frames / recorder.rate:.1f} s")
        self.level_label.setText(self.meter.text())
        if frames != self._last_frames:
            self._last_frames, self._last_progress = frames, now
        elif now - self._last_progress > STALL_SECONDS:
            self.stop_record(
                reason=f"the input device delivered no audio for {STALL_SECONDS:g} s "
                "(unplugged or taken by another program?)"
            )

    def _set_inputs_enabled(self, enabled: bool) -> None:
        for w in (self.device_combo, self.rescan_button, self.rate_combo, self.channels_combo,
                  self.target_combo):  # fmt: skip
            w.setEnabled(enabled)

    def _fail(self, title: str, message: str) -> None:
        self.status_label.setText(f"{title}: {message}")
        self.editor.report_error(title, message)

    def _on_closing(self) -> None:
        if self.recording:
            self.stop_record()

    def shutdown(self) -> None:
        """Stop a running recording (its audio is placed as usual) and the timers."""
        if self.recording:
            self.stop_record()
        self._poll.stop()
        self.meter.stop()
