"""Waveform and spectrogram views (pyqtgraph), drawn from the audio layer's display DSP.

Both views draw only what is visible, at the widget's pixel resolution: the waveform asks the
:class:`~audiogen_studio.audio.display.PeakPyramid` for one min/max pair per pixel column, the
spectrogram asks a :class:`~audiogen_studio.audio.display.SpectrogramTiler` for the visible frames,
with a hop that doubles as the view zooms out so that an hour-long file costs about one screen of
FFTs. Redraws are coalesced by a short single-shot timer.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QTimer

from audiogen_studio.audio.clip import Clip
from audiogen_studio.audio.display import FrequencyScale, PeakPyramid, SpectrogramTiler

WAVE_COLOR = (127, 209, 255)
CHANNEL_GAP = 2.2  # vertical distance between channel lanes (each lane spans -1..1)
BASE_HOP = 256
N_FFT = 1024


class _TimeView(pg.PlotWidget):  # type: ignore[misc]
    """A plot with a time axis in seconds that redraws (debounced) when its x range changes."""

    def __init__(self) -> None:
        super().__init__()
        self.clip: Clip | None = None
        self.setMenuEnabled(False)
        self.showGrid(x=True, y=False, alpha=0.25)
        self.setLabel("bottom", "time", units="s")
        self.getAxis("left").setWidth(64)  # same width in both views keeps their time axes aligned
        self.getViewBox().setMouseEnabled(x=True, y=False)
        self._redraw_timer = QTimer(self)
        self._redraw_timer.setSingleShot(True)
        self._redraw_timer.setInterval(15)
        self._redraw_timer.timeout.connect(self.redraw)
        self.getViewBox().sigXRangeChanged.connect(lambda *_: self._redraw_timer.start())
        self.setLimits(xMin=0.0)
        self.setXRange(0.0, 10.0, padding=0.0)

    def visible_frames(self) -> tuple[int, int]:
        """The visible range ``[start, end)`` in frames, clamped to the clip."""
        if self.clip is None:
            return 0, 0
        (x0, x1), _ = self.getViewBox().viewRange()
        start = min(max(0, int(x0 * self.clip.rate)), self.clip.frames)
        end = min(max(start, int(np.ceil(x1 * self.clip.rate))), self.clip.frames)
        return start, end

    def pixel_width(self) -> int:
        """Width of the plotting area in device pixels (at least 1)."""
        return max(1, int(self.getViewBox().width() * self.devicePixelRatioF()))

    def zoom_to_fit(self) -> None:
        """Show the whole clip."""
        if self.clip is not None:
            self.setXRange(0.0, max(self.clip.duration, 1e-3), padding=0.0)

    def redraw(self) -> None:  # pragma: no cover - overridden
        raise NotImplementedError


class WaveformView(_TimeView):
    """Min/max envelope of every channel, one lane per channel, plus a playhead line."""

    def __init__(self) -> None:
        super().__init__()
        self.setLabel("left", "amplitude")
        self.pyramid: PeakPyramid | None = None
        self._curves: list[pg.PlotDataItem] = []
        self.playhead = pg.InfiniteLine(angle=90, movable=False, pen=pg.mkPen("#ffb454", width=2))
        self.playhead.setVisible(False)
        self.addItem(self.playhead, ignoreBounds=True)
        self.setYRange(-1.05, 1.05, padding=0.0)
        self.placeholder = pg.TextItem(
            "Open a file (Ctrl+O) or drop one here", color=(170, 170, 170), anchor=(0.5, 0.5)
        )
        self.placeholder.setPos(5.0, 0.0)
        self.addItem(self.placeholder, ignoreBounds=True)

    def set_clip(self, clip: Clip) -> None:
        """Show ``clip``: builds its peak pyramid once."""
        self.clip = clip
        self.placeholder.setVisible(False)
        self.pyramid = PeakPyramid(clip.samples)
        for curve in self._curves:
            self.removeItem(curve)
        self._curves = []
        pen = pg.mkPen(WAVE_COLOR, width=1)
        for _ in range(clip.channels):
            curve = pg.PlotDataItem(pen=pen, connect="pairs", antialias=False)
            self.addItem(curve)
            self._curves.append(curve)
        lanes = clip.channels
        self.setYRange(-1.05 - (lanes - 1) * CHANNEL_GAP, 1.05, padding=0.0)
        self.setLimits(xMin=0.0, xMax=max(clip.duration, 1e-3), minXRange=20 / clip.rate)

    def extend(self, samples: np.ndarray) -> None:
        """Append ``samples [C, n]`` to a growing clip: the pyramid grows incrementally."""
        if self.clip is None or self.pyramid is None:
            raise RuntimeError("extend() needs a clip: call set_clip() first")
        self.pyramid.append(samples)
        self.clip = Clip(self.pyramid.samples, self.clip.rate)
        self.setLimits(xMax=max(self.clip.duration, 1e-3))

    def redraw(self) -> None:
        """Draw one vertical min–max segment per pixel column of the visible range."""
        if self.clip is None or self.pyramid is None:
            return
        start, end = self.visible_frames()
        if end <= start:
            for curve in self._curves:
                curve.setData([], [])
            return
        columns = min(self.pixel_width(), end - start)
        mins, maxs = self.pyramid.envelope(start, end, columns)
        edges = start + (np.arange(columns) * (end - start)) // columns
        t = np.repeat(edges / self.clip.rate, 2)
        for ch, curve in enumerate(self._curves):
            lo = np.minimum(mins[ch], maxs[ch] - 1e-4)  # keep flat columns visible
            y = np.empty(2 * columns, dtype=np.float32)
            y[0::2], y[1::2] = lo, maxs[ch]
            curve.setData(t, y - ch * CHANNEL_GAP)

    def set_playhead(self, seconds: float | None) -> None:
        """Move the playhead to ``seconds`` (``None`` hides it)."""
        self.playhead.setVisible(seconds is not None)
        if seconds is not None:
            self.playhead.setValue(seconds)


class SpectrogramView(_TimeView):
    """dB spectrogram of the (downmixed) clip on a linear, log or mel frequency axis."""

    def __init__(self, scale: FrequencyScale = "log") -> None:
        super().__init__()
        self.scale: FrequencyScale = scale
        self.image = pg.ImageItem(axisOrder="row-major")
        self.image.setColorMap(pg.colormap.get("inferno"))
        self.addItem(self.image)
        self._tilers: dict[int, SpectrogramTiler] = {}
        self.getViewBox().setMouseEnabled(x=True, y=False)
        self._set_axis_label()
        self.setYRange(0.0, 1.0, padding=0.0)
        self.getAxis("left").setTicks([[]])

    def _set_axis_label(self) -> None:
        self.setLabel("left", f"frequency ({self.scale})")

    def set_clip(self, clip: Clip) -> None:
        """Show ``clip``; tilers are made lazily per zoom level."""
        self.clip = clip
        self._tilers = {}
        self.setLimits(xMin=0.0, xMax=max(clip.duration, 1e-3))

    def set_scale(self, scale: str) -> None:
        """Switch the frequency axis: ``"linear"``, ``"log"`` or ``"mel"``."""
        if scale not in ("linear", "log", "mel"):
            raise ValueError(f"unknown frequency scale {scale!r}")
        self.scale = scale  # type: ignore[assignment]
        self._tilers = {}
        self._set_axis_label()
        self.redraw()

    def _tiler(self, hop: int) -> SpectrogramTiler:
        assert self.clip is not None
        tiler = self._tilers.get(hop)
        if tiler is None:
            mono = self.clip.samples.mean(axis=0, dtype=np.float32)
            n_bins = None if self.scale == "linear" else 256 if self.scale == "log" else 128
            tiler = SpectrogramTiler(
                mono,
                self.clip.rate,
                n_fft=N_FFT,
                hop=hop,
                scale=self.scale,
                n_bins=n_bins,
                tile_frames=128,
                max_tiles=48,
            )
            self._tilers[hop] = tiler
        return tiler

    def redraw(self) -> None:
        """Compute the visible frames at about one frame per pixel and show them."""
        if self.clip is None:
            return
        start, end = self.visible_frames()
        if end <= start:
            self.image.clear()
            return
        hop = BASE_HOP
        while (end - start) / hop > 2 * self.pixel_width():
            hop *= 2
        tiler = self._tiler(hop)
        first, last = tiler.frames_for(start, end)
        if last <= first:
            self.image.clear()
            return
        tile = tiler.render(first, last)
        rows = tile.values.shape[0]
        self.image.setImage(tile.values, autoLevels=False, levels=(-80.0, 0.0))
        t0 = first * hop / self.clip.rate
        self.image.setRect(pg.QtCore.QRectF(t0, 0.0, (last - first) * hop / self.clip.rate, rows))
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
