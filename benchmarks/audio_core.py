"""Audio-core speed on long files, printed as JSON (DESIGN.md §7).

Measures, for a synthetic stereo file of ``--minutes`` at ``--rate`` (default: 60 min, 48 kHz):
decoding it from FLAC and WAV (``audio.io.load``); for the 16-bit WAV also what the app does
for long files (``app.loading``): mapping it (``io.map_pcm16``), building the per-channel peak
pyramids from the mapped int16 samples (what the views draw first), and converting the map to
the float32 clip (``MappedPcm16.to_clip``, the background part); building the waveform peak
pyramid (default ``base_block`` and the former 64), one screen of envelope (``--columns``
pixels) zoomed out and zoomed in, one screen of spectrogram for a 10 s window, and ring-buffer
throughput. Peak memory is reported against the raw sample bytes (the desktop-app target is
<= 4x).

    .venv/bin/python benchmarks/audio_core.py [--minutes 60] [--rate 48000]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import TypeVar

import numpy as np

from audiogen_studio.audio import io
from audiogen_studio.audio.clip import Clip
from audiogen_studio.audio.display import PeakPyramid, SpectrogramTiler
from audiogen_studio.audio.ringbuffer import RingBuffer


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


T = TypeVar("T")


def _pyramids(ints: np.ndarray) -> list[PeakPyramid]:
    return [PeakPyramid(ints[c : c + 1]) for c in range(ints.shape[0])]


def _timed(fn: Callable[[], T]) -> tuple[T, float]:
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--minutes", type=float, default=60.0)
    parser.add_argument("--rate", type=int, default=48000)
    parser.add_argument("--columns", type=int, default=1600)
    parser.add_argument("--keep", action="store_true", help="keep the temporary files")
    args = parser.parse_args()

    frames = int(args.minutes * 60 * args.rate)
    rng = np.random.default_rng(0)
    samples = np.empty((2, frames), np.float32)
    step = 10 * args.rate  # synthesize in 10 s blocks to keep the extra memory small
    for start in range(0, frames, step):
        t = np.arange(start, min(frames, start + step)) / args.rate
        block = 0.3 * np.sin(2 * np.pi * 220 * t) + 0.05 * rng.standard_normal(t.size)
        samples[0, start : start + t.size] = block
        samples[1, start : start + t.size] = 0.5 * block[::-1]
    raw_mb = samples.nbytes / 2**20
    clip = Clip(samples, args.rate)
    result: dict[str, object] = {
        "benchmark": "audio_core",
        "machine": f"{platform.machine()}, {os.cpu_count()} cpus, {platform.python_version()}",
        "minutes": args.minutes,
        "rate": args.rate,
        "channels": 2,
        "raw_sample_mb": round(raw_mb, 1),
    }
    with tempfile.TemporaryDirectory() as tmp:
        for ext in (".wav", ".flac"):
            path = Path(tmp) / f"long{ext}"
            _, save_s = _timed(partial(io.save, clip, path, subtype="PCM_16"))
            loaded, load_s = _timed(partial(io.load, path))
            result[f"save_{ext[1:]}_pcm16_s"] = round(save_s, 3)
            result[f"load_{ext[1:]}_s"] = round(load_s, 3)
            del loaded
            if ext == ".wav":
                mapped, map_s = _timed(partial(io.map_pcm16, path))
                assert mapped is not None
                ints = mapped.samples
                _, pyr_s = _timed(partial(_pyramids, ints))
                converted, convert_s = _timed(partial(mapped.to_clip, workers=1))
                result["wav_map_ms"] = round(1e3 * map_s, 2)
                result["pyramids_from_int16_map_s"] = round(pyr_s, 3)
                result["convert_map_to_float32_clip_1_thread_s"] = round(convert_s, 3)
                del converted, ints, mapped
    rss_before = _rss_mb()
    pyramid, build_s = _timed(lambda: PeakPyramid(clip.samples))
    result["pyramid_build_s"] = round(build_s, 3)
    result["pyramid_mb"] = round(pyramid.nbytes / 2**20, 1)
    _, build64_s = _timed(lambda: PeakPyramid(clip.samples, base_block=64))
    result["pyramid_build_base_block_64_s"] = round(build64_s, 3)
    _, env_all = _timed(lambda: pyramid.envelope(0, frames, args.columns))
    mid = frames // 2
    _, env_zoom = _timed(lambda: pyramid.envelope(mid, mid + args.rate, args.columns))
    result["envelope_whole_file_ms"] = round(1e3 * env_all, 2)
    result["envelope_1s_window_ms"] = round(1e3 * env_zoom, 2)
    mono = clip.samples.mean(axis=0, dtype=np.float32)
    tiler = SpectrogramTiler(mono, args.rate, n_fft=1024, hop=256, scale="log", n_bins=256)
    first, last = tiler.frames_for(mid, mid + 10 * args.rate)
    _, spec_s = _timed(lambda: tiler.render(first, last))
    _, spec_cached_s = _timed(lambda: tiler.render(first, last))
    result["spectrogram_10s_window_ms"] = round(1e3 * spec_s, 1)
    result["spectrogram_10s_window_cached_ms"] = round(1e3 * spec_cached_s, 2)
    ring = RingBuffer(8192, 2)
    block = np.zeros((512, 2), np.float32)
    out = np.zeros((512, 2), np.float32)
    n_blocks = 20000
    t0 = time.perf_counter()
    for _ in range(n_blocks):
        ring.write(block)
        ring.read_into(out)
    ring_s = time.perf_counter() - t0
    result["ring_write_read_512_frames_us"] = round(1e6 * ring_s / n_blocks, 2)
    result["peak_rss_mb"] = round(_rss_mb(), 1)
    result["peak_rss_over_raw"] = round(_rss_mb() / raw_mb, 2)
    result["rss_growth_for_views_mb"] = round(_rss_mb() - rss_before, 1)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
