"""The take library's SQLite schema and its migrations (issue 7, DESIGN.md §8).

The schema version lives in ``PRAGMA user_version``. :data:`MIGRATIONS` is the ordered list of
every step ever shipped: step ``n`` turns a version ``n - 1`` database into version ``n``, and is
never edited once released (a change is a new step). A new database runs every step from 0, so
a fresh library and a migrated one have the same schema by construction. Each step runs in one
transaction together with its ``user_version`` bump: a process killed mid-migration leaves the
previous version intact.

Version history:

* **v1** — prompts, takes (provenance + user fields + soft delete), tags, and an FTS5 index over
  name / tags / notes / model / engine whose rowid is the take's rowid.
* **v2** — one audio embedding per take (``embeddings``), automatic quality figures
  (``quality``), a small peak envelope per take for mini waveforms (``takes.peaks``), and the
  indexes the filters use. Takes that came from a v1 library have no embedding or peaks until
  :meth:`~audiogen_studio.library.store.TakeLibrary.backfill` computes them from their audio
  (done automatically when a library is migrated past v2, see :data:`NEEDS_BACKFILL`).

The library is always opened in WAL mode with ``synchronous=NORMAL``: a killed process never
corrupts the database and loses no committed transaction (only a power cut may lose the last
few commits, never consistency).
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

__all__ = [
    "MIGRATIONS",
    "NEEDS_BACKFILL",
    "SCHEMA_VERSION",
    "Migration",
    "SchemaError",
    "configure",
    "migrate",
    "split_statements",
    "user_version",
]


class SchemaError(RuntimeError):
    """The database was written by a newer version of the app, or is not a take library."""


@dataclass(frozen=True, slots=True)
class Migration:
    """One schema step: ``sql`` turns version ``version - 1`` into ``version``."""

    version: int
    description: str
    sql: str


V1 = """
CREATE TABLE prompts (
    id          INTEGER PRIMARY KEY,
    audio_hash  TEXT    NOT NULL,
    source      TEXT    NOT NULL DEFAULT '',
    range_start INTEGER NOT NULL DEFAULT 0,
    range_end   INTEGER NOT NULL,
    rate        INTEGER NOT NULL,
    channels    INTEGER NOT NULL,
    frames      INTEGER NOT NULL,
    created     REAL    NOT NULL,
    UNIQUE (audio_hash, source, range_start, range_end)
);
CREATE TABLE takes (
    id            INTEGER PRIMARY KEY,
    uid           TEXT    NOT NULL UNIQUE,
    prompt_id     INTEGER REFERENCES prompts(id) ON DELETE SET NULL,
    parent_uid    TEXT,
    audio_hash    TEXT    NOT NULL,
    rate          INTEGER NOT NULL,
    channels      INTEGER NOT NULL,
    frames        INTEGER NOT NULL,
    prompt_frames INTEGER NOT NULL DEFAULT 0,
    engine        TEXT    NOT NULL DEFAULT '',
    model         TEXT    NOT NULL DEFAULT '',
    model_version TEXT    NOT NULL DEFAULT '',
    model_hash    TEXT    NOT NULL DEFAULT '',
    seed          INTEGER,
    settings      TEXT    NOT NULL DEFAULT '{}',
    device        TEXT    NOT NULL DEFAULT '',
    created       REAL    NOT NULL,
    duration      REAL    NOT NULL,
    rtf           REAL,
    complete      INTEGER NOT NULL DEFAULT 1,
    name          TEXT    NOT NULL DEFAULT '',
    rating        INTEGER CHECK (rating BETWEEN 1 AND 5),
    notes         TEXT    NOT NULL DEFAULT '',
    deleted       REAL
);
CREATE INDEX takes_created ON takes (created);
CREATE INDEX takes_audio ON takes (audio_hash);
CREATE TABLE tags (
    take_id INTEGER NOT NULL REFERENCES takes(id) ON DELETE CASCADE,
    tag     TEXT    NOT NULL,
    PRIMARY KEY (take_id, tag)
) WITHOUT ROWID;
CREATE INDEX tags_by_tag ON tags (tag);
CREATE VIRTUAL TABLE takes_fts USING fts5(
    name, tags, notes, model, engine,
    tokenize = 'unicode61 remove_diacritics 2',
    prefix = '2 3'
);
"""

V2 = """
ALTER TABLE takes ADD COLUMN peaks BLOB;
CREATE TABLE embeddings (
    take_id INTEGER PRIMARY KEY REFERENCES takes(id) ON DELETE CASCADE,
    model   TEXT    NOT NULL,
    dim     INTEGER NOT NULL,
    vector  BLOB    NOT NULL
);
CREATE TABLE quality (
    take_id INTEGER NOT NULL REFERENCES takes(id) ON DELETE CASCADE,
    metric  TEXT    NOT NULL,
    value   REAL    NOT NULL,
    PRIMARY KEY (take_id, metric)
) WITHOUT ROWID;
CREATE INDEX takes_engine_model ON takes (engine, model);
CREATE INDEX takes_rating ON takes (rating);
CREATE INDEX takes_prompt ON takes (prompt_id);
CREATE INDEX takes_deleted ON takes (deleted) WHERE deleted IS NOT NULL;
"""

MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "prompts, takes, tags, FTS5 keyword index", V1),
    Migration(2, "embeddings, quality figures, peak envelopes, filter indexes", V2),
)
SCHEMA_VERSION = MIGRATIONS[-1].version
#: a library migrated from below this version gets embeddings and peaks computed afterwards
NEEDS_BACKFILL = 2


def split_statements(sql: str) -> list[str]:
    """``sql`` cut into complete statements (``sqlite3.complete_statement`` decides)."""
    out: list[str] = []
    current = ""
    for line in sql.splitlines(keepends=True):
        current += line
        if sqlite3.complete_statement(current):
            if current.strip():
                out.append(current.strip())
            current = ""
    if current.strip():
        raise ValueError(f"incomplete SQL statement: {current.strip()[:80]}")
    return out


def configure(conn: sqlite3.Connection) -> None:
    """Connection settings every library connection uses: WAL, NORMAL sync, foreign keys."""
    conn.execute("PRAGMA busy_timeout = 10000")
    mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
    if str(mode).lower() != "wal":
        raise SchemaError(f"the library database cannot use WAL mode (got {mode!r})")
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute("PRAGMA foreign_keys = ON")


def user_version(conn: sqlite3.Connection) -> int:
    """The schema version stored in the database (0 for a new, empty one)."""
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def migrate(
    conn: sqlite3.Connection,
    *,
    target: int = SCHEMA_VERSION,
    migrations: tuple[Migration, ...] = MIGRATIONS,
) -> int:
    """Bring the database up to ``target``; returns the version it had before.

    ``conn`` must be in autocommit mode (``isolation_level=None``). Every step runs in its own
    ``BEGIN IMMEDIATE`` transaction, so concurrent openers serialise and a killed process leaves
    a whole version behind.

    Raises:
        SchemaError: the database is newer than ``target`` knows, or is some other database.
    """
    start = user_version(conn)
    newest = migrations[-1].version if migrations else 0
    if start > newest:
        raise SchemaError(
            f"the take library has schema v{start}, newer than this version of the app "
            f"understands (v{newest}); update AudioGen Studio"
        )
    if start == 0:
        tables = conn.execute(
            "SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
        ).fetchone()[0]
        if tables:
            raise SchemaError("the database holds tables but no library schema version")
    for step in migrations:
        if step.version > target:
            break
        conn.execute("BEGIN IMMEDIATE")
        try:
            if user_version(conn) >= step.version:  # another process got here first
                conn.execute("ROLLBACK")
                continue
            for statement in split_statements(step.sql):
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {int(step.version)}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    return start
