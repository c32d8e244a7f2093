"""The take library: every prompt and take with what produced it, kept on disk (issue 7).

A library is a folder (default: ``$AUDIOGEN_LIBRARY``, else ``<user data dir>/library``)::

    library.sqlite3        SQLite, WAL mode (schema and migrations: schema.py)
    audio/ab/ab12….flac    content-addressed 24-bit FLAC, one file per distinct sound (blobs.py)

Adding a take happens in two phases: :meth:`TakeLibrary.prepare_take` does the slow work
outside any transaction (FLAC encode + fsync of the blob, embedding, peak envelope, quality
figures); :meth:`TakeLibrary.commit_take` writes every row of the take (take, tags, keyword
index, embedding, figures) in one transaction. The blob is on disk before its row commits, so a
process killed at any moment leaves either the whole take or none of it (plus, at worst, an
orphan blob that :meth:`TakeLibrary.gc` removes). Deleting is soft (``deleted`` time) until
``gc`` purges: the app's undo is :meth:`TakeLibrary.undelete`.

Takes are addressed by ``uid`` (a hex uuid; the app's :class:`TakeRecord` id), or any unique
prefix of it (:meth:`TakeLibrary.resolve`). A connection is shared by threads under a lock.
"""

from __future__ import annotations

import contextlib
import enum
import json
import logging
import math
import os
import shutil
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import platformdirs

from audiogen_studio import __version__
from audiogen_studio.audio.clip import Clip
from audiogen_studio.audio.errors import AudioError
from audiogen_studio.library import embedding, peaks, quality, schema
from audiogen_studio.library import search as ranking
from audiogen_studio.library.blobs import BlobError, BlobStore, StoredBlob
from audiogen_studio.library.search import Filters

log = logging.getLogger(__name__)

__all__ = [
    "APP_NAME",
    "DB_NAME",
    "ENV_VAR",
    "EXPORT_FORMAT",
    "UNSET",
    "GcReport",
    "ImportReport",
    "LibraryError",
    "PreparedTake",
    "PromptEntry",
    "SearchResult",
    "TakeEntry",
    "TakeInfo",
    "TakeLibrary",
    "default_root",
]

APP_NAME = "audiogen-studio"
ENV_VAR = "AUDIOGEN_LIBRARY"
DB_NAME = "library.sqlite3"
AUDIO_DIR = "audio"
EXPORT_FORMAT = "audiogen-studio/library-export-1"
EXPORT_MANIFEST = "library.json"
SimilarityBackend = Literal["numpy", "sqlite-vec"]
Order = Literal["created", "-created", "rating", "name", "duration"]

_CANDIDATES = 100  # per list, before fusion


class LibraryError(AudioError):
    """A user-facing library problem: unknown take, bad value, unreadable export, newer schema."""


class _Unset(enum.Enum):
    UNSET = 0


#: "leave this field as it is" in :meth:`TakeLibrary.update`
UNSET = _Unset.UNSET


def default_root() -> Path:
    """The library folder: ``$AUDIOGEN_LIBRARY`` or ``<user data dir>/library``."""
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env).expanduser()
    return Path(platformdirs.user_data_dir(APP_NAME)) / "library"


def _clean_tags(tags: Iterable[str]) -> tuple[str, ...]:
    """Tags trimmed, lower-cased, de-duplicated, in first-seen order; empty ones dropped."""
    seen: dict[str, None] = {}
    for tag in tags:
        t = " ".join(str(tag).split()).lower()
        if t:
            seen.setdefault(t, None)
    return tuple(seen)


def _check_rating(rating: int | None) -> int | None:
    if rating is None:
        return None
    if isinstance(rating, bool) or not isinstance(rating, int) or not 1 <= rating <= 5:
        raise LibraryError(f"rating must be 1–5 (or none), got {rating!r}")
    return int(rating)


def _json_ready(value: Any) -> Any:
    """``value`` with numpy scalars/arrays, tuples, paths made JSON-serialisable."""
    if isinstance(value, Mapping):
        return {str(k): _json_ready(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_ready(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


@dataclass(frozen=True, slots=True)
class TakeInfo:
    """What produced a take, and the user's fields, as :meth:`TakeLibrary.add_take` records it.

    Attributes:
        engine: engine key (``"audiolm"``, ``"wavenet"``, ``"import"`` …).
        model, model_version: the model bundle's name and version.
        model_hash: :func:`~audiogen_studio.library.fingerprint.bundle_fingerprint` of it.
        seed: the seed that reproduces the take.
        settings: every setting (JSON-ready): the app's provenance dict as it is.
        device: the device it was computed on.
        created: ``time.time()`` of the generation (default: now).
        rtf: real-time factor (compute seconds per generated second).
        complete: False for a take stopped before its requested length.
        parent: uid of the take this one continues (chained continuations).
        name, rating (1–5), tags, notes: the user's fields.
        uid: the take's id (default: a fresh uuid; the app passes its TakeRecord id).
    """

    engine: str = ""
    model: str = ""
    model_version: str = ""
    model_hash: str = ""
    seed: int | None = None
    settings: Mapping[str, Any] = field(default_factory=dict)
    device: str = ""
    created: float | None = None
    rtf: float | None = None
    complete: bool = True
    parent: str | None = None
    name: str = ""
    rating: int | None = None
    tags: tuple[str, ...] = ()
    notes: str = ""
    uid: str | None = None

    @classmethod
    def from_provenance(cls, provenance: Mapping[str, Any], **overrides: Any) -> TakeInfo:
        """From the app's take provenance (``engine``, ``model``, ``model_version``, ``seed``,
        ``device_used``/``device``, ``rtf``, ``complete``, ``parent`` …); ``overrides`` win."""
        p = dict(provenance)
        seed = p.get("seed")
        rtf = p.get("rtf")
        values: dict[str, Any] = {
            "engine": str(p.get("engine") or ""),
            "model": str(p.get("model") or ""),
            "model_version": str(p.get("model_version") or ""),
            "model_hash": str(p.get("model_hash") or ""),
            "seed": int(seed) if isinstance(seed, int | np.integer) else None,
            "settings": _json_ready(p),
            "device": str(p.get("device_used") or p.get("device") or ""),
            "rtf": float(rtf) if isinstance(rtf, int | float) else None,
            "complete": bool(p.get("complete", True)),
            "parent": str(p["parent"]) if p.get("parent") else None,
        }
        values.update(overrides)
        return cls(**values)


@dataclass(frozen=True, slots=True)
class PromptEntry:
    """A stored prompt: its audio blob and where it came from."""

    id: int
    audio_hash: str
    source: str
    range: tuple[int, int]
    rate: int
    channels: int
    frames: int
    created: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields."""
        return {
            "id": self.id,
            "audio_hash": self.audio_hash,
            "source": self.source,
            "range": list(self.range),
            "rate": self.rate,
            "channels": self.channels,
            "frames": self.frames,
            "created": self.created,
        }


@dataclass(frozen=True, slots=True)
class TakeEntry:
    """One take as stored. ``duration`` is the whole output (prompt + continuation) in seconds;
    ``peaks`` the int8 min/max envelope (:mod:`~audiogen_studio.library.peaks`)."""

    id: int
    uid: str
    prompt_id: int | None
    parent: str | None
    audio_hash: str
    rate: int
    channels: int
    frames: int
    prompt_frames: int
    engine: str
    model: str
    model_version: str
    model_hash: str
    seed: int | None
    settings: Mapping[str, Any]
    device: str
    created: float
    duration: float
    rtf: float | None
    complete: bool
    name: str
    rating: int | None
    tags: tuple[str, ...]
    notes: str
    deleted: float | None
    peaks: bytes | None = None
    quality: Mapping[str, float] = field(default_factory=dict)

    @property
    def generated_seconds(self) -> float:
        """Seconds of generated audio (the output after the prompt)."""
        return max(0, self.frames - self.prompt_frames) / self.rate

    def describe(self) -> str:
        """One line for lists: name, engine · model version · seed · duration · rating."""
        bits = [self.name or self.uid[:8]]
        model = " ".join(b for b in (self.model, self.model_version) if b)
        bits.extend(b for b in (self.engine, model) if b)
        if self.seed is not None:
            bits.append(f"seed {self.seed}")
        bits.append(f"{self.duration:.2f} s")
        if self.rating:
            bits.append("★" * self.rating)
        if self.tags:
            bits.append("#" + " #".join(self.tags))
        return " · ".join(bits)

    def to_dict(self, *, with_peaks: bool = False) -> dict[str, Any]:
        """JSON-ready fields (``created``/``deleted`` as epoch seconds)."""
        out: dict[str, Any] = {
            "uid": self.uid,
            "name": self.name,
            "rating": self.rating,
            "tags": list(self.tags),
            "notes": self.notes,
            "engine": self.engine,
            "model": self.model,
            "model_version": self.model_version,
            "model_hash": self.model_hash,
            "seed": self.seed,
            "device": self.device,
            "created": self.created,
            "duration": self.duration,
            "rtf": self.rtf,
            "complete": self.complete,
            "parent": self.parent,
            "prompt_id": self.prompt_id,
            "audio_hash": self.audio_hash,
            "rate": self.rate,
            "channels": self.channels,
            "frames": self.frames,
            "prompt_frames": self.prompt_frames,
            "settings": dict(self.settings),
            "quality": dict(self.quality),
            "deleted": self.deleted,
        }
        if with_peaks:
            out["peaks"] = None if self.peaks is None else self.peaks.hex()
        return out


@dataclass(frozen=True, slots=True)
class SearchResult:
    """A take found by a search: the take, its fused score and the parts it came from."""

    take: TakeEntry
    score: float
    keyword: float | None = None
    similarity: float | None = None


@dataclass(frozen=True, slots=True)
class PreparedTake:
    """A take whose audio is on disk and whose figures are computed, ready to commit."""

    blob: StoredBlob
    rate: int
    channels: int
    frames: int
    prompt_frames: int
    info: TakeInfo
    vector: npt.NDArray[np.float32] | None
    peaks: bytes
    quality: Mapping[str, float]


@dataclass(frozen=True, slots=True)
class GcReport:
    """What :meth:`TakeLibrary.gc` removed (or would remove, for a dry run)."""

    purged_takes: int
    removed_prompts: int
    removed_blobs: int
    freed_bytes: int
    removed_partials: int


@dataclass(frozen=True, slots=True)
class ImportReport:
    """What :meth:`TakeLibrary.import_from` did."""

    added: list[str]
    skipped: list[str]
    prompts: int


_TAKE_COLUMNS = (
    "id, uid, prompt_id, parent_uid, audio_hash, rate, channels, frames, prompt_frames, engine, "
    "model, model_version, model_hash, seed, settings, device, created, duration, rtf, complete, "
    "name, rating, notes, deleted, peaks"
)
_ORDERS: dict[str, str] = {
    "created": "t.created DESC, t.id DESC",
    "-created": "t.created ASC, t.id ASC",
    "rating": "t.rating IS NULL, t.rating DESC, t.created DESC",
    "name": "t.name COLLATE NOCASE ASC, t.created DESC",
    "duration": "t.duration DESC, t.created DESC",
}


class TakeLibrary:
    """A take library folder; use :meth:`open` (or the constructor) and :meth:`close`.

    Args:
        root: the library folder (created if absent); ``None`` = :func:`default_root`.
        similarity: ``"numpy"`` (default, measured faster) or ``"sqlite-vec"``.
        sync_audio: ``fsync`` each new audio blob (off only for throwaway benchmarks).
        quality_level: automatic quality figures (:func:`.quality.compute`): ``"fast"``
            (default: seam figures), ``"all"`` (also DNSMOS for speech, seconds per take),
            ``"none"``. Nothing is computed without the ``[eval]`` extra.

    Raises:
        LibraryError: the database is newer than this app, or not a library.
    """

    def __init__(
        self,
        root: str | Path | None = None,
        *,
        similarity: SimilarityBackend = "numpy",
        sync_audio: bool = True,
        quality_level: quality.Level = "fast",
    ) -> None:
        self.root = Path(root) if root is not None else default_root()
        self.root.mkdir(parents=True, exist_ok=True)
        self.path = self.root / DB_NAME
        self.blobs = BlobStore(self.root / AUDIO_DIR, sync=sync_audio)
        self.similarity_backend: SimilarityBackend = similarity
        self.quality_level: quality.Level = quality_level
        self._lock = threading.RLock()
        self._conn = sqlite3.connect(
            self.path, isolation_level=None, check_same_thread=False, timeout=10.0
        )
        try:
            schema.configure(self._conn)
            self.migrated_from = schema.migrate(self._conn)
        except (sqlite3.DatabaseError, schema.SchemaError) as exc:
            self._conn.close()
            raise LibraryError(f"{self.path}: {exc}") from exc
        self._index = ranking.VectorIndex()
        self._vec: ranking.SqliteVecSearch | None = None
        if 0 < self.migrated_from < schema.NEEDS_BACKFILL:
            done = self.backfill()
            log.info("library migrated from v%d; backfilled %d takes", self.migrated_from, done)

    @classmethod
    def open(cls, root: str | Path | None = None, **options: Any) -> TakeLibrary:
        """Open (creating or migrating as needed) the library at ``root``."""
        return cls(root, **options)

    def close(self) -> None:
        """Close the database (idempotent)."""
        with self._lock:
            if self._vec is not None:
                self._vec.close()
                self._vec = None
            self._conn.close()

    def __enter__(self) -> TakeLibrary:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    @property
    def schema_version(self) -> int:
        """The database's schema version."""
        with self._lock:
            return schema.user_version(self._conn)

    # ------------------------------------------------------------------ prompts

    def add_prompt(
        self, clip: Clip, *, source: str | Path = "", range: tuple[int, int] | None = None
    ) -> PromptEntry:
        """Store a prompt (once per identical audio + source + range); returns its entry.

        ``range`` is ``(start, end)`` frames within ``source`` (default: the whole clip).
        """
        blob = self.blobs.put(clip)
        start, end = range if range is not None else (0, clip.frames)
        src = str(source)
        with self._transaction() as conn:
            conn.execute(
                "INSERT OR IGNORE INTO prompts (audio_hash, source, range_start, range_end, rate, "
                "channels, frames, created) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    blob.hash,
                    src,
                    int(start),
                    int(end),
                    clip.rate,
                    clip.channels,
                    clip.frames,
                    time.time(),
                ),
            )
            row = conn.execute(
                "SELECT id FROM prompts WHERE audio_hash = ? AND source = ? AND range_start = ? "
                "AND range_end = ?",
                (blob.hash, src, int(start), int(end)),
            ).fetchone()
        return self.prompt(int(row[0]))

    def prompt(self, prompt_id: int) -> PromptEntry:
        """A prompt by id."""
        with self._lock:
            row = self._conn.execute(
                "SELECT id, audio_hash, source, range_start, range_end, rate, channels, frames, "
                "created FROM prompts WHERE id = ?",
                (int(prompt_id),),
            ).fetchone()
        if row is None:
            raise LibraryError(f"no prompt {prompt_id} in the library")
        return PromptEntry(row[0], row[1], row[2], (row[3], row[4]), row[5], row[6], row[7], row[8])

    def prompt_audio(self, prompt_id: int) -> Clip:
        """A prompt's audio."""
        return self.blobs.get(self.prompt(prompt_id).audio_hash)

    # -------------------------------------------------------------------- takes

    def prepare_take(
        self,
        audio: Clip,
        info: TakeInfo | None = None,
        *,
        prompt_frames: int = 0,
        quality_figures: Mapping[str, float] | None = None,
        compute_quality: bool = True,
    ) -> PreparedTake:
        """The slow half of adding a take (no transaction): write the audio blob, compute the
        embedding of the continuation (the whole output when there is none), its peak
        envelope, and quality figures (``quality_figures`` given, or computed when
        ``compute_quality`` and the evaluation extra is installed)."""
        info = info or TakeInfo()
        if not 0 <= prompt_frames <= audio.frames:
            raise LibraryError(f"prompt_frames {prompt_frames} outside 0–{audio.frames}")
        _check_rating(info.rating)
        blob = self.blobs.put(audio)
        part = audio.samples[:, prompt_frames:] if prompt_frames < audio.frames else audio.samples
        vector = embedding.embed_samples(part, audio.rate)
        figures: Mapping[str, float]
        if quality_figures is not None:
            figures = dict(quality_figures)
        elif compute_quality:
            figures = quality.compute(audio, prompt_frames, info.settings, level=self.quality_level)
        else:
            figures = {}
        return PreparedTake(
            blob=blob,
            rate=audio.rate,
            channels=audio.channels,
            frames=audio.frames,
            prompt_frames=int(prompt_frames),
            info=info,
            vector=vector if np.any(vector) else None,
            peaks=peaks.encode(audio.samples),
            quality=figures,
        )

    def commit_take(self, prepared: PreparedTake, *, prompt_id: int | None = None) -> TakeEntry:
        """The fast half: every row of the take in one transaction; returns the stored take.

        Raises:
            LibraryError: the uid is already in the library, or the prompt does not exist.
        """
        info = prepared.info
        uid = info.uid or uuid.uuid4().hex
        tags = _clean_tags(info.tags)
        created = float(info.created if info.created is not None else time.time())
        settings = json.dumps(_json_ready(info.settings), sort_keys=True)
        with self._transaction() as conn:
            try:
                cur = conn.execute(
                    f"INSERT INTO takes ({_TAKE_COLUMNS.removeprefix('id, ')}) VALUES "
                    "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, ?)",
                    (
                        uid,
                        prompt_id,
                        info.parent,
                        prepared.blob.hash,
                        prepared.rate,
                        prepared.channels,
                        prepared.frames,
                        prepared.prompt_frames,
                        info.engine,
                        info.model,
                        info.model_version,
                        info.model_hash,
                        info.seed,
                        settings,
                        info.device,
                        created,
                        prepared.frames / prepared.rate,
                        info.rtf,
                        int(info.complete),
                        info.name,
                        _check_rating(info.rating),
                        info.notes,
                        prepared.peaks,
                    ),
                )
            except sqlite3.IntegrityError as exc:
                if "takes.uid" in str(exc):
                    raise LibraryError(f"take {uid} is already in the library") from exc
                raise LibraryError(f"cannot add the take: {exc}") from exc
            take_id = int(cur.lastrowid or 0)
            conn.executemany(
                "INSERT INTO tags (take_id, tag) VALUES (?, ?)", [(take_id, t) for t in tags]
            )
            self._write_fts(conn, take_id)
            if prepared.vector is not None:
                conn.execute(
                    "INSERT INTO embeddings (take_id, model, dim, vector) VALUES (?, ?, ?, ?)",
                    (
                        take_id,
                        embedding.EMBEDDING_MODEL,
                        embedding.DIM,
                        embedding.to_bytes(prepared.vector),
                    ),
                )
            conn.executemany(
                "INSERT INTO quality (take_id, metric, value) VALUES (?, ?, ?)",
                [(take_id, k, float(v)) for k, v in prepared.quality.items()],
            )
            if prepared.vector is not None:
                self._index.upsert(take_id, prepared.vector)
        return self.get(uid)

    def add_take(
        self,
        audio: Clip,
        info: TakeInfo | None = None,
        *,
        prompt_id: int | None = None,
        prompt_frames: int = 0,
        quality_figures: Mapping[str, float] | None = None,
        compute_quality: bool = True,
    ) -> TakeEntry:
        """Store a take: ``audio`` is its whole output ``[C, T]`` (the prompt followed by the
        continuation, whose first ``prompt_frames`` frames are the prompt), ``info`` its
        provenance and user fields, ``prompt_id`` the :meth:`add_prompt` entry it continues.
        See :meth:`prepare_take` and :meth:`commit_take`."""
        prepared = self.prepare_take(
            audio,
            info,
            prompt_frames=prompt_frames,
            quality_figures=quality_figures,
            compute_quality=compute_quality,
        )
        return self.commit_take(prepared, prompt_id=prompt_id)

    def _write_fts(self, conn: sqlite3.Connection, take_id: int) -> None:
        """(Re)write a take's keyword-index row from its current fields and tags."""
        conn.execute("DELETE FROM takes_fts WHERE rowid = ?", (take_id,))
        conn.execute(
            "INSERT INTO takes_fts (rowid, name, tags, notes, model, engine) "
            "SELECT t.id, t.name, coalesce((SELECT group_concat(g.tag, ' ') FROM tags g "
            "WHERE g.take_id = t.id), ''), t.notes, trim(t.model || ' ' || t.model_version), "
            "t.engine FROM takes t WHERE t.id = ?",
            (take_id,),
        )

    def resolve(self, uid_or_prefix: str) -> str:
        """The full uid of a take given its uid or a unique prefix of it (at least 4 hex
        characters).

        Raises:
            LibraryError: no take, or an ambiguous prefix.
        """
        key = uid_or_prefix.strip().lower()
        with self._lock:
            row = self._conn.execute("SELECT uid FROM takes WHERE uid = ?", (key,)).fetchone()
            if row is not None:
                return str(row[0])
            if len(key) < 4:
                raise LibraryError(f"no take {uid_or_prefix!r} (give at least 4 characters)")
            rows = self._conn.execute(
                "SELECT uid FROM takes WHERE uid >= ? AND uid < ? ORDER BY uid LIMIT 2",
                (key, key + "\U0010ffff"),
            ).fetchall()
        if not rows:
            raise LibraryError(f"no take {uid_or_prefix!r} in the library")
        if len(rows) > 1:
            raise LibraryError(f"take id {uid_or_prefix!r} is ambiguous; give more characters")
        return str(rows[0][0])

    def get(self, uid: str) -> TakeEntry:
        """A take by uid (or unique prefix); deleted takes too."""
        full = self.resolve(uid)
        with self._lock:
            row = self._conn.execute(
                f"SELECT {_TAKE_COLUMNS} FROM takes WHERE uid = ?", (full,)
            ).fetchone()
            return self._entries([row])[0]

    def __contains__(self, uid: object) -> bool:
        with self._lock:
            row = self._conn.execute("SELECT 1 FROM takes WHERE uid = ?", (str(uid),)).fetchone()
        return row is not None

    def _entries(self, rows: Sequence[Sequence[Any]]) -> list[TakeEntry]:
        """Rows of ``_TAKE_COLUMNS`` → entries, with their tags and quality figures."""
        if not rows:
            return []
        ids = [int(r[0]) for r in rows]
        marks = ",".join("?" * len(ids))
        tags: dict[int, list[str]] = {}
        for take_id, tag in self._conn.execute(
            f"SELECT take_id, tag FROM tags WHERE take_id IN ({marks})", ids
        ):
            tags.setdefault(int(take_id), []).append(str(tag))
        figures: dict[int, dict[str, float]] = {}
        for take_id, metric, value in self._conn.execute(
            f"SELECT take_id, metric, value FROM quality WHERE take_id IN ({marks})", ids
        ):
            figures.setdefault(int(take_id), {})[str(metric)] = float(value)
        out = []
        for r in rows:
            take_id = int(r[0])
            out.append(
                TakeEntry(
                    id=take_id,
                    uid=r[1],
                    prompt_id=r[2],
                    parent=r[3],
                    audio_hash=r[4],
                    rate=r[5],
                    channels=r[6],
                    frames=r[7],
                    prompt_frames=r[8],
                    engine=r[9],
                    model=r[10],
                    model_version=r[11],
                    model_hash=r[12],
                    seed=r[13],
                    settings=json.loads(r[14] or "{}"),
                    device=r[15],
                    created=r[16],
                    duration=r[17],
                    rtf=r[18],
                    complete=bool(r[19]),
                    name=r[20],
                    rating=r[21],
                    notes=r[22],
                    deleted=r[23],
                    peaks=r[24],
                    tags=tuple(sorted(tags.get(take_id, []))),
                    quality=figures.get(take_id, {}),
                )
            )
        return out

    def _by_ids(self, ids: Sequence[int]) -> dict[int, TakeEntry]:
        if not ids:
            return {}
        marks = ",".join("?" * len(ids))
        with self._lock:
            rows = self._conn.execute(
                f"SELECT {_TAKE_COLUMNS} FROM takes WHERE id IN ({marks})", list(ids)
            ).fetchall()
            return {e.id: e for e in self._entries(rows)}

    def audio(self, uid: str) -> Clip:
        """A take's whole output ``[C, T]`` (decoded from its FLAC blob).

        Raises:
            LibraryError: the blob is missing or damaged.
        """
        entry = self.get(uid)
        try:
            return self.blobs.get(entry.audio_hash)
        except BlobError as exc:
            raise LibraryError(f"take {entry.uid[:8]}: {exc}") from exc

    def update(
        self,
        uid: str,
        *,
        name: str | _Unset = UNSET,
        rating: int | _Unset | None = UNSET,
        tags: Iterable[str] | _Unset = UNSET,
        notes: str | _Unset = UNSET,
    ) -> TakeEntry:
        """Change the user's fields of a take (``rating=None`` clears it); returns it."""
        full = self.resolve(uid)
        sets: list[str] = []
        params: list[Any] = []
        if not isinstance(name, _Unset):
            sets.append("name = ?")
            params.append(str(name))
        if not isinstance(rating, _Unset):
            sets.append("rating = ?")
            params.append(_check_rating(rating))
        if not isinstance(notes, _Unset):
            sets.append("notes = ?")
            params.append(str(notes))
        with self._transaction() as conn:
            take_id = int(conn.execute("SELECT id FROM takes WHERE uid = ?", (full,)).fetchone()[0])
            if sets:
                conn.execute(f"UPDATE takes SET {', '.join(sets)} WHERE id = ?", [*params, take_id])
            if not isinstance(tags, _Unset):
                conn.execute("DELETE FROM tags WHERE take_id = ?", (take_id,))
                conn.executemany(
                    "INSERT INTO tags (take_id, tag) VALUES (?, ?)",
                    [(take_id, t) for t in _clean_tags(tags)],
                )
            self._write_fts(conn, take_id)
        return self.get(full)

    def add_tags(self, uid: str, tags: Iterable[str]) -> TakeEntry:
        """Add tags to a take (existing ones stay)."""
        entry = self.get(uid)
        return self.update(entry.uid, tags=[*entry.tags, *tags])

    def remove_tags(self, uid: str, tags: Iterable[str]) -> TakeEntry:
        """Remove tags from a take."""
        entry = self.get(uid)
        drop = set(_clean_tags(tags))
        return self.update(entry.uid, tags=[t for t in entry.tags if t not in drop])

    def delete(self, uid: str) -> TakeEntry:
        """Move a take to the trash (soft delete; :meth:`undelete` restores it, :meth:`gc`
        purges it); returns it."""
        full = self.resolve(uid)
        with self._transaction() as conn:
            conn.execute(
                "UPDATE takes SET deleted = ? WHERE uid = ? AND deleted IS NULL",
                (time.time(), full),
            )
        return self.get(full)

    def undelete(self, uid: str) -> TakeEntry:
        """Take a take out of the trash; returns it."""
        full = self.resolve(uid)
        with self._transaction() as conn:
            conn.execute("UPDATE takes SET deleted = NULL WHERE uid = ?", (full,))
        return self.get(full)

    # ------------------------------------------------------------ list & search

    def count(self, filters: Filters | None = None) -> int:
        """How many takes pass ``filters`` (default: live takes)."""
        where, params = (filters or Filters()).where("t")
        with self._lock:
            return int(
                self._conn.execute(
                    f"SELECT count(*) FROM takes t WHERE {where}", params
                ).fetchone()[0]
            )

    def list_takes(
        self,
        filters: Filters | None = None,
        *,
        order: Order = "created",
        limit: int | None = 100,
        offset: int = 0,
    ) -> list[TakeEntry]:
        """Takes passing ``filters``, newest first (or by ``order``)."""
        where, params = (filters or Filters()).where("t")
        if order not in _ORDERS:
            raise LibraryError(f"unknown order {order!r}: use one of {', '.join(_ORDERS)}")
        sql = (
            f"SELECT {', '.join('t.' + c.strip() for c in _TAKE_COLUMNS.split(','))} FROM takes t "
            f"WHERE {where} ORDER BY {_ORDERS[order]} LIMIT ? OFFSET ?"
        )
        with self._lock:
            rows = self._conn.execute(sql, [*params, -1 if limit is None else limit, offset])
            return self._entries(rows.fetchall())

    def facets(self) -> dict[str, list[str]]:
        """The distinct engines and models of live takes (for filter menus), sorted."""
        with self._lock:
            out = {}
            for column in ("engine", "model"):
                rows = self._conn.execute(
                    f"SELECT DISTINCT {column} FROM takes WHERE deleted IS NULL AND {column} != '' "
                    f"ORDER BY {column}"
                )
                out[column] = [str(r[0]) for r in rows]
        return out

    def vector(self, uid: str) -> npt.NDArray[np.float32] | None:
        """A take's stored embedding, or ``None`` (silent take, or not computed yet)."""
        full = self.resolve(uid)
        with self._lock:
            row = self._conn.execute(
                "SELECT e.vector FROM embeddings e JOIN takes t ON t.id = e.take_id "
                "WHERE t.uid = ? AND e.model = ?",
                (full, embedding.EMBEDDING_MODEL),
            ).fetchone()
        return None if row is None else embedding.from_bytes(row[0])

    def keyword_search(
        self, text: str, filters: Filters | None = None, *, limit: int = 50
    ) -> list[tuple[int, float]]:
        """Keyword ranking only: ``[(rowid, score)]`` best first (see :func:`ranking.keyword`)."""
        with self._lock:
            return ranking.keyword(self._conn, text, filters or Filters(), limit=limit)

    def similar(
        self,
        vector: npt.ArrayLike,
        filters: Filters | None = None,
        *,
        limit: int = 50,
        exclude: Sequence[int] = (),
        backend: SimilarityBackend | None = None,
    ) -> list[tuple[int, float]]:
        """Similarity ranking only: ``[(rowid, cosine)]`` best first."""
        filters = filters or Filters()
        backend = backend or self.similarity_backend
        if backend == "sqlite-vec":
            with self._lock:
                if self._vec is None:
                    self._vec = ranking.SqliteVecSearch(self.path)
                vec = self._vec
            hits = vec.query(vector, filters, limit=limit + len(exclude))
            return [h for h in hits if h[0] not in set(exclude)][:limit]
        if backend != "numpy":
            raise LibraryError(f"unknown similarity backend {backend!r}: numpy or sqlite-vec")
        excluded = np.asarray(sorted(exclude), dtype=np.int64)
        with self._lock:
            self._index.refresh(self._conn)
            index = self._index

            def fetch(k: int | None) -> list[tuple[int, float]]:
                return index.query(vector, limit=k or len(index), excluded=excluded)

            return ranking.filtered_top(self._conn, fetch, filters, limit=limit)

    def search(
        self,
        text: str = "",
        *,
        like: str | None = None,
        audio: Clip | None = None,
        vector: npt.ArrayLike | None = None,
        filters: Filters | None = None,
        limit: int = 50,
        weights: tuple[float, float] = (1.0, 1.0),
        backend: SimilarityBackend | None = None,
    ) -> list[SearchResult]:
        """Find takes by words, by sound, or both (hybrid: reciprocal rank fusion).

        Args:
            text: free text matched against name, tags, notes, model and engine.
            like: uid of a take to find similar takes to (itself excluded).
            audio: a clip to find similar takes to (e.g. a prompt or a file).
            vector: a ready embedding (``[DIM]``), instead of ``like``/``audio``.
            filters: restrict the candidates (default: live takes).
            limit: results wanted.
            weights: ``(keyword, similarity)`` weights of the fusion.
            backend: similarity back end (default: the library's).

        Returns:
            Results best first; with neither text nor sound, the newest takes that pass
            ``filters``.
        """
        filters = filters or Filters()
        query_vec: npt.NDArray[np.float32] | None = None
        exclude: list[int] = []
        if vector is not None:
            query_vec = np.asarray(vector, dtype=np.float32)
        elif audio is not None:
            query_vec = embedding.embed(audio)
        elif like is not None:
            entry = self.get(like)
            query_vec = self.vector(entry.uid)
            exclude.append(entry.id)
            if query_vec is None:
                return []
        pool = max(limit, _CANDIDATES)
        kw = self.keyword_search(text, filters, limit=pool) if text.strip() else []
        sim = (
            self.similar(query_vec, filters, limit=pool, exclude=exclude, backend=backend)
            if query_vec is not None and np.any(query_vec)
            else []
        )
        if not text.strip() and query_vec is None:
            return [SearchResult(e, 0.0) for e in self.list_takes(filters, limit=limit)]
        kw_score = dict(kw)
        sim_score = dict(sim)
        if kw and sim:
            fused = ranking.reciprocal_rank_fusion(
                [[i for i, _ in kw], [i for i, _ in sim]], list(weights)
            )
        else:
            fused = kw or sim
        top = fused[:limit]
        entries = self._by_ids([i for i, _ in top])
        return [
            SearchResult(entries[i], s, kw_score.get(i), sim_score.get(i))
            for i, s in top
            if i in entries
        ]

    def like_this(
        self, uid: str, *, filters: Filters | None = None, limit: int = 20
    ) -> list[SearchResult]:
        """The takes that sound most like take ``uid`` (itself excluded)."""
        return self.search(like=uid, filters=filters, limit=limit)

    # ------------------------------------------------------------- maintenance

    def backfill(self, *, batch: int = 64) -> int:
        """Compute the embeddings and peak envelopes that takes lack (takes from a v1
        library); returns how many takes were looked at. Silent takes stay without an
        embedding (they are similar to nothing)."""
        done = 0
        last = 0
        while True:
            with self._lock:
                rows = self._conn.execute(
                    "SELECT t.id, t.audio_hash, t.prompt_frames FROM takes t WHERE t.id > ? AND "
                    "(t.peaks IS NULL OR NOT EXISTS (SELECT 1 FROM embeddings e "
                    "WHERE e.take_id = t.id)) ORDER BY t.id LIMIT ?",
                    (last, batch),
                ).fetchall()
            if not rows:
                return done
            last = int(rows[-1][0])
            updates: list[tuple[int, bytes, npt.NDArray[np.float32] | None]] = []
            for take_id, digest, prompt_frames in rows:
                try:
                    clip = self.blobs.get(digest)
                except BlobError as exc:
                    log.warning("backfill: take %d has no readable audio: %s", take_id, exc)
                    continue
                part = (
                    clip.samples[:, prompt_frames:] if prompt_frames < clip.frames else clip.samples
                )
                vec = embedding.embed_samples(part, clip.rate)
                updates.append(
                    (int(take_id), peaks.encode(clip.samples), vec if np.any(vec) else None)
                )
            with self._transaction() as conn:
                for take_id, env, found in updates:
                    conn.execute(
                        "UPDATE takes SET peaks = coalesce(peaks, ?) WHERE id = ?", (env, take_id)
                    )
                    if found is not None:
                        conn.execute(
                            "INSERT OR REPLACE INTO embeddings (take_id, model, dim, vector) "
                            "VALUES (?, ?, ?, ?)",
                            (
                                take_id,
                                embedding.EMBEDDING_MODEL,
                                embedding.DIM,
                                embedding.to_bytes(found),
                            ),
                        )
                        self._index.upsert(take_id, found)
            done += len(rows)

    def gc(
        self,
        *,
        deleted_before: float | None = None,
        orphan_grace: float = 3600.0,
        dry_run: bool = False,
    ) -> GcReport:
        """Purge the trash and unreferenced audio.

        Args:
            deleted_before: purge takes deleted before this time (default: every deleted take).
            orphan_grace: keep unreferenced blobs and partial files younger than this many
                seconds (another process may be about to commit a take that uses them).
            dry_run: count, change nothing.
        """
        cutoff = time.time() if deleted_before is None else float(deleted_before)
        now = time.time()
        with self._lock:
            purge = [
                int(r[0])
                for r in self._conn.execute(
                    "SELECT id FROM takes WHERE deleted IS NOT NULL AND deleted <= ?", (cutoff,)
                )
            ]
            prompt_sql = (
                "FROM prompts WHERE created < ? AND NOT EXISTS (SELECT 1 FROM takes t "
                "WHERE t.prompt_id = prompts.id AND (t.deleted IS NULL OR t.deleted > ?))"
            )
            prompt_params = (now - orphan_grace, cutoff)
            if dry_run:
                prompts = int(
                    self._conn.execute(f"SELECT count(*) {prompt_sql}", prompt_params).fetchone()[0]
                )
            else:
                with self._transaction() as conn:
                    for start in range(0, len(purge), 500):
                        chunk = purge[start : start + 500]
                        marks = ",".join("?" * len(chunk))
                        conn.execute(f"DELETE FROM takes_fts WHERE rowid IN ({marks})", chunk)
                        conn.execute(f"DELETE FROM takes WHERE id IN ({marks})", chunk)
                    prompts = conn.execute(f"DELETE {prompt_sql}", prompt_params).rowcount
                self._index.discard(purge)
            live = {
                str(r[0])
                for r in self._conn.execute(
                    "SELECT audio_hash FROM takes UNION SELECT audio_hash FROM prompts"
                )
            }
            if dry_run:  # the purged takes' audio would be unreferenced too
                keep = {
                    str(r[0])
                    for r in self._conn.execute(
                        "SELECT audio_hash FROM takes WHERE deleted IS NULL OR deleted > ? "
                        "UNION SELECT audio_hash FROM prompts",
                        (cutoff,),
                    )
                }
                live = keep
            removed = 0
            freed = 0
            for digest in list(self.blobs):
                if digest in live:
                    continue
                path = self.blobs.path(digest)
                try:
                    stat = path.stat()
                except OSError:
                    continue
                if now - stat.st_mtime < orphan_grace:
                    continue
                removed += 1
                freed += stat.st_size
                if not dry_run:
                    self.blobs.remove(digest)
            partials = 0 if dry_run else self.blobs.sweep(older_than=orphan_grace)
            if not dry_run:
                self._conn.execute("INSERT INTO takes_fts (takes_fts) VALUES ('optimize')")
                self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return GcReport(len(purge), int(prompts), removed, freed, partials)

    def check(self, *, audio: bool = True) -> list[str]:
        """Problems found: SQLite integrity and foreign keys, keyword index consistency, and
        (``audio``) every referenced blob present and decoding to its hash. Empty = healthy."""
        problems: list[str] = []
        with self._lock:
            result = [str(r[0]) for r in self._conn.execute("PRAGMA integrity_check")]
            if result != ["ok"]:
                problems.extend(f"integrity: {r}" for r in result)
            for row in self._conn.execute("PRAGMA foreign_key_check"):
                problems.append(f"foreign key: {tuple(row)}")
            try:
                self._conn.execute(
                    "INSERT INTO takes_fts (takes_fts, rank) VALUES ('integrity-check', 1)"
                )
            except sqlite3.DatabaseError as exc:
                problems.append(f"keyword index: {exc}")
            missing_fts = self._conn.execute(
                "SELECT count(*) FROM takes t WHERE NOT EXISTS "
                "(SELECT 1 FROM takes_fts f WHERE f.rowid = t.id)"
            ).fetchone()[0]
            if missing_fts:
                problems.append(f"keyword index: {missing_fts} takes are not indexed")
            hashes = [
                str(r[0])
                for r in self._conn.execute(
                    "SELECT audio_hash FROM takes UNION SELECT audio_hash FROM prompts"
                )
            ]
        if audio:
            for digest in hashes:
                if not self.blobs.verify(digest):
                    problems.append(f"audio {digest[:12]}: missing or does not match its hash")
        return problems

    # --------------------------------------------------------- export & import

    def export(
        self,
        dest: str | Path,
        uids: Sequence[str] | None = None,
        *,
        filters: Filters | None = None,
    ) -> Path:
        """Write takes (``uids``, or every take passing ``filters``) with their prompts and
        audio to folder ``dest`` (``library.json`` + ``audio/<ab>/<hash>.flac``), which
        :meth:`import_from` reads into any library. Returns the manifest path."""
        if uids is not None:
            entries = [self.get(u) for u in uids]
        else:
            entries = self.list_takes(filters, limit=None, order="-created")
        folder = Path(dest)
        (folder / AUDIO_DIR).mkdir(parents=True, exist_ok=True)
        prompt_ids = sorted({e.prompt_id for e in entries if e.prompt_id is not None})
        prompts = [self.prompt(i) for i in prompt_ids]
        out = BlobStore(folder / AUDIO_DIR)
        for digest in {e.audio_hash for e in entries} | {p.audio_hash for p in prompts}:
            target = out.path(digest)
            if not target.exists():
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(self.blobs.path(digest), target)
        manifest = {
            "format": EXPORT_FORMAT,
            "app_version": __version__,
            "exported": time.time(),
            "prompts": [p.to_dict() for p in prompts],
            "takes": [e.to_dict() for e in entries],
        }
        path = folder / EXPORT_MANIFEST
        tmp = path.with_name(f".{EXPORT_MANIFEST}.partial")
        tmp.write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
        os.replace(tmp, path)
        return path

    def import_from(self, src: str | Path) -> ImportReport:
        """Read a folder written by :meth:`export`; takes already here (same uid) are skipped.

        Raises:
            LibraryError: not an export folder, or audio that does not match its hash.
        """
        folder = Path(src)
        if folder.is_file() and folder.name == EXPORT_MANIFEST:
            folder = folder.parent
        manifest_path = folder / EXPORT_MANIFEST
        try:
            data = json.loads(manifest_path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise LibraryError(f"{folder}: not a library export ({exc})") from exc
        if not isinstance(data, dict) or data.get("format") != EXPORT_FORMAT:
            raise LibraryError(f"{manifest_path}: not a library export of format {EXPORT_FORMAT}")
        source = BlobStore(folder / AUDIO_DIR)

        def load(digest: str) -> Clip:
            try:
                ok = source.verify(digest)
            except BlobError as exc:
                raise LibraryError(f"{manifest_path}: {exc}") from exc
            if not ok:
                raise LibraryError(
                    f"{source.path(digest)}: missing, or its audio does not match its hash"
                )
            return source.get(digest)

        prompt_map: dict[int, int] = {}
        for p in data.get("prompts", []):
            clip = load(str(p["audio_hash"]))
            entry = self.add_prompt(clip, source=p.get("source", ""), range=tuple(p["range"]))
            prompt_map[int(p["id"])] = entry.id
        added: list[str] = []
        skipped: list[str] = []
        for t in data.get("takes", []):
            uid = str(t["uid"])
            if uid in self:
                skipped.append(uid)
                continue
            clip = load(str(t["audio_hash"]))
            info = TakeInfo(
                engine=t.get("engine", ""),
                model=t.get("model", ""),
                model_version=t.get("model_version", ""),
                model_hash=t.get("model_hash", ""),
                seed=t.get("seed"),
                settings=t.get("settings") or {},
                device=t.get("device", ""),
                created=t.get("created"),
                rtf=t.get("rtf"),
                complete=bool(t.get("complete", True)),
                parent=t.get("parent"),
                name=t.get("name", ""),
                rating=t.get("rating"),
                tags=tuple(t.get("tags") or ()),
                notes=t.get("notes", ""),
                uid=uid,
            )
            old_prompt = t.get("prompt_id")
            self.add_take(
                clip,
                info,
                prompt_id=prompt_map.get(int(old_prompt)) if old_prompt is not None else None,
                prompt_frames=int(t.get("prompt_frames", 0)),
                quality_figures=t.get("quality") or {},
            )
            added.append(uid)
        return ImportReport(added, skipped, len(prompt_map))

    def stats(self) -> dict[str, Any]:
        """Counts and sizes: takes (live, deleted), prompts, audio files and bytes."""
        with self._lock:
            live, deleted = self._conn.execute(
                "SELECT count(*) FILTER (WHERE deleted IS NULL), "
                "count(*) FILTER (WHERE deleted IS NOT NULL) FROM takes"
            ).fetchone()
            prompts = self._conn.execute("SELECT count(*) FROM prompts").fetchone()[0]
        files = list(self.blobs)
        size = sum(self.blobs.path(d).stat().st_size for d in files)
        return {
            "root": str(self.root),
            "schema_version": self.schema_version,
            "takes": int(live),
            "deleted": int(deleted),
            "prompts": int(prompts),
            "audio_files": len(files),
            "audio_bytes": int(size),
        }
