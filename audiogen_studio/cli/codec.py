"""``audiogen-studio codec encode|decode`` and ``audiogen-studio train codec``.

``codec encode IN --model BUNDLE -o TOKENS.safetensors [--n-q Q] [--beam M]`` turns audio into
acoustic tokens (searched with a beam of ``M``: :mod:`audiogen_studio.models.rvq_search`);
``codec decode TOKENS.safetensors [--model BUNDLE] -o OUT.wav`` turns them back into audio of
the original length and sample rate.

A token file is safetensors holding one tensor ``codes [Q, F]`` (int16, or int32 for codebooks
larger than 32768) and string metadata::

    format            "audiogen-studio/codec-tokens-1"
    bundle            name of the bundle that encoded it; bundle_version; bundle_path
    codec_config      JSON of the codec config (decode refuses another codec)
    sample_rate       the codec's rate (Hz); frame_rate (frames/s); n_q
    samples           samples at the codec's rate before padding to whole frames
    encoder_beam      the search width the codes were found with (decoding does not need it)
    original_rate     rate of the input file; original_frames: its frames; original_channels

Stereo input is downmixed (the codec is mono); other rates are resampled at the edges.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
from pathlib import Path
from typing import Any

from audiogen_studio.cli.argtypes import non_negative_int, positive_float, positive_int
from audiogen_studio.cli.errors import CliError
from audiogen_studio.cli.interrupt import interruptible

TOKENS_FORMAT = "audiogen-studio/codec-tokens-1"
#: ``codec encode --beam`` default (models/rvq_search.py; chosen on held-out speech, README)
DEFAULT_ENCODE_BEAM = 8

__all__ = [
    "TOKENS_FORMAT",
    "TokenFileError",
    "read_tokens",
    "register",
    "register_train",
    "run_decode",
    "run_encode",
    "run_train_codec",
]


class TokenFileError(CliError):
    """A token file is missing, not safetensors, not a codec token file, or malformed."""


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``codec encode`` and ``codec decode``."""
    p = sub.add_parser(
        "codec",
        help="encode audio into acoustic tokens with a codec bundle, or decode them",
        description="Round-trip audio through a neural codec's tokens (residual VQ codes).",
    )
    csub = p.add_subparsers(dest="codec_command", metavar="ACTION", required=True)
    e = csub.add_parser(
        "encode",
        help="audio file -> token file (.safetensors)",
        description="Encode an audio file into codec tokens. Stereo is downmixed; other "
        "sample rates are resampled to the codec's.",
    )
    e.add_argument("input", help="audio file (.wav, .flac, .ogg, ...)")
    e.add_argument("--model", required=True, help="bundle name or folder with a codec")
    e.add_argument("-o", "--output", required=True, help="token file to write (.safetensors)")
    e.add_argument(
        "--n-q",
        type=positive_int,
        default=None,
        metavar="Q",
        help="codebooks to keep (fewer = lower bitrate; default: all)",
    )
    e.add_argument(
        "--beam",
        type=positive_int,
        default=DEFAULT_ENCODE_BEAM,
        metavar="M",
        help="search the codes with a beam of M partial sums per codebook: closer to the "
        f"input at the same bitrate, M times the (small) encoding work (default "
        f"{DEFAULT_ENCODE_BEAM}; 1: greedy)",
    )
    _common(e)
    e.set_defaults(func=run_encode)
    d = csub.add_parser(
        "decode",
        help="token file -> audio file",
        description="Decode a token file back into audio at its original length and rate.",
    )
    d.add_argument("tokens", help="token file written by 'codec encode'")
    d.add_argument(
        "--model",
        default=None,
        help="bundle name or folder (default: the bundle named in the token file)",
    )
    d.add_argument("-o", "--output", required=True, help="audio file to write (.wav, .flac)")
    _common(d)
    d.set_defaults(func=run_decode)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="cpu", help="auto, cpu, cuda or mps (default cpu)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file")


def _check_output(path: Path, overwrite: bool, suffix: str | None = None) -> None:
    if suffix is not None and path.suffix != suffix:
        raise CliError(f"{path}: the output must end in {suffix}")
    if path.exists() and not overwrite:
        raise CliError(f"{path} already exists (pass --overwrite to replace it)")
    if path.is_dir():
        raise CliError(f"{path} is a directory")
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise CliError(f"{path}: folder {folder} does not exist")


def _load_codec(model: str, device: str) -> tuple[Any, Any]:
    from audiogen_studio.engine.bundles import BundleError, find_bundle
    from audiogen_studio.models.acoustic_codec import CODEC_COMPONENT, load_acoustic_codec
    from audiogen_studio.models.device import resolve_device

    bundle = find_bundle(model)
    if CODEC_COMPONENT not in bundle.components:
        raise BundleError(f"bundle '{bundle.name}' has no codec (it is a {bundle.kind} bundle)")
    bundle.component_path(CODEC_COMPONENT)  # a clear error when the weights are missing
    codec = load_acoustic_codec(bundle.path, device=resolve_device(device))
    return bundle, codec


def _latency(codec: Any) -> int:
    """Samples the codec's decoded audio lags its input (0, or the mel codec's overlap-add)."""
    from audiogen_studio.models.acoustic_codec import decoder_latency

    return decoder_latency(codec)


def run_encode(args: argparse.Namespace) -> int:
    """``audiogen-studio codec encode IN --model BUNDLE -o TOKENS.safetensors``."""
    import torch
    from safetensors.torch import save_file

    from audiogen_studio.audio import io

    out = Path(args.output)
    _check_output(out, args.overwrite, ".safetensors")
    clip = io.load(args.input)
    bundle, codec = _load_codec(args.model, args.device)
    n_q = codec.config.n_q if args.n_q is None else int(args.n_q)
    if n_q > codec.config.n_q:
        raise CliError(f"--n-q {n_q}: the codec of '{bundle.name}' has {codec.config.n_q}")
    mono = io.resample(io.downmix(clip), codec.sample_rate)
    samples = torch.from_numpy(mono.samples.copy())[None]  # [1, 1, T]
    # a codec whose decoder lags (mel) also encodes that much silence, so decode can realign
    samples = torch.nn.functional.pad(samples, (0, _latency(codec)))
    with torch.inference_mode():
        audio = samples.to(next(codec.parameters()).device)
        codes = codec.encode(audio, n_q, beam=int(args.beam))[0].cpu()
    dtype = torch.int16 if codec.config.codebook_size <= 32_768 else torch.int32
    metadata = {
        "format": TOKENS_FORMAT,
        "bundle": bundle.name,
        "bundle_version": bundle.version,
        "bundle_path": str(bundle.path.resolve()),
        "codec_config": codec.config.to_json(),
        "sample_rate": str(codec.sample_rate),
        "frame_rate": repr(codec.config.frame_rate),
        "n_q": str(n_q),
        "encoder_beam": str(int(args.beam)),
        "samples": str(mono.frames),
        "original_rate": str(clip.rate),
        "original_frames": str(clip.frames),
        "original_channels": str(clip.channels),
    }
    tmp = out.with_name(f".{out.name}.partial")
    try:
        save_file({"codes": codes.to(dtype).contiguous()}, str(tmp), metadata=metadata)
        tmp.replace(out)
    finally:
        tmp.unlink(missing_ok=True)
    seconds = clip.frames / clip.rate
    bits = codes.shape[1] * n_q * _log2(codec.config.codebook_size)
    print(
        f"{out}: {codes.shape[1]} frames x {n_q} codebooks "
        f"({seconds:.2f} s, {bits / max(seconds, 1e-9) / 1000:.2f} kbit/s) "
        f"with codec '{bundle.name}'"
    )
    return 0


def _log2(n: int) -> float:
    import math

    return math.log2(n)


def read_tokens(path: str | Path) -> tuple[Any, dict[str, Any]]:
    """``(codes [Q, F] int64 tensor, metadata)`` of a token file.

    Raises:
        TokenFileError: missing, not safetensors, another format, or inconsistent contents.
    """
    from safetensors import safe_open

    p = Path(path)
    if not p.is_file():
        raise TokenFileError(f"{p}: file not found")
    try:
        with safe_open(str(p), framework="pt") as f:
            meta = dict(f.metadata() or {})
            keys = list(f.keys())
            codes = f.get_tensor("codes") if "codes" in keys else None
    except Exception as exc:  # safetensors raises its own error types
        raise TokenFileError(f"{p}: not a codec token file (not safetensors: {exc})") from exc
    if meta.get("format") != TOKENS_FORMAT or codes is None:
        raise TokenFileError(
            f"{p}: not a codec token file (format {meta.get('format')!r}, "
            f"expected {TOKENS_FORMAT!r})"
        )
    try:
        info: dict[str, Any] = {
            "bundle": meta["bundle"],
            "bundle_version": meta.get("bundle_version", ""),
            "bundle_path": meta.get("bundle_path", ""),
            "codec_config": json.loads(meta["codec_config"]),
            "sample_rate": int(meta["sample_rate"]),
            "n_q": int(meta["n_q"]),
            "samples": int(meta["samples"]),
            "original_rate": int(meta["original_rate"]),
            "original_frames": int(meta["original_frames"]),
        }
    except (KeyError, ValueError, json.JSONDecodeError) as exc:
        raise TokenFileError(f"{p}: malformed codec token metadata ({exc})") from exc
    if codes.ndim != 2 or codes.shape[0] != info["n_q"] or codes.shape[1] < 1:
        raise TokenFileError(
            f"{p}: codes have shape {list(codes.shape)}, expected [{info['n_q']}, frames >= 1]"
        )
    return codes.long(), info


def run_decode(args: argparse.Namespace) -> int:
    """``audiogen-studio codec decode TOKENS.safetensors [--model BUNDLE] -o OUT.wav``."""
    import numpy as np
    import torch

    from audiogen_studio.audio import io
    from audiogen_studio.audio.clip import Clip
    from audiogen_studio.engine.bundles import BundleError

    out = Path(args.output)
    _check_output(out, args.overwrite)
    codes, info = read_tokens(args.tokens)
    model = args.model
    if model is None:
        model = info["bundle"]
        if info["bundle_path"] and Path(info["bundle_path"], "bundle.json").is_file():
            model = info["bundle_path"]
    try:
        bundle, codec = _load_codec(model, args.device)
    except BundleError as exc:
        if args.model is None:
            raise CliError(
                f"{args.tokens}: the bundle '{info['bundle']}' that encoded it is not installed "
                f"({exc}); pass --model"
            ) from exc
        raise
    if codec.config.to_dict() != info["codec_config"]:
        raise TokenFileError(
            f"{args.tokens}: made by another codec ('{info['bundle']}' with a different "
            f"config) than the one in '{bundle.name}'"
        )
    if int(codes.max()) >= codec.config.codebook_size or int(codes.min()) < 0:
        raise TokenFileError(f"{args.tokens}: codes outside 0..{codec.config.codebook_size - 1}")
    if codes.shape[0] > codec.config.n_q:
        raise TokenFileError(f"{args.tokens}: {codes.shape[0]} codebooks, codec has fewer")
    with torch.inference_mode():
        device = next(codec.parameters()).device
        audio = codec.decode(codes[None].to(device))[0].float().cpu().numpy()  # [1, F hop]
    lag = _latency(codec)
    audio = audio[:, lag : lag + info["samples"]]
    clip = Clip(np.ascontiguousarray(audio, dtype=np.float32), codec.sample_rate)
    clip = io.resample(clip, info["original_rate"])
    frames = info["original_frames"]
    samples = clip.samples[:, :frames]
    if samples.shape[1] < frames:
        samples = np.pad(samples, ((0, 0), (0, frames - samples.shape[1])))
    io.save(Clip(samples, info["original_rate"]), out, overwrite=args.overwrite)
    print(
        f"{out}: {frames / info['original_rate']:.2f} s at {info['original_rate']} Hz from "
        f"{codes.shape[1]} frames x {codes.shape[0]} codebooks"
    )
    return 0


# --- train codec ----------------------------------------------------------------------------------


def register_train(tsub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``codec`` to the ``train`` subcommands (``audiogen-studio train codec ...``)."""
    p = tsub.add_parser(
        "codec",
        help="the neural codec (acoustic tokens) of an AudioLM bundle",
        description="Train a SoundStream-style streaming codec (causal convs, residual VQ) "
        "into BUNDLE/codec.safetensors. Re-run the same command to resume from "
        "BUNDLE/checkpoint/codec/. Several GPUs: torchrun --nproc_per_node N -m "
        "audiogen_studio train codec ...",
    )
    p.add_argument(
        "--data",
        required=True,
        metavar="DIR_OR_MANIFEST",
        help="corpus folder, manifest.jsonl, folder of audio files, or one audio file",
    )
    p.add_argument(
        "--bundle", "--out", dest="out", required=True, metavar="BUNDLE", help="bundle folder"
    )
    p.add_argument(
        "--config",
        default=None,
        metavar="NAME",
        help="tiny, small, default, or a JSON file of config fields (default: the "
        "checkpoint's when resuming, else 'default')",
    )
    p.add_argument(
        "--discriminator",
        default="default",
        help="default, small, tiny or none (no adversarial training)",
    )
    p.add_argument("--steps", type=positive_int, default=100_000, help="total steps")
    p.add_argument("--batch", type=positive_int, default=16, help="crops per step and process")
    p.add_argument(
        "--segment", type=positive_float, default=0.5, metavar="SECONDS", help="crop length"
    )
    p.add_argument("--lr", type=positive_float, default=3e-4, help="codec Adam learning rate")
    p.add_argument(
        "--disc-lr", type=positive_float, default=3e-4, help="discriminator learning rate"
    )
    p.add_argument(
        "--quantize-start",
        type=non_negative_int,
        default=1_000,
        metavar="STEP",
        help="unquantized autoencoder warm-up steps before the VQ starts (default 1000)",
    )
    p.add_argument(
        "--adv-start",
        type=non_negative_int,
        default=5_000,
        metavar="STEP",
        help="step at which the discriminator joins (default 5000)",
    )
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    p.add_argument("--amp", action="store_true", help="bf16 mixed precision (CUDA only)")
    p.add_argument(
        "--val-every", type=non_negative_int, default=1_000, metavar="N", help="0: at the end"
    )
    p.add_argument(
        "--save-every", type=non_negative_int, default=1_000, metavar="N", help="0: at the end"
    )
    p.add_argument("--seed", type=int, default=0, help="seed of weights, crops and quantizer")
    p.add_argument("--name", default=None, help="bundle name (default: the folder name)")
    p.add_argument(
        "--time-limit", type=positive_float, default=None, metavar="SECONDS", help="stop after"
    )
    p.add_argument("--threads", type=positive_int, default=None, help="CPU threads for torch")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=run_train_codec)


@interruptible
def run_train_codec(args: argparse.Namespace, stop: threading.Event) -> int:
    """``audiogen-studio train codec --data ... --bundle ...``."""
    from audiogen_studio.training.codec_trainer import CodecTrainOptions, train_codec

    options = CodecTrainOptions(
        data=args.data,
        out=args.out,
        config=args.config,
        discriminator=args.discriminator,
        steps=args.steps,
        batch=args.batch,
        segment=args.segment,
        lr=args.lr,
        disc_lr=args.disc_lr,
        quantize_start=args.quantize_start,
        adv_start=args.adv_start,
        device=args.device,
        amp=args.amp,
        val_every=args.val_every,
        save_every=args.save_every,
        seed=args.seed,
        name=args.name,
        progress=not args.no_progress,
        time_limit=args.time_limit,
        threads=args.threads,
    )
    try:
        result = train_codec(options, stop=stop)
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
                    "metrics": result.metrics,
                    "seconds": round(result.seconds, 3),
                    "steps_per_second": round(result.steps_per_second, 4),
                    "device": result.device,
                    "world_size": result.world_size,
                    "config": result.config.to_dict(),
                },
                indent=2,
            )
        )
        return 0
    m = result.metrics
    state = "done" if result.completed else "stopped early"
    print(f"codec in {result.bundle} ({state})")
    print(
        f"  step {result.step} (started at {result.start_step}), "
        f"val mel L1 {m.get('val_mel_l1')}, SI-SNR {m.get('val_si_snr_db')} dB"
    )
    print(
        f"  {result.seconds:.1f} s on {result.device} x{result.world_size}, "
        f"{result.steps_per_second:.2f} steps/s, {result.config.bits_per_second / 1000:.1f} kbit/s"
    )
    sys.stdout.flush()
    return 0
