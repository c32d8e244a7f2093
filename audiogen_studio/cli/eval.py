"""``audiogen-studio eval``: quality figures as JSON (issue 6 item 4; optional ``[eval]`` extra).

- ``eval codec --model BUNDLE --data CORPUS [--split test] [--clips N]``: the bundle's codec on
  held-out clips against the input (PESQ-wb, ESTOI, ViSQOL, log-mel L1), next to Opus at the same
  and at double the bitrate (opus-tools);
- ``eval continuation PROMPT.wav TAKE.wav --kind speech|music [--prompt-seconds S]``: one take
  (prompt + continuation, as ``continue`` writes it; the junction is at the prompt's end);
- ``eval bundle --model BUNDLE --data CORPUS --kind speech|music``: continue held-out prompts
  with the bundle's engine and score every take, next to the real continuations.

JSON goes to stdout, or to ``-o FILE``. Each summary figure carries its target and whether it is
met. Missing metric packages or opus-tools are one-line errors that say what to install.
"""

from __future__ import annotations

import argparse
from typing import Any

from audiogen_studio.cli.argtypes import positive_float, positive_int, stage_temperatures
from audiogen_studio.cli.codec import DEFAULT_ENCODE_BEAM
from audiogen_studio.cli.errors import CliError


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``eval codec``, ``eval vocoder``, ``eval continuation`` and ``eval bundle``."""
    p = sub.add_parser(
        "eval",
        help="quality figures of a codec, a take or a bundle (JSON)",
        description="Objective quality evaluation; needs the optional [eval] extra "
        "(pip install 'audiogen_studio[eval]') and, for the Opus comparison, opus-tools.",
    )
    esub = p.add_subparsers(dest="eval_command", metavar="WHAT", required=True)

    c = esub.add_parser(
        "codec",
        help="a bundle's codec on held-out clips, next to Opus",
        description="Round-trip held-out clips through the bundle's codec and through Opus "
        "at the codec's bitrate and at double it; PESQ-wb, ESTOI, ViSQOL, log-mel L1.",
    )
    _reference_args(c, "bundle name or folder with a codec", clips=8, seconds=6)
    c.add_argument(
        "--n-q", type=positive_int, default=None, metavar="Q", help="codebooks (default: all)"
    )
    c.add_argument(
        "--beam",
        type=positive_int,
        default=1,
        metavar="M",
        help="encode with a beam search of width M over the codes (same bitrate; "
        f"1: greedy, as the AudioLM tokens; 'codec encode' uses {DEFAULT_ENCODE_BEAM})",
    )
    c.add_argument("--no-opus", action="store_true", help="skip the Opus comparison")
    c.add_argument("--no-visqol", action="store_true", help="skip ViSQOL (the slowest metric)")
    c.add_argument(
        "--visqol-mode",
        choices=["speech", "audio"],
        default="speech",
        help="ViSQOL speech mode (16 kHz, default) or audio mode (48 kHz, full-band codecs)",
    )
    c.add_argument(
        "--dnsmos",
        action="store_true",
        help="speech: also DNSMOS OVRL of each re-synthesis and of the input (naturalness)",
    )
    c.add_argument("--device", default="cpu", help="auto, cpu, cuda or mps (default cpu)")
    _common(c)
    c.set_defaults(func=run_codec)

    v = esub.add_parser(
        "vocoder",
        help="a mel WaveNet vocoder on held-out speech, next to Griffin-Lim",
        description="Re-synthesize held-out clips from their log-mel with the vocoder and with "
        "Griffin-Lim from the same frames; PESQ-wb, ESTOI, ViSQOL, log-mel L1.",
    )
    _reference_args(v, "mel vocoder bundle name or folder", clips=4, seconds=4)
    v.add_argument("--temperature", type=float, default=1.0, help="sampling temperature")
    v.add_argument("--no-visqol", action="store_true", help="skip ViSQOL (the slowest metric)")
    v.add_argument("--device", default="cpu", help="auto, cpu, cuda or mps (default cpu)")
    _common(v)
    v.set_defaults(func=run_vocoder)

    t = esub.add_parser(
        "continuation",
        help="one take: prompt + continuation",
        description="Score a take file that holds the prompt followed by its continuation: "
        "the seam, and speaker/DNSMOS/pitch (speech) or key/tempo/chroma (music).",
    )
    t.add_argument("prompt", help="the prompt file (its length is where the take's seam is)")
    t.add_argument("take", help="the take file: prompt followed by the continuation")
    t.add_argument("--kind", required=True, choices=["speech", "music"], help="what it is")
    t.add_argument(
        "--prompt-seconds",
        type=positive_float,
        default=None,
        metavar="S",
        help="the prompt's length in the take (default: the prompt file's length)",
    )
    t.add_argument("--no-dnsmos", action="store_true", help="skip DNSMOS (speech)")
    _common(t)
    t.set_defaults(func=run_continuation)

    b = esub.add_parser(
        "bundle",
        help="continue held-out prompts with a bundle and score the takes",
        description="Continue the first --prompt-seconds of held-out clips with the bundle "
        "and score each take, next to the real continuation of the same clip.",
    )
    b.add_argument("--model", required=True, help="bundle name or folder")
    _corpus_args(b, clips=4)
    b.add_argument("--kind", required=True, choices=["speech", "music"], help="what the data is")
    b.add_argument("--prompt-seconds", type=positive_float, default=3.0, help="default 3")
    b.add_argument("--seconds", type=positive_float, default=4.0, help="continuation (default 4)")
    b.add_argument("--seed", type=int, default=0, help="seed of the first take")
    b.add_argument("--temperature", type=float, default=1.0, help="sampling temperature")
    b.add_argument(
        "--stage-temperatures",
        type=stage_temperatures,
        default=None,
        metavar="STAGE=F,...",
        help="AudioLM: per-stage factors on --temperature (default: the bundle's)",
    )
    b.add_argument("--top-k", type=positive_int, default=None, help="sample from the k likeliest")
    b.add_argument(
        "--adapt-steps",
        type=int,
        default=None,
        metavar="N",
        help="AudioLM: steps that adapt the LMs to each prompt (default: the bundle's; 0: none)",
    )
    b.add_argument("--device", default="cpu", help="auto, cpu, cuda or mps (default cpu)")
    b.add_argument("--no-dnsmos", action="store_true", help="skip DNSMOS (speech)")
    b.add_argument(
        "--no-reference", action="store_true", help="do not score the real continuations"
    )
    b.add_argument("--no-progress", action="store_true", help="no progress bar")
    _common(b)
    b.set_defaults(func=run_bundle)


def _reference_args(p: argparse.ArgumentParser, model: str, *, clips: int, seconds: int) -> None:
    """``--model``, the corpus and ``--seconds`` of a full-reference evaluation."""
    p.add_argument("--model", required=True, help=model)
    _corpus_args(p, clips=clips)
    p.add_argument(
        "--seconds",
        type=positive_float,
        default=float(seconds),
        help=f"seconds of each clip (default {seconds})",
    )


def _corpus_args(p: argparse.ArgumentParser, *, clips: int) -> None:
    p.add_argument("--data", required=True, metavar="CORPUS", help="corpus folder (manifest.jsonl)")
    p.add_argument("--split", default="test", help="corpus split (default test: held out)")
    p.add_argument(
        "--clips", type=positive_int, default=clips, help=f"clips to use (default {clips})"
    )


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("-o", "--output", default=None, help="write the JSON here (default stdout)")
    p.add_argument("--threads", type=positive_int, default=None, help="CPU threads for torch")


def _setup(args: argparse.Namespace) -> None:
    from pathlib import Path

    if args.output and args.output != "-":
        out = Path(args.output)
        folder = out.parent if str(out.parent) else Path(".")
        if not folder.is_dir():
            raise CliError(f"{out}: folder {folder} does not exist")
    if args.threads:
        import torch

        torch.set_num_threads(int(args.threads))


def _write(data: dict[str, Any], output: str | None) -> int:
    from audiogen_studio.evaluation import report

    report.write(data, output)
    return 0


def run_codec(args: argparse.Namespace) -> int:
    """``audiogen-studio eval codec --model BUNDLE --data CORPUS``."""
    from audiogen_studio.evaluation.held_out import (
        codec_summary,
        evaluate_codec_on_corpus,
        load_bundle_codec,
    )

    _setup(args)
    name, codec = load_bundle_codec(args.model, args.device)
    n_q = args.n_q
    total = getattr(codec.config, "n_q", None)
    if n_q is not None and total is not None and n_q > int(total):
        raise CliError(f"--n-q {n_q}: the codec of '{name}' has {total} codebooks")
    result = evaluate_codec_on_corpus(
        codec,
        args.data,
        split=args.split,
        clips=args.clips,
        seconds=args.seconds,
        n_q=n_q,
        opus=not args.no_opus,
        with_visqol=not args.no_visqol,
        visqol_mode=args.visqol_mode,
        with_dnsmos=args.dnsmos,
        beam=args.beam,
    )
    return _write(
        {
            "evaluation": "codec",
            "bundle": name,
            "corpus": args.data,
            "split": args.split,
            "summary": codec_summary(result),
            "report": result,
        },
        args.output,
    )


def run_vocoder(args: argparse.Namespace) -> int:
    """``audiogen-studio eval vocoder --model BUNDLE --data CORPUS``."""
    from audiogen_studio.evaluation.vocoder_quality import evaluate_vocoder_on_corpus

    _setup(args)
    result = evaluate_vocoder_on_corpus(
        args.model,
        args.data,
        split=args.split,
        clips=args.clips,
        seconds=args.seconds,
        temperature=args.temperature,
        device=args.device,
        with_visqol=not args.no_visqol,
    )
    return _write(
        {
            "evaluation": "vocoder",
            "corpus": args.data,
            "split": args.split,
            "summary": result.summary(),
            "report": result,
        },
        args.output,
    )


def run_continuation(args: argparse.Namespace) -> int:
    """``audiogen-studio eval continuation PROMPT TAKE --kind speech|music``."""
    from audiogen_studio.evaluation.continuation import load_take, score_continuation
    from audiogen_studio.evaluation.held_out import summarize

    _setup(args)
    take, rate, frames = load_take(
        args.take, prompt_path=args.prompt, prompt_seconds=args.prompt_seconds
    )
    scores = score_continuation(take, rate, frames, args.kind, with_dnsmos=not args.no_dnsmos)
    return _write(
        {
            "evaluation": "continuation",
            "prompt": args.prompt,
            "take": args.take,
            "summary": summarize([scores], args.kind),
            "scores": scores,
        },
        args.output,
    )


def run_bundle(args: argparse.Namespace) -> int:
    """``audiogen-studio eval bundle --model BUNDLE --data CORPUS --kind speech|music``."""
    from tqdm import tqdm

    from audiogen_studio.evaluation.held_out import evaluate_continuations

    _setup(args)
    with tqdm(
        total=args.clips, desc="prompts", unit="take", disable=args.no_progress, leave=False
    ) as bar:

        def progress(done: int, total: int) -> None:
            bar.total = total
            bar.update(done - bar.n)

        result = evaluate_continuations(
            args.model,
            args.data,
            args.kind,
            split=args.split,
            clips=args.clips,
            prompt_seconds=args.prompt_seconds,
            seconds=args.seconds,
            seed=args.seed,
            temperature=args.temperature,
            stage_temperatures=args.stage_temperatures,
            top_k=args.top_k,
            adapt_steps=args.adapt_steps,
            device=args.device,
            with_dnsmos=not args.no_dnsmos,
            with_reference=not args.no_reference,
            progress=progress,
        )
    return _write({"evaluation": "bundle", "report": result}, args.output)
