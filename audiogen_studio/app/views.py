"""Waveform and spectrogram views (pyqtgraph), drawn from the audio layer's display DSP.

Both views draw only what is visible, at the widget's pixel resolution: the waveform asks the
:class:`~audiogen_studio.audio.display.PeakPyramid` for one min/max pair per pixel column, the
spectrogram asks a :class:`~audiogen_studio.audio.display.SpectrogramTiler` for the visible frames,
with a hop that doubles as the view zooms out so that an hour-long file costs about one screen of
FFTs. Redraws are coalesced by a short single-shot timer.

While a long file is still being converted to its float32 :class:`Clip` (see
:mod:`audiogen_studio.app.loading`), the views draw it from its mapped 16-bit samples
(:meth:`TimeView.show_pending` with a :class:`PendingAudio`); the envelopes and spectrogram are the
same values, and when the clip arrives ``set_clip(clip)`` keeps what is drawn (no rebuild).

The window links the two views' time axes (one shared x range) and draws on both the selection
(a translucent region), the cursor (a dashed line) and the playhead. Mouse gestures are
Audacity's: left click places the cursor, left drag selects (Shift extends), Ctrl+wheel zooms about
the pointer, the wheel (or Shift+wheel, or a horizontal swipe) scrolls, middle drag pans. The views
report gestures through :attr:`TimeView.gesture`; the window owns the selection.
"""

from __future__ import annotations

import concurrent.futures
import os
from typing import Protocol

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QPointF, Qt, QTimer, Signal

from audiogen_studio.app import zoom
from audiogen_studio.audio.clip import Clip
from audiogen_studio.audio.display import (
    PCM16_SCALE,
    FrequencyScale,
    PeakPyramid,
    SampleArray,
    SpectrogramTile,
    SpectrogramTiler,
    mean_channels,
    spectrogram_db,
)

WAVE_COLOR = (127, 209, 255)
CHANNEL_GAP = 2.2  # vertical distance between channel lanes (each lane spans -1..1)
BASE_HOP = 256
N_FFT = 1024
PARALLEL_PYRAMID_SAMPLES = 1 << 22  # build channels' pyramids in parallel above this size
MIN_FRAMES_VISIBLE = 20  # deepest zoom: about 20 samples across the view
SELECTION_BRUSH = (255, 255, 255, 48)
CURSOR_PEN = {"color": (230, 230, 230), "width": 1, "style": Qt.PenStyle.DashLine}
PLAYHEAD_PEN = {"color": "#ffb454", "width": 2}
#: Colormaps offered for the spectrogram: menu label -> pyqtgraph colormap name.
COLORMAPS = {
    "Inferno": "inferno",
    "Magma": "magma",
    "Viridis": "viridis",
    "Grey": "CET-L1",
}


class ShownAudio(Protocol):
    """What a view draws: a :class:`Clip` or a :class:`PendingAudio`."""

    @property
    def samples(self) -> SampleArray: ...

    @property
    def rate(self) -> int: ...

    @property
    def channels(self) -> int: ...

    @property
    def frames(self) -> int: ...

    @property
    def duration(self) -> float: ...


class PendingAudio:
    """A file shown while its :class:`Clip` is still being made (by :mod:`app.loading`).

    Args:
        samples: ``[C, T]`` float32, or int16 16-bit PCM (``v / 32768``, e.g. the transposed
            map of :class:`~audiogen_studio.audio.io.MappedPcm16`); referenced, not copied.
        rate: sample rate in Hz.
        pyramids: one :class:`PeakPyramid` per channel of ``samples`` (see
            :func:`build_pyramids`), built beforehand, typically off the GUI thread.

    The loader sets :attr:`clip` (in the GUI thread) once the float32 clip of exactly these
    samples exists; ``set_clip(clip)`` on a view showing this then keeps its drawing and
    pyramids instead of rebuilding them.
    """

    def __init__(self, samples: SampleArray, rate: int, pyramids: list[PeakPyramid]) -> None:
        if len(pyramids) != samples.shape[0]:
            raise ValueError(f"{len(pyramids)} pyramids for {samples.shape[0]} channels")
        self.samples = samples
        self.rate = int(rate)
        self.pyramids = pyramids
        self.clip: Clip | None = None

    @property
    def channels(self) -> int:
        """Number of channels C."""
        return int(self.samples.shape[0])

    @property
    def frames(self) -> int:
        """Number of frames T."""
        return int(self.samples.shape[1])

    @property
    def duration(self) -> float:
        """Length in seconds."""
        return self.frames / self.rate


def format_time(seconds: float, decimals: int = 3) -> str:
    """``h:mm:ss.fff`` (hours only when needed), e.g. ``0:01.250`` or ``1:02:03.5``."""
    sign = "-" if seconds < 0 else ""
    seconds = abs(seconds)
    scale = 10**decimals
    total = round(seconds * scale)
    whole, frac = divmod(total, scale)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    frac_text = f".{frac:0{decimals}d}" if decimals > 0 else ""
    if hours:
        return f"{sign}{hours}:{minutes:02d}:{secs:02d}{frac_text}"
    return f"{sign}{minutes}:{secs:02d}{frac_text}"


class TimeAxis(pg.AxisItem):  # type: ignore[misc]
    """A time ruler: ticks labelled ``m:ss.fff`` with as many decimals as the spacing needs."""

    def __init__(self, orientation: str) -> None:
        super().__init__(orientation)
        self.enableAutoSIPrefix(False)

    def tickStrings(self, values: list[float], scale: float, spacing: float) -> list[str]:
        decimals = 0  # enough decimals to write the tick spacing exactly (0.25 s -> 2)
        while decimals < 6 and abs(spacing * 10**decimals - round(spacing * 10**decimals)) > 1e-6:
            decimals += 1
        return [format_time(v * scale, decimals) for v in values]


class EditorViewBox(pg.ViewBox):  # type: ignore[misc]
    """A ViewBox whose mouse does editor gestures instead of pyqtgraph's pan/zoom.

    Signals carry times in seconds: ``gesture(kind, seconds, shift)`` with ``kind`` one of
    ``"press"``, ``"drag"``, ``"release"``, ``"click"``; ``wheel_zoom(factor, anchor)`` and
    ``wheel_scroll(fraction)``.
    """

    gesture = Signal(str, float, bool)
    wheel_zoom = Signal(float, float)
    wheel_scroll = Signal(float)

    def __init__(self) -> None:
        super().__init__(enableMenu=False)
        self.setMouseEnabled(x=True, y=False)

    def _x(self, scene_pos: QPointF) -> float:
        return float(self.mapSceneToView(scene_pos).x())

    def mouseClickEvent(self, ev: object) -> None:
        if ev.button() == Qt.MouseButton.LeftButton:  # type: ignore[attr-defined]
            ev.accept()  # type: ignore[attr-defined]
            shift = bool(ev.modifiers() & Qt.KeyboardModifier.ShiftModifier)  # type: ignore[attr-defined]
            self.gesture.emit("click", self._x(ev.scenePos()), shift)  # type: ignore[attr-defined]
        else:
            ev.ignore()  # type: ignore[attr-defined]

    def mouseDragEvent(self, ev: object, axis: int | None = None) -> None:
        button = ev.button()  # type: ignore[attr-defined]
        if button == Qt.MouseButton.MiddleButton:
            super().mouseDragEvent(ev, axis)  # pan
            return
        if button != Qt.MouseButton.LeftButton or axis is not None:
            ev.ignore()  # type: ignore[attr-defined]
            return
        ev.accept()  # type: ignore[attr-defined]
        shift = bool(ev.modifiers() & Qt.KeyboardModifier.ShiftModifier)  # type: ignore[attr-defined]
        x = self._x(ev.scenePos())  # type: ignore[attr-defined]
        if ev.isStart():  # type: ignore[attr-defined]
            down = self._x(ev.buttonDownScenePos(Qt.MouseButton.LeftButton))  # type: ignore[attr-defined]
            self.gesture.emit("press", down, shift)
            self.gesture.emit("drag", x, shift)
        elif ev.isFinish():  # type: ignore[attr-defined]
            self.gesture.emit("release", x, shift)
        else:
            self.gesture.emit("drag", x, shift)

    def wheelEvent(self, ev: object, axis: int | None = None) -> None:
        ev.accept()  # type: ignore[attr-defined]
        delta = int(ev.delta())  # type: ignore[attr-defined]
        if not delta:
            return
        mods = ev.modifiers()  # type: ignore[attr-defined]
        horizontal = ev.orientation() == Qt.Orientation.Horizontal  # type: ignore[attr-defined]
        if mods & Qt.KeyboardModifier.ControlModifier and not horizontal:
            self.wheel_zoom.emit(zoom.wheel_zoom_factor(delta), self._x(ev.scenePos()))  # type: ignore[attr-defined]
        else:
            self.wheel_scroll.emit(zoom.wheel_scroll_fraction(delta))


class TimeView(pg.PlotWidget):  # type: ignore[misc]
    """A plot over a clip's time axis: debounced redraws, selection, cursor and playhead.

    ``gesture(kind, seconds, shift)`` re-emits the view box's mouse gestures.
    """

    gesture = Signal(str, float, bool)

    def __init__(self) -> None:
        self.view_box = EditorViewBox()
        super().__init__(
            viewBox=self.view_box,
            axisItems={"bottom": TimeAxis("bottom"), "top": TimeAxis("top")},
        )
        self.clip: Clip | None = None
        self.pending: PendingAudio | None = None  # shown until its clip arrives
        self.setMenuEnabled(False)
        self.showGrid(x=True, y=False, alpha=0.25)
        self.getAxis("left").setWidth(64)  # same width in both views keeps their time axes aligned
        self.view_box.gesture.connect(self.gesture)
        self.view_box.wheel_zoom.connect(self.zoom_by)
        self.view_box.wheel_scroll.connect(self.scroll_by)
        self._redraw_timer = QTimer(self)
        self._redraw_timer.setSingleShot(True)
        self._redraw_timer.setInterval(15)
        self._redraw_timer.timeout.connect(self.redraw)
        self.view_box.sigXRangeChanged.connect(self._schedule_redraw)
        self.setLimits(xMin=0.0)
        self.setXRange(0.0, 10.0, padding=0.0)

        self.region = pg.LinearRegionItem(
            values=(0.0, 0.0),
            orientation="vertical",
            movable=False,
            brush=pg.mkBrush(*SELECTION_BRUSH),
            pen=pg.mkPen((255, 255, 255, 110)),
        )
        self.region.setZValue(10)
        self.region.setVisible(False)
        self.addItem(self.region, ignoreBounds=True)
        self.cursor_line = pg.InfiniteLine(angle=90, movable=False, pen=pg.mkPen(**CURSOR_PEN))
        self.cursor_line.setZValue(11)
        self.cursor_line.setVisible(False)
        self.addItem(self.cursor_line, ignoreBounds=True)
        self.playhead = pg.InfiniteLine(angle=90, movable=False, pen=pg.mkPen(**PLAYHEAD_PEN))
        self.playhead.setZValue(12)
        self.playhead.setVisible(False)
        self.addItem(self.playhead, ignoreBounds=True)

    def _schedule_redraw(self, *args: object) -> None:
        self._redraw_timer.start()

    def _closed(self) -> bool:
        """Whether the plot was closed (pyqtgraph drops its view box): nothing to draw into,
        though a queued redraw or decode result may still arrive."""
        item = getattr(self, "plotItem", None)
        return item is None or getattr(item, "vb", None) is None

    # -- time axis --------------------------------------------------------------------------

    @property
    def shown(self) -> ShownAudio | None:
        """What is drawn: the clip, else the pending file, else ``None``."""
        return self.clip if self.clip is not None else self.pending

    def _adopts(self, clip: Clip | None, changed_from: int | None) -> bool:
        """True when ``clip`` is the finished clip of the pending file shown (keep the drawing)."""
        pending = self.pending
        return (
            changed_from is None
            and clip is not None
            and pending is not None
            and pending.clip is clip
            and clip.samples.shape == pending.samples.shape
        )

    @property
    def duration(self) -> float:
        """Length of what is shown in seconds (0 without a clip)."""
        shown = self.shown
        return shown.duration if shown is not None else 0.0

    @property
    def min_width(self) -> float:
        """Narrowest visible range in seconds (about 20 samples)."""
        shown = self.shown
        return MIN_FRAMES_VISIBLE / shown.rate if shown is not None else 1e-3

    def view_range(self) -> tuple[float, float]:
        """The visible time range ``(t0, t1)`` in seconds."""
        (x0, x1), _ = self.view_box.viewRange()
        return float(x0), float(x1)

    def set_view_range(self, x0: float, x1: float) -> None:
        """Show ``[x0, x1]`` seconds (clamped to the clip)."""
        x0, x1 = zoom.clamp_range(x0, x1, self.duration, self.min_width)
        self.setXRange(x0, x1, padding=0.0)

    def zoom_by(self, factor: float, anchor: float | None = None) -> None:
        """Zoom in by ``factor`` (< 1 zooms out) about ``anchor`` seconds (default: centre)."""
        x0, x1 = zoom.zoom_range(self.view_range(), factor, anchor, self.duration, self.min_width)
        self.setXRange(x0, x1, padding=0.0)

    def scroll_by(self, fraction: float) -> None:
        """Scroll by ``fraction`` of the visible width (positive: later)."""
        x0, x1 = zoom.scroll_range(self.view_range(), fraction, self.duration)
        self.setXRange(x0, x1, padding=0.0)

    def zoom_to_fit(self) -> None:
        """Show the whole clip."""
        shown = self.shown
        if shown is not None:
            self.setXRange(*zoom.fit_range(shown.duration), padding=0.0)

    def visible_frames(self) -> tuple[int, int]:
        """The visible range ``[start, end)`` in frames, clamped to the clip."""
        shown = self.shown
        if shown is None:
            return 0, 0
        x0, x1 = self.view_range()
        start = min(max(0, int(x0 * shown.rate)), shown.frames)
        end = min(max(start, int(np.ceil(x1 * shown.rate))), shown.frames)
        return start, end

    def pixel_width(self) -> int:
        """Width of the plotting area in device pixels (at least 1)."""
        return max(1, int(self.view_box.width() * self.devicePixelRatioF()))

    def _set_time_limits(self, clip: ShownAudio) -> None:
        self.setLimits(xMin=0.0, xMax=max(clip.duration, zoom.MIN_DURATION))

    def show_pending(self, pending: PendingAudio) -> None:  # pragma: no cover - overridden
        """Draw ``pending`` until its clip arrives (``clip`` is ``None`` meanwhile)."""
        raise NotImplementedError

    # -- overlays ---------------------------------------------------------------------------

    def show_selection(self, span: tuple[float, float] | None) -> None:
        """Draw the selection ``(t0, t1)`` seconds, or hide it."""
        if span is None:
            self.region.setVisible(False)
            return
        self.region.setRegion(span)
        self.region.setVisible(True)

    def show_cursor(self, seconds: float | None) -> None:
        """Draw the cursor line at ``seconds``, or hide it."""
        self.cursor_line.setVisible(seconds is not None)
        if seconds is not None:
            self.cursor_line.setValue(seconds)

    def set_playhead(self, seconds: float | None) -> None:
        """Move the playhead to ``seconds`` (``None`` hides it)."""
        self.playhead.setVisible(seconds is not None)
        if seconds is not None:
            self.playhead.setValue(seconds)

    def redraw(self) -> None:  # pragma: no cover - overridden
        raise NotImplementedError


def _to_float(samples: np.ndarray, out: np.ndarray) -> None:
    """``out[...] = samples`` as float32 (int16: ``v / 32768``, see :mod:`audio.display`)."""
    if samples.dtype == np.int16:
        np.multiply(samples, PCM16_SCALE, out=out)
    else:
        out[...] = samples


def build_pyramids(samples: SampleArray) -> list[PeakPyramid]:
    """One :class:`PeakPyramid` per channel of ``samples [C, T]`` (views, no copies).

    ``samples`` may be float32 or int16 (16-bit PCM: the same envelopes as its float32 clip).
    Long multi-channel clips build their channels on parallel threads (numpy releases the GIL
    in the min/max reductions): an hour of 48 kHz stereo takes about half the time.
    """
    channels = samples.shape[0]
    if channels > 1 and samples.size >= PARALLEL_PYRAMID_SAMPLES:
        workers = min(channels, os.cpu_count() or 1)
        with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
            return list(pool.map(lambda c: PeakPyramid(samples[c : c + 1]), range(channels)))
    return [PeakPyramid(samples[c : c + 1]) for c in range(channels)]


class WaveformView(TimeView):
    """Min/max envelope of every channel, one lane per channel; the time ruler is on top."""

    def __init__(self) -> None:
        super().__init__()
        self.setLabel("left", "amplitude")
        self.showAxis("top")
        self.getAxis("bottom").setStyle(showValues=False)
        self.getAxis("bottom").setHeight(6)
        self.pyramids: list[PeakPyramid] = []  # one per channel
        self._grown: np.ndarray | None = None  # [C, capacity] once extend() is used
        self._curves: list[pg.PlotDataItem] = []
        self.setYRange(-1.05, 1.05, padding=0.0)
        self.placeholder = pg.TextItem(
            "Open a file (Ctrl+O) or drop one here", color=(170, 170, 170), anchor=(0.5, 0.5)
        )
        self.placeholder.setPos(5.0, 0.0)
        self.addItem(self.placeholder, ignoreBounds=True)

    def set_clip(self, clip: Clip | None, *, changed_from: int | None = None) -> None:
        """Show ``clip`` (``None``: nothing).

        ``changed_from``: the clip equals the one shown before up to that frame (an edit), so
        the peak pyramid is updated from there instead of rebuilt; the view range is kept.
        """
        previous = self.clip
        if self._adopts(clip, changed_from):
            assert clip is not None
            changed_from, previous = clip.frames, clip  # same samples: re-point, recompute none
        self.clip = clip
        self.pending = None
        self._grown = None
        self.placeholder.setVisible(clip is None)
        if clip is None:
            self.pyramids = []
            for curve in self._curves:
                self.removeItem(curve)
            self._curves = []
            return
        if (
            changed_from is not None
            and previous is not None
            and len(self.pyramids) == clip.channels
            and previous.channels == clip.channels
        ):
            start = min(changed_from, clip.frames)
            for c, pyramid in enumerate(self.pyramids):
                pyramid.update(clip.samples[c : c + 1], start)
        else:
            self.pyramids = build_pyramids(clip.samples)
        self._show(clip)

    def show_pending(self, pending: PendingAudio) -> None:
        """Draw ``pending`` (its prebuilt pyramids) until ``set_clip(pending.clip)``."""
        self.clip = None
        self.pending = pending
        self._grown = None
        self.placeholder.setVisible(False)
        self.pyramids = pending.pyramids
        self._show(pending)

    def _show(self, shown: ShownAudio) -> None:
        if len(self._curves) != shown.channels:
            for curve in self._curves:
                self.removeItem(curve)
            self._curves = []
            pen = pg.mkPen(WAVE_COLOR, width=1)
            for _ in range(shown.channels):
                curve = pg.PlotDataItem(pen=pen, connect="pairs", antialias=False)
                self.addItem(curve)
                self._curves.append(curve)
        lanes = shown.channels
        self.setYRange(-1.05 - (lanes - 1) * CHANNEL_GAP, 1.05, padding=0.0)
        self._set_time_limits(shown)
        self.setLimits(minXRange=MIN_FRAMES_VISIBLE / shown.rate)
        self._redraw_timer.start()

    def extend(self, samples: np.ndarray) -> None:
        """Append ``samples [C, n]`` to a growing clip: the pyramid grows incrementally."""
        if self.clip is None or not self.pyramids:
            raise RuntimeError("extend() needs a clip: call set_clip() first")
        new = np.asarray(samples, dtype=np.float32)
        if new.ndim == 1:
            new = new[np.newaxis, :]
        if new.shape[0] != self.clip.channels:
            raise ValueError(
                f"extend() got {new.shape[0]} channels, the clip has {self.clip.channels}"
            )
        old, total = self.clip.frames, self.clip.frames + new.shape[1]
        if self._grown is None or self._grown.shape[1] < total:  # amortised doubling
            grown = np.empty((new.shape[0], max(total, 2 * old, 1 << 16)), dtype=np.float32)
            grown[:, :old] = self.clip.samples
            self._grown = grown
        self._grown[:, old:total] = new
        for c, pyramid in enumerate(self.pyramids):
            pyramid.update(self._grown[c : c + 1, :total], old)
        self.clip = Clip(self._grown[:, :total], self.clip.rate)
        self.setLimits(xMax=max(self.clip.duration, 1e-3))

    def redraw(self) -> None:
        """Draw one vertical min–max segment per pixel column of the visible range."""
        self._redraw_timer.stop()  # an explicit redraw replaces a pending one
        shown = self.shown
        if shown is None or not self.pyramids or self._closed():
            return
        start, end = self.visible_frames()
        if end <= start:
            for curve in self._curves:
                curve.setData([], [])
            return
        columns = min(self.pixel_width(), end - start)
        edges = start + (np.arange(columns) * (end - start)) // columns
        t = np.repeat(edges / shown.rate, 2)
        for ch, (curve, pyramid) in enumerate(zip(self._curves, self.pyramids, strict=True)):
            mins, maxs = pyramid.envelope(start, end, columns)
            lo = np.minimum(mins[0], maxs[0] - 1e-4)  # keep flat columns visible
            y = np.empty(2 * columns, dtype=np.float32)
            y[0::2], y[1::2] = lo, maxs[0]
            curve.setData(t, y - ch * CHANNEL_GAP)


class SpectrogramView(TimeView):
    """dB spectrogram of the (downmixed) clip on a linear, log or mel frequency axis."""

    def __init__(self, scale: FrequencyScale = "log", colormap: str = "inferno") -> None:
        super().__init__()
        self.scale: FrequencyScale = scale
        self.colormap = colormap
        self.image = pg.ImageItem(axisOrder="row-major")
        self.image.setColorMap(pg.colormap.get(colormap))
        self.addItem(self.image)
        self._tilers: dict[int, SpectrogramTiler] = {}
        self.hideAxis("top")  # the waveform above carries the ruler
        self.setLabel("bottom", "time")
        self._set_axis_label()
        self.setYRange(0.0, 1.0, padding=0.0)
        self.getAxis("left").setTicks([[]])

    def _set_axis_label(self) -> None:
        self.setLabel("left", f"frequency ({self.scale})")

    def set_clip(self, clip: Clip | None, *, changed_from: int | None = None) -> None:
        """Show ``clip``; tilers are made lazily per zoom level (cheap: no copy of the samples).

        The clip of the pending file shown replaces it without clearing the image (its frames
        are the same values, recomputed from the float32 samples at the next redraw).
        """
        del changed_from  # tiles are recomputed for what is visible only
        self.clip = clip
        self.pending = None
        self._tilers = {}
        if clip is None:
            self.image.clear()
            return
        self._set_time_limits(clip)
        self._redraw_timer.start()

    def show_pending(self, pending: PendingAudio) -> None:
        """Draw ``pending`` (its 16-bit samples, converted per frame read) until its clip."""
        self.clip = None
        self.pending = pending
        self._tilers = {}
        self._set_time_limits(pending)
        self._redraw_timer.start()

    def set_scale(self, scale: str) -> None:
        """Switch the frequency axis: ``"linear"``, ``"log"`` or ``"mel"``."""
        if scale not in ("linear", "log", "mel"):
            raise ValueError(f"unknown frequency scale {scale!r}")
        self.scale = scale  # type: ignore[assignment]
        self._tilers = {}
        self._set_axis_label()
        self.redraw()

    def set_colormap(self, name: str) -> None:
        """Use pyqtgraph colormap ``name`` (see :data:`COLORMAPS`)."""
        self.image.setColorMap(pg.colormap.get(name))
        self.colormap = name

    def _tiler(self, hop: int) -> SpectrogramTiler:
        shown = self.shown
        assert shown is not None
        tiler = self._tilers.get(hop)
        if tiler is None:
            tiler = SpectrogramTiler(
                shown.samples,  # [C, T]: each tile downmixes only the samples it reads
                shown.rate,
                n_fft=N_FFT,
                hop=hop,
                scale=self.scale,
                n_bins=self._n_bins(),
                tile_frames=128,
                max_tiles=48,
            )
            self._tilers[hop] = tiler
        return tiler

    def hop_for(self, start: int, end: int) -> int:
        """Hop for drawing frames ``[start, end)``: :data:`BASE_HOP` doubled until there is at
        most one frame per pixel column."""
        hop = BASE_HOP
        while (end - start) / hop > self.pixel_width():
            hop *= 2
        return hop

    def _n_bins(self) -> int | None:
        return None if self.scale == "linear" else 256 if self.scale == "log" else 128

    def sparse_frames(self, hop: int, first: int, last: int) -> SpectrogramTile:
        """Frames ``[first, last)`` at ``hop > N_FFT``, reading only their windows.

        Equals ``SpectrogramTiler(samples, hop=hop, ...).render(first, last)`` (same windows,
        downmix, scaling and floor), but a tiler reads every sample between the frames; when
        zoomed out on an hour of audio that is the whole file per redraw, here it is
        ``(last - first) * N_FFT`` samples. The windows are laid out ``N_FFT`` apart (after one
        dummy frame) so that :func:`spectrogram_db` at ``hop = N_FFT`` analyses exactly them.
        """
        shown = self.shown
        assert shown is not None and hop > N_FFT
        samples, half = shown.samples, N_FFT // 2
        channels, total = samples.shape
        count = last - first
        starts = np.arange(first, last, dtype=np.int64) * hop - half  # each window's first sample
        # [C, F, N_FFT], zero outside the signal; int16 (a pending file) is converted to the
        # float32 values its clip will hold
        windows = np.zeros((channels, count, N_FFT), dtype=np.float32)
        inside = np.flatnonzero((starts >= 0) & (starts + N_FFT <= total))
        i0, i1 = (int(inside[0]), int(inside[-1]) + 1) if inside.size else (0, 0)
        if i1 > i0:  # the windows wholly inside: one strided view over the samples, no index
            step_c, step_t = samples.strides
            view = np.lib.stride_tricks.as_strided(
                samples[:, int(starts[i0]) :],
                shape=(channels, i1 - i0, N_FFT),
                strides=(step_c, hop * step_t, step_t),
                writeable=False,
            )
            _to_float(view, windows[:, i0:i1])
        for i in [*range(i0), *range(i1, count)]:  # the few that stick out at either end
            a, b = max(int(starts[i]), 0), min(int(starts[i]) + N_FFT, total)
            if b > a:
                _to_float(samples[:, a:b], windows[:, i, a - starts[i] : b - starts[i]])
        laid = np.zeros(half + count * N_FFT, dtype=np.float32)  # dummy frame, then F windows
        laid[half:] = mean_channels(windows).reshape(-1)
        spec = spectrogram_db(
            laid, shown.rate, n_fft=N_FFT, hop=N_FFT, scale=self.scale, n_bins=self._n_bins()
        )
        return SpectrogramTile(
            spec.values[:, 1 : count + 1], spec.freqs, first, hop, shown.rate, self.scale
        )

    def redraw(self) -> None:
        """Compute the visible frames at about one frame per pixel and show them."""
        self._redraw_timer.stop()  # an explicit redraw replaces a pending one
        shown = self.shown
        if shown is None or self._closed():
            return
        start, end = self.visible_frames()
        if end <= start:
            self.image.clear()
            return
        hop = self.hop_for(start, end)
        n_frames = shown.frames // hop + 1
        first, last = min(-(-start // hop), n_frames), min(-(-end // hop), n_frames)
        if last <= first:
            self.image.clear()
            return
        if hop > N_FFT:  # frames do not overlap: analyse only the samples they need
            tile = self.sparse_frames(hop, first, last)
        else:
            tile = self._tiler(hop).render(first, last)
        rows = tile.values.shape[0]
        self.image.setImage(tile.values, autoLevels=False, levels=(-80.0, 0.0))
        t0 = first * hop / shown.rate
        self.image.setRect(pg.QtCore.QRectF(t0, 0.0, (last - first) * hop / shown.rate, rows))
        self.setYRange(0, rows, padding=0.0)
        self._label_frequencies(tile.freqs)

    def _label_frequencies(self, freqs: np.ndarray) -> None:
        """Tick labels in Hz/kHz at a handful of rows (rows are not linear in Hz on log/mel)."""
        rows = len(freqs)
        picks = np.unique(np.linspace(0, rows - 1, 6).round().astype(int))
        ticks = [
            (float(i) + 0.5, f"{freqs[i] / 1000:.1f}k" if freqs[i] >= 1000 else f"{freqs[i]:.0f}")
            for i in picks
        ]
        self.getAxis("left").setTicks([ticks])
