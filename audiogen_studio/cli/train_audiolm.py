"""``audiogen-studio train lm-semantic|lm-coarse|lm-fine``: AudioLM's token LMs into a bundle.

The bundle folder must already hold the codec and the semantic tokenizer (``train codec`` and
``train semantic`` with the same ``--bundle``). Several GPUs or machines:
``torchrun --nproc_per_node N -m audiogen_studio train lm-coarse ...``.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time

from audiogen_studio.cli.argtypes import (
    non_negative_float,
    non_negative_int,
    positive_float,
    positive_int,
    positive_int_list,
)
from audiogen_studio.cli.errors import CliError
from audiogen_studio.cli.interrupt import interruptible


def add_common(p: argparse.ArgumentParser, *, save_every: int = 500) -> None:
    """Options every AudioLM stage trainer takes."""
    p.add_argument(
        "--data",
        required=True,
        metavar="DIR_OR_MANIFEST",
        help="corpus folder (from 'audiogen-studio corpus'), manifest.jsonl, folder of audio "
        "files, or one audio file",
    )
    p.add_argument("--bundle", required=True, metavar="BUNDLE", help="AudioLM bundle folder")
    p.add_argument("--steps", type=positive_int, default=5_000, help="total steps")
    p.add_argument("--batch", type=positive_int, default=16, help="batch per step and process")
    p.add_argument(
        "--device", default="auto", help="auto (CUDA, MPS, CPU), cpu, cuda, cuda:N or mps"
    )
    p.add_argument("--no-amp", action="store_true", help="train in float32 on CUDA too")
    p.add_argument("--seed", type=int, default=0, help="seed of weights and batches")
    p.add_argument(
        "--save-every",
        type=non_negative_int,
        default=save_every,
        metavar="N",
        help="checkpoint every N steps",
    )
    p.add_argument(
        "--time-limit",
        type=positive_float,
        default=None,
        metavar="SECONDS",
        help="stop after this many seconds (checkpoint and bundle are written)",
    )
    p.add_argument("--threads", type=positive_int, default=None, help="CPU threads for torch")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--json", action="store_true", help="print the result as JSON")


def _amp(args: argparse.Namespace) -> bool:
    """Mixed precision unless ``--no-amp``; only asked for where CUDA can serve it (the trainers
    would otherwise warn on every CPU run)."""
    if args.no_amp:
        return False
    device = str(args.device)
    if device.startswith("cuda"):
        return True
    if device != "auto":
        return False
    import torch

    return bool(torch.cuda.is_available())


def register(tsub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``semantic``, ``mel-codec``, ``lm-semantic``, ``lm-coarse`` and ``lm-fine`` under
    ``train``."""
    register_mel_codec(tsub)
    p = tsub.add_parser(
        "semantic",
        help="AudioLM semantic tokenizer: HuBERT-style encoder + k-means",
        description="Train a self-supervised encoder by masked prediction (iteration 1 on "
        "k-means of log-mel frames, iteration 2 on k-means of its own features) and fit the "
        "semantic tokens (k-means of one layer) into BUNDLE/semantic.safetensors. Re-run to "
        "resume from BUNDLE/checkpoint/semantic/.",
    )
    add_common(p, save_every=1_000)
    p.add_argument("--config", default=None, help="tiny, default, base or a .json file")
    p.add_argument("--tokens", type=positive_int, default=None, help="semantic vocabulary size")
    p.add_argument("--iterations", type=positive_int, default=2, help="HuBERT iterations")
    p.add_argument(
        "--crop-seconds", type=positive_float, default=4.0, help="seconds per training crop"
    )
    p.add_argument("--lr", type=positive_float, default=5e-4, help="AdamW peak learning rate")
    p.add_argument(
        "--kmeans-seconds",
        type=positive_float,
        default=1200.0,
        help="seconds of audio each k-means is fitted on",
    )
    p.add_argument(
        "--encoder",
        choices=("hubert", "chroma", "ssl"),
        default="hubert",
        help="hubert (default): train the self-supervised encoder; chroma: no training, "
        "k-means of pitch-class features (12 pitch classes, energy, onset), semantic tokens "
        "that carry harmony, for music bundles (train lm-semantic and lm-coarse on them after); "
        "ssl: no training, k-means of one layer of your own HuBERT / wav2vec 2.0 weights "
        "(--ssl-weights)",
    )
    p.add_argument(
        "--ssl-weights",
        default=None,
        metavar="FILE",
        help="--encoder ssl: a local .safetensors file of a HuBERT or wav2vec 2.0 model "
        "(torchaudio, Hugging Face or fairseq key names; pickled .pt/.bin files are refused)",
    )
    p.add_argument(
        "--ssl-arch",
        default=None,
        help="--encoder ssl: hubert_base, hubert_large, ... (default: the file's metadata, "
        "else inferred from its tensor shapes)",
    )
    p.add_argument(
        "--layer",
        type=positive_int,
        default=6,
        help="--encoder ssl: the transformer layer whose features are clustered (default 6)",
    )
    p.add_argument("--name", default=None, help="bundle name when the bundle is created")
    p.set_defaults(func=run_semantic, batch=8)

    helps = {
        "semantic": "AudioLM stage 1: semantic tokens p(s_t | s_<t)",
        "coarse": "AudioLM stage 2: coarse codec tokens given semantic tokens",
        "fine": "AudioLM stage 3: fine codec tokens given coarse tokens",
    }
    for stage, text in helps.items():
        p = tsub.add_parser(
            f"lm-{stage}",
            help=text,
            description=f"{text}. Tokens are extracted once into BUNDLE/work/ and reused; "
            "re-run the same command to resume from BUNDLE/checkpoint/. --data may also be a "
            "folder of exported tokens ('train tokens'), so no audio is needed.",
        )
        add_common(p)
        p.add_argument("--size", default="default", help="transformer size: tiny, small or default")
        p.add_argument(
            "--window",
            type=positive_int,
            default=None,
            help="context in semantic tokens (default 250 / 100 / 50 for semantic / coarse / fine)",
        )
        p.add_argument(
            "--coarse-quantizers",
            type=positive_int,
            default=2,
            help="codec quantizers of the coarse stage; the rest are fine (default 2)",
        )
        p.add_argument(
            "--fine-quantizers",
            type=positive_int,
            default=None,
            help="codec quantizers of the fine stage (default: every one after the coarse; "
            "fewer lowers the bitrate the LMs generate and speeds up generation)",
        )
        p.add_argument("--lr", type=positive_float, default=3e-4, help="AdamW peak learning rate")
        p.add_argument(
            "--val-every",
            type=positive_int,
            default=500,
            help="validation loss every N steps (default 500)",
        )
        p.add_argument(
            "--keep",
            choices=["best", "last"],
            default="best",
            help="the bundle gets the weights of the best validation loss (early stopping; "
            "default) or of the last step",
        )
        p.add_argument(
            "--patience",
            type=int,
            default=0,
            metavar="N",
            help="stop after N validations without a new best (default 0: never)",
        )
        p.add_argument(
            "--init-from",
            default=None,
            metavar="BUNDLE",
            help=f"fine-tune: start a new run from the lm-{stage} of this bundle folder (or "
            ".safetensors file), e.g. a shipped default, instead of random weights (its size "
            "and window; it must use the same codec, tokenizer and layout)",
        )
        if stage == "coarse":
            p.add_argument(
                "--semantic-dropout",
                type=float,
                default=0.0,
                metavar="P",
                help="probability that a training window's semantic tokens are all dropped, so "
                "the LM also learns to continue without them: what classifier-free guidance "
                "(generation.coarse_guidance) needs (e.g. 0.2; default 0)",
            )
        if stage == "semantic":
            p.add_argument(
                "--transpose",
                type=float,
                default=0.0,
                metavar="P",
                help="music bundles with pitch-class tokens (train semantic --encoder chroma): "
                "probability that a training window is transposed by a random 1-11 semitones, "
                "so the LM learns every piece in every key (e.g. 0.5; default 0)",
            )
        p.set_defaults(func=run_lm, stage=stage)

    p = tsub.add_parser(
        "tokens",
        help="export a corpus's AudioLM tokens, to train the LM stages elsewhere",
        description="Tokenise DATA with BUNDLE's codec and semantic tokenizer (cached in "
        "BUNDLE/work/, as the LM stages do) and write the tokens with a tokens.json to OUT: a "
        "few MB that 'train lm-<stage> --data OUT --bundle <a copy of BUNDLE>' trains on "
        "without the audio (e.g. on a GPU machine). The copy needs the codec and semantic "
        "files, which must be the ones that made the tokens.",
    )
    p.add_argument("--data", required=True, metavar="DIR_OR_MANIFEST", help="audio to tokenise")
    p.add_argument("--bundle", required=True, help="AudioLM bundle with codec and tokenizer")
    p.add_argument("--out", required=True, help="new folder for the tokens")
    p.add_argument(
        "--coarse-quantizers",
        type=positive_int,
        default=2,
        help="codec quantizers of the coarse stage when the bundle has no LMs yet (default 2)",
    )
    p.add_argument(
        "--fine-quantizers",
        type=positive_int,
        default=None,
        help="codec quantizers of the fine stage when the bundle has no LMs yet (default: "
        "the rest)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=run_tokens)


def run_tokens(args: argparse.Namespace) -> int:
    """Export a corpus's tokens."""
    from audiogen_studio.engine.bundles import BundleError
    from audiogen_studio.training.audio_dataset import TrainingError
    from audiogen_studio.training.lm_trainer import export_tokens
    from audiogen_studio.training.token_cache import read_token_export

    try:
        out = export_tokens(
            args.data,
            args.bundle,
            args.out,
            coarse_quantizers=args.coarse_quantizers,
            fine_quantizers=args.fine_quantizers,
            progress=not args.no_progress,
        )
        _, meta = read_token_export(out)
    except (TrainingError, BundleError, ValueError) as exc:
        raise CliError(str(exc)) from exc
    summary = {"out": str(out), **meta}
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(
            f"{meta['train_tokens']:,} train and {meta['valid_tokens']:,} validation semantic "
            f"tokens ({meta['train_hours']:.2f} h of audio) in {out}"
        )
    return 0


@interruptible
def run_lm(args: argparse.Namespace, stop: threading.Event) -> int:
    """Train one LM stage."""
    from audiogen_studio.training.lm_trainer import LMTrainOptions, train_lm

    options = LMTrainOptions(
        stage=args.stage,
        data=args.data,
        bundle=args.bundle,
        steps=args.steps,
        batch=args.batch,
        size=args.size,
        window=args.window,
        coarse_quantizers=args.coarse_quantizers,
        fine_quantizers=args.fine_quantizers,
        lr=args.lr,
        seed=args.seed,
        device=args.device,
        amp=_amp(args),
        threads=args.threads,
        save_every=args.save_every,
        val_every=args.val_every,
        keep=args.keep,
        patience=args.patience,
        time_limit=args.time_limit,
        progress=not args.no_progress,
        init_from=args.init_from,
        semantic_dropout=getattr(args, "semantic_dropout", 0.0),
        transpose=getattr(args, "transpose", 0.0),
    )
    try:
        result = train_lm(options, stop=stop)
    except ValueError as exc:
        raise CliError(str(exc)) from exc
    if result.rank != 0:
        return 0
    summary = {
        "world_size": result.world_size,
        "bundle": str(result.bundle),
        "stage": result.stage,
        "step": result.step,
        "start_step": result.start_step,
        "completed": result.completed,
        "train_loss": result.train_loss,
        "val_loss": result.val_loss,
        "weights_step": result.weights_step,
        "seconds": round(result.seconds, 3),
        "tokens_per_second": round(result.tokens_per_second, 1),
    }
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        val = "n/a" if result.val_loss is None else f"{result.val_loss:.4f}"
        print(
            f"lm-{result.stage} in {result.bundle}: step {result.step}, val loss {val} "
            f"nats/token, {result.seconds:.1f} s; the bundle holds the weights of step "
            f"{result.weights_step}"
        )
    return 0


@interruptible
def run_semantic(args: argparse.Namespace, stop: threading.Event) -> int:
    """Train the semantic tokenizer."""
    from audiogen_studio.training.semantic_trainer import (
        SemanticTrainOptions,
        result_dict,
        train_semantic,
    )

    if args.encoder != "hubert":
        return _run_encoder_tokenizer(args)
    if args.ssl_weights is not None:
        raise CliError("--ssl-weights needs --encoder ssl")

    options = SemanticTrainOptions(
        data=args.data,
        out=args.bundle,
        config=args.config,
        n_clusters=args.tokens,
        steps=args.steps,
        iterations=args.iterations,
        batch=args.batch,
        crop_seconds=args.crop_seconds,
        lr=args.lr,
        kmeans_seconds=args.kmeans_seconds,
        device=args.device,
        amp=_amp(args),
        save_every=args.save_every,
        seed=args.seed,
        name=args.name,
        progress=not args.no_progress,
        time_limit=args.time_limit,
        threads=args.threads,
    )
    try:
        result = train_semantic(options, stop=stop)
    except ValueError as exc:
        raise CliError(str(exc)) from exc
    summary = result_dict(result)
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        acc = result.val_accuracy
        print(
            f"semantic tokenizer in {result.bundle}: step {result.step} (iteration "
            f"{result.iteration}), masked-prediction accuracy "
            f"{'n/a' if acc is None else f'{acc:.3f}'}, {result.seconds:.1f} s"
        )
    return 0


def _run_encoder_tokenizer(args: argparse.Namespace) -> int:
    """``train semantic --encoder chroma|ssl``: fit k-means of a fixed encoder's features (pitch
    classes, or one layer of the user's own SSL weights); nothing is trained."""
    from audiogen_studio.engine.bundles import BundleError
    from audiogen_studio.models.ssl_adapter import SSLWeightsError
    from audiogen_studio.training.audio_dataset import TrainingError
    from audiogen_studio.training.encoder_tokenizer import tokenizer_from_chroma
    from audiogen_studio.training.semantic_trainer import tokenizer_from_ssl

    if args.config is not None:
        raise CliError(f"--config: the {args.encoder} encoder has nothing to train (drop --config)")
    if args.encoder == "ssl" and args.ssl_weights is None:
        raise CliError("--encoder ssl needs --ssl-weights FILE (a HuBERT / wav2vec 2.0 model)")
    if args.encoder != "ssl" and args.ssl_weights is not None:
        raise CliError("--ssl-weights needs --encoder ssl")
    stale = _lms_reading_semantic_tokens(args.bundle)
    shared = {
        "n_clusters": args.tokens or 500,
        "kmeans_seconds": args.kmeans_seconds,
        "crop_seconds": args.crop_seconds,
        "seed": args.seed,
        "name": args.name,
    }
    started = time.perf_counter()
    try:
        if args.encoder == "ssl":
            path = tokenizer_from_ssl(
                args.ssl_weights,
                args.data,
                args.bundle,
                arch=args.ssl_arch,
                layer=args.layer,
                device=args.device,
                **shared,
            )
        else:
            path = tokenizer_from_chroma(args.data, args.bundle, **shared)
    except (TrainingError, BundleError, SSLWeightsError, ValueError) as exc:
        raise CliError(str(exc)) from exc
    seconds = round(time.perf_counter() - started, 3)
    summary = {
        "bundle": str(args.bundle),
        "tokenizer_path": str(path),
        "encoder": args.encoder,
        "seconds": seconds,
        "retrain": stale,
    }
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(
            f"{args.encoder} semantic tokenizer in {args.bundle} ({args.tokens or 500} tokens), "
            f"{seconds:.1f} s; train lm-semantic and lm-coarse on it next"
        )
    if stale:
        print(
            f"warning: {args.bundle}'s {' and '.join(stale)} read the semantic tokens it had "
            "before; train them again on these (train lm-semantic / lm-coarse)",
            file=sys.stderr,
        )
    return 0


def _lms_reading_semantic_tokens(bundle: str) -> list[str]:
    """The LM components of ``bundle`` (if it exists) trained on its semantic tokens."""
    from pathlib import Path

    from audiogen_studio.engine.bundles import BUNDLE_FILE, BundleError, read_bundle

    if not (Path(bundle) / BUNDLE_FILE).is_file():
        return []
    try:
        components = read_bundle(bundle).components
    except BundleError:
        return []
    return [name for name in ("lm_semantic", "lm_coarse") if name in components]


# --- train mel-codec ------------------------------------------------------------------------------


def register_mel_codec(tsub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``mel-codec`` under ``train``."""
    p = tsub.add_parser(
        "mel-codec",
        help="spectral acoustic codec: residual k-means of log-mel + Vocos-style decoder",
        description="Fit the log-mel normalisation and residual k-means codebooks (stage 1), "
        "then train a Vocos-style ISTFT decoder on dequantized frames (stage 2) into "
        "BUNDLE/codec.safetensors (components.codec.kind = mel). Re-run the same command to "
        "resume from BUNDLE/checkpoint/mel_codec/. Several GPUs: torchrun --nproc_per_node N "
        "-m audiogen_studio train mel-codec ...",
    )
    add_common(p, save_every=500)
    p.add_argument(
        "--config",
        default=None,
        metavar="NAME",
        help="tiny, default or a .json file (default: the checkpoint's when resuming, "
        "else 'default')",
    )
    p.add_argument(
        "--minutes",
        type=positive_float,
        default=None,
        metavar="M",
        help="stop after M minutes of decoder training (stage 1 not counted; same as "
        "--time-limit 60*M)",
    )
    p.add_argument(
        "--segment", type=positive_float, default=1.0, metavar="SECONDS", help="crop length"
    )
    p.add_argument("--lr", type=positive_float, default=5e-4, help="AdamW learning rate")
    p.add_argument(
        "--nq-dropout",
        type=float,
        default=0.5,
        metavar="P",
        help="probability that a crop uses fewer codebooks (default 0.5)",
    )
    p.add_argument(
        "--min-n-q", type=positive_int, default=4, help="fewest codebooks such a crop uses"
    )
    p.add_argument(
        "--nq-choices",
        type=positive_int_list,
        default=None,
        metavar="N[,N...]",
        help="a crop with fewer codebooks uses one of these counts instead of "
        "--min-n-q..all: train for the counts the bundle decodes from (e.g. 3 for "
        "generation.decode_quantizers 3)",
    )
    p.add_argument(
        "--input-noise",
        type=float,
        default=0.0,
        metavar="STD",
        help="Gaussian noise on the dequantized frames (default 0)",
    )
    p.add_argument(
        "--kmeans-seconds",
        type=positive_float,
        default=3600.0,
        help="seconds of training audio the codebooks are fitted on (default 3600)",
    )
    p.add_argument(
        "--val-every", type=non_negative_int, default=500, metavar="N", help="0: at the end"
    )
    p.add_argument(
        "--init-decoder",
        default=None,
        metavar="BUNDLE",
        help="start the decoder from the mel codec of this bundle (fine-tuning: e.g. "
        "models/speech on your own material); stage 1 is still fitted on --data",
    )
    p.add_argument(
        "--init-codec",
        default=None,
        metavar="BUNDLE",
        help="start from the whole mel codec of this bundle (statistics, codebooks and "
        "decoder) instead of fitting stage 1: its tokens and the LMs trained on them stay "
        "valid while the decoder is fine-tuned",
    )
    p.add_argument(
        "--discriminator",
        default=None,
        metavar="NAME",
        help="GAN phase: a multi-scale STFT discriminator (default, small or tiny) joins from "
        "the step the run is at; none trains without (default: the checkpoint's, else none)",
    )
    p.add_argument(
        "--disc-lr", type=positive_float, default=2e-4, help="discriminator learning rate"
    )
    p.add_argument(
        "--adv-weight",
        type=non_negative_float,
        default=0.1,
        help="weight of the adversarial (hinge) loss in the GAN phase (default 0.1)",
    )
    p.add_argument(
        "--feat-weight",
        type=non_negative_float,
        default=0.2,
        help="weight of the feature-matching loss in the GAN phase (default 0.2)",
    )
    p.add_argument("--name", default=None, help="bundle name when the bundle is created")
    p.set_defaults(func=run_mel_codec, steps=100_000)


@interruptible
def run_mel_codec(args: argparse.Namespace, stop: threading.Event) -> int:
    """Train the mel codec."""
    from audiogen_studio.training.mel_codec_trainer import (
        MelCodecTrainOptions,
        train_mel_codec,
    )

    limit = args.time_limit
    if args.minutes is not None:
        minutes = 60.0 * float(args.minutes)
        limit = minutes if limit is None else min(limit, minutes)
    try:
        options = MelCodecTrainOptions(
            data=args.data,
            out=args.bundle,
            config=args.config,
            steps=args.steps,
            batch=args.batch,
            segment=args.segment,
            lr=args.lr,
            nq_dropout=args.nq_dropout,
            min_n_q=args.min_n_q,
            nq_choices=args.nq_choices,
            input_noise=args.input_noise,
            kmeans_seconds=args.kmeans_seconds,
            device=args.device,
            amp=_amp(args),
            val_every=args.val_every,
            save_every=args.save_every,
            seed=args.seed,
            name=args.name,
            progress=not args.no_progress,
            time_limit=limit,
            threads=args.threads,
            init_decoder=args.init_decoder,
            init_codec=args.init_codec,
            discriminator=args.discriminator,
            disc_lr=args.disc_lr,
            adv_weight=args.adv_weight,
            feat_weight=args.feat_weight,
        )
        result = train_mel_codec(options, stop=stop)
    except ValueError as exc:
        raise CliError(str(exc)) from exc
    if result.rank != 0:
        return 0
    summary = {
        "bundle": str(result.bundle),
        "step": result.step,
        "start_step": result.start_step,
        "completed": result.completed,
        "train_loss": result.train_loss,
        "metrics": result.metrics,
        "seconds": round(result.seconds, 3),
        "steps_per_second": round(result.steps_per_second, 4),
        "device": result.device,
        "world_size": result.world_size,
        "config": result.config.to_dict(),
    }
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        m = result.metrics
        state = "done" if result.completed else "stopped early"
        print(f"mel codec in {result.bundle} ({state})")
        print(
            f"  step {result.step} (started at {result.start_step}), val mel L1 "
            f"{m.get('val_mel_l1')}, {result.seconds:.1f} s on {result.device}, "
            f"{result.config.bits_per_second / 1000:.1f} kbit/s, latency "
            f"{1000 * result.config.latency / result.config.sample_rate:.0f} ms"
        )
    return 0
