"""Ctrl-C (SIGINT) and SIGTERM stop a training command cleanly instead of killing it.

The first signal sets the trainer's ``stop`` event: it finishes the step it is in, writes its
checkpoint and the bundle (exactly as a ``--time-limit`` stop does), and the command exits with
``128 + signal`` (130 for Ctrl-C) so scripts still see that it was interrupted. Re-running the
same command resumes. A second signal aborts at once (``KeyboardInterrupt``), e.g. while stage 1
of a codec or the tokenisation, which do not look at the event, is still running.
"""

from __future__ import annotations

import argparse
import functools
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import FrameType

_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@dataclass
class GracefulStop:
    """The event a trainer polls, and the signal that set it (``None``: not interrupted)."""

    event: threading.Event = field(default_factory=threading.Event)
    signal: int | None = None

    def exit_status(self, status: int = 0) -> int:
        """``128 + signal`` after an interruption, else ``status``."""
        return 128 + self.signal if self.signal is not None else status


@contextmanager
def graceful_stop() -> Iterator[GracefulStop]:
    """Route SIGINT/SIGTERM to a :class:`GracefulStop` while the block runs.

    Outside the main thread (where Python cannot install handlers) the event is still yielded,
    and signals keep their usual effect.
    """
    stop = GracefulStop()

    def handler(signum: int, frame: FrameType | None) -> None:
        if stop.signal is not None:
            raise KeyboardInterrupt
        stop.signal = signum
        stop.event.set()
        print(
            f"\n{signal.Signals(signum).name}: stopping after this step; the checkpoint and the "
            "bundle are written, re-run the same command to resume (again to abort at once)",
            file=sys.stderr,
            flush=True,
        )

    if threading.current_thread() is not threading.main_thread():
        yield stop
        return
    previous = {s: signal.signal(s, handler) for s in _SIGNALS}
    try:
        yield stop
    finally:
        for s, old in previous.items():
            signal.signal(s, old)


def interruptible(
    run: Callable[[argparse.Namespace, threading.Event], int],
) -> Callable[[argparse.Namespace], int]:
    """Wrap a training command ``run(args, stop)``: it passes ``stop`` to its trainer, and the
    command returns ``128 + signal`` when a signal stopped it."""

    @functools.wraps(run)
    def command(args: argparse.Namespace) -> int:
        with graceful_stop() as stop:
            status = run(args, stop.event)
        return stop.exit_status(status)

    return command
