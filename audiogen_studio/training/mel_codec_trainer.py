"""Train the spectral codec (models/mel_codec.py) into a bundle, resumably.

``train_mel_codec(MelCodecTrainOptions(data=..., out=BUNDLE, ...))``:

- **stage 1** (seconds to minutes, once): log-mel frames of up to ``kmeans_seconds`` of the
  training split give the per-band normalisation and the residual k-means codebooks
  (:meth:`MelCodec.fit_quantizer`); the result is checkpointed at step 0, so a resumed run
  never refits;
- **stage 2**: the Vocos-style decoder learns to turn *dequantized* frames back into audio (so
  it learns to undo the quantization). Each step draws ``batch`` crops of ``segment`` seconds
  (whole frames) plus the ``n_fft - hop`` samples of left context of their first frame, with
  ``numpy.random.default_rng([seed, rank, step])``; each crop is quantized with all codebooks, or
  with probability ``nq_dropout`` with a random ``min_n_q..n_q`` of them (the decoder then also
  serves lower bitrates); optional Gaussian ``input_noise`` on the frames. Losses: the
  multi-resolution STFT and multi-scale log-mel L1 of
  :class:`~audiogen_studio.training.codec_trainer.ReconstructionLoss` (the SoundStream codec's,
  so their validation numbers compare), on the samples whose overlap-add is complete (the
  decoder lags by ``latency``; its first ``latency`` output samples lack the windows before the
  crop). AdamW (β = 0.8, 0.9 as Vocos), linear warm-up, gradient clipping;
- **GAN phase** (optional, ``discriminator``; Vocos §3 / SoundStream §3.4): a multi-scale STFT
  discriminator (:mod:`~audiogen_studio.training.adversarial`) joins, from the step the run is
  at (a run of reconstruction training resumed with ``--discriminator small`` takes one on);
  the decoder then also gets ``adv_weight`` × the generator hinge loss and ``feat_weight`` ×
  feature matching. The defaults 0.1 / 0.2 keep Vocos' balance of ``45 · L1(ln mel)`` against
  ``L_adv + 2 L_fm`` for this trainer's loss scale (its STFT + log10-mel terms sum to ~1.5 on
  a trained decoder, where Vocos' mel term is ~17);
- ``BUNDLE/checkpoint/mel_codec/`` (:class:`~audiogen_studio.training.common.CheckpointDir`):
  weights (with statistics and codebooks), optimizer, the discriminator and its optimizer once
  one has joined, ``trainer_state.json``;
- at the end (or when stopped by ``stop``/``time_limit``): validation on fixed crops of the
  valid split with all codebooks (log-mel L1 and STFT loss as the codec trainer reports them,
  plus the log-mel L1 at ``n_q`` 8 when the codec has more), then ``BUNDLE/codec.safetensors``
  and the ``codec`` component of ``BUNDLE/bundle.json`` with ``"kind": "mel"``.

Devices: ``auto`` = CUDA, MPS, CPU; ``amp`` = bf16 autocast on CUDA (the ISTFT head runs in
float32). Under ``torchrun`` rank 0 fits stage 1 and every rank loads its checkpoint; the decoder
is wrapped in ``DistributedDataParallel`` (NCCL on CUDA, Gloo on CPU).

:func:`fit_tiny_mel_codec` is the in-memory recipe the tests use.
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
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from audiogen_studio import __version__
from audiogen_studio.engine.bundles import BUNDLE_FILE, BundleError, read_bundle, write_component
from audiogen_studio.models.acoustic_codec import CODEC_COMPONENT, component_kind
from audiogen_studio.models.checkpoint import CheckpointError
from audiogen_studio.models.discriminator import DiscriminatorConfig, MultiScaleSTFTDiscriminator
from audiogen_studio.models.mel_codec import (
    MEL_CODEC_KIND,
    NAMED_MEL_CODEC_CONFIGS,
    MelCodec,
    MelCodecConfig,
    named_mel_codec_config,
)
from audiogen_studio.training.adversarial import (
    Adversary,
    optional_adversary,
    resolve_discriminator,
)
from audiogen_studio.training.audio_dataset import TrainingError
from audiogen_studio.training.codec_trainer import ReconstructionLoss, _ArraySampler, _Sampler
from audiogen_studio.training.common import (
    CheckpointDir,
    DistInfo,
    autocast,
    check_fields,
    check_valid_fraction,
    component_file,
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
CHECKPOINT_SUBDIR = ("checkpoint", "mel_codec")
MODULE_NAME = "mel_codec"
DISC_NAME = "discriminator"
WORK_DIR = "work"
STATE_VERSION = 1

__all__ = [
    "MelCodecStepReport",
    "MelCodecTrainOptions",
    "MelCodecTrainResult",
    "checkpoint_dir",
    "collect_log_mel",
    "fit_tiny_mel_codec",
    "train_mel_codec",
]


@dataclass(frozen=True, kw_only=True)
class MelCodecTrainOptions:
    """What ``audiogen-studio train mel-codec`` asks for.

    Attributes:
        data: corpus folder, ``*.jsonl`` manifest, folder of audio files or one audio file.
        out: the bundle folder to write (and to resume from).
        config: a name of :data:`~audiogen_studio.models.mel_codec.NAMED_MEL_CODEC_CONFIGS`, a
            ``.json`` path or a config; ``None`` = the checkpoint's when resuming, else
            ``"default"``.
        steps: total decoder steps (a resumed run goes on up to this number).
        batch: crops per step (per process under ``torchrun``).
        segment: seconds per crop (rounded up to whole frames).
        lr: AdamW peak learning rate; weight_decay: its decoupled weight decay.
        warmup: steps of linear learning-rate warm-up.
        stft_weight, mel_weight, wave_weight: loss weights (``wave``: L1 of the samples).
        nq_dropout: probability that a crop is quantized with fewer than all codebooks.
        min_n_q: fewest codebooks such a crop uses.
        nq_choices: when given, a crop quantized with fewer codebooks uses one of these counts
            (drawn uniformly) instead of ``min_n_q..n_q``: train the decoder for the counts a
            bundle decodes from (``generation.decode_quantizers``).
        input_noise: standard deviation of Gaussian noise added to the dequantized frames.
        kmeans_seconds: seconds of training audio whose frames stage 1 fits.
        kmeans_iters: Lloyd iterations per codebook.
        device: ``auto``, ``cpu``, ``cuda``, ``cuda:N`` or ``mps``.
        amp: bf16 autocast on CUDA (ignored elsewhere).
        val_every: validate every N steps (0: only at the end).
        save_every: checkpoint every N steps (0: only at the end).
        seed: seeds weights, crops, codebook counts and k-means.
        val_crops: fixed validation crops.
        grad_clip: gradient-norm clipping (0 disables).
        name: bundle name (default: the ``out`` folder's name).
        progress: tqdm bar on stderr.
        time_limit: stop (checkpoint and bundle written) after this many seconds.
        valid_fraction: tail of each file held out when the data has no valid split.
        cache: keep the decoded audio as memory-mapped arrays in ``out/work``.
        threads: ``torch.set_num_threads`` for this process (``None``: torch's default).
        init_decoder: a bundle (or ``codec.safetensors``) with a trained mel codec of the same
            decoder shape whose decoder stage 2 starts from (:meth:`MelCodec.adopt_decoder`):
            fine-tuning on new material; applied once, before the first decoder step.
        init_codec: a bundle (or ``codec.safetensors``) whose whole mel codec (normalisation,
            codebooks and decoder) this run starts from instead of fitting stage 1: its tokens,
            and the LMs trained on them, stay valid while the decoder is fine-tuned. The config
            defaults to that codec's.
        discriminator: a name of :data:`~audiogen_studio.training.adversarial
            .NAMED_DISCRIMINATORS` or a config: the GAN phase (module doc) from the step the run
            is at; ``"none"`` trains without; ``None`` = the checkpoint's when resuming, else
            none.
        disc_lr: AdamW learning rate of the discriminator.
        adv_weight, feat_weight: weights of the generator hinge and feature-matching losses.
    """

    data: str | Path
    out: str | Path
    config: str | MelCodecConfig | None = None
    steps: int = 100_000
    batch: int = 16
    segment: float = 1.0
    lr: float = 5e-4
    weight_decay: float = 0.01
    warmup: int = 200
    stft_weight: float = 1.0
    mel_weight: float = 1.0
    wave_weight: float = 0.0
    nq_dropout: float = 0.5
    min_n_q: int = 4
    nq_choices: tuple[int, ...] | None = None
    input_noise: float = 0.0
    kmeans_seconds: float = 3_600.0
    kmeans_iters: int = 15
    device: str = "auto"
    amp: bool = False
    val_every: int = 500
    save_every: int = 500
    seed: int = 0
    val_crops: int = 16
    grad_clip: float = 10.0
    name: str | None = None
    progress: bool = True
    time_limit: float | None = None
    valid_fraction: float = 0.1
    cache: bool = True
    threads: int | None = None
    init_decoder: str | Path | None = None
    init_codec: str | Path | None = None
    discriminator: str | DiscriminatorConfig | None = None
    disc_lr: float = 2e-4
    adv_weight: float = 0.1
    feat_weight: float = 0.2

    def check(self) -> None:
        """Raise :class:`TrainingError` on nonsensical values."""
        weights = ("stft_weight", "mel_weight", "wave_weight", "adv_weight", "feat_weight")
        check_fields(
            self,
            at_least_one=("steps", "batch", "val_crops", "min_n_q", "kmeans_iters"),
            zero_or_more=("val_every", "save_every", "warmup"),
            positive=("lr", "disc_lr", "segment", "kmeans_seconds"),
            non_negative=(*weights, "input_noise", "weight_decay", "grad_clip"),
        )
        if not 0.0 <= self.nq_dropout <= 1.0:
            raise TrainingError(f"nq_dropout must be within [0, 1], got {self.nq_dropout}")
        check_fields(self, at_least_one=("threads",))
        if self.nq_choices is not None and (not self.nq_choices or min(self.nq_choices) < 1):
            raise TrainingError(f"--nq-choices must be codebook counts >= 1, got {self.nq_choices}")
        if self.init_codec is not None and self.init_decoder is not None:
            raise TrainingError(
                "--init-codec already brings a decoder: give --init-codec or --init-decoder"
            )
        check_valid_fraction(self.valid_fraction)


@dataclass(frozen=True)
class MelCodecStepReport:
    """Progress after one decoder step (given to ``on_step``; rank 0 only)."""

    step: int
    steps: int
    loss: float
    mel: float
    stft: float
    lr: float
    val_mel: float | None
    seconds_per_step: float
    seconds: float
    disc: float | None = None


@dataclass(frozen=True)
class MelCodecTrainResult:
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
    config: MelCodecConfig
    rank: int = 0
    world_size: int = 1


# --- stage 1 ------------------------------------------------------------------------------------


@torch.no_grad()
def collect_log_mel(
    model: MelCodec,
    signals: Any,
    *,
    max_seconds: float,
    chunk_seconds: float = 60.0,
) -> torch.Tensor:
    """Log-mel frames ``[N, n_mels]`` of the signals (1-D float arrays) in order, up to
    ``max_seconds`` of audio; long signals are analysed in chunks (with their left context)."""
    c = model.config
    budget = int(max_seconds * c.sample_rate)
    chunk = max(1, int(chunk_seconds * c.sample_rate) // c.hop) * c.hop
    frames: list[torch.Tensor] = []
    for signal in signals:
        if budget <= 0:
            break
        x = torch.from_numpy(np.array(signal[:budget], dtype=np.float32))  # a copy
        budget -= x.shape[0]
        x = torch.nn.functional.pad(x, (c.latency, (-x.shape[0]) % c.hop))  # as encode pads
        for start in range(0, x.shape[0] - c.latency, chunk):
            piece = x[start : start + chunk + c.latency]
            mel = model.log_mel(piece[None], with_context=True)  # [1, n_mels, f]
            frames.append(mel[0].T.cpu())
    if not frames:
        raise TrainingError("no training audio to fit the mel codebooks on")
    return torch.cat(frames)


# --- one decoder step ---------------------------------------------------------------------------


def _crop_length(config: MelCodecConfig, seconds: float) -> int:
    """Samples of a crop: whole frames of ``seconds`` plus the first frame's left context."""
    frames = max(-(-config.latency // config.hop) + 1, math.ceil(seconds * config.frame_rate))
    return config.latency + frames * config.hop


def _n_q_per_crop(
    config: MelCodecConfig,
    batch: int,
    rng: np.random.Generator,
    dropout: float,
    min_n_q: int,
    choices: tuple[int, ...] | None = None,
) -> npt.NDArray[np.int64]:
    """Codebooks per crop ``[batch]``: all, or with probability ``dropout`` fewer: one of
    ``choices`` when given, else ``min_n_q..n_q``."""
    n_q = np.full(batch, config.n_q, dtype=np.int64)
    fewer = rng.random(batch) < dropout
    if choices:
        n_q[fewer] = rng.choice(np.asarray(choices, dtype=np.int64), size=int(fewer.sum()))
    else:
        low = min(min_n_q, config.n_q)
        n_q[fewer] = rng.integers(low, config.n_q + 1, size=int(fewer.sum()))
    return n_q


def _validation_counts(config: MelCodecConfig, choices: tuple[int, ...] | None) -> list[int]:
    """Codebook counts validation measures: all first, then 8 (when the codec has more) and
    the ``nq_choices`` the run trains for."""
    extra = set(choices or ()) | ({8} if config.n_q > 8 else set())
    return [config.n_q, *sorted(extra - {config.n_q}, reverse=True)]


@torch.no_grad()
def _dequantized(model: MelCodec, crops: torch.Tensor, n_q: npt.NDArray[np.int64]) -> torch.Tensor:
    """Frames ``[B, n_mels, F]`` of ``crops [B, T]`` quantized with ``n_q[b]`` codebooks each."""
    z = model.features(crops, with_context=True)
    codes = model.quantizer.encode(z, int(n_q.max()))  # [B, Q, F]
    books = model.quantizer.codebooks
    partial = torch.stack([books[i].decode(codes[:, i]) for i in range(codes.shape[1])])
    partial = partial.cumsum(0)  # [Q, B, F, D]: sum of the first q + 1 books
    pick = torch.as_tensor(n_q - 1, device=partial.device)
    rows = torch.arange(crops.shape[0], device=partial.device)
    return partial[pick, rows].transpose(1, 2).contiguous()


class _MelStepper:
    """Losses and the update of one decoder step (shared by the trainer and the test recipe)."""

    def __init__(
        self,
        *,
        model: MelCodec,
        train_model: nn.Module,
        opt: torch.optim.Optimizer,
        recon: ReconstructionLoss,
        weights: tuple[float, float, float],
        grad_clip: float,
        input_noise: float,
        device: torch.device,
        amp_dtype: torch.dtype | None,
        adversary: Adversary | None = None,
        adv_weights: tuple[float, float] = (0.0, 0.0),
    ) -> None:
        self.model = model
        self.train_model = train_model
        self.opt = opt
        self.recon = recon
        self.stft_w, self.mel_w, self.wave_w = weights
        self.grad_clip = grad_clip
        self.input_noise = input_noise
        self.device = device
        self.amp_dtype = amp_dtype
        self.scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16)
        self.adversary = adversary
        self.adv_w, self.feat_w = adv_weights

    def step(self, crops: torch.Tensor, n_q: npt.NDArray[np.int64]) -> dict[str, float]:
        """One update from ``crops [B, latency + F hop]`` (on the device)."""
        lat = self.model.latency
        z = _dequantized(self.model, crops, n_q)
        if self.input_noise > 0:
            z = z + self.input_noise * torch.randn_like(z)
        with autocast(self.device, self.amp_dtype):
            out = self.train_model(z)  # [B, 1, F hop]
        target = crops[:, None, lat : out.shape[-1]]
        losses = self.recon(out[..., lat:], target)
        total = self.stft_w * losses["stft"] + self.mel_w * losses["mel"]
        if self.wave_w > 0:
            total = total + self.wave_w * losses["wave"]
        extra: dict[str, float] = {}
        if self.adversary is not None:
            gan = self.adversary.generator_losses(target, out[..., lat:])
            total = total + self.adv_w * gan.adv + self.feat_w * gan.feat
            extra = {
                "disc": gan.disc,
                "adv": float(gan.adv.detach()),
                "feat": float(gan.feat.detach()),
            }
        self.opt.zero_grad(set_to_none=True)
        self.scaler.scale(total).backward()
        if self.grad_clip > 0:
            self.scaler.unscale_(self.opt)
            nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip)
        self.scaler.step(self.opt)
        self.scaler.update()
        return {
            "loss": float(total.detach()),
            "stft": float(losses["stft"].detach()),
            "mel": float(losses["mel"].detach()),
            **extra,
        }


@torch.no_grad()
def _evaluate(
    model: MelCodec,
    recon: ReconstructionLoss,
    crops: torch.Tensor,
    batch: int,
    device: torch.device,
    counts: list[int],
) -> dict[str, float]:
    """Mean log-mel L1 and STFT loss of ``crops [N, T]`` through the codec with all codebooks
    (``mel``, ``stft``), and the log-mel L1 with each other count of ``counts``
    (``mel_q8``, ...; see :func:`_validation_counts`)."""
    was_training = model.training
    model.eval()
    lat = model.latency
    sums = {"mel": 0.0, "stft": 0.0} | {f"mel_q{n}": 0.0 for n in counts[1:]}
    try:
        for i in range(0, crops.shape[0], batch):
            audio = crops[i : i + batch].to(device)
            for n_q in counts:
                z = _dequantized(model, audio, np.full(audio.shape[0], n_q, dtype=np.int64))
                out = model(z)
                losses = recon(out[..., lat:], audio[:, None, lat : out.shape[-1]])
                n = audio.shape[0]
                if n_q == model.config.n_q:
                    sums["mel"] += float(losses["mel"]) * n
                    sums["stft"] += float(losses["stft"]) * n
                else:
                    sums[f"mel_q{n_q}"] += float(losses["mel"]) * n
    finally:
        model.train(was_training)
    return {k: v / max(crops.shape[0], 1) for k, v in sums.items()}


def _learning_rate(options_lr: float, warmup: int, step: int) -> float:
    return options_lr * min(1.0, (step + 1) / warmup) if warmup else options_lr


# --- the recipe for tests -------------------------------------------------------------------------


def fit_tiny_mel_codec(
    audio: npt.NDArray[np.float32],
    rate: int,
    *,
    steps: int = 200,
    seed: int = 0,
    config: str | MelCodecConfig = "tiny",
    batch: int = 4,
    segment: float = 0.3,
    lr: float = 2e-3,
    on_step: Callable[[int, dict[str, float]], None] | None = None,
) -> MelCodec:
    """Fit a small mel codec on one signal in memory (no data folder, no bundle).

    Stage 1 on all of ``audio``'s frames (10 Lloyd iterations), then ``steps`` decoder steps
    on random crops (looped when shorter) with all codebooks, the STFT + mel losses, AdamW at
    ``lr``. Threads are left as they are (call ``torch.set_num_threads(1)`` first on shared
    machines). ``on_step(step, {"loss", "stft", "mel"})`` after each step.

    Returns:
        The codec in eval mode, on the CPU.
    """
    cfg = named_mel_codec_config(config) if isinstance(config, str) else config
    if rate != cfg.sample_rate:
        raise ValueError(f"audio at {rate} Hz, the mel codec config wants {cfg.sample_rate} Hz")
    device = torch.device("cpu")
    torch.manual_seed(seed)
    model = MelCodec(cfg)
    mel = collect_log_mel(model, [audio], max_seconds=len(audio) / rate + 1.0)
    model.fit_quantizer(mel, iters=10, seed=seed)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.8, 0.9), weight_decay=0.01)
    stepper = _MelStepper(
        model=model,
        train_model=model,
        opt=opt,
        recon=ReconstructionLoss(cfg.sample_rate),
        weights=(1.0, 1.0, 0.0),
        grad_clip=1.0,
        input_noise=0.0,
        device=device,
        amp_dtype=None,
    )
    sampler = _ArraySampler(audio)
    length = _crop_length(cfg, segment)
    for step in range(steps):
        rng = np.random.default_rng([seed, 0, step])
        crops = sampler.sample("train", rng, batch, length)
        values = stepper.step(crops, np.full(batch, cfg.n_q, dtype=np.int64))
        if on_step is not None:
            on_step(step, values)
    return model.eval()


# --- the trainer ----------------------------------------------------------------------------------


def _load_mel_codec(source: str | Path, device: torch.device, flag: str) -> MelCodec:
    """The mel codec in a bundle folder or ``.safetensors`` file (``--init-decoder``,
    ``--init-codec``)."""
    try:
        return MelCodec.from_pretrained(component_file(source, "codec", flag), device=device)
    except CheckpointError as exc:
        raise TrainingError(f"{flag} {source}: not a mel codec ({exc})") from exc


def _adopted_stage1(source: str | Path) -> dict[str, Any]:
    """The stage-1 record of a run whose codec comes from ``--init-codec source``.

    The codebooks are the source's, so when the source is a bundle folder its own stage-1
    record (frames, seconds, ``rel_err`` of the codebook fit) still describes them and is
    carried over, with ``adopted_from`` added; for a bare ``.safetensors`` file only
    ``adopted_from`` is known.
    """
    record: dict[str, Any] = {}
    path = Path(source).expanduser()
    if path.is_dir():
        try:
            earlier = read_bundle(path).training.get("codec") or {}
        except BundleError:
            earlier = {}
        stage1 = earlier.get("stage1")
        if isinstance(stage1, dict):
            record.update({k: v for k, v in stage1.items() if k != "adopted_from"})
    record["adopted_from"] = str(source)
    return record


def checkpoint_dir(out: str | Path) -> CheckpointDir:
    """The checkpoint folder of a mel codec bundle: ``out/checkpoint/mel_codec``."""
    return CheckpointDir(Path(out).joinpath(*CHECKPOINT_SUBDIR), state_version=STATE_VERSION)


def _resolve_config(
    options: MelCodecTrainOptions,
    stored: MelCodecConfig | None,
    adopted: MelCodecConfig | None = None,
) -> MelCodecConfig:
    """The run's config: ``options.config``, else the checkpoint's (``stored``), else the
    ``--init-codec`` codec's (``adopted``), else ``default``; it must match the other two."""
    if options.config is None:
        if stored is not None:
            return stored
        if adopted is not None:
            return adopted
        choice: str | MelCodecConfig = "default"
    else:
        choice = options.config
    if isinstance(choice, MelCodecConfig):
        config = choice
    else:
        try:
            config = named_mel_codec_config(choice)
        except ValueError as exc:
            raise TrainingError(str(exc)) from exc
    require_same_config(
        stored,
        config,
        what="the mel codec checkpoint in the output folder",
        elsewhere="another --bundle",
    )
    if adopted is not None and adopted != config:
        raise TrainingError(
            f"--init-codec {options.init_codec} holds a mel codec of another config than "
            "--config; leave --config out to train that codec's"
        )
    return config


def _check_bundle(out: Path, config: MelCodecConfig) -> None:
    """Refuse, before any training, a bundle the codec cannot be written into: another kind or
    rate, or one that holds another kind of codec (LMs trained on its tokens would break)."""
    if not (out / BUNDLE_FILE).is_file():
        return
    bundle = read_bundle(out)
    if bundle.kind != "audiolm" or bundle.sample_rate != config.sample_rate:
        raise TrainingError(
            f"{out} is a {bundle.kind} bundle at {bundle.sample_rate} Hz; the mel codec goes into "
            f"an audiolm bundle at {config.sample_rate} Hz"
        )
    if CODEC_COMPONENT not in bundle.components:
        return
    kind = component_kind(out, bundle.components[CODEC_COMPONENT])
    if kind != MEL_CODEC_KIND:
        raise TrainingError(
            f"{out} already holds a {kind} codec; its token LMs would not fit a mel codec's "
            "tokens. Train the mel codec into another --bundle"
        )


def train_mel_codec(
    options: MelCodecTrainOptions,
    *,
    on_step: Callable[[MelCodecStepReport], None] | None = None,
    stop: threading.Event | None = None,
) -> MelCodecTrainResult:
    """Fit (stage 1) and train (stage 2) a mel codec, resumably, into the bundle ``options.out``.

    Args:
        options: see :class:`MelCodecTrainOptions`.
        on_step: called after every decoder step with a :class:`MelCodecStepReport` (rank 0).
        stop: when set, training stops after the current step, writes its checkpoint and the
            bundle, and returns with ``completed=False``.

    Raises:
        TrainingError: bad data or options, a checkpoint of another config in ``out``, a bundle
            that already holds another kind of codec.
        ComputeDeviceError: the device asked for is not there.
        BundleError: ``out`` holds a bundle of another kind or sample rate.
    """
    options.check()
    out = Path(options.out).expanduser()
    with distributed_session(options.device, options.threads) as (dinfo, device):
        return _train(options, out, dinfo, device, on_step, stop)


def _train(
    options: MelCodecTrainOptions,
    out: Path,
    dinfo: DistInfo,
    device: torch.device,
    on_step: Callable[[MelCodecStepReport], None] | None,
    stop: threading.Event | None,
) -> MelCodecTrainResult:
    ckpt = checkpoint_dir(out)
    resume = open_checkpoint(out, ckpt, dinfo)
    stored = stored_config(resume, MelCodecConfig.from_dict, ckpt.folder, "mel codec config")
    adopted: MelCodec | None = None
    if resume is None and options.init_codec is not None:
        adopted = _load_mel_codec(options.init_codec, torch.device("cpu"), "--init-codec")
        if not adopted.fitted:
            raise TrainingError(f"--init-codec {options.init_codec}: its codebooks are unfitted")
    config = _resolve_config(options, stored, None if adopted is None else adopted.config)
    if options.nq_choices is not None and max(options.nq_choices) > config.n_q:
        counts = ",".join(map(str, options.nq_choices))
        raise TrainingError(f"--nq-choices {counts}: the codec has {config.n_q} codebooks")
    _check_bundle(out, config)
    config_name = named_config_of(config, NAMED_MEL_CODEC_CONFIGS, resume)
    stored_disc = None if resume is None else resume.get("discriminator")
    disc_choice = options.discriminator
    if disc_choice is None and stored_disc is not None:  # not named: the checkpoint's
        disc_choice = DiscriminatorConfig.from_dict(stored_disc)
    disc_config = resolve_discriminator(
        disc_choice,
        stored_disc,
        resuming=resume is not None,
        what="the mel codec checkpoint in the output folder",
        may_join=True,
    )
    cache_dir = out / WORK_DIR if options.cache else None
    dataset = waveforms_on_ranks(dinfo, options, config.sample_rate, cache_dir, log)
    amp_dtype = training_amp_dtype(device, options.amp, log)

    torch.manual_seed(options.seed)
    model = MelCodec(config).to(device)
    opt = torch.optim.AdamW(
        model.parameters(), lr=options.lr, betas=(0.8, 0.9), weight_decay=options.weight_decay
    )
    modules: dict[str, nn.Module] = {MODULE_NAME: model}
    optimizers: dict[str, torch.optim.Optimizer] = {MODULE_NAME: opt}
    configs: dict[str, Any] = {MODULE_NAME: config}
    state: dict[str, Any] = {
        "history": [],
        "seconds": 0.0,
        "train_loss": None,
        "recent_losses": [],
        "last_val": None,
        "stage1": None,
        "init_decoder": None,
        "init_codec": None,
        "discriminator": None,  # its config once one has joined (weights in the checkpoint)
        "adversarial_from": None,  # the step it joined at
    }
    base_seconds = 0.0

    def snapshot(step: int, seconds: float, recent: deque[float]) -> dict[str, Any]:
        return {
            "step": step,
            "seed": options.seed,
            "rng": "numpy.random.default_rng([seed, rank, step]) draws the crops of each step",
            "config": config.to_dict(),
            "config_name": config_name,
            "train_loss": state["train_loss"],
            "recent_losses": list(recent),
            "last_val": state["last_val"],
            "stage1": state["stage1"],
            "init_decoder": state["init_decoder"],
            "init_codec": state["init_codec"],
            "discriminator": state["discriminator"],
            "adversarial_from": state["adversarial_from"],
            "seconds": seconds,
            "history": state["history"],
            "options": {
                "data": str(options.data),
                "batch": options.batch,
                "segment": options.segment,
                "lr": options.lr,
                "weight_decay": options.weight_decay,
                "nq_dropout": options.nq_dropout,
                "min_n_q": options.min_n_q,
                "nq_choices": None if options.nq_choices is None else list(options.nq_choices),
                "input_noise": options.input_noise,
                "disc_lr": options.disc_lr,
                "adv_weight": options.adv_weight,
                "feat_weight": options.feat_weight,
                "world_size": dinfo.world,
                "device": str(device),
                "amp": str(amp_dtype).removeprefix("torch.") if amp_dtype else None,
            },
            "audiogen_studio": __version__,
        }

    if resume is None and adopted is not None:
        # the adopted codec is stage 1 (and the decoder's start): its tokens stay valid
        if dinfo.main:
            model.load_state_dict(adopted.state_dict())
            state["init_codec"] = str(options.init_codec)
            state["stage1"] = _adopted_stage1(str(options.init_codec))
            log.info("mel codec (codebooks and decoder) adopted from %s", options.init_codec)
            ckpt.save(modules, optimizers, snapshot(0, 0.0, deque()), configs)
        dinfo.barrier()
        resume = ckpt.read_state()
        if resume is None:
            raise TrainingError(f"{ckpt.folder}: the adopted codec's checkpoint was not written")
    elif resume is None:
        # stage 1 on rank 0, checkpointed at step 0; every rank then loads it below
        if dinfo.main:
            began = time.perf_counter()
            mel = collect_log_mel(
                model, dataset.files("train"), max_seconds=options.kmeans_seconds
            ).to(device)
            errors = model.fit_quantizer(mel, iters=options.kmeans_iters, seed=options.seed)
            seconds = time.perf_counter() - began
            state["stage1"] = {
                "frames": int(mel.shape[0]),
                "seconds": round(seconds, 3),
                "rel_err": {k: round(v, 5) for k, v in errors.items()},
            }
            log.info(
                "mel codebooks fitted on %d frames in %.1f s (relative error %.4f with all)",
                mel.shape[0],
                seconds,
                errors[f"rel_err_q{config.n_q}"],
            )
            del mel
            base_seconds = seconds
            ckpt.save(modules, optimizers, snapshot(0, seconds, deque()), configs)
        dinfo.barrier()
        resume = ckpt.read_state()
        if resume is None:
            raise TrainingError(f"{ckpt.folder}: the stage-1 checkpoint was not written")
    ckpt.load(modules, optimizers, device)
    start_step = int(resume["step"])
    state.update({k: resume.get(k, state[k]) for k in state})
    if options.init_decoder is not None and start_step == 0:
        model.adopt_decoder(_load_mel_codec(options.init_decoder, device, "--init-decoder"))
        state["init_decoder"] = str(options.init_decoder)
        if dinfo.main:
            log.info("decoder initialised from %s", options.init_decoder)
    base_seconds = float(state["seconds"])
    if dinfo.main and start_step:
        log.info("resuming mel codec training from step %d of %s", start_step, ckpt.folder)
    disc: MultiScaleSTFTDiscriminator | None = None
    opt_d: torch.optim.Optimizer | None = None
    if disc_config is not None:
        disc = MultiScaleSTFTDiscriminator(disc_config).to(device)
        opt_d = torch.optim.AdamW(
            disc.parameters(), lr=options.disc_lr, betas=(0.8, 0.9), weight_decay=0.01
        )
        if state["discriminator"] is not None:  # trained on in this checkpoint before
            ckpt.load({DISC_NAME: disc}, {DISC_NAME: opt_d}, device)
            for group in opt_d.param_groups:
                group["lr"] = options.disc_lr
        else:
            state["discriminator"] = disc_config.to_dict()
            state["adversarial_from"] = start_step
            if dinfo.main:
                log.info("the discriminator joins at step %d", start_step)
        modules[DISC_NAME] = disc
        optimizers[DISC_NAME] = opt_d
        configs[DISC_NAME] = disc_config.to_dict()

    train_model: nn.Module = model
    train_disc: nn.Module | None = disc
    if dinfo.world > 1:
        from torch.nn.parallel import DistributedDataParallel

        ids = [device.index] if device.type == "cuda" else None
        train_model = DistributedDataParallel(model, device_ids=ids, broadcast_buffers=False)
        if disc is not None:
            train_disc = DistributedDataParallel(disc, device_ids=ids, broadcast_buffers=False)

    recon = ReconstructionLoss(config.sample_rate).to(device)
    stepper = _MelStepper(
        model=model,
        train_model=train_model,
        opt=opt,
        recon=recon,
        weights=(options.stft_weight, options.mel_weight, options.wave_weight),
        grad_clip=options.grad_clip,
        input_noise=options.input_noise,
        device=device,
        amp_dtype=amp_dtype,
        adversary=optional_adversary(
            disc,
            train_disc,
            opt_d,
            grad_clip=options.grad_clip,
            device=device,
            amp_dtype=amp_dtype,
        ),
        adv_weights=(options.adv_weight, options.feat_weight),
    )
    length = _crop_length(config, options.segment)
    val_crops: torch.Tensor | None = None
    val_counts = _validation_counts(config, options.nq_choices)
    if dinfo.main:
        rng = np.random.default_rng([options.seed, 7919])
        split: Literal["train", "valid"] = "valid" if dataset.valid is not None else "train"
        val_crops = dataset.sample(split, rng, options.val_crops, length)

    name = options.name or out.resolve().name
    recent: deque[float] = deque((float(v) for v in state["recent_losses"]), maxlen=50)
    step = start_step
    started = time.perf_counter()
    stopped = False
    sampler: _Sampler = dataset

    def validate_now() -> dict[str, float]:
        assert val_crops is not None
        metrics = _evaluate(model, recon, val_crops, options.batch, device, val_counts)
        state["last_val"] = metrics
        return metrics

    model.train()
    with progress_bar(
        options.progress and dinfo.main, options.steps, start_step, "train mel-codec"
    ) as bar:
        loop_start = time.perf_counter()
        while step < options.steps:
            lr = _learning_rate(options.lr, options.warmup, step)
            for group in opt.param_groups:
                group["lr"] = lr
            rng = np.random.default_rng([options.seed, dinfo.rank, step])
            crops = sampler.sample("train", rng, options.batch, length).to(device)
            n_q = _n_q_per_crop(
                config, options.batch, rng, options.nq_dropout, options.min_n_q, options.nq_choices
            )
            torch.manual_seed(options.seed * 1_000_003 + step)
            values = stepper.step(crops, n_q)
            step += 1
            if not math.isfinite(values["loss"]):
                raise TrainingError(
                    f"the loss became {values['loss']} at step {step}; lower --lr (now {lr})"
                )
            recent.append(values["loss"])
            state["train_loss"] = sum(recent) / len(recent)
            val: dict[str, float] | None = None
            if dinfo.main:
                if options.val_every and step % options.val_every == 0 and step < options.steps:
                    val = validate_now()
                    state["history"].append({"step": step, "loss": state["train_loss"], "val": val})
                    fewer = ", ".join(  # the other codebook counts it validates (mel_q8, ...)
                        f"{k.removeprefix('mel_')} {v:.4f}"
                        for k, v in val.items()
                        if k.startswith("mel_q")
                    )
                    log.info(
                        "mel-codec step %d/%d: train loss %.4f, validation mel L1 %.4f%s",
                        step,
                        options.steps,
                        state["train_loss"],
                        val["mel"],
                        f" ({fewer})" if fewer else "",
                    )
                if options.save_every and step % options.save_every == 0:
                    seconds = base_seconds + time.perf_counter() - started
                    ckpt.save(modules, optimizers, snapshot(step, seconds, recent), configs)
                elapsed = time.perf_counter() - loop_start
                per_step = elapsed / max(step - start_step, 1)
                postfix = {"loss": f"{state['train_loss']:.3f}"}
                if state["last_val"]:
                    postfix["val_mel"] = f"{state['last_val']['mel']:.3f}"
                bar.set_postfix(postfix, refresh=False)
                bar.update(1)
                if on_step is not None:
                    on_step(
                        MelCodecStepReport(
                            step=step,
                            steps=options.steps,
                            loss=values["loss"],
                            mel=values["mel"],
                            stft=values["stft"],
                            lr=lr,
                            val_mel=None if val is None else val["mel"],
                            seconds_per_step=per_step,
                            seconds=base_seconds + time.perf_counter() - started,
                            disc=values.get("disc"),
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
            state["history"].append({"step": step, "loss": state["train_loss"], "val": final})
        else:
            final = dict(state["last_val"])
        ckpt.save(modules, optimizers, snapshot(step, base_seconds + elapsed, recent), configs)
        metrics = {
            "val_mel_l1": finite_or_none(final["mel"]),
            "val_stft": finite_or_none(final["stft"]),
            "train_loss": finite_or_none(state["train_loss"]),
            "n_q": config.n_q,
            "bits_per_second": config.bits_per_second,
            "frame_rate": config.frame_rate,
            "latency_samples": config.latency,
            "parameters": model.num_parameters(),
            "metric_notes": "log10-mel L1 and STFT loss of codec_trainer.ReconstructionLoss on "
            f"{options.val_crops} fixed crops of {length - config.latency} samples with all "
            "codebooks (val_mel_l1_qN: with N)",
        }
        for key, value in final.items():
            if key.startswith("mel_q"):
                metrics[f"val_mel_l1_{key.removeprefix('mel_')}"] = finite_or_none(value)
        if state["stage1"] and "rel_err" in state["stage1"]:
            metrics["kmeans_rel_err"] = state["stage1"]["rel_err"]
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
            "stage1": state["stage1"],
            "init_decoder": state["init_decoder"],
            "init_codec": state["init_codec"],
            "discriminator": state["discriminator"],
            "adversarial_from": state["adversarial_from"],
            "batch": options.batch,
            "segment_samples": length - config.latency,
            "lr": options.lr,
            "nq_dropout": options.nq_dropout,
            "min_n_q": options.min_n_q,
            "nq_choices": None if options.nq_choices is None else list(options.nq_choices),
            "input_noise": options.input_noise,
            "seed": options.seed,
            "audiogen_studio": __version__,
        }
        model.save_pretrained(
            out / WEIGHTS_FILE, extra={"step": step, "kind": MEL_CODEC_KIND, "name": name}
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
            component_kind=MEL_CODEC_KIND,
        )
        if stopped:
            log.info("stopped at step %d of %d", step, options.steps)
    dinfo.barrier()
    return MelCodecTrainResult(
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


def options_dict(options: MelCodecTrainOptions) -> dict[str, Any]:
    """The options as JSON-ready values (for logs and ``--json``)."""
    data = dataclasses.asdict(options)
    for key in ("data", "out"):
        data[key] = str(data[key])
    if isinstance(options.config, MelCodecConfig):
        data["config"] = options.config.to_dict()
    return data
