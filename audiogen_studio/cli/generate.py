"""``audiogen-studio continue`` and ``audiogen-studio vocode``: generation from the command line.

Chunks stream from ``Engine.stream`` into a progress bar (seconds generated, real-time factor);
Ctrl-C cancels generation and still writes the partial takes.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from audiogen_studio.audio.errors import AudioError
from audiogen_studio.cli.argtypes import positive_int, stage_temperatures
from audiogen_studio.cli.errors import CliError

if TYPE_CHECKING:
    from audiogen_studio.engine.take_ranking import Aspect


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``continue`` and ``vocode`` commands."""
    p = sub.add_parser("continue", help="continue a prompt clip with a model")
    p.add_argument("prompt", help="prompt audio file")
    p.add_argument(
        "--engine",
        choices=["auto", "audiolm", "wavenet"],
        default="auto",
        help="generation engine (default: the one the model bundle is for)",
    )
    p.add_argument("--model", required=True, help="bundle name (see `models list`) or folder")
    p.add_argument("--seconds", type=float, default=4.0, help="length of the continuation")
    p.add_argument("--takes", type=int, default=1, help="takes generated together (1-8)")
    p.add_argument(
        "--best-of",
        type=int,
        default=None,
        metavar="N",
        help="generate N takes together (up to 8) and write the --takes that match the prompt "
        "best, best first (see --rank-by); default: --takes, every take written",
    )
    p.add_argument(
        "--candidates",
        type=int,
        default=None,
        metavar="N",
        help="sample N beginnings of each take together, keep the one that matches the "
        "prompt best after the bundle's first seconds (generation.choose_after) and go on with "
        "it alone (default: the bundle's, see its model card; 1: none)",
    )
    p.add_argument(
        "--level-match",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="AudioLM: keep the continuation at the prompt's level (default: the bundle's, "
        "see its model card; engine/level_match.py)",
    )
    p.add_argument(
        "--beat-guidance",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="AudioLM music: keep to the prompt's beat: attacks made likelier on its beats while "
        "the semantic tokens are sampled (default: the bundle's, see its model card; "
        "engine/beat_guidance.py)",
    )
    p.add_argument(
        "--rank-by",
        choices=["voice", "pitch", "rhythm", "pitch+rhythm"],
        default=None,
        help="how takes are ranked against the prompt: voice (its spectrum: speech), pitch "
        "(its pitch classes: music), rhythm (how its onsets recur: music) or pitch+rhythm; "
        "default: the bundle's (generation.rank_by). With several takes each one's match is "
        "printed",
    )
    p.add_argument("--seed", type=int, default=None, help="seed that reproduces the takes")
    p.add_argument("--temperature", type=float, default=1.0, help="sampling temperature")
    p.add_argument(
        "--stage-temperatures",
        type=stage_temperatures,
        default=None,
        metavar="STAGE=F,...",
        help="AudioLM: per-stage factors on --temperature, e.g. semantic=0.9,fine=0.5 "
        "(default: the bundle's tuned ones, shown on its model card: `models card B --print`)",
    )
    p.add_argument("--top-k", type=int, default=None, help="sample from the k likeliest only")
    p.add_argument(
        "--top-p", type=float, default=None, help="nucleus sampling: keep this much mass"
    )
    p.add_argument(
        "--adapt-steps",
        type=int,
        default=None,
        metavar="N",
        help="AudioLM: gradient steps that adapt the coarse LM to the prompt's voice or "
        "instrument before generating (default: the bundle's, see its model card; 0: none)",
    )
    _common(p)
    p.set_defaults(func=run_continue)

    p = sub.add_parser("vocode", help="re-synthesize audio from its log-mel with a WaveNet vocoder")
    p.add_argument("input", help="audio file to vocode")
    p.add_argument("--model", required=True, help="vocoder bundle name or folder")
    p.add_argument("--seed", type=int, default=None, help="seed")
    p.add_argument("--temperature", type=float, default=1.0, help="sampling temperature")
    _common(p)
    p.set_defaults(func=run_vocode)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("-o", "--output", required=True, help="output file (.wav, .flac, .ogg)")
    p.add_argument(
        "--device",
        default="auto",
        help="auto (the CPU: its fused per-token and per-sample steps outrun a GPU's for the "
        "default bundles), cpu, cuda, cuda:N or mps",
    )
    p.add_argument("--overwrite", action="store_true", help="replace existing output files")
    p.add_argument(
        "--threads",
        type=positive_int,
        default=None,
        help="CPU threads for torch's parts (prefill, prompt adaptation, codec; default: one "
        "per core). 1 keeps generation steady when another program keeps a core busy",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument(
        "--no-library",
        action="store_true",
        help="do not record the prompt and takes in the take library "
        "($AUDIOGEN_LIBRARY or the user data folder; see `audiogen-studio library`)",
    )


def _outputs(output: str, takes: int) -> list[Path]:
    path = Path(output)
    if takes == 1:
        return [path]
    return [path.with_name(f"{path.stem}-take{i + 1}{path.suffix}") for i in range(takes)]


def _run(args: argparse.Namespace, mode: str, source: str) -> int:
    from tqdm import tqdm

    from audiogen_studio.audio import io
    from audiogen_studio.engine.api import GenerationError, GenerationRequest
    from audiogen_studio.engine.loader import load_engine
    from audiogen_studio.engine.takes import collect
    from audiogen_studio.engine.warmup import warm_up

    takes = int(getattr(args, "takes", 1))
    best_of = getattr(args, "best_of", None)
    generate = takes if best_of is None else int(best_of)
    if generate < takes:
        raise CliError(f"--best-of {generate} must be at least --takes {takes}")
    aspect = _aspect(args, generate) if mode == "continue" else None
    outputs = _outputs(args.output, takes)
    existing = [str(p) for p in outputs if p.exists()]
    if existing and not args.overwrite:
        raise CliError(f"{', '.join(existing)} already exists (pass --overwrite to replace)")
    prompt = io.load(source)
    if args.threads:
        import torch

        torch.set_num_threads(int(args.threads))
    began = time.perf_counter()
    try:
        request = GenerationRequest(
            prompt=prompt,
            seconds=float(getattr(args, "seconds", 0.0) or 0.0),
            mode=mode,  # type: ignore[arg-type]
            takes=generate,
            seed=args.seed,
            temperature=args.temperature,
            top_k=getattr(args, "top_k", None),
            top_p=getattr(args, "top_p", None),
            stage_temperatures=getattr(args, "stage_temperatures", None),
            adapt_steps=getattr(args, "adapt_steps", None),
            candidates=getattr(args, "candidates", None),
            level_match=getattr(args, "level_match", None),
            rank_by=getattr(args, "rank_by", None),
            beat_guidance=getattr(args, "beat_guidance", None),
        )
        engine = load_engine(
            args.model, mode=mode, device=args.device, engine=getattr(args, "engine", "auto")
        )
        total = engine.expected_frames(request) * generate / engine.sample_rate
    except GenerationError as exc:
        raise CliError(str(exc)) from exc
    # the process-wide start-up a first generation would otherwise pay inside its timing:
    # numba's CPU target and the fused kernels' cache loads (the app does this at start-up)
    warm_up(pause=0.0)
    startup = time.perf_counter() - began
    cancel = threading.Event()
    bar = tqdm(
        total=round(total, 2),
        unit="s",
        desc=mode,
        disable=args.no_progress,
        leave=False,
        bar_format="{desc}: {n:.2f}/{total:.2f} s audio |{bar}| {elapsed} {postfix}",
    )
    started = time.perf_counter()
    done = 0.0

    def on_chunk(chunk: object) -> None:
        nonlocal done
        seconds = chunk.frames / chunk.rate  # type: ignore[attr-defined]
        done += seconds
        bar.update(seconds)
        elapsed = time.perf_counter() - started
        bar.set_postfix_str(f"RTF {elapsed / max(done, 1e-9):.2f}")

    def on_sigint(signum: int, frame: object) -> None:
        if cancel.is_set():  # a second Ctrl-C aborts at once
            raise KeyboardInterrupt
        cancel.set()
        bar.write("stopping: the partial takes will be written (Ctrl-C again to abort)")

    previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        results = collect(engine, request, cancel, on_chunk=on_chunk)
    except GenerationError as exc:
        raise CliError(str(exc)) from exc
    finally:
        signal.signal(signal.SIGINT, previous)
        bar.close()
    matches: dict[int, float] = {}
    if aspect is not None and len(results) > 1:
        from audiogen_studio.engine.take_ranking import RankingError, rank

        try:
            order = rank(
                results[0].prompt.samples,
                [t.generated.samples for t in results],
                results[0].prompt.rate,
                aspect,
            )
        except RankingError as exc:  # e.g. a take cancelled too early to score
            print(f"audiogen-studio: warning: takes not ranked: {exc}", file=sys.stderr)
        else:
            matches = {results[i].index: score for i, score in order}
            results = [results[i] for i, _ in order]
    results = results[:takes]
    elapsed = time.perf_counter() - started
    for take, path in zip(results, outputs, strict=True):
        io.save(take.output, path, overwrite=args.overwrite)
        state = "" if take.complete else " (partial)"
        match = f", {aspect} match {matches[take.index]:.3f}" if take.index in matches else ""
        print(f"{path}: take {take.index + 1}, seed {take.seed}{match}{state}")
    rtf = elapsed / max(done, 1e-9)
    print(
        f"generated {done:.2f} s of audio in {elapsed:.2f} s (RTF {rtf:.3f}) after "
        f"{startup:.2f} s of start-up (loading the model, warming the kernels)"
    )
    if matches and generate > takes:
        kept = done * takes / generate
        print(
            f"kept the {takes} best of {generate} takes by {aspect} match: "
            f"{elapsed / max(kept, 1e-9):.3f} s of compute per second kept"
        )
    if not args.no_library:
        _record_in_library(args, mode, source, engine, results, outputs, rtf, matches, aspect)
    return 0


def _aspect(args: argparse.Namespace, generate: int) -> Aspect | None:
    """What the takes are ranked by: ``--rank-by``, else the bundle's; ``None`` when neither
    names one (then a ``--best-of`` beyond ``--takes`` is a usage error)."""
    from audiogen_studio.engine.bundles import BundleError, find_bundle
    from audiogen_studio.engine.take_ranking import RankingError, bundle_aspect

    if args.rank_by:
        return cast("Aspect", args.rank_by)  # argparse's choices are the aspects
    try:
        aspect = bundle_aspect(find_bundle(args.model).generation)
    except (BundleError, RankingError):
        aspect = None  # a missing or broken bundle is reported when it is loaded
    if aspect is None and generate > int(args.takes):
        raise CliError(
            f"{args.model} names nothing to rank takes by: pass --rank-by voice, pitch, rhythm "
            "or pitch+rhythm"
        )
    return aspect


def _record_in_library(
    args: argparse.Namespace,
    mode: str,
    source: str,
    engine: object,
    results: list[Any],
    outputs: list[Path],
    rtf: float,
    matches: dict[int, float] | None = None,
    aspect: str | None = None,
) -> None:
    """Keep the prompt and every take, with its provenance, in the take library (issue 7).

    The output files are already written: a library problem is reported, never fatal.
    """
    from audiogen_studio.engine.adaptation_settings import default_adapt_steps
    from audiogen_studio.engine.beat_guidance import BeatGuidanceSettings
    from audiogen_studio.engine.bundles import find_bundle
    from audiogen_studio.engine.level_match import LevelMatchSettings
    from audiogen_studio.library import LibraryError, TakeInfo, TakeLibrary
    from audiogen_studio.library.fingerprint import bundle_fingerprint

    try:
        bundle = find_bundle(args.model)
        settings = {
            "mode": mode,
            "seconds": getattr(args, "seconds", None),
            "takes": len(results),
            "temperature": args.temperature,
            "stage_temperatures": getattr(args, "stage_temperatures", None)
            or dict(bundle.generation.get("stage_temperatures", {}))
            or None,
            "top_k": getattr(args, "top_k", None),
            "top_p": getattr(args, "top_p", None),
            "adapt_steps": getattr(args, "adapt_steps", None)
            if getattr(args, "adapt_steps", None) is not None
            else default_adapt_steps(bundle.generation),
            "candidates": getattr(args, "candidates", None)
            or int(bundle.generation.get("candidates", 1)),
            "level_match": getattr(args, "level_match", None)
            if getattr(args, "level_match", None) is not None
            else LevelMatchSettings.from_generation(bundle.generation).enabled,
            "beat_guidance": getattr(args, "beat_guidance", None)
            if getattr(args, "beat_guidance", None) is not None
            else BeatGuidanceSettings.from_generation(bundle.generation).enabled,
            "engine_choice": getattr(args, "engine", "auto"),
            "source": "cli",
        }
        if matches:
            settings["best_of"] = getattr(args, "best_of", None) or len(results)
            settings["rank_by"] = aspect
        engine_name = "audiolm" if bundle.kind == "audiolm" else "wavenet"
        with TakeLibrary() as library:
            prompt = results[0].prompt
            entry = library.add_prompt(prompt, source=str(Path(source).resolve()))
            for take, path in zip(results, outputs, strict=True):
                info = TakeInfo(
                    engine=engine_name,
                    model=bundle.name,
                    model_version=bundle.version,
                    model_hash=bundle_fingerprint(bundle.path),
                    seed=int(take.seed),
                    settings={
                        **settings,
                        "take_index": take.index,
                        "output": str(path),
                        **({"match": matches[take.index]} if matches else {}),
                    },
                    device=str(getattr(engine, "device", args.device)),
                    rtf=rtf,
                    complete=bool(take.complete),
                    name=path.stem,
                )
                library.add_take(
                    take.output,
                    info,
                    prompt_id=entry.id,
                    prompt_frames=prompt.frames if mode == "continue" else 0,
                )
            where = library.root
        print(f"recorded {len(results)} take(s) in the take library at {where}")
    except (LibraryError, OSError, AudioError) as exc:
        message = f"audiogen-studio: warning: takes not recorded in the library: {exc}"
        print(message, file=sys.stderr)


def run_continue(args: argparse.Namespace) -> int:
    """``audiogen-studio continue PROMPT ...``."""
    return _run(args, "continue", args.prompt)


def run_vocode(args: argparse.Namespace) -> int:
    """``audiogen-studio vocode IN ...``."""
    return _run(args, "vocode", args.input)
