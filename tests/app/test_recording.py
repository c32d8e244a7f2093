"""Recording in the app: the level meter, recording from the virtual PulseAudio sine source into a
new clip and at the cursor (undoable), and device errors that end as messages, never crashes."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest

from audiogen_studio.app import recording_panel as recording_module
from audiogen_studio.app.level_meter import FALL_DB_PER_S, FLOOR_DB, LevelMeter, LevelStore, to_dbfs
from audiogen_studio.app.recording_panel import RecordingPanel
from audiogen_studio.audio import devices
from audiogen_studio.audio.clip import Clip
from audiogen_studio.audio.errors import AudioDeviceError

if TYPE_CHECKING:
    from tests.conftest import VirtualAudio


def dominant_frequency(x: np.ndarray, rate: int) -> float:
    """FFT peak of ``x`` (Hann window, parabolic interpolation between bins)."""
    spec = np.abs(np.fft.rfft((x - x.mean()) * np.hanning(len(x))))
    k = int(np.argmax(spec[1:-1])) + 1
    a, b, c = np.log(spec[k - 1 : k + 2] + 1e-12)
    return float((k + 0.5 * (a - c) / (a - 2 * b + c)) * rate / len(x))


@pytest.fixture
def window(make_window: Callable[[], Any]) -> Any:
    w = make_window()
    w.show()
    return w


def panel_of(window: Any) -> RecordingPanel:
    panel = window.recording_panel
    assert isinstance(panel, RecordingPanel)
    return panel


def pick_device(panel: RecordingPanel, index: int) -> None:
    panel.refresh_devices()
    row = panel.device_combo.findData(index)
    assert row >= 0, [panel.device_combo.itemText(i) for i in range(panel.device_combo.count())]
    panel.device_combo.setCurrentIndex(row)


# -- the meter --------------------------------------------------------------------------------


def test_dbfs_levels_of_a_full_scale_sine() -> None:
    x = np.sin(2 * np.pi * 1000 * np.arange(48000) / 48000)
    peak, rms = np.abs(x).max(), np.sqrt(np.mean(x**2))
    assert to_dbfs(peak) == pytest.approx(0.0, abs=1e-3)
    assert to_dbfs(rms) == pytest.approx(-3.0103, abs=1e-3)
    assert to_dbfs(0.5) == pytest.approx(-6.0206, abs=1e-3)
    assert to_dbfs(0.0) == FLOOR_DB


def test_store_keeps_the_loudest_peak_between_polls() -> None:
    store = LevelStore()
    assert store.take() is None
    store.update(np.array([0.9, 0.1]), np.array([0.5, 0.05]))
    store.update(np.array([0.2, 0.3]), np.array([0.1, 0.2]))
    peak, rms = store.take()  # type: ignore[misc]
    np.testing.assert_allclose(peak, [0.9, 0.3], rtol=1e-6)
    np.testing.assert_allclose(rms, [0.1, 0.2], rtol=1e-6)  # the latest RMS
    assert store.take() is None


def test_meter_ballistics_hold_and_clip(qtbot: Any) -> None:
    meter = LevelMeter(2)
    qtbot.addWidget(meter)
    meter.set_levels([0.5, 1.0], [0.25, 0.5], now=10.0)
    np.testing.assert_allclose(meter.peak_db, to_dbfs([0.5, 1.0]))
    np.testing.assert_allclose(meter.rms_db, to_dbfs([0.25, 0.5]))
    assert list(meter.clipped) == [False, True]
    meter.set_levels(None, None, now=10.5)  # silence: the peak falls, the hold stays
    np.testing.assert_allclose(meter.peak_db, to_dbfs([0.5, 1.0]) - 0.5 * FALL_DB_PER_S)
    np.testing.assert_allclose(meter.hold_db, to_dbfs([0.5, 1.0]))
    meter.set_levels(None, None, now=11.5)  # past the hold time the hold falls too
    assert np.all(meter.hold_db < to_dbfs([0.5, 1.0]))
    assert list(meter.clipped) == [False, True]
    meter.reset(1)
    assert meter.channels == 1 and not meter.clipped.any() and meter.peak_db[0] == FLOOR_DB
    meter.grab()  # paints without error


# -- real recording (virtual PulseAudio device) -----------------------------------------------


@pytest.mark.device
def test_records_the_sine_source_into_a_new_clip(
    virtual_audio: VirtualAudio, window: Any, qtbot: Any
) -> None:
    panel = panel_of(window)
    pick_device(panel, virtual_audio.input_device)
    panel.rate_combo.setCurrentIndex(panel.rate_combo.findData(48000))
    assert panel.start_record(), panel.status_label.text()
    assert panel.recording and panel.record_button.text() == "■ Stop"
    assert not panel.device_combo.isEnabled()
    recorder = panel.recorder
    assert recorder is not None
    qtbot.waitUntil(lambda: recorder.frames_recorded >= 48000, timeout=10_000)
    # the meter polls levels that the recorder's worker thread stored (~30 Hz)
    qtbot.waitUntil(lambda: panel.meter.peak_db.max() > -20, timeout=3000)
    assert panel.meter.store.updates > 0 and "dBFS" in panel.level_label.text()
    panel.toggle_record()  # the R key's action: stop
    clip = window.clip
    assert clip is panel.last_clip
    assert clip is not None and clip.rate == 48000 and clip.channels == 1
    assert clip.frames >= 48000
    assert dominant_frequency(clip.samples[0], 48000) == pytest.approx(
        virtual_audio.sine_hz, rel=0.01
    )
    assert not panel.recording and panel.record_button.text() == "● Record"
    assert "recorded" in panel.status_label.text()
    assert not any(t.name == "Recorder-worker" for t in threading.enumerate())


@pytest.mark.device
def test_records_at_the_cursor_undoably(
    virtual_audio: VirtualAudio, window: Any, qtbot: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    base = np.zeros((2, 16000), np.float32)
    base[:, :] = 0.01
    window.set_clip(Clip(base, 16000))
    monkeypatch.setattr(window, "cursor_frame", lambda: 4000)
    panel = panel_of(window)
    pick_device(panel, virtual_audio.input_device)
    panel.target_combo.setCurrentIndex(panel.target_combo.findData("cursor"))
    panel.rate_combo.setCurrentIndex(panel.rate_combo.findData(48000))
    assert panel.start_record(), panel.status_label.text()
    recorder = panel.recorder
    assert recorder is not None
    qtbot.waitUntil(lambda: recorder.frames_recorded >= 24000, timeout=10_000)
    recorded = panel.stop_record()
    assert recorded is not None
    inserted = round(recorded.frames * 16000 / 48000)
    clip = window.clip
    assert clip.rate == 16000 and clip.channels == 2  # converted to the open clip's format
    assert abs(clip.frames - (16000 + inserted)) <= 1
    np.testing.assert_array_equal(clip.samples[:, :4000], base[:, :4000])
    np.testing.assert_array_equal(clip.samples[:, -12000:], base[:, 4000:])
    middle = clip.samples[0, 4000 : clip.frames - 12000]
    assert dominant_frequency(middle, 16000) == pytest.approx(virtual_audio.sine_hz, rel=0.01)
    window.undo_stack.undo()
    np.testing.assert_array_equal(window.clip.samples, base)


# -- device errors ----------------------------------------------------------------------------


def test_a_vanished_device_is_a_message(
    portaudio: Any, window: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    ghost = devices.DeviceInfo(
        index=987, name="USB mic", hostapi="ALSA", max_input_channels=1, max_output_channels=0,
        default_samplerate=48000.0, is_default_input=False, is_default_output=False,
    )  # fmt: skip
    real = devices.list_devices
    monkeypatch.setattr(devices, "list_devices", lambda: [*real(), ghost])
    panel = panel_of(window)
    pick_device(panel, 987)
    monkeypatch.setattr(devices, "list_devices", real)  # unplugged after it was listed
    assert not panel.start_record()
    assert not panel.recording and panel.record_button.text() == "● Record"
    assert "gone" in panel.status_label.text() and "Rescan" in panel.status_label.text()
    assert "Cannot record" in window.statusBar().currentMessage()
    # still listed but PortAudio refuses it: the stream error is the message
    monkeypatch.setattr(devices, "list_devices", lambda: [*real(), ghost])
    assert not panel.start_record()
    assert "no input device 987" in panel.status_label.text()


def test_no_portaudio_is_a_message(window: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    def missing() -> Any:
        raise AudioDeviceError("PortAudio library not found (install libportaudio2): gone")

    monkeypatch.setattr(devices, "_sd", missing)
    panel = panel_of(window)
    assert not panel.refresh_devices(rescan=True)
    assert panel.device_combo.currentText() == "No input devices"
    assert "PortAudio library not found" in panel.status_label.text()
    panel.toggle_record()
    assert not panel.recording
    assert "PortAudio library not found" in window.statusBar().currentMessage()


class StalledRecorder:
    """A recorder whose device stopped delivering after 0.25 s (as when it is unplugged)."""

    def __init__(self, *, rate: int, channels: int, **_: Any) -> None:
        self.rate, self.channels = rate, channels
        self.frames_recorded = rate // 4
        self.overflows = self.dropped_frames = 0

    def start(self) -> None:
        pass

    def stop(self) -> Clip:
        t = np.arange(self.frames_recorded) / self.rate
        return Clip(0.5 * np.sin(2 * np.pi * 440 * t).astype(np.float32), self.rate)


def test_a_device_that_stops_delivering_keeps_what_was_recorded(
    window: Any, qtbot: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    info = devices.DeviceInfo(
        index=3, name="flaky", hostapi="ALSA", max_input_channels=2, max_output_channels=0,
        default_samplerate=16000.0, is_default_input=True, is_default_output=False,
    )  # fmt: skip
    monkeypatch.setattr(devices, "list_devices", lambda: [info])
    monkeypatch.setattr(devices, "default_input_device", lambda: info)
    monkeypatch.setattr(devices, "Recorder", StalledRecorder)
    monkeypatch.setattr(recording_module, "STALL_SECONDS", 0.2)
    panel = panel_of(window)
    panel.refresh_devices()
    assert panel.start_record()
    qtbot.waitUntil(lambda: not panel.recording, timeout=5000)
    assert window.clip is not None and window.clip.frames == 4000
    assert "delivered no audio" in panel.status_label.text()
    assert "kept the 0.25 s recorded" in window.statusBar().currentMessage()


def test_closing_the_window_while_recording_places_the_recording_first(
    make_window: Callable[[], Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    info = devices.DeviceInfo(
        index=3, name="mic", hostapi="ALSA", max_input_channels=1, max_output_channels=0,
        default_samplerate=16000.0, is_default_input=True, is_default_output=False,
    )  # fmt: skip
    monkeypatch.setattr(devices, "list_devices", lambda: [info])
    monkeypatch.setattr(devices, "default_input_device", lambda: info)
    monkeypatch.setattr(devices, "Recorder", StalledRecorder)
    window = make_window()
    window.show()
    panel = panel_of(window)
    seen_at_close: list[Any] = []
    original = type(window).closeEvent

    def close_event(self: Any, event: Any) -> None:
        seen_at_close.append(self.clip)  # what the unsaved-changes check gets to see
        original(self, event)

    monkeypatch.setattr(type(window), "closeEvent", close_event)
    assert panel.start_record()
    window.close()
    assert not panel.recording
    (clip,) = seen_at_close
    assert clip is panel.last_clip
    assert clip is not None and clip.frames == 4000
