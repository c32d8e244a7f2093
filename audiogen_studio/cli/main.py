"""Entry point of ``audiogen-studio`` and ``python -m audiogen_studio``.

Errors a user can fix (bad files, missing devices, bad arguments) print one line on stderr and
exit with status 2; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
from collections.abc import Sequence
from typing import cast

from audiogen_studio import __version__
from audiogen_studio.audio.errors import AudioError
from audiogen_studio.cli import codec, commands, corpus, demo, generate, gui, library, train
from audiogen_studio.cli import eval as eval_cli
from audiogen_studio.cli.errors import CliError

EXIT_USER_ERROR = 2


class _Parser(argparse.ArgumentParser):
    """argparse that reports usage errors in one line with exit status 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_USER_ERROR, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser with every subcommand."""
    parser = _Parser(
        prog="audiogen-studio",
        description="Continue your own audio with AudioLM and WaveNet models.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    sub = cast(
        "argparse._SubParsersAction[argparse.ArgumentParser]",
        parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser),
    )
    commands.register(sub)
    gui.register(sub)
    demo.register(sub)
    corpus.register(sub)
    generate.register(sub)
    train.register(sub)
    codec.register(sub)
    library.register(sub)
    eval_cli.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the process exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    if args.command == "train" and getattr(args, "no_progress", False):
        # no progress bar (a log file, a cluster job): each validation is a line on stderr
        logging.getLogger("audiogen_studio.training").setLevel(logging.INFO)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return EXIT_USER_ERROR
    try:
        return int(func(args))
    except (AudioError, CliError) as exc:
        if args.debug:
            raise
        message = " ".join(str(exc).split())  # always a single line
        print(f"audiogen-studio: error: {message}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("audiogen-studio: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # the reader went away (`... | head`, `grep -q`): not an error of ours. Point stdout at
        # devnull so the interpreter's final flush does not raise again.
        # (a stdout without a file descriptor, e.g. a captured one, needs nothing)
        with contextlib.suppress(OSError, ValueError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # 128 + SIGPIPE, as a shell reports a process killed by it


def gui_main() -> int:
    """Entry point of the ``audiogen-studio-gui`` launcher: the app window."""
    return main(["gui", *sys.argv[1:]])
