"""``audiogen-studio gui [FILE] [--screenshot PNG] [--generate SECONDS]``: the app window."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from audiogen_studio.cli.errors import CliError

ENGINES = ("audiolm", "wavenet", "wavenet-vocoder")  # app/generation_panel.py: ENGINE_KEYS


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``gui`` command."""
    p = sub.add_parser(
        "gui",
        help="open the desktop app (optionally with a file)",
        description=(
            "Open the desktop app. With --screenshot, render the window to a PNG and exit "
            "(offscreen or under Xvfb); with --generate, first generate that many seconds from "
            "FILE (the whole file is the prompt) and wait for them."
        ),
    )
    p.add_argument("file", nargs="?", help="audio file to open")
    p.add_argument(
        "--screenshot",
        metavar="PNG",
        help="render the window to PNG and exit (works offscreen or under Xvfb)",
    )
    p.add_argument(
        "--after",
        type=float,
        default=0.5,
        metavar="S",
        help="seconds to wait before the screenshot (after generation, with --generate)",
    )
    p.add_argument("--size", default="1400x900", help="window size WxH for screenshots")
    p.add_argument(
        "--generate",
        type=float,
        default=None,
        metavar="SECONDS",
        help="generate SECONDS of continuation of FILE at start (with --screenshot: then shoot)",
    )
    p.add_argument(
        "--model", default=None, help="model bundle name or folder for --generate (default: first)"
    )
    p.add_argument(
        "--engine",
        choices=ENGINES,
        default=None,
        help="engine for --generate (default: the first with an installed model)",
    )
    p.add_argument(
        "--timeout",
        type=float,
        default=600.0,
        metavar="S",
        help="with --screenshot --generate: give up (and shoot) after S seconds",
    )
    p.set_defaults(func=run)


def _has_display() -> bool:
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def _size(text: str) -> tuple[int, int]:
    width, sep, height = text.lower().partition("x")
    try:
        w, h = int(width), int(height)
    except ValueError:
        w = h = 0
    if not sep or w < 200 or h < 150:
        raise CliError(f"--size must be WxH with W >= 200 and H >= 150, got {text!r}")
    return w, h


def run(args: argparse.Namespace) -> int:
    """Start Qt, open the main window, and run the event loop (or take a screenshot).

    Without a display, a screenshot renders offscreen; opening the window is a clear error
    (instead of Qt aborting the process).
    """
    generate = args.generate
    if generate is not None:
        if not generate > 0:
            raise CliError(f"--generate must be a positive number of seconds, got {generate}")
        if not args.file:
            raise CliError("--generate needs FILE: the prompt to continue")
    if (args.model or args.engine) and generate is None:
        raise CliError("--model and --engine only apply with --generate")
    if args.model:
        from audiogen_studio.engine.bundles import BundleError, find_bundle

        try:
            find_bundle(args.model)
        except BundleError as exc:
            raise CliError(str(exc)) from exc
    if args.file and not Path(args.file).is_file():
        raise CliError(f"{args.file}: no such file")
    size = _size(str(args.size))
    if not _has_display() and not os.environ.get("QT_QPA_PLATFORM") and sys.platform == "linux":
        if not args.screenshot:
            raise CliError(
                "no display (DISPLAY and WAYLAND_DISPLAY are unset): run `audiogen-studio demo` "
                "for the headless demo, or use --screenshot PNG"
            )
        os.environ["QT_QPA_PLATFORM"] = "offscreen"
    from audiogen_studio.app.launch import launch

    return launch(
        file=Path(args.file) if args.file else None,
        screenshot=Path(args.screenshot) if args.screenshot else None,
        after_seconds=float(args.after),
        size=size,
        generate_seconds=generate,
        model=args.model,
        engine=args.engine,
        timeout_seconds=float(args.timeout),
    )
