"""Audio core (no Qt): `Clip`, file I/O, pure edit ops, display DSP, ring buffer, devices.

Import :mod:`audiogen_studio.audio.devices` explicitly for PortAudio; nothing here loads it.
"""

from audiogen_studio.audio.clip import Clip
from audiogen_studio.audio.errors import AudioDeviceError, AudioError, AudioFileError, ClipError

__all__ = ["AudioDeviceError", "AudioError", "AudioFileError", "Clip", "ClipError"]
