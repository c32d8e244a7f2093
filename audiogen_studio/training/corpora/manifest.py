"""The corpus manifest: ``OUT_DIR/manifest.jsonl``, one JSON object per finished item.

The file is append-only while a build runs: each line is written and flushed (and fsynced) right
after its audio file has been renamed into place, so every listed file is complete. A build that
is killed can leave at most a partial last line, and audio files that are not listed; the next
build drops the partial line and rebuilds the unlisted items (:func:`load_for_resume`).

Fields of a line:

``id``            stable item id within the corpus (``s000123`` / ``m000045``)
``path``          audio file relative to the corpus folder (FLAC, 16 kHz mono, 16-bit)
``duration``      seconds (``frames / rate``)
``frames``, ``rate``
``source``        ``espeak-ng`` / ``flite`` / ``festival`` / ``asterisk`` / ``fluidsynth``
``licence``       licence notes for the audio and its text or score
``voice``         speech: the engine's voice (``en-us+f3``); music: ``instrument``, the instrument
                  names joined by ``+``
``speaker_id``    the identity that decides the split (voice, or instrument set)
``transcript``    speech: the text spoken, ``null`` where unknown; music: absent
``split``         ``train`` / ``valid`` / ``test``
``seed``          the item's own seed (derived from the corpus seed and the item index)
``params``        how it was made (rate, pitch, programs, transposition, gain, trimming, ...)
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from audiogen_studio.training.corpora.common import SPLITS

MANIFEST_NAME = "manifest.jsonl"
FAILURES_NAME = "failures.jsonl"
REQUIRED_KEYS = (
    "id",
    "path",
    "duration",
    "frames",
    "rate",
    "source",
    "licence",
    "speaker_id",
    "split",
    "seed",
    "params",
)


def validate_entry(entry: Mapping[str, Any]) -> None:
    """Raise ``ValueError`` unless ``entry`` has every required field with a sane value."""
    missing = [k for k in REQUIRED_KEYS if k not in entry]
    if missing:
        raise ValueError(f"manifest entry lacks {', '.join(missing)}")
    if entry["split"] not in SPLITS:
        raise ValueError(f"bad split {entry['split']!r}")
    if not isinstance(entry["path"], str) or Path(entry["path"]).is_absolute():
        raise ValueError(f"path must be relative, got {entry['path']!r}")
    if ".." in Path(entry["path"]).parts:
        raise ValueError(f"path leaves the corpus folder: {entry['path']!r}")
    if not (isinstance(entry["duration"], float | int) and entry["duration"] > 0):
        raise ValueError(f"bad duration {entry['duration']!r}")
    if "voice" not in entry and "instrument" not in entry:
        raise ValueError("manifest entry has neither voice nor instrument")


def _read_lines(path: Path) -> tuple[list[dict[str, Any]], bool]:
    """Parsed lines of a JSONL file and whether anything in it was unreadable."""
    if not path.exists():
        return [], False
    rows: list[dict[str, Any]] = []
    damaged = False
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        damaged = True
    for raw in data.split(b"\n"):
        if not raw.strip():
            continue
        try:
            row = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError):
            damaged = True
            continue
        if isinstance(row, dict):
            rows.append(row)
        else:
            damaged = True
    return rows, damaged


def read_manifest(corpus_dir: str | Path) -> list[dict[str, Any]]:
    """The valid entries of ``corpus_dir/manifest.jsonl`` (last line wins for a repeated id).

    Damaged lines (a build killed mid-line) are skipped. Files are not checked here; see
    :func:`load_for_resume`.
    """
    rows, _ = _read_lines(Path(corpus_dir) / MANIFEST_NAME)
    by_id: dict[str, dict[str, Any]] = {}
    for row in rows:
        try:
            validate_entry(row)
        except ValueError:
            continue
        by_id[str(row["id"])] = row
    return list(by_id.values())


def write_manifest(corpus_dir: str | Path, rows: Iterable[Mapping[str, Any]]) -> Path:
    """Write ``corpus_dir/manifest.jsonl`` with ``rows`` at once (atomically, fsynced)."""
    path = Path(corpus_dir) / MANIFEST_NAME
    _rewrite(path, rows)
    return path


def _rewrite(path: Path, rows: Iterable[Mapping[str, Any]]) -> None:
    tmp = path.with_name(f".{path.name}.partial")
    with tmp.open("w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def load_for_resume(corpus_dir: Path) -> dict[str, dict[str, Any]]:
    """Entries whose audio file exists and is not empty, keyed by id.

    When the manifest holds damaged lines, repeated ids or entries whose file is gone, it is
    rewritten (atomically) without them, so appending can go on cleanly.
    """
    path = corpus_dir / MANIFEST_NAME
    rows, damaged = _read_lines(path)
    kept: dict[str, dict[str, Any]] = {}
    for row in rows:
        try:
            validate_entry(row)
        except ValueError:
            damaged = True
            continue
        audio = corpus_dir / row["path"]
        if not audio.is_file() or audio.stat().st_size == 0:
            damaged = True
            continue
        if str(row["id"]) in kept:
            damaged = True
        kept[str(row["id"])] = row
    if damaged:
        _rewrite(path, kept.values())
    return kept


def load_failures(corpus_dir: Path) -> dict[str, str]:
    """``{item id: reason}`` from ``failures.jsonl`` (items a previous build could not make)."""
    rows, damaged = _read_lines(corpus_dir / FAILURES_NAME)
    result = {str(r["id"]): str(r.get("reason", "")) for r in rows if "id" in r}
    if damaged:
        _rewrite(corpus_dir / FAILURES_NAME, ({"id": k, "reason": v} for k, v in result.items()))
    return result


def _unshare(path: Path) -> None:
    """Give ``path`` an inode of its own when it is a hard link shared with another file (a
    corpus copied with ``cp -al`` and then grown), so appending to it leaves the other alone."""
    try:
        if path.stat().st_nlink <= 1:
            return
    except FileNotFoundError:
        return
    tmp = path.with_name(f".{path.name}.partial")
    shutil.copyfile(path, tmp)
    os.replace(tmp, path)


class JsonlAppender:
    """Append JSON lines to a file, flushed and fsynced per line (a context manager)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        _unshare(path)
        self._file = path.open("a", encoding="utf-8")

    def append(self, row: Mapping[str, Any]) -> None:
        self._file.write(json.dumps(row, ensure_ascii=False) + "\n")
        self._file.flush()
        os.fsync(self._file.fileno())

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> JsonlAppender:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
