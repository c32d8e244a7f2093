"""`RingBuffer`: a preallocated single-producer / single-consumer float32 ring of audio frames.

The bridge between a thread that produces audio (a generator, a file reader, an input stream's
callback) and one that consumes it (an output stream's callback, a writer thread). Pure numpy:
no device constant or sounddevice import leaks in here; :mod:`audiogen_studio.audio.devices`
builds players and recorders on top of it.

Layout and conventions
----------------------
Storage is one preallocated array ``[capacity, C]`` float32, **frames-major**: one row per
frame, which is exactly the ``[frames, channels]`` buffer a PortAudio callback receives, so a
callback copies rows with at most two ``np.copyto`` calls (before and after the wrap) and needs
no transpose. Accordingly :meth:`RingBuffer.write` and :meth:`RingBuffer.read_into` take
frames-major ``[n, C]`` arrays. The rest of the project uses channels-first ``[C, T]`` clips:
:meth:`RingBuffer.write_clip_samples` takes those (it copies through a transposed view).

Positions are absolute: ``write_pos`` and ``read_pos`` count frames since creation (or the last
:meth:`RingBuffer.reset`) and only ever increase, so a GUI can turn them into a playhead and a
"buffered up to" mark without ever seeing a wrapped index. ``available() = write_pos - read_pos``
frames are readable and ``space() = capacity - available()`` writable.

Thread safety
-------------
Exactly one producer thread (calls ``write*``/``close``) and one consumer thread (calls
``read_into``/``read``) may run at once; any other thread may read the counters. The data copy
happens outside any lock: the producer only writes rows in ``[write_pos, read_pos + capacity)``,
which the consumer does not touch, and the consumer only reads rows in ``[read_pos, write_pos)``,
which the producer does not touch. Each side then *publishes* its new position. A small lock
guards only those counter snapshots and updates (a few attribute loads and stores, never a copy
or a wait), which makes the publication ordering explicit and also correct on a free-threaded
Python; with the GIL it never contends for more than a few bytecodes. The consumer takes the
``closed`` flag and ``write_pos`` in one snapshot, so "the producer is done" always means that
every written frame is visible.

Real-time use: :meth:`RingBuffer.read_into` and :meth:`RingBuffer.write` allocate no array data
(only small view objects), never block (unless ``write(..., block=True)`` is asked for, which a
callback must not do), never log and never sleep, so they are safe in a PortAudio callback.

Underruns
---------
:meth:`RingBuffer.read_into` always fills the whole output buffer. When fewer frames are
readable it fills the missing tail with zeros; if the producer has not called
:meth:`RingBuffer.close` yet that is an *underrun* (``underruns`` counts such short reads,
``underrun_frames`` the zero frames they inserted). After ``close()`` a short read is the end of
the stream, not an underrun.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float32]

MAX_CHANNELS = 64
_DEFAULT_POLL_S = 0.002  # sleep between retries of a blocking write


class RingBufferClosedError(RuntimeError):
    """A write after :meth:`RingBuffer.close`: the producer already declared the stream done."""


class RingBuffer:
    """SPSC ring of ``capacity`` frames × ``channels`` float32, storage ``[capacity, C]``.

    Args:
        capacity: frames the ring holds (≥ 1).
        channels: channels per frame (1–64).

    Raises:
        TypeError: ``capacity`` or ``channels`` is not an integer.
        ValueError: either is out of range.
    """

    __slots__ = (
        "_buf",
        "_capacity",
        "_channels",
        "_closed",
        "_lock",
        "_read_pos",
        "_underrun_frames",
        "_underruns",
        "_write_pos",
    )

    def __init__(self, capacity: int, channels: int) -> None:
        capacity = _as_int("capacity", capacity)
        channels = _as_int("channels", channels)
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1 frame, got {capacity}")
        if not 1 <= channels <= MAX_CHANNELS:
            raise ValueError(f"channels must be 1–{MAX_CHANNELS}, got {channels}")
        self._capacity = capacity
        self._channels = channels
        self._buf: FloatArray = np.zeros((capacity, channels), dtype=np.float32)
        self._lock = threading.Lock()
        self._write_pos = 0
        self._read_pos = 0
        self._closed = False
        self._underruns = 0
        self._underrun_frames = 0

    @classmethod
    def for_duration(cls, seconds: float, rate: int, channels: int) -> RingBuffer:
        """A ring holding ``round(seconds * rate)`` frames (at least one)."""
        if not seconds > 0:
            raise ValueError(f"seconds must be positive, got {seconds!r}")
        rate = _as_int("rate", rate)
        if rate < 1:
            raise ValueError(f"rate must be positive, got {rate}")
        return cls(max(1, round(seconds * rate)), channels)

    # -- state -------------------------------------------------------------------------------

    @property
    def capacity(self) -> int:
        """Frames the ring can hold."""
        return self._capacity

    @property
    def channels(self) -> int:
        """Channels per frame C."""
        return self._channels

    @property
    def write_pos(self) -> int:
        """Frames written since creation or :meth:`reset` (monotonically increasing)."""
        return self._write_pos

    @property
    def read_pos(self) -> int:
        """Frames read since creation or :meth:`reset` (monotonically increasing)."""
        return self._read_pos

    @property
    def underruns(self) -> int:
        """Number of :meth:`read_into` calls that came up short before :meth:`close`."""
        return self._underruns

    @property
    def underrun_frames(self) -> int:
        """Zero frames :meth:`read_into` inserted for underruns (end-of-stream fill excluded)."""
        return self._underrun_frames

    @property
    def closed(self) -> bool:
        """True once the producer called :meth:`close` (no more data will come)."""
        return self._closed

    @property
    def finished(self) -> bool:
        """Alias of :attr:`closed`: the producer is done."""
        return self._closed

    @property
    def drained(self) -> bool:
        """True when the producer is done and the consumer has read every frame."""
        with self._lock:
            return self._closed and self._write_pos == self._read_pos

    def available(self) -> int:
        """Frames readable now (``write_pos - read_pos``)."""
        with self._lock:
            return self._write_pos - self._read_pos

    def space(self) -> int:
        """Frames writable now without overwriting unread data."""
        with self._lock:
            return self._capacity - (self._write_pos - self._read_pos)

    # -- producer ----------------------------------------------------------------------------

    def write(
        self,
        frames: npt.NDArray[Any],
        *,
        block: bool = False,
        timeout: float | None = None,
    ) -> int:
        """Append ``frames [n, C]`` (frames-major; a 1-D array is accepted for mono rings).

        Never overwrites unread data. Without ``block`` it writes the prefix that fits and
        returns its length (possibly 0). With ``block=True`` it waits (polling every 2 ms) until
        all ``n`` frames are written, the ring is closed, or ``timeout`` seconds pass
        (``None``: no limit), and returns how many it wrote. Float arrays of any precision are
        converted to float32 during the copy.

        Raises:
            RingBufferClosedError: after :meth:`close`.
            TypeError: ``frames`` is not a float array.
            ValueError: wrong shape or channel count.
        """
        src = self._check_frames(frames)
        n = int(src.shape[0])
        if self._closed:
            raise RingBufferClosedError("write after close(): the producer already finished")
        written = self._write_some(src)
        if not block or written == n:
            return written
        if timeout is not None and timeout < 0:
            raise ValueError(f"timeout must be non-negative or None, got {timeout!r}")
        deadline = None if timeout is None else time.monotonic() + timeout
        while written < n and not self._closed:
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                time.sleep(min(_DEFAULT_POLL_S, left))
            else:
                time.sleep(_DEFAULT_POLL_S)
            written += self._write_some(src[written:])
        return written

    def write_clip_samples(
        self,
        samples: npt.NDArray[Any],
        *,
        block: bool = False,
        timeout: float | None = None,
    ) -> int:
        """Append channels-first ``samples [C, n]`` (the project's clip layout); see :meth:`write`.

        A 1-D array is taken as mono.
        """
        arr = np.asarray(samples)
        if arr.ndim == 2:
            arr = arr.T  # [C, n] -> [n, C] view, no copy
        elif arr.ndim != 1:
            raise ValueError(f"samples must be [channels, frames], got shape {arr.shape}")
        return self.write(arr, block=block, timeout=timeout)

    def close(self) -> None:
        """Declare the stream finished: no more writes; short reads are end-of-stream from now."""
        with self._lock:
            self._closed = True

    def _write_some(self, src: npt.NDArray[Any]) -> int:
        with self._lock:
            w = self._write_pos
            free = self._capacity - (w - self._read_pos)
        n = min(int(src.shape[0]), free)
        if n <= 0:
            return 0
        start = w % self._capacity
        first = min(n, self._capacity - start)
        np.copyto(self._buf[start : start + first], src[:first], casting="same_kind")
        if first < n:
            np.copyto(self._buf[: n - first], src[first:n], casting="same_kind")
        with self._lock:
            self._write_pos = w + n
        return n

    def _check_frames(self, frames: npt.NDArray[Any]) -> npt.NDArray[Any]:
        arr = np.asarray(frames)
        if arr.ndim == 1:
            if self._channels != 1:
                raise ValueError(
                    f"a 1-D array is only accepted by a mono ring; this ring has "
                    f"{self._channels} channels and takes [frames, {self._channels}]"
                )
            arr = arr[:, np.newaxis]
        if arr.ndim != 2:
            raise ValueError(f"frames must be [frames, channels], got shape {arr.shape}")
        if arr.shape[1] != self._channels:
            raise ValueError(
                f"frames must be [frames, {self._channels}] (frames-major), got shape "
                f"{arr.shape}; channels-first [C, T] clips go through write_clip_samples()"
            )
        if not np.issubdtype(arr.dtype, np.floating):
            raise TypeError(f"frames must be a float array, got dtype {arr.dtype}")
        return arr

    # -- consumer ----------------------------------------------------------------------------

    def read_into(self, out: npt.NDArray[np.float32]) -> int:
        """Fill ``out [n, C]`` float32 with the next ``n`` frames; return how many were real.

        Copies ``k = min(n, available())`` frames and zero-fills ``out[k:]``. A short read
        before :meth:`close` counts one underrun and ``n - k`` underrun frames; after ``close``
        it is the end of the stream and counts nothing. Allocates no array data, never blocks:
        safe in an audio callback.

        Raises:
            ValueError / TypeError: ``out`` is not a writable float32 ``[n, C]`` array.
        """
        if not isinstance(out, np.ndarray) or out.dtype != np.float32:
            raise TypeError("out must be a float32 numpy array [frames, channels]")
        if out.ndim != 2 or out.shape[1] != self._channels:
            raise ValueError(f"out must be [frames, {self._channels}], got shape {out.shape}")
        n = int(out.shape[0])
        with self._lock:
            closed = self._closed  # flag and position in one snapshot: see module docstring
            w = self._write_pos
            r = self._read_pos
        k = min(n, w - r)
        if k > 0:
            start = r % self._capacity
            first = min(k, self._capacity - start)
            np.copyto(out[:first], self._buf[start : start + first])
            if first < k:
                out[first:k] = self._buf[: k - first]
        if k < n:
            out[k:] = 0.0
        with self._lock:
            self._read_pos = r + k
            if k < n and not closed:
                self._underruns += 1
                self._underrun_frames += n - k
        return k

    def read(self, max_frames: int | None = None) -> FloatArray:
        """Take up to ``max_frames`` readable frames (all when ``None``) as a new ``[k, C]`` array.

        For non-real-time consumers (it allocates): no zero fill, no underrun counting.
        """
        with self._lock:
            w = self._write_pos
            r = self._read_pos
        k = w - r
        if max_frames is not None:
            max_frames = _as_int("max_frames", max_frames)
            if max_frames < 0:
                raise ValueError(f"max_frames must be non-negative, got {max_frames}")
            k = min(k, max_frames)
        out = np.empty((k, self._channels), dtype=np.float32)
        if k > 0:
            start = r % self._capacity
            first = min(k, self._capacity - start)
            out[:first] = self._buf[start : start + first]
            if first < k:
                out[first:] = self._buf[: k - first]
            with self._lock:
                self._read_pos = r + k
        return out

    # -- both --------------------------------------------------------------------------------

    def reset(self) -> None:
        """Empty the ring: positions, underrun counters and the closed flag back to zero/False.

        Only while neither the producer nor the consumer is using the ring (e.g. the stream is
        stopped); the storage is kept, not reallocated.
        """
        with self._lock:
            self._write_pos = 0
            self._read_pos = 0
            self._closed = False
            self._underruns = 0
            self._underrun_frames = 0

    def __repr__(self) -> str:
        return (
            f"RingBuffer(capacity={self._capacity}, channels={self._channels}, "
            f"write_pos={self._write_pos}, read_pos={self._read_pos}, closed={self._closed}, "
            f"underruns={self._underruns})"
        )


def _as_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    return int(value)
