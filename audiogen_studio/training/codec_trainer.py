"""Train the streaming codec (models/codec.py) into a bundle, resumably (SoundStream §3.4-3.5).

``train_codec(CodecTrainOptions(data=..., out=BUNDLE, ...))``:

- data: :class:`~audiogen_studio.training.waveform_dataset.WaveformDataset` (corpus folder,
  manifest, folder or file) at the codec's rate, cached in ``BUNDLE/work/``; each step draws
  ``batch`` random crops of ``segment`` seconds (rounded up to whole frames) with
  ``numpy.random.default_rng([seed, rank, step])``, so a resumed run sees the crops an
  uninterrupted one would;
- schedule (DESIGN.md §7: warm the autoencoder up before quantizing): steps before
  ``quantize_start`` train the plain autoencoder (no VQ); at ``quantize_start`` the codebooks are
  k-means initialised on encoder outputs of a few batches; from then on each batch uses a random
  number of codebooks (quantizer dropout, the same on every rank); from ``adv_start`` on the
  multi-scale STFT discriminator joins (hinge loss + feature matching);
- losses: multi-resolution STFT (spectral convergence + log magnitude) and multi-scale log-mel
  L1 (:class:`ReconstructionLoss`), commitment, and after ``adv_start`` adversarial + feature
  matching; Adam (β = 0.5, 0.9) for codec and discriminator, gradient-norm clipping;
- ``BUNDLE/checkpoint/codec/`` (:class:`~audiogen_studio.training.common.CheckpointDir`): codec
  and discriminator weights, both optimizers, ``trainer_state.json``; re-running with the same
  ``out`` continues from its step;
- at the end (or when stopped by ``stop``/``time_limit``): validation metrics on fixed crops of
  the valid split with all codebooks (log-mel L1, STFT loss, SI-SNR in dB), then
  ``BUNDLE/codec.safetensors`` and the ``codec`` component in ``BUNDLE/bundle.json``
  (:func:`~audiogen_studio.engine.bundles.write_component`, kind ``audiolm``).

Devices: ``auto`` = CUDA, MPS, CPU; ``amp`` = bf16 autocast on CUDA. Under ``torchrun`` the codec
and discriminator are wrapped in ``DistributedDataParallel`` (NCCL on CUDA, Gloo on CPU); the
codebooks stay identical on every rank (models/quantize.py reduces their statistics).

:func:`fit_tiny_codec` is the in-memory recipe the tests (and the AudioLM end-to-end test) use
to get a codec that reproduces a short signal.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F  # noqa: N812
import torchaudio
from torch import nn

from audiogen_studio import __version__
from audiogen_studio.engine.bundles import write_component
from audiogen_studio.models.codec import (
    CODEC_COMPONENT,
    NAMED_CODEC_CONFIGS,
    Codec,
    CodecConfig,
    named_codec_config,
)
from audiogen_studio.models.discriminator import DiscriminatorConfig, MultiScaleSTFTDiscriminator
from audiogen_studio.training.adversarial import (
    NAMED_DISCRIMINATORS,
    Adversary,
    optional_adversary,
    resolve_discriminator,
)
from audiogen_studio.training.audio_dataset import TrainingError
from audiogen_studio.training.common import (
    CheckpointDir,
    DistInfo,
    autocast,
    check_fields,
    check_valid_fraction,
    distributed_session,
    finite_or_none,
    named_config_of,
    open_checkpoint,
    progress_bar,
    require_same_config,
    stored_config,
    training_amp_dtype,
    waveforms_on_ranks,
)

log = logging.getLogger(__name__)

WEIGHTS_FILE = "codec.safetensors"
CHECKPOINT_SUBDIR = ("checkpoint", "codec")
WORK_DIR = "work"
STATE_VERSION = 1

__all__ = [
    "NAMED_DISCRIMINATORS",
    "CodecStepReport",
    "CodecTrainOptions",
    "CodecTrainResult",
    "ReconstructionLoss",
    "checkpoint_dir",
    "fit_tiny_codec",
    "si_snr",
    "train_codec",
]


@dataclass(frozen=True, kw_only=True)
class CodecTrainOptions:
    """What ``audiogen-studio train codec`` asks for.

    Attributes:
        data: corpus folder, ``*.jsonl`` manifest, folder of audio files or one audio file.
        out: the bundle folder to write (and to resume from).
        config: a name of :data:`~audiogen_studio.models.codec.NAMED_CODEC_CONFIGS`, a
            ``.json`` path or a config; ``None`` = the checkpoint's when resuming, else
            ``"default"``.
        discriminator: a name of :data:`NAMED_DISCRIMINATORS` or a config (``"none"``: no
            adversarial training).
        steps: total optimizer steps (a resumed run goes on up to this number).
        batch: crops per step (per process under ``torchrun``).
        segment: seconds per crop (rounded up to whole code frames).
        lr: Adam learning rate of the codec.
        disc_lr: Adam learning rate of the discriminator.
        quantize_start: steps of unquantized autoencoder warm-up before the VQ is switched on.
        adv_start: step from which the discriminator trains and its losses count.
        wave_weight, stft_weight, mel_weight, commit_weight, adv_weight, feat_weight: loss
            weights (``wave``: L1 of the samples, EnCodec's time-domain term).
        device: ``auto``, ``cpu``, ``cuda``, ``cuda:N`` or ``mps``.
        amp: bf16 autocast on CUDA (ignored elsewhere).
        val_every: validate every N steps (0: only at the end).
        save_every: checkpoint every N steps (0: only at the end).
        seed: seeds weights, crops and the quantizer's draws.
        val_crops: fixed validation crops.
        grad_clip: gradient-norm clipping (0 disables).
        name: bundle name (default: the ``out`` folder's name).
        progress: tqdm bar on stderr.
        time_limit: stop (checkpoint and bundle written) after this many seconds.
        valid_fraction: tail of each file held out when the data has no valid split.
        cache: keep the decoded audio as memory-mapped arrays in ``out/work``.
        threads: ``torch.set_num_threads`` for this process (``None``: torch's default).
    """

    data: str | Path
    out: str | Path
    config: str | CodecConfig | None = None
    discriminator: str | DiscriminatorConfig | None = "default"
    steps: int = 100_000
    batch: int = 16
    segment: float = 0.5
    lr: float = 3e-4
    disc_lr: float = 3e-4
    quantize_start: int = 1_000
    adv_start: int = 5_000
    wave_weight: float = 0.1
    stft_weight: float = 1.0
    mel_weight: float = 1.0
    commit_weight: float = 1.0
    adv_weight: float = 1.0
    feat_weight: float = 2.0
    device: str = "auto"
    amp: bool = False
    val_every: int = 1_000
    save_every: int = 1_000
    seed: int = 0
    val_crops: int = 16
    grad_clip: float = 10.0
    name: str | None = None
    progress: bool = True
    time_limit: float | None = None
    valid_fraction: float = 0.1
    cache: bool = True
    threads: int | None = None

    def check(self) -> None:
        """Raise :class:`TrainingError` on nonsensical values."""
        weights = ("wave", "stft", "mel", "commit", "adv", "feat")
        check_fields(
            self,
            at_least_one=("steps", "batch", "val_crops"),
            zero_or_more=("val_every", "save_every", "quantize_start", "adv_start"),
            positive=("lr", "disc_lr", "segment"),
            non_negative=tuple(f"{w}_weight" for w in weights),
        )
        check_fields(self, at_least_one=("threads",))
        check_valid_fraction(self.valid_fraction)


@dataclass(frozen=True)
class CodecStepReport:
    """Progress after one step (given to ``on_step``; rank 0 only)."""

    step: int
    steps: int
    loss: float
    recon: float
    n_q: int
    adversarial: bool
    val_mel: float | None
    seconds_per_step: float
    seconds: float


@dataclass(frozen=True)
class CodecTrainResult:
    """What a training run did; ``metrics`` are the validation metrics written to the bundle."""

    bundle: Path
    step: int
    start_step: int
    completed: bool
    train_loss: float | None
    metrics: dict[str, Any]
    seconds: float
    steps_per_second: float
    device: str
    config: CodecConfig
    rank: int = 0
    world_size: int = 1


# --- losses and metrics -------------------------------------------------------------------------


class ReconstructionLoss(nn.Module):
    """Multi-resolution STFT loss (Yamamoto et al. 2020) + multi-scale log-mel L1 (EnCodec/DAC).

    For each FFT size ``n`` (hop ``n/4``, Hann window) with magnitudes ``X`` (target) and ``Y``
    (output): ``stft = |X - Y|_F / |X|_F + mean |ln X - ln Y|`` and ``mel = mean |log10 M X -
    log10 M Y|`` with an ``n/8``-band (at most 128) Slaney mel filterbank ``M``. Both are
    averaged over the sizes. Inputs ``[B, 1, T]`` or ``[B, T]``; computed in float32.
    """

    def __init__(self, sample_rate: int, n_ffts: tuple[int, ...] = (512, 1024, 2048)) -> None:
        super().__init__()
        self.n_ffts = tuple(n_ffts)
        for n in self.n_ffts:
            fb = torchaudio.functional.melscale_fbanks(
                n // 2 + 1,
                0.0,
                sample_rate / 2,
                min(128, n // 8),
                sample_rate,
                norm="slaney",
                mel_scale="slaney",
            )  # [bins, mels]
            self.register_buffer(f"fb_{n}", fb, persistent=False)
            self.register_buffer(f"window_{n}", torch.hann_window(n), persistent=False)

    def forward(
        self, output: torch.Tensor, target: torch.Tensor, *, spectral: bool = True
    ) -> dict[str, torch.Tensor]:
        """``{"wave": L1 of the samples, "stft": scalar, "mel": scalar}`` (the spectral terms
        are zeros when ``spectral`` is false)."""
        y = output.reshape(-1, output.shape[-1]).float()
        x = target.reshape(-1, target.shape[-1]).float()
        wave = F.l1_loss(y, x)
        if not spectral:
            zero = wave.new_zeros(())
            return {"wave": wave, "stft": zero, "mel": zero}
        stft_terms = []
        mel_terms = []
        both = torch.cat((x, y))  # one STFT call for target and output
        for n in self.n_ffts:
            window = getattr(self, f"window_{n}")
            spec = torch.stft(both, n, n // 4, window=window, return_complex=True).abs()
            mag = spec.clamp_min(1e-7)  # [2B, bins, frames]
            mx, my = mag[: x.shape[0]], mag[x.shape[0] :]
            sc = torch.linalg.vector_norm(mx - my) / torch.linalg.vector_norm(mx).clamp_min(1e-7)
            stft_terms.append(sc + F.l1_loss(my.log(), mx.log()))
            fb = getattr(self, f"fb_{n}")
            mel = torch.einsum("bft,fm->bmt", mag, fb).clamp_min(1e-5).log10()
            mel_terms.append(F.l1_loss(mel[x.shape[0] :], mel[: x.shape[0]]))
        return {
            "wave": wave,
            "stft": torch.stack(stft_terms).mean(),
            "mel": torch.stack(mel_terms).mean(),
        }


def si_snr(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Scale-invariant SNR in dB per signal ``[B]`` (Le Roux et al. 2019), zero-mean signals."""
    y = output.reshape(output.shape[0], -1).double()
    x = target.reshape(target.shape[0], -1).double()
    x = x - x.mean(-1, keepdim=True)
    y = y - y.mean(-1, keepdim=True)
    scale = (y * x).sum(-1, keepdim=True) / x.pow(2).sum(-1, keepdim=True).clamp_min(1e-12)
    proj = scale * x
    noise = y - proj
    ratio = proj.pow(2).sum(-1) / noise.pow(2).sum(-1).clamp_min(1e-12)
    return (10 * torch.log10(ratio.clamp_min(1e-12))).float()


# --- one optimisation step ------------------------------------------------------------------------


class _Sampler(Protocol):
    def sample(
        self, name: Any, rng: np.random.Generator, batch: int, length: int
    ) -> torch.Tensor: ...


@dataclass
class _Weights:
    wave: float
    stft: float
    mel: float
    commit: float
    adv: float
    feat: float


class _Stepper:
    """The losses and updates of one step, shared by :func:`train_codec` and
    :func:`fit_tiny_codec`."""

    def __init__(
        self,
        *,
        model: Codec,
        train_model: nn.Module,
        adversary: Adversary | None,
        opt_g: torch.optim.Optimizer,
        recon: ReconstructionLoss,
        weights: _Weights,
        grad_clip: float,
        device: torch.device,
        amp_dtype: torch.dtype | None,
    ) -> None:
        self.model = model
        self.train_model = train_model
        self.adversary = adversary
        self.opt_g = opt_g
        self.recon = recon
        self.w = weights
        self.grad_clip = grad_clip
        self.device = device
        self.amp_dtype = amp_dtype
        # loss scaling only for float16 autocast (GPUs without bf16); a no-op otherwise
        fp16 = amp_dtype == torch.float16
        self.scaler_g = torch.amp.GradScaler("cuda", enabled=fp16)

    def step(self, audio: torch.Tensor, n_q: int, adversarial: bool) -> dict[str, float]:
        """One update of the codec (and discriminator); ``audio [B, 1, T]`` on the device."""
        with autocast(self.device, self.amp_dtype):
            output, result = self.train_model(audio, n_q)
        losses = self.recon(output, audio, spectral=self.w.stft > 0 or self.w.mel > 0)
        total = (
            self.w.wave * losses["wave"] + self.w.stft * losses["stft"] + self.w.mel * losses["mel"]
        )
        recon_value = float(total.detach())
        if n_q > 0:
            total = total + self.w.commit * result.commit_loss.float()
        out: dict[str, float] = {
            "wave": float(losses["wave"].detach()),
            "stft": float(losses["stft"].detach()),
            "mel": float(losses["mel"].detach()),
            "commit": float(result.commit_loss.detach()),
        }
        if adversarial and self.adversary is not None:
            gan = self.adversary.generator_losses(audio, output)
            total = total + self.w.adv * gan.adv + self.w.feat * gan.feat
            out["disc"] = gan.disc
            out["adv"] = float(gan.adv.detach())
            out["feat"] = float(gan.feat.detach())
        self.opt_g.zero_grad(set_to_none=True)
        self.scaler_g.scale(total).backward()
        if self.grad_clip > 0:
            self.scaler_g.unscale_(self.opt_g)
            nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip)
        self.scaler_g.step(self.opt_g)
        self.scaler_g.update()
        out["loss"] = float(total.detach())
        out["recon"] = recon_value
        return out


def _frames_per_crop(config: CodecConfig, seconds: float) -> int:
    return max(1, math.ceil(seconds * config.sample_rate / config.hop))


@torch.no_grad()
def _init_codebooks(
    model: Codec,
    sampler: _Sampler,
    *,
    seed: int,
    rank: int,
    batch: int,
    length: int,
    device: torch.device,
) -> None:
    """k-means initialise the codebooks on encoder outputs of ~``4 K`` frames (≤ 32 batches)."""
    want = 4 * model.config.codebook_size
    frames: list[torch.Tensor] = []
    count = 0
    was_training = model.training
    model.eval()
    try:
        for i in range(32):
            rng = np.random.default_rng([seed, rank, 104_729, i])
            audio = sampler.sample("train", rng, batch, length).to(device)[:, None]
            z = model.encode_latent(audio).float()  # [B, D, F]
            frames.append(z.transpose(1, 2).reshape(-1, z.shape[1]))
            count += frames[-1].shape[0]
            if count >= want:
                break
    finally:
        model.train(was_training)
    model.quantizer.initialize(torch.cat(frames), seed=seed)


def _n_q_for(step: int, seed: int, config: CodecConfig, quantize_start: int) -> int:
    """Codebooks used at ``step``: 0 during warm-up, then random (same on every rank)."""
    if step < quantize_start:
        return 0
    if not config.quantizer_dropout:
        return config.n_q
    return int(np.random.default_rng([seed, 15_485_863, step]).integers(1, config.n_q + 1))


@torch.no_grad()
def _evaluate(
    model: Codec,
    recon: ReconstructionLoss,
    crops: torch.Tensor,
    batch: int,
    device: torch.device,
    n_q: int | None,
) -> dict[str, float]:
    """Mean log-mel L1, STFT loss and SI-SNR of ``crops [N, T]`` through the codec."""
    was_training = model.training
    model.eval()
    sums = {"mel": 0.0, "stft": 0.0, "si_snr": 0.0}
    try:
        for i in range(0, crops.shape[0], batch):
            audio = crops[i : i + batch].to(device)[:, None]
            output, _ = model(audio, n_q)
            losses = recon(output, audio)
            n = audio.shape[0]
            sums["mel"] += float(losses["mel"]) * n
            sums["stft"] += float(losses["stft"]) * n
            sums["si_snr"] += float(si_snr(output, audio).sum())
    finally:
        model.train(was_training)
    return {k: v / max(crops.shape[0], 1) for k, v in sums.items()}


# --- the recipe for tests -------------------------------------------------------------------------


class _ArraySampler:
    """Random crops of one in-memory signal (looped when shorter than a crop)."""

    def __init__(self, audio: npt.NDArray[np.float32]) -> None:
        self.audio = np.asarray(audio, dtype=np.float32).reshape(-1)

    def sample(self, name: Any, rng: np.random.Generator, batch: int, length: int) -> torch.Tensor:
        x = self.audio
        if x.shape[0] < length:
            x = np.tile(x, -(-length // x.shape[0]) + 1)
        starts = rng.integers(0, x.shape[0] - length + 1, size=batch)
        return torch.from_numpy(np.stack([x[s : s + length] for s in starts]))


def fit_tiny_codec(
    audio: npt.NDArray[np.float32],
    rate: int,
    *,
    steps: int = 400,
    seed: int = 0,
    config: str | CodecConfig = "tiny",
    batch: int = 4,
    segment: float = 0.16,
    lr: float = 2e-3,
    quantize_start: int | None = None,
    commit_weight: float = 0.1,
    mel_weight: float = 0.0,
) -> Codec:
    """Train a small codec on one signal in memory (no data folder, no discriminator).

    The recipe the tests use: the ``tiny`` config, ``batch`` random crops of ``segment``
    seconds, Adam (default betas) at ``lr``, the L1 waveform loss plus ``commit_weight`` times
    the commitment loss, an unquantized warm-up of ``quantize_start`` steps (default: half of
    ``steps``), k-means codebook initialisation, then quantizer dropout. Spectral losses are
    left out (``mel_weight`` = 0): at this step count they slowed the tiny model down (its
    output collapsed towards silence). Threads are left as they are (call
    ``torch.set_num_threads(1)`` first on shared machines).

    Measured on a four-note plucked riff (2 s, tests/training/test_codec_trainer.py), 400
    steps, ~21 s on one CPU thread: every note's pitch within 2 % with all codebooks (seeds
    0-2; with 1-2 codebooks the 440 Hz note sometimes drops an octave), waveform SNR ~2.5 dB,
    notes ~0.4-0.7x too quiet (L1 regression shrinks the level).

    Args:
        audio: mono samples ``[T]`` at ``rate``; must be the config's sample rate.

    Returns:
        The codec in eval mode, on the CPU.
    """
    cfg = named_codec_config(config) if isinstance(config, str) else config
    if rate != cfg.sample_rate:
        raise ValueError(f"audio at {rate} Hz, the codec config wants {cfg.sample_rate} Hz")
    warmup = steps // 2 if quantize_start is None else quantize_start
    device = torch.device("cpu")
    torch.manual_seed(seed)
    model = Codec(cfg)
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    stepper = _Stepper(
        model=model,
        train_model=model,
        adversary=None,
        opt_g=opt,
        recon=ReconstructionLoss(cfg.sample_rate),
        weights=_Weights(1.0, 0.0, mel_weight, commit_weight, 0.0, 0.0),
        grad_clip=10.0,
        device=device,
        amp_dtype=None,
    )
    sampler = _ArraySampler(audio)
    length = _frames_per_crop(cfg, segment) * cfg.hop
    for step in range(steps):
        if step == warmup:
            _init_codebooks(
                model, sampler, seed=seed, rank=0, batch=batch, length=length, device=device
            )
        rng = np.random.default_rng([seed, 0, step])
        crops = sampler.sample("train", rng, batch, length)[:, None]
        torch.manual_seed(seed * 1_000_003 + step)
        stepper.step(crops, _n_q_for(step, seed, cfg, warmup), adversarial=False)
    return model.eval()


# --- the trainer ----------------------------------------------------------------------------------


def checkpoint_dir(out: str | Path) -> CheckpointDir:
    """The checkpoint folder of a codec bundle: ``out/checkpoint/codec``."""
    return CheckpointDir(Path(out).joinpath(*CHECKPOINT_SUBDIR), state_version=STATE_VERSION)


def _resolve_config(options: CodecTrainOptions, stored: CodecConfig | None) -> CodecConfig:
    if options.config is None:
        if stored is not None:
            return stored
        choice: str | CodecConfig = "default"
    else:
        choice = options.config
    if isinstance(choice, CodecConfig):
        config = choice
    else:
        try:
            config = named_codec_config(choice)
        except ValueError as exc:
            raise TrainingError(str(exc)) from exc
    require_same_config(
        stored,
        config,
        what="the codec checkpoint in the output folder",
        elsewhere="another --out",
    )
    return config


def train_codec(
    options: CodecTrainOptions,
    *,
    on_step: Callable[[CodecStepReport], None] | None = None,
    stop: threading.Event | None = None,
) -> CodecTrainResult:
    """Train (or resume training) a codec and write it into the bundle ``options.out``.

    Args:
        options: see :class:`CodecTrainOptions`.
        on_step: called after every step with a :class:`CodecStepReport` (rank 0 only).
        stop: when set, training stops after the current step, writes its checkpoint and the
            bundle, and returns with ``completed=False``.

    Raises:
        TrainingError: bad data or options, a checkpoint of another config in ``out``.
        ComputeDeviceError: the device asked for is not there.
        BundleError: ``out`` holds a bundle of another kind or sample rate.
    """
    options.check()
    out = Path(options.out).expanduser()
    with distributed_session(options.device, options.threads) as (dinfo, device):
        return _train(options, out, dinfo, device, on_step, stop)


def _train(
    options: CodecTrainOptions,
    out: Path,
    dinfo: DistInfo,
    device: torch.device,
    on_step: Callable[[CodecStepReport], None] | None,
    stop: threading.Event | None,
) -> CodecTrainResult:
    ckpt = checkpoint_dir(out)
    resume = open_checkpoint(out, ckpt, dinfo)
    stored = stored_config(resume, CodecConfig.from_dict, ckpt.folder, "codec config")
    config = _resolve_config(options, stored)
    disc_config = resolve_discriminator(
        options.discriminator,
        None if resume is None else resume.get("discriminator"),
        resuming=resume is not None,
        what="the codec checkpoint in the output folder",
    )
    config_name = named_config_of(config, NAMED_CODEC_CONFIGS, resume)
    cache_dir = out / WORK_DIR if options.cache else None
    dataset = waveforms_on_ranks(dinfo, options, config.sample_rate, cache_dir, log)
    amp_dtype = training_amp_dtype(device, options.amp, log)

    torch.manual_seed(options.seed)
    model = Codec(config).to(device)
    disc = MultiScaleSTFTDiscriminator(disc_config).to(device) if disc_config else None
    betas = (0.5, 0.9)
    opt_g = torch.optim.Adam(model.parameters(), lr=options.lr, betas=betas)
    opt_d = (
        torch.optim.Adam(disc.parameters(), lr=options.disc_lr, betas=betas)
        if disc is not None
        else None
    )
    modules: dict[str, nn.Module] = {"codec": model}
    optimizers: dict[str, torch.optim.Optimizer] = {"codec": opt_g}
    configs: dict[str, Any] = {"codec": config}
    if disc is not None and opt_d is not None and disc_config is not None:
        modules["discriminator"] = disc
        optimizers["discriminator"] = opt_d
        configs["discriminator"] = disc_config.to_dict()
    start_step = 0
    state: dict[str, Any] = {
        "history": [],
        "seconds": 0.0,
        "train_loss": None,
        "recent_losses": [],
        "last_val": None,
    }
    if resume is not None:
        ckpt.load(modules, optimizers, device)
        for group in opt_g.param_groups:
            group["lr"] = options.lr
        if opt_d is not None:
            for group in opt_d.param_groups:
                group["lr"] = options.disc_lr
        start_step = int(resume["step"])
        state.update({k: resume.get(k, state[k]) for k in state})
        if dinfo.main:
            log.info("resuming codec training from step %d of %s", start_step, ckpt.folder)

    train_model: nn.Module = model
    train_disc: nn.Module | None = disc
    if dinfo.world > 1:
        from torch.nn.parallel import DistributedDataParallel

        ids = [device.index] if device.type == "cuda" else None
        # the codebooks are kept identical by models/quantize.py itself
        train_model = DistributedDataParallel(model, device_ids=ids, broadcast_buffers=False)
        if disc is not None:
            train_disc = DistributedDataParallel(disc, device_ids=ids, broadcast_buffers=False)

    recon = ReconstructionLoss(config.sample_rate).to(device)
    stepper = _Stepper(
        model=model,
        train_model=train_model,
        adversary=optional_adversary(
            disc,
            train_disc,
            opt_d,
            grad_clip=options.grad_clip,
            device=device,
            amp_dtype=amp_dtype,
        ),
        opt_g=opt_g,
        recon=recon,
        weights=_Weights(
            options.wave_weight,
            options.stft_weight,
            options.mel_weight,
            options.commit_weight,
            options.adv_weight,
            options.feat_weight,
        ),
        grad_clip=options.grad_clip,
        device=device,
        amp_dtype=amp_dtype,
    )
    length = _frames_per_crop(config, options.segment) * config.hop
    val_crops: torch.Tensor | None = None
    if dinfo.main:
        rng = np.random.default_rng([options.seed, 7919])
        split: Literal["train", "valid"] = "valid" if dataset.valid is not None else "train"
        val_crops = dataset.sample(split, rng, options.val_crops, length)

    name = options.name or out.resolve().name
    recent: deque[float] = deque((float(v) for v in state["recent_losses"]), maxlen=20)
    step = start_step
    started = time.perf_counter()
    base_seconds = float(state["seconds"])
    stopped = False

    def snapshot() -> dict[str, Any]:
        return {
            "step": step,
            "seed": options.seed,
            "rng": "numpy.random.default_rng([seed, rank, step]) draws the crops of each step",
            "config": config.to_dict(),
            "config_name": config_name,
            "discriminator": None if disc_config is None else disc_config.to_dict(),
            "train_loss": state["train_loss"],
            "recent_losses": list(recent),
            "last_val": state["last_val"],
            "seconds": base_seconds + time.perf_counter() - started,
            "history": state["history"],
            "options": {
                "data": str(options.data),
                "batch": options.batch,
                "segment": options.segment,
                "lr": options.lr,
                "disc_lr": options.disc_lr,
                "quantize_start": options.quantize_start,
                "adv_start": options.adv_start,
                "world_size": dinfo.world,
                "device": str(device),
                "amp": str(amp_dtype).removeprefix("torch.") if amp_dtype else None,
            },
            "audiogen_studio": __version__,
        }

    def validate_now() -> dict[str, float]:
        assert val_crops is not None
        metrics = _evaluate(model, recon, val_crops, options.batch, device, None)
        state["last_val"] = metrics
        return metrics

    model.train()
    if disc is not None:
        disc.train()
    with progress_bar(
        options.progress and dinfo.main, options.steps, start_step, "train codec"
    ) as bar:
        loop_start = time.perf_counter()
        while step < options.steps:
            if step >= options.quantize_start and not model.quantizer.initialized:
                _init_codebooks(
                    model,
                    dataset,
                    seed=options.seed,
                    rank=dinfo.rank,
                    batch=options.batch,
                    length=length,
                    device=device,
                )
            rng = np.random.default_rng([options.seed, dinfo.rank, step])
            audio = dataset.sample("train", rng, options.batch, length).to(device)[:, None]
            n_q = _n_q_for(step, options.seed, config, options.quantize_start)
            adversarial = disc is not None and step >= options.adv_start
            torch.manual_seed(options.seed * 1_000_003 + step)
            values = stepper.step(audio, n_q, adversarial)
            step += 1
            loss_value = values["loss"]
            if not math.isfinite(loss_value):
                raise TrainingError(
                    f"the loss became {loss_value} at step {step}; lower --lr (now {options.lr})"
                )
            recent.append(values["recon"])
            state["train_loss"] = sum(recent) / len(recent)
            val: dict[str, float] | None = None
            if dinfo.main:
                if options.val_every and step % options.val_every == 0 and step < options.steps:
                    val = validate_now()
                    state["history"].append(
                        {"step": step, "recon": state["train_loss"], "val": val}
                    )
                    log.info(
                        "codec step %d/%d: validation %s",
                        step,
                        options.steps,
                        ", ".join(f"{k} {v:.4f}" for k, v in val.items()),
                    )
                if options.save_every and step % options.save_every == 0:
                    ckpt.save(modules, optimizers, snapshot(), configs)
                elapsed = time.perf_counter() - loop_start
                per_step = elapsed / max(step - start_step, 1)
                postfix = {"recon": f"{state['train_loss']:.3f}", "n_q": n_q}
                if state["last_val"]:
                    postfix["val_mel"] = f"{state['last_val']['mel']:.3f}"
                bar.set_postfix(postfix, refresh=False)
                bar.update(1)
                if on_step is not None:
                    on_step(
                        CodecStepReport(
                            step=step,
                            steps=options.steps,
                            loss=loss_value,
                            recon=values["recon"],
                            n_q=n_q,
                            adversarial=adversarial,
                            val_mel=None if val is None else val["mel"],
                            seconds_per_step=per_step,
                            seconds=base_seconds + time.perf_counter() - started,
                        )
                    )
            want_stop = (stop is not None and stop.is_set()) or (
                options.time_limit is not None
                and time.perf_counter() - started >= options.time_limit
            )
            if (stop is not None or options.time_limit is not None) and dinfo.any_flag(
                want_stop, device
            ):
                stopped = step < options.steps
                break
    completed = step >= options.steps
    elapsed = time.perf_counter() - started
    rate = (step - start_step) / max(elapsed, 1e-9)
    metrics: dict[str, Any] = {}
    if dinfo.main:
        if step > start_step or state["last_val"] is None:
            final = validate_now()
            state["history"].append({"step": step, "recon": state["train_loss"], "val": final})
        else:
            final = dict(state["last_val"])
        ckpt.save(modules, optimizers, snapshot(), configs)
        metrics = {
            "val_mel_l1": finite_or_none(final["mel"]),
            "val_stft": finite_or_none(final["stft"]),
            "val_si_snr_db": finite_or_none(final["si_snr"]),
            "train_recon": finite_or_none(state["train_loss"]),
            "n_q": config.n_q,
            "bits_per_second": config.bits_per_second,
            "frame_rate": config.frame_rate,
            "parameters": model.num_parameters(),
            "metric_notes": "log10-mel L1 and STFT loss of ReconstructionLoss, SI-SNR in dB; "
            f"{options.val_crops} fixed crops of {length} samples with all codebooks",
        }
        training = {
            "data": str(options.data),
            "steps": step,
            "completed": completed,
            "hours": round(dataset.train_hours, 6),
            "valid_hours": round(dataset.valid_hours, 6),
            "files_skipped": len(dataset.skipped),
            "device": str(device),
            "world_size": dinfo.world,
            "amp": str(amp_dtype).removeprefix("torch.") if amp_dtype else None,
            "time_seconds": round(base_seconds + elapsed, 3),
            "config_name": config_name,
            "discriminator": None if disc_config is None else disc_config.to_dict(),
            "batch": options.batch,
            "segment_samples": length,
            "lr": options.lr,
            "quantize_start": options.quantize_start,
            "adv_start": options.adv_start,
            "seed": options.seed,
            "audiogen_studio": __version__,
        }
        model.save_pretrained(
            out / WEIGHTS_FILE, extra={"step": step, "kind": "codec", "name": name}
        )
        write_component(
            out,
            CODEC_COMPONENT,
            file=WEIGHTS_FILE,
            config=config.to_dict(),
            sample_rate=config.sample_rate,
            training=training,
            metrics=metrics,
            name=options.name,
        )
        if stopped:
            log.info("stopped at step %d of %d", step, options.steps)
    dinfo.barrier()
    return CodecTrainResult(
        bundle=out,
        step=step,
        start_step=start_step,
        completed=completed,
        train_loss=finite_or_none(state["train_loss"]),
        metrics=metrics,
        seconds=base_seconds + elapsed,
        steps_per_second=rate,
        device=str(device),
        config=config,
        rank=dinfo.rank,
        world_size=dinfo.world,
    )


def options_dict(options: CodecTrainOptions) -> dict[str, Any]:
    """The options as JSON-ready values (for logs and ``--json``)."""
    data = dataclasses.asdict(options)
    for key in ("data", "out"):
        data[key] = str(data[key])
    if isinstance(options.config, CodecConfig):
        data["config"] = options.config.to_dict()
    if isinstance(options.discriminator, DiscriminatorConfig):
        data["discriminator"] = options.discriminator.to_dict()
    return data
