"""Clip validation and immutability."""

from __future__ import annotations

import numpy as np
import pytest

from audiogen_studio.audio.clip import Clip
from audiogen_studio.audio.errors import ClipError


def test_mono_array_becomes_one_channel() -> None:
    clip = Clip(np.zeros(10, np.float32), 16000)
    assert (clip.channels, clip.frames, clip.duration) == (1, 10, 10 / 16000)


@pytest.mark.parametrize(
    ("samples", "rate", "message"),
    [
        (np.zeros((9, 4), np.float32), 16000, "9 channels"),
        (np.zeros((0, 4), np.float32), 16000, "0 channels"),
        (np.zeros((1, 4), np.float32), 7999, "outside"),
        (np.zeros((1, 4), np.float32), 192001, "outside"),
        (np.zeros((1, 4), np.float32), 16000.5, "integer"),
        (np.zeros((1, 2, 3), np.float32), 16000, "shape"),
        (np.array([[0.0, np.nan]], np.float32), 16000, "non-finite.*frame 1"),
        (np.array([[0.0], [np.inf]], np.float32), 16000, "channel 1"),
        (np.array([["a"]]), 16000, "numeric"),
    ],
)
def test_invalid_clips(samples: np.ndarray, rate: float, message: str) -> None:
    with pytest.raises(ClipError, match=message):
        Clip(samples, rate)  # type: ignore[arg-type]


def test_samples_are_read_only_and_input_untouched() -> None:
    x = np.ones((2, 5), np.float32)
    clip = Clip(x, 8000)
    with pytest.raises(ValueError):
        clip.samples[0, 0] = 2.0
    x[0, 0] = 3.0  # the caller's own array stays writable
    assert x.flags.writeable


def test_integer_input_is_scaled() -> None:
    clip = Clip(np.array([[-32768, 0, 16384]], np.int16), 8000)
    np.testing.assert_allclose(clip.samples, [[-1.0, 0.0, 0.5]])
    u8 = Clip(np.array([[0, 128, 255]], np.uint8), 8000)
    np.testing.assert_allclose(u8.samples, [[-1.0, 0.0, 127 / 128]])


def test_properties_and_replace() -> None:
    clip = Clip(np.array([[0.1, -0.5, 0.25]], np.float32), 8000, {"name": "x"})
    assert clip.peak == pytest.approx(0.5)
    assert not clip.is_silent()
    assert Clip.silence(0.5, 8000, channels=2).is_silent()
    other = clip.replace(rate=16000)
    assert other.rate == 16000 and other.metadata["name"] == "x"
    assert clip.equals(clip.replace()) and not clip.equals(other)
    assert clip.seconds_to_frames(10.0) == 3
    with pytest.raises(TypeError):
        clip.metadata["name"] = "y"  # type: ignore[index]
