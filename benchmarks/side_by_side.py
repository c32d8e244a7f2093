"""What the side-by-side engine benchmarks share (``context_slide.py``, ``beat_guidance.py``):
timing one streamed request, and the command line that runs a ``compare`` and prints its JSON.

Each of them runs the same seeded continuations on one engine two ways, alternating run by run
so that a machine whose speed drifts treats both alike.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from collections.abc import Callable
from typing import Any, Protocol

import torch

from audiogen_studio.engine.api import GenerationRequest


class _Streaming(Protocol):
    sample_rate: int

    def stream(self, request: GenerationRequest) -> Any: ...


def stream_rtf(engine: _Streaming, request: GenerationRequest) -> float:
    """Seconds of compute per second of audio that ``engine`` streams for ``request``."""
    began, frames = time.perf_counter(), 0
    with torch.inference_mode():
        for chunk in engine.stream(request):
            frames += chunk.frames
    return (time.perf_counter() - began) / (frames / engine.sample_rate)


def run_header(
    bundle: str, prompt: str, *, prompt_seconds: float, seconds: float, runs: int
) -> dict[str, Any]:
    """What every side-by-side report starts with: the run's inputs, torch threads, machine."""
    return {
        "bundle": bundle,
        "prompt": prompt,
        "prompt_seconds": prompt_seconds,
        "seconds": seconds,
        "runs": runs,
        "threads": torch.get_num_threads(),
        "machine": platform.processor() or platform.machine(),
    }


def command_line(
    doc: str,
    compare: Callable[..., dict[str, Any]],
    argv: list[str] | None,
    *,
    bundle: str = "music",
    runs: int = 4,
) -> int:
    """Parse ``--bundle --prompt --prompt-seconds --seconds --runs --threads``, run
    ``compare(bundle, prompt, seconds=, prompt_seconds=, runs=)`` and print its JSON."""
    ap = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    ap.add_argument("--bundle", default=bundle, help="AudioLM bundle name or folder")
    ap.add_argument("--prompt", default="resources/examples/music-prompt.ogg")
    ap.add_argument("--prompt-seconds", type=float, default=3.0)
    ap.add_argument("--seconds", type=float, default=8.0, help="continuation length")
    ap.add_argument("--runs", type=int, default=runs, help="seeded runs each way")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    result = compare(
        a.bundle, a.prompt, seconds=a.seconds, prompt_seconds=a.prompt_seconds, runs=a.runs
    )
    json.dump(result, sys.stdout, indent=2)
    print()
    return 0
