"""What keeping to the prompt's beat costs, side by side: the same continuations with the
semantic stage's beat guidance on and off (``engine/beat_guidance.py``).

Guidance finds the prompt's beat grid once per prompt (an onset envelope, its autocorrelation
and a comb over phases) and adds one vector to the semantic logits per token. This runs the
same seeded continuations on one engine both ways, alternating run by run so that a machine
whose speed drifts treats both alike, and prints JSON: the median real-time factor of each and
their ratio, the grid found and how long finding it took.

    python benchmarks/beat_guidance.py --bundle music --prompt resources/examples/music-prompt.ogg
"""

from __future__ import annotations

import statistics
import time
from typing import Any

from side_by_side import command_line, run_header, stream_rtf  # benchmarks/ is on the path

from audiogen_studio.audio import io
from audiogen_studio.audio.clip import Clip
from audiogen_studio.engine.api import GenerationRequest
from audiogen_studio.engine.audiolm_pipeline import AudioLMEngine
from audiogen_studio.engine.beat_guidance import estimate_beat_grid
from audiogen_studio.engine.loader import load_engine


def compare(
    bundle: str, prompt: str, *, seconds: float, prompt_seconds: float, runs: int
) -> dict[str, Any]:
    """``{"rtf": {"on": median, "off": median}, "on_over_off", "grid", ...}`` for ``bundle``
    continuing the first ``prompt_seconds`` of ``prompt`` by ``seconds``, ``runs`` seeds each
    way."""
    engine = load_engine(bundle, engine="audiolm", device="cpu")
    if not isinstance(engine, AudioLMEngine):
        raise SystemExit(f"{bundle} is not an AudioLM bundle")
    clip = io.load(prompt)
    clip = Clip(clip.samples[:, : round(prompt_seconds * clip.rate)], clip.rate)
    for _ in engine.stream(GenerationRequest(prompt=clip, seconds=0.5, seed=0)):
        pass  # compiles the kernels
    mono = clip.samples.mean(axis=0)
    started = time.perf_counter()
    for _ in range(5):
        grid = estimate_beat_grid(mono, clip.rate)
    grid_ms = (time.perf_counter() - started) / 5 * 1000
    rtfs: dict[str, list[float]] = {"off": [], "on": []}
    for run in range(runs):
        for way in ("off", "on") if run % 2 == 0 else ("on", "off"):
            request = GenerationRequest(
                prompt=clip, seconds=seconds, seed=run, beat_guidance=way == "on"
            )
            engine.forget_beat_grids()  # each run finds its grid, as a new prompt would
            rtfs[way].append(stream_rtf(engine, request))
    median = {w: round(statistics.median(v), 4) for w, v in rtfs.items()}
    return {
        **run_header(bundle, prompt, prompt_seconds=prompt_seconds, seconds=seconds, runs=runs),
        "bundle_beat_guidance": engine.beat_guidance.to_dict(),
        "rtf": median,
        "rtf_runs": {w: [round(r, 4) for r in v] for w, v in rtfs.items()},
        "on_over_off": round(median["on"] / median["off"], 3),
        "grid": None
        if grid is None
        else {
            "bpm": round(grid.bpm, 2),
            "phase_s": round(grid.phase, 4),
            "clarity": round(grid.clarity, 3),
        },
        "grid_ms": round(grid_ms, 2),
    }


def main(argv: list[str] | None = None) -> int:
    return command_line(__doc__ or "", compare, argv, runs=6)


if __name__ == "__main__":
    raise SystemExit(main())
