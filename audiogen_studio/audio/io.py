"""Load, save, resample and downmix audio files (soundfile; torchaudio only for resampling).

Reading: WAV, FLAC, OGG (Vorbis/Opus), MP3 and whatever else the bundled libsndfile reads. A plain
16-bit WAV can also be mapped without decoding (:func:`map_pcm16`): its int16 samples are there at
once, for display, while the float32 clip is converted (possibly on another thread, with progress
and cancellation) by :meth:`MappedPcm16.to_clip`.
Writing: WAV, FLAC, OGG. Every failure is an :class:`AudioFileError` naming the file and the
problem: missing, a directory, empty, truncated, corrupt, unsupported, non-finite samples, too many
channels, or a sample rate a clip cannot hold. Saving writes a temporary file beside the target and
renames it over the target only when complete, and never replaces an existing file unless asked.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import struct
import tempfile
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import soundfile as sf

from audiogen_studio.audio.clip import MAX_CHANNELS, MAX_RATE, MIN_RATE, Clip, first_non_finite
from audiogen_studio.audio.errors import AudioFileError, ClipError

#: Container format (libsndfile name) and default subtype for each extension we write.
WRITE_FORMATS: dict[str, tuple[str, str]] = {
    ".wav": ("WAV", "FLOAT"),
    ".flac": ("FLAC", "PCM_24"),
    ".ogg": ("OGG", "VORBIS"),
}
READ_EXTENSIONS = (".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff", ".au")
_READ_BLOCK = 1 << 18  # frames per block while loading


@dataclass(frozen=True, slots=True)
class AudioFileInfo:
    """What a file's header says, read without decoding the samples."""

    path: Path
    rate: int
    channels: int
    frames: int
    format: str
    subtype: str

    @property
    def duration(self) -> float:
        """Length in seconds as the header states it."""
        return self.frames / self.rate if self.rate else 0.0


def _check_readable(path: Path) -> None:
    if not path.exists():
        raise AudioFileError(path, "file not found")
    if path.is_dir():
        raise AudioFileError(path, "is a directory, not an audio file")
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise AudioFileError(path, f"cannot access: {exc.strerror or exc}") from exc
    if size == 0:
        raise AudioFileError(path, "empty file (0 bytes)")
    if not os.access(path, os.R_OK):
        raise AudioFileError(path, "permission denied")


def _check_wav_truncation(path: Path) -> tuple[int, int] | None:
    """Raise if a RIFF/WAVE file's data chunk promises more bytes than the file holds.

    libsndfile silently reads what is there, so a half-copied WAV would otherwise load as a
    shorter clip. Streaming writers that leave the size as 0 or 0xFFFFFFFF are accepted.
    Returns ``(offset, bytes)`` of a little-endian WAV's complete data chunk, else ``None``.
    """
    size = path.stat().st_size
    with path.open("rb") as f:
        header = f.read(12)
        if len(header) < 12 or header[:4] not in (b"RIFF", b"RIFX") or header[8:12] != b"WAVE":
            return None
        endian = "<" if header[:4] == b"RIFF" else ">"
        pos = 12
        block_align = 0
        while pos + 8 <= size:
            f.seek(pos)
            chunk = f.read(8)
            if len(chunk) < 8:
                break
            cid = chunk[:4]
            (csize,) = struct.unpack(endian + "I", chunk[4:])
            if cid == b"fmt " and csize >= 16:
                fmt = f.read(16)
                if len(fmt) == 16:
                    block_align = struct.unpack(endian + "HHIIHH", fmt)[4]
            if cid == b"data":
                if csize in (0, 0xFFFFFFFF):
                    return None
                available = size - (pos + 8)
                if csize > available:
                    if block_align:
                        promised, held = csize // block_align, available // block_align
                        detail = f"header promises {promised} frames, file holds {held}"
                    else:
                        detail = f"header promises {csize} data bytes, file holds {available}"
                    raise AudioFileError(path, f"truncated WAV: {detail}")
                return (pos + 8, csize) if endian == "<" else None
            pos += 8 + csize + (csize & 1)
        if pos + 8 > size and pos < size:
            raise AudioFileError(path, "truncated WAV: a chunk header is cut off")
        raise AudioFileError(path, "truncated or corrupt WAV: no data chunk")


def _describe_sf_error(exc: Exception) -> str:
    text = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
    text = text.split("Error opening", 1)[-1] if "Error opening" in text else text
    lowered = text.lower()
    if "format not recognised" in lowered or "unknown format" in lowered:
        return "unsupported or corrupt audio file (format not recognised)"
    return f"unsupported or corrupt audio file ({text.strip(': ')})"


def info(path: str | Path) -> AudioFileInfo:
    """Read a file's header (rate, channels, frames, format) without decoding the audio.

    Raises:
        AudioFileError: missing, empty, truncated, corrupt or unsupported files.
    """
    p = Path(path)
    _check_readable(p)
    _check_wav_truncation(p)
    try:
        meta = sf.info(str(p))
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as exc:
        raise AudioFileError(p, _describe_sf_error(exc)) from exc
    return AudioFileInfo(
        path=p,
        rate=int(meta.samplerate),
        channels=int(meta.channels),
        frames=int(meta.frames),
        format=str(meta.format),
        subtype=str(meta.subtype),
    )


_PARALLEL_MIN_FRAMES = 1 << 22  # ~1.5 min at 48 kHz: below this one reader is fast enough
_CONVERT_CHUNK = 1 << 22  # frames per int16 -> float32 call (~30 ms; GIL released inside)
PCM16_SCALE = np.float32(1.0 / 32768.0)  # 16-bit PCM value -> float sample (exact, as libsndfile)


_MAP_MIN_BYTES = 1 << 26  # sample buffers from 64 MiB on come from their own anonymous map


def new_samples(channels: int, frames: int) -> npt.NDArray[np.float32]:
    """An uninitialised float32 ``[C, T]`` array to decode ``frames`` frames into.

    From 64 MiB on (on Linux) the memory is an anonymous private map advised
    ``MADV_NOHUGEPAGE`` rather than numpy's allocation, which advises transparent huge pages:
    where free memory is fragmented the kernel then compacts memory inside the page faults of
    the first write. Measured on a 2-core VM for the 1.3 GB of an hour of 48 kHz stereo: 7-8 s
    (3 s of it system time) with numpy's huge pages against 2.3-2.9 s with 4 KiB pages under
    the same load; 0.13-2.9 s against a steady ~0.4 s on an idle machine. The map is released
    when the last array using it is.
    """
    nbytes = channels * frames * 4
    if nbytes >= _MAP_MIN_BYTES and hasattr(mmap, "MAP_ANONYMOUS"):
        try:
            buffer = mmap.mmap(-1, nbytes, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        except (OSError, ValueError):  # pragma: no cover - no such map here: numpy's memory
            pass
        else:
            if hasattr(mmap, "MADV_NOHUGEPAGE"):
                with contextlib.suppress(OSError):
                    buffer.madvise(mmap.MADV_NOHUGEPAGE)
            return np.frombuffer(buffer, dtype=np.float32).reshape(channels, frames)
    return np.empty((channels, frames), dtype=np.float32)


class LoadCancelledError(Exception):
    """Raised by :meth:`MappedPcm16.to_float32` when its ``cancel`` event was set."""


@dataclass(frozen=True, eq=False, slots=True)
class MappedPcm16:
    """The samples of a plain little-endian 16-bit PCM WAV, mapped read-only, nothing decoded.

    ``data`` is the file's interleaved int16 ``[T, C]`` as a :class:`numpy.memmap`: the OS pages
    it in from the page cache on demand, and it costs no private memory. :attr:`samples` is the
    same memory as ``[C, T]`` (a transposed view). Value ``v`` is the float sample ``v / 32768``
    exactly (what libsndfile's float decoding and :func:`load` give). Made by :func:`map_pcm16`.
    """

    path: Path
    rate: int
    data: npt.NDArray[np.int16]

    @property
    def channels(self) -> int:
        """Number of channels C."""
        return int(self.data.shape[1])

    @property
    def frames(self) -> int:
        """Number of frames T."""
        return int(self.data.shape[0])

    @property
    def duration(self) -> float:
        """Length in seconds."""
        return self.frames / self.rate

    @property
    def samples(self) -> npt.NDArray[np.int16]:
        """The int16 samples ``[C, T]`` (a strided view of the mapped file, read-only)."""
        return self.data.T

    def to_float32(
        self,
        *,
        workers: int | None = None,
        progress: Callable[[int, int], None] | None = None,
        cancel: threading.Event | None = None,
    ) -> npt.NDArray[np.float32]:
        """The samples as float32 ``[C, T]`` (``v / 32768``), converted in chunks of frames.

        Args:
            workers: threads converting chunks in parallel (numpy releases the GIL inside each
                chunk); default: one per core, at most 4.
            progress: called as ``progress(frames_done, frames)`` after each chunk, from the
                converting threads.
            cancel: when set, the conversion stops at the next chunk and raises
                :class:`LoadCancelledError`.
        """
        frames = self.frames
        workers = max(1, workers if workers is not None else min(4, os.cpu_count() or 1))
        out = new_samples(self.channels, frames)
        starts = list(range(0, frames, _CONVERT_CHUNK))
        lock = threading.Lock()
        done = [0]

        def convert(start: int) -> None:
            if cancel is not None and cancel.is_set():
                raise LoadCancelledError(str(self.path))
            stop = min(start + _CONVERT_CHUNK, frames)
            np.multiply(self.data[start:stop].T, PCM16_SCALE, out=out[:, start:stop])
            if progress is not None:
                with lock:
                    done[0] += stop - start
                    now = done[0]
                progress(now, frames)

        if workers == 1 or len(starts) == 1:
            for start in starts:
                convert(start)
        else:
            with ThreadPoolExecutor(workers, thread_name_prefix="audio-load") as pool:
                for future in [pool.submit(convert, start) for start in starts]:
                    future.result()  # re-raises LoadCancelledError (queued chunks see the event)
        return out

    def to_clip(
        self,
        *,
        workers: int | None = None,
        progress: Callable[[int, int], None] | None = None,
        cancel: threading.Event | None = None,
    ) -> Clip:
        """The file as a :class:`Clip`, equal to :func:`load` of it (samples and metadata).

        Arguments as in :meth:`to_float32`.
        """
        samples = self.to_float32(workers=workers, progress=progress, cancel=cancel)
        metadata = {"source_path": str(self.path), "source_rate": self.rate}
        try:
            return Clip(samples, self.rate, metadata)
        except ClipError as exc:  # pragma: no cover - map_pcm16 checked channels and rate
            raise AudioFileError(self.path, str(exc)) from exc


def _map_data(
    p: Path, wav_data: tuple[int, int], frames: int, channels: int
) -> npt.NDArray[np.int16]:
    """The data chunk at ``wav_data = (offset, bytes)`` as a read-only int16 ``[T, C]`` map."""
    return np.memmap(p, dtype="<i2", mode="r", offset=wav_data[0], shape=(frames, channels))


def map_pcm16(path: str | Path) -> MappedPcm16 | None:
    """Map a plain 16-bit PCM WAV's samples without decoding them; ``None`` for other files.

    "Plain": RIFF (little-endian) WAV or WAVEX, subtype PCM_16, a complete data chunk that holds
    exactly the frames the header states. Other files (FLAC, float or 24-bit WAV, ...) return
    ``None``: decode them with :func:`load`.

    Raises:
        AudioFileError: what :func:`load` raises for the file: missing, empty, truncated,
            corrupt or unsupported, no frames, more than 8 channels, a rate outside 8–192 kHz.
    """
    p = Path(path)
    _check_readable(p)
    wav_data = _check_wav_truncation(p)
    if wav_data is None:
        return None
    meta = info(p)
    if meta.subtype != "PCM_16" or wav_data[1] != meta.frames * meta.channels * 2:
        return None
    if meta.channels > MAX_CHANNELS:
        raise AudioFileError(p, f"{meta.channels} channels: at most {MAX_CHANNELS} supported")
    if meta.channels < 1:
        raise AudioFileError(p, "no audio channels")
    if meta.frames == 0:
        raise AudioFileError(p, "no audio frames (the file holds a header only)")
    if not MIN_RATE <= meta.rate <= MAX_RATE:
        raise AudioFileError(p, f"sample rate {meta.rate} Hz is outside {MIN_RATE}–{MAX_RATE} Hz")
    return MappedPcm16(p, meta.rate, _map_data(p, wav_data, meta.frames, meta.channels))


def _read_range(
    p: Path, out: npt.NDArray[np.float32], start: int, stop: int, as_int16: bool
) -> int:
    """Decode frames ``[start, stop)`` of ``p`` into ``out[:, start:stop]`` with its own handle
    (libsndfile releases the GIL, so several ranges decode in parallel); returns frames read."""
    channels = out.shape[0]
    block = np.empty((_READ_BLOCK, channels), dtype=np.int16 if as_int16 else np.float32)
    pos = start
    with sf.SoundFile(str(p)) as f:
        if start:
            f.seek(start)
        while pos < stop:
            want = min(_READ_BLOCK, stop - pos)
            n = int(
                f.read(
                    want, dtype="int16" if as_int16 else "float32", always_2d=True, out=block[:want]
                ).shape[0]
            )
            if n == 0:
                break
            if as_int16:
                np.multiply(block[:n].T, np.float32(1.0 / 32768.0), out=out[:, pos : pos + n])
            else:
                out[:, pos : pos + n] = block[:n].T
            pos += n
    return pos - start


def _read_samples(
    p: Path, wav_data: tuple[int, int] | None = None
) -> tuple[npt.NDArray[np.float32], int, bool]:
    """Decode a whole file block by block into one preallocated ``[C, T]`` float32 array.

    16-bit PCM is read as integers and scaled here (half the bytes through libsndfile, the
    values identical to its float conversion). Long seekable files are decoded in parallel
    ranges, one per core (up to 4). Returns the samples, the rate, and whether they came from
    16-bit integers (always finite).
    """
    try:
        with sf.SoundFile(str(p)) as f:
            channels, rate = int(f.channels), int(f.samplerate)
            if channels > MAX_CHANNELS:
                raise AudioFileError(p, f"{channels} channels: at most {MAX_CHANNELS} supported")
            if channels < 1:
                raise AudioFileError(p, "no audio channels")
            capacity = max(int(f.frames), 0)
            as_int16 = str(f.subtype) == "PCM_16"
            seekable = bool(f.seekable()) and str(f.format) in ("WAV", "WAVEX", "FLAC", "AIFF")
        workers = min(4, os.cpu_count() or 1)
        if wav_data is not None and as_int16 and wav_data[1] == capacity * channels * 2:
            # a plain 16-bit WAV: map its data chunk and scale it (in parallel chunks when long;
            # numpy releases the GIL), skipping libsndfile's copy through a block buffer
            mapped = MappedPcm16(p, rate, _map_data(p, wav_data, capacity, channels))
            many = capacity >= _PARALLEL_MIN_FRAMES
            return mapped.to_float32(workers=workers if many else 1), rate, True
        out = new_samples(channels, capacity)
        if seekable and capacity >= _PARALLEL_MIN_FRAMES and workers > 1:
            edges = [capacity * i // workers for i in range(workers + 1)]
            with ThreadPoolExecutor(workers, thread_name_prefix="audio-load") as pool:
                done = list(
                    pool.map(
                        lambda i: _read_range(p, out, edges[i], edges[i + 1], as_int16),
                        range(workers),
                    )
                )
            if sum(done) != capacity:
                raise AudioFileError(
                    p, f"the header promises {capacity} frames, {sum(done)} could be read"
                )
            return out, rate, as_int16
        pos = 0
        block = np.empty((_READ_BLOCK, channels), dtype=np.int16 if as_int16 else np.float32)
        with sf.SoundFile(str(p)) as f:
            while True:
                read = f.read(
                    _READ_BLOCK, dtype="int16" if as_int16 else "float32", always_2d=True, out=block
                )
                n = int(read.shape[0])
                if n == 0:
                    break
                if pos + n > out.shape[1]:  # header under-reported the length (some MP3/OGG)
                    grown = np.empty((channels, max(2 * out.shape[1], pos + n)), np.float32)
                    grown[:, :pos] = out[:, :pos]
                    out = grown
                if as_int16:
                    np.multiply(block[:n].T, np.float32(1.0 / 32768.0), out=out[:, pos : pos + n])
                else:
                    out[:, pos : pos + n] = block[:n].T
                pos += n
    except AudioFileError:
        raise
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as exc:
        raise AudioFileError(p, _describe_sf_error(exc)) from exc
    if pos < out.shape[1]:
        out = out[:, :pos]
    return out, rate, as_int16


def load(path: str | Path, *, rate: int | None = None, mono: bool = False) -> Clip:
    """Load an audio file as a :class:`Clip` (float32 ``[C, T]``).

    Args:
        path: the file.
        rate: resample to this rate (Hz) when given.
        mono: downmix to one channel when True.

    Raises:
        AudioFileError: missing, empty, truncated, corrupt or unsupported files, files without
            frames, with NaN/Inf samples, with more than 8 channels, or a rate outside 8–192 kHz
            (unless ``rate`` asks for one inside).
    """
    p = Path(path)
    _check_readable(p)
    wav_data = _check_wav_truncation(p)
    samples, file_rate, integers = _read_samples(p, wav_data)
    if samples.shape[1] == 0:
        raise AudioFileError(p, "no audio frames (the file holds a header only)")
    if not integers:  # report the position in the file, before any downmix or resampling
        bad = first_non_finite(samples)
        if bad is not None:
            raise AudioFileError(
                p, f"non-finite sample (NaN or Inf) at channel {bad[0]}, frame {bad[1]}"
            )
    if mono and samples.shape[0] > 1:
        samples = samples.mean(axis=0, keepdims=True, dtype=np.float32)
    if rate is not None and rate != file_rate:
        samples = resample_array(samples, file_rate, rate)
        file_rate = rate
    elif not MIN_RATE <= file_rate <= MAX_RATE:
        raise AudioFileError(p, f"sample rate {file_rate} Hz is outside {MIN_RATE}–{MAX_RATE} Hz")
    metadata = {"source_path": str(p), "source_rate": int(sf.info(str(p)).samplerate)}
    try:
        return Clip(samples, file_rate, metadata)
    except ClipError as exc:
        raise AudioFileError(p, str(exc)) from exc


def save(
    clip: Clip,
    path: str | Path,
    *,
    overwrite: bool = False,
    subtype: str | None = None,
    ogg_quality: float | None = None,
) -> Path:
    """Write ``clip`` to WAV, FLAC or OGG (chosen by the extension) atomically.

    The samples go to a temporary file in the target's folder, which is flushed, synced and
    renamed over the target only once complete, so a crash never leaves a half-written file
    under the target's name. Samples beyond ±1 are clipped for integer subtypes.

    Args:
        clip: what to write.
        path: target file; its extension picks the format (``.wav``, ``.flac``, ``.ogg``).
        overwrite: replace an existing file (otherwise an existing target is an error).
        subtype: libsndfile subtype, e.g. ``"PCM_16"``, ``"PCM_24"``, ``"FLOAT"``, ``"VORBIS"``;
            defaults: WAV float32 (lossless), FLAC 24-bit, OGG Vorbis.
        ogg_quality: Vorbis quality 0–1 (libsndfile's compression level), OGG only.

    Returns:
        The path written.

    Raises:
        AudioFileError: unsupported extension or subtype, existing target, unwritable folder.
    """
    p = Path(path)
    ext = p.suffix.lower()
    if ext not in WRITE_FORMATS:
        raise AudioFileError(
            p, f"cannot write '{ext or 'no extension'}': use one of {', '.join(WRITE_FORMATS)}"
        )
    fmt, default_subtype = WRITE_FORMATS[ext]
    subtype = (subtype or default_subtype).upper()
    if not sf.check_format(fmt, subtype):
        raise AudioFileError(p, f"{fmt} cannot hold subtype {subtype}")
    compression = None
    if ogg_quality is not None and fmt == "OGG":
        if not 0.0 <= ogg_quality <= 1.0:
            raise AudioFileError(p, f"ogg_quality must be within 0..1, got {ogg_quality}")
        compression = 1.0 - ogg_quality  # libsndfile: 0 = best quality, 1 = smallest
    if p.exists() and not overwrite:
        raise AudioFileError(p, "already exists (pass overwrite=True to replace it)")
    if p.is_dir():
        raise AudioFileError(p, "is a directory")
    folder = p.parent if str(p.parent) else Path(".")
    if not folder.is_dir():
        raise AudioFileError(p, f"folder {folder} does not exist")
    data: npt.NDArray[Any] = clip.samples.T  # soundfile wants [T, C]
    if subtype.startswith("PCM") or subtype in ("ULAW", "ALAW", "VORBIS", "OPUS"):
        data = np.clip(data, -1.0, 1.0)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{p.name}.", suffix=f".partial{ext}", dir=folder)
    tmp = Path(tmp_name)
    try:
        with (
            os.fdopen(fd, "wb") as raw,
            sf.SoundFile(
                raw,
                "w",
                samplerate=clip.rate,
                channels=clip.channels,
                format=fmt,
                subtype=subtype,
                compression_level=compression,
            ) as f,
        ):
            f.write(data)
            f.flush()
        with tmp.open("rb+") as synced:
            os.fsync(synced.fileno())
        os.chmod(tmp, _new_file_mode(p))
        os.replace(tmp, p)
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError, OSError) as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise AudioFileError(p, f"could not write: {exc}") from exc
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    return p


def _new_file_mode(target: Path) -> int:
    """The mode a plain ``open()`` would give: the replaced file's, else 0o666 minus the umask."""
    try:
        return target.stat().st_mode & 0o7777
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def resample_array(
    samples: npt.NDArray[np.float32], rate_in: int, rate_out: int
) -> npt.NDArray[np.float32]:
    """Band-limited (windowed-sinc, Kaiser) resampling of ``samples [C, T]``.

    Uses ``torchaudio.functional.resample`` (torch is imported only when called). Output length
    is ``ceil(T * rate_out / rate_in)``.
    """
    if rate_in == rate_out:
        return samples
    if rate_in <= 0 or rate_out <= 0:
        raise ValueError(f"sample rates must be positive, got {rate_in} -> {rate_out}")
    import torch
    import torchaudio.functional as taf

    with torch.inference_mode():
        tensor = torch.from_numpy(np.array(samples, dtype=np.float32, copy=True))
        out = taf.resample(
            tensor,
            int(rate_in),
            int(rate_out),
            lowpass_filter_width=16,
            rolloff=0.945,
            resampling_method="sinc_interp_kaiser",
            beta=14.769656459379492,
        )
    result: npt.NDArray[np.float32] = out.numpy().astype(np.float32, copy=False)
    return result


def resample(clip: Clip, rate: int) -> Clip:
    """A new clip at ``rate`` Hz (band-limited sinc resampling); unchanged if already there."""
    if rate == clip.rate:
        return clip
    if not MIN_RATE <= rate <= MAX_RATE:
        raise ClipError(f"sample rate {rate} Hz is outside {MIN_RATE}–{MAX_RATE} Hz")
    return Clip(resample_array(np.asarray(clip.samples), clip.rate, rate), rate, clip.metadata)


def downmix(clip: Clip) -> Clip:
    """Average all channels into one: ``[C, T] -> [1, T]`` (a mono clip is returned as is)."""
    if clip.channels == 1:
        return clip
    return Clip(
        clip.samples.mean(axis=0, keepdims=True, dtype=np.float32), clip.rate, clip.metadata
    )


def to_channels(clip: Clip, channels: int) -> Clip:
    """Mono → ``channels`` by copying; ``channels == 1`` downmixes; otherwise counts must match."""
    if clip.channels == channels:
        return clip
    if channels == 1:
        return downmix(clip)
    if clip.channels == 1:
        return Clip(np.repeat(clip.samples, channels, axis=0), clip.rate, clip.metadata)
    raise ClipError(f"cannot map {clip.channels} channels to {channels}")
