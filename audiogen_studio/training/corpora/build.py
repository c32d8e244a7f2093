"""Build a speech or music corpus folder: lock, check, resume, run, summarise.

A corpus folder holds ``manifest.jsonl`` (one line per item), ``corpus.json`` (what was built:
seed, options, voices or instruments and their splits, totals per split / source / voice, tool
versions, licence notes, failures, timing), ``failures.jsonl`` (items that could not be made,
skipped on the next run unless asked to retry) and ``audio/<split>/...`` FLAC files.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from audiogen_studio import __version__
from audiogen_studio.training.corpora import music, speech, texts
from audiogen_studio.training.corpora.common import (
    SPLITS,
    CorpusError,
    tool_version,
    write_json_atomic,
)
from audiogen_studio.training.corpora.jobs import (
    ExecutorKind,
    PlannedItem,
    ProgressFn,
    RenderContext,
    RenderFn,
    RunReport,
    clean_temporaries,
    run_plan,
)
from audiogen_studio.training.corpora.manifest import MANIFEST_NAME, read_manifest

CORPUS_JSON = "corpus.json"
TMP_DIR = ".tmp"
_OWN_NAMES = {CORPUS_JSON, MANIFEST_NAME, "failures.jsonl", "audio", TMP_DIR, ".lock"}


@dataclass(frozen=True, slots=True, kw_only=True)
class SpeechOptions:
    """Options of :func:`build_speech_corpus` (see the CLI help for each)."""

    minutes: float | None = 35.0
    max_items: int | None = None
    seed: int = 0
    jobs: int | None = None
    timeout: float = 60.0
    sources: tuple[str, ...] | None = None
    espeak_voices: int = 40
    accented_voices: int = 6
    valid_fraction: float = 0.1
    test_fraction: float = 0.1
    executor: ExecutorKind = "process"
    retry_failed: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class MusicOptions:
    """Options of :func:`build_music_corpus` (see the CLI help for each)."""

    minutes: float | None = 65.0
    max_items: int | None = None
    seed: int = 0
    jobs: int | None = None
    timeout: float = 120.0
    max_seconds: float = 40.0
    soundfont: str | None = None
    valid_fraction: float = 0.1
    test_fraction: float = 0.1
    executor: ExecutorKind = "process"
    retry_failed: bool = False


@dataclass(frozen=True, slots=True)
class CorpusSummary:
    """What a build left in the folder (``corpus.json`` as a dict in ``info``)."""

    corpus_dir: Path
    items: int
    seconds: float
    new_items: int
    reused_items: int
    failed: int
    wall_seconds: float
    info: Mapping[str, Any]


def _check_options(
    minutes: float | None,
    max_items: int | None,
    timeout: float,
    jobs: int,
    valid_fraction: float,
    test_fraction: float,
) -> None:
    if minutes is None and max_items is None:
        raise CorpusError("give --minutes, --max-items or both")
    if minutes is not None and not minutes > 0:
        raise CorpusError(f"--minutes must be positive, got {minutes:g}")
    if max_items is not None and max_items < 1:
        raise CorpusError(f"--max-items must be at least 1, got {max_items}")
    if not timeout > 0:
        raise CorpusError(f"--timeout must be positive, got {timeout:g}")
    if jobs < 1:
        raise CorpusError(f"--jobs must be at least 1, got {jobs}")
    if not (
        0 <= valid_fraction < 1 and 0 <= test_fraction < 1 and valid_fraction + test_fraction < 1
    ):
        raise CorpusError("held-out fractions must be in [0, 1) and leave some for training")


@contextlib.contextmanager
def _locked(corpus_dir: Path) -> Iterator[None]:
    with (corpus_dir / ".lock").open("w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            raise CorpusError(f"another build is running in {corpus_dir}") from exc
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _prepare_folder(corpus_dir: Path, kind: str, fingerprint: str, seed: int) -> dict[str, Any]:
    """Create or check the folder; return the previous ``corpus.json`` (``{}`` if none)."""
    if corpus_dir.exists() and not corpus_dir.is_dir():
        raise CorpusError(f"{corpus_dir} is a file, not a folder")
    corpus_dir.mkdir(parents=True, exist_ok=True)
    previous: dict[str, Any] = {}
    info_path = corpus_dir / CORPUS_JSON
    if info_path.is_file():
        try:
            previous = json.loads(info_path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise CorpusError(f"{info_path} is damaged ({exc}); use a new folder") from exc
        if previous.get("kind") != kind:
            raise CorpusError(
                f"{corpus_dir} holds a {previous.get('kind')} corpus, not {kind}; "
                "use another folder"
            )
        old = previous.get("plan", {}).get("fingerprint")
        if old != fingerprint:
            raise CorpusError(
                f"{corpus_dir} was built with other plan options (seed {previous.get('seed')}, "
                f"plan {old}, now seed {seed}, plan {fingerprint}: seed, sources, voices or "
                "installed tools differ); use a new folder or the same options"
            )
    else:
        strangers = sorted(p.name for p in corpus_dir.iterdir() if p.name not in _OWN_NAMES)
        if strangers:
            raise CorpusError(
                f"{corpus_dir} is not empty and holds no corpus (found {strangers[0]}); "
                "use an empty or new folder"
            )
    return previous


def _totals(entries: list[dict[str, Any]], key: str) -> dict[str, Any]:
    """Counts and seconds per split, source and voice/instrument."""

    def bucket() -> dict[str, Any]:
        return {"items": 0, "seconds": 0.0}

    splits: dict[str, dict[str, Any]] = {s: {**bucket(), "speakers": set()} for s in SPLITS}
    sources: dict[str, dict[str, Any]] = {}
    speakers: dict[str, dict[str, Any]] = {}
    programs: dict[str, dict[str, Any]] = {}
    for e in entries:
        d = float(e["duration"])
        for b in (splits[e["split"]], sources.setdefault(e["source"], bucket())):
            b["items"] += 1
            b["seconds"] += d
        splits[e["split"]]["speakers"].add(e["speaker_id"])
        sp = speakers.setdefault(e["speaker_id"], {**bucket(), "split": e["split"]})
        sp["items"] += 1
        sp["seconds"] += d
        sp[key] = e.get(key)
        for p in e["params"].get("programs", []):
            pb = programs.setdefault(
                str(p), {**bucket(), "split": e["split"], "name": music.INSTRUMENTS.get(p, str(p))}
            )
            pb["items"] += 1
            pb["seconds"] += d
    seconds = sum(float(e["duration"]) for e in entries)
    out: dict[str, Any] = {
        "items": len(entries),
        "seconds": round(seconds, 3),
        "minutes": round(seconds / 60, 3),
        "splits": {
            s: {
                "items": v["items"],
                "seconds": round(v["seconds"], 3),
                "minutes": round(v["seconds"] / 60, 3),
                "speakers": len(v["speakers"]),
            }
            for s, v in splits.items()
        },
        "sources": {
            s: {"items": v["items"], "seconds": round(v["seconds"], 3)} for s, v in sources.items()
        },
        "speakers": {
            s: {**v, "seconds": round(v["seconds"], 3)} for s, v in sorted(speakers.items())
        },
    }
    if programs:
        out["instruments"] = {
            p: {**v, "seconds": round(v["seconds"], 3)}
            for p, v in sorted(programs.items(), key=lambda kv: int(kv[0]))
        }
    return out


def _failure_summary(failures: Mapping[str, str]) -> dict[str, Any]:
    reasons = Counter(r.split(":", 1)[0][:80] if r else "unknown" for r in failures.values())
    return {
        "count": len(failures),
        "reasons": dict(reasons.most_common()),
        "items": dict(sorted(failures.items())[:200]),
    }


def _run(
    *,
    kind: str,
    corpus_dir: Path,
    fingerprint: str,
    seed: int,
    plan: Iterator[PlannedItem],
    render: RenderFn,
    ctx_tools: Mapping[str, str],
    ctx_options: Mapping[str, Any],
    timeout: float,
    minutes: float | None,
    max_items: int | None,
    jobs: int,
    executor: ExecutorKind,
    retry_failed: bool,
    progress: ProgressFn | None,
    describe: Callable[[], dict[str, Any]],
    speaker_key: str,
) -> CorpusSummary:
    started = time.monotonic()
    started_at = datetime.now(UTC).isoformat(timespec="seconds")
    previous = _prepare_folder(corpus_dir, kind, fingerprint, seed)
    with _locked(corpus_dir):
        tmp = corpus_dir / TMP_DIR
        clean_temporaries(corpus_dir, tmp)
        base = {
            "kind": kind,
            "format": 1,
            "status": "building",
            "created_by": f"audiogen-studio {__version__} corpus {kind}",
            "seed": seed,
            **describe(),
        }
        base["plan"] = {**base.get("plan", {}), "fingerprint": fingerprint}
        info = {**previous, **base}
        write_json_atomic(corpus_dir / CORPUS_JSON, info)
        ctx = RenderContext(
            corpus_dir=corpus_dir,
            tmp_dir=tmp,
            timeout=timeout,
            tools=dict(ctx_tools),
            options=dict(ctx_options),
        )
        try:
            report: RunReport = run_plan(
                plan,
                render,
                ctx,
                target_seconds=None if minutes is None else minutes * 60.0,
                max_items=max_items,
                jobs=jobs,
                executor=executor,
                retry_failed=retry_failed,
                progress=progress,
            )
        finally:
            clean_temporaries(corpus_dir, tmp)
        entries = read_manifest(corpus_dir)
        wall = time.monotonic() - started
        info = {
            **base,
            "status": "complete",
            "totals": _totals(entries, speaker_key),
            "failures": _failure_summary(report.failures),
            "run": {
                "started": started_at,
                "wall_seconds": round(wall, 2),
                "jobs": jobs,
                "executor": executor if jobs > 1 else "inline",
                "new_items": report.new_items,
                "reused_items": report.reused_items,
                "stopped_by": report.stopped_by,
                "load_average": [round(x, 2) for x in os.getloadavg()],
            },
        }
        write_json_atomic(corpus_dir / CORPUS_JSON, info)
    return CorpusSummary(
        corpus_dir=corpus_dir,
        items=len(entries),
        seconds=sum(float(e["duration"]) for e in entries),
        new_items=report.new_items,
        reused_items=report.reused_items,
        failed=len(report.failures),
        wall_seconds=wall,
        info=info,
    )


def build_speech_corpus(
    corpus_dir: str | Path, options: SpeechOptions, *, progress: ProgressFn | None = None
) -> CorpusSummary:
    """Build (or resume) a speech corpus in ``corpus_dir``.

    Raises:
        CorpusError: missing tools (naming the Debian package), a folder built with other
            options, another build running there, or nothing buildable.
    """
    jobs = options.jobs or os.cpu_count() or 1
    _check_options(
        options.minutes,
        options.max_items,
        options.timeout,
        jobs,
        options.valid_fraction,
        options.test_fraction,
    )
    setup = speech.discover(
        seed=options.seed,
        sources=options.sources,
        espeak_voices=options.espeak_voices,
        accented_voices=options.accented_voices,
        valid_fraction=options.valid_fraction,
        test_fraction=options.test_fraction,
    )
    corpus_dir = Path(corpus_dir).expanduser().resolve()

    def describe() -> dict[str, Any]:
        versions = {
            "espeak-ng": ("espeak-ng", ["espeak-ng", "--version"]),
            "flite": ("flite", ["flite", "--version"]),
            "festival": ("festival", ["festival", "--version"]),
            "asterisk": ("asterisk-core-sounds-en-wav", ["true"]),
        }
        sources = {}
        for name in speech.SOURCES:
            entry: dict[str, Any] = {
                "used": name in setup.available,
                "licence": speech.LICENCES[name],
            }
            if name in setup.available:
                pkg, cmd = versions[name]
                entry["version"] = tool_version(cmd, pkg)
            if name in setup.missing:
                entry["install"] = setup.missing[name]
            sources[name] = entry
        return {
            "options": {**asdict(options), "jobs": jobs},
            "plan": {
                "voices": [
                    {
                        "speaker_id": v.speaker_id,
                        "source": v.source,
                        "voice": v.name,
                        "group": v.group,
                        "split": v.split,
                        **dict(v.settings),
                    }
                    for v in setup.voices
                ],
                "source_weights": speech.SOURCE_WEIGHTS,
                "asterisk_recordings": len(setup.asterisk_files),
            },
            "sources": sources,
            "missing": dict(setup.missing),
            "texts": {
                "pools": texts.TEXT_LICENCES,
                "note": "asterisk: transcripts of the Asterisk core prompts; sentences: written "
                "for this project; generated: a seeded grammar over word lists written for "
                "this project",
            },
            "format_notes": "FLAC, 16 kHz mono, 16-bit; trimmed to 0.1 s before / 0.15 s after "
            "the speech (-40 dB), active-speech RMS normalised to -20 dBFS, peak <= -1 dBFS",
            "licence_notes": [
                "Asterisk recordings and transcripts: CC-BY-SA-3.0 (Allison Smith / Digium): "
                "credit them and share derived datasets alike.",
                "Synthetic speech: espeak-ng, flite and festival outputs are not restricted by "
                "the programs' licences; voice data are BSD-style (CMU, Edinburgh, NITech).",
                "Sentences and generated texts: MIT (AudioGen Studio).",
                "The asterisk speaker appears in train only (one human speaker cannot be split).",
            ],
        }

    return _run(
        kind="speech",
        corpus_dir=corpus_dir,
        fingerprint=setup.fingerprint(),
        seed=options.seed,
        plan=speech.speech_plan(setup),
        render=speech.render_speech,
        ctx_tools=setup.tools,
        ctx_options={"asterisk_dir": str(speech.ASTERISK_DIR)},
        timeout=options.timeout,
        minutes=options.minutes,
        max_items=options.max_items,
        jobs=jobs,
        executor=options.executor,
        retry_failed=options.retry_failed,
        progress=progress,
        describe=describe,
        speaker_key="voice",
    )


def build_music_corpus(
    corpus_dir: str | Path, options: MusicOptions, *, progress: ProgressFn | None = None
) -> CorpusSummary:
    """Build (or resume) a music corpus in ``corpus_dir``.

    Raises:
        CorpusError: fluidsynth, music21/pretty_midi or a soundfont missing, a folder built
            with other options, another build running there, or nothing buildable.
    """
    jobs = options.jobs or os.cpu_count() or 1
    _check_options(
        options.minutes,
        options.max_items,
        options.timeout,
        jobs,
        options.valid_fraction,
        options.test_fraction,
    )
    if not options.max_seconds >= 3:
        raise CorpusError(f"--max-seconds must be at least 3, got {options.max_seconds:g}")
    setup = music.discover(
        seed=options.seed,
        soundfont=options.soundfont,
        max_seconds=options.max_seconds,
        valid_fraction=options.valid_fraction,
        test_fraction=options.test_fraction,
    )
    corpus_dir = Path(corpus_dir).expanduser().resolve()

    def describe() -> dict[str, Any]:
        from importlib.metadata import version

        import pretty_midi  # noqa: F401  (version below)

        sf_pkg = "fluid-soundfont-gm" if setup.soundfont.name == "FluidR3_GM.sf2" else None
        return {
            "options": {**asdict(options), "jobs": jobs},
            "plan": {
                "instruments": {
                    split: [{"program": p, "name": music.INSTRUMENTS[p]} for p in programs]
                    for split, programs in setup.programs.items()
                },
                "scores": len(setup.scores),
                "collections": dict(Counter(s.collection for s in setup.scores)),
            },
            "sources": {
                "fluidsynth": {
                    "version": tool_version(["fluidsynth", "--version"], "fluidsynth"),
                    "licence": music.RENDER_LICENCE,
                },
                "soundfont": {
                    "path": str(setup.soundfont),
                    "version": tool_version(["true"], sf_pkg) if sf_pkg else "pip",
                    "licence": music.SOUNDFONT_LICENCES.get(setup.soundfont.name, ""),
                },
                "music21": {"version": version("music21"), "licence": music.SCORE_LICENCE},
                "pretty_midi": {"version": version("pretty_midi"), "licence": "MIT"},
            },
            "missing": {}
            if sf_pkg
            else {"FluidR3_GM": "apt-get install fluid-soundfont-gm (using TimGM6mb instead)"},
            "format_notes": f"FLAC, 16 kHz mono, 16-bit; at most {options.max_seconds:g} s "
            "(1 s fade at a cut), leading silence trimmed, RMS normalised to -20 dBFS, "
            "peak <= -1 dBFS",
            "licence_notes": [
                music.SCORE_LICENCE,
                music.RENDER_LICENCE,
                music.SOUNDFONT_LICENCES.get(setup.soundfont.name, str(setup.soundfont)),
            ],
        }

    return _run(
        kind="music",
        corpus_dir=corpus_dir,
        fingerprint=setup.fingerprint(),
        seed=options.seed,
        plan=music.music_plan(setup),
        render=music.render_music,
        ctx_tools=setup.tools,
        ctx_options={
            "max_seconds": options.max_seconds,
            "corpus_root": str(setup.corpus_root),
            "soundfont": str(setup.soundfont),
        },
        timeout=options.timeout,
        minutes=options.minutes,
        max_items=options.max_items,
        jobs=jobs,
        executor=options.executor,
        retry_failed=options.retry_failed,
        progress=progress,
        describe=describe,
        speaker_key="instrument",
    )
