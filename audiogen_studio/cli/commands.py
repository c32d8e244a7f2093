"""Small inspection commands: ``info FILE``, ``devices``, ``models list|card|pack``."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

from audiogen_studio.cli.argtypes import (
    adaptation_settings,
    beat_guidance_settings,
    stage_temperatures,
)
from audiogen_studio.cli.errors import CliError


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``info``, ``devices`` and ``models`` commands."""
    p = sub.add_parser("info", help="show an audio file's rate, channels, duration, peak, format")
    p.add_argument("file", help="audio file (WAV, FLAC, OGG, MP3, ...)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=run_info)

    p = sub.add_parser("devices", help="list audio input and output devices")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=run_devices)

    p = sub.add_parser("models", help="model bundles")
    msub = p.add_subparsers(dest="models_command", metavar="ACTION", required=True)
    lp = msub.add_parser("list", help="list installed model bundles and where they were found")
    lp.add_argument("--json", action="store_true", help="print JSON")
    lp.set_defaults(func=run_models_list)
    cp = msub.add_parser(
        "card",
        help="render a bundle's model card (README.md) from its bundle.json",
        description="Render BUNDLE/README.md from bundle.json (training provenance, metrics, "
        "measured quality); optionally set the bundle's version and description first.",
    )
    cp.add_argument("bundle", help="bundle folder or installed bundle name")
    cp.add_argument("--version", dest="bundle_version", help="set the bundle's version")
    cp.add_argument("--description", help="set the bundle's description")
    cp.add_argument(
        "--quality",
        metavar="REPORT.json",
        help="record the figures of a quality report (benchmarks/quality.py or "
        "`audiogen-studio eval ... -o`) as the bundle's measured quality",
    )
    cp.add_argument(
        "--best-of-quality",
        metavar="REPORT.json",
        help="record a quality report made with --best-of N as the bundle's figures for the "
        "best of N takes (a second table on the card)",
    )
    cp.add_argument(
        "--candidates-quality",
        metavar="REPORT.json",
        help="record a quality report made with --candidates N as the bundle's figures with N "
        "candidate beginnings per take (another table on the card)",
    )
    cp.add_argument(
        "--rank-by",
        choices=["voice", "pitch", "rhythm", "pitch+rhythm", "none"],
        default=None,
        help="what the bundle's takes are ranked by against their prompt (continue --best-of; "
        "the app's take ranks): voice (speech), pitch, rhythm or pitch+rhythm (music); none "
        "removes it",
    )
    cp.add_argument(
        "--candidates",
        type=int,
        default=None,
        metavar="N",
        help="continuation bundles: candidate beginnings per take by default, the best kept after "
        "--choose-after seconds (needs --rank-by; 1 removes it)",
    )
    cp.add_argument(
        "--choose-after",
        type=float,
        default=None,
        metavar="S",
        help="seconds of each candidate beginning generated before the best is kept",
    )
    cp.add_argument(
        "--measured-with",
        metavar="COMMAND",
        help="the command that produced --quality, shown on the card",
    )
    cp.add_argument(
        "--stage-temperatures",
        type=stage_temperatures,
        default=None,
        metavar="STAGE=F,...",
        help="AudioLM: record tuned per-stage temperature factors (e.g. fine=0) as the bundle's "
        "sampling defaults",
    )
    cp.add_argument(
        "--decode-quantizers",
        type=int,
        default=None,
        metavar="Q",
        help="AudioLM: decode generated audio from the codec's first Q quantizers (at most the "
        "coarse ones: the fine LM is skipped); 0 restores all",
    )
    cp.add_argument(
        "--coarse-guidance",
        type=float,
        default=None,
        metavar="W",
        help="AudioLM: classifier-free guidance scale of the coarse stage (needs a coarse LM "
        "trained with --semantic-dropout; 1 restores none)",
    )
    cp.add_argument(
        "--semantic-cache",
        type=float,
        default=None,
        metavar="M",
        help="AudioLM: weight in [0, 1) of the prompt's semantic-token frequencies mixed into "
        "the semantic LM's distribution (0 removes it)",
    )
    cp.add_argument(
        "--level-match",
        choices=["on", "off"],
        default=None,
        help="AudioLM: keep continuations at their prompt's level by default "
        "(engine/level_match.py); off removes it",
    )
    cp.add_argument(
        "--context-slide",
        choices=["refill", "evict"],
        default=None,
        help="AudioLM: how a stage whose context is full slides it: evict drops the older half "
        "of its KV cache (no forward pass), refill (the default) re-runs the kept half",
    )
    cp.add_argument(
        "--beat-guidance",
        type=beat_guidance_settings,
        default=None,
        metavar="on|off|KEY=V,...",
        help="AudioLM music: steer the semantic stage onto the prompt's beat by default "
        "(engine/beat_guidance.py): on, off (removes it), or its settings, e.g. "
        "strength=3,width_seconds=0.03,off_beat=0.3",
    )
    cp.add_argument(
        "--adaptation",
        type=adaptation_settings,
        default=None,
        metavar="KEY=V,...",
        help="AudioLM: prompt adaptation defaults, e.g. steps=12,lr=8e-4,mix=0.35 (also "
        "blocks=, seconds=, windows=, stages=coarse+semantic); 'off' removes them",
    )
    cp.add_argument("--print", action="store_true", help="print the card instead of writing it")
    cp.set_defaults(func=run_models_card)
    pp = msub.add_parser(
        "pack",
        help="copy a trained bundle's run-time files (no checkpoints or caches) with its card",
    )
    pp.add_argument("bundle", help="trained bundle folder")
    pp.add_argument("destination", help="folder to create or refresh (e.g. models/speech)")
    pp.add_argument(
        "--half",
        action="store_true",
        help="store float32 weights as float16 (half the size; upcast to float32 on load)",
    )
    pp.set_defaults(func=run_models_pack)
    ap = msub.add_parser(
        "adopt",
        help="copy trained components (weights, provenance, metrics) from another bundle",
        description="Copy COMPONENTs (e.g. lm_coarse, or a codec whose decoder trained longer) "
        "from SOURCE into BUNDLE, when stages were trained in separate folders. Both bundles "
        "must tokenise a probe signal identically (same codec quantizer and semantic "
        "tokenizer), or their LMs would not fit each other.",
    )
    ap.add_argument("bundle", help="bundle folder to update")
    ap.add_argument("source", help="bundle folder to copy from")
    ap.add_argument("components", nargs="+", metavar="COMPONENT", help="e.g. codec lm_coarse")
    ap.set_defaults(func=run_models_adopt)


def _emit(rows: dict[str, Any] | list[dict[str, Any]], as_json: bool, text: str) -> None:
    print(json.dumps(rows, indent=2) if as_json else text)


def run_info(args: argparse.Namespace) -> int:
    """``audiogen-studio info FILE``."""
    from audiogen_studio.audio import io

    header = io.info(args.file)
    clip = io.load(args.file)
    peak = clip.peak
    peak_db = 20 * math.log10(peak) if peak > 0 else float("-inf")
    row = {
        "file": str(header.path),
        "format": header.format,
        "subtype": header.subtype,
        "rate": clip.rate,
        "channels": clip.channels,
        "frames": clip.frames,
        "duration": round(clip.duration, 6),
        "peak": round(peak, 6),
        "peak_dbfs": round(peak_db, 2) if peak > 0 else None,
    }
    text = "\n".join(
        [
            f"file:      {row['file']}",
            f"format:    {header.format} ({header.subtype})",
            f"rate:      {clip.rate} Hz",
            f"channels:  {clip.channels}",
            f"duration:  {clip.duration:.3f} s ({clip.frames} frames)",
            f"peak:      {peak:.4f} ({peak_db:.2f} dBFS)" if peak > 0 else "peak:      0 (silent)",
        ]
    )
    _emit(row, args.json, text)
    return 0


def run_devices(args: argparse.Namespace) -> int:
    """``audiogen-studio devices``."""
    from audiogen_studio.audio import devices

    found = devices.list_devices()
    if not found:
        raise CliError("no audio devices found")
    rows = [
        {
            "index": d.index,
            "name": d.name,
            "hostapi": d.hostapi,
            "inputs": d.max_input_channels,
            "outputs": d.max_output_channels,
            "default_rate": d.default_samplerate,
            "default_input": d.is_default_input,
            "default_output": d.is_default_output,
        }
        for d in found
    ]
    lines = []
    for r in rows:
        marks = ("<" if r["default_input"] else " ") + (">" if r["default_output"] else " ")
        lines.append(
            f"{marks} {r['index']:3d} {r['name']} ({r['hostapi']}; "
            f"{r['inputs']} in, {r['outputs']} out, {r['default_rate']:.0f} Hz)"
        )
    lines.append("(< default input, > default output)")
    _emit(rows, args.json, "\n".join(lines))
    return 0


def run_models_list(args: argparse.Namespace) -> int:
    """``audiogen-studio models list``."""
    from audiogen_studio.engine import bundles

    rows: list[dict[str, Any]] = []
    lines: list[str] = []
    for b in bundles.discover():
        if isinstance(b, bundles.BrokenBundle):
            rows.append({"path": str(b.path), "error": b.reason})
            lines.append(f"  ! {b.path}: {b.reason}")
            continue
        rows.append(
            {
                "name": b.name,
                "version": b.version,
                "kind": b.kind,
                "sample_rate": b.sample_rate,
                "path": str(b.path),
                "size_bytes": b.size_bytes,
                "metrics": dict(b.metrics),
            }
        )
        lines.append(
            f"  {b.name} {b.version} ({b.kind}, {b.sample_rate} Hz, "
            f"{b.size_bytes / 1e6:.1f} MB) {b.path}"
        )
    if not lines:
        where = ", ".join(str(p) for p in bundles.search_path())
        lines.append(f"no model bundles installed (searched: {where})")
    _emit(rows, args.json, "\n".join(lines))
    return 0


def run_models_card(args: argparse.Namespace) -> int:
    """``audiogen-studio models card BUNDLE [--version V] [--description TEXT] [--print]``."""
    from audiogen_studio.engine import bundles, model_card

    info = bundles.find_bundle(args.bundle)
    metrics: dict[str, Any] = {}
    for section, path in (
        ("quality", args.quality),
        (model_card.BEST_OF_SECTION, getattr(args, "best_of_quality", None)),
        (model_card.CANDIDATES_SECTION, getattr(args, "candidates_quality", None)),
    ):
        if not path:
            continue
        try:
            report = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise CliError(f"cannot read the quality report {path}: {exc}") from exc
        if not isinstance(report, dict):
            raise CliError(f"{path} is not a quality report (a JSON object)")
        if args.measured_with and section == "quality":
            report["_measured_with"] = args.measured_with
        figures = model_card.quality_figures(report)
        if section == model_card.BEST_OF_SECTION and "_best_of" not in figures:
            raise CliError(f"{path} was not measured with --best-of N (N > 1)")
        if section == model_card.CANDIDATES_SECTION and "_candidates" not in figures:
            raise CliError(f"{path} was not measured with --candidates N (N > 1)")
        metrics[section] = figures
    rank_by = getattr(args, "rank_by", None)
    rank_by = "" if rank_by == "none" else rank_by
    changes = (
        args.bundle_version,
        args.description,
        args.stage_temperatures,
        args.decode_quantizers,
        args.adaptation,
        args.coarse_guidance,
        args.semantic_cache,
        rank_by,
        args.candidates,
        args.choose_after,
        args.level_match,
        args.context_slide,
        args.beat_guidance,
    )
    if any(c is not None for c in changes) or metrics:
        try:
            info = model_card.update_bundle(
                info.path,
                version=args.bundle_version,
                description=args.description,
                metrics=metrics,
                stage_temperatures=args.stage_temperatures,
                decode_quantizers=args.decode_quantizers,
                adaptation=args.adaptation,
                coarse_guidance=args.coarse_guidance,
                semantic_cache=args.semantic_cache,
                rank_by=rank_by,
                candidates=args.candidates,
                choose_after=args.choose_after,
                level_match=None if args.level_match is None else args.level_match == "on",
                context_slide=args.context_slide,
                beat_guidance=args.beat_guidance,
            )
        except bundles.BundleError as exc:
            raise CliError(str(exc)) from exc
    if args.print:
        print(model_card.render_model_card(info), end="")
    else:
        print(model_card.write_model_card(info.path))
    return 0


def run_models_pack(args: argparse.Namespace) -> int:
    """``audiogen-studio models pack BUNDLE DESTINATION``."""
    from audiogen_studio.engine import bundles, model_card

    info = bundles.find_bundle(args.bundle)
    dest = model_card.pack_bundle(info.path, args.destination, half=args.half)
    packed = bundles.read_bundle(dest)
    print(f"{dest} ({model_card.shipped_bytes(packed) / 1e6:.1f} MB)")
    return 0


def run_models_adopt(args: argparse.Namespace) -> int:
    """``audiogen-studio models adopt BUNDLE SOURCE COMPONENT...``."""
    from audiogen_studio.engine.bundle_adopt import adopt_components

    info = adopt_components(args.bundle, args.source, args.components)
    print(f"{info.path}: adopted {', '.join(args.components)} from {args.source}")
    return 0
