"""Train the semantic encoder HuBERT-style and fit the k-means tokenizer: ``train semantic``.

HuBERT (Hsu et al. 2021, §2–3), the recipe AudioLM's semantic tokens stand on (Borsos et al.
2022 §3.1, §4 use w2v-BERT; this project trains its own encoder, nothing is downloaded):

1. **Iteration 1** targets: k-means (``first_clusters``, HuBERT: 100) over ``kmeans_seconds``
   of training audio of either 39-dim MFCC frames (13 coefficients + deltas + delta-deltas,
   torchaudio; HuBERT's speech recipe, ``first_targets="mfcc"``) or 80-bin log-mel frames
   (``"logmel"``, the default: MFCCs discard pitch, see ``SemanticConfig.first_targets``).
   The encoder learns masked prediction of those ids: spans of frames are replaced by a
   learned mask embedding and the cross-entropy is taken on the masked frames only (HuBERT's
   α = 1).
2. **Iteration ≥ 2** targets: k-means (``target_clusters``, HuBERT: 500) of the iteration-1
   model's block ``target_layer`` features (normalised per dimension). The targets of a crop are
   computed on the fly by a frozen copy of that model (the *teacher*). Unlike the paper, which
   retrains from scratch, the student goes on from the teacher's weights with a fresh
   prediction head and optimizer (less compute for the same targets on a CPU budget).
3. **Tokenizer**: k-means (``n_clusters``, 500–1024) of block ``feature_layer`` features over
   ``kmeans_seconds`` of training audio →
   :class:`~audiogen_studio.models.semantic.SemanticTokenizer` written to
   ``<bundle>/semantic.safetensors`` and declared as the ``semantic`` component of
   ``<bundle>/bundle.json`` (kind ``audiolm``) with its training facts and metrics.

``steps`` counts optimizer steps over all iterations: iteration 1 gets
``first_iteration_fraction`` of them, later iterations share the rest equally. The learning rate
warms up linearly over 8 % of each iteration (at most ``warmup`` steps) and decays linearly to
10 % at its end (HuBERT's schedule, restarted per iteration); AdamW.

Resumable: ``<bundle>/checkpoint/semantic/`` (:class:`~audiogen_studio.training.common.
CheckpointDir`) holds the encoder, head, targets (centroids + normalisation), teacher and
optimizer, and ``trainer_state.json`` records the iteration and step; the crop, mask and
k-means RNGs are seeded by ``(seed, rank, step)`` / ``(seed, iteration)``, so a resumed run
draws what an uninterrupted one would. Targets are checkpointed as soon as they are fitted.

Devices: ``auto`` = CUDA, MPS, CPU; ``amp`` = bf16 autocast on CUDA. Under ``torchrun`` the
encoder + head are wrapped in ``DistributedDataParallel``; rank 0 fits every k-means and
broadcasts the centroids, validates, writes checkpoints and the bundle.

Metrics: masked-prediction loss/accuracy on fixed validation crops and masks; cluster usage and
perplexity of the final tokens on validation audio; and a purity check on a synthetic riff
(:func:`riff_purity`: tokens → majority note on one rendition, accuracy on another).

:func:`fit_tiny_tokenizer` is the in-memory fast path for tests (no files, no bundle).
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import math
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F  # noqa: N812
import torchaudio
from torch import nn

from audiogen_studio import __version__
from audiogen_studio.audio import synth
from audiogen_studio.engine.bundles import BUNDLE_FILE, BundleError, read_bundle, write_component
from audiogen_studio.models.kmeans import assign, kmeans
from audiogen_studio.models.semantic import (
    NAMED_CONFIGS,
    MaskedPredictionHead,
    MelFrontend,
    SemanticConfig,
    SemanticEncoder,
    SemanticInputError,
    SemanticTokenizer,
    check_audio,
    count_parameters,
    frame_count,
    masked_prediction_loss,
    named_config,
    span_mask,
    token_purity,
    token_usage,
)
from audiogen_studio.training.audio_dataset import AudioSources, TrainingError
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
    prepare_on_ranks,
    progress_bar,
    require_same_config,
    stored_config,
    training_amp_dtype,
)
from audiogen_studio.training.waveform_dataset import Split, WaveformDataset, WaveSplit

log = logging.getLogger(__name__)

COMPONENT = "semantic"
WEIGHTS_FILE = "semantic.safetensors"
CHECKPOINT_SUBDIR = ("checkpoint", "semantic")
WORK_DIR = "work"
STATE_VERSION = 1
MFCC_DIM = 39
TARGET_MELS = 80

__all__ = [
    "SemanticStepReport",
    "SemanticTrainOptions",
    "SemanticTrainResult",
    "TrainingError",
    "fit_tiny_tokenizer",
    "mfcc_frames",
    "options_dict",
    "read_semantic_state",
    "result_dict",
    "riff_labels",
    "riff_purity",
    "tokenizer_from_ssl",
    "train_semantic",
]


# --- options and results --------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class SemanticTrainOptions:
    """What ``audiogen-studio train semantic`` asks for.

    Attributes:
        data: corpus folder, ``*.jsonl`` manifest, folder of audio files or one audio file.
        out: the bundle folder (the tokenizer is added to it; checkpoints in
            ``out/checkpoint/semantic/``).
        config: a name of :data:`~audiogen_studio.models.semantic.NAMED_CONFIGS`, a ``.json``
            path or a config; ``None`` = the checkpoint's when resuming, else ``"default"``.
        n_clusters: tokens of the final tokenizer (``None``: the config's).
        steps: optimizer steps over all iterations (a resumed run goes on up to this number).
        iterations: HuBERT iterations (1: MFCC targets only; 2: then the model's own features).
        first_iteration_fraction: share of ``steps`` spent on iteration 1 when iterations > 1.
        batch: crops per step (per process under ``torchrun``).
        crop_seconds: length of each training crop.
        lr: peak AdamW learning rate.
        weight_decay: AdamW weight decay.
        warmup: at most this many warm-up steps per iteration (else 8 % of the iteration).
        grad_clip: gradient-norm clipping (0 disables).
        kmeans_seconds: seconds of training audio (random crops) each k-means is fitted on.
        kmeans_iters: Lloyd iterations of each k-means.
        device: ``auto``, ``cpu``, ``cuda``, ``cuda:N`` or ``mps``.
        amp: bf16 autocast on CUDA (ignored elsewhere).
        val_every: validate every N steps (0: only at the end).
        save_every: checkpoint every N steps (0: only at iteration ends and the end).
        val_crops: fixed validation crops.
        seed: seeds weights, crops, masks and k-means.
        name: bundle name when the bundle is created (default: the ``out`` folder's name).
        progress: tqdm bar on stderr.
        time_limit: stop after this many seconds (checkpoint, tokenizer and bundle written).
        valid_fraction: tail of each file held out when the data has no valid split.
        cache: keep the decoded audio as memory-mapped arrays in ``out/work``.
        threads: ``torch.set_num_threads`` for this process (``None``: torch's default).
    """

    data: str | Path
    out: str | Path
    config: str | SemanticConfig | None = None
    n_clusters: int | None = None
    steps: int = 20_000
    iterations: int = 2
    first_iteration_fraction: float = 0.4
    batch: int = 8
    crop_seconds: float = 4.0
    lr: float = 5e-4
    weight_decay: float = 0.01
    warmup: int = 1_000
    grad_clip: float = 1.0
    kmeans_seconds: float = 1_200.0
    kmeans_iters: int = 25
    device: str = "auto"
    amp: bool = False
    val_every: int = 500
    save_every: int = 1_000
    val_crops: int = 16
    seed: int = 0
    name: str | None = None
    progress: bool = True
    time_limit: float | None = None
    valid_fraction: float = 0.1
    cache: bool = True
    threads: int | None = None

    def check(self) -> None:
        """Raise :class:`TrainingError` on nonsensical values."""
        check_fields(
            self,
            at_least_one=("steps", "batch", "val_crops", "iterations", "kmeans_iters"),
            zero_or_more=("val_every", "save_every", "warmup"),
        )
        if self.iterations > 4:
            raise TrainingError(f"iterations must be within 1..4, got {self.iterations}")
        if self.n_clusters is not None and self.n_clusters < 2:
            raise TrainingError(f"n_clusters must be at least 2, got {self.n_clusters}")
        if self.iterations > 1 and self.steps < self.iterations:
            raise TrainingError(
                f"steps ({self.steps}) must be at least the number of iterations "
                f"({self.iterations})"
            )
        check_fields(self, positive=("lr", "crop_seconds", "kmeans_seconds"))
        if not 0 < self.first_iteration_fraction < 1:
            raise TrainingError(
                f"first_iteration_fraction must be within (0, 1), got "
                f"{self.first_iteration_fraction}"
            )
        if self.weight_decay < 0 or self.grad_clip < 0:
            raise TrainingError("weight_decay and grad_clip must be 0 or more")
        check_valid_fraction(self.valid_fraction)
        check_fields(self, at_least_one=("threads",))


@dataclass(frozen=True)
class SemanticStepReport:
    """Progress after one optimizer step (given to ``on_step``, rank 0 only).

    ``loss``/``accuracy``: masked-prediction cross-entropy (nats) and accuracy of this step;
    ``val_*`` are set on validation steps; ``frames_per_second`` counts encoder frames of all
    processes.
    """

    step: int
    steps: int
    iteration: int
    iterations: int
    loss: float
    accuracy: float
    val_loss: float | None
    val_accuracy: float | None
    frames_per_second: float
    seconds: float


@dataclass(frozen=True)
class SemanticTrainResult:
    """What a training run did (``metrics`` as written to ``bundle.json``)."""

    bundle: Path
    tokenizer_path: Path | None
    step: int
    start_step: int
    completed: bool
    iteration: int
    train_loss: float | None
    train_accuracy: float | None
    val_loss: float | None
    val_accuracy: float | None
    metrics: dict[str, Any]
    seconds: float
    steps_per_second: float
    device: str
    config: SemanticConfig
    rank: int = 0
    world_size: int = 1


# --- targets --------------------------------------------------------------------------------------


_MFCC_CACHE: dict[tuple[int, int, str], nn.Module] = {}


def _mfcc_transform(rate: int, hop: int, device: torch.device) -> nn.Module:
    key = (rate, hop, str(device))
    module = _MFCC_CACHE.get(key)
    if module is None:
        win = 2 * hop
        module = torchaudio.transforms.MFCC(
            sample_rate=rate,
            n_mfcc=13,
            melkwargs={
                "n_fft": 1 << (win - 1).bit_length(),
                "win_length": win,
                "hop_length": hop,
                "n_mels": 40,
                "center": False,
            },
        ).to(device)
        _MFCC_CACHE[key] = module
    return module


def mfcc_frames(audio: torch.Tensor, sample_rate: int, hop: int) -> torch.Tensor:
    """HuBERT's iteration-1 features: 13 MFCCs + deltas + delta-deltas, ``[B, F, 39]``.

    ``audio [B, T]``; ``F = ceil(T / hop)``, frames aligned exactly as the encoder's (window
    ``2·hop`` in ``n_fft = next_pow2(2·hop)``, centred on ``j·hop + hop/2``; 40 mel bins).
    """
    x = check_audio(audio)
    transform = _mfcc_transform(sample_rate, hop, x.device)
    n_fft = 1 << (2 * hop - 1).bit_length()
    frames = frame_count(x.shape[-1], hop)
    left = n_fft // 2 - hop // 2
    right = n_fft + (frames - 1) * hop - left - x.shape[-1]
    with torch.autocast(device_type=x.device.type, enabled=False):
        mfcc = transform(F.pad(x, (left, right)))  # [B, 13, F]
        d1 = torchaudio.functional.compute_deltas(mfcc)
        d2 = torchaudio.functional.compute_deltas(d1)
    return torch.cat([mfcc, d1, d2], dim=1).transpose(1, 2)  # [B, F, 39]


class _FirstFrames(nn.Module):
    """Iteration-1 target features ``[B, T] → [B, F, dim]`` (log-mel or MFCC, see config)."""

    def __init__(self, config: SemanticConfig) -> None:
        super().__init__()
        self.config = config
        self.mel = MelFrontend(config.sample_rate, config.hop, TARGET_MELS)
        self.dim = MFCC_DIM if config.first_targets == "mfcc" else TARGET_MELS

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        if self.config.first_targets == "mfcc":
            return mfcc_frames(audio, self.config.sample_rate, self.config.hop)
        out: torch.Tensor = self.mel(audio.float())
        return out


def _first_target_frames(config: SemanticConfig, device: torch.device) -> _FirstFrames:
    return _FirstFrames(config).to(device)


class _Targets(nn.Module):
    """One iteration's targets: centroids ``[K, D]``, per-dimension ``mean``/``std`` ``[D]``."""

    centroids: torch.Tensor
    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, k: int, dim: int) -> None:
        super().__init__()
        self.register_buffer("centroids", torch.zeros(k, dim))
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("std", torch.ones(dim))

    def ids(self, feats: torch.Tensor) -> torch.Tensor:
        """Nearest centroid ``[B, F]`` of ``feats [B, F, D]``."""
        return assign((feats.float() - self.mean) / self.std, self.centroids)


def _iteration_ends(steps: int, iterations: int, first_fraction: float) -> list[int]:
    """Cumulative last step of each iteration."""
    if iterations == 1:
        return [steps]
    first = min(max(1, round(steps * first_fraction)), steps - iterations + 1)
    rest = steps - first
    ends = [first]
    for i in range(1, iterations):
        ends.append(first + round(rest * i / (iterations - 1)))
    ends[-1] = steps
    return ends


class _Core:
    """The training state shared by :func:`train_semantic` and :func:`fit_tiny_tokenizer`."""

    def __init__(
        self,
        *,
        config: SemanticConfig,
        dataset: WaveformDataset,
        device: torch.device,
        dinfo: DistInfo,
        seed: int,
        batch: int,
        crop: int,
        lr: float,
        weight_decay: float,
        kmeans_seconds: float,
        kmeans_iters: int,
        amp_dtype: torch.dtype | None,
    ) -> None:
        self.config = config
        self.dataset = dataset
        self.device = device
        self.dinfo = dinfo
        self.seed = seed
        self.batch = batch
        self.crop = crop
        self.lr = lr
        self.weight_decay = weight_decay
        self.kmeans_seconds = kmeans_seconds
        self.kmeans_iters = kmeans_iters
        self.amp_dtype = amp_dtype
        torch.manual_seed(seed)
        self.encoder = SemanticEncoder(config).to(device)
        self.iteration = 1
        self.head = self._new_head(1)
        self.first_frames = _first_target_frames(config, device)
        self.targets = _Targets(config.first_clusters, self.first_frames.dim).to(device)
        self.teacher: SemanticEncoder | None = None
        self.optimizer = self._new_optimizer()
        self.train_model: nn.Module = _Student(self.encoder, self.head)
        self._wrap()

    # --- building blocks ---

    def target_count(self, iteration: int) -> int:
        return self.config.first_clusters if iteration == 1 else self.config.target_clusters

    def _new_head(self, iteration: int) -> MaskedPredictionHead:
        torch.manual_seed(self.seed * 1009 + iteration)
        return MaskedPredictionHead(
            self.config.dim,
            self.target_count(iteration),
            head_dim=self.config.head_dim,
            temperature=self.config.logit_temperature,
        ).to(self.device)

    def _new_optimizer(self) -> torch.optim.Optimizer:
        params = [*self.encoder.parameters(), *self.head.parameters()]
        return torch.optim.AdamW(params, lr=self.lr, weight_decay=self.weight_decay)

    def _wrap(self) -> None:
        self.train_model = _Student(self.encoder, self.head)
        if self.dinfo.world > 1:
            from torch.nn.parallel import DistributedDataParallel

            self.train_model = DistributedDataParallel(
                self.train_model,
                device_ids=[self.device.index] if self.device.type == "cuda" else None,
            )

    def prepare_iteration(self, iteration: int) -> None:
        """Modules of ``iteration`` (fresh head and optimizer; a teacher from iteration 2 on),
        without fitting targets (a resume loads them)."""
        self.iteration = iteration
        self.head = self._new_head(iteration)
        if iteration == 1:
            self.targets = _Targets(self.config.first_clusters, self.first_frames.dim).to(
                self.device
            )
            self.teacher = None
        else:
            self.targets = _Targets(self.config.target_clusters, self.config.dim).to(self.device)
            self.teacher = copy.deepcopy(self.encoder).eval().requires_grad_(False)
        self.optimizer = self._new_optimizer()
        self._wrap()

    def target_features(self, audio: torch.Tensor) -> torch.Tensor:
        """Features the current targets cluster: log-mel/MFCC (iteration 1) or the teacher's."""
        if self.teacher is None:
            frames: torch.Tensor = self.first_frames(audio)
            return frames
        with torch.no_grad(), autocast(self.device, self.amp_dtype):
            return self.teacher.features(audio, self.config.target_layer).float()

    def kmeans_crops(self, tag: int) -> Iterator[torch.Tensor]:
        """Batches ``[b, crop]`` of random training crops, ``kmeans_seconds`` in all."""
        rng = np.random.default_rng([self.seed, 104_729, tag])
        crop_seconds = self.crop / self.config.sample_rate
        total = max(1, math.ceil(self.kmeans_seconds / crop_seconds))
        for start in range(0, total, self.batch):
            n = min(self.batch, total - start)
            yield self.dataset.sample("train", rng, n, self.crop).to(self.device)

    @torch.no_grad()
    def fit_targets(self) -> None:
        """k-means of the current iteration's target features (rank 0; broadcast)."""
        if self.dinfo.main:
            feats = torch.cat(
                [
                    self.target_features(b).reshape(-1, self.targets.mean.shape[0])
                    for b in self.kmeans_crops(self.iteration)
                ]
            )
            mean = feats.mean(0)
            std = feats.std(0).clamp_min(1e-5)
            centroids = kmeans(
                (feats - mean) / std,
                self.target_count(self.iteration),
                iters=self.kmeans_iters,
                seed=self.seed + self.iteration,
            )
            self.targets.centroids.copy_(centroids)
            self.targets.mean.copy_(mean)
            self.targets.std.copy_(std)
        if self.dinfo.world > 1:
            for buf in (self.targets.centroids, self.targets.mean, self.targets.std):
                dist.broadcast(buf, 0)

    def masked_batch(
        self, audio: torch.Tensor, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Targets ``[B, F]`` and a span mask ``[B, F]`` for ``audio [B, T]``."""
        ids = self.targets.ids(self.target_features(audio))
        mask = span_mask(
            ids.shape[0],
            ids.shape[1],
            prob=self.config.mask_prob,
            length=self.config.mask_length,
            generator=generator,
            device=self.device,
        )
        return ids, mask

    def set_lr(self, step: int, start: int, end: int, warmup: int) -> None:
        """Linear warm-up (8 % of the iteration, at most ``warmup`` steps), linear decay to 10 %."""
        length = max(1, end - start)
        warm = max(1, min(warmup, round(0.08 * length)))
        s = step - start
        scale = min(1.0, (s + 1) / warm) * (1.0 - 0.9 * min(1.0, s / length))
        for group in self.optimizer.param_groups:
            group["lr"] = self.lr * scale

    def train_step(self, step: int, grad_clip: float) -> tuple[float, float]:
        """One optimizer step on the crops of ``step``; returns (loss, masked accuracy)."""
        rng = np.random.default_rng([self.seed, self.dinfo.rank, step])
        audio = self.dataset.sample("train", rng, self.batch, self.crop).to(self.device)
        generator = torch.Generator().manual_seed(int(rng.integers(2**62)))
        ids, mask = self.masked_batch(audio, generator)
        self.train_model.train()
        with autocast(self.device, self.amp_dtype):
            logits = self.train_model(audio, mask)
        result = masked_prediction_loss(logits, ids, mask)
        self.optimizer.zero_grad(set_to_none=True)
        result.loss.backward()  # type: ignore[no-untyped-call]
        if grad_clip > 0:
            nn.utils.clip_grad_norm_(
                [*self.encoder.parameters(), *self.head.parameters()], grad_clip
            )
        self.optimizer.step()
        return float(result.loss.detach()), result.accuracy

    @torch.no_grad()
    def validate(self, crops: torch.Tensor) -> tuple[float, float]:
        """Masked-prediction loss and accuracy on fixed crops ``[N, crop]`` and fixed masks."""
        self.encoder.eval()
        self.head.eval()
        generator = torch.Generator().manual_seed(self.seed + 7919)
        total_loss = total_acc = 0.0
        frames = 0
        try:
            for i in range(0, crops.shape[0], self.batch):
                audio = crops[i : i + self.batch].to(self.device)
                ids, mask = self.masked_batch(audio, generator)
                with autocast(self.device, self.amp_dtype):
                    logits = self.head(self.encoder(audio, mask))
                r = masked_prediction_loss(logits, ids, mask)
                total_loss += float(r.loss) * r.masked_frames
                total_acc += r.accuracy * r.masked_frames
                frames += r.masked_frames
        finally:
            self.encoder.train()
            self.head.train()
        return total_loss / max(frames, 1), total_acc / max(frames, 1)

    def fit_tokenizer(self, n_clusters: int) -> SemanticTokenizer:
        """Final k-means over ``feature_layer`` features of fresh random training crops."""
        tokenizer = SemanticTokenizer.fit(
            self.encoder,
            self.kmeans_crops(1000),
            layer=self.config.feature_layer,
            n_clusters=n_clusters,
            seed=self.seed,
            iters=self.kmeans_iters,
        )
        # the tokenizer owns a copy: training (or a later resume) never changes its weights
        tokenizer = copy.deepcopy(tokenizer).eval()
        self.encoder.train()
        return tokenizer


class _Student(nn.Module):
    """Encoder + prediction head: ``(audio [B, T], mask [B, F]) → logits [B, F, K]``."""

    def __init__(self, encoder: SemanticEncoder, head: MaskedPredictionHead) -> None:
        super().__init__()
        self.encoder = encoder
        self.head = head

    def forward(self, audio: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        logits: torch.Tensor = self.head(self.encoder(audio, mask))
        return logits


# --- purity on a synthetic riff -------------------------------------------------------------------


RIFF_NOTES = (220.0, 277.18, 329.63, 440.0, 329.63, 277.18)
RIFF_NOTE_SECONDS = 0.35


def riff_labels(
    length: int,
    hop: int,
    rate: int,
    *,
    notes: tuple[float, ...] = RIFF_NOTES,
    note_seconds: float = RIFF_NOTE_SECONDS,
    repeats: int = 3,
) -> torch.Tensor:
    """Frame labels ``[ceil(length / hop)]`` of :func:`audio.synth.riff`: the pitch class
    (index into the sorted distinct ``notes``) of the note struck last before each frame's
    centre; ``-1`` after the last note's own duration."""
    step = round(note_seconds * rate)
    pitches = sorted(set(notes))
    sequence = [pitches.index(n) for n in list(notes) * repeats]
    centres = np.arange(frame_count(length, hop)) * hop + hop // 2
    idx = centres // step
    labels = np.full(idx.shape[0], -1, dtype=np.int64)
    struck = idx < len(sequence)
    labels[struck] = np.asarray(sequence, dtype=np.int64)[idx[struck]]
    return torch.from_numpy(labels)


def riff_purity(
    tokenizer: SemanticTokenizer, *, fit_seed: int = 0, eval_seed: int = 1
) -> dict[str, Any]:
    """Note purity of ``tokenizer`` on :func:`audio.synth.riff` (four pitches, plucked strings).

    Tokens are mapped to notes by majority on the riff rendered with ``fit_seed``, and purity is
    the accuracy of that map on a rendition with other pluck noise (``eval_seed``) — held out,
    so many tokens cannot buy purity by memorising frames. See
    :func:`audiogen_studio.models.semantic.token_purity`.
    """
    rate = tokenizer.sample_rate
    fit = synth.riff(RIFF_NOTES, RIFF_NOTE_SECONDS, 3, rate, seed=fit_seed).samples[0]
    held = synth.riff(RIFF_NOTES, RIFF_NOTE_SECONDS, 3, rate, seed=eval_seed).samples[0]
    fit_tokens = tokenizer.tokens(np.asarray(fit))[0]
    eval_tokens = tokenizer.tokens(np.asarray(held))[0]
    return token_purity(
        fit_tokens,
        riff_labels(fit.shape[0], tokenizer.hop, rate),
        eval_tokens,
        riff_labels(held.shape[0], tokenizer.hop, rate),
    )


# --- the in-memory fast path ----------------------------------------------------------------------


def _memory_dataset(audio: np.ndarray[Any, Any], rate: int) -> WaveformDataset:
    samples = np.ascontiguousarray(audio, dtype=np.float32)
    segments = np.array([[0, samples.shape[0]]], dtype=np.int64)
    return WaveformDataset(
        sample_rate=rate,
        train=WaveSplit(samples, segments),
        valid=None,
        sources=AudioSources(Path("<memory>"), (), ()),
    )


def fit_tiny_tokenizer(
    audio: np.ndarray[Any, Any] | torch.Tensor,
    rate: int,
    *,
    steps: int = 200,
    seed: int = 0,
    config: str | SemanticConfig = "tiny",
    n_clusters: int | None = None,
    iterations: int = 1,
    batch: int = 8,
    crop_seconds: float = 1.0,
    lr: float = 2e-3,
    kmeans_seconds: float = 60.0,
) -> SemanticTokenizer:
    """Train a small encoder on ``audio`` for ``steps`` steps and fit its tokenizer, in memory.

    For tests (the end-to-end AudioLM test stack): no files, no bundle, CPU, seconds. Audio at
    another rate than the config's is resampled first. With ``iterations`` > 1 the steps are
    split as in :func:`train_semantic` (40 % on MFCC targets).

    Args:
        audio: mono samples ``[T]`` (at least one crop long is best; shorter is zero-padded).
        rate: their sample rate.
        steps: optimizer steps in all.
        seed: seeds everything; the same inputs give the same tokenizer.
        config: a named config or a :class:`SemanticConfig` (``"tiny"``: 32 tokens, 50 Hz).
        n_clusters: tokens (``None``: the config's ``n_clusters``).

    Raises:
        SemanticInputError: empty, non-finite or multi-channel audio.
    """
    x = check_audio(audio)
    if x.shape[0] != 1:
        raise SemanticInputError(f"fit_tiny_tokenizer wants mono [T] audio, got {list(x.shape)}")
    cfg = named_config(config) if isinstance(config, str) else config
    if int(rate) != cfg.sample_rate:
        x = torchaudio.functional.resample(x, int(rate), cfg.sample_rate)
    if steps < 0 or iterations < 1 or (iterations > 1 and steps < iterations):
        raise ValueError(f"steps ({steps}) must be at least iterations ({iterations})")
    with torch.random.fork_rng(devices=[]):  # the caller's global RNG is left alone
        core = _Core(
            config=cfg,
            dataset=_memory_dataset(x[0].numpy(), cfg.sample_rate),
            device=torch.device("cpu"),
            dinfo=DistInfo(1, 0, 0, False),
            seed=seed,
            batch=batch,
            crop=max(cfg.hop, round(crop_seconds * cfg.sample_rate)),
            lr=lr,
            weight_decay=0.0,
            kmeans_seconds=kmeans_seconds,
            kmeans_iters=25,
            amp_dtype=None,
        )
        ends = _iteration_ends(steps, iterations, 0.4) if steps else [0] * iterations
        step = 0
        for iteration, end in enumerate(ends, 1):
            if iteration > 1:
                core.prepare_iteration(iteration)
            if end > step:
                core.fit_targets()
            start = step
            while step < end:
                core.set_lr(step, start, end, warmup=100)
                core.train_step(step, grad_clip=1.0)
                step += 1
        return core.fit_tokenizer(n_clusters or cfg.n_clusters)


# --- train semantic -------------------------------------------------------------------------------


def read_semantic_state(out: str | Path) -> dict[str, Any] | None:
    """``out/checkpoint/semantic/trainer_state.json`` (iteration, step, ...) or ``None``."""
    return CheckpointDir(
        Path(out).joinpath(*CHECKPOINT_SUBDIR), state_version=STATE_VERSION
    ).read_state()


def _resolve_config(options: SemanticTrainOptions, stored: SemanticConfig | None) -> SemanticConfig:
    if options.config is None:
        config = stored if stored is not None else NAMED_CONFIGS["default"]
    elif isinstance(options.config, SemanticConfig):
        config = options.config
    else:
        try:
            config = named_config(options.config)
        except ValueError as exc:
            raise TrainingError(str(exc)) from exc
    if options.n_clusters is not None and options.n_clusters != config.n_clusters:
        config = dataclasses.replace(config, n_clusters=options.n_clusters)
    if stored is not None:
        # n_clusters only affects the final k-means: it may change between runs
        require_same_config(
            dataclasses.replace(stored, n_clusters=config.n_clusters),
            config,
            what="the semantic checkpoint in the bundle",
            elsewhere="another bundle",
        )
    return config


def _prepare_data(
    options: SemanticTrainOptions, rate: int, cache_dir: Path | None, *, write: bool
) -> WaveformDataset:
    bars: list[Any] = []

    def progress(done: int, total: int) -> None:
        if not (options.progress and write):
            return
        if not bars:
            from tqdm import tqdm

            bars.append(
                tqdm(total=total, desc="load audio", unit="file", disable=None, file=sys.stderr)
            )
        bars[0].update(done - bars[0].n)

    try:
        return WaveformDataset.prepare(
            options.data,
            sample_rate=rate,
            cache_dir=cache_dir,
            valid_fraction=options.valid_fraction,
            progress=progress,
            write_cache=write,
        )
    finally:
        for bar in bars:
            bar.close()


def train_semantic(
    options: SemanticTrainOptions,
    *,
    on_step: Callable[[SemanticStepReport], None] | None = None,
    stop: threading.Event | None = None,
) -> SemanticTrainResult:
    """Train (or resume) the semantic encoder and write ``<out>/semantic.safetensors``.

    Args:
        options: see :class:`SemanticTrainOptions`.
        on_step: called after every step with a :class:`SemanticStepReport` (rank 0).
        stop: when set, training stops after the current step, writes its checkpoint, fits
            the tokenizer and updates the bundle, and returns with ``completed=False``.

    Raises:
        TrainingError: bad data or options, a checkpoint of another config in ``out``.
        ComputeDeviceError: the device asked for is not there.
        BundleError: ``out/bundle.json`` is another kind of bundle or at another rate.
    """
    options.check()
    out = Path(options.out).expanduser()
    with distributed_session(options.device, options.threads) as (dinfo, device):
        return _train(options, out, dinfo, device, on_step, stop)


def _train(
    options: SemanticTrainOptions,
    out: Path,
    dinfo: DistInfo,
    device: torch.device,
    on_step: Callable[[SemanticStepReport], None] | None,
    stop: threading.Event | None,
) -> SemanticTrainResult:
    ckpt = CheckpointDir(out.joinpath(*CHECKPOINT_SUBDIR), state_version=STATE_VERSION)
    resume = open_checkpoint(out, ckpt, dinfo)
    stored = stored_config(resume, SemanticConfig.from_dict, ckpt.folder)
    config = _resolve_config(options, stored)
    _check_bundle(out, config)
    config_name = named_config_of(config, NAMED_CONFIGS, resume)

    cache_dir = out / WORK_DIR if options.cache else None
    dataset = prepare_on_ranks(
        dinfo,
        lambda write: _prepare_data(options, config.sample_rate, cache_dir, write=write),
        log,
        "no validation audio: validation metrics use training crops",
    )
    amp_dtype = training_amp_dtype(device, options.amp, log)
    crop = max(config.hop, round(options.crop_seconds * config.sample_rate))
    core = _Core(
        config=config,
        dataset=dataset,
        device=device,
        dinfo=dinfo,
        seed=options.seed,
        batch=options.batch,
        crop=crop,
        lr=options.lr,
        weight_decay=options.weight_decay,
        kmeans_seconds=options.kmeans_seconds,
        kmeans_iters=options.kmeans_iters,
        amp_dtype=amp_dtype,
    )
    ends = _iteration_ends(options.steps, options.iterations, options.first_iteration_fraction)
    state: dict[str, Any] = {
        "history": [],
        "seconds": 0.0,
        "train_loss": None,
        "train_accuracy": None,
        "last_val_loss": None,
        "last_val_accuracy": None,
        "recent": [],
        "targets_ready": False,
        "iteration_start": 0,
    }
    start_step = 0
    if resume is not None:
        iteration = int(resume["iteration"])
        if iteration > options.iterations:
            raise TrainingError(
                f"{ckpt.folder}: the checkpoint is in HuBERT iteration {iteration}; resume with "
                f"iterations >= {iteration}, or train into another bundle"
            )
        if iteration > 1:
            core.prepare_iteration(iteration)
        modules = _checkpoint_modules(core)
        ckpt.load(modules, {"optimizer": core.optimizer}, device)
        start_step = int(resume["step"])
        state.update({k: resume.get(k, state[k]) for k in state})
        if dinfo.main:
            log.info("resuming semantic training: iteration %d, step %d", iteration, start_step)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True

    val_source: Split = "valid" if dataset.valid is not None else "train"
    val_crops = dataset.sample(
        val_source, np.random.default_rng([options.seed, 7919]), options.val_crops, crop
    )
    step = start_step
    started = time.perf_counter()
    base_seconds = float(state["seconds"])
    recent: deque[tuple[float, float]] = deque(
        ((float(v[0]), float(v[1])) for v in state["recent"]), maxlen=20
    )

    def snapshot() -> dict[str, Any]:
        return {
            "step": step,
            "iteration": core.iteration,
            "iterations": options.iterations,
            "iteration_ends": ends,
            "iteration_start": state["iteration_start"],
            "targets_ready": state["targets_ready"],
            "head_targets": core.target_count(core.iteration),
            "seed": options.seed,
            "rng": "numpy.random.default_rng([seed, rank, step]) draws crops and mask seed",
            "config": config.to_dict(),
            "config_name": config_name,
            "train_loss": state["train_loss"],
            "train_accuracy": state["train_accuracy"],
            "recent": [list(r) for r in recent],
            "last_val_loss": state["last_val_loss"],
            "last_val_accuracy": state["last_val_accuracy"],
            "seconds": base_seconds + time.perf_counter() - started,
            "history": state["history"],
            "options": {
                "data": str(options.data),
                "batch": options.batch,
                "crop_seconds": options.crop_seconds,
                "lr": options.lr,
                "world_size": dinfo.world,
                "device": str(device),
                "amp": str(amp_dtype).removeprefix("torch.") if amp_dtype else None,
            },
            "audiogen_studio": __version__,
        }

    def save() -> None:
        if dinfo.main:
            ckpt.save(
                _checkpoint_modules(core),
                {"optimizer": core.optimizer},
                snapshot(),
                _checkpoint_configs(core),
            )

    def validate_now() -> tuple[float, float]:
        loss, acc = core.validate(val_crops)
        state["last_val_loss"], state["last_val_accuracy"] = loss, acc
        return loss, acc

    frames_per_step = options.batch * frame_count(crop, config.hop) * dinfo.world
    stopped = False
    with progress_bar(
        options.progress and dinfo.main, options.steps, start_step, "train semantic"
    ) as bar:
        loop_start = time.perf_counter()
        while step < options.steps:
            # advance to the iteration this step belongs to, fitting its targets once
            while core.iteration < len(ends) and step >= ends[core.iteration - 1]:
                core.prepare_iteration(core.iteration + 1)
                state["targets_ready"] = False
                state["iteration_start"] = step
            if not state["targets_ready"]:
                if dinfo.main:
                    bar.set_description(f"k-means targets {core.iteration}")
                core.fit_targets()
                state["targets_ready"] = True
                save()
                if dinfo.main:
                    bar.set_description(f"train semantic {core.iteration}/{options.iterations}")
            end = ends[core.iteration - 1]
            core.set_lr(step, int(state["iteration_start"]), end, options.warmup)
            loss, acc = core.train_step(step, options.grad_clip)
            step += 1
            if not math.isfinite(loss):
                raise TrainingError(
                    f"the loss became {loss} at step {step}; lower --lr (now {options.lr})"
                )
            recent.append((loss, acc))
            state["train_loss"] = sum(r[0] for r in recent) / len(recent)
            state["train_accuracy"] = sum(r[1] for r in recent) / len(recent)
            rate = (
                (step - start_step) * frames_per_step / max(time.perf_counter() - loop_start, 1e-9)
            )
            val_loss = val_acc = None
            if dinfo.main:
                boundary = step == end and step < options.steps
                if (options.val_every and step % options.val_every == 0) or boundary:
                    val_loss, val_acc = validate_now()
                    log.info(
                        "semantic step %d/%d (iteration %d): train loss %.4f, validation %s",
                        step,
                        options.steps,
                        core.iteration,
                        state["train_loss"],
                        "-" if val_loss is None else f"{val_loss:.4f}",
                    )
                    state["history"].append(
                        {
                            "step": step,
                            "iteration": core.iteration,
                            "loss": state["train_loss"],
                            "accuracy": state["train_accuracy"],
                            "val_loss": val_loss,
                            "val_accuracy": val_acc,
                        }
                    )
                bar.set_postfix(
                    {
                        "it": core.iteration,
                        "loss": f"{state['train_loss']:.3f}",
                        "acc": f"{state['train_accuracy']:.2f}",
                        "frames/s": f"{rate:,.0f}",
                    },
                    refresh=False,
                )
                bar.update(1)
                if on_step is not None:
                    on_step(
                        SemanticStepReport(
                            step=step,
                            steps=options.steps,
                            iteration=core.iteration,
                            iterations=options.iterations,
                            loss=loss,
                            accuracy=acc,
                            val_loss=val_loss,
                            val_accuracy=val_acc,
                            frames_per_second=rate,
                            seconds=base_seconds + time.perf_counter() - started,
                        )
                    )
            if options.save_every and step % options.save_every == 0:
                save()
            want_stop = (stop is not None and stop.is_set()) or (
                options.time_limit is not None
                and time.perf_counter() - started >= options.time_limit
            )
            if (stop is not None or options.time_limit is not None) and dinfo.any_flag(
                want_stop, device
            ):
                stopped = step < options.steps
                break
    completed = step >= options.steps and not stopped
    elapsed = time.perf_counter() - started
    steps_per_second = (step - start_step) / max(elapsed, 1e-9)

    tokenizer_path: Path | None = None
    metrics: dict[str, Any] = {}
    final_val: tuple[float | None, float | None] = (
        state["last_val_loss"],
        state["last_val_accuracy"],
    )
    if dinfo.main:
        last = state["history"][-1] if state["history"] else None
        if last is not None and last["step"] == step:  # validated at this very step
            final_val = (last["val_loss"], last["val_accuracy"])
        elif step > start_step or final_val[0] is None:
            final_val = validate_now()
            if step > start_step:
                state["history"].append(
                    {
                        "step": step,
                        "iteration": core.iteration,
                        "loss": state["train_loss"],
                        "accuracy": state["train_accuracy"],
                        "val_loss": final_val[0],
                        "val_accuracy": final_val[1],
                    }
                )
        if state["targets_ready"]:
            save()
        tokenizer = core.fit_tokenizer(config.n_clusters)
        metrics = _final_metrics(tokenizer, dataset, options, final_val, core)
        training = {
            "data": str(options.data),
            "steps": step,
            "completed": completed,
            "iterations": options.iterations,
            "iteration": core.iteration,
            "iteration_ends": ends,
            "hours": round(dataset.train_hours, 6),
            "valid_hours": round(dataset.valid_hours, 6),
            "files_skipped": len(dataset.skipped),
            "targets": (
                f"iteration 1: k-means({config.first_clusters}) of {config.first_targets} "
                "frames; later: "
                f"k-means({config.target_clusters}) of block {config.target_layer} features"
            ),
            "tokens": f"k-means({config.n_clusters}) of block {config.feature_layer} features",
            "device": str(device),
            "world_size": dinfo.world,
            "amp": str(amp_dtype).removeprefix("torch.") if amp_dtype else None,
            "time_seconds": round(base_seconds + elapsed, 3),
            "config_name": config_name,
            "batch": options.batch,
            "crop_seconds": options.crop_seconds,
            "lr": options.lr,
            "seed": options.seed,
            "audiogen_studio": __version__,
        }
        tokenizer_path = out / WEIGHTS_FILE
        tokenizer.save(tokenizer_path, extra={"step": step, "config_name": config_name})
        write_component(
            out,
            COMPONENT,
            file=WEIGHTS_FILE,
            config=tokenizer.config.to_dict(),
            kind="audiolm",
            sample_rate=config.sample_rate,
            training=training,
            metrics=metrics,
            name=options.name,
        )
        if stopped:
            log.info("stopped at step %d of %d", step, options.steps)
    dinfo.barrier()
    return SemanticTrainResult(
        bundle=out,
        tokenizer_path=tokenizer_path,
        step=step,
        start_step=start_step,
        completed=completed,
        iteration=core.iteration,
        train_loss=finite_or_none(state["train_loss"]),
        train_accuracy=finite_or_none(state["train_accuracy"]),
        val_loss=finite_or_none(final_val[0]),
        val_accuracy=finite_or_none(final_val[1]),
        metrics=metrics,
        seconds=base_seconds + elapsed,
        steps_per_second=steps_per_second,
        device=str(device),
        config=config,
        rank=dinfo.rank,
        world_size=dinfo.world,
    )


def tokenizer_from_ssl(
    weights: str | Path,
    data: str | Path,
    out: str | Path,
    *,
    arch: str | None = None,
    layer: int = 6,
    n_clusters: int = 500,
    kmeans_seconds: float = 1_200.0,
    crop_seconds: float = 4.0,
    seed: int = 0,
    device: str = "auto",
    name: str | None = None,
    cache: bool = True,
) -> Path:
    """The ``semantic`` component of bundle ``out`` from a user's local HuBERT / wav2vec 2.0.

    Loads ``weights`` (safetensors, see :mod:`audiogen_studio.models.ssl_adapter`), fits
    k-means (``n_clusters``) on layer ``layer`` over ``kmeans_seconds`` of random crops of
    ``data``, writes ``out/semantic.safetensors`` and declares it in ``out/bundle.json`` exactly
    as :func:`train_semantic` does, so the pipeline cannot tell the two apart.

    Returns:
        The tokenizer file.

    Raises:
        SSLWeightsError: unusable weights; TrainingError: bad data or a layer the model lacks;
        BundleError: another kind of bundle in ``out``.
    """
    from audiogen_studio.models.device import resolve_device
    from audiogen_studio.models.ssl_adapter import describe, load_ssl_encoder
    from audiogen_studio.training.encoder_tokenizer import fit_encoder_tokenizer

    encoder = load_ssl_encoder(weights, arch=arch, device=resolve_device(device))
    return fit_encoder_tokenizer(
        encoder,
        data,
        out,
        layer=layer,
        n_clusters=n_clusters,
        kmeans_seconds=kmeans_seconds,
        crop_seconds=crop_seconds,
        seed=seed,
        name=name,
        cache=cache,
        source=f"user SSL weights {Path(weights).name} ({describe(encoder.config)})",
        extra={"weights": str(weights)},
    )


def _check_bundle(out: Path, config: SemanticConfig) -> None:
    """Fail before training when ``out`` holds a bundle this tokenizer cannot join."""
    if not (out / BUNDLE_FILE).is_file():
        return
    info = read_bundle(out)
    info.require_kind("audiolm")
    if info.sample_rate != config.sample_rate:
        raise BundleError(
            f"{out}: the bundle is at {info.sample_rate} Hz, this semantic encoder at "
            f"{config.sample_rate} Hz"
        )


def result_dict(result: SemanticTrainResult) -> dict[str, Any]:
    """The result as JSON-ready values (for ``--json``)."""
    data = dataclasses.asdict(result)
    data["bundle"] = str(result.bundle)
    data["tokenizer_path"] = None if result.tokenizer_path is None else str(result.tokenizer_path)
    data["config"] = result.config.to_dict()
    return data


def _checkpoint_modules(core: _Core) -> dict[str, nn.Module]:
    modules: dict[str, nn.Module] = {
        "encoder": core.encoder,
        "head": core.head,
        "targets": core.targets,
    }
    if core.teacher is not None:
        modules["teacher"] = core.teacher
    return modules


def _checkpoint_configs(core: _Core) -> dict[str, Any]:
    configs: dict[str, Any] = {
        "encoder": core.config,
        "head": {
            "dim": core.config.dim,
            "n_targets": core.head.n_targets,
            "head_dim": core.config.head_dim,
            "temperature": core.config.logit_temperature,
        },
        "targets": {
            "iteration": core.iteration,
            "k": int(core.targets.centroids.shape[0]),
            "dim": int(core.targets.centroids.shape[1]),
            "source": (
                core.config.first_targets
                if core.iteration == 1
                else f"block {core.config.target_layer}"
            ),
        },
    }
    if core.teacher is not None:
        configs["teacher"] = core.config
    return configs


def _final_metrics(
    tokenizer: SemanticTokenizer,
    dataset: WaveformDataset,
    options: SemanticTrainOptions,
    final_val: tuple[float | None, float | None],
    core: _Core,
) -> dict[str, Any]:
    split: Split = "valid" if dataset.valid is not None else "train"
    rng = np.random.default_rng([options.seed, 31337])
    crops = dataset.sample(split, rng, max(options.val_crops, 8), core.crop)
    tokens = torch.cat(
        [
            tokenizer.tokens(crops[i : i + options.batch])
            for i in range(0, crops.shape[0], options.batch)
        ]
    )
    usage = token_usage(tokens, tokenizer.n_tokens)
    purity = riff_purity(tokenizer)
    return {
        "masked_loss": finite_or_none(final_val[0]),
        "masked_accuracy": finite_or_none(final_val[1]),
        "masked_metrics_on": split,
        "masked_targets": core.target_count(core.iteration),
        "token_usage": round(usage["used_fraction"], 4),
        "token_perplexity": round(usage["perplexity"], 2),
        "tokens_measured_on": split,
        "riff_purity": round(float(purity["purity"]), 4),
        "riff_purity_per_note": {str(k): round(v, 4) for k, v in purity["per_label"].items()},
        "n_tokens": tokenizer.n_tokens,
        "token_rate": tokenizer.token_rate,
        "parameters": count_parameters(tokenizer.encoder),
    }


def options_dict(options: SemanticTrainOptions) -> dict[str, Any]:
    """The options as JSON-ready values (for logs and ``--json``)."""
    data = dataclasses.asdict(options)
    for key in ("data", "out"):
        data[key] = str(data[key])
    if isinstance(options.config, SemanticConfig):
        data["config"] = options.config.to_dict()
    return data
