"""Errors of the audio layer: one clear message that names the file or device and the problem."""

from __future__ import annotations

from pathlib import Path


class AudioError(Exception):
    """Base class of the audio layer's errors."""


class AudioFileError(AudioError):
    """A file could not be read or written: missing, empty, truncated, corrupt, unsupported, NaN.

    The message always names the file and the problem, e.g.
    ``"take.wav: truncated WAV: header promises 48000 frames, data holds 1200"``.
    """

    def __init__(self, path: str | Path | None, problem: str) -> None:
        self.path = None if path is None else Path(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}" if self.path is not None else problem)


class AudioDeviceError(AudioError):
    """PortAudio is missing, no device exists, or a stream could not be opened; says why."""


class ClipError(AudioError, ValueError):
    """A clip's samples or rate are invalid (non-finite values, channel or rate out of range)."""
