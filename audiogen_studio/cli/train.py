"""``audiogen-studio train wavenet``: train a WaveNet (or a mel vocoder) into a model bundle.

Several GPUs or machines: ``torchrun --nproc_per_node N -m audiogen_studio train wavenet ...``.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading

from audiogen_studio.cli import codec, train_audiolm
from audiogen_studio.cli.argtypes import non_negative_int, positive_float, positive_int
from audiogen_studio.cli.errors import CliError
from audiogen_studio.cli.interrupt import interruptible


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``train wavenet``."""
    p = sub.add_parser(
        "train",
        help="train a model into a bundle (WaveNet, AudioLM stages)",
        description="Train a model on your audio into a model bundle the app and CLI can use.",
    )
    tsub = p.add_subparsers(dest="train_model", metavar="MODEL", required=True)
    codec.register_train(tsub)
    train_audiolm.register(tsub)
    wp = tsub.add_parser(
        "wavenet",
        help="WaveNet for continuation, or with --mel a mel-conditioned vocoder",
        description="Train a WaveNet on μ-law audio (Adam, cross-entropy, random crops, "
        "validation loss). Re-run the same command to resume from BUNDLE/checkpoint/. "
        "Several GPUs: torchrun --nproc_per_node N -m audiogen_studio train wavenet ...",
    )
    wp.add_argument(
        "--data",
        required=True,
        metavar="DIR_OR_MANIFEST",
        help="corpus folder (from 'audiogen-studio corpus'), manifest.jsonl, folder of audio "
        "files, or one audio file",
    )
    wp.add_argument("--out", required=True, metavar="BUNDLE", help="bundle folder to write")
    wp.add_argument(
        "--config",
        default=None,
        metavar="NAME",
        help="tiny, tiny-vocoder, peer, default, vocoder, or a JSON file of config fields "
        "(default: the checkpoint's when resuming, else 'default')",
    )
    wp.add_argument(
        "--mel", action="store_true", help="condition on log-mel frames (train a vocoder)"
    )
    wp.add_argument(
        "--steps", type=positive_int, default=20_000, help="total steps (default 20000)"
    )
    wp.add_argument(
        "--batch", type=positive_int, default=8, help="crops per step and process (default 8)"
    )
    wp.add_argument(
        "--crop",
        type=positive_int,
        default=4_000,
        metavar="SAMPLES",
        help="samples per crop with a loss, beyond the receptive field (default 4000)",
    )
    wp.add_argument("--lr", type=positive_float, default=1e-3, help="Adam learning rate")
    wp.add_argument(
        "--device",
        default="auto",
        help="auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:N or mps (default auto)",
    )
    wp.add_argument("--amp", action="store_true", help="mixed precision (CUDA only)")
    wp.add_argument(
        "--val-every",
        type=non_negative_int,
        default=500,
        metavar="N",
        help="validation loss every N steps (0: only at the end; default 500)",
    )
    wp.add_argument(
        "--save-every",
        type=non_negative_int,
        default=1_000,
        metavar="N",
        help="checkpoint every N steps (0: only at the end; default 1000)",
    )
    wp.add_argument("--seed", type=int, default=0, help="seed of weights and crops (default 0)")
    wp.add_argument("--name", default=None, help="bundle name (default: the BUNDLE folder name)")
    wp.add_argument(
        "--time-limit",
        type=positive_float,
        default=None,
        metavar="SECONDS",
        help="stop after this many seconds (checkpoint and bundle are written)",
    )
    wp.add_argument(
        "--threads",
        type=positive_int,
        default=None,
        help="CPU threads for torch (default: torch's choice; 1 is best for small models or "
        "when other programs share the cores)",
    )
    wp.add_argument(
        "--init-from",
        default=None,
        metavar="BUNDLE",
        help="fine-tune: start a new run from the WaveNet of this bundle folder (or "
        ".safetensors file), e.g. models/wavenet-vocoder on your own voice, instead of random "
        "weights (its config; a resumed run ignores it)",
    )
    wp.add_argument("--no-progress", action="store_true", help="no progress bar")
    wp.add_argument("--json", action="store_true", help="print the result as JSON")
    wp.set_defaults(func=run_wavenet)


@interruptible
def run_wavenet(args: argparse.Namespace, stop: threading.Event) -> int:
    """``audiogen-studio train wavenet --data ... --out ...``."""
    from audiogen_studio.training.wavenet_trainer import TrainOptions, train_wavenet

    options = TrainOptions(
        data=args.data,
        out=args.out,
        config=args.config,
        mel=args.mel,
        steps=args.steps,
        batch=args.batch,
        crop=args.crop,
        lr=args.lr,
        device=args.device,
        amp=args.amp,
        val_every=args.val_every,
        save_every=args.save_every,
        seed=args.seed,
        name=args.name,
        progress=not args.no_progress,
        time_limit=args.time_limit,
        threads=args.threads,
        init_from=args.init_from,
    )
    try:
        result = train_wavenet(options, stop=stop)
    except ValueError as exc:  # anything not already an AudioError with a clear message
        raise CliError(str(exc)) from exc
    if result.rank != 0:
        return 0
    if args.json:
        print(
            json.dumps(
                {
                    "bundle": str(result.bundle),
                    "step": result.step,
                    "start_step": result.start_step,
                    "completed": result.completed,
                    "train_loss": result.train_loss,
                    "val_loss": result.val_loss,
                    "best_val_loss": result.best_val_loss,
                    "seconds": round(result.seconds, 3),
                    "samples_per_second": round(result.samples_per_second, 1),
                    "device": result.device,
                    "world_size": result.world_size,
                    "config": result.config.to_dict(),
                },
                indent=2,
            )
        )
        return 0
    val = "n/a" if result.val_loss is None else f"{result.val_loss:.4f}"
    train = "n/a" if result.train_loss is None else f"{result.train_loss:.4f}"
    state = "done" if result.completed else "stopped early"
    print(f"wavenet bundle in {result.bundle} ({state})")
    print(
        f"  step {result.step} (started at {result.start_step}), train loss {train}, "
        f"val loss {val} nats/sample"
    )
    print(
        f"  {result.seconds:.1f} s on {result.device} x{result.world_size}, "
        f"{result.samples_per_second:,.0f} samples/s, receptive field "
        f"{result.config.receptive_field} samples"
    )
    sys.stdout.flush()
    return 0
