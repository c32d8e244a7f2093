"""The editor's audio clipboard, shared by every window of the process, and paste conforming.

Cut and Copy put a :class:`~audiogen_studio.audio.clip.Clip` here (clips are immutable, so no
copy is needed); Paste reads it. :func:`conform` adapts a clip to the document it is pasted or
inserted into: resampled to the document's rate (band-limited, ``audio.io.resample``), mono
copied to every channel, several channels downmixed to mono; other channel mismatches are an
error the window reports.
"""

from __future__ import annotations

from collections.abc import Callable

from audiogen_studio.audio import io
from audiogen_studio.audio.clip import Clip
from audiogen_studio.audio.errors import ClipError

Listener = Callable[[], None]


class AudioClipboard:
    """Holds at most one clip; listeners are called after every change."""

    def __init__(self) -> None:
        self._clip: Clip | None = None
        self._listeners: list[Listener] = []

    @property
    def clip(self) -> Clip | None:
        """The clip last cut or copied, or ``None``."""
        return self._clip

    def set(self, clip: Clip | None) -> None:
        """Replace the content (``None`` empties it)."""
        self._clip = clip
        for listener in list(self._listeners):
            listener()

    def clear(self) -> None:
        """Empty the clipboard."""
        self.set(None)

    def subscribe(self, listener: Listener) -> None:
        """Call ``listener()`` after every change."""
        self._listeners.append(listener)

    def unsubscribe(self, listener: Listener) -> None:
        """Stop calling ``listener``."""
        if listener in self._listeners:
            self._listeners.remove(listener)


_CLIPBOARD = AudioClipboard()


def clipboard() -> AudioClipboard:
    """The process-wide audio clipboard."""
    return _CLIPBOARD


def conform(clip: Clip, rate: int, channels: int) -> Clip:
    """``clip`` at ``rate`` Hz with ``channels`` channels (see the module docstring).

    Raises:
        ClipError: a channel count that cannot be mapped (e.g. 3 channels into stereo).
    """
    if clip.rate != rate:
        clip = io.resample(clip, rate)
    if clip.channels == channels:
        return clip
    try:
        return io.to_channels(clip, channels)
    except ClipError as exc:
        raise ClipError(
            f"cannot paste {clip.channels}-channel audio into a {channels}-channel clip"
        ) from exc
