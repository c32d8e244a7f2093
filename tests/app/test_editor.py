"""Editor views: shared time axis, ruler, zoom and scroll, mouse selection, shortcuts, playback."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from editor_support import fake_devices, make_clip, new_window, same_bits, thread_names
from PySide6.QtCore import QPoint, QPointF, Qt
from PySide6.QtGui import QWheelEvent
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QApplication

from audiogen_studio.app import zoom
from audiogen_studio.app.clipboard import clipboard
from audiogen_studio.app.selection import SelectionModel
from audiogen_studio.app.transport import Transport
from audiogen_studio.app.views import (
    N_FFT,
    SpectrogramView,
    TimeAxis,
    WaveformView,
    build_pyramids,
    format_time,
)
from audiogen_studio.audio import edit, io
from audiogen_studio.audio.clip import Clip
from audiogen_studio.audio.display import PeakPyramid, SpectrogramTiler

CTRL = Qt.KeyboardModifier.ControlModifier
SHIFT = Qt.KeyboardModifier.ShiftModifier
NONE = Qt.KeyboardModifier.NoModifier
MOVE_INTERVAL_MS = 25


@pytest.fixture(autouse=True)
def empty_clipboard() -> None:
    clipboard().clear()


@pytest.fixture
def window(qtbot: Any, tmp_path: Path) -> Any:
    w = new_window(qtbot, tmp_path)
    path = io.save(make_clip(4.0), tmp_path / "four.wav")
    assert w.open_file(path)
    QTest.qWaitForWindowExposed(w)
    w.refresh_views()
    return w


# -- pure pieces -----------------------------------------------------------------------------


def test_zoom_arithmetic() -> None:
    assert zoom.clamp_range(-1.0, 2.0, 10.0) == (0.0, 3.0)
    assert zoom.clamp_range(9.0, 12.0, 10.0) == (7.0, 10.0)
    assert zoom.clamp_range(2.0, 2.0, 10.0, min_width=0.5) == (1.75, 2.25)
    assert zoom.clamp_range(0.0, 50.0, 10.0) == (0.0, 10.0)
    # the anchor keeps its place on screen
    x0, x1 = zoom.zoom_range((2.0, 6.0), 2.0, 3.0, 10.0)
    assert (x0, x1) == (2.5, 4.5) and (3.0 - x0) / (x1 - x0) == pytest.approx(0.25)
    assert zoom.zoom_range((2.0, 6.0), 0.5, None, 10.0) == (0.0, 8.0)
    assert zoom.zoom_range((0.0, 1.0), 1e6, 0.5, 10.0, min_width=0.01)[1] == pytest.approx(0.505)
    assert zoom.scroll_range((2.0, 4.0), 0.5, 10.0) == (3.0, 5.0)
    assert zoom.scroll_range((8.0, 10.0), 1.0, 10.0) == (8.0, 10.0)
    assert zoom.selection_range(5.0, 4.0, 10.0) == (4.0, 5.0)
    assert zoom.follow_playhead((0.0, 2.0), 1.0, 10.0) == (0.0, 2.0)
    assert zoom.follow_playhead((0.0, 2.0), 2.5, 10.0) == (2.5, 4.5)
    assert zoom.wheel_zoom_factor(120) == 2.0 and zoom.wheel_zoom_factor(-240) == 0.25
    assert zoom.wheel_scroll_fraction(-120) == pytest.approx(0.1)
    for view, duration in (((3.0, 4.0), 3600.0), ((0.0, 1e-3), 3600.0), ((1.0, 2.0), 2.0)):
        maximum, page, value = zoom.scrollbar_units(view, duration)
        assert 0 <= value <= maximum < 2**31 and page >= 1
        assert zoom.scrollbar_to_start(value, view, duration) == pytest.approx(view[0], abs=1e-3)


def test_time_format_and_ruler(qtbot: Any) -> None:
    assert format_time(0.0) == "0:00.000"
    assert format_time(61.25) == "1:01.250"
    assert format_time(3723.5, 1) == "1:02:03.5"
    assert format_time(59.9996) == "1:00.000"
    assert format_time(-1.5, 1) == "-0:01.5"
    axis = TimeAxis("top")
    assert axis.tickStrings([0.0, 30.0, 60.0], 1.0, 30.0) == ["0:00", "0:30", "1:00"]
    assert axis.tickStrings([1.25, 1.5], 1.0, 0.25) == ["0:01.25", "0:01.50"]
    assert axis.tickStrings([0.0001], 1.0, 0.0001) == ["0:00.0001"]


def test_selection_model_rules(qtbot: Any) -> None:
    model = SelectionModel()
    changes: list[int] = []
    model.changed.connect(lambda: changes.append(1))
    model.reset(1000)
    model.click(100)
    assert model.selection is None and model.cursor == 100
    model.press(300)
    model.drag(200)  # dragging left of the press point
    model.release(150)
    assert model.selection == (150, 300) and model.cursor == 150
    model.click(500, extend=True)  # shift-click: the far edge (150) stays
    assert model.selection == (150, 500)
    model.click(100, extend=True)  # now 500 is the far edge
    assert model.selection == (100, 500)
    model.press(400, extend=True)  # shift-drag moves the nearer edge
    model.drag(450)
    model.release(460)
    assert model.selection == (100, 460)
    model.set_selection(900, 2000)  # clamped
    assert model.selection == (900, 1000)
    model.set_length(950)
    assert model.selection == (900, 950)
    model.set_selection(10, 10)  # empty: a cursor, not a selection
    assert model.selection is None and model.cursor == 10
    model.select_all()
    assert model.selection == (0, 950)
    count = len(changes)
    model.select_all()
    assert len(changes) == count  # no change, no signal
    model.reset(0)
    model.select_all()
    assert model.selection is None


# -- views -----------------------------------------------------------------------------------


def test_both_views_share_the_time_axis_and_draw_the_ruler(window: Any) -> None:
    wave, spec = window.waveform, window.spectrogram
    assert wave.clip is window.clip and spec.clip is window.clip
    assert wave.view_range() == pytest.approx((0.0, 4.0))
    assert spec.view_range() == pytest.approx(wave.view_range())
    wave.set_view_range(1.0, 2.0)
    assert spec.view_range() == pytest.approx((1.0, 2.0))
    assert wave.getAxis("top").isVisible() and isinstance(wave.getAxis("top"), TimeAxis)
    assert spec.getAxis("bottom").isVisible() and isinstance(spec.getAxis("bottom"), TimeAxis)
    # both plot areas start at the same x on screen, so times line up vertically
    assert wave.view_box.mapViewToScene(QPointF(1.5, 0)).x() == pytest.approx(
        spec.view_box.mapViewToScene(QPointF(1.5, 0)).x(), abs=1.0
    )
    # the scroll bar follows the view and scrolls it
    bar = window.scrollbar
    assert bar.isEnabled() and bar.maximum() > 0
    bar.setValue(bar.maximum())
    assert wave.view_range()[1] == pytest.approx(4.0, abs=1e-3)
    window.zoom_to_fit()
    assert not bar.isEnabled()


def test_zoom_keys_and_wheel(window: Any, qtbot: Any) -> None:
    wave = window.waveform
    QTest.keyClick(window, Qt.Key.Key_1, CTRL)  # zoom in x2 about the centre
    assert window.visible_range() == pytest.approx((1.0, 3.0))
    QTest.keyClick(window, Qt.Key.Key_3, CTRL)
    assert window.visible_range() == pytest.approx((0.0, 4.0))
    window.set_selection(16000, 24000)
    QTest.keyClick(window, Qt.Key.Key_E, CTRL)
    assert window.visible_range() == pytest.approx((1.0, 1.5))
    QTest.keyClick(window, Qt.Key.Key_F, CTRL)
    assert window.visible_range() == pytest.approx((0.0, 4.0))
    for _ in range(30):  # the deepest zoom shows about 20 samples
        window.zoom_in()
    x0, x1 = window.visible_range()
    assert (x1 - x0) * 16000 == pytest.approx(20, rel=0.01)
    window.zoom_to_fit()
    # Ctrl+wheel zooms about the pointer: the time under the pointer stays there
    viewport = wave.viewport()
    pos = QPointF(viewport.width() * 0.75, viewport.height() / 2)
    before = wave.view_box.mapSceneToView(wave.mapToScene(pos.toPoint())).x()

    def wheel(delta: int, mods: Qt.KeyboardModifier) -> None:
        event = QWheelEvent(
            pos, viewport.mapToGlobal(pos), QPoint(0, 0), QPoint(0, delta),
            Qt.MouseButton.NoButton, mods, Qt.ScrollPhase.NoScrollPhase, False,
        )  # fmt: skip
        QApplication.sendEvent(viewport, event)

    wheel(120, CTRL)
    x0, x1 = window.visible_range()
    assert x1 - x0 == pytest.approx(2.0)
    after = wave.view_box.mapSceneToView(wave.mapToScene(pos.toPoint())).x()
    assert after == pytest.approx(before, abs=0.01)
    wheel(-120, NONE)  # the plain wheel scrolls (towards later times)
    assert window.visible_range()[0] == pytest.approx(x0 + 0.2)
    wheel(120, SHIFT)
    assert window.visible_range()[0] == pytest.approx(x0)


def _scene_x(view: Any, seconds: float) -> int:
    """Viewport x of ``seconds`` in ``view``."""
    scene = view.view_box.mapViewToScene(QPointF(seconds, 0.0))
    return round(view.mapFromScene(scene).x())


def test_mouse_click_drag_and_shift_extend(window: Any) -> None:
    wave, spec = window.waveform, window.spectrogram
    viewport, y = wave.viewport(), wave.viewport().height() // 2
    QTest.mouseClick(viewport, Qt.MouseButton.LeftButton, NONE, QPoint(_scene_x(wave, 1.0), y))
    assert window.selection() is None
    assert window.cursor_frame() == pytest.approx(16000, abs=40)
    assert wave.cursor_line.isVisible() and spec.cursor_line.isVisible()
    # drag from 2 s to 0.5 s in the spectrogram selects in both views
    sviewport, sy = spec.viewport(), spec.viewport().height() // 2
    QTest.mousePress(sviewport, Qt.MouseButton.LeftButton, NONE, QPoint(_scene_x(spec, 2.0), sy))
    QTest.mouseMove(sviewport, QPoint(_scene_x(spec, 1.0), sy))
    QTest.mouseMove(sviewport, QPoint(_scene_x(spec, 0.5), sy))
    QTest.mouseRelease(sviewport, Qt.MouseButton.LeftButton, NONE, QPoint(_scene_x(spec, 0.5), sy))
    start, end = window.selection()
    assert start == pytest.approx(8000, abs=40) and end == pytest.approx(32000, abs=40)
    for view in (wave, spec):
        assert view.region.isVisible() and not view.cursor_line.isVisible()
        assert view.region.getRegion() == pytest.approx((start / 16000, end / 16000))
    assert "Selection 0:00.5" in window.selection_label.text()
    # shift-click beyond the end moves the nearer (end) edge
    QTest.mouseClick(viewport, Qt.MouseButton.LeftButton, SHIFT, QPoint(_scene_x(wave, 3.0), y))
    assert window.selection()[0] == start
    assert window.selection()[1] == pytest.approx(48000, abs=40)


def test_drag_a_selection_edge_in_either_view(window: Any) -> None:
    from audiogen_studio.app.edge_drag import EDGE_GRAB_PIXELS

    wave, spec = window.waveform, window.spectrogram
    rate = 16000

    def move(viewport: Any, point: QPoint) -> None:
        QTest.qWait(MOVE_INTERVAL_MS)  # pyqtgraph drops moves closer together than ~16 ms
        QTest.mouseMove(viewport, point)

    window.set_selection(1 * rate, 2 * rate)
    viewport, y = wave.viewport(), wave.viewport().height() // 2
    near_end = QPoint(_scene_x(wave, 2.0) + EDGE_GRAB_PIXELS - 2, y)
    # hovering near an edge shows the size-hor cursor, elsewhere the normal one
    move(viewport, QPoint(_scene_x(wave, 1.5), y))
    assert viewport.cursor().shape() != Qt.CursorShape.SizeHorCursor
    move(viewport, near_end)
    assert viewport.cursor().shape() == Qt.CursorShape.SizeHorCursor
    move(viewport, QPoint(_scene_x(wave, 1.5), y))
    assert viewport.cursor().shape() != Qt.CursorShape.SizeHorCursor
    # press near the end edge and drag it: the start stays, the model follows live
    QTest.mousePress(viewport, Qt.MouseButton.LeftButton, NONE, near_end)
    assert window.selection() == (rate, 2 * rate)  # a press alone changes nothing
    move(viewport, QPoint(_scene_x(wave, 2.5), y))
    live = window.selection()
    assert live[0] == rate and live[1] == pytest.approx(2.5 * rate, abs=40)
    assert window.selection_model.dragging_edge
    assert viewport.cursor().shape() == Qt.CursorShape.SizeHorCursor
    move(viewport, QPoint(_scene_x(wave, 3.0), y))
    QTest.mouseRelease(viewport, Qt.MouseButton.LeftButton, NONE, QPoint(_scene_x(wave, 3.0), y))
    start, end = window.selection()
    assert start == rate and end == pytest.approx(3 * rate, abs=40)
    assert not window.selection_model.dragging_edge
    # the start edge in the spectrogram, dragged past the end: the edges swap roles
    sviewport, sy = spec.viewport(), spec.viewport().height() // 2
    QTest.mousePress(sviewport, Qt.MouseButton.LeftButton, NONE, QPoint(_scene_x(spec, 1.0), sy))
    move(sviewport, QPoint(_scene_x(spec, 0.5), sy))
    assert window.selection()[0] == pytest.approx(0.5 * rate, abs=40)
    assert window.selection()[1] == end
    move(sviewport, QPoint(_scene_x(spec, 3.5), sy))
    QTest.mouseRelease(sviewport, Qt.MouseButton.LeftButton, NONE, QPoint(_scene_x(spec, 3.5), sy))
    assert window.selection()[0] == end
    assert window.selection()[1] == pytest.approx(3.5 * rate, abs=40)
    for view in (wave, spec):
        assert view.region.getRegion() == pytest.approx(
            (window.selection()[0] / rate, window.selection()[1] / rate)
        )
    # a press away from the edges still starts a new selection
    QTest.mousePress(viewport, Qt.MouseButton.LeftButton, NONE, QPoint(_scene_x(wave, 1.0), y))
    move(viewport, QPoint(_scene_x(wave, 1.5), y))
    QTest.mouseRelease(viewport, Qt.MouseButton.LeftButton, NONE, QPoint(_scene_x(wave, 1.5), y))
    assert window.selection()[0] == pytest.approx(rate, abs=40)
    assert window.selection()[1] == pytest.approx(1.5 * rate, abs=40)


def test_edge_grab_rules_in_frames(qtbot: Any) -> None:
    model = SelectionModel()
    model.reset(1000)
    assert model.edge_near(100, 10) is None  # nothing selected
    model.set_selection(100, 200)
    assert model.edge_near(95, 10) == "start" and model.edge_near(209, 10) == "end"
    assert model.edge_near(150, 10) is None
    model.press(104, grab_tolerance=10)  # grabs the start edge
    assert model.dragging_edge and model.selection == (100, 200)
    model.drag(50)
    assert model.selection == (50, 200)
    model.release(60)
    assert model.selection == (60, 200) and not model.dragging_edge
    model.press(104, grab_tolerance=0)  # no tolerance: an ordinary press clears
    assert model.selection is None
    model.release(104)
    model.set_selection(100, 200)
    model.press(205, extend=True, grab_tolerance=10)  # Shift extends, never grabs
    assert not model.dragging_edge


def test_shortcuts_trigger_the_actions(window: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_devices(monkeypatch)
    original = window.clip

    def key(k: Qt.Key, mods: Qt.KeyboardModifier = NONE) -> None:
        QTest.keyClick(window.waveform, k, mods)

    key(Qt.Key.Key_A, CTRL)
    assert window.selection() == (0, original.frames)
    window.set_selection(1000, 3000)
    key(Qt.Key.Key_C, CTRL)
    assert same_bits(clipboard().clip.samples, original.samples[:, 1000:3000])
    key(Qt.Key.Key_X, CTRL)
    assert window.clip.frames == original.frames - 2000
    key(Qt.Key.Key_V, CTRL)  # paste back where it was cut
    assert same_bits(window.clip.samples, original.samples)
    key(Qt.Key.Key_Z, CTRL)
    key(Qt.Key.Key_Z, CTRL)
    assert same_bits(window.clip.samples, original.samples)
    key(Qt.Key.Key_Y, CTRL)
    assert window.clip.frames == original.frames - 2000
    key(Qt.Key.Key_Z, CTRL)
    key(Qt.Key.Key_Z, CTRL | SHIFT)
    assert window.clip.frames == original.frames - 2000
    key(Qt.Key.Key_Z, CTRL)
    window.set_selection(1000, 3000)
    key(Qt.Key.Key_Delete)
    assert window.clip.frames == original.frames - 2000
    key(Qt.Key.Key_Z, CTRL)
    window.set_selection(1000, 3000)
    key(Qt.Key.Key_T, CTRL)  # trim
    assert window.clip.frames == 2000
    key(Qt.Key.Key_Z, CTRL)
    window.set_selection(1000, 3000)
    key(Qt.Key.Key_L, CTRL)  # silence
    assert not window.clip.samples[:, 1000:3000].any()
    key(Qt.Key.Key_End)
    assert window.cursor_frame() == window.clip.frames and window.selection() is None
    key(Qt.Key.Key_Home)
    assert window.cursor_frame() == 0
    key(Qt.Key.Key_Space)
    assert window.transport.playing and not window.transport.looping
    key(Qt.Key.Key_Space)
    assert not window.transport.playing
    key(Qt.Key.Key_Space, SHIFT)
    assert window.transport.looping
    key(Qt.Key.Key_Space, SHIFT)
    assert not window.transport.playing
    # the Edit menu shows what undo and redo will do
    assert window.undo_action.text() == "&Undo Silence"
    window.undo_action.trigger()
    assert window.redo_action.text() == "&Redo Silence"
    assert QTest  # keep the import used
    keys = {n: [s.toString() for s in a.shortcuts()] for n, a in window.actions_by_name.items()}
    assert keys["redo"] == ["Ctrl+Y", "Ctrl+Shift+Z"] and keys["zoom_in"] == ["Ctrl+1"]
    assert keys["record"] == ["R"] and keys["export"] == ["Ctrl+Shift+E"]


def test_delete_key_acts_where_the_focus_is(window: Any, qtbot: Any) -> None:
    """Del edits the audio only while the editor has focus: in a panel (a list of takes, of
    models) the key belongs to that panel."""
    frames = window.clip.frames
    window.set_selection(0, 1000)
    window.activateWindow()
    qtbot.waitUntil(window.isActiveWindow)
    panel_list = window.models_list
    panel_list.setFocus()
    qtbot.waitUntil(panel_list.hasFocus)
    QTest.keyClick(panel_list, Qt.Key.Key_Delete)
    assert window.clip.frames == frames and window.selection() == (0, 1000)
    window.waveform.setFocus()
    qtbot.waitUntil(window.waveform.hasFocus)
    QTest.keyClick(window.waveform, Qt.Key.Key_Delete)
    assert window.clip.frames == frames - 1000


def test_actions_follow_the_selection(window: Any) -> None:
    actions = window.actions_by_name
    window.clear_selection()
    assert not actions["cut"].isEnabled() and not actions["paste"].isEnabled()
    assert actions["silence"].isEnabled()  # effects act on everything without a selection
    window.set_selection(0, 10)
    assert actions["cut"].isEnabled() and actions["zoom_selection"].isEnabled()
    window.copy()
    assert actions["paste"].isEnabled()


# -- playback --------------------------------------------------------------------------------


def test_space_plays_the_selection_and_the_playhead_follows(
    window: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    started = fake_devices(monkeypatch)
    window.set_visible_range(0.0, 1.0)
    window.set_selection(8000, 40000)  # 0.5 s .. 2.5 s
    window.play_action.trigger()
    (player,) = started
    ring = player.buffer
    played = ring.read(24000)  # the device took 1.5 s
    np.testing.assert_array_equal(played.T, window.clip.samples[:, 8000:32000])
    window._update_playhead()
    for view in (window.waveform, window.spectrogram):
        assert view.playhead.isVisible() and view.playhead.value() == pytest.approx(2.0)
    assert window.visible_range() == pytest.approx((2.0, 3.0))  # the view paged to the playhead
    rest = ring.read(ring.available())
    assert rest.shape[0] == 8000 and ring.closed
    player.finished.set()
    window._update_playhead()
    assert not window.transport.playing and not window.waveform.playhead.isVisible()
    # without a selection, play starts at the cursor
    window.set_cursor(40000)
    window.toggle_playback()
    assert started[-1].buffer.available() == window.clip.frames - 40000
    window.stop_playback()


def test_loop_repeats_the_selection_until_stopped(monkeypatch: pytest.MonkeyPatch) -> None:
    started = fake_devices(monkeypatch)
    clip = make_clip(0.5, channels=2)
    transport = Transport()
    before = thread_names()
    transport.play(clip, 1000, 1700, loop=True)
    (player,) = started
    got: list[np.ndarray] = []
    deadline = time.monotonic() + 10
    while sum(len(g) for g in got) < 2500 and time.monotonic() < deadline:
        got.append(player.buffer.read(300))
        time.sleep(0.001)
    out = np.concatenate(got)
    assert len(out) >= 2500
    loop = np.tile(clip.samples[:, 1000:1700], 4)[:, : len(out)]
    np.testing.assert_array_equal(out.T, loop)
    assert transport.looping and transport.position() == 1000 + len(out) % 700
    assert not transport.finished()
    transport.stop()
    assert thread_names() <= before  # the feeder was joined
    assert transport.position() is None


def test_playback_without_a_device_is_a_message(
    window: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from audiogen_studio.audio import devices

    def refuse(self: Any) -> None:
        raise devices.AudioDeviceError("no output device: none found")

    monkeypatch.setattr(devices.Player, "start", refuse)
    before = thread_names()
    window.toggle_loop()
    assert "no output device" in window.statusBar().currentMessage()
    assert not window.transport.playing and thread_names() <= before


# -- drawing equals the full computation -----------------------------------------------------


def test_sparse_spectrogram_frames_equal_the_tiler(qtbot: Any) -> None:
    rng = np.random.default_rng(1)
    samples = (0.3 * rng.standard_normal((2, 60000))).astype(np.float32)
    view = SpectrogramView()
    qtbot.addWidget(view)
    view.set_clip(Clip(samples, 16000))
    for scale in ("log", "mel", "linear"):
        view.set_scale(scale)
        for hop, first, last in ((2048, 0, 30), (4096, 3, 15), (16384, 1, 4)):
            sparse = view.sparse_frames(hop, first, last)
            tiler = SpectrogramTiler(
                samples, 16000, n_fft=N_FFT, hop=hop, scale=scale, n_bins=view._n_bins()
            )
            full = tiler.render(first, last)
            np.testing.assert_array_equal(sparse.values, full.values)
            np.testing.assert_array_equal(sparse.freqs, full.freqs)


def test_long_clip_draws_without_reading_every_sample(qtbot: Any) -> None:
    """Zoomed out on 10 minutes, a redraw analyses about one window per column."""
    samples = np.zeros((1, 16000 * 600), np.float32)
    samples[0, ::97] = 0.5
    view = SpectrogramView()
    qtbot.addWidget(view)
    view.resize(800, 300)
    view.show()
    view.set_clip(Clip(samples, 16000))
    view.zoom_to_fit()
    start = time.perf_counter()
    view.redraw()
    assert time.perf_counter() - start < 1.0
    assert view.image.image is not None and view.image.image.shape[1] <= 2 * view.pixel_width()
    assert not view._tilers  # no tiler (which would read all samples) at this zoom


def test_per_channel_pyramids_and_edit_updates_equal_a_rebuild(qtbot: Any) -> None:
    clip = make_clip(2.0, channels=2)
    pyramids = build_pyramids(clip.samples)
    whole = PeakPyramid(clip.samples)
    for c, pyramid in enumerate(pyramids):
        for level_c, level in zip(pyramid.levels, whole.levels, strict=True):
            np.testing.assert_array_equal(level_c.mins[0], level.mins[c])
            np.testing.assert_array_equal(level_c.maxs[0], level.maxs[c])
    edited, fresh = WaveformView(), WaveformView()
    for view in (edited, fresh):
        qtbot.addWidget(view)
        view.resize(600, 200)
    edited.set_clip(clip)
    after = edit.gain(clip, 6.0, 20000, 30000)
    edited.set_clip(after, changed_from=20000)  # only blocks from frame 20000 recomputed
    fresh.set_clip(after)
    for view in (edited, fresh):
        view.set_view_range(0.0, after.duration)
        view.redraw()
    for a, b in zip(edited._curves, fresh._curves, strict=True):
        np.testing.assert_array_equal(a.getData()[1], b.getData()[1])


def test_colormap_and_scale_menus(window: Any) -> None:
    window.actions_by_name["colormap_viridis"].trigger()
    assert window.spectrogram.colormap == "viridis"
    assert window.colormap_actions["viridis"].isChecked()
    assert not window.colormap_actions["inferno"].isChecked()
    window.actions_by_name["scale_mel"].trigger()
    assert window.spectrogram.scale == "mel" and window.scale_actions["mel"].isChecked()
