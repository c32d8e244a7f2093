"""Player / Recorder / device listing: real PortAudio streams against the virtual PulseAudio
device (``@pytest.mark.device``), and the error paths (no PortAudio, no or invalid device)."""

from __future__ import annotations

import builtins
import subprocess
import sys
import threading
import time
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest

from audiogen_studio.audio import devices
from audiogen_studio.audio.clip import Clip
from audiogen_studio.audio.devices import Player, Recorder, list_devices, play_clip
from audiogen_studio.audio.errors import AudioDeviceError
from audiogen_studio.audio.ringbuffer import RingBuffer

if TYPE_CHECKING:
    from tests.audio.conftest import VirtualAudio


def dominant_frequency(x: np.ndarray, rate: int) -> float:
    """FFT peak of ``x`` (Hann window, parabolic interpolation between bins)."""
    spec = np.abs(np.fft.rfft((x - x.mean()) * np.hanning(len(x))))
    k = int(np.argmax(spec[1:-1])) + 1
    a, b, c = np.log(spec[k - 1 : k + 2] + 1e-12)
    offset = 0.5 * (a - c) / (a - 2 * b + c)
    return float((k + offset) * rate / len(x))


def tone(freq: float, seconds: float, rate: int, channels: int, amp: float = 0.3) -> np.ndarray:
    """A sine ``[C, T]`` float32."""
    t = np.arange(round(seconds * rate)) / rate
    return np.tile(amp * np.sin(2 * np.pi * freq * t), (channels, 1)).astype(np.float32)


class MonitorCapture:
    """Records what reaches a PulseAudio sink (its monitor) with parec, as mono float32."""

    def __init__(self, monitor: str, rate: int, env: dict[str, str]) -> None:
        self.rate = rate
        self.proc = subprocess.Popen(
            [
                "parec",
                "-d",
                monitor,
                "--raw",
                "--format=float32le",
                f"--rate={rate}",
                "--channels=1",
                "--latency-msec=20",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        self.chunks: list[bytes] = []
        self.thread = threading.Thread(target=self._pump, daemon=True)
        self.thread.start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        while chunk := self.proc.stdout.read1(65536):
            self.chunks.append(chunk)

    def stop(self) -> np.ndarray:
        self.proc.terminate()
        self.proc.wait(5)
        self.thread.join(5)
        return np.frombuffer(b"".join(self.chunks), dtype="<f4")


# -- (a) playback ----------------------------------------------------------------------------


@pytest.mark.device
def test_player_plays_a_streamed_tone_in_real_time(virtual_audio: VirtualAudio) -> None:
    """1.5 s of 880 Hz, produced by a thread into a 0.25 s ring, played to the null sink."""
    va = virtual_audio
    rate, channels = va.rate, 2
    samples = tone(880.0, 1.5, rate, channels)
    frames = samples.shape[1]
    ring = RingBuffer.for_duration(0.25, rate, channels)
    player = Player(
        rate=rate, channels=channels, device=va.output_device, buffer=ring, preroll_frames=4800
    )

    def produce() -> None:
        for start in range(0, frames, 2400):  # 50 ms blocks, as fast as the ring allows
            block = samples[:, start : start + 2400]
            assert ring.write_clip_samples(block, block=True, timeout=5) == block.shape[1]
        ring.close()

    capture = MonitorCapture(va.monitor, rate, va.env)
    time.sleep(0.2)  # let parec connect
    producer = threading.Thread(target=produce)
    t0 = time.monotonic()
    producer.start()
    with player:
        assert player.wait(timeout=frames / rate + 5), f"playback did not finish: {player!r}"
        elapsed = time.monotonic() - t0
        span, requested, calls = (
            player.callback_span,
            player.frames_requested,
            player.callback_count,
        )
        latency = player.latency
    producer.join(5)
    heard = capture.stop()

    assert player.position == ring.read_pos == frames  # every frame written was consumed
    assert player.underruns == 0 and player.underrun_frames == 0
    assert player.callback_errors == 0
    assert not player.active
    # Consumed at the device's pace, not faster: 1.5 s of audio took ≥ 1.5 s minus what the
    # device buffers (its latency) and one callback block, and not much longer.
    assert latency is not None
    assert elapsed >= 1.0
    assert frames / rate - latency - 0.1 <= span <= frames / rate + 1.0
    assert requested >= frames and calls >= 10
    assert abs(requested / rate - span) < 0.25 + latency  # callbacks ran in real time
    # And it reached the sink: the monitor hears 880 Hz at the played level.
    assert heard.size > rate, f"parec captured only {heard.size} frames"
    loud = heard[np.abs(heard) > 0.05]
    assert loud.size > 0.8 * frames, f"only {loud.size} of {frames} frames audible on the sink"
    assert dominant_frequency(heard, rate) == pytest.approx(880.0, rel=0.01)
    active = heard[np.flatnonzero(np.abs(heard) > 0.05)[0] :][: frames - rate // 10]
    assert np.sqrt(np.mean(active**2)) == pytest.approx(0.3 / np.sqrt(2), rel=0.15)


@pytest.mark.device
def test_slow_producer_underruns_are_counted_and_rebuffered(virtual_audio: VirtualAudio) -> None:
    """A producer at half real time: underruns are counted, playback re-buffers, no frame lost."""
    rate = virtual_audio.rate
    ring = RingBuffer.for_duration(0.5, rate, 1)
    player = Player(
        rate=rate,
        channels=1,
        device=virtual_audio.output_device,
        buffer=ring,
        preroll_frames=1200,
    )
    block = 1200  # 25 ms of audio every 50 ms
    data = tone(440.0, 0.5, rate, 1)
    with player:
        for start in range(0, data.shape[1], block):
            ring.write_clip_samples(data[:, start : start + block])
            time.sleep(0.05)
        ring.close()
        assert player.wait(timeout=5)
    assert player.position == data.shape[1]
    assert player.underruns >= 1 and player.underrun_frames > 0
    assert player.rebuffers >= 1


@pytest.mark.device
def test_play_clip_blocks_for_the_clip_duration(virtual_audio: VirtualAudio) -> None:
    clip = Clip(tone(660.0, 0.4, 44_100, 2), 44_100)
    t0 = time.monotonic()
    player = play_clip(clip, device=virtual_audio.output_device)
    elapsed = time.monotonic() - t0
    assert player.position == clip.frames and player.finished.is_set()
    assert player.underruns == 0
    assert 0.3 <= elapsed < 3.0


@pytest.mark.device
def test_player_with_an_empty_closed_ring_finishes_at_once(virtual_audio: VirtualAudio) -> None:
    ring = RingBuffer(100, 1)
    ring.close()
    with Player(rate=48_000, channels=1, device=virtual_audio.output_device, buffer=ring) as p:
        p.start()  # a second start() while playing is a no-op
        assert p.active
        assert p.wait(timeout=2)
    assert p.position == 0


# -- (b) recording ----------------------------------------------------------------------------


@pytest.mark.device
def test_recorder_records_the_sine_source(virtual_audio: VirtualAudio) -> None:
    """≥ 1.5 s from the 440 Hz sine source: right pitch, continuous, levels reported."""
    va = virtual_audio
    levels: list[tuple[float, np.ndarray, np.ndarray]] = []

    def on_level(peak: np.ndarray, rms: np.ndarray) -> None:
        levels.append((time.monotonic(), peak.copy(), rms.copy()))

    recorder = Recorder(rate=va.rate, channels=1, device=va.input_device, level_callback=on_level)
    recorder.start()
    deadline = time.monotonic() + 10
    while recorder.frames_recorded < 1.6 * va.rate and time.monotonic() < deadline:
        time.sleep(0.05)
    clip = recorder.stop()

    assert not recorder.recording
    assert clip.rate == va.rate and clip.channels == 1
    assert clip.frames >= 1.5 * va.rate
    assert clip.frames == recorder.frames_recorded
    assert recorder.overflows == 0 and recorder.dropped_frames == 0
    assert recorder.callback_errors == 0
    x = clip.samples[0]
    assert dominant_frequency(x, va.rate) == pytest.approx(va.sine_hz, rel=0.02)
    # Continuity: a dropped or repeated block would make a jump far above a sine's slope.
    amp = float(np.max(np.abs(x)))
    assert amp > 0.1
    assert np.max(np.abs(np.diff(x))) <= 1.05 * 2 * np.pi * va.sine_hz / va.rate * amp
    # Level meter: called, non-zero, per channel, no faster than ~30 Hz.
    assert levels, "level_callback was never called"
    assert all(p.shape == (1,) and r.shape == (1,) for _, p, r in levels)
    assert max(float(p[0]) for _, p, _ in levels) == pytest.approx(amp, rel=0.01)
    assert all(0 < float(r[0]) <= float(p[0]) for _, p, r in levels)
    gaps = np.diff([t for t, _, _ in levels])
    assert gaps.size == 0 or gaps.min() >= 0.5 / 30


# -- listing ----------------------------------------------------------------------------------


@pytest.mark.device
def test_list_devices_sees_the_virtual_device(virtual_audio: VirtualAudio) -> None:
    found = list_devices()
    pulse = next(d for d in found if d.index == virtual_audio.output_device)
    assert pulse.name == "pulse" and pulse.hostapi == "ALSA"
    assert pulse.max_output_channels >= 2 and pulse.max_input_channels >= 1
    out, inp = devices.default_output_device(), devices.default_input_device()
    assert out.is_default_output and out.max_output_channels > 0
    assert inp.is_default_input and inp.max_input_channels > 0
    assert sum(d.is_default_output for d in found) == 1


def test_rescan_refuses_while_a_stream_is_open(monkeypatch: pytest.MonkeyPatch) -> None:
    player = Player(rate=48_000, channels=1)
    monkeypatch.setattr(devices, "_open_streams", {player})
    with pytest.raises(AudioDeviceError, match="stream"):
        devices.rescan()


# -- (c) errors -------------------------------------------------------------------------------


@pytest.mark.parametrize("device", [9999, "no-such-device-xyz", -3])
def test_invalid_output_device(portaudio: Any, device: int | str) -> None:
    player = Player(rate=48_000, channels=2, device=device)
    with pytest.raises(AudioDeviceError, match=r"output device") as info:
        player.start()
    assert str(device) in str(info.value)
    assert not player.active


@pytest.mark.parametrize("device", [9999, "no-such-device-xyz"])
def test_invalid_input_device(portaudio: Any, device: int | str) -> None:
    recorder = Recorder(rate=48_000, channels=1, device=device)
    with pytest.raises(AudioDeviceError, match=r"input device"):
        recorder.start()
    assert not recorder.recording


def test_no_default_device_says_so(portaudio: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(devices, "_default_indices", lambda sd: (-1, -1))
    with pytest.raises(AudioDeviceError, match="no output device"):
        Player(rate=48_000, channels=1).start()
    with pytest.raises(AudioDeviceError, match="no input device"):
        Recorder(rate=48_000).start()
    with pytest.raises(AudioDeviceError, match="no output device"):
        devices.default_output_device()
    with pytest.raises(AudioDeviceError, match="no input device"):
        devices.default_input_device()


def test_stream_open_failure_is_an_audio_device_error(
    portaudio: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise portaudio.PortAudioError("Error opening OutputStream: Device unavailable [-9985]")

    monkeypatch.setattr(devices, "_resolve", lambda sd, device, kind: 0)
    monkeypatch.setattr(portaudio, "OutputStream", refuse)
    monkeypatch.setattr(portaudio, "InputStream", refuse)
    with pytest.raises(AudioDeviceError, match=r"cannot open output stream.*Device unavailable"):
        Player(rate=48_000, channels=2).start()
    with pytest.raises(AudioDeviceError, match=r"cannot open input stream.*Device unavailable"):
        Recorder(rate=48_000).start()
    assert not devices._open_streams


def test_missing_portaudio_library(monkeypatch: pytest.MonkeyPatch) -> None:
    """sounddevice raises OSError when libportaudio is absent: we say so, naming the fix."""
    real_import = builtins.__import__

    def fake_import(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "sounddevice":
            raise OSError("PortAudio library not found")
        return real_import(name, *args, **kwargs)

    monkeypatch.delitem(sys.modules, "sounddevice", raising=False)
    monkeypatch.setattr(builtins, "__import__", fake_import)
    for call in (
        list_devices,
        devices.default_output_device,
        lambda: Player(rate=48_000, channels=2).start(),
        lambda: Recorder(rate=48_000).start(),
        lambda: play_clip(Clip(np.zeros((1, 100), np.float32), 48_000)),
    ):
        with pytest.raises(AudioDeviceError, match=r"PortAudio.*libportaudio2"):
            call()


def test_module_imports_without_sounddevice() -> None:
    """Importing the module loads no PortAudio; without sounddevice calls say what is missing."""
    code = (
        "import sys\n"
        "import audiogen_studio.audio.devices as d\n"
        "assert 'sounddevice' not in sys.modules, 'import loaded sounddevice'\n"
        "sys.modules['sounddevice'] = None\n"
        "try:\n"
        "    d.list_devices()\n"
        "except d.AudioDeviceError as e:\n"
        "    print('ERR', e)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert "ERR the sounddevice package is not installed" in out.stdout


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"rate": 1000, "channels": 1}, "rate"),
        ({"rate": 48_000, "channels": 0}, "channels"),
        ({"rate": 48_000, "channels": 2, "buffer": RingBuffer(10, 1)}, "channels"),
        ({"rate": 48_000, "channels": 1, "buffer": RingBuffer(10, 1), "preroll_frames": 11}, "pre"),
        ({"rate": 48_000, "channels": 1, "blocksize": -1}, "blocksize"),
    ],
)
def test_player_validates_arguments(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        Player(**kwargs)
