"""Finding takes: keyword (FTS5 + bm25), sound similarity, filters, hybrid ranking (issue 7 §3).

* **Keyword**: the ``takes_fts`` FTS5 table (name, tags, notes, model, engine) ranked by bm25
  with column weights :data:`BM25_WEIGHTS`. The user's text is split into words, each matched
  as a prefix (``"rai"*`` finds "rain"), all words required; no FTS syntax reaches SQLite, so
  any text is a valid query.
* **Similarity**: one L2-normalised embedding per take (:mod:`~audiogen_studio.library.
  embedding`); similarity is the dot product (cosine). Two back ends answer the same question:
  :class:`VectorIndex`, a numpy scan over a float32 matrix cached in memory (reloaded when
  another process commits, see ``PRAGMA data_version``), and :class:`SqliteVecSearch`, the
  ``vec_distance_cosine`` function of the ``sqlite-vec`` extension over the ``embeddings``
  table. ``benchmarks/library.py`` measures both on 10,000 takes; the numpy scan is the
  default (it was faster there, and Python's ``sqlite3`` is often built without extension
  loading, in which case sqlite-vec is reached through ``apsw`` or not at all —
  :func:`sqlite_vec_status` says which and why).
* **Filters** (:class:`Filters`): engine, model, rating, date range, tags, deleted or not; the
  same SQL ``WHERE`` serves every kind of search.
* **Hybrid**: reciprocal rank fusion (Cormack, Clarke & Büttcher 2009):
  ``score = Σ_lists w / (k + rank)`` with ``k = 60``, over the top candidates of each list.
"""

from __future__ import annotations

import importlib
import json
import re
import sqlite3
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from audiogen_studio.library import embedding

__all__ = [
    "BM25_WEIGHTS",
    "RRF_K",
    "Filters",
    "SqliteVecSearch",
    "VectorIndex",
    "deleted_ids",
    "filtered_top",
    "fts_query",
    "keyword",
    "passing",
    "reciprocal_rank_fusion",
    "sqlite_vec_status",
]

#: bm25 column weights for (name, tags, notes, model, engine)
BM25_WEIGHTS = (4.0, 3.0, 1.0, 2.0, 2.0)
RRF_K = 60
_WORD = re.compile(r"\w+", re.UNICODE)


@dataclass(frozen=True, slots=True)
class Filters:
    """Which takes a search or listing considers (every field optional; all must hold).

    Attributes:
        engine, model: exact engine key / model bundle name.
        min_rating, max_rating: rating bounds (1–5); a bound excludes unrated takes.
        since, until: ``created`` bounds, seconds since the epoch (``until`` exclusive).
        tags: takes carrying every one of these tags.
        prompt_id: takes of one prompt.
        deleted: ``False`` (default) live takes only, ``True`` only deleted ones (the trash),
            ``None`` both.
    """

    engine: str | None = None
    model: str | None = None
    min_rating: int | None = None
    max_rating: int | None = None
    since: float | None = None
    until: float | None = None
    tags: tuple[str, ...] = ()
    prompt_id: int | None = None
    deleted: bool | None = False

    def where(self, alias: str = "t") -> tuple[str, list[Any]]:
        """``(sql, params)``: a boolean SQL expression over the ``takes`` table as ``alias``."""
        clauses: list[str] = []
        params: list[Any] = []
        if self.deleted is False:
            clauses.append(f"{alias}.deleted IS NULL")
        elif self.deleted is True:
            clauses.append(f"{alias}.deleted IS NOT NULL")
        if self.engine:
            clauses.append(f"{alias}.engine = ?")
            params.append(self.engine)
        if self.model:
            clauses.append(f"{alias}.model = ?")
            params.append(self.model)
        if self.min_rating is not None:
            clauses.append(f"{alias}.rating >= ?")
            params.append(int(self.min_rating))
        if self.max_rating is not None:
            clauses.append(f"{alias}.rating <= ?")
            params.append(int(self.max_rating))
        if self.since is not None:
            clauses.append(f"{alias}.created >= ?")
            params.append(float(self.since))
        if self.until is not None:
            clauses.append(f"{alias}.created < ?")
            params.append(float(self.until))
        if self.prompt_id is not None:
            clauses.append(f"{alias}.prompt_id = ?")
            params.append(int(self.prompt_id))
        for tag in self.tags:
            clauses.append(
                f"EXISTS (SELECT 1 FROM tags g WHERE g.take_id = {alias}.id AND g.tag = ?)"
            )
            params.append(tag)
        return (" AND ".join(clauses) or "1"), params

    @property
    def only_excludes_deleted(self) -> bool:
        """True when the filter is the default (live takes, nothing else)."""
        return self == Filters()


def fts_query(text: str) -> str | None:
    """The FTS5 MATCH expression for free text: every word as a quoted prefix, all required;
    ``None`` when ``text`` has no words."""
    words = _WORD.findall(text.lower())
    if not words:
        return None
    return " AND ".join(f'"{w}"*' for w in words)


def keyword(
    conn: Any, text: str, filters: Filters | None = None, *, limit: int = 50
) -> list[tuple[int, float]]:
    """Takes matching ``text``, best first: ``[(rowid, -bm25)]`` (higher = better).

    FTS5 ranks its matches alone (reading no take rows), and the filters are applied to the
    best of them (:func:`filtered_top`): joining every match to ``takes`` first cost twice as
    much for a word found in a quarter of 10,000 takes.
    """
    match = fts_query(text)
    if match is None:
        return []
    weights = ", ".join(str(w) for w in BM25_WEIGHTS)
    sql = (
        f"SELECT rowid, bm25(takes_fts, {weights}) AS s FROM takes_fts "
        "WHERE takes_fts MATCH ? ORDER BY s LIMIT ?"
    )

    def fetch(k: int | None) -> list[tuple[int, float]]:
        rows = conn.execute(sql, (match, -1 if k is None else int(k))).fetchall()
        return [(int(r[0]), -float(r[1])) for r in rows]

    return filtered_top(conn, fetch, filters or Filters(), limit=limit)


def passing(conn: Any, ids: Sequence[int], filters: Filters) -> set[int]:
    """The rowids among ``ids`` that pass ``filters``."""
    if not ids:
        return set()
    if filters.only_excludes_deleted:
        gone = set(deleted_ids(conn).tolist())
        return {i for i in ids if i not in gone}
    where, params = filters.where("t")
    # CROSS JOIN keeps json_each the outer loop: one rowid lookup per candidate, where the
    # planner would otherwise walk a filter index (e.g. every take of an engine)
    rows = conn.execute(
        f"SELECT t.id FROM json_each(?) AS j CROSS JOIN takes t ON t.id = j.value WHERE {where}",
        [json.dumps([int(i) for i in ids]), *params],
    )
    return {int(r[0]) for r in rows}


def filtered_top(
    conn: Any,
    fetch: Callable[[int | None], list[tuple[int, float]]],
    filters: Filters,
    *,
    limit: int,
) -> list[tuple[int, float]]:
    """The ``limit`` best of a ranking that pass ``filters``, by oversampling.

    ``fetch(k)`` gives the ``k`` best overall (``None``: the whole ranking). The first
    ``max(4 * limit, 256)`` are checked; when too few pass, the whole ranking is fetched once
    and checked in blocks of 1,024 until enough pass (re-ranking costs as much as ranking all:
    FTS5 scores every match either way).
    """
    if limit <= 0:
        return []
    first = max(4 * limit, 256)
    ranked = fetch(first)
    ok = passing(conn, [i for i, _ in ranked], filters)
    out = [r for r in ranked if r[0] in ok][:limit]
    if len(out) >= limit or len(ranked) < first:
        return out
    ranked = fetch(None)
    for start in range(first, len(ranked), 1024):
        block = ranked[start : start + 1024]
        ok = passing(conn, [i for i, _ in block], filters)
        out.extend(r for r in block if r[0] in ok)
        if len(out) >= limit:
            break
    return out[:limit]


def deleted_ids(conn: Any) -> npt.NDArray[np.int64]:
    """Rowids of soft-deleted takes, sorted (usually few)."""
    rows = conn.execute("SELECT id FROM takes WHERE deleted IS NOT NULL")  # partial index
    return np.sort(np.fromiter((r[0] for r in rows), dtype=np.int64))


class VectorIndex:
    """Every take's embedding as one float32 matrix ``[N, DIM]``, scanned with numpy.

    The matrix is loaded on first use and kept; :meth:`upsert` / :meth:`discard` keep it in
    step with this process's own writes, and :meth:`refresh` reloads it when the database's
    ``PRAGMA data_version`` says another connection committed.
    """

    def __init__(self, model: str = embedding.EMBEDDING_MODEL) -> None:
        self.model = model
        self._ids = np.zeros(0, np.int64)
        self._matrix = np.zeros((0, embedding.DIM), np.float32)
        self._version: int | None = None

    def __len__(self) -> int:
        return int(self._ids.size)

    @property
    def loaded(self) -> bool:
        """Whether the matrix has been read from the database."""
        return self._version is not None

    def invalidate(self) -> None:
        """Forget the matrix; the next query reloads it."""
        self._version = None

    def refresh(self, conn: sqlite3.Connection) -> None:
        """Load the matrix if it was never loaded or another connection changed the data."""
        version = int(conn.execute("PRAGMA data_version").fetchone()[0])
        if self._version == version:
            return
        rows = conn.execute(
            "SELECT take_id, vector FROM embeddings WHERE model = ? ORDER BY take_id",
            (self.model,),
        ).fetchall()
        ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
        if rows:
            flat = np.frombuffer(b"".join(r[1] for r in rows), dtype="<f4")
            matrix = flat.reshape(len(rows), -1).astype(np.float32)
        else:
            matrix = np.zeros((0, embedding.DIM), np.float32)
        self._ids, self._matrix, self._version = ids, matrix, version

    def upsert(self, take_id: int, vector: npt.NDArray[np.float32]) -> None:
        """Add or replace one take's vector (after this process committed it)."""
        if not self.loaded:
            return
        pos = int(np.searchsorted(self._ids, take_id))
        if pos < self._ids.size and self._ids[pos] == take_id:
            self._matrix[pos] = vector
            return
        self._ids = np.insert(self._ids, pos, take_id)
        self._matrix = np.insert(self._matrix, pos, vector, axis=0)

    def discard(self, take_ids: Iterable[int]) -> None:
        """Drop takes (after this process purged them)."""
        if not self.loaded:
            return
        keep = ~np.isin(self._ids, np.fromiter(take_ids, dtype=np.int64))
        self._ids, self._matrix = self._ids[keep], self._matrix[keep]

    def vector(self, take_id: int) -> npt.NDArray[np.float32] | None:
        """The stored vector of a take, or ``None``."""
        pos = int(np.searchsorted(self._ids, take_id))
        if pos < self._ids.size and self._ids[pos] == take_id:
            row: npt.NDArray[np.float32] = self._matrix[pos].copy()
            return row
        return None

    def query(
        self,
        vector: npt.ArrayLike,
        *,
        limit: int = 50,
        allowed: npt.NDArray[np.int64] | None = None,
        excluded: npt.NDArray[np.int64] | None = None,
    ) -> list[tuple[int, float]]:
        """The ``limit`` takes most similar to ``vector``: ``[(rowid, cosine)]``, best first.

        ``allowed`` (sorted rowids) restricts the candidates; ``excluded`` removes some.
        """
        if self._ids.size == 0 or limit <= 0:
            return []
        q = np.asarray(vector, dtype=np.float32).reshape(-1)
        # [N, D] x [D] -> [N]; einsum, not BLAS sgemv: on a busy 2-core machine OpenBLAS's
        # threads made ``matrix @ q`` take 4-21 ms at N = 10,000, einsum a steady 1-1.7 ms
        scores = np.einsum("nd,d->n", self._matrix, q)
        mask = None
        if allowed is not None:
            mask = np.isin(self._ids, allowed, assume_unique=True)
        if excluded is not None and excluded.size:
            out = ~np.isin(self._ids, excluded)
            mask = out if mask is None else mask & out
        if mask is not None:
            scores = np.where(mask, scores, -np.inf)
        k = min(limit, scores.size)
        top = np.argpartition(-scores, k - 1)[:k] if k < scores.size else np.arange(scores.size)
        top = top[np.argsort(-scores[top], kind="stable")]
        keep = top[np.isfinite(scores[top])]
        return list(zip(self._ids[keep].tolist(), scores[keep].tolist(), strict=True))


def sqlite_vec_status() -> tuple[str | None, str]:
    """How sqlite-vec can be used here: ``("sqlite3" | "apsw" | None, reason)``."""
    try:
        import sqlite_vec
    except ImportError:
        return None, "the sqlite-vec package is not installed"
    probe = sqlite3.connect(":memory:")
    try:
        if hasattr(probe, "enable_load_extension"):
            try:
                probe.enable_load_extension(True)
                sqlite_vec.load(probe)
                return "sqlite3", "sqlite-vec loads into the standard library's sqlite3"
            except sqlite3.Error as exc:
                reason = f"sqlite3 could not load sqlite-vec ({exc})"
        else:
            reason = "this Python's sqlite3 was built without loadable-extension support"
    finally:
        probe.close()
    try:
        importlib.import_module("apsw")
    except ImportError:
        return None, f"{reason}, and apsw (which can load it) is not installed"
    return "apsw", f"{reason}; sqlite-vec is loaded through apsw"


_VEC_SQL = (
    "SELECT e.take_id, vec_distance_cosine(e.vector, ?) AS d FROM embeddings e "
    "JOIN takes t ON t.id = e.take_id WHERE e.model = ? AND {where} ORDER BY d LIMIT ?"
)


class SqliteVecSearch:
    """Similarity through the ``sqlite-vec`` extension on a second, read-only connection.

    Uses the standard library's ``sqlite3`` where it can load extensions, otherwise ``apsw``.

    Raises:
        RuntimeError: neither can load sqlite-vec (the message says why).
    """

    def __init__(self, database: str | Path, model: str = embedding.EMBEDDING_MODEL) -> None:
        import sqlite_vec

        self.model = model
        how, reason = sqlite_vec_status()
        self.driver = how
        uri = f"file:{Path(database).resolve()}?mode=ro"
        self._conn: Any
        if how == "sqlite3":
            conn = sqlite3.connect(uri, uri=True, check_same_thread=False)
            conn.enable_load_extension(True)
            sqlite_vec.load(conn)
            conn.enable_load_extension(False)
            self._conn = conn
        elif how == "apsw":
            apsw = importlib.import_module("apsw")
            conn = apsw.Connection(uri, flags=apsw.SQLITE_OPEN_READONLY | apsw.SQLITE_OPEN_URI)
            conn.enable_load_extension(True)
            conn.load_extension(sqlite_vec.loadable_path())
            conn.enable_load_extension(False)
            self._conn = conn
        else:
            raise RuntimeError(f"sqlite-vec is unavailable: {reason}")
        self._conn.execute("PRAGMA busy_timeout = 10000")

    def query(
        self, vector: npt.ArrayLike, filters: Filters | None = None, *, limit: int = 50
    ) -> list[tuple[int, float]]:
        """Same contract as :meth:`VectorIndex.query`: ``[(rowid, cosine)]``, best first."""
        where, params = (filters or Filters()).where("t")
        sql = _VEC_SQL.format(where=where)
        blob = embedding.to_bytes(vector)
        rows = self._conn.execute(sql, [blob, self.model, *params, int(limit)]).fetchall()
        return [(int(r[0]), 1.0 - float(r[1])) for r in rows]

    def close(self) -> None:
        """Close the connection."""
        self._conn.close()


def reciprocal_rank_fusion(
    lists: Sequence[Sequence[int]], weights: Sequence[float] | None = None, *, k: int = RRF_K
) -> list[tuple[int, float]]:
    """Fuse ranked id lists (best first): ``[(id, Σ w / (k + rank))]``, best first (rank 1-based;
    ties keep the order of first appearance)."""
    weights = [1.0] * len(lists) if weights is None else list(weights)
    scores: dict[int, float] = {}
    for ranked, w in zip(lists, weights, strict=True):
        for rank, item in enumerate(ranked, start=1):
            scores[item] = scores.get(item, 0.0) + w / (k + rank)
    return sorted(scores.items(), key=lambda kv: -kv[1])
