"""Opening long audio files without freezing the window: shown at once, editable when converted.

Issue 5 asks that an hour of 48 kHz stereo opens and draws in at most 2 s. Decoding such a file
into its float32 :class:`~audiogen_studio.audio.clip.Clip` means first touching ~1.3 GB of new
memory, which on some machines alone takes 0.3–5 s (page faults, transparent-huge-page
compaction). Drawing does not need it: a plain 16-bit WAV is mapped without decoding
(:func:`audiogen_studio.audio.io.map_pcm16`, the OS serves it from the page cache), and the views
draw its min/max pyramids and spectrogram frames from the int16 samples -- exactly the values the
float32 clip will hold. So :func:`open_audio` returns at once with a :class:`BackgroundOpen` for a
long file, whose thread

1. builds the peak pyramids from the mapped int16 samples (one thread per channel) and shows
   them (a :class:`~audiogen_studio.app.views.PendingAudio`) in the views;
2. converts the samples to float32 in chunks (leaving a core to the GUI), reporting progress;
3. makes the :class:`Clip` and emits :attr:`BackgroundOpen.loaded`. The window then makes it
   the document; the views keep what they drew (same samples, no rebuild).

Editing and playback wait for step 3 (the window has no clip until then and says "loading").
Other long files (FLAC, MP3, float WAV, ...) are decoded by :func:`io.load` on the same thread
and shown when decoded. Short files load synchronously (:func:`open_audio` returns the clip).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Sequence
from pathlib import Path

from PySide6.QtCore import QObject, Qt, Signal, Slot

from audiogen_studio.app.views import PendingAudio, TimeView, build_pyramids, format_time
from audiogen_studio.audio import io
from audiogen_studio.audio.clip import Clip
from audiogen_studio.audio.errors import AudioError

log = logging.getLogger(__name__)

#: Files with at least this many samples (frames x channels; 32 MiB of float32, ~87 s of
#: 48 kHz stereo) open in the background; shorter ones load before :func:`open_audio` returns.
BACKGROUND_MIN_SAMPLES = 1 << 23


#: Started opens, until the GUI thread has heard their worker end: the last reference to a
#: QObject must not go away on the worker thread (its queued signals may still be delivered).
_RUNNING: set[BackgroundOpen] = set()


def conversion_workers() -> int:
    """Threads converting samples in the background: one core is left to the GUI (1 to 4)."""
    return max(1, min(4, (os.cpu_count() or 1) - 1))


class BackgroundOpen(QObject):
    """A long file being opened on a worker thread (see the module docstring).

    Made and started by :func:`open_audio`. Signals arrive in the GUI thread, in this order:
    ``shown()`` once the views draw the file, ``progress(fraction)`` while it is converted
    (0..1), then ``loaded(clip)`` or ``failed(message)``. After :meth:`cancel` none is emitted.

    Attributes:
        path: the file.
        rate, channels, frames: from its header.
        pending: what the views draw, from ``shown`` until ``loaded`` (then released, and the
            file unmapped, once the views hold the clip).
        clip: the finished clip (``None`` until ``loaded``).
        fraction: the share converted so far (0..1).
    """

    shown = Signal()
    progress = Signal(float)
    loaded = Signal(object)  # Clip
    failed = Signal(str)
    _preview_ready = Signal(object)  # PendingAudio, from the worker thread
    _converted = Signal(int, int)
    _done = Signal(object)
    _error = Signal(str)
    _ended = Signal()

    def __init__(
        self,
        path: Path,
        meta: io.AudioFileInfo,
        mapped: io.MappedPcm16 | None,
        views: Sequence[TimeView] = (),
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self.path = Path(path)
        self.rate, self.channels, self.frames = meta.rate, meta.channels, meta.frames
        self.views = tuple(views)
        self.pending: PendingAudio | None = None
        self.clip: Clip | None = None
        self.fraction = 0.0
        self.error: str | None = None
        self._mapped = mapped
        self._cancel = threading.Event()
        queued = Qt.ConnectionType.QueuedConnection  # emitted on the worker thread
        self._preview_ready.connect(self._on_preview, queued)
        self._converted.connect(self._on_converted, queued)
        self._done.connect(self._on_done, queued)
        self._error.connect(self._on_error, queued)
        self._ended.connect(self._on_ended, queued)
        self._thread = threading.Thread(
            target=self._run, name=f"audio-open {self.path.name}", daemon=True
        )

    # -- control ----------------------------------------------------------------------------

    def start(self) -> None:
        """Start the worker thread (once)."""
        _RUNNING.add(self)
        self._thread.start()

    def cancel(self, *, wait: bool = False, timeout: float = 10.0) -> None:
        """Stop: the conversion ends at its next chunk and no further signal is emitted.

        A file that is not a plain 16-bit WAV is decoded in one call, which runs to its end
        first (its result is dropped). The views keep what they show until given a clip.
        ``wait``: join the worker thread (at most ``timeout`` seconds).
        """
        self._cancel.set()
        self.pending = None
        if wait:
            self.wait(timeout)

    def wait(self, timeout: float | None = None) -> bool:
        """Join the worker thread; True when it has ended."""
        if self._thread.ident is not None:
            self._thread.join(timeout)
        return not self._thread.is_alive()

    @property
    def cancelled(self) -> bool:
        """True after :meth:`cancel`."""
        return self._cancel.is_set()

    @property
    def running(self) -> bool:
        """True while the worker thread runs."""
        return self._thread.is_alive()

    def status_text(self) -> str:
        """What the window's status line says while loading."""
        return (
            f"{self.path.name}: {self.rate} Hz, {self.channels} ch, "
            f"{format_time(self.frames / self.rate)} — loading {self.fraction:.0%} "
            "(editing and playback wait for it)"
        )

    # -- the worker thread ------------------------------------------------------------------

    def _run(self) -> None:
        try:
            mapped = self._mapped
            self._mapped = None  # the thread holds the only reference: unmapped when done
            if mapped is not None:
                samples = mapped.samples  # int16 [C, T], straight from the page cache
                pending = PendingAudio(samples, mapped.rate, build_pyramids(samples))
                if self._cancel.is_set():
                    return
                self._preview_ready.emit(pending)
                del pending, samples
                clip = mapped.to_clip(
                    workers=conversion_workers(),
                    progress=lambda done, total: self._converted.emit(done, total),
                    cancel=self._cancel,
                )
                del mapped
            else:  # not a plain 16-bit WAV: decode it all, then show it
                clip = io.load(self.path)
                if self._cancel.is_set():
                    return
                self._preview_ready.emit(
                    PendingAudio(clip.samples, clip.rate, build_pyramids(clip.samples))
                )
            if not self._cancel.is_set():
                self._done.emit(clip)
        except io.LoadCancelledError:
            return
        except AudioError as exc:
            self._error.emit(str(exc))
        except MemoryError:
            self._error.emit(f"{self.path}: not enough memory to load this file")
        except Exception as exc:  # the GUI must hear of any failure, never wait forever
            log.exception("opening %s failed", self.path)
            self._error.emit(f"{self.path}: {type(exc).__name__}: {exc}")
        finally:
            self._ended.emit()

    # -- relays in the GUI thread -----------------------------------------------------------

    @Slot(object)
    def _on_preview(self, pending: PendingAudio) -> None:
        if self.cancelled:
            return
        self.pending = pending
        for view in self.views:
            view.show_pending(pending)
            view.zoom_to_fit()
        self.shown.emit()

    @Slot(int, int)
    def _on_converted(self, done: int, total: int) -> None:
        if self.cancelled:
            return
        self.fraction = done / total if total else 1.0
        self.progress.emit(self.fraction)

    @Slot(object)
    def _on_done(self, clip: Clip) -> None:
        if self.cancelled:
            return
        if self.pending is not None:
            self.pending.clip = clip  # the views showing it keep their drawing on set_clip
        self.clip = clip
        self.fraction = 1.0
        self.loaded.emit(clip)
        self.pending = None  # the views have the clip now: unmap the file here

    @Slot()
    def _on_ended(self) -> None:
        _RUNNING.discard(self)

    @Slot(str)
    def _on_error(self, message: str) -> None:
        if self.cancelled:
            return
        self.error = message
        self.pending = None
        self.failed.emit(message)


def open_audio(
    path: str | Path,
    *,
    views: Sequence[TimeView] = (),
    parent: QObject | None = None,
    min_samples: int | None = None,
) -> Clip | BackgroundOpen:
    """Open an audio file: its :class:`Clip` for a short file, else a started
    :class:`BackgroundOpen` that shows it in ``views`` as soon as they can draw it.

    Args:
        path: the file.
        views: the views to show the file in while it loads (the window's waveform and
            spectrogram; they are zoomed to fit it).
        parent: a QObject owning the background open. Leave it ``None`` and keep the
            returned object only while it loads: it holds the clip, which should not outlive
            the document.
        min_samples: files with fewer samples (frames x channels) load synchronously
            (default :data:`BACKGROUND_MIN_SAMPLES`).

    Raises:
        AudioFileError: a missing, empty, truncated, corrupt or unsupported file, or one that
            :func:`io.load` would refuse (checked from the header before returning).
    """
    p = Path(path)
    mapped = io.map_pcm16(p)  # None unless a plain 16-bit WAV; raises for bad files
    meta = io.info(p)
    threshold = BACKGROUND_MIN_SAMPLES if min_samples is None else min_samples
    if meta.frames * meta.channels < threshold:
        return mapped.to_clip() if mapped is not None else io.load(p)
    job = BackgroundOpen(p, meta, mapped, views, parent)
    job.start()
    return job
