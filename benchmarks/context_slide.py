"""How a full context slides, side by side: re-run the kept half, or evict the older half.

An AudioLM stream whose KV cache is full slides its context to the last half of it
(``engine/audiolm_pipeline.py``). ``refill`` re-runs that half through the LM (a torch prefill
of ~200 ids per slide for the coarse and fine stages); ``evict`` (``TokenLM.evict``) drops the
older half of the cache and keeps the rest, with no forward pass. This runs the same seeded
continuations with the same engine both ways, alternating run by run so that a machine whose
speed drifts treats both alike, and prints JSON: the median real-time factor of each, their
ratio, and how many slides each stage made per generated second.

    python benchmarks/context_slide.py --bundle music --prompt resources/examples/music-prompt.ogg
"""

from __future__ import annotations

import statistics
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from side_by_side import command_line, run_header, stream_rtf  # benchmarks/ is on the path

from audiogen_studio.audio import io
from audiogen_studio.audio.clip import Clip
from audiogen_studio.engine.api import CONTEXT_SLIDES, GenerationRequest
from audiogen_studio.engine.audiolm_pipeline import AudioLMEngine
from audiogen_studio.engine.loader import load_engine
from audiogen_studio.models.lm import KVCache, TokenLM


@contextmanager
def _counting_slides() -> Iterator[dict[str, int]]:
    """Count the slides (:meth:`KVCache.reset` for a refill, :meth:`TokenLM.evict`) while
    inside; the methods are restored after."""
    counts = {"slides": 0}
    reset, evict = KVCache.reset, TokenLM.evict

    def counting_reset(cache: KVCache) -> None:
        counts["slides"] += 1
        reset(cache)

    def counting_evict(model: TokenLM, cache: KVCache, drop: int) -> None:
        counts["slides"] += 1
        evict(model, cache, drop)

    patched: tuple[tuple[type, str, Any], ...] = (
        (KVCache, "reset", counting_reset),
        (TokenLM, "evict", counting_evict),
    )
    for owner, name, method in patched:
        setattr(owner, name, method)
    try:
        yield counts
    finally:
        for (owner, name, _), real in zip(patched, (reset, evict), strict=True):
            setattr(owner, name, real)


def compare(
    bundle: str, prompt: str, *, seconds: float, prompt_seconds: float, runs: int
) -> dict[str, Any]:
    """``{"rtf": {slide: median}, "evict_over_refill", ...}`` for ``bundle`` continuing the
    first ``prompt_seconds`` of ``prompt`` by ``seconds``, ``runs`` seeds each way."""
    engine = load_engine(bundle, engine="audiolm", device="cpu")
    if not isinstance(engine, AudioLMEngine):
        raise SystemExit(f"{bundle} is not an AudioLM bundle")
    clip = io.load(prompt)
    clip = Clip(clip.samples[:, : round(prompt_seconds * clip.rate)], clip.rate)
    shipped = engine.slide
    warm = GenerationRequest(prompt=clip, seconds=0.5, seed=0)
    for _ in engine.stream(warm):  # compiles the kernels, adapts to the prompt once
        pass
    rtfs: dict[str, list[float]] = {s: [] for s in CONTEXT_SLIDES}
    slides: dict[str, list[int]] = {s: [] for s in CONTEXT_SLIDES}
    try:
        with _counting_slides() as counts:
            for run in range(runs):
                order = CONTEXT_SLIDES if run % 2 == 0 else CONTEXT_SLIDES[::-1]
                for slide in order:
                    engine.slide = slide
                    request = GenerationRequest(prompt=clip, seconds=seconds, seed=run)
                    counts["slides"] = 0
                    rtfs[slide].append(stream_rtf(engine, request))
                    slides[slide].append(counts["slides"])
    finally:
        engine.slide = shipped
    median = {s: round(statistics.median(v), 4) for s, v in rtfs.items()}
    return {
        **run_header(bundle, prompt, prompt_seconds=prompt_seconds, seconds=seconds, runs=runs),
        "bundle_slide": shipped,
        "rtf": median,
        "rtf_runs": {s: [round(r, 4) for r in v] for s, v in rtfs.items()},
        "evict_over_refill": round(median["evict"] / median["refill"], 3),
        "slides_per_second": {s: round(statistics.mean(v) / seconds, 2) for s, v in slides.items()},
    }


def main(argv: list[str] | None = None) -> int:
    return command_line(__doc__ or "", compare, argv)


if __name__ == "__main__":
    raise SystemExit(main())
