"""Opening long files in the background (app.loading): drawn at once from the 16-bit map, then
the float32 clip replaces the map without changing what is drawn or rebuilding anything."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
from editor_support import new_window

from audiogen_studio.app import loading
from audiogen_studio.app import views as views_module
from audiogen_studio.app.views import SpectrogramView, WaveformView
from audiogen_studio.audio import io
from audiogen_studio.audio.clip import Clip
from audiogen_studio.audio.errors import AudioFileError

RATE = 16_000


def write_wav(path: Path, seconds: float, *, subtype: str = "PCM_16", seed: int = 0) -> Path:
    """Stereo: a tone on the left, noise on the right, full-scale extremes included."""
    frames = round(seconds * RATE)
    t = np.arange(frames) / RATE
    rng = np.random.default_rng(seed)
    left = 0.6 * np.sin(2 * np.pi * 440.0 * t)
    right = 0.3 * rng.standard_normal(frames).clip(-3, 3) / 3
    data = np.stack([left, right], axis=1)
    data[frames // 3] = [1.0, -1.0]
    sf.write(str(path), data, RATE, subtype=subtype)
    return path


def make_views(qtbot: Any) -> tuple[WaveformView, SpectrogramView]:
    wave, spec = WaveformView(), SpectrogramView()
    for view in (wave, spec):
        qtbot.addWidget(view)
        view.resize(700, 260)
        view.show()
    return wave, spec


def drawn(wave: WaveformView, spec: SpectrogramView) -> list[np.ndarray]:
    """Redraw now; the curves' points and the spectrogram image (copies)."""
    wave.redraw()
    spec.redraw()
    out = [np.array(a) for curve in wave._curves for a in curve.getData()]
    return [*out, np.array(spec.image.image)]


def test_short_files_load_before_returning(tmp_path: Path) -> None:
    path = write_wav(tmp_path / "short.wav", 0.5)
    opened = loading.open_audio(path)
    assert isinstance(opened, Clip)
    assert opened.equals(io.load(path)) and dict(opened.metadata) == dict(io.load(path).metadata)
    flac = tmp_path / "short.flac"
    sf.write(str(flac), np.zeros((800, 1)), RATE)
    assert isinstance(loading.open_audio(flac), Clip)


def test_bad_files_raise_before_returning(tmp_path: Path) -> None:
    with pytest.raises(AudioFileError, match="not found"):
        loading.open_audio(tmp_path / "missing.wav", min_samples=1)
    path = write_wav(tmp_path / "cut.wav", 1.0)
    path.write_bytes(path.read_bytes()[:-1000])
    with pytest.raises(AudioFileError, match="truncated"):
        loading.open_audio(path, min_samples=1)


def test_long_file_is_drawn_from_its_map_and_its_clip_keeps_the_drawing(
    tmp_path: Path, qtbot: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(io, "_CONVERT_CHUNK", 20_000)  # several progress steps
    path = write_wav(tmp_path / "long.wav", 6.0)
    wave, spec = make_views(qtbot)
    job = loading.open_audio(path, views=(wave, spec), min_samples=1)
    assert isinstance(job, loading.BackgroundOpen)
    assert "long.wav" in job.status_text() and "loading 0%" in job.status_text()
    events: list[str] = []
    pending_state: dict[str, Any] = {}

    def on_shown() -> None:  # what the views draw before the clip exists
        events.append("shown")
        pending_state["clip"] = wave.clip
        pending_state["dtype"] = wave.pyramids[0].samples.dtype
        pending_state["drawn"] = drawn(wave, spec)
        pending_state["sparse"] = spec.sparse_frames(4096, 0, 20).values.copy()
        pending_state["range"] = wave.view_range()

    job.shown.connect(on_shown)
    job.progress.connect(lambda fraction: events.append(f"{fraction:.3f}"))
    with qtbot.waitSignal(job.loaded, timeout=20_000) as blocker:
        pass
    clip = blocker.args[0]
    assert events[0] == "shown" and events[-1] == "1.000" and len(events) == 1 + 5
    assert pending_state["clip"] is None and pending_state["dtype"] == np.int16
    assert pending_state["range"] == pytest.approx((0.0, 6.0))  # zoomed to fit
    assert clip.equals(io.load(path)) and job.clip is clip and job.wait(5)
    assert job.pending is None  # released: the views hold it until they have the clip

    # the window makes the clip its document: the views keep their pyramids, nothing rebuilt
    pyramids = list(wave.pyramids)
    monkeypatch.setattr(views_module, "build_pyramids", lambda *a: pytest.fail("rebuilt"))
    wave.set_clip(clip)
    spec.set_clip(clip)
    assert wave.pending is None and wave.clip is clip
    assert all(a is b for a, b in zip(wave.pyramids, pyramids, strict=True))
    assert wave.pyramids[0].samples.dtype == np.float32  # the map is no longer referenced
    after = drawn(wave, spec)
    monkeypatch.undo()
    # ... and the drawing is exactly what views given the loaded clip draw from scratch
    fresh_wave, fresh_spec = make_views(qtbot)
    for view in (fresh_wave, fresh_spec):
        view.set_clip(io.load(path))
        view.zoom_to_fit()
    fresh = drawn(fresh_wave, fresh_spec)
    for before_clip, with_clip, scratch in zip(pending_state["drawn"], after, fresh, strict=True):
        np.testing.assert_array_equal(before_clip, scratch)
        np.testing.assert_array_equal(with_clip, scratch)
    np.testing.assert_array_equal(
        pending_state["sparse"], fresh_spec.sparse_frames(4096, 0, 20).values
    )


def test_an_unrelated_clip_is_not_adopted(tmp_path: Path, qtbot: Any) -> None:
    path = write_wav(tmp_path / "long.wav", 2.0)
    wave, spec = make_views(qtbot)
    job = loading.open_audio(path, views=(wave, spec), min_samples=1)
    assert isinstance(job, loading.BackgroundOpen)
    with qtbot.waitSignal(job.loaded, timeout=20_000):
        pass
    other = Clip(np.asarray(job.clip.samples).copy(), RATE)  # type: ignore[union-attr]
    pyramids = list(wave.pyramids)
    wave.set_clip(other)
    assert not any(a is b for a, b in zip(wave.pyramids, pyramids, strict=True))


def test_cancel_emits_nothing_more_and_ends_the_thread(
    tmp_path: Path, qtbot: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(io, "_CONVERT_CHUNK", 1000)
    path = write_wav(tmp_path / "long.wav", 6.0)
    wave, spec = make_views(qtbot)
    job = loading.open_audio(path, views=(wave, spec), min_samples=1)
    assert isinstance(job, loading.BackgroundOpen)
    heard: list[object] = []
    for signal in (job.shown, job.progress, job.loaded, job.failed):
        signal.connect(heard.append)
    job.cancel(wait=True)
    assert job.cancelled and not job.running
    qtbot.wait(100)  # whatever the thread queued before it saw the cancel is dropped
    assert heard == [] and job.pending is None and job.clip is None
    assert wave.pending is None and wave.clip is None
    assert job not in loading._RUNNING  # released in the GUI thread, never on the worker's


def test_other_long_files_decode_in_the_background_and_report_failures(
    tmp_path: Path, qtbot: Any
) -> None:
    flac = write_wav(tmp_path / "long.flac", 2.0, subtype="PCM_24")
    wave, spec = make_views(qtbot)
    job = loading.open_audio(flac, views=(wave, spec), min_samples=1)
    assert isinstance(job, loading.BackgroundOpen)
    with qtbot.waitSignal(job.loaded, timeout=20_000) as blocker:
        pass
    assert blocker.args[0].equals(io.load(flac))
    wave.set_clip(blocker.args[0])
    bad = tmp_path / "nan.wav"
    data = np.zeros((RATE, 2), np.float32)
    data[100, 1] = np.nan
    sf.write(str(bad), data, RATE, subtype="FLOAT")
    job = loading.open_audio(bad, views=(wave, spec), min_samples=1)
    assert isinstance(job, loading.BackgroundOpen)
    with qtbot.waitSignal(job.failed, timeout=20_000) as failed:
        pass
    assert "non-finite" in failed.args[0] and job.error == failed.args[0]


def test_a_redraw_that_arrives_after_the_views_closed_draws_nothing(
    tmp_path: Path, qtbot: Any
) -> None:
    """A debounced redraw (or a decode result) may be queued when a view closes: pyqtgraph has
    dropped the view box by then, so the redraw must return instead of raising in the event
    loop."""
    wave, spec = make_views(qtbot)
    clip = io.load(write_wav(tmp_path / "short.wav", 1.0))
    wave.set_clip(clip)
    spec.set_clip(clip)
    drawn(wave, spec)
    for view in (wave, spec):
        view.close()
        view.redraw()  # would raise AttributeError on the closed plot


# -- the window ------------------------------------------------------------------------------


def test_window_shows_a_long_file_at_once_and_edits_it_once_converted(
    tmp_path: Path, qtbot: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(loading, "BACKGROUND_MIN_SAMPLES", 1)
    monkeypatch.setattr(io, "_CONVERT_CHUNK", 10_000)
    path = write_wav(tmp_path / "long.wav", 6.0)
    window = new_window(qtbot, tmp_path)
    assert window.open_file(path)
    job = window.opening
    assert job is not None and window.clip is None  # nothing to edit or play yet
    assert "loading" in window.file_label.text() and "long.wav" in window.windowTitle()
    assert not window.actions_by_name["play"].isEnabled()
    seen: list[bool] = []

    def on_shown() -> None:  # drawn, not yet editable; the user zooms while it loads
        seen.append(window.clip is None and window.waveform.pending is not None)
        seen.append(window.spectrogram.pending is not None and window.clip is None)
        window.set_visible_range(1.0, 3.0)

    job.shown.connect(on_shown)
    qtbot.waitUntil(lambda: window.clip is not None, timeout=20_000)
    assert seen == [True, True]
    assert window.clip.equals(io.load(path)) and window.opening is None
    assert window.actions_by_name["play"].isEnabled() and "loading" not in window.file_label.text()
    assert window.waveform.pyramids[0].samples.dtype == np.float32
    assert window.visible_range() == pytest.approx((1.0, 3.0))  # the zoom is kept
    assert not window.is_modified()

    # a newer document cancels an open in progress: its clip never replaces the newer one
    short = write_wav(tmp_path / "short.wav", 0.5, seed=1)
    assert window.open_file(path)
    stale = window.opening
    monkeypatch.setattr(loading, "BACKGROUND_MIN_SAMPLES", 10**9)
    assert window.open_file(short)
    assert stale is not None and stale.cancelled and window.opening is None
    qtbot.wait(300)
    assert window.clip is not None and window.clip.equals(io.load(short))
    # closing while a file loads ends its thread
    monkeypatch.setattr(loading, "BACKGROUND_MIN_SAMPLES", 1)
    assert window.open_file(path)
    job = window.opening
    window.close()
    assert job is not None and job.cancelled and not job.running
