"""The main window shows a file in both views, survives bad files, renders screenshots."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from audiogen_studio.audio import io, synth
from audiogen_studio.audio.clip import Clip


@pytest.fixture
def stereo_file(tmp_path: Path) -> Path:
    left = synth.sine(440, 2.0, rate=16000, amp=0.8)
    right = synth.sine(2000, 2.0, rate=16000, amp=0.2)
    clip = Clip(np.vstack([left.samples, right.samples]), 16000)
    return io.save(clip, tmp_path / "two.wav")


def test_open_file_draws_both_views(
    make_window: Callable[[], object], stereo_file: Path, qtbot: object
) -> None:
    window = make_window()
    window.show()  # type: ignore[attr-defined]
    assert window.open_file(stereo_file)  # type: ignore[attr-defined]
    window.refresh_views()  # type: ignore[attr-defined]
    wave = window.waveform  # type: ignore[attr-defined]
    assert wave.clip is not None and wave.clip.channels == 2
    # one curve per channel, one min/max pair per pixel column, spanning each channel's peak
    xs, ys = wave._curves[0].getData()
    assert len(xs) == 2 * min(wave.pixel_width(), wave.clip.frames)
    assert ys.max() == pytest.approx(0.8, abs=0.01) and ys.min() == pytest.approx(-0.8, abs=0.01)
    _, ys1 = wave._curves[1].getData()
    assert (ys1 + 2.2).max() == pytest.approx(0.2, abs=0.01)  # second lane sits one gap lower
    spec = window.spectrogram  # type: ignore[attr-defined]
    image = spec.image.image
    assert image is not None and image.shape[1] > 100
    # the loudest row of the spectrogram is the 440 Hz tone
    row = int(np.argmax(image.mean(axis=1)))
    tiler = next(iter(spec._tilers.values()))
    assert tiler.freqs[row] == pytest.approx(440, rel=0.06)
    assert "two.wav" in window.windowTitle()  # type: ignore[attr-defined]
    assert str(stereo_file.resolve()) in window.recent_files()  # type: ignore[attr-defined]


@pytest.mark.parametrize("scale", ["linear", "mel", "log"])
def test_spectrogram_scales(
    make_window: Callable[[], object], stereo_file: Path, scale: str
) -> None:
    window = make_window()
    window.show()  # type: ignore[attr-defined]
    window.open_file(stereo_file)  # type: ignore[attr-defined]
    window._set_scale(scale)  # type: ignore[attr-defined]
    spec = window.spectrogram  # type: ignore[attr-defined]
    assert spec.scale == scale
    row = int(np.argmax(spec.image.image.mean(axis=1)))
    assert spec._tilers[min(spec._tilers)].freqs[row] == pytest.approx(440, rel=0.08)


def test_zoom_in_redraws_from_raw_samples(
    make_window: Callable[[], object], stereo_file: Path, qtbot: object
) -> None:
    window = make_window()
    window.show()  # type: ignore[attr-defined]
    window.open_file(stereo_file)  # type: ignore[attr-defined]
    wave = window.waveform  # type: ignore[attr-defined]
    wave.setXRange(0.5, 0.52, padding=0.0)
    wave.redraw()
    start, end = wave.visible_frames()
    assert 0 < end - start <= 400
    xs, _ = wave._curves[0].getData()
    assert len(xs) == 2 * min(wave.pixel_width(), end - start)
    assert xs.min() >= 0.49 and xs.max() <= 0.53


def test_bad_file_reports_and_keeps_current(
    make_window: Callable[[], object], stereo_file: Path, tmp_path: Path
) -> None:
    window = make_window()
    window.open_file(stereo_file)  # type: ignore[attr-defined]
    bad = tmp_path / "bad.wav"
    bad.write_bytes(stereo_file.read_bytes()[:500])
    assert not window.open_file(bad)  # type: ignore[attr-defined]
    assert "truncated" in window.statusBar().currentMessage()  # type: ignore[attr-defined]
    assert window.path == stereo_file  # type: ignore[attr-defined]


def test_models_dock_says_none_installed(make_window: Callable[[], object]) -> None:
    window = make_window()
    items = [window.models_list.item(i).text() for i in range(window.models_list.count())]  # type: ignore[attr-defined]
    assert any("No model bundles" in t for t in items)


def test_playback_without_device_is_a_message_not_a_crash(
    make_window: Callable[[], object], stereo_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from audiogen_studio.audio import devices

    def refuse(*args: object, **kwargs: object) -> object:
        raise devices.AudioDeviceError("no output device: none found")

    monkeypatch.setattr(devices, "play_clip", refuse)
    window = make_window()
    window.open_file(stereo_file)  # type: ignore[attr-defined]
    window.toggle_playback()  # type: ignore[attr-defined]
    assert "no output device" in window.statusBar().currentMessage()  # type: ignore[attr-defined]
    assert window._player is None  # type: ignore[attr-defined]


def test_screenshot_command(stereo_file: Path, tmp_path: Path) -> None:
    png = tmp_path / "shot.png"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "audiogen_studio",
            "gui",
            str(stereo_file),
            "--screenshot",
            str(png),
            "--after",
            "0.2",
            "--size",
            "900x600",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env={**__import__("os").environ, "QT_QPA_PLATFORM": "offscreen"},
    )
    assert proc.returncode == 0, proc.stderr
    from PySide6.QtGui import QImage

    image = QImage(str(png))
    assert (image.width(), image.height()) == (900, 600)
    # not a blank render: the waveform colour is present
    colors = {image.pixel(x, y) for x in range(0, 900, 7) for y in range(0, 600, 7)}
    assert len(colors) > 20


def test_waveform_extend_equals_showing_the_whole_clip(qtbot: object) -> None:
    from audiogen_studio.app.views import WaveformView

    full = synth.riff(repeats=1, seed=4)
    grown, whole = WaveformView(), WaveformView()
    for view in (grown, whole):
        qtbot.addWidget(view)  # type: ignore[attr-defined]
        view.resize(600, 200)
    grown.set_clip(Clip(full.samples[:, :1000], full.rate))
    for start in range(1000, full.frames, 3000):
        grown.extend(np.array(full.samples[:, start : start + 3000]))
    whole.set_clip(full)
    assert grown.clip is not None and grown.clip.equals(full)
    for view in (grown, whole):
        view.setXRange(0.0, full.duration, padding=0.0)
        view.redraw()
    np.testing.assert_array_equal(grown._curves[0].getData()[1], whole._curves[0].getData()[1])


def test_panel_docks_and_record_shortcut(
    make_window: Callable[[], object], monkeypatch: pytest.MonkeyPatch, qtbot: Any
) -> None:
    from PySide6.QtCore import Qt
    from PySide6.QtTest import QTest
    from PySide6.QtWidgets import QLabel

    window: Any = make_window()
    window.show()
    docks = window._docks
    assert {"Models", "Generate"} <= set(docks)
    extra = window.add_panel_dock("Extra panel", QLabel("x"), tabify_with="Generate")
    assert extra.objectName() == "extra-panel-dock" and extra.widget().text() == "x"
    qtbot.waitUntil(lambda: extra in window.tabifiedDockWidgets(docks["Generate"]))
    if window.recording_panel is not None:  # the recording panel is installed: R toggles it
        assert "Record" in docks
        calls: list[int] = []
        monkeypatch.setattr(window.recording_panel, "toggle_record", lambda: calls.append(1))
        QTest.keyClick(window, Qt.Key.Key_R)
        assert calls == [1]
    else:
        window.record_action.trigger()
        assert "not available" in window.statusBar().currentMessage()
