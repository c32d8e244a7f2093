"""A parallel, resumable runner for planned corpus items.

A corpus is a deterministic sequence of :class:`PlannedItem` (the *plan*, a function of the seed,
the options and the installed tools only). :func:`run_plan` walks the plan in rounds: each round
takes the next items until their estimated durations (scaled by how estimates have compared
with real durations so far) reach the target; renders the new ones in a process or thread pool;
appends each finished item to the manifest as it arrives. Items found complete from an earlier
run, and items that failed before, count exactly as if they had just been made, so a resumed
build walks the very same rounds as an uninterrupted one: the set of items depends on the seed,
the options and the tools' output only, never on ``jobs``, timing or interruptions.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures import wait as wait_futures
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from audiogen_studio.training.corpora.common import CorpusError, ItemError
from audiogen_studio.training.corpora.manifest import (
    FAILURES_NAME,
    MANIFEST_NAME,
    JsonlAppender,
    load_failures,
    load_for_resume,
    validate_entry,
)

logger = logging.getLogger(__name__)

ExecutorKind = Literal["process", "thread"]
#: A build gives up (CorpusError) after this many consecutive failed items: a broken tool.
MAX_FAILURES_IN_A_ROW = 12


@dataclass(frozen=True, slots=True)
class PlannedItem:
    """One item of a corpus plan, everything a renderer needs (JSON-able ``spec``).

    Attributes:
        id: stable id within the corpus (also the file stem).
        index: position in the plan.
        seed: the item's own seed.
        split: ``train`` / ``valid`` / ``test``.
        source: the producing tool or recording set.
        speaker_id: the identity that decides the split (a voice or an instrument set).
        rel_path: where the audio goes, relative to the corpus folder.
        estimate: expected duration in seconds (used to plan how many items reach the target).
        spec: source-specific settings (text, voice, rate, pitch, score, programs, ...).
    """

    id: str
    index: int
    seed: int
    split: str
    source: str
    speaker_id: str
    rel_path: str
    estimate: float
    spec: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class RenderContext:
    """What every render call shares: folders, the per-item timeout, tool paths, options."""

    corpus_dir: Path
    tmp_dir: Path
    timeout: float
    tools: Mapping[str, str] = field(default_factory=dict)
    options: Mapping[str, Any] = field(default_factory=dict)


#: ``render(item, ctx) -> manifest entry``; raises :class:`ItemError` for an expected failure.
RenderFn = Callable[[PlannedItem, RenderContext], dict[str, Any]]


@dataclass(frozen=True, slots=True)
class Progress:
    """A progress report, sent after every finished or failed item."""

    items: int
    seconds: float
    failed: int
    new_items: int
    target_seconds: float | None
    max_items: int | None
    last_id: str


ProgressFn = Callable[[Progress], None]


@dataclass(frozen=True, slots=True)
class RunReport:
    """What :func:`run_plan` did.

    Attributes:
        entries: manifest entries of the plan prefix that was walked (reused and new).
        new_items: items rendered by this run.
        reused_items: items found complete from an earlier run.
        failures: ``{id: reason}`` for items of the walked prefix that could not be made.
        stopped_by: ``"minutes"``, ``"max_items"`` or ``"exhausted"`` (the plan ran out).
    """

    entries: list[dict[str, Any]]
    new_items: int
    reused_items: int
    failures: dict[str, str]
    stopped_by: str


def _init_worker(parent_pid: int) -> None:
    """Worker processes: leave Ctrl-C to the parent, keep math libraries single-threaded, and
    exit when the building process is gone (killed), rather than linger as orphans."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = "1"

    def watch() -> None:
        while True:
            time.sleep(1.0)
            try:
                os.kill(parent_pid, 0)
            except ProcessLookupError:
                os._exit(1)
            except PermissionError:
                pass

    threading.Thread(target=watch, name="corpus-parent-watch", daemon=True).start()


class _PythonTimeoutError(BaseException):
    """Raised by the alarm; a BaseException so that ``except Exception`` in parsers and in our
    own wrappers does not swallow it."""


@contextlib.contextmanager
def python_timeout(seconds: float) -> Iterator[None]:
    """Interrupt pure-Python work (e.g. score parsing) after ``seconds`` with
    :class:`ItemError`. Active only in a process's main thread (SIGALRM); elsewhere a no-op."""
    if threading.current_thread() is not threading.main_thread() or seconds <= 0:
        yield
        return

    def _alarm(signum: int, frame: object) -> None:
        raise _PythonTimeoutError

    previous = signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    except _PythonTimeoutError as exc:
        raise ItemError(f"timed out after {seconds:g} s") from exc
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _call(render: RenderFn, item: PlannedItem, ctx: RenderContext) -> dict[str, Any]:
    """Run one item; wraps unexpected errors as :class:`ItemError` (picklable across processes)."""
    try:
        entry = render(item, ctx)
        validate_entry(entry)
        return entry
    except ItemError:
        raise
    except Exception as exc:
        logger.debug("item %s failed", item.id, exc_info=True)
        raise ItemError(f"{type(exc).__name__}: {exc}") from None


def _make_executor(kind: ExecutorKind, jobs: int) -> Executor:
    if kind == "thread":
        return ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="corpus")
    method = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
    return ProcessPoolExecutor(
        max_workers=jobs,
        mp_context=multiprocessing.get_context(method),
        initializer=_init_worker,
        initargs=(os.getpid(),),
    )


def run_plan(
    plan: Iterator[PlannedItem],
    render: RenderFn,
    ctx: RenderContext,
    *,
    target_seconds: float | None,
    max_items: int | None,
    jobs: int,
    executor: ExecutorKind = "process",
    retry_failed: bool = False,
    progress: ProgressFn | None = None,
) -> RunReport:
    """Build the plan's items until ``target_seconds`` of audio or ``max_items`` items exist.

    Items already listed in ``ctx.corpus_dir/manifest.jsonl`` with their file present are reused;
    items listed in ``failures.jsonl`` are skipped unless ``retry_failed``. ``jobs == 1`` renders
    in this process (no pool).

    Raises:
        CorpusError: nothing could be built, or :data:`MAX_FAILURES_IN_A_ROW` items failed in a
            row (a broken tool).
        KeyboardInterrupt: passed on after cancelling queued items; finished items stay listed.
    """
    if target_seconds is None and max_items is None:
        raise ValueError("give target_seconds, max_items or both")
    corpus_dir = ctx.corpus_dir
    corpus_dir.mkdir(parents=True, exist_ok=True)
    done = load_for_resume(corpus_dir)
    old_failures = {} if retry_failed else load_failures(corpus_dir)
    if retry_failed and (corpus_dir / FAILURES_NAME).exists():
        (corpus_dir / FAILURES_NAME).unlink()
    target = float("inf") if target_seconds is None else float(target_seconds)
    limit = max_items if max_items is not None else 1 << 62

    entries: list[dict[str, Any]] = []
    failures: dict[str, str] = {}
    total = 0.0
    new_items = reused = 0
    est_sum = actual_sum = 0.0
    stopped_by = ""
    failed_in_a_row = 0
    pool: Executor | None = None

    def report(last_id: str) -> None:
        if progress is not None:
            progress(
                Progress(
                    items=len(entries),
                    seconds=total,
                    failed=len(failures),
                    new_items=new_items,
                    target_seconds=target_seconds,
                    max_items=max_items,
                    last_id=last_id,
                )
            )

    with (
        JsonlAppender(corpus_dir / MANIFEST_NAME) as manifest,
        JsonlAppender(corpus_dir / FAILURES_NAME) as failure_log,
    ):
        try:
            while True:
                # Plan one round from estimates scaled by the real/estimated ratio so far.
                ratio = min(max(actual_sum / est_sum, 0.1), 10.0) if est_sum > 0 else 1.0
                batch: list[PlannedItem] = []
                expected = total
                while True:
                    if len(entries) + len(batch) >= limit:
                        stopped_by = "max_items"
                        break
                    if expected >= target:
                        stopped_by = "minutes"
                        break
                    item = next(plan, None)
                    if item is None:
                        stopped_by = "exhausted"
                        break
                    batch.append(item)
                    expected += item.estimate * ratio
                if not batch:
                    break
                # Items known from an earlier run count exactly as if rendered now, so a resumed
                # build walks the very same rounds (and items) as an uninterrupted one.
                todo: list[PlannedItem] = []
                for item in batch:
                    if item.id in done:
                        entry = done[item.id]
                        entries.append(entry)
                        reused += 1
                        total += float(entry["duration"])
                        est_sum += item.estimate
                        actual_sum += float(entry["duration"])
                    elif item.id in old_failures:
                        failures[item.id] = old_failures[item.id]
                        est_sum += item.estimate
                    else:
                        todo.append(item)
                if not todo:
                    report("")
                    continue
                if jobs > 1 and pool is None:
                    pool = _make_executor(executor, jobs)
                for item, outcome in _results(todo, render, ctx, pool):
                    est_sum += item.estimate
                    if isinstance(outcome, dict):
                        manifest.append(outcome)
                        entries.append(outcome)
                        total += float(outcome["duration"])
                        actual_sum += float(outcome["duration"])
                        new_items += 1
                        failed_in_a_row = 0
                    else:
                        failures[item.id] = outcome
                        failure_log.append({"id": item.id, "reason": outcome})
                        logger.info("item %s failed: %s", item.id, outcome)
                        failed_in_a_row += 1
                    report(item.id)
                    if failed_in_a_row >= MAX_FAILURES_IN_A_ROW:
                        raise CorpusError(
                            f"{failed_in_a_row} items in a row failed; last reason: {outcome}"
                        )
        finally:
            if pool is not None:
                pool.shutdown(wait=True, cancel_futures=True)
    if not entries and failures:
        raise CorpusError(
            f"every item failed ({len(failures)}); first reason: {next(iter(failures.values()))}"
        )
    return RunReport(
        entries=entries,
        new_items=new_items,
        reused_items=reused,
        failures=failures,
        stopped_by=stopped_by,
    )


def _results(
    batch: list[PlannedItem], render: RenderFn, ctx: RenderContext, pool: Executor | None
) -> Iterator[tuple[PlannedItem, dict[str, Any] | str]]:
    """Yield ``(item, manifest entry | failure reason)`` as items finish (in this process when
    ``pool`` is ``None``)."""
    if pool is None:
        for item in batch:
            try:
                yield item, _call(render, item, ctx)
            except ItemError as exc:
                yield item, str(exc)
        return
    futures: dict[Future[dict[str, Any]], PlannedItem] = {
        pool.submit(_call, render, item, ctx): item for item in batch
    }
    pending = set(futures)
    try:
        while pending:
            finished, pending = wait_futures(pending, return_when="FIRST_COMPLETED")
            for fut in sorted(finished, key=lambda f: futures[f].index):
                item = futures[fut]
                try:
                    yield item, fut.result()
                except ItemError as exc:
                    yield item, str(exc)
                except Exception as exc:  # a crashed worker process, for instance
                    yield item, f"{type(exc).__name__}: {exc}"
    finally:
        for fut in pending:
            fut.cancel()


def clean_temporaries(corpus_dir: Path, tmp_dir: Path) -> int:
    """Remove what a killed build may have left: the scratch folder and partial audio files.

    Returns how many partial audio files were removed.
    """
    import shutil

    if tmp_dir.exists():
        shutil.rmtree(tmp_dir, ignore_errors=True)
    removed = 0
    audio = corpus_dir / "audio"
    if audio.exists():
        for p in audio.rglob(".*.partial*"):
            with contextlib.suppress(OSError):
                p.unlink()
                removed += 1
    return removed


def now() -> float:
    """Wall-clock seconds (monotonic), for build timing."""
    return time.monotonic()
