"""A live input level meter: peak and RMS per channel in dBFS, polled from the GUI thread.

The recorder reports levels from its own worker thread (``Recorder(level_callback=...)``, about
30 times a second, see :mod:`audiogen_studio.audio.devices`). That thread must never touch Qt, so
it only calls :meth:`LevelStore.update`, which keeps the loudest peak and the latest RMS since the
last read under a lock. :class:`LevelMeter` polls the store from a ~30 Hz :class:`QTimer` in the
GUI thread and paints horizontal bars (friture's pattern, DESIGN.md §9):

- the RMS level as a solid bar, the peak level as a lighter bar beyond it;
- a peak-hold tick that stays for :data:`HOLD_SECONDS` and then falls at :data:`FALL_DB_PER_S`;
- a red clip mark once a peak reached :data:`CLIP_DBFS` (cleared by :meth:`LevelMeter.reset`).

Levels are plain dBFS: ``20·log10(|x|)`` for the peak, ``20·log10(rms)`` for the RMS (a full-scale
sine reads 0 dBFS peak and -3.01 dBFS RMS), clamped to ``[FLOOR_DB, +∞)``.
"""

from __future__ import annotations

import threading
import time

import numpy as np
import numpy.typing as npt
from PySide6.QtCore import QRectF, QSize, QTimer
from PySide6.QtGui import QColor, QPainter, QPaintEvent
from PySide6.QtWidgets import QSizePolicy, QWidget

FLOOR_DB = -60.0
CLIP_DBFS = -0.1
HOLD_SECONDS = 1.0
FALL_DB_PER_S = 20.0
POLL_MS = 33

_RMS_COLOR = QColor(80, 200, 120)
_PEAK_COLOR = QColor(80, 200, 120, 110)
_WARN_COLOR = QColor(230, 200, 60)
_CLIP_COLOR = QColor(230, 60, 60)
_BACKGROUND = QColor(30, 30, 34)
_TICK_COLOR = QColor(200, 200, 200)


def to_dbfs(level: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """Linear amplitude (peak or RMS, ≥ 0) to dBFS, clamped below at :data:`FLOOR_DB`."""
    x = np.asarray(level, dtype=np.float64)
    with np.errstate(divide="ignore"):
        db = 20.0 * np.log10(np.maximum(x, 0.0))
    return np.maximum(db, FLOOR_DB)


class LevelStore:
    """The latest levels, written by any thread, read (and reset) by the GUI thread.

    :meth:`update` keeps the per-channel maximum of the peaks and the latest RMS since the last
    :meth:`take`, so a peak that arrives between two GUI polls is never lost.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._peak: npt.NDArray[np.float32] | None = None
        self._rms: npt.NDArray[np.float32] | None = None
        self.updates = 0

    def update(self, peak: npt.ArrayLike, rms: npt.ArrayLike) -> None:
        """Record ``peak [C]`` and ``rms [C]`` (linear, float); safe from any thread."""
        p = np.asarray(peak, dtype=np.float32).reshape(-1).copy()
        r = np.asarray(rms, dtype=np.float32).reshape(-1).copy()
        with self._lock:
            if self._peak is not None and self._peak.shape == p.shape:
                np.maximum(p, self._peak, out=p)
            self._peak, self._rms = p, r
            self.updates += 1

    def take(self) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]] | None:
        """``(peak [C], rms [C])`` since the last call, or ``None`` when nothing new arrived."""
        with self._lock:
            if self._peak is None or self._rms is None:
                return None
            out = (self._peak, self._rms)
            self._peak = self._rms = None
            return out

    def clear(self) -> None:
        """Forget pending levels."""
        with self._lock:
            self._peak = self._rms = None


class LevelMeter(QWidget):
    """Horizontal peak + RMS bars, one per channel, with peak hold and a clip mark.

    Call :meth:`start` to poll :attr:`store` every :data:`POLL_MS` ms and :meth:`stop` to stop;
    :meth:`set_levels` draws given levels directly (the poll calls it).

    Attributes:
        store: where the levels come from (see :class:`LevelStore`).
        peak_db, rms_db: the displayed levels ``[C]`` in dBFS (the peak falls with ballistics).
        hold_db: the peak-hold level per channel.
        clipped: per channel, whether a peak reached :data:`CLIP_DBFS` since :meth:`reset`.
    """

    def __init__(self, channels: int = 1, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.store = LevelStore()
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.setToolTip("Input level: RMS (solid) and peak (light) in dBFS; red = clipping")
        self._timer = QTimer(self)
        self._timer.setInterval(POLL_MS)
        self._timer.timeout.connect(self.poll)
        self.peak_db: npt.NDArray[np.float64] = np.full(1, FLOOR_DB)
        self.rms_db: npt.NDArray[np.float64] = np.full(1, FLOOR_DB)
        self.hold_db: npt.NDArray[np.float64] = np.full(1, FLOOR_DB)
        self.clipped: npt.NDArray[np.bool_] = np.zeros(1, dtype=bool)
        self.reset(channels)

    # -- state ------------------------------------------------------------------------------

    def reset(self, channels: int | None = None) -> None:
        """Back to silence (optionally with another channel count); clears holds and clips."""
        c = max(1, int(channels if channels is not None else len(self.peak_db)))
        self.peak_db = np.full(c, FLOOR_DB)
        self.rms_db = np.full(c, FLOOR_DB)
        self.hold_db = np.full(c, FLOOR_DB)
        self.clipped = np.zeros(c, dtype=bool)
        self._hold_time = np.zeros(c)
        self._last_update = time.monotonic()
        self.store.clear()
        self.updateGeometry()
        self.update()

    @property
    def channels(self) -> int:
        """Channels shown."""
        return len(self.peak_db)

    @property
    def polling(self) -> bool:
        """True while the poll timer runs."""
        return self._timer.isActive()

    def start(self) -> None:
        """Poll :attr:`store` at ~30 Hz."""
        self._last_update = time.monotonic()
        self._timer.start()

    def stop(self) -> None:
        """Stop polling (the bars keep their last state until :meth:`reset`)."""
        self._timer.stop()

    def poll(self) -> None:
        """Read the store (GUI thread) and redraw; silence decays the bars."""
        levels = self.store.take()
        if levels is None:
            self.set_levels(None, None)
        else:
            self.set_levels(*levels)

    def set_levels(
        self, peak: npt.ArrayLike | None, rms: npt.ArrayLike | None, now: float | None = None
    ) -> None:
        """Show linear ``peak [C]`` and ``rms [C]``; ``None`` lets the bars fall (no new data)."""
        now = time.monotonic() if now is None else now
        dt = max(0.0, now - self._last_update)
        self._last_update = now
        fallen = np.maximum(self.peak_db - FALL_DB_PER_S * dt, FLOOR_DB)
        if peak is None or rms is None:
            self.peak_db = fallen
            self.rms_db = np.maximum(self.rms_db - FALL_DB_PER_S * dt, FLOOR_DB)
        else:
            p, r = to_dbfs(peak).reshape(-1), to_dbfs(rms).reshape(-1)
            if p.shape != self.peak_db.shape:
                self.reset(p.size)
                fallen = self.peak_db
            self.peak_db = np.maximum(p, fallen)  # instant attack, slow release
            self.rms_db = r
            self.clipped |= p >= CLIP_DBFS
        rising = self.peak_db >= self.hold_db
        self.hold_db = np.where(rising, self.peak_db, self.hold_db)
        self._hold_time = np.where(rising, now, self._hold_time)
        falling = now - self._hold_time > HOLD_SECONDS
        released = np.maximum(np.maximum(self.hold_db - FALL_DB_PER_S * dt, self.peak_db), FLOOR_DB)
        self.hold_db = np.where(falling, released, self.hold_db)
        self.update()

    def text(self) -> str:
        """The levels as text, e.g. ``"peak -6.0 dBFS · RMS -9.0 dBFS"`` (loudest channel)."""
        return (
            f"peak {float(self.peak_db.max()):.1f} dBFS · RMS {float(self.rms_db.max()):.1f} dBFS"
        )

    # -- painting ---------------------------------------------------------------------------

    def sizeHint(self) -> QSize:
        return QSize(220, 10 + 12 * self.channels)

    def minimumSizeHint(self) -> QSize:
        return QSize(80, 4 + 6 * self.channels)

    @staticmethod
    def _fraction(db: float) -> float:
        return float(np.clip((db - FLOOR_DB) / -FLOOR_DB, 0.0, 1.0))

    def paintEvent(self, event: QPaintEvent) -> None:
        painter = QPainter(self)
        try:
            rect = QRectF(self.rect())
            painter.fillRect(rect, _BACKGROUND)
            c = self.channels
            gap = 2.0
            lane = max(1.0, (rect.height() - gap * (c + 1)) / c)
            clip_w = 6.0
            width = max(1.0, rect.width() - clip_w - 3 * gap)
            for ch in range(c):
                y = gap + ch * (lane + gap)
                peak_w = width * self._fraction(self.peak_db[ch])
                rms_w = width * self._fraction(self.rms_db[ch])
                painter.fillRect(QRectF(gap, y, peak_w, lane), _PEAK_COLOR)
                color = _WARN_COLOR if self.rms_db[ch] > -6.0 else _RMS_COLOR
                painter.fillRect(QRectF(gap, y, rms_w, lane), color)
                hold_x = gap + width * self._fraction(self.hold_db[ch])
                if self.hold_db[ch] > FLOOR_DB:
                    painter.fillRect(QRectF(hold_x - 1, y, 2, lane), _TICK_COLOR)
                mark = _CLIP_COLOR if self.clipped[ch] else _BACKGROUND.lighter(160)
                painter.fillRect(QRectF(rect.width() - clip_w - gap, y, clip_w, lane), mark)
            painter.setPen(QColor(90, 90, 96))
            for db in (-48, -36, -24, -12, -6, 0):  # scale ticks
                x = gap + width * self._fraction(db)
                painter.drawLine(int(x), int(rect.height() - 3), int(x), int(rect.height()))
        finally:
            painter.end()
