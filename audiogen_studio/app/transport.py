"""Play a range of the open clip once or in a loop, and say where playback is (for the playhead).

Playing once goes through :func:`audio.devices.play_clip` (the project's playback path: a ring
buffer fed by a background thread for long clips, drained by PortAudio's callback). Looping
feeds the same kind of :class:`~audiogen_studio.audio.devices.Player` from a thread of ours that
writes the range again and again until :meth:`Transport.stop`, which joins it: no thread
outlives a stop. The range is handed over as a view of the clip's (immutable) samples, never
copied.
"""

from __future__ import annotations

import logging
import threading

from audiogen_studio.audio import devices
from audiogen_studio.audio.clip import Clip
from audiogen_studio.audio.ringbuffer import RingBuffer

log = logging.getLogger(__name__)

LOOP_RING_SECONDS = 0.5
_FEED_TIMEOUT = 0.05


class Transport:
    """One playback at a time over a frame range ``[start, end)`` of a clip."""

    def __init__(self) -> None:
        self._player: devices.Player | None = None
        self._start = 0
        self._length = 0
        self._loop = False
        self._stop = threading.Event()
        self._feeder: threading.Thread | None = None

    @property
    def playing(self) -> bool:
        """True from :meth:`play` until :meth:`stop` (a finished one-shot still counts until the
        window notices :meth:`finished` and stops it)."""
        return self._player is not None

    @property
    def looping(self) -> bool:
        """True while a loop plays."""
        return self._player is not None and self._loop

    @property
    def player(self) -> devices.Player | None:
        """The device player (for diagnostics and tests)."""
        return self._player

    def play(self, clip: Clip, start: int, end: int, *, loop: bool = False) -> None:
        """Play frames ``[start, end)`` of ``clip`` (stopping what plays now).

        Raises:
            AudioError: no output device, or it cannot play this format.
        """
        self.stop()
        start, end = max(0, int(start)), min(int(end), clip.frames)
        if end <= start:
            return
        segment = Clip(clip.samples[:, start:end], clip.rate)  # a view, not a copy
        self._start, self._length, self._loop = start, end - start, loop
        if not loop:
            self._player = devices.play_clip(segment, blocking=False, latency="low")
            return
        ring = RingBuffer.for_duration(LOOP_RING_SECONDS, clip.rate, clip.channels)
        player = devices.Player(
            rate=clip.rate, channels=clip.channels, buffer=ring, latency="low", rebuffer=True
        )
        self._stop.clear()
        samples = segment.samples

        def feed() -> None:
            pos = 0
            try:
                while not self._stop.is_set():
                    pos += ring.write_clip_samples(
                        samples[:, pos:], block=True, timeout=_FEED_TIMEOUT
                    )
                    if pos >= samples.shape[1]:
                        pos = 0
            finally:
                ring.close()

        self._feeder = threading.Thread(target=feed, name="loop-feeder", daemon=True)
        self._feeder.start()
        try:
            player.start()
        except BaseException:
            self._stop.set()
            self._feeder.join()
            self._feeder = None
            raise
        self._player = player

    def position(self) -> int | None:
        """The clip frame being heard now, or ``None`` when nothing plays."""
        player = self._player
        if player is None:
            return None
        played = int(player.position)
        if self._loop and self._length:
            played %= self._length
        return self._start + min(played, self._length)

    def finished(self) -> bool:
        """True once a one-shot playback has played its last frame (never for a loop)."""
        player = self._player
        return player is not None and not self._loop and player.finished.is_set()

    def stop(self) -> None:
        """Stop playback and join the loop feeder; idempotent."""
        player, self._player = self._player, None
        self._stop.set()
        if player is not None:
            player.stop()
        feeder, self._feeder = self._feeder, None
        if feeder is not None:
            feeder.join(timeout=2.0)
            if feeder.is_alive():  # pragma: no cover - the feeder wakes every 50 ms
                log.warning("loop feeder did not stop")
