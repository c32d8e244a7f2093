"""End-to-end AudioLM figures for ``benchmarks/audiolm.py``: real-time factor, first chunk.

``end_to_end(bundle)`` loads an AudioLM bundle (default: the shipped ``speech`` bundle from the
search path), continues a 3 s prompt (a plucked riff, or ``--prompt FILE``) by ``seconds`` on the
CPU and reports, as the median of ``runs`` seeded runs after one warm-up:

- ``first_chunk_ms``: from calling ``Engine.stream`` until its first audio chunk arrives
  (prompt tokenisation, codec encoding, decoder priming, the first window through all stages);
- ``rtf``: compute seconds per second of generated audio for the whole continuation.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import torch

from audiogen_studio.audio import io, synth
from audiogen_studio.audio.clip import Clip
from audiogen_studio.engine.api import GenerationRequest
from audiogen_studio.engine.bundles import BundleError
from audiogen_studio.engine.loader import load_engine


def _prompt(path: str | None, seconds: float) -> Clip:
    if path:
        clip = io.load(path)
        return Clip(clip.samples[:, : round(seconds * clip.rate)], clip.rate)
    riff = synth.riff(repeats=3)
    return Clip(riff.samples[:, : round(seconds * riff.rate)], riff.rate)


def end_to_end(
    bundle: str | None = "speech",
    *,
    prompt: str | None = None,
    prompt_seconds: float = 3.0,
    seconds: float = 5.0,
    runs: int = 3,
    takes: int = 1,
) -> dict[str, Any]:
    """``{"rtf", "first_chunk_ms", ...}`` for ``bundle`` (``{}`` with a note when absent)."""
    if bundle is None:
        return {}
    try:
        engine = load_engine(bundle, engine="audiolm", device="cpu")
    except Exception as exc:
        return {"e2e_note": f"no AudioLM bundle {bundle!r}: {exc}"}
    clip = _prompt(prompt, prompt_seconds)
    warm = GenerationRequest(prompt=clip, seconds=0.5, seed=0, takes=takes)
    for _ in engine.stream(warm):
        pass
    firsts, rtfs = [], []
    for run in range(runs):
        request = GenerationRequest(prompt=clip, seconds=seconds, seed=run, takes=takes)
        started = time.perf_counter()
        first = None
        frames = 0
        with torch.inference_mode():
            for chunk in engine.stream(request):
                if first is None:
                    first = time.perf_counter() - started
                if chunk.take == 0:
                    frames += chunk.frames
        elapsed = time.perf_counter() - started
        firsts.append(1000.0 * (first or elapsed))
        rtfs.append(elapsed / (frames / engine.sample_rate))
    return {
        "rtf": round(statistics.median(rtfs), 4),
        "first_chunk_ms": round(statistics.median(firsts), 1),
        "e2e_bundle": bundle,
        "e2e_prompt_seconds": prompt_seconds,
        "e2e_seconds": seconds,
        "e2e_takes": takes,
        "e2e_runs": {"rtf": [round(r, 4) for r in rtfs], "first_chunk_ms": firsts},
    }


__all__ = ["BundleError", "end_to_end"]
