"""Test-wide setup.

- Qt runs offscreen; with ``AUDIOGEN_BLOCK_QT=1`` Qt cannot be imported at all, which proves the
  audio, models, engine, training and CLI layers work without PySide6 (DESIGN.md §2, as napari).
- Real PortAudio streams against the virtual PulseAudio device (DESIGN.md §6): the session
  fixture ``virtual_audio`` runs ``scripts/virtual-audio.sh`` (idempotent: it starts a server when
  none answers, otherwise only adds the null sink and sine source to the running one), points this
  process at them (``PULSE_SERVER``/``PULSE_SINK``/``PULSE_SOURCE``, which ALSA's pulse plugin
  honours), re-scans PortAudio and picks the ALSA ``pulse`` device. When that is impossible the
  device tests are skipped with the reason, or fail when ``AUDIOGEN_REQUIRE_AUDIO_DEVICE=1`` (CI).
  The server is stopped at the end of the session only if this session started it.
"""

from __future__ import annotations

import importlib.abc
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

_BLOCKED = ("PySide6", "pyqtgraph", "shiboken6")


class _QtBlocker(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname: str, path: object, target: object = None) -> None:
        if fullname.split(".")[0] in _BLOCKED:
            raise ImportError(f"{fullname} is blocked: this test run proves the core needs no Qt")
        return None


if os.environ.get("AUDIOGEN_BLOCK_QT") == "1":
    for name in list(sys.modules):
        if name.split(".")[0] in _BLOCKED:
            del sys.modules[name]
    sys.meta_path.insert(0, _QtBlocker())


from audiogen_studio.audio import devices  # noqa: E402  (after the Qt blocker is installed)
from audiogen_studio.audio.errors import AudioDeviceError  # noqa: E402

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "virtual-audio.sh"
SINK = "agstudio_null"
SOURCE = "agstudio_sine"
SINE_HZ = 440.0
RATE = 48_000


@dataclass(frozen=True)
class VirtualAudio:
    """Where the virtual device is: PortAudio indices and PulseAudio names."""

    output_device: int
    input_device: int
    sink: str
    monitor: str
    source: str
    sine_hz: float
    rate: int
    env: dict[str, str]


#: the bundles shipped in models/ (tests/engine/test_shipped_models.py checks them)
SHIPPED_MODELS = Path(__file__).resolve().parents[1] / "models"


@pytest.fixture(autouse=True)
def no_shipped_models(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Tests see only the bundles they make: the shipped models/ folder is hidden (a test that
    wants it deletes ``AUDIOGEN_SHIPPED_MODELS``)."""
    monkeypatch.setenv("AUDIOGEN_SHIPPED_MODELS", str(tmp_path_factory.getbasetemp() / "none"))


@pytest.fixture(autouse=True)
def private_take_library(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test records takes (CLI, app) in its own library, never the user's."""
    root = tmp_path / "take-library"
    monkeypatch.setenv("AUDIOGEN_LIBRARY", str(root))
    return root


def unavailable(reason: str) -> NoReturn:
    """Skip, or fail when the run requires a device (AUDIOGEN_REQUIRE_AUDIO_DEVICE=1)."""
    if os.environ.get("AUDIOGEN_REQUIRE_AUDIO_DEVICE") == "1":
        pytest.fail(f"audio device required but unavailable: {reason}", pytrace=False)
    pytest.skip(f"no virtual audio device: {reason}")


def _script(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SCRIPT), *args], capture_output=True, text=True, timeout=60, check=False
    )


@pytest.fixture(scope="session")
def virtual_audio() -> Iterator[VirtualAudio]:
    if not sys.platform.startswith("linux"):
        unavailable(f"the PulseAudio virtual device is Linux-only (this is {sys.platform})")
    try:
        devices.list_devices()
    except AudioDeviceError as exc:
        unavailable(str(exc))
    missing = [t for t in ("pulseaudio", "pactl", "pacat", "parec") if shutil.which(t) is None]
    if missing:
        unavailable(
            f"{', '.join(missing)} not found "
            "(apt-get install pulseaudio pulseaudio-utils libasound2-plugins)"
        )
    was_up = _script("status").returncode == 0
    started = _script("start")
    if started.returncode != 0:
        unavailable(f"scripts/virtual-audio.sh failed: {started.stderr.strip()[-2000:]}")
    env = {}
    for line in started.stdout.splitlines():
        if line.startswith("export ") and "=" in line:
            key, _, value = line.removeprefix("export ").partition("=")
            env[key] = value
    patch = pytest.MonkeyPatch()
    for key, value in env.items():
        patch.setenv(key, value)
    try:
        devices.rescan()  # PortAudio lists ALSA's pulse device only while a server answers
        found = devices.list_devices()
        pulse = [d for d in found if d.name == "pulse"]
        if not pulse or pulse[0].max_output_channels < 2 or pulse[0].max_input_channels < 1:
            unavailable(
                "PortAudio lists no usable ALSA 'pulse' device although the server runs "
                f"(is libasound2-plugins installed?); devices: {[str(d) for d in found]}"
            )
        yield VirtualAudio(
            output_device=pulse[0].index,
            input_device=pulse[0].index,
            sink=SINK,
            monitor=f"{SINK}.monitor",
            source=SOURCE,
            sine_hz=SINE_HZ,
            rate=RATE,
            env=env,
        )
    finally:
        patch.undo()
        if not was_up:
            _script("stop")


@pytest.fixture
def portaudio() -> Any:
    """The sounddevice module with PortAudio loaded; skip (or fail, in CI) without it."""
    try:
        return devices._sd()
    except AudioDeviceError as exc:
        unavailable(str(exc))


@pytest.fixture
def riff_pair(tmp_path: Path) -> Path:
    """``tmp_path/data``: two renditions of the riff (``synth.riff(repeats=2)``, seeds 0 and 1),
    a folder of WAV files to train on."""
    from audiogen_studio.audio import io, synth

    folder = tmp_path / "data"
    folder.mkdir()
    for i in range(2):
        io.save(synth.riff(repeats=2, seed=i), folder / f"riff{i}.wav")
    return folder


@pytest.fixture(scope="session")
def tiny_wavenet_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A models folder holding ``tiny``: a tiny WaveNet trained on 440 + 1100 Hz (~8 s, CPU).

    Shared by the engine and app tests; the signal is 0.3 sin(440 Hz) + 0.3 sin(1100 Hz + 1 rad)
    at 16 kHz, 4 s.
    """
    import numpy as np

    from audiogen_studio.audio import io
    from audiogen_studio.audio.clip import Clip
    from audiogen_studio.training.wavenet_trainer import TrainOptions, train_wavenet

    root = tmp_path_factory.mktemp("tiny-wavenet")
    (root / "data").mkdir()
    t = np.arange(4 * 16000) / 16000
    x = 0.3 * np.sin(2 * np.pi * 440.0 * t) + 0.3 * np.sin(2 * np.pi * 1100.0 * t + 1.0)
    io.save(Clip(x.astype(np.float32), 16000), root / "data" / "two.wav")
    result = train_wavenet(
        TrainOptions(
            data=root / "data",
            out=root / "models" / "tiny",
            config="tiny",
            steps=300,
            batch=4,
            crop=1000,
            lr=3e-3,
            val_every=0,
            save_every=0,
            progress=False,
            threads=1,
        )
    )
    assert result.completed and result.val_loss is not None and result.val_loss < 0.05
    return root / "models"


@pytest.fixture
def resampled_frames(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The length (frames) of every clip ``audio.io.resample`` converts (it still does)."""
    from audiogen_studio.audio import io
    from audiogen_studio.audio.clip import Clip

    frames: list[int] = []
    real = io.resample

    def spying(clip: Clip, rate: int) -> Clip:
        frames.append(clip.frames)
        return real(clip, rate)

    monkeypatch.setattr(io, "resample", spying)
    return frames
