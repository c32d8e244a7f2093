"""Loading, saving, resampling, downmixing; every bad input gives a clear AudioFileError."""

from __future__ import annotations

import struct
import threading
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from audiogen_studio.audio import io
from audiogen_studio.audio.clip import Clip
from audiogen_studio.audio.errors import AudioFileError, ClipError


def tone(freq: float, seconds: float, rate: int, channels: int = 1, amp: float = 0.5) -> Clip:
    t = np.arange(round(seconds * rate)) / rate
    x = (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)
    return Clip(np.tile(x, (channels, 1)), rate)


def dominant_hz(x: np.ndarray, rate: int) -> float:
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.fft.rfftfreq(len(x), 1 / rate)[int(np.argmax(spec))])


@pytest.mark.parametrize(("ext", "tol"), [(".wav", 0.0), (".flac", 2**-22), (".ogg", 0.05)])
def test_round_trip_formats(tmp_path: Path, ext: str, tol: float) -> None:
    clip = tone(440, 0.5, 22050, channels=2)
    path = io.save(clip, tmp_path / f"a{ext}")
    back = io.load(path)
    assert (back.channels, back.rate) == (2, 22050)
    assert back.frames == clip.frames
    assert np.max(np.abs(back.samples - clip.samples)) <= tol
    assert abs(dominant_hz(back.samples[0], back.rate) - 440) < 5


def test_mp3_loads(tmp_path: Path) -> None:
    clip = tone(1000, 1.0, 16000)
    sf.write(tmp_path / "a.mp3", clip.samples.T, 16000, format="MP3")
    back = io.load(tmp_path / "a.mp3")
    assert back.rate == 16000
    assert abs(back.duration - 1.0) < 0.1
    assert abs(dominant_hz(back.samples[0], 16000) - 1000) < 10


def test_integer_wav_scaled(tmp_path: Path) -> None:
    data = np.array([0, 16384, -32768, 32767], dtype=np.int16)
    sf.write(tmp_path / "i.wav", data, 8000, subtype="PCM_16")
    back = io.load(tmp_path / "i.wav")
    np.testing.assert_allclose(back.samples[0], data / 32768.0, atol=1e-7)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    channels=st.integers(1, 8),
    frames=st.integers(1, 3000),
    rate=st.sampled_from([8000, 16000, 22050, 44100, 48000, 96000, 192000]),
    seed=st.integers(0, 2**31 - 1),
)
def test_wav_float_round_trip_is_exact(
    tmp_path: Path, channels: int, frames: int, rate: int, seed: int
) -> None:
    x = np.random.default_rng(seed).uniform(-2, 2, (channels, frames)).astype(np.float32)
    clip = Clip(x, rate)
    path = io.save(clip, tmp_path / "p.wav", overwrite=True)
    back = io.load(path)
    assert back.equals(clip)


def test_pcm_subtypes_clip_out_of_range(tmp_path: Path) -> None:
    clip = Clip(np.array([[1.5, -1.5, 0.25]], np.float32), 8000)
    back = io.load(io.save(clip, tmp_path / "c.wav", subtype="PCM_16"))
    np.testing.assert_allclose(back.samples[0], [32767 / 32768, -1.0, 0.25], atol=1e-4)


def test_save_never_clobbers_without_being_asked(tmp_path: Path) -> None:
    first, second = tone(440, 0.1, 8000), tone(880, 0.2, 8000)
    path = io.save(first, tmp_path / "x.flac")
    with pytest.raises(AudioFileError, match="already exists"):
        io.save(second, path)
    assert io.load(path).frames == first.frames
    io.save(second, path, overwrite=True)
    assert io.load(path).frames == second.frames
    assert [p.name for p in tmp_path.iterdir()] == ["x.flac"]  # no temp files left behind


def test_failed_save_leaves_target_and_no_temp(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = tone(440, 0.1, 8000)
    path = io.save(original, tmp_path / "keep.wav")

    def explode(*args: object, **kwargs: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(sf.SoundFile, "write", explode)
    with pytest.raises(AudioFileError, match="disk full"):
        io.save(tone(880, 0.2, 8000), path, overwrite=True)
    monkeypatch.undo()
    assert io.load(path).equals(original)
    assert [p.name for p in tmp_path.iterdir()] == ["keep.wav"]


@pytest.mark.parametrize(
    ("name", "problem"),
    [("x.mp4", "cannot write"), ("x", "cannot write"), ("nodir/x.wav", "does not exist")],
)
def test_save_bad_targets(tmp_path: Path, name: str, problem: str) -> None:
    with pytest.raises(AudioFileError, match=problem):
        io.save(tone(440, 0.1, 8000), tmp_path / name)


def test_save_rejects_subtype_format_mismatch(tmp_path: Path) -> None:
    with pytest.raises(AudioFileError, match="cannot hold"):
        io.save(tone(440, 0.1, 8000), tmp_path / "x.flac", subtype="FLOAT")


# --- bad input -------------------------------------------------------------------------------


def _wav_bytes(tmp_path: Path) -> bytes:
    io.save(tone(440, 0.5, 16000), tmp_path / "good.wav", subtype="PCM_16")
    return (tmp_path / "good.wav").read_bytes()


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(AudioFileError, match="not found") as err:
        io.load(tmp_path / "missing.wav")
    assert "missing.wav" in str(err.value)


def test_directory(tmp_path: Path) -> None:
    with pytest.raises(AudioFileError, match="directory"):
        io.load(tmp_path)


def test_empty_file(tmp_path: Path) -> None:
    (tmp_path / "e.wav").write_bytes(b"")
    with pytest.raises(AudioFileError, match="empty"):
        io.load(tmp_path / "e.wav")


def test_truncated_wav_names_frames(tmp_path: Path) -> None:
    data = _wav_bytes(tmp_path)
    (tmp_path / "t.wav").write_bytes(data[: len(data) // 2])
    with pytest.raises(AudioFileError, match=r"truncated WAV: header promises 8000 frames") as err:
        io.load(tmp_path / "t.wav")
    assert "t.wav" in str(err.value)
    with pytest.raises(AudioFileError, match="truncated"):
        io.info(tmp_path / "t.wav")


def test_wav_cut_inside_header(tmp_path: Path) -> None:
    (tmp_path / "h.wav").write_bytes(_wav_bytes(tmp_path)[:30])
    with pytest.raises(AudioFileError, match="truncated|corrupt"):
        io.load(tmp_path / "h.wav")


def test_header_only_wav(tmp_path: Path) -> None:
    sf.write(tmp_path / "z.wav", np.zeros((0, 1), np.float32), 16000)
    with pytest.raises(AudioFileError, match="no audio frames"):
        io.load(tmp_path / "z.wav")


def test_streaming_placeholder_size_is_accepted(tmp_path: Path) -> None:
    data = bytearray(_wav_bytes(tmp_path))
    pos = data.index(b"data")
    data[pos + 4 : pos + 8] = struct.pack("<I", 0xFFFFFFFF)
    (tmp_path / "s.wav").write_bytes(bytes(data))
    assert io.load(tmp_path / "s.wav").frames > 0


@pytest.mark.parametrize("content", [b"not audio at all" * 64, bytes(range(256)) * 8])
def test_corrupt_or_unsupported(tmp_path: Path, content: bytes) -> None:
    (tmp_path / "c.flac").write_bytes(content)
    with pytest.raises(AudioFileError, match="unsupported or corrupt") as err:
        io.load(tmp_path / "c.flac")
    assert "c.flac" in str(err.value)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_samples(tmp_path: Path, bad: float) -> None:
    x = np.zeros((2, 100), np.float32)
    x[1, 42] = bad
    sf.write(tmp_path / "n.wav", x.T, 16000, subtype="FLOAT")
    with pytest.raises(AudioFileError, match="channel 1, frame 42"):
        io.load(tmp_path / "n.wav")


def test_too_many_channels(tmp_path: Path) -> None:
    sf.write(tmp_path / "m.wav", np.zeros((10, 9), np.float32), 16000, subtype="FLOAT")
    with pytest.raises(AudioFileError, match="9 channels"):
        io.load(tmp_path / "m.wav")


def test_rate_outside_range_unless_resampled(tmp_path: Path) -> None:
    sf.write(tmp_path / "r.wav", np.zeros(600, np.float32) + 0.1, 6000, subtype="FLOAT")
    with pytest.raises(AudioFileError, match="6000 Hz"):
        io.load(tmp_path / "r.wav")
    clip = io.load(tmp_path / "r.wav", rate=16000)
    assert clip.rate == 16000 and clip.frames == 1600


def test_info_reads_header(tmp_path: Path) -> None:
    io.save(tone(440, 1.5, 22050, channels=2), tmp_path / "i.flac")
    meta = io.info(tmp_path / "i.flac")
    assert (meta.rate, meta.channels, meta.frames, meta.format) == (22050, 2, 33075, "FLAC")
    assert meta.duration == pytest.approx(1.5)


# --- resample / downmix --------------------------------------------------------------------------


@pytest.mark.parametrize(("src", "dst"), [(44100, 16000), (16000, 48000), (22050, 22050)])
def test_resample_keeps_pitch_and_duration(src: int, dst: int) -> None:
    clip = tone(1000, 1.0, src)
    out = io.resample(clip, dst)
    assert out.rate == dst
    assert abs(out.frames - dst) <= 1
    assert abs(dominant_hz(out.samples[0], dst) - 1000) <= 2
    rms_in = np.sqrt(np.mean(clip.samples**2))
    rms_out = np.sqrt(np.mean(out.samples[:, dst // 10 : -dst // 10] ** 2))
    assert rms_out == pytest.approx(rms_in, rel=0.02)


def test_resample_removes_content_above_new_nyquist() -> None:
    clip = tone(7000, 1.0, 16000)
    out = io.resample(clip, 8000)  # 7 kHz lies above the new 4 kHz Nyquist
    assert np.sqrt(np.mean(out.samples**2)) < 0.01


def test_load_mono_and_rate(tmp_path: Path) -> None:
    left = tone(440, 0.5, 44100).samples[0]
    io.save(Clip(np.stack([left, -left * 0.5]), 44100), tmp_path / "s.wav")
    clip = io.load(tmp_path / "s.wav", rate=16000, mono=True)
    assert (clip.channels, clip.rate) == (1, 16000)
    assert clip.peak == pytest.approx(0.125, rel=0.05)


def test_downmix_and_to_channels() -> None:
    clip = Clip(np.array([[1.0, 0.0], [0.0, 1.0]], np.float32), 8000)
    np.testing.assert_array_equal(io.downmix(clip).samples, [[0.5, 0.5]])
    mono = io.downmix(clip)
    assert io.to_channels(mono, 3).samples.shape == (3, 2)
    with pytest.raises(ClipError):
        io.to_channels(Clip(np.zeros((3, 2), np.float32), 8000), 2)


def test_saved_files_follow_the_umask_and_keep_a_replaced_files_mode(tmp_path: Path) -> None:
    import os
    import stat

    old = os.umask(0o022)
    try:
        path = io.save(tone(440, 0.1, 8000), tmp_path / "m.wav")
        assert stat.S_IMODE(path.stat().st_mode) == 0o644
        path.chmod(0o640)
        io.save(tone(440, 0.2, 8000), path, overwrite=True)
        assert stat.S_IMODE(path.stat().st_mode) == 0o640
    finally:
        os.umask(old)


def test_pcm16_fast_path_equals_libsndfile_float_decoding(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    ints = rng.integers(-32768, 32768, size=(50_000, 2), dtype=np.int16)
    ints[:2] = [[-32768, 32767], [0, 1]]
    path = tmp_path / "pcm16.wav"
    sf.write(str(path), ints, 44100, subtype="PCM_16")
    clip = io.load(path)
    reference, _ = sf.read(str(path), dtype="float32", always_2d=True)
    assert np.array_equal(clip.samples, reference.T)


def test_long_files_decode_in_parallel_ranges_exactly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(io, "_PARALLEL_MIN_FRAMES", 1000)
    monkeypatch.setattr(io, "_READ_BLOCK", 777)  # ranges end mid-block
    rng = np.random.default_rng(1)
    for subtype, data in (
        ("PCM_16", rng.integers(-32768, 32768, size=(20_011, 2), dtype=np.int16)),
        ("FLOAT", rng.standard_normal((20_011, 3)).astype(np.float32) * 0.3),
    ):
        path = tmp_path / f"long-{subtype}.wav"
        sf.write(str(path), data, 48000, subtype=subtype)
        reference, _ = sf.read(str(path), dtype="float32", always_2d=True)
        assert np.array_equal(io.load(path).samples, reference.T)
    flac = tmp_path / "long.flac"
    sf.write(str(flac), data[:, :2], 48000, subtype="PCM_24")
    reference, _ = sf.read(str(flac), dtype="float32", always_2d=True)
    assert np.array_equal(io.load(flac).samples, reference.T)


# -- mapping 16-bit WAVs without decoding (issue 5: an hour opens and draws in <= 2 s) ------------


def test_map_pcm16_maps_plain_16_bit_wavs_only(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    ints = rng.integers(-32768, 32768, size=(3001, 2), dtype=np.int16)
    ints[:2] = [[-32768, 32767], [0, -1]]
    path = tmp_path / "pcm16.wav"
    sf.write(str(path), ints, 22050, subtype="PCM_16")
    mapped = io.map_pcm16(path)
    assert mapped is not None
    assert (mapped.rate, mapped.channels, mapped.frames) == (22050, 2, 3001)
    assert mapped.duration == pytest.approx(3001 / 22050)
    assert np.array_equal(mapped.samples, ints.T) and mapped.samples.dtype == np.int16
    assert not mapped.samples.flags.writeable
    for subtype, ext in (("FLOAT", "wav"), ("PCM_24", "wav"), ("PCM_16", "flac")):
        other = tmp_path / f"other-{subtype}.{ext}"
        sf.write(str(other), ints, 22050, subtype=subtype)
        assert io.map_pcm16(other) is None  # decode these with io.load
    with pytest.raises(AudioFileError, match="not found"):
        io.map_pcm16(tmp_path / "missing.wav")
    cut = tmp_path / "cut.wav"
    cut.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(AudioFileError, match="truncated"):
        io.map_pcm16(cut)
    nine = tmp_path / "nine.wav"
    sf.write(str(nine), np.zeros((10, 9), np.int16), 16000, subtype="PCM_16")
    with pytest.raises(AudioFileError, match="9 channels"):
        io.map_pcm16(nine)
    slow = tmp_path / "slow.wav"
    sf.write(str(slow), np.zeros((10, 1), np.int16), 4000, subtype="PCM_16")
    with pytest.raises(AudioFileError, match="4000 Hz"):
        io.map_pcm16(slow)


@pytest.mark.parametrize("workers", [1, 3])
def test_mapped_conversion_in_chunks_equals_load(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, workers: int
) -> None:
    monkeypatch.setattr(io, "_CONVERT_CHUNK", 1000)  # 21 chunks, the last one short
    monkeypatch.setattr(io, "_MAP_MIN_BYTES", 1)  # into an anonymous map (not numpy's memory)
    rng = np.random.default_rng(4)
    ints = rng.integers(-32768, 32768, size=(20_011, 3), dtype=np.int16)
    path = tmp_path / "three.wav"
    sf.write(str(path), ints, 48000, subtype="PCM_16")
    mapped = io.map_pcm16(path)
    assert mapped is not None
    seen: list[tuple[int, int]] = []
    clip = mapped.to_clip(workers=workers, progress=lambda done, total: seen.append((done, total)))
    reference, _ = sf.read(str(path), dtype="float32", always_2d=True)
    assert np.array_equal(clip.samples, reference.T)
    loaded = io.load(path)
    assert np.array_equal(clip.samples, loaded.samples) and clip.rate == loaded.rate
    assert dict(clip.metadata) == dict(loaded.metadata)
    assert len(seen) == 21 and seen[-1] == (20_011, 20_011)
    assert clip.samples.flags.c_contiguous and isinstance(clip.samples.base, np.ndarray)
    assert [done for done, _ in seen] == sorted(done for done, _ in seen)


def test_mapped_conversion_stops_when_cancelled(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(io, "_CONVERT_CHUNK", 500)
    path = tmp_path / "long.wav"
    sf.write(str(path), np.zeros((10_000, 2), np.int16), 16000, subtype="PCM_16")
    mapped = io.map_pcm16(path)
    assert mapped is not None
    cancel = threading.Event()
    chunks: list[int] = []

    def progress(done: int, total: int) -> None:
        chunks.append(done)
        cancel.set()  # after the first chunk

    for workers in (1, 2):
        chunks.clear()
        cancel.clear()
        with pytest.raises(io.LoadCancelledError):
            mapped.to_float32(workers=workers, progress=progress, cancel=cancel)
        assert 1 <= len(chunks) <= workers  # chunks already running finish, no new one starts


def test_large_sample_buffers_are_their_own_maps(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(io, "_MAP_MIN_BYTES", 4096)
    small, large = io.new_samples(2, 100), io.new_samples(3, 1000)
    assert small.base is None  # numpy's memory
    assert large.shape == (3, 1000) and large.dtype == np.float32
    assert large.flags.c_contiguous and large.flags.writeable
    large[...] = 0.5
    assert float(large.sum()) == 1500.0
