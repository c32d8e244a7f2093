"""Schema migrations: every earlier version opens as the latest, with its data intact."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from library_v1 import V1_TAKES, build_v1_library, v1_sound

from audiogen_studio.library import Filters, LibraryError, TakeLibrary, embedding, peaks, schema

GOLDEN_V1 = Path(__file__).parent / "data" / "library-v1"


def _tables(db: Path) -> list[tuple[str, str, str]]:
    conn = sqlite3.connect(db)
    try:
        rows = conn.execute(
            "SELECT type, name, sql FROM sqlite_schema WHERE name NOT LIKE 'sqlite_%' "
            "ORDER BY type, name"
        ).fetchall()
    finally:
        conn.close()
    return [(str(t), str(n), str(s)) for t, n, s in rows]


def test_a_new_library_is_at_the_latest_version_in_wal_mode(tmp_path: Path) -> None:
    with TakeLibrary(tmp_path / "lib") as lib:
        assert lib.schema_version == schema.SCHEMA_VERSION == len(schema.MIGRATIONS)
        assert lib.migrated_from == 0
    conn = sqlite3.connect(tmp_path / "lib" / "library.sqlite3")
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()


def test_versions_are_consecutive_and_each_step_is_valid_sql() -> None:
    assert [m.version for m in schema.MIGRATIONS] == list(range(1, schema.SCHEMA_VERSION + 1))
    for m in schema.MIGRATIONS:
        assert schema.split_statements(m.sql), m.description


def _assert_v1_data_survived(lib: TakeLibrary) -> None:
    assert lib.schema_version == schema.SCHEMA_VERSION
    assert lib.count() == 2 and lib.count(Filters(deleted=None)) == 3
    drone = lib.get(V1_TAKES[0][0])
    assert drone.name == "Rainy drone" and drone.tags == ("drone", "rain")
    assert drone.rating == 5 and drone.settings == {"temperature": 0.9, "seed": 0}
    assert drone.engine == "audiolm" and drone.model == "speech" and drone.device == "cpu"
    assert drone.prompt_id == 1 and lib.prompt(1).source == "riff.wav"
    assert lib.get(V1_TAKES[2][0]).deleted == 1700000000.0
    # the keyword index carried over
    assert [r.take.uid for r in lib.search("rain")] == [drone.uid]
    assert [r.take.uid for r in lib.search("bel")] == [V1_TAKES[1][0]]
    # v2 data was backfilled from the audio: embeddings and peak envelopes
    for i, row in enumerate(V1_TAKES):
        entry = lib.get(row[0])
        expected = embedding.embed(v1_sound(i))
        stored = lib.vector(entry.uid)
        assert stored is not None and float(stored @ expected) > 0.999
        env = peaks.decode(entry.peaks)
        assert env.shape == (2, peaks.BUCKETS)
        assert env.max() == pytest.approx(float(np.abs(v1_sound(i).samples).max()), abs=0.02)
    # and similarity search works on migrated takes: the two bells find each other
    lib.undelete(V1_TAKES[2][0])
    assert lib.like_this(V1_TAKES[1][0], limit=1)[0].take.uid == V1_TAKES[2][0]
    assert lib.check() == []


@pytest.mark.parametrize("version", range(1, schema.SCHEMA_VERSION))
def test_every_earlier_version_migrates_to_the_latest(tmp_path: Path, version: int) -> None:
    build_v1_library(tmp_path / "lib", to_version=version)
    with TakeLibrary(tmp_path / "lib") as lib:
        assert lib.migrated_from == version
        _assert_v1_data_survived(lib)
    fresh = tmp_path / "fresh"
    TakeLibrary(fresh).close()
    assert _tables(tmp_path / "lib" / "library.sqlite3") == _tables(fresh / "library.sqlite3")


def test_the_shipped_v1_file_migrates(tmp_path: Path) -> None:
    """A library file written by v1 and kept in the repository (so that an edit to the v1
    step, which must never happen, cannot go unnoticed)."""
    shutil.copytree(GOLDEN_V1, tmp_path / "lib")
    conn = sqlite3.connect(tmp_path / "lib" / "library.sqlite3")
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 1
    conn.close()
    with TakeLibrary(tmp_path / "lib") as lib:
        assert lib.migrated_from == 1
        _assert_v1_data_survived(lib)


def test_a_failing_step_leaves_the_previous_version(tmp_path: Path) -> None:
    db = build_v1_library(tmp_path / "lib")
    broken = (
        schema.MIGRATIONS[0],
        schema.Migration(2, "broken", "CREATE TABLE extra (x);\nSELECT * FROM no_such_table;"),
    )
    conn = sqlite3.connect(db, isolation_level=None)
    with pytest.raises(sqlite3.OperationalError):
        schema.migrate(conn, migrations=broken)
    assert schema.user_version(conn) == 1
    assert (
        conn.execute("SELECT count(*) FROM sqlite_schema WHERE name = 'extra'").fetchone()[0] == 0
    )
    conn.close()
    with TakeLibrary(tmp_path / "lib") as lib:  # the real steps still apply afterwards
        assert lib.schema_version == schema.SCHEMA_VERSION and lib.count() == 2


def test_a_newer_library_is_refused_with_a_clear_message(tmp_path: Path) -> None:
    TakeLibrary(tmp_path / "lib").close()
    conn = sqlite3.connect(tmp_path / "lib" / "library.sqlite3")
    conn.execute(f"PRAGMA user_version = {schema.SCHEMA_VERSION + 1}")
    conn.commit()
    conn.close()
    with pytest.raises(LibraryError, match="newer than this version"):
        TakeLibrary(tmp_path / "lib")


def test_a_foreign_database_is_refused(tmp_path: Path) -> None:
    (tmp_path / "lib").mkdir()
    conn = sqlite3.connect(tmp_path / "lib" / "library.sqlite3")
    conn.execute("CREATE TABLE customers (id INTEGER)")
    conn.commit()
    conn.close()
    with pytest.raises(LibraryError, match="no library schema"):
        TakeLibrary(tmp_path / "lib")
