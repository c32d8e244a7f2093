"""Signals and folders for the evaluation tests: espeak-ng speech, riffs, a tiny corpus."""

from __future__ import annotations

import functools
import json
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import numpy.typing as npt
import soundfile as sf

from audiogen_studio.audio import synth
from audiogen_studio.audio.io import resample_array

RATE = 16_000
TEXT_A = "The quick brown fox jumps over the lazy dog near the river bank."
TEXT_B = "Please call me back when you have finished reading the morning paper."
C_MAJOR = (
    261.63,
    329.63,
    392.0,
    523.25,
    392.0,
    329.63,
    293.66,
    349.23,
    440.0,
    349.23,
    293.66,
    246.94,
)


@functools.lru_cache(maxsize=32)
def espeak(
    text: str = TEXT_A, voice: str = "en-us+m3", pitch: int = 50, speed: int = 160
) -> npt.NDArray[np.float32]:
    """``text`` spoken by espeak-ng ``voice`` as float32 ``[T]`` at 16 kHz, peak 0.5
    (read-only, cached)."""
    exe = shutil.which("espeak-ng")
    if exe is None:
        raise RuntimeError("espeak-ng is not installed")
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "say.wav"
        subprocess.run(
            [exe, "-v", voice, "-p", str(pitch), "-s", str(speed), "-w", str(path), text],
            check=True,
            capture_output=True,
            timeout=60,
        )
        x, rate = sf.read(path, dtype="float32")
    y = resample_array(np.asarray(x, dtype=np.float32)[None], int(rate), RATE)[0]
    out: npt.NDArray[np.float32] = (0.5 * y / max(float(np.max(np.abs(y))), 1e-9)).astype(
        np.float32
    )
    out.setflags(write=False)
    return out


def riff(
    notes: tuple[float, ...] = C_MAJOR,
    *,
    semitones: float = 0.0,
    note_seconds: float = 0.25,
    repeats: int = 2,
    seed: int = 0,
) -> npt.NDArray[np.float32]:
    """A plucked riff (C major by default) transposed by ``semitones``, float32 ``[T]``."""
    shift = 2.0 ** (semitones / 12.0)
    clip = synth.riff(
        [f * shift for f in notes], note_seconds=note_seconds, repeats=repeats, rate=RATE, seed=seed
    )
    out: npt.NDArray[np.float32] = clip.samples[0]
    return out


def write_corpus(folder: Path, clips: dict[str, tuple[str, npt.NDArray[np.float32]]]) -> Path:
    """A corpus folder (``manifest.jsonl`` + FLAC files, all in the test split) holding
    ``clips``: ``{id: (speaker_id, audio [T] at 16 kHz)}``."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for i, (clip_id, (speaker, audio)) in enumerate(clips.items()):
        rel = f"audio/test/{clip_id}.flac"
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        sf.write(folder / rel, audio, RATE)
        rows.append(
            {
                "id": clip_id,
                "path": rel,
                "duration": round(audio.shape[0] / RATE, 3),
                "frames": int(audio.shape[0]),
                "rate": RATE,
                "source": "test",
                "licence": "test signal",
                "voice": speaker,
                "speaker_id": speaker,
                "split": "test",
                "seed": i,
                "params": {},
            }
        )
    (folder / "manifest.jsonl").write_text(
        "".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8"
    )
    return folder
