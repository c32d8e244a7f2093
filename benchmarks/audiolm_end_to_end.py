"""End-to-end AudioLM figures for ``benchmarks/audiolm.py``: real-time factor, first chunk.

``end_to_end(bundle)`` loads an AudioLM bundle (default: the shipped ``speech`` bundle from the
search path), continues a 3 s prompt (a plucked riff, or ``--prompt FILE``) by ``seconds`` on the
CPU and reports, as the median of ``runs`` seeded runs after one warm-up:

- ``first_chunk_ms``: from calling ``Engine.stream`` until its first audio chunk arrives
  (prompt tokenisation, codec encoding, decoder priming, the first window through all stages);
- ``rtf``: compute seconds per second of generated audio for the whole continuation.

Both include the bundle's prompt adaptation (``generation.adaptation``, or ``adapt_steps``):
every run adapts anew (the engine's cache of adapted LMs is emptied first, and the warm-up does
not adapt). When the bundle adapts, ``rtf_no_adaptation`` / ``first_chunk_ms_no_adaptation``
are the same runs with ``adapt_steps=0``, side by side, and ``first_chunk_ms_prepared`` the
same runs adapted ahead by ``Engine.prepare`` (what the app does once the prompt settles;
``prepare_ms`` is what that took), so only the stream is timed. ``candidates`` asks for that
many candidate beginnings per take (the first chunk then waits for the choice).
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
    adapt_steps: int | None = None,
    candidates: int | None = None,
) -> dict[str, Any]:
    """``{"rtf", "first_chunk_ms", ...}`` for ``bundle`` (``{}`` with a note when absent)."""
    if bundle is None:
        return {}
    try:
        engine = load_engine(bundle, engine="audiolm", device="cpu")
    except Exception as exc:
        return {"e2e_note": f"no AudioLM bundle {bundle!r}: {exc}"}
    clip = _prompt(prompt, prompt_seconds)
    warm = GenerationRequest(prompt=clip, seconds=0.5, seed=0, takes=takes, adapt_steps=0)
    for _ in engine.stream(warm):
        pass

    def measure(
        steps: int | None, prepare: bool = False
    ) -> tuple[list[float], list[float], list[float]]:
        """First-chunk milliseconds, RTFs and (with ``prepare``) prepare milliseconds of the
        runs; a prepared run times its stream alone."""
        firsts, rtfs, prepares = [], [], []
        for run in range(runs):
            request = GenerationRequest(
                prompt=clip,
                seconds=seconds,
                seed=run,
                takes=takes,
                adapt_steps=steps,
                candidates=candidates,
            )
            forget = getattr(engine, "forget_adaptations", None)
            if forget is not None:
                forget()  # every run pays for its adaptation
            started = time.perf_counter()
            if prepare:
                engine.prepare(request)  # type: ignore[attr-defined]
                prepares.append(1000.0 * (time.perf_counter() - started))
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
        return firsts, rtfs, prepares

    firsts, rtfs, _ = measure(adapt_steps)
    adaptation = getattr(engine, "adaptation_for", None)
    steps = (
        adaptation(GenerationRequest(prompt=clip, adapt_steps=adapt_steps)).steps
        if adaptation is not None
        else 0
    )
    result: dict[str, Any] = {
        "rtf": round(statistics.median(rtfs), 4),
        "first_chunk_ms": round(statistics.median(firsts), 1),
        "e2e_bundle": bundle,
        "e2e_prompt_seconds": prompt_seconds,
        "e2e_seconds": seconds,
        "e2e_takes": takes,
        "e2e_candidates": candidates,
        "e2e_adapt_steps": steps,
        "e2e_runs": {"rtf": [round(r, 4) for r in rtfs], "first_chunk_ms": firsts},
    }
    if steps:
        plain_firsts, plain_rtfs, _ = measure(0)
        result["rtf_no_adaptation"] = round(statistics.median(plain_rtfs), 4)
        result["first_chunk_ms_no_adaptation"] = round(statistics.median(plain_firsts), 1)
        ready_firsts, _, prepare_ms = measure(adapt_steps, prepare=True)
        result["first_chunk_ms_prepared"] = round(statistics.median(ready_firsts), 1)
        result["prepare_ms"] = round(statistics.median(prepare_ms), 1)
    return result


__all__ = ["BundleError", "end_to_end"]
