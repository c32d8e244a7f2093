"""``audiogen-studio library list|search|show|export|import|gc``: the take library from a shell.

Every command takes ``--library FOLDER`` (default ``$AUDIOGEN_LIBRARY``, else the user data
directory) and ``--json`` where it prints. Takes are named by their id or any unique prefix of
it (at least 4 characters), as ``list`` shows them. Filters shared by ``list``, ``search`` and
``export``: ``--engine``, ``--model``, ``--min-rating``, ``--max-rating``, ``--tag`` (repeat),
``--since`` / ``--until`` (``YYYY-MM-DD``, an ISO date-time, or ``7d`` for seven days ago; a plain
``--until`` date includes that day), ``--trash`` (deleted takes only).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from audiogen_studio.cli.argtypes import positive_int
from audiogen_studio.cli.errors import CliError

__all__ = ["parse_when", "register"]

_AUDIO_SUFFIXES = (".wav", ".flac", ".ogg")
_RELATIVE = re.compile(r"^(\d+(?:\.\d+)?)([hdw])$")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``library`` and its actions."""
    p = sub.add_parser(
        "library",
        help="the take library: list, search, show, export, import, gc",
        description="Every generated take, with everything that produced it, kept locally.",
    )
    lsub = p.add_subparsers(dest="library_command", metavar="ACTION", required=True)

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--library",
        metavar="FOLDER",
        default=None,
        help="library folder (default: $AUDIOGEN_LIBRARY or the user data directory)",
    )
    filters = argparse.ArgumentParser(add_help=False)
    g = filters.add_argument_group("filters")
    g.add_argument("--engine", help="only takes of this engine (audiolm, wavenet, import ...)")
    g.add_argument("--model", help="only takes of this model bundle")
    g.add_argument("--min-rating", type=_rating, metavar="N", help="rated N (1-5) or better")
    g.add_argument("--max-rating", type=_rating, metavar="N", help="rated N (1-5) or worse")
    g.add_argument("--tag", action="append", default=[], help="carrying this tag (repeatable)")
    g.add_argument("--since", type=parse_when, metavar="WHEN", help="made at or after WHEN")
    g.add_argument("--until", type=_parse_until, metavar="WHEN", help="made before WHEN")
    g.add_argument("--trash", action="store_true", help="deleted takes only")
    out = argparse.ArgumentParser(add_help=False)
    out.add_argument("--json", action="store_true", help="print JSON")

    lp = lsub.add_parser("list", parents=[common, filters, out], help="list takes, newest first")
    lp.add_argument(
        "--order",
        choices=["created", "-created", "rating", "name", "duration"],
        default="created",
        help="sort order (default: newest first)",
    )
    lp.add_argument("--limit", type=positive_int, default=50, help="at most N takes (50)")
    lp.set_defaults(func=run_list)

    sp = lsub.add_parser(
        "search",
        parents=[common, filters, out],
        help="find takes by words, by sound, or both",
        description="Keyword search over names, tags, notes, model and engine (every word "
        "must match, as a prefix), similarity to a take (--like) or an audio file (--audio), "
        "or both fused by reciprocal rank.",
    )
    sp.add_argument("text", nargs="*", help="words to look for")
    sp.add_argument("--like", metavar="TAKE", help="takes that sound like this take")
    sp.add_argument("--audio", metavar="FILE", help="takes that sound like this audio file")
    sp.add_argument("--limit", type=positive_int, default=20, help="at most N results (20)")
    sp.add_argument(
        "--backend",
        choices=["numpy", "sqlite-vec"],
        default=None,
        help="similarity back end (default: numpy, the faster one measured)",
    )
    sp.set_defaults(func=run_search)

    shp = lsub.add_parser("show", parents=[common, out], help="everything about one take")
    shp.add_argument("take", help="take id or unique prefix")
    shp.set_defaults(func=run_show)

    ep = lsub.add_parser(
        "export",
        parents=[common, filters],
        help="copy takes out: one take to an audio file, or takes to a folder",
        description="With one take and an output ending in .wav/.flac/.ogg, write its audio. "
        "Otherwise write a folder (library.json + FLAC audio) that 'library import' reads: "
        "the takes named, or every take passing the filters.",
    )
    ep.add_argument("takes", nargs="*", metavar="TAKE", help="take ids (default: by filters)")
    ep.add_argument("-o", "--output", required=True, help="audio file or folder to write")
    ep.add_argument("--force", action="store_true", help="overwrite an existing audio file")
    ep.set_defaults(func=run_export)

    ip = lsub.add_parser(
        "import",
        parents=[common, out],
        help="read exported folders, or add audio files as takes",
        description="Each PATH is a folder written by 'library export' (takes already in "
        "the library are skipped) or an audio file, added as a take of engine 'import'.",
    )
    ip.add_argument("paths", nargs="+", metavar="PATH")
    ip.add_argument("--tag", action="append", default=[], help="tag imported audio files")
    ip.set_defaults(func=run_import)

    gp = lsub.add_parser(
        "gc",
        parents=[common, out],
        help="purge the trash and unreferenced audio; check the library",
        description="Purge deleted takes, prompts no take uses, audio no record uses, and "
        "files left by interrupted writes; then checkpoint the database.",
    )
    gp.add_argument(
        "--older-than",
        type=float,
        default=0.0,
        metavar="DAYS",
        help="purge only takes deleted more than DAYS ago (default: all deleted takes)",
    )
    gp.add_argument(
        "--grace",
        type=float,
        default=3600.0,
        metavar="SECONDS",
        help="keep unreferenced audio younger than this (a take may be committing; 3600)",
    )
    gp.add_argument("--dry-run", action="store_true", help="report, change nothing")
    gp.add_argument(
        "--check",
        action="store_true",
        help="also verify the database and that every audio file decodes to its hash",
    )
    gp.set_defaults(func=run_gc)


def _rating(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1 <= value <= 5:
        raise argparse.ArgumentTypeError(f"a rating is 1-5, got {text!r}")
    return value


def parse_when(text: str) -> float:
    """``YYYY-MM-DD``, an ISO date-time (local time unless it has an offset), or a relative
    ``30m``-style age (``h`` hours, ``d`` days, ``w`` weeks ago) → seconds since the epoch."""
    rel = _RELATIVE.match(text.strip())
    if rel:
        unit = {"h": 3600.0, "d": 86400.0, "w": 7 * 86400.0}[rel.group(2)]
        return time.time() - float(rel.group(1)) * unit
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError as exc:
        raise argparse.ArgumentTypeError(
            f"not a date: {text!r} (use YYYY-MM-DD, an ISO date-time, or e.g. 7d)"
        ) from exc
    return when.timestamp()  # naive = local time


def _parse_until(text: str) -> float:
    """Like :func:`parse_when`, but a plain date means the end of that day."""
    value = parse_when(text)
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text.strip()):
        day = datetime.fromisoformat(text.strip()) + timedelta(days=1)
        return day.timestamp()
    return value


def _open(args: argparse.Namespace) -> Any:
    from audiogen_studio.library import TakeLibrary

    return TakeLibrary(args.library)


def _filters(args: argparse.Namespace) -> Any:
    from audiogen_studio.library import Filters

    return Filters(
        engine=args.engine,
        model=args.model,
        min_rating=args.min_rating,
        max_rating=args.max_rating,
        since=args.since,
        until=args.until,
        tags=tuple(t.strip().lower() for t in args.tag if t.strip()),
        deleted=bool(args.trash),
    )


def _when(ts: float) -> str:
    return datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M")


def _line(entry: Any, extra: str = "") -> str:
    stars = "★" * (entry.rating or 0) + "·" * (5 - (entry.rating or 0))
    return f"{entry.uid[:10]}  {_when(entry.created)}  {stars}  {entry.describe()}{extra}"


def run_list(args: argparse.Namespace) -> int:
    """``audiogen-studio library list``."""
    with _open(args) as lib:
        filters = _filters(args)
        entries = lib.list_takes(filters, order=args.order, limit=args.limit)
        total = lib.count(filters)
        if args.json:
            print(json.dumps([e.to_dict() for e in entries], indent=2))
            return 0
        for e in entries:
            print(_line(e))
        shown = f"{len(entries)} of {total}" if total > len(entries) else f"{total}"
        where = "in the trash" if args.trash else "in the library"
        print(f"({shown} takes {where} at {lib.root})")
    return 0


def run_search(args: argparse.Namespace) -> int:
    """``audiogen-studio library search``."""
    text = " ".join(args.text)
    if args.like and args.audio:
        raise CliError("give --like or --audio, not both")
    if not text.strip() and not args.like and not args.audio:
        raise CliError("nothing to search for: give words, --like TAKE or --audio FILE")
    audio = None
    if args.audio:
        from audiogen_studio.audio import io

        audio = io.load(args.audio)
    with _open(args) as lib:
        results = lib.search(
            text,
            like=args.like,
            audio=audio,
            filters=_filters(args),
            limit=args.limit,
            backend=args.backend,
        )
        if args.json:
            rows = [
                {
                    **r.take.to_dict(),
                    "score": r.score,
                    "keyword_score": r.keyword,
                    "similarity": r.similarity,
                }
                for r in results
            ]
            print(json.dumps(rows, indent=2))
            return 0
        for r in results:
            extra = f"  (similarity {r.similarity:.3f})" if r.similarity is not None else ""
            print(_line(r.take, extra))
        if not results:
            print("no takes found")
    return 0


def run_show(args: argparse.Namespace) -> int:
    """``audiogen-studio library show TAKE``."""
    with _open(args) as lib:
        e = lib.get(args.take)
        prompt = lib.prompt(e.prompt_id).to_dict() if e.prompt_id is not None else None
        if args.json:
            print(json.dumps({**e.to_dict(), "prompt": prompt}, indent=2))
            return 0
        model = " ".join(b for b in (e.model, e.model_version) if b) or "-"
        lines = [
            f"take:      {e.uid}",
            f"name:      {e.name or '-'}",
            f"rating:    {e.rating or '-'}",
            f"tags:      {', '.join(e.tags) or '-'}",
            f"notes:     {e.notes or '-'}",
            f"engine:    {e.engine or '-'}",
            f"model:     {model}" + (f" (hash {e.model_hash[:12]})" if e.model_hash else ""),
            f"seed:      {e.seed if e.seed is not None else '-'}",
            f"device:    {e.device or '-'}",
            f"made:      {_when(e.created)}" + ("" if e.complete else " (stopped early)"),
            f"audio:     {e.duration:.3f} s, {e.rate} Hz, {e.channels} ch "
            f"({e.prompt_frames / e.rate:.3f} s prompt + {e.generated_seconds:.3f} s generated)",
            f"rtf:       {e.rtf:.3f}" if e.rtf is not None else "rtf:       -",
            f"parent:    {e.parent or '-'}",
            f"audio id:  {e.audio_hash}",
        ]
        if prompt is not None:
            lines.append(
                f"prompt:    {prompt['source'] or '(no file)'} frames "
                f"{prompt['range'][0]}-{prompt['range'][1]} ({prompt['audio_hash'][:12]})"
            )
        if e.quality:
            lines.append(
                "quality:   " + ", ".join(f"{k} {v:.3g}" for k, v in sorted(e.quality.items()))
            )
        if e.deleted is not None:
            lines.append(f"deleted:   {_when(e.deleted)} (in the trash until 'library gc')")
        lines.append("settings:  " + json.dumps(dict(e.settings), sort_keys=True))
        print("\n".join(lines))
    return 0


def run_export(args: argparse.Namespace) -> int:
    """``audiogen-studio library export``."""
    out = Path(args.output)
    with _open(args) as lib:
        if out.suffix.lower() in _AUDIO_SUFFIXES:
            if len(args.takes) != 1:
                raise CliError("an audio file holds one take: name exactly one take")
            from audiogen_studio.audio import io

            io.save(lib.audio(args.takes[0]), out, overwrite=args.force)
            print(f"wrote {out}")
            return 0
        uids = [lib.resolve(t) for t in args.takes] or None
        manifest = lib.export(out, uids, filters=None if uids else _filters(args))
        count = len(json.loads(manifest.read_text(encoding="utf-8"))["takes"])
        print(f"exported {count} takes to {out}")
    return 0


def run_import(args: argparse.Namespace) -> int:
    """``audiogen-studio library import``."""
    from audiogen_studio.library import TakeInfo

    added: list[str] = []
    skipped: list[str] = []
    with _open(args) as lib:
        for raw in args.paths:
            path = Path(raw)
            if path.is_dir() or path.name == "library.json":
                report = lib.import_from(path)
                added.extend(report.added)
                skipped.extend(report.skipped)
                continue
            if not path.exists():
                raise CliError(f"{path}: no such file or folder")
            from audiogen_studio.audio import io

            clip = io.load(path)
            info = TakeInfo(
                engine="import",
                name=path.stem,
                tags=tuple(args.tag),
                settings={"source": str(path.resolve())},
                created=path.stat().st_mtime,
            )
            added.append(lib.add_take(clip, info).uid)
    if args.json:
        print(json.dumps({"added": added, "skipped": skipped}, indent=2))
    else:
        extra = f", {len(skipped)} already there" if skipped else ""
        print(f"imported {len(added)} takes{extra}")
    return 0


def run_gc(args: argparse.Namespace) -> int:
    """``audiogen-studio library gc``."""
    with _open(args) as lib:
        before = time.time() - args.older_than * 86400.0
        report = lib.gc(deleted_before=before, orphan_grace=args.grace, dry_run=args.dry_run)
        problems = lib.check() if args.check else []
        if args.json:
            row = dataclasses.asdict(report)
            print(json.dumps({**row, "dry_run": args.dry_run, "problems": problems}, indent=2))
        else:
            verb = "would remove" if args.dry_run else "removed"
            print(
                f"{verb} {report.purged_takes} deleted takes, {report.removed_prompts} unused "
                f"prompts, {report.removed_blobs} unused audio files "
                f"({report.freed_bytes / 1e6:.1f} MB), {report.removed_partials} partial files"
            )
            if args.check:
                print("\n".join(problems) if problems else "check: library is healthy")
    return 1 if problems else 0
