"""Audio devices through PortAudio (sounddevice): device listing, `Player`, `Recorder`.

This is the only module of the project that imports :mod:`sounddevice`, and it does so lazily
inside functions, so ``import audiogen_studio.audio.devices`` works on a machine without the
PortAudio library; the first call that needs PortAudio raises :class:`AudioDeviceError` saying
why (``"PortAudio library not found (install libportaudio2): ..."``). Every device failure — no
library, no device, an invalid device, a stream that will not open — is an
:class:`AudioDeviceError` whose message says which.

Real-time rules (DESIGN.md §3, friture): the stream callbacks only copy between the PortAudio
buffer and a preallocated :class:`~audiogen_studio.audio.ringbuffer.RingBuffer`, bump a few
counters, and never allocate array data, log, block, raise or touch a GUI. Everything else
(level meters, assembling a recording, feeding a clip) runs on ordinary threads.

Arrays: PortAudio buffers are frames-major ``[frames, C]`` float32 (the ring's layout); clips
handed in and out are channels-first ``[C, T]`` float32, as everywhere else in the project.

On Linux without a sound card, ``scripts/virtual-audio.sh`` starts a PulseAudio null sink and
sine source that PortAudio reaches through ALSA's pulse plugin (the ``pulse``/``default``
devices). PortAudio enumerates devices once, at initialisation: call :func:`rescan` after a
sound server appears.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from audiogen_studio.audio.clip import MAX_CHANNELS, MAX_RATE, MIN_RATE, Clip
from audiogen_studio.audio.errors import AudioDeviceError
from audiogen_studio.audio.ringbuffer import RingBuffer

_log = logging.getLogger(__name__)

Device = int | str | None
"""A device: PortAudio index, a (sub)string of its name, or ``None`` for the default."""
Latency = float | Literal["low", "high"]
LevelCallback = Callable[[npt.NDArray[np.float32], npt.NDArray[np.float32]], None]

_SERVER_HINT = (
    "is a sound server running? on a headless Linux machine scripts/virtual-audio.sh starts a "
    "virtual one; call rescan() after it appears"
)
_FEED_SECONDS = 5.0  # play_clip: ring size; longer clips are fed by a thread

# Players and recorders whose stream is open: rescan() must not terminate PortAudio under them.
_open_streams: weakref.WeakSet[Player | Recorder] = weakref.WeakSet()


def _sd() -> Any:
    """Import sounddevice (loads PortAudio) or raise :class:`AudioDeviceError` saying why."""
    try:
        import sounddevice
    except OSError as exc:
        raise AudioDeviceError(
            f"PortAudio library not found (install libportaudio2): {exc}"
        ) from exc
    except ImportError as exc:
        raise AudioDeviceError(
            f"the sounddevice package is not installed (pip install sounddevice): {exc}"
        ) from exc
    except Exception as exc:  # Pa_Initialize failed inside the import
        raise AudioDeviceError(f"PortAudio failed to initialise: {exc}") from exc
    return sounddevice


# -- devices ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class DeviceInfo:
    """One PortAudio device as listed by :func:`list_devices`."""

    index: int
    name: str
    hostapi: str
    max_input_channels: int
    max_output_channels: int
    default_samplerate: float
    is_default_input: bool
    is_default_output: bool

    def __str__(self) -> str:
        marks = (" [default in]" if self.is_default_input else "") + (
            " [default out]" if self.is_default_output else ""
        )
        return (
            f"{self.index}: {self.name} ({self.hostapi}, {self.max_input_channels} in, "
            f"{self.max_output_channels} out, {self.default_samplerate:g} Hz){marks}"
        )


def list_devices() -> list[DeviceInfo]:
    """All devices PortAudio knows (may be empty).

    Raises:
        AudioDeviceError: PortAudio is missing or the query fails.
    """
    sd = _sd()
    try:
        raw = sd.query_devices()
        hostapis = sd.query_hostapis()
        default_in, default_out = _default_indices(sd)
    except sd.PortAudioError as exc:
        raise AudioDeviceError(f"cannot list audio devices: {exc}") from exc
    devices = []
    for info in raw:
        index = int(info["index"])
        devices.append(
            DeviceInfo(
                index=index,
                name=str(info["name"]),
                hostapi=str(hostapis[int(info["hostapi"])]["name"]),
                max_input_channels=int(info["max_input_channels"]),
                max_output_channels=int(info["max_output_channels"]),
                default_samplerate=float(info["default_samplerate"]),
                is_default_input=index == default_in,
                is_default_output=index == default_out,
            )
        )
    return devices


def default_output_device() -> DeviceInfo:
    """The default output device.

    Raises:
        AudioDeviceError: no output device (``"no output device: ..."``) or PortAudio missing.
    """
    return _default_device("output")


def default_input_device() -> DeviceInfo:
    """The default input device.

    Raises:
        AudioDeviceError: no input device (``"no input device: ..."``) or PortAudio missing.
    """
    return _default_device("input")


def rescan() -> None:
    """Re-initialise PortAudio so that devices that appeared since import are listed.

    Raises:
        AudioDeviceError: a player or recorder still has an open stream, or PortAudio fails.
    """
    if len(_open_streams):
        raise AudioDeviceError(
            f"cannot rescan devices while {len(_open_streams)} stream(s) are open; stop them first"
        )
    sd = _sd()
    try:
        sd._terminate()
        sd._initialize()
    except sd.PortAudioError as exc:
        raise AudioDeviceError(f"PortAudio failed to re-initialise: {exc}") from exc


def _default_indices(sd: Any) -> tuple[int, int]:
    pair = sd.default.device
    return int(pair[0]), int(pair[1])


def _default_device(kind: Literal["input", "output"]) -> DeviceInfo:
    devices = list_devices()
    for d in devices:
        if d.is_default_input if kind == "input" else d.is_default_output:
            return d
    raise AudioDeviceError(
        f"no {kind} device: PortAudio has no default {kind} device "
        f"({_available(devices, kind)}); {_SERVER_HINT}"
    )


def _available(devices: list[DeviceInfo], kind: str) -> str:
    names = [
        f"{d.index} {d.name!r}"
        for d in devices
        if (d.max_input_channels if kind == "input" else d.max_output_channels) > 0
    ]
    return f"{kind} devices: {', '.join(names)}" if names else f"it lists no {kind} devices"


def _resolve(sd: Any, device: Device, kind: Literal["input", "output"]) -> int:
    """PortAudio index of ``device`` for ``kind``, or :class:`AudioDeviceError`."""
    if device is None:
        default_in, default_out = _default_indices(sd)
        index = default_in if kind == "input" else default_out
        if index < 0:
            raise AudioDeviceError(
                f"no {kind} device: PortAudio has no default {kind} device "
                f"({_available(list_devices(), kind)}); {_SERVER_HINT}"
            )
        return index
    if isinstance(device, bool) or not isinstance(device, int | str):
        raise AudioDeviceError(f"invalid {kind} device {device!r}: give an index, a name or None")
    if isinstance(device, int) and device < 0:
        raise AudioDeviceError(f"invalid {kind} device index {device}: indices start at 0")
    try:
        info = sd.query_devices(device, kind)
    except (ValueError, sd.PortAudioError) as exc:
        raise AudioDeviceError(
            f"no {kind} device {device!r}: {exc} ({_available(list_devices(), kind)})"
        ) from exc
    return int(info["index"])


def _check_format(rate: int, channels: int) -> None:
    if isinstance(rate, bool) or not isinstance(rate, int | np.integer):
        raise ValueError(f"rate must be an integer, got {rate!r}")
    if not MIN_RATE <= rate <= MAX_RATE:
        raise ValueError(f"rate {rate} Hz is outside {MIN_RATE}–{MAX_RATE} Hz")
    if isinstance(channels, bool) or not isinstance(channels, int | np.integer):
        raise ValueError(f"channels must be an integer, got {channels!r}")
    if not 1 <= channels <= MAX_CHANNELS:
        raise ValueError(f"channels must be 1–{MAX_CHANNELS}, got {channels}")


def _device_name(sd: Any, index: int) -> str:
    try:
        return f"{index} {sd.query_devices(index)['name']!r}"
    except Exception:  # only for messages
        return str(index)


# -- playback ---------------------------------------------------------------------------------


class Player:
    """Plays frames from a :class:`RingBuffer` through a PortAudio output stream (callback mode).

    A producer (another thread) writes into :attr:`buffer` and calls ``buffer.close()`` when it
    is done. The stream outputs silence until ``preroll_frames`` are buffered (or the producer
    has finished), then plays. When the ring runs dry before ``close()`` the ring zero-fills and
    counts an underrun; with ``rebuffer=True`` playback then goes back to buffering (silence)
    until ``preroll_frames`` are available again, so a slow producer gives clean pauses instead
    of stutter. :attr:`finished` is set once the producer finished and every frame was handed to
    the device.

    Args:
        rate: sample rate in Hz.
        channels: output channels C.
        device: PortAudio index, name (substring), or ``None`` for the default output.
        buffer: the ring to play from (``[capacity, C]``); created with ``buffer_seconds`` when
            ``None``.
        buffer_seconds: size of the ring created when ``buffer`` is ``None``.
        blocksize: frames per callback (0: let PortAudio choose, the most robust).
        latency: seconds, or ``"low"`` / ``"high"`` (PortAudio's device defaults).
        preroll_frames: frames to buffer before playback starts; default 0.1 s (capped at the
            ring's capacity).
        rebuffer: after an underrun, buffer ``preroll_frames`` again before resuming.

    Raises:
        ValueError: invalid rate, channels, sizes, or a ring with another channel count.
    """

    def __init__(
        self,
        *,
        rate: int,
        channels: int,
        device: Device = None,
        buffer: RingBuffer | None = None,
        buffer_seconds: float = 2.0,
        blocksize: int = 0,
        latency: Latency = "high",
        preroll_frames: int | None = None,
        rebuffer: bool = True,
    ) -> None:
        _check_format(rate, channels)
        if buffer is None:
            buffer = RingBuffer.for_duration(buffer_seconds, int(rate), int(channels))
        elif buffer.channels != channels:
            raise ValueError(f"buffer has {buffer.channels} channels, the player {channels}")
        if preroll_frames is None:
            preroll_frames = min(buffer.capacity, round(0.1 * rate))
        if not 0 <= preroll_frames <= buffer.capacity:
            raise ValueError(
                f"preroll_frames must be 0–{buffer.capacity} (the ring's capacity), "
                f"got {preroll_frames}"
            )
        if blocksize < 0:
            raise ValueError(f"blocksize must be ≥ 0, got {blocksize}")
        self.rate = int(rate)
        self.channels = int(channels)
        self.device = device
        self.blocksize = int(blocksize)
        self.requested_latency = latency
        self.preroll_frames = int(preroll_frames)
        self.rebuffer = rebuffer
        self._ring = buffer
        self._stream: Any = None
        self._device_index: int | None = None
        self._finished = threading.Event()
        self._stream_ended = threading.Event()
        self._stop_requested = threading.Event()
        self._reset_stats()

    def _reset_stats(self) -> None:
        # Written by the audio callback only (plain int/float stores), read by anyone.
        self._buffering = True
        self._finished_flag = False
        self._callback_count = 0
        self._frames_requested = 0
        self._stream_underflows = 0
        self._rebuffers = 0
        self._callback_errors = 0
        self._first_callback_time = 0.0
        self._last_callback_time = 0.0

    # -- the real-time part ---------------------------------------------------------------------

    def _callback(self, outdata: Any, frames: int, time_info: Any, status: Any) -> None:
        # Audio thread: counters and one ring copy; no array allocation, logging, blocking,
        # raising. The Event.set() happens once per stream, at the very end.
        try:
            now = time.monotonic()
            if self._callback_count == 0:
                self._first_callback_time = now
            self._last_callback_time = now
            self._callback_count += 1
            self._frames_requested += frames
            if status and status.output_underflow:
                self._stream_underflows += 1
            ring = self._ring
            if self._buffering:
                if ring.closed or ring.available() >= self.preroll_frames:
                    self._buffering = False
                else:
                    outdata.fill(0.0)
                    return
            got = ring.read_into(outdata)
            if got < frames:
                if ring.closed:
                    if not self._finished_flag and ring.drained:
                        self._finished_flag = True
                        self._finished.set()
                elif self.rebuffer:
                    self._buffering = True
                    self._rebuffers += 1
        except Exception:
            self._callback_errors += 1
            outdata.fill(0.0)

    def _stream_finished(self) -> None:
        self._stream_ended.set()

    # -- control ------------------------------------------------------------------------------

    def start(self) -> None:
        """Open the output stream and start it; a no-op while already playing.

        Raises:
            AudioDeviceError: PortAudio missing, no/invalid device, or the stream failed.
        """
        if self.active:
            return
        sd = _sd()
        if self._stream is None:
            index = _resolve(sd, self.device, "output")
            self._reset_stats()
            self._finished.clear()
            self._stream_ended.clear()
            self._stop_requested.clear()
            if self._ring.drained:  # an empty, closed ring: nothing to play
                self._finished_flag = True
                self._finished.set()
            try:
                self._stream = sd.OutputStream(
                    samplerate=self.rate,
                    channels=self.channels,
                    dtype="float32",
                    device=index,
                    blocksize=self.blocksize,
                    latency=self.requested_latency,
                    callback=self._callback,
                    finished_callback=self._stream_finished,
                )
            except (ValueError, sd.PortAudioError) as exc:
                raise AudioDeviceError(
                    f"cannot open output stream on device {_device_name(sd, index)} "
                    f"({self.rate} Hz, {self.channels} ch): {exc}"
                ) from exc
            self._device_index = index
            _open_streams.add(self)
        try:
            self._stream.start()
        except sd.PortAudioError as exc:
            self._close_stream()
            raise AudioDeviceError(f"cannot start output stream: {exc}") from exc
        _log.debug(
            "playing on %s, %d Hz, %d ch, latency %.1f ms",
            _device_name(sd, self._device_index or 0),
            self.rate,
            self.channels,
            1e3 * float(self._stream.latency),
        )

    def stop(self) -> None:
        """Stop and close the stream. Frames already handed to the device still play out; what
        is left in the ring is kept (``start()`` again resumes with it). Idempotent."""
        self._stop_requested.set()
        if self._stream is None:
            return
        try:
            self._stream.stop()
        except Exception as exc:
            _log.warning("stopping the output stream failed: %s", exc)
        finally:
            self._close_stream()

    def _close_stream(self) -> None:
        stream, self._stream = self._stream, None
        _open_streams.discard(self)
        if stream is not None:
            try:
                stream.close()
            except Exception as exc:
                _log.warning("closing the output stream failed: %s", exc)

    def wait(self, timeout: float | None = None) -> bool:
        """Block until :attr:`finished` (True), or until ``timeout`` seconds pass or the stream
        stops or was never started (False)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            step = 0.05 if deadline is None else min(0.05, deadline - time.monotonic())
            if step <= 0:
                return self._finished.is_set()
            if self._finished.wait(step):
                return True
            if self._stream_ended.is_set() or self._stream is None:
                return self._finished.is_set()

    def __enter__(self) -> Player:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- state --------------------------------------------------------------------------------

    @property
    def buffer(self) -> RingBuffer:
        """The ring this player reads (``[capacity, C]`` float32)."""
        return self._ring

    @property
    def position(self) -> int:
        """Frames played so far: the ring's ``read_pos`` (pre-roll/underrun silence excluded)."""
        return self._ring.read_pos

    @property
    def finished(self) -> threading.Event:
        """Set once the producer closed the ring and every frame was handed to the device."""
        return self._finished

    @property
    def active(self) -> bool:
        """True while the stream is open and running."""
        return self._stream is not None and bool(self._stream.active)

    @property
    def buffering(self) -> bool:
        """True while outputting silence waiting for pre-roll (at start or after an underrun)."""
        return self._buffering

    @property
    def underruns(self) -> int:
        """Callbacks whose data ran short before the producer finished (from the ring)."""
        return self._ring.underruns

    @property
    def underrun_frames(self) -> int:
        """Zero frames inserted by underruns (from the ring)."""
        return self._ring.underrun_frames

    @property
    def rebuffers(self) -> int:
        """Times playback went back to buffering after an underrun."""
        return self._rebuffers

    @property
    def stream_underflows(self) -> int:
        """Callbacks where PortAudio itself reported an output underflow (device-level xrun)."""
        return self._stream_underflows

    @property
    def callback_count(self) -> int:
        """Callbacks run since :meth:`start`."""
        return self._callback_count

    @property
    def frames_requested(self) -> int:
        """Frames PortAudio asked for since :meth:`start` (played plus any silence)."""
        return self._frames_requested

    @property
    def callback_errors(self) -> int:
        """Exceptions swallowed by the callback (should stay 0; each gave a block of silence)."""
        return self._callback_errors

    @property
    def callback_span(self) -> float:
        """Seconds between the first and the latest callback (monotonic clock)."""
        return self._last_callback_time - self._first_callback_time

    @property
    def latency(self) -> float | None:
        """The open stream's output latency in seconds (``None`` when closed)."""
        return None if self._stream is None else float(self._stream.latency)

    def __repr__(self) -> str:
        return (
            f"Player(rate={self.rate}, channels={self.channels}, device={self.device!r}, "
            f"position={self.position}, underruns={self.underruns}, "
            f"finished={self._finished.is_set()})"
        )


def play_clip(
    clip: Clip, *, device: Device = None, blocking: bool = True, latency: Latency = "high"
) -> Player:
    """Play ``clip`` (``[C, T]``) on ``device``; with ``blocking`` return once it has played.

    Clips up to 5 s go into the ring at once; longer ones are fed by a background thread.
    Returns the (stopped, when blocking) :class:`Player`; call ``stop()`` to end a non-blocking
    playback early.

    Raises:
        AudioDeviceError: the device cannot play, or playback stalled (blocking only).
    """
    rate, channels = clip.rate, clip.channels
    ring = RingBuffer(max(1, min(clip.frames, round(_FEED_SECONDS * rate))), channels)
    player = Player(rate=rate, channels=channels, device=device, buffer=ring, latency=latency)
    samples = clip.samples
    written = ring.write_clip_samples(samples)
    if written == clip.frames:
        ring.close()
    else:

        def feed(done: int) -> None:
            while done < clip.frames and not player._stop_requested.is_set():
                done += ring.write_clip_samples(samples[:, done:], block=True, timeout=0.1)
            ring.close()

        threading.Thread(target=feed, args=(written,), name="play_clip-feeder", daemon=True).start()
    player.start()
    if blocking:
        try:
            ok = player.wait(clip.duration + 5.0)
        finally:
            player.stop()
        if not ok:
            raise AudioDeviceError(
                f"playback stalled: {player.position} of {clip.frames} frames played "
                f"after {clip.duration + 5.0:.1f} s"
            )
    return player


# -- recording --------------------------------------------------------------------------------


class Recorder:
    """Records from a PortAudio input stream (callback mode) into a growing clip.

    The audio callback only copies each block into a preallocated :class:`RingBuffer`
    (``buffer_seconds`` long) and never blocks; a worker thread drains the ring about every
    ``level_interval`` seconds into a list of chunks and, if given, calls
    ``level_callback(peak [C], rms [C])`` (float32 per channel, over the frames drained since
    the last call) **from that worker thread**, at most ``1 / level_interval`` times a second
    (~30 Hz) and only when new frames arrived. Keep it cheap and thread-safe (in Qt: emit a
    signal). If the worker falls more than ``buffer_seconds`` behind, the callback drops frames
    and counts an overflow instead of blocking.

    Args:
        rate: sample rate in Hz.
        channels: input channels C.
        device: PortAudio index, name (substring), or ``None`` for the default input.
        blocksize: frames per callback (0: PortAudio chooses).
        latency: ``"high"`` by default, the robust choice for input (DESIGN.md §6).
        level_callback: meter callback, see above.
        level_interval: seconds between worker wake-ups / level callbacks.
        buffer_seconds: ring size between callback and worker. Some sources deliver in large
            bursts (PulseAudio's module-sine-source: 2 s blocks, all at once), so keep it
            comfortably above the source's latency.
    """

    def __init__(
        self,
        *,
        rate: int,
        channels: int = 1,
        device: Device = None,
        blocksize: int = 0,
        latency: Latency = "high",
        level_callback: LevelCallback | None = None,
        level_interval: float = 1 / 30,
        buffer_seconds: float = 5.0,
    ) -> None:
        _check_format(rate, channels)
        if not level_interval > 0:
            raise ValueError(f"level_interval must be positive, got {level_interval!r}")
        if blocksize < 0:
            raise ValueError(f"blocksize must be ≥ 0, got {blocksize}")
        self.rate = int(rate)
        self.channels = int(channels)
        self.device = device
        self.blocksize = int(blocksize)
        self.requested_latency = latency
        self.level_callback = level_callback
        self.level_interval = float(level_interval)
        self._ring = RingBuffer.for_duration(buffer_seconds, self.rate, self.channels)
        self._stream: Any = None
        self._worker: threading.Thread | None = None
        self._stop_worker = threading.Event()
        self._chunks: list[npt.NDArray[np.float32]] = []
        self._device_name = ""
        self._overflows = 0
        self._dropped_frames = 0
        self._callback_count = 0
        self._callback_errors = 0
        self._level_errors = 0

    def _callback(self, indata: Any, frames: int, time_info: Any, status: Any) -> None:
        # Audio thread: one ring copy and counters; never blocks, logs or raises.
        try:
            self._callback_count += 1
            overflow = bool(status) and bool(status.input_overflow)
            written = self._ring.write(indata)
            if written < frames:
                self._dropped_frames += frames - written
                overflow = True
            if overflow:
                self._overflows += 1
        except Exception:
            self._callback_errors += 1

    def _run(self) -> None:
        # Worker thread: drain the ring, keep chunks, report levels.
        while True:
            stopping = self._stop_worker.wait(self.level_interval)
            chunk = self._ring.read()
            if chunk.shape[0]:
                self._chunks.append(chunk)
                if self.level_callback is not None:
                    peak = np.max(np.abs(chunk), axis=0)
                    rms = np.sqrt(np.mean(np.square(chunk, dtype=np.float64), axis=0))
                    try:
                        self.level_callback(peak.astype(np.float32), rms.astype(np.float32))
                    except Exception:
                        self._level_errors += 1
                        if self._level_errors == 1:
                            _log.exception("level_callback failed (further failures not logged)")
            if stopping:
                return

    def start(self) -> None:
        """Start a new recording (discarding any previous one).

        Raises:
            AudioDeviceError: PortAudio missing, no/invalid device, or the stream failed.
            RuntimeError: already recording.
        """
        if self._stream is not None:
            raise RuntimeError("already recording; call stop() first")
        sd = _sd()
        index = _resolve(sd, self.device, "input")
        self._ring.reset()
        self._chunks = []
        self._overflows = self._dropped_frames = 0
        self._callback_count = self._callback_errors = self._level_errors = 0
        try:
            stream = sd.InputStream(
                samplerate=self.rate,
                channels=self.channels,
                dtype="float32",
                device=index,
                blocksize=self.blocksize,
                latency=self.requested_latency,
                callback=self._callback,
            )
        except (ValueError, sd.PortAudioError) as exc:
            raise AudioDeviceError(
                f"cannot open input stream on device {_device_name(sd, index)} "
                f"({self.rate} Hz, {self.channels} ch): {exc}"
            ) from exc
        self._device_name = _device_name(sd, index)
        self._stream = stream
        _open_streams.add(self)
        self._stop_worker.clear()
        self._worker = threading.Thread(target=self._run, name="Recorder-worker", daemon=True)
        self._worker.start()
        try:
            stream.start()
        except sd.PortAudioError as exc:
            self._shutdown()
            raise AudioDeviceError(f"cannot start input stream: {exc}") from exc

    def stop(self) -> Clip:
        """Stop recording and return everything recorded as a clip ``[C, T]`` at ``rate``.

        Raises:
            RuntimeError: not recording.
        """
        if self._stream is None:
            raise RuntimeError("not recording; call start() first")
        self._shutdown()
        if self._chunks:
            frames = np.concatenate(self._chunks, axis=0)  # [T, C]
        else:
            frames = np.zeros((0, self.channels), dtype=np.float32)
        self._chunks = []
        return Clip(
            np.ascontiguousarray(frames.T),
            self.rate,
            {
                "source": "recording",
                "device": self._device_name,
                "overflows": self._overflows,
                "dropped_frames": self._dropped_frames,
            },
        )

    def _shutdown(self) -> None:
        stream, self._stream = self._stream, None
        if stream is not None:
            try:
                stream.stop()  # waits for the last callback
            except Exception as exc:
                _log.warning("stopping the input stream failed: %s", exc)
            try:
                stream.close()
            except Exception as exc:
                _log.warning("closing the input stream failed: %s", exc)
        _open_streams.discard(self)
        self._stop_worker.set()
        if self._worker is not None:
            self._worker.join()
            self._worker = None

    def __enter__(self) -> Recorder:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._stream is not None:
            self._shutdown()

    @property
    def recording(self) -> bool:
        """True between :meth:`start` and :meth:`stop`."""
        return self._stream is not None

    @property
    def frames_recorded(self) -> int:
        """Frames captured since :meth:`start` (dropped frames excluded)."""
        return self._ring.write_pos

    @property
    def overflows(self) -> int:
        """Callbacks that reported an input overflow or had to drop frames."""
        return self._overflows

    @property
    def dropped_frames(self) -> int:
        """Frames lost because the worker fell ``buffer_seconds`` behind."""
        return self._dropped_frames

    @property
    def callback_count(self) -> int:
        """Callbacks run since :meth:`start`."""
        return self._callback_count

    @property
    def callback_errors(self) -> int:
        """Exceptions swallowed by the callback (should stay 0)."""
        return self._callback_errors

    @property
    def latency(self) -> float | None:
        """The open stream's input latency in seconds (``None`` when closed)."""
        return None if self._stream is None else float(self._stream.latency)

    def __repr__(self) -> str:
        return (
            f"Recorder(rate={self.rate}, channels={self.channels}, device={self.device!r}, "
            f"frames_recorded={self.frames_recorded}, overflows={self.overflows})"
        )
