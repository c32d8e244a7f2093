"""``audiogen-studio gui [FILE] [--screenshot PNG]``: the desktop app window."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from audiogen_studio.cli.errors import CliError


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``gui`` command."""
    p = sub.add_parser("gui", help="open the desktop app (optionally with a file)")
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
        help="seconds to wait before the screenshot",
    )
    p.add_argument("--size", default="1400x900", help="window size WxH for screenshots")
    p.set_defaults(func=run)


def _has_display() -> bool:
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def run(args: argparse.Namespace) -> int:
    """Start Qt, open the main window, and run the event loop (or take a screenshot).

    Without a display, a screenshot renders offscreen; opening the window is a clear error
    (instead of Qt aborting the process).
    """
    if not _has_display() and not os.environ.get("QT_QPA_PLATFORM") and sys.platform == "linux":
        if not args.screenshot:
            raise CliError(
                "no display (DISPLAY and WAYLAND_DISPLAY are unset): run `audiogen-studio demo` "
                "for the headless demo, or use --screenshot PNG"
            )
        os.environ["QT_QPA_PLATFORM"] = "offscreen"
    from audiogen_studio.app.launch import launch

    width, _, height = str(args.size).partition("x")
    return launch(
        file=Path(args.file) if args.file else None,
        screenshot=Path(args.screenshot) if args.screenshot else None,
        after_seconds=float(args.after),
        size=(int(width), int(height)),
    )
