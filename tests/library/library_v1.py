"""Build a take library as version 1 of the schema wrote it (for the migration tests).

Version 1 had no embeddings, quality figures or peak envelopes; its rows are written here with
plain SQL exactly as the v1 code did (take row, tags, FTS row; audio blob first).
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from library_support import noise, tone

from audiogen_studio.audio.clip import Clip
from audiogen_studio.library import schema
from audiogen_studio.library.blobs import BlobStore

#: (uid, name, tags, notes, engine, model, rating, deleted, sound)
V1_TAKES = [
    ("a1" * 16, "Rainy drone", ["rain", "drone"], "slow wash", "audiolm", "speech", 5, None),
    ("b2" * 16, "Bell hit", ["bell"], "", "wavenet", "tiny", 3, None),
    ("c3" * 16, "Discarded", ["bell"], "meh", "wavenet", "tiny", None, 1700000000.0),
]


def v1_sound(index: int) -> Clip:
    """The audio of ``V1_TAKES[index]``."""
    return [noise(11, 0.4, smooth=8), tone(880, 0.4), tone(890, 0.4)][index]


def build_v1_library(root: Path, *, to_version: int = 1) -> Path:
    """A v1 library with :data:`V1_TAKES` in ``root``, then migrated by the shipped steps to
    ``to_version`` (still below the latest); returns the database path."""
    root.mkdir(parents=True, exist_ok=True)
    db = root / "library.sqlite3"
    blobs = BlobStore(root / "audio")
    conn = sqlite3.connect(db, isolation_level=None)
    schema.configure(conn)
    schema.migrate(conn, target=1)
    prompt_clip = tone(440, 0.2)
    prompt = blobs.put(prompt_clip)
    conn.execute(
        "INSERT INTO prompts (id, audio_hash, source, range_start, range_end, rate, channels, "
        "frames, created) VALUES (1, ?, 'riff.wav', 0, ?, ?, 1, ?, 1690000000.0)",
        (prompt.hash, prompt_clip.frames, prompt_clip.rate, prompt_clip.frames),
    )
    for i, (uid, name, tags, notes, engine, model, rating, deleted) in enumerate(V1_TAKES):
        clip = v1_sound(i)
        blob = blobs.put(clip)
        cur = conn.execute(
            "INSERT INTO takes (uid, prompt_id, audio_hash, rate, channels, frames, "
            "prompt_frames, engine, model, model_version, seed, settings, device, created, "
            "duration, rtf, name, rating, notes, deleted) VALUES "
            "(?, 1, ?, ?, 1, ?, 0, ?, ?, '1.0', ?, ?, 'cpu', ?, ?, 0.5, ?, ?, ?, ?)",
            (
                uid,
                blob.hash,
                clip.rate,
                clip.frames,
                engine,
                model,
                i,
                json.dumps({"temperature": 0.9, "seed": i}),
                1690000000.0 + i,
                clip.duration,
                name,
                rating,
                notes,
                deleted,
            ),
        )
        take_id = cur.lastrowid
        conn.executemany("INSERT INTO tags VALUES (?, ?)", [(take_id, t) for t in tags])
        conn.execute(
            "INSERT INTO takes_fts (rowid, name, tags, notes, model, engine) VALUES "
            "(?, ?, ?, ?, ?, ?)",
            (take_id, name, " ".join(tags), notes, f"{model} 1.0", engine),
        )
    if to_version > 1:
        schema.migrate(conn, target=to_version)
    conn.close()
    return db
