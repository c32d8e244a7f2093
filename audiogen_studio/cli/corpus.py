"""``audiogen-studio corpus speech|music OUT_DIR``: build reproducible training corpora;
``corpus subset CORPUS OUT_DIR``: copy a seeded random piece of one."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from audiogen_studio.cli.argtypes import (
    non_negative_float,
    positive_float,
    positive_int,
    split_fraction,
)
from audiogen_studio.cli.errors import CliError


def _common(p: argparse.ArgumentParser, minutes: float, timeout: float) -> None:
    p.add_argument(
        "out_dir", metavar="OUT_DIR", help="corpus folder (created; resumed if it exists)"
    )
    p.add_argument(
        "--minutes",
        type=positive_float,
        default=minutes,
        help=f"target total duration in minutes (default {minutes:g})",
    )
    p.add_argument(
        "--max-items",
        type=positive_int,
        default=None,
        help="stop at this many items even below --minutes",
    )
    p.add_argument(
        "--jobs",
        type=positive_int,
        default=os.cpu_count() or 1,
        help="parallel workers (default: the number of CPUs, %(default)s)",
    )
    p.add_argument("--seed", type=int, default=0, help="corpus seed (default 0)")
    p.add_argument(
        "--timeout",
        type=positive_float,
        default=timeout,
        help=f"seconds allowed per item (default {timeout:g})",
    )
    p.add_argument(
        "--valid-fraction",
        type=split_fraction,
        default=0.1,
        help="share held out for validation, by whole voice/instrument (default 0.1)",
    )
    p.add_argument(
        "--test-fraction",
        type=split_fraction,
        default=0.1,
        help="share held out for test, by whole voice/instrument (default 0.1)",
    )
    p.add_argument(
        "--executor",
        choices=("process", "thread"),
        default="process",
        help="worker kind for --jobs > 1 (default process; threads cannot time out score parsing)",
    )
    p.add_argument(
        "--retry-failed",
        action="store_true",
        help="retry items an earlier run could not make (default: skip them)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--json", action="store_true", help="print the corpus summary as JSON")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``corpus speech`` and ``corpus music``."""
    p = sub.add_parser(
        "corpus",
        help="build a reproducible training corpus (speech or music) from offline sources",
        description="Build a training corpus from offline sources: deterministic given --seed, "
        "parallel, resumable (re-run the same command to continue), with whole voices or "
        "instruments held out for valid/test.",
    )
    csub = p.add_subparsers(dest="corpus_kind", metavar="KIND", required=True)
    sp = csub.add_parser(
        "speech",
        help="espeak-ng, flite and festival voices plus recorded Asterisk prompts",
        description="Speech: espeak-ng voices (accents x variants, varied rate and pitch), flite, "
        "festival and the recorded Asterisk prompts (one human speaker), 16 kHz mono FLAC.",
    )
    _common(sp, minutes=35.0, timeout=60.0)
    sp.add_argument(
        "--sources",
        default=None,
        help="comma-separated subset of espeak-ng,flite,festival,asterisk "
        "(default: every installed one)",
    )
    sp.add_argument(
        "--espeak-voices",
        type=positive_int,
        default=40,
        help="English espeak-ng voices to sample (default 40)",
    )
    sp.add_argument(
        "--accented-voices",
        type=int,
        default=6,
        help="other-language espeak-ng voices reading English (default 6)",
    )
    sp.set_defaults(func=run)
    mp = csub.add_parser(
        "music",
        help="music21 corpus scores rendered with fluidsynth across General MIDI instruments",
        description="Music: music21's corpus scores re-instrumented with General MIDI programs, "
        "rendered by fluidsynth at 16 kHz under a timeout, cut to --max-seconds, mono FLAC.",
    )
    _common(mp, minutes=65.0, timeout=120.0)
    mp.add_argument(
        "--max-seconds",
        type=positive_float,
        default=40.0,
        help="longest item in seconds (default 40)",
    )
    mp.add_argument(
        "--soundfont",
        default=None,
        help="SF2 file (default: FluidR3_GM, else pretty_midi's TimGM6mb)",
    )
    mp.set_defaults(func=run)
    up = csub.add_parser(
        "subset",
        help="copy a seeded random piece of a corpus (train and some valid, never test)",
        description="Copy whole files drawn at random (seeded) from a corpus's train split up to "
        "--minutes, and from its valid split up to --valid-minutes, into a new corpus folder with "
        "its own manifest.jsonl (the test split stays held out). For carrying part of a corpus "
        "to another machine, quick trials, or fresh audio each run (--exclude earlier subsets).",
    )
    up.add_argument("corpus", metavar="CORPUS", help="corpus folder (with manifest.jsonl)")
    up.add_argument("out_dir", metavar="OUT_DIR", help="new folder for the subset")
    up.add_argument(
        "--minutes", type=positive_float, required=True, help="minutes of train audio at most"
    )
    up.add_argument(
        "--valid-minutes",
        type=non_negative_float,
        default=3.0,
        help="minutes of valid audio at most (0: none; default 3)",
    )
    up.add_argument("--seed", type=int, default=0, help="seed of the draw (default 0)")
    up.add_argument(
        "--exclude",
        action="append",
        default=[],
        metavar="SUBSET",
        help="a subset (or corpus) folder whose train items are not drawn again; repeatable",
    )
    up.add_argument("--json", action="store_true", help="print the summary as JSON")
    up.set_defaults(func=run_subset)


class _Bar:
    """A tqdm bar over seconds of audio (or items when only --max-items bounds the build)."""

    def __init__(self, kind: str, minutes: float | None, max_items: int | None, off: bool) -> None:
        from tqdm import tqdm

        self.by_items = minutes is None
        total = max_items if minutes is None else round(minutes * 60)
        self.bar = tqdm(
            total=total,
            unit="item" if self.by_items else "s",
            desc=f"corpus {kind}",
            disable=True if off else None,
            dynamic_ncols=True,
            file=sys.stderr,
        )

    def __call__(self, p: Any) -> None:
        value = p.items if self.by_items else min(p.seconds, float(self.bar.total))
        self.bar.n = round(value, 1)
        self.bar.set_postfix(items=p.items, new=p.new_items, failed=p.failed, refresh=False)
        self.bar.refresh()

    def close(self) -> None:
        self.bar.close()


def run(args: argparse.Namespace) -> int:
    """``audiogen-studio corpus speech|music OUT_DIR [options]``."""
    from audiogen_studio.training.corpora import (
        CorpusError,
        MusicOptions,
        SpeechOptions,
        build_music_corpus,
        build_speech_corpus,
    )

    kind = args.corpus_kind
    common: dict[str, Any] = {
        "minutes": args.minutes,
        "max_items": args.max_items,
        "seed": args.seed,
        "jobs": args.jobs,
        "timeout": args.timeout,
        "valid_fraction": args.valid_fraction,
        "test_fraction": args.test_fraction,
        "executor": args.executor,
        "retry_failed": args.retry_failed,
    }
    bar = _Bar(kind, args.minutes, args.max_items, args.no_progress)
    try:
        if kind == "speech":
            sources = (
                tuple(s.strip() for s in args.sources.split(",") if s.strip())
                if args.sources
                else None
            )
            options = SpeechOptions(
                **common,
                sources=sources,
                espeak_voices=args.espeak_voices,
                accented_voices=max(0, args.accented_voices),
            )
            summary = build_speech_corpus(args.out_dir, options, progress=bar)
        else:
            music_options = MusicOptions(
                **common, max_seconds=args.max_seconds, soundfont=args.soundfont
            )
            summary = build_music_corpus(args.out_dir, music_options, progress=bar)
    except CorpusError as exc:
        raise CliError(str(exc)) from exc
    finally:
        bar.close()
    totals = summary.info["totals"]
    if args.json:
        print(
            json.dumps(
                {
                    "corpus_dir": str(summary.corpus_dir),
                    "totals": totals,
                    "failures": summary.info["failures"],
                    "run": summary.info["run"],
                },
                indent=2,
            )
        )
        return 0
    splits = ", ".join(
        f"{s} {v['minutes']:.1f} min / {v['speakers']} {'voices' if kind == 'speech' else 'sets'}"
        for s, v in totals["splits"].items()
    )
    print(f"{kind} corpus in {summary.corpus_dir}")
    print(f"  {totals['items']} items, {totals['minutes']:.1f} min ({splits})")
    if kind == "speech":
        print(
            f"  {len(totals['speakers'])} voices; sources: "
            + ", ".join(f"{k} {v['seconds'] / 60:.1f} min" for k, v in totals["sources"].items())
        )
    else:
        print(
            f"  {len(totals.get('instruments', {}))} instruments, "
            f"{len(totals['speakers'])} instrument sets"
        )
    missing = summary.info.get("missing") or {}
    if missing:
        print("  missing: " + "; ".join(f"{k} ({v})" for k, v in missing.items()))
    print(
        f"  this run: {summary.new_items} new, {summary.reused_items} reused, "
        f"{summary.failed} failed, {summary.wall_seconds:.1f} s"
    )
    return 0


def run_subset(args: argparse.Namespace) -> int:
    """``audiogen-studio corpus subset CORPUS OUT_DIR --minutes M [options]``."""
    from audiogen_studio.training.corpora import CorpusError, make_subset

    try:
        summary = make_subset(
            args.corpus,
            args.out_dir,
            minutes=args.minutes,
            valid_minutes=args.valid_minutes,
            seed=args.seed,
            exclude=args.exclude,
        )
    except CorpusError as exc:
        raise CliError(str(exc)) from exc
    if args.json:
        print(json.dumps({"out_dir": str(summary.out_dir), "splits": summary.splits}, indent=2))
        return 0
    print(f"subset of {args.corpus} in {summary.out_dir}")
    for split, v in summary.splits.items():
        print(f"  {split}: {v['files']} files, {v['minutes']:.1f} min, {v['speakers']} speakers")
    return 0
