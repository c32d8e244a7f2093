"""Train a WaveNet into a model bundle, resumably, on CPU, CUDA or MPS, and under ``torchrun``.

``train_wavenet(TrainOptions(data=..., out=BUNDLE, ...))``:

- data: :class:`~audiogen_studio.training.audio_dataset.AudioDataset` (corpus folder, manifest,
  folder or file), cached as memory-mapped ``.npy`` arrays in ``BUNDLE/work/``;
- each step: ``batch`` random crops of ``receptive_field - 1 + crop`` targets (the crop RNG of
  step ``s`` on rank ``r`` is ``numpy.random.default_rng([seed, r, s])``, so a resumed run draws
  exactly the crops an uninterrupted one would), μ-law targets, cross-entropy over the
  positions that see a full receptive field, Adam, gradient-norm clipping;
- validation loss on fixed crops of the valid split every ``val_every`` steps;
- ``BUNDLE/checkpoint/`` every ``save_every`` steps and at the end: ``model.safetensors``,
  ``optimizer.safetensors`` (the optimizer's tensors; its scalars and structure as JSON in the
  file's metadata) and ``trainer_state.json`` (step, seed, losses, history, elapsed time); the
  folder is replaced atomically. Re-running with the same ``out`` continues from its step;
- at the end (or when stopped early through ``stop``/``time_limit``) the bundle itself:
  ``BUNDLE/bundle.json`` (format 1, kind ``wavenet`` or ``wavenet-vocoder``) and
  ``BUNDLE/wavenet.safetensors``.

Devices: ``auto`` = CUDA, MPS, CPU. ``amp`` uses bf16 autocast (fp16 + GradScaler where the GPU
has no bf16) on CUDA only. Under ``torchrun`` (``WORLD_SIZE`` > 1) the model is wrapped in
``DistributedDataParallel`` (NCCL on CUDA, Gloo on CPU); each rank draws its own crops, and only
rank 0 validates, writes checkpoints, the bundle and progress.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

from audiogen_studio import __version__
from audiogen_studio.engine.bundles import BUNDLE_FILE, BUNDLE_FORMAT
from audiogen_studio.models.checkpoint import (
    CheckpointError,
    save_module,
)
from audiogen_studio.models.wavenet import (
    NAMED_CONFIGS,
    WaveNet,
    WaveNetConfig,
    count_parameters,
    named_config,
)
from audiogen_studio.training.audio_dataset import AudioDataset, Batch, TrainingError
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
    prepare_on_ranks,
    progress_bar,
    require_same_config,
    stored_config,
    training_amp_dtype,
    write_json,
)

log = logging.getLogger(__name__)

CHECKPOINT_DIR = "checkpoint"
WORK_DIR = "work"
WEIGHTS_FILE = "wavenet.safetensors"
STATE_FILE = "trainer_state.json"
STATE_VERSION = 1

__all__ = [
    "StepReport",
    "TrainOptions",
    "TrainResult",
    "TrainingError",
    "read_trainer_state",
    "train_wavenet",
]


@dataclass(frozen=True, kw_only=True)
class TrainOptions:
    """What ``audiogen-studio train wavenet`` asks for.

    Attributes:
        data: corpus folder, ``*.jsonl`` manifest, folder of audio files or one audio file.
        out: the bundle folder to write (and to resume from).
        config: a name of :data:`~audiogen_studio.models.wavenet.NAMED_CONFIGS`, a ``.json``
            path, or a config; ``None`` = the checkpoint's when resuming, else ``"default"``.
        mel: train the mel-conditioned variant (a vocoder).
        steps: total optimizer steps (a resumed run goes on up to this number).
        batch: crops per step (per process under ``torchrun``).
        crop: targets per crop that get a loss, besides the receptive field's context.
        lr: Adam learning rate.
        device: ``auto``, ``cpu``, ``cuda``, ``cuda:N`` or ``mps``.
        amp: mixed precision on CUDA (ignored, with a warning, elsewhere).
        val_every: validate every N steps (0: only at the end).
        save_every: checkpoint every N steps (0: only at the end).
        seed: seeds the initial weights and every crop.
        val_crops: fixed validation crops.
        grad_clip: gradient-norm clipping (0 disables).
        name: bundle name (default: the ``out`` folder's name).
        progress: tqdm bar on stderr.
        time_limit: stop (checkpoint and bundle written) after this many seconds.
        valid_fraction: tail of each file held out when the data has no valid split.
        cache: keep the decoded audio as memory-mapped arrays in ``out/work``.
        threads: torch intra-op CPU threads for this process (``torch.set_num_threads``);
            ``None`` keeps torch's default. One thread is best for small models and whenever
            other processes share the cores (spinning OpenMP threads then lose 3-15x).
        init_from: fine-tune: a WaveNet bundle folder (or its ``wavenet.safetensors``) whose
            config and weights start a *new* run, e.g. a shipped default on the user's own
            audio (``config`` must then be unset or the same; ``mel`` needs a vocoder). A
            resumed run ignores it (the checkpoint wins).
    """

    data: str | Path
    out: str | Path
    config: str | WaveNetConfig | None = None
    mel: bool = False
    steps: int = 20_000
    batch: int = 8
    crop: int = 4_000
    lr: float = 1e-3
    device: str = "auto"
    amp: bool = False
    val_every: int = 500
    save_every: int = 1_000
    seed: int = 0
    val_crops: int = 16
    grad_clip: float = 1.0
    name: str | None = None
    progress: bool = True
    time_limit: float | None = None
    valid_fraction: float = 0.1
    cache: bool = True
    threads: int | None = None
    init_from: str | Path | None = None

    def check(self) -> None:
        """Raise :class:`TrainingError` on nonsensical values."""
        check_fields(
            self,
            at_least_one=("steps", "batch", "crop", "val_crops", "threads"),
            zero_or_more=("val_every", "save_every"),
            positive=("lr",),
        )
        check_valid_fraction(self.valid_fraction)


@dataclass(frozen=True)
class StepReport:
    """Progress after one optimizer step (given to ``on_step``).

    ``samples_per_second`` counts the targets that got a loss, over all processes.
    """

    step: int
    steps: int
    loss: float
    val_loss: float | None
    samples_per_second: float
    seconds: float


@dataclass(frozen=True)
class TrainResult:
    """What a training run did."""

    bundle: Path
    step: int
    start_step: int
    completed: bool
    train_loss: float | None
    val_loss: float | None
    best_val_loss: float | None
    seconds: float
    samples_per_second: float
    device: str
    config: WaveNetConfig
    rank: int = 0
    world_size: int = 1


# --- small helpers ------------------------------------------------------------------------------


_write_json = write_json
_finite_or_none = finite_or_none


def _initial_wavenet(source: str | Path) -> WaveNet:
    """The WaveNet (config and weights) in a bundle folder or ``.safetensors`` file
    (``--init-from``)."""
    try:
        return WaveNet.from_pretrained(component_file(source, "wavenet", "--init-from"))
    except CheckpointError as exc:
        raise TrainingError(f"--init-from {source}: not a WaveNet ({exc})") from exc


def _resolve_config(
    options: TrainOptions, stored: WaveNetConfig | None, initial: WaveNetConfig | None = None
) -> WaveNetConfig:
    """The run's config: the checkpoint's when resuming, else ``--init-from``'s, else
    ``options.config`` (``default``); an asked config must match either."""
    if stored is None and initial is not None:
        if options.mel and initial.mel_channels == 0:
            raise TrainingError(
                f"--init-from {options.init_from} is not mel-conditioned; drop --mel"
            )
        if options.config is not None:
            asked = _resolve_config(dataclasses.replace(options, init_from=None), None)
            if asked != initial:
                raise TrainingError(
                    f"--init-from {options.init_from} holds another WaveNet config than "
                    "--config asks for; drop --config to fine-tune it as it is"
                )
        return initial
    if options.config is None:
        if stored is not None:
            if options.mel and stored.mel_channels == 0:
                raise TrainingError(
                    "the checkpoint in the output folder is not mel-conditioned; drop --mel or "
                    "use another --out"
                )
            return stored
        name: str | WaveNetConfig = "default"
    else:
        name = options.config
    if isinstance(name, WaveNetConfig):
        config = name.with_mel(80) if options.mel and name.mel_channels == 0 else name
    else:
        try:
            config = named_config(name, mel=options.mel)
        except ValueError as exc:
            raise TrainingError(str(exc)) from exc
    if config.global_conditioning:
        raise TrainingError("this trainer does not train globally conditioned WaveNets")
    require_same_config(
        stored, config, what="the checkpoint in the output folder", elsewhere="another --out"
    )
    return config


def _checkpoints(out: Path) -> CheckpointDir:
    return CheckpointDir(out / CHECKPOINT_DIR, state_version=STATE_VERSION)


def read_trainer_state(out: str | Path) -> dict[str, Any] | None:
    """``out/checkpoint/trainer_state.json`` (or, mid-swap, the previous one), or ``None``.

    Read-only: safe to call while a training run writes checkpoints.
    """
    return _checkpoints(Path(out)).read_state()


def _save_checkpoint(
    out: Path, model: WaveNet, optimizer: torch.optim.Optimizer, state: dict[str, Any]
) -> None:
    _checkpoints(out).save(
        {"model": model}, {"optimizer": optimizer}, state, {"model": model.config}
    )


_autocast = autocast


def _loss(model: nn.Module, batch: Batch, context: int) -> torch.Tensor:
    logits = model(batch.inputs, batch.mel, output_from=context)  # [B, classes, T - context]
    return F.cross_entropy(logits.float(), batch.targets[:, context:])


@torch.no_grad()
def _validate(
    model: WaveNet,
    dataset: AudioDataset,
    starts: np.ndarray[Any, Any],
    batch: int,
    device: torch.device,
    amp_dtype: torch.dtype | None,
) -> float:
    was_training = model.training
    model.eval()
    total = 0.0
    count = 0
    try:
        for i in range(0, len(starts), batch):
            chunk = starts[i : i + batch]
            b = dataset.batch("valid", chunk).to(device)
            with _autocast(device, amp_dtype):
                loss = _loss(model, b, model.config.receptive_field - 1)
            total += float(loss) * len(chunk)
            count += len(chunk)
    finally:
        model.train(was_training)
    return total / max(count, 1)


# --- the bundle -----------------------------------------------------------------------------------


def _write_bundle(
    out: Path,
    model: WaveNet,
    name: str,
    config_name: str,
    training: dict[str, Any],
    metrics: dict[str, Any],
) -> None:
    cfg = model.config
    kind = "wavenet-vocoder" if cfg.mel_channels else "wavenet"
    save_module(
        model,
        out / WEIGHTS_FILE,
        cfg,
        extra={"step": training["steps"], "kind": kind, "name": name},
    )
    what = "mel-conditioned WaveNet vocoder" if cfg.mel_channels else "unconditional WaveNet"
    bundle = {
        "format": BUNDLE_FORMAT,
        "name": name,
        "version": "1.0.0",
        "kind": kind,
        "sample_rate": cfg.sample_rate,
        "description": (
            f"{what} ({config_name}: {cfg.layers} layers, {cfg.stacks} stacks, "
            f"{cfg.residual_channels}/{cfg.gate_channels}/{cfg.skip_channels} channels, "
            f"receptive field {cfg.receptive_field} samples) trained with "
            f"'audiogen-studio train wavenet' for {training['steps']} steps"
        ),
        "components": {"wavenet": {"file": WEIGHTS_FILE, "config": cfg.to_dict()}},
        "training": training,
        "metrics": metrics,
    }
    _write_json(out / BUNDLE_FILE, bundle)


# --- the loop -------------------------------------------------------------------------------------


def train_wavenet(
    options: TrainOptions,
    *,
    on_step: Callable[[StepReport], None] | None = None,
    stop: threading.Event | None = None,
) -> TrainResult:
    """Train (or resume training) a WaveNet and write the bundle ``options.out``.

    Args:
        options: see :class:`TrainOptions`.
        on_step: called after every step with a :class:`StepReport` (rank 0 only).
        stop: when set, training stops after the current step, writes its checkpoint and the
            bundle, and returns with ``completed=False``.

    Raises:
        TrainingError: bad data or options, a checkpoint of another config in ``out``.
        ComputeDeviceError: the device asked for is not there.
    """
    options.check()
    out = Path(options.out).expanduser()
    with distributed_session(options.device, options.threads) as (dinfo, device):
        return _train(options, out, dinfo, device, on_step, stop)


def _train(
    options: TrainOptions,
    out: Path,
    dinfo: DistInfo,
    device: torch.device,
    on_step: Callable[[StepReport], None] | None,
    stop: threading.Event | None,
) -> TrainResult:
    ckpt = _checkpoints(out)
    resume = open_checkpoint(out, ckpt, dinfo)
    stored = stored_config(resume, WaveNetConfig.from_dict, ckpt.folder)
    initial = (
        _initial_wavenet(options.init_from)
        if resume is None and options.init_from is not None
        else None
    )
    if resume is not None and options.init_from is not None and dinfo.main:
        log.info("resuming from %s: --init-from is ignored", ckpt.folder)
    config = _resolve_config(options, stored, None if initial is None else initial.config)
    config_name = named_config_of(config, NAMED_CONFIGS, resume)

    # data: rank 0 decodes and writes the cache, the others read it
    cache_dir = out / WORK_DIR if options.cache else None
    dataset = prepare_on_ranks(
        dinfo,
        lambda write: _prepare_data(options, config, cache_dir, write=write),
        log,
        "no validation audio: validation loss is not computed",
    )
    amp_dtype = training_amp_dtype(device, options.amp, log)
    scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16)

    torch.manual_seed(options.seed)
    model = WaveNet(config)
    init_from = None  # what this run started from (a resumed run: the checkpoint says)
    if initial is not None:
        model.load_state_dict(initial.state_dict())  # copies (float16 weights upcast) into fp32
        init_from = str(options.init_from)
        del initial
    model = model.to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=options.lr)
    start_step = 0
    state: dict[str, Any] = {
        "init_from": init_from,
        "history": [],
        "seconds": 0.0,
        "best_val_loss": None,
        "last_val_loss": None,
        "train_loss": None,
        "recent_losses": [],
    }
    if resume is not None:
        ckpt.load({"model": model}, {"optimizer": optimizer}, device)
        for group in optimizer.param_groups:
            group["lr"] = options.lr
        start_step = int(resume["step"])
        state.update({k: resume.get(k, state[k]) for k in state})
        if dinfo.main:
            log.info("resuming from step %d of %s", start_step, ckpt.folder)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True

    train_model: nn.Module = model
    if dinfo.world > 1:
        from torch.nn.parallel import DistributedDataParallel

        train_model = DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )

    context = config.receptive_field - 1
    window = dataset.window
    targets_per_step = options.batch * (window - context) * dinfo.world
    val_starts = (
        dataset.random_starts(
            "valid", np.random.default_rng([options.seed, 7919]), options.val_crops
        )
        if dataset.valid is not None and dinfo.main
        else None
    )
    name = options.name or out.resolve().name
    recent: deque[float] = deque((float(v) for v in state["recent_losses"]), maxlen=20)
    step = start_step
    started = time.perf_counter()
    base_seconds = float(state["seconds"])
    completed = step >= options.steps
    stopped = False

    def snapshot() -> dict[str, Any]:
        return {
            "version": STATE_VERSION,
            "step": step,
            "seed": options.seed,
            "rng": "numpy.random.default_rng([seed, rank, step]) draws the crops of each step",
            "config": config.to_dict(),
            "config_name": config_name,
            "train_loss": state["train_loss"],
            "recent_losses": list(recent),
            "last_val_loss": state["last_val_loss"],
            "best_val_loss": state["best_val_loss"],
            "seconds": base_seconds + time.perf_counter() - started,
            "history": state["history"],
            "init_from": state["init_from"],
            "options": {
                "data": str(options.data),
                "batch": options.batch,
                "crop": options.crop,
                "lr": options.lr,
                "world_size": dinfo.world,
                "device": str(device),
                "amp": str(amp_dtype).removeprefix("torch.") if amp_dtype else None,
            },
            "audiogen_studio": __version__,
        }

    def validate_now() -> float | None:
        if val_starts is None:
            return None
        loss = _validate(model, dataset, val_starts, options.batch, device, amp_dtype)
        state["last_val_loss"] = loss
        best = state["best_val_loss"]
        state["best_val_loss"] = loss if best is None or loss < best else best
        return loss

    model.train()
    with progress_bar(
        options.progress and dinfo.main, options.steps, start_step, "train wavenet"
    ) as bar:
        loop_start = time.perf_counter()
        while step < options.steps:
            rng = np.random.default_rng([options.seed, dinfo.rank, step])
            batch = dataset.sample("train", rng, options.batch).to(device)
            with _autocast(device, amp_dtype):
                loss = _loss(train_model, batch, context)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()  # type: ignore[no-untyped-call]
            if options.grad_clip > 0:
                scaler.unscale_(optimizer)
                nn.utils.clip_grad_norm_(model.parameters(), options.grad_clip)
            scaler.step(optimizer)
            scaler.update()
            step += 1
            loss_value = float(loss.detach())
            if not math.isfinite(loss_value):
                raise TrainingError(
                    f"the loss became {loss_value} at step {step}; lower --lr (now {options.lr})"
                )
            recent.append(loss_value)
            state["train_loss"] = sum(recent) / len(recent)
            elapsed = time.perf_counter() - loop_start
            rate = (step - start_step) * targets_per_step / max(elapsed, 1e-9)
            val_loss = None
            if dinfo.main:
                if options.val_every and step % options.val_every == 0 and step < options.steps:
                    val_loss = validate_now()
                    state["history"].append(
                        {"step": step, "loss": state["train_loss"], "val_loss": val_loss}
                    )
                    log.info(
                        "wavenet step %d/%d: train loss %.4f, validation %s",
                        step,
                        options.steps,
                        state["train_loss"],
                        "-" if val_loss is None else f"{val_loss:.4f}",
                    )
                if options.save_every and step % options.save_every == 0:
                    _save_checkpoint(out, model, optimizer, snapshot())
                postfix = {"loss": f"{state['train_loss']:.3f}", "samples/s": f"{rate:,.0f}"}
                if state["last_val_loss"] is not None:
                    postfix["val"] = f"{state['last_val_loss']:.3f}"
                bar.set_postfix(postfix, refresh=False)
                bar.update(1)
                if on_step is not None:
                    on_step(
                        StepReport(
                            step=step,
                            steps=options.steps,
                            loss=loss_value,
                            val_loss=val_loss,
                            samples_per_second=rate,
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
    rate = (step - start_step) * targets_per_step / max(elapsed, 1e-9)
    if dinfo.main:
        final_val = (
            validate_now()
            if step > start_step or state["last_val_loss"] is None
            else (state["last_val_loss"])
        )
        if step > start_step:
            state["history"].append(
                {"step": step, "loss": state["train_loss"], "val_loss": final_val}
            )
        _save_checkpoint(out, model, optimizer, snapshot())
        training = {
            "data": str(options.data),
            "steps": step,
            "completed": completed,
            "hours": round(dataset.train_hours, 6),
            "valid_hours": round(dataset.valid_hours, 6),
            "files_skipped": len(dataset.skipped),
            "final_train_loss": _finite_or_none(state["train_loss"]),
            "final_val_loss": _finite_or_none(final_val),
            "best_val_loss": _finite_or_none(state["best_val_loss"]),
            "loss": "cross-entropy in nats per sample over 2**bits mu-law classes",
            "device": str(device),
            "world_size": dinfo.world,
            "amp": str(amp_dtype).removeprefix("torch.") if amp_dtype else None,
            "time_seconds": round(base_seconds + elapsed, 3),
            "config_name": config_name,
            "init_from": state["init_from"],
            "batch": options.batch,
            "crop": options.crop,
            "lr": options.lr,
            "seed": options.seed,
            "audiogen_studio": __version__,
        }
        metrics = {
            "val_loss": _finite_or_none(final_val),
            "train_loss": _finite_or_none(state["train_loss"]),
            "receptive_field": config.receptive_field,
            "parameters": count_parameters(model),
        }
        _write_bundle(out, model, name, str(config_name), training, metrics)
        if stopped:
            log.info("stopped at step %d of %d", step, options.steps)
    else:
        final_val = None
    dinfo.barrier()
    return TrainResult(
        bundle=out,
        step=step,
        start_step=start_step,
        completed=completed,
        train_loss=_finite_or_none(state["train_loss"]),
        val_loss=_finite_or_none(final_val),
        best_val_loss=_finite_or_none(state["best_val_loss"]),
        seconds=base_seconds + elapsed,
        samples_per_second=rate,
        device=str(device),
        config=config,
        rank=dinfo.rank,
        world_size=dinfo.world,
    )


def _prepare_data(
    options: TrainOptions, config: WaveNetConfig, cache_dir: Path | None, *, write: bool
) -> AudioDataset:
    bars: list[Any] = []  # a "load audio" bar, opened when the first file is decoded

    def progress(done: int, total: int) -> None:
        if not (options.progress and write):
            return
        if not bars:
            from tqdm import tqdm

            bars.append(
                tqdm(
                    total=total,
                    desc="load audio",
                    unit="file",
                    disable=None,
                    dynamic_ncols=True,
                    file=sys.stderr,
                )
            )
        bars[0].update(done - bars[0].n)

    try:
        return AudioDataset.prepare(
            options.data,
            config,
            crop=options.crop,
            cache_dir=cache_dir,
            valid_fraction=options.valid_fraction,
            progress=progress,
            write_cache=write,
        )
    finally:
        for bar in bars:
            bar.close()


def options_dict(options: TrainOptions) -> dict[str, Any]:
    """The options as JSON-ready values (for logs and ``--json``)."""
    data = dataclasses.asdict(options)
    for key in ("data", "out"):
        data[key] = str(data[key])
    if isinstance(options.config, WaveNetConfig):
        data["config"] = options.config.to_dict()
    return data
