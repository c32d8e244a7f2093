"""Take library targets (issue 7) on 10,000 synthetic takes, printed as one JSON object.

Builds a library of ``--takes`` (default 10,000) short synthetic takes (tones with harmonics,
coloured noise, pulse trains and mixtures; 0.5 s at 16 kHz) with plausible metadata: 2 engines,
6 models, seeds, ratings, 1–3 tags from 40 words, names, notes on some, dates over 180 days.
The build goes through the public ``add_take`` (audio ``fsync`` off to save time; it is
reported, not a target). Then, on that library, in this process unless said otherwise:

* ``open_ms`` — ``TakeLibrary(root)`` + ``close()`` (connect, WAL/pragma setup, schema check);
  also ``open_cold_process_ms``: a fresh interpreter importing the package and opening it.
* ``keyword_ms`` — ``search(text)`` (FTS5 bm25 + fetching the 50 best takes), over queries
  from rare to very common words, prefixes and two-word queries: median and worst query.
* ``similarity_ms`` — ``search(vector=...)`` for embeddings of fresh clips, top 50 fetched,
  for each back end: ``numpy`` (scan of the cached ``[N, 192]`` matrix; its one-off load is
  ``index_load_ms``) and ``sqlite-vec`` (``vec_distance_cosine`` over the embeddings table,
  through apsw where this Python's sqlite3 cannot load extensions); also with a filter, and the
  ANN-free ``vec0`` virtual table's KNN query on an in-memory copy for reference.
* ``hybrid_ms`` and ``like_this_ms`` — fused words + sound; "find takes like this one".
* ``add_take_ms`` — adding a 4 s take to the 10,000-take library with fsync on (the real
  path), split into ``encode_ms`` (24-bit FLAC encode + fsync + rename: excluded from the
  target, as the issue says), ``analysis_ms`` (embedding + peak envelope) and ``commit_ms``
  (one transaction: take, tags, keyword index, embedding). ``add_take_ms`` = analysis + commit.

    .venv/bin/python benchmarks/library.py [--takes 10000] [--keep DIR] [--repeat 30]
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import functools  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import shutil  # noqa: E402
import sqlite3  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402

from audiogen_studio.audio.clip import Clip  # noqa: E402
from audiogen_studio.library import (  # noqa: E402
    Filters,
    TakeInfo,
    TakeLibrary,
    embedding,
    peaks,
    search,
)
from audiogen_studio.library.store import PreparedTake  # noqa: E402

RATE = 16000
TARGETS_MS = {"keyword": 20.0, "similarity": 50.0, "open": 200.0, "add_take": 30.0}
WORDS = (
    "rain",
    "wind",
    "drone",
    "bell",
    "pad",
    "glitch",
    "voice",
    "bass",
    "kick",
    "snare",
    "texture",
    "warm",
    "bright",
    "dark",
    "airy",
    "metallic",
    "wooden",
    "glassy",
    "noisy",
    "clean",
    "sparse",
    "dense",
    "slow",
    "fast",
    "riser",
    "impact",
    "whoosh",
    "hum",
    "buzz",
    "choir",
    "strings",
    "piano",
    "guitar",
    "organ",
    "synth",
    "field",
    "room",
    "hall",
    "tape",
    "vinyl",
)
ENGINES = ("audiolm", "wavenet")
MODELS = (
    ("speech", "1.2"),
    ("music", "0.9"),
    ("tiny", "1.0"),
    ("piano", "2.0"),
    ("voices", "1.1"),
    ("fx", "0.3"),
)


def synth_clip(rng: np.random.Generator, seconds: float = 0.5) -> Clip:
    """A random short sound: tone with harmonics, coloured noise, pulses, or a mixture."""
    n = int(seconds * RATE)
    t = np.arange(n) / RATE
    kind = int(rng.integers(0, 4))
    x = np.zeros(n)
    if kind in (0, 3):
        f0 = float(np.exp(rng.uniform(np.log(80), np.log(4000))))
        for h in range(1, int(rng.integers(1, 6)) + 1):
            if f0 * h < RATE / 2:
                x += np.sin(2 * np.pi * f0 * h * t + rng.uniform(0, 6)) / h ** rng.uniform(0.5, 2)
    if kind in (1, 3):
        w = rng.standard_normal(n)
        k = int(rng.integers(1, 32))
        x += np.convolve(w, np.ones(k) / np.sqrt(k), mode="same") * rng.uniform(0.2, 1.0)
    if kind == 2:
        period = int(RATE / rng.uniform(2, 40))
        burst = rng.standard_normal(200) * np.exp(-np.arange(200) / rng.uniform(10, 60))
        for s in range(int(rng.integers(0, period)), n - 200, period):
            x[s : s + 200] += burst
    x *= rng.uniform(0.05, 0.6) / max(1e-9, float(np.abs(x).max()))
    return Clip(x.astype(np.float32), RATE)


def synth_info(rng: np.random.Generator, i: int, t0: float) -> TakeInfo:
    model, version = MODELS[int(rng.integers(0, len(MODELS)))]
    tags = tuple(str(w) for w in rng.choice(WORDS, int(rng.integers(1, 4)), replace=False))
    named = rng.random() < 0.3
    return TakeInfo(
        engine=ENGINES[int(rng.integers(0, 2))],
        model=model,
        model_version=version,
        model_hash=f"{int(rng.integers(0, 2**63)):016x}" * 4,
        seed=int(rng.integers(0, 2**31)),
        settings={"temperature": float(rng.choice([0.7, 0.9, 1.0])), "top_k": 50, "seconds": 4},
        device="cpu",
        created=t0 + float(rng.uniform(0, 180 * 86400)),
        rtf=float(rng.uniform(0.05, 3.0)),
        name=f"{str(rng.choice(WORDS)).title()} {rng.choice(WORDS)!s} {i}" if named else "",
        rating=int(rng.integers(1, 6)) if rng.random() < 0.4 else None,
        tags=tags,
        notes=" ".join(str(w) for w in rng.choice(WORDS, 5)) if rng.random() < 0.2 else "",
    )


def build(root: Path, count: int, seed: int = 0) -> float:
    """Fill ``root`` with ``count`` takes; returns seconds taken."""
    rng = np.random.default_rng(seed)
    t0 = time.time() - 200 * 86400
    start = time.perf_counter()
    with TakeLibrary(root, sync_audio=False) as lib:
        prompts = [
            lib.add_prompt(synth_clip(rng, 0.25), source=f"prompt{p}.wav") for p in range(50)
        ]
        for i in range(count):
            lib.add_take(
                synth_clip(rng),
                synth_info(rng, i, t0),
                prompt_id=prompts[int(rng.integers(0, len(prompts)))].id,
                prompt_frames=0,
            )
            if (i + 1) % 1000 == 0:
                print(f"  built {i + 1} takes", file=sys.stderr, flush=True)
    return time.perf_counter() - start


def timed(fn: Callable[[], Any], repeat: int) -> list[float]:
    """Milliseconds of ``repeat`` calls."""
    out = []
    for _ in range(repeat):
        s = time.perf_counter()
        fn()
        out.append((time.perf_counter() - s) * 1e3)
    return out


def summary(ms: list[float]) -> dict[str, float]:
    ms = sorted(ms)
    return {
        "median": round(statistics.median(ms), 3),
        "p95": round(ms[min(len(ms) - 1, int(0.95 * len(ms)))], 3),
        "max": round(ms[-1], 3),
    }


def measure_open(root: Path, repeat: int) -> dict[str, Any]:
    def once() -> None:
        TakeLibrary(root).close()

    once()
    warm = summary(timed(once, repeat))
    code = (
        "import time; s = time.perf_counter()\n"
        "from audiogen_studio.library import TakeLibrary\n"
        f"TakeLibrary({str(root)!r}).close()\n"
        "print((time.perf_counter() - s) * 1e3)"
    )
    cold = []
    for _ in range(5):
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
        )
        cold.append(float(out.stdout.strip()))
    return {"open_ms": warm, "open_cold_process_ms": summary(cold)}


def measure_keyword(lib: TakeLibrary, repeat: int) -> dict[str, Any]:
    queries = {
        "rare word": "vinyl choir",
        "common word": "rain",
        "prefix": "me",
        "model name": "piano",
        "two words": "warm bell",
        "no match": "zzyzx",
        "name + tag": "bright tape",
    }
    per: dict[str, Any] = {}
    every: list[float] = []
    for label, q in queries.items():
        lib.search(q)
        ms = timed(functools.partial(lib.search, q, limit=50), repeat)
        hits = len(lib.keyword_search(q, limit=100000))
        per[label] = {"query": q, "matches": hits, **summary(ms)}
        every.extend(ms)
    filt = Filters(engine="audiolm", min_rating=3)
    ms = timed(lambda: lib.search("rain", filters=filt), repeat)
    per["common word + filter"] = {"query": "rain", **summary(ms)}
    every.extend(ms)
    return {"keyword_ms": summary(every), "keyword_queries": per}


def measure_similarity(lib: TakeLibrary, repeat: int) -> dict[str, Any]:
    rng = np.random.default_rng(123)
    vectors = [embedding.embed(synth_clip(rng)) for _ in range(repeat)]
    out: dict[str, Any] = {}
    s = time.perf_counter()
    lib.similar(vectors[0])
    out["index_load_ms"] = round((time.perf_counter() - s) * 1e3, 3)
    filt = Filters(engine="wavenet", min_rating=2)
    it = iter(vectors * 4)
    numpy_ms = timed(lambda: lib.search(vector=next(it), limit=50, backend="numpy"), repeat)
    numpy_f = timed(lambda: lib.search(vector=next(it), filters=filt, backend="numpy"), repeat)
    out["similarity_ms"] = {"numpy": summary(numpy_ms), "numpy_filtered": summary(numpy_f)}
    how, reason = search.sqlite_vec_status()
    out["sqlite_vec"] = {"driver": how, "why": reason}
    if how is not None:
        lib.similar(vectors[0], backend="sqlite-vec")
        vec_ms = timed(lambda: lib.search(vector=next(it), limit=50, backend="sqlite-vec"), repeat)
        vec_f = timed(
            lambda: lib.search(vector=next(it), filters=filt, backend="sqlite-vec"), repeat
        )
        out["similarity_ms"]["sqlite_vec"] = summary(vec_ms)
        out["similarity_ms"]["sqlite_vec_filtered"] = summary(vec_f)
        agree = [
            [i for i, _ in lib.similar(v, backend="numpy", limit=20)]
            == [i for i, _ in lib.similar(v, backend="sqlite-vec", limit=20)]
            for v in vectors[:10]
        ]
        out["sqlite_vec"]["same_top20_as_numpy"] = f"{sum(agree)}/{len(agree)}"
        vec0 = measure_vec0(lib, vectors)
        if vec0 is not None:
            out["similarity_ms"]["sqlite_vec_vec0_knn_only"] = vec0
    medians = {k: v["median"] for k, v in out["similarity_ms"].items()}
    out["faster_backend"] = (
        "numpy" if medians.get("sqlite_vec", 1e9) >= medians["numpy"] else ("sqlite-vec")
    )
    return out


def measure_vec0(lib: TakeLibrary, vectors: list[np.ndarray]) -> dict[str, float] | None:
    """KNN through a ``vec0`` virtual table (in memory, ids only; apsw or sqlite3)."""
    import sqlite_vec

    how, _ = search.sqlite_vec_status()
    if how == "apsw":
        import apsw

        conn: Any = apsw.Connection(":memory:")
        conn.enable_load_extension(True)
        conn.load_extension(sqlite_vec.loadable_path())
    elif how == "sqlite3":
        conn = sqlite3.connect(":memory:")
        conn.enable_load_extension(True)
        sqlite_vec.load(conn)
    else:
        return None
    src = sqlite3.connect(lib.path)
    rows = src.execute("SELECT take_id, vector FROM embeddings").fetchall()
    src.close()
    conn.execute(
        f"CREATE VIRTUAL TABLE v USING vec0(embedding float[{embedding.DIM}] "
        "distance_metric=cosine)"
    )
    conn.execute("BEGIN")
    for take_id, blob in rows:
        conn.execute("INSERT INTO v (rowid, embedding) VALUES (?, ?)", (take_id, blob))
    conn.execute("COMMIT")
    it = iter(vectors * 2)
    sql = "SELECT rowid, distance FROM v WHERE embedding MATCH ? AND k = 50"
    ms = timed(lambda: list(conn.execute(sql, (embedding.to_bytes(next(it)),))), len(vectors))
    conn.close()
    return summary(ms)


def measure_hybrid(lib: TakeLibrary, repeat: int) -> dict[str, Any]:
    rng = np.random.default_rng(7)
    clips = [synth_clip(rng) for _ in range(repeat)]
    vectors = [embedding.embed(c) for c in clips]
    it = iter(vectors)
    hybrid = timed(lambda: lib.search("warm", vector=next(it), limit=50), repeat)
    uids = [e.uid for e in lib.list_takes(limit=repeat)]
    ut = iter(uids)
    like = timed(lambda: lib.like_this(next(ut), limit=20), repeat)
    return {"hybrid_ms": summary(hybrid), "like_this_ms": summary(like)}


def measure_add(lib: TakeLibrary, repeat: int) -> dict[str, Any]:
    rng = np.random.default_rng(99)
    lib.blobs.sync = True  # the real write path
    encode, analysis, commit, total = [], [], [], []
    for i in range(repeat):
        clip = synth_clip(rng, 4.0)
        info = synth_info(rng, 10**6 + i, time.time())
        s = time.perf_counter()
        blob = lib.blobs.put(clip)
        e = time.perf_counter()
        vec = embedding.embed_samples(clip.samples, clip.rate)
        env = peaks.encode(clip.samples)
        a = time.perf_counter()
        prepared = PreparedTake(
            blob,
            clip.rate,
            clip.channels,
            clip.frames,
            0,
            info,
            vec if np.any(vec) else None,
            env,
            {},
        )
        lib.commit_take(prepared)
        c = time.perf_counter()
        encode.append((e - s) * 1e3)
        analysis.append((a - e) * 1e3)
        commit.append((c - a) * 1e3)
        clip2 = synth_clip(rng, 4.0)
        s = time.perf_counter()
        lib.add_take(clip2, synth_info(rng, 2 * 10**6 + i, time.time()))
        total.append((time.perf_counter() - s) * 1e3)
    per_take = [a + c for a, c in zip(analysis, commit, strict=True)]
    return {
        "add_take_ms": summary(per_take),
        "add_take_parts_ms": {
            "encode_excluded": summary(encode),
            "analysis": summary(analysis),
            "commit": summary(commit),
            "add_take_call_including_encode": summary(total),
        },
        "add_take_audio_seconds": 4.0,
    }


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return (
        f"{cpu}, {os.cpu_count()} cpus, Python {platform.python_version()}, "
        f"SQLite {sqlite3.sqlite_version}, numpy {np.__version__}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--takes", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=30, help="timed calls per figure")
    parser.add_argument(
        "--keep",
        type=Path,
        default=None,
        help="build (or reuse) the library in this folder and keep it",
    )
    args = parser.parse_args()
    tmp = None
    if args.keep is not None:
        root = args.keep
    else:
        tmp = tempfile.mkdtemp(prefix="agl-bench-")
        root = Path(tmp) / "lib"
    try:
        build_s = None
        if not (root / "library.sqlite3").exists():
            build_s = build(root, args.takes)
        result: dict[str, Any] = {
            "benchmark": "take library (issue 7)",
            "machine": machine(),
            "targets_ms": TARGETS_MS,
        }
        result.update(measure_open(root, args.repeat))
        with TakeLibrary(root) as lib:
            stats = lib.stats()
            result["library"] = {
                **{k: stats[k] for k in ("takes", "prompts", "audio_files", "audio_bytes")},
                "database_bytes": lib.path.stat().st_size,
                "build_seconds": None if build_s is None else round(build_s, 1),
                "build_note": "add_take with audio fsync off, 0.5 s clips",
            }
            result.update(measure_keyword(lib, args.repeat))
            result.update(measure_similarity(lib, args.repeat))
            result.update(measure_hybrid(lib, args.repeat))
            result.update(measure_add(lib, args.repeat))
        result["within_targets"] = {
            "keyword": result["keyword_ms"]["median"] <= TARGETS_MS["keyword"],
            "similarity": result["similarity_ms"]["numpy"]["median"] <= TARGETS_MS["similarity"],
            "open": result["open_ms"]["median"] <= TARGETS_MS["open"],
            "add_take": result["add_take_ms"]["median"] <= TARGETS_MS["add_take"],
        }
        print(json.dumps(result, indent=2))
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
