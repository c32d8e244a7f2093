"""Pieces every trainer shares: torchrun/DDP setup, AMP, tqdm, atomic JSON and checkpoint folders.

A checkpoint folder (:class:`CheckpointDir`) holds, for a set of named modules and optimizers::

    <folder>/<name>.safetensors          module weights + config (models/checkpoint.save_module)
    <folder>/<name>.optim.safetensors    optimizer state (save_tree: tensors + JSON skeleton)
    <folder>/trainer_state.json          step, losses, history, options ... (the trainer's dict)

It is written to ``.<folder>.partial`` and swapped in with two renames;
:meth:`CheckpointDir.recover` undoes a crash between them, so a killed run always resumes from
a whole checkpoint.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import shutil
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

import torch
import torch.distributed as dist
from torch import nn

from audiogen_studio.engine.bundles import BundleError, read_bundle
from audiogen_studio.models.checkpoint import (
    CheckpointError,
    load_into,
    load_tree,
    save_module,
    save_tree,
)
from audiogen_studio.models.device import resolve_device
from audiogen_studio.training.audio_dataset import TrainingError
from audiogen_studio.training.waveform_dataset import WaveformDataset

STATE_FILE = "trainer_state.json"

_C = TypeVar("_C")

__all__ = [
    "STATE_FILE",
    "CheckpointDir",
    "DistInfo",
    "amp_dtype_for",
    "autocast",
    "check_fields",
    "check_valid_fraction",
    "component_file",
    "distributed_session",
    "finite_or_none",
    "named_config_of",
    "open_checkpoint",
    "prepare_on_ranks",
    "progress_bar",
    "require_same_config",
    "setup_distributed",
    "stored_config",
    "teardown_distributed",
    "training_amp_dtype",
    "waveforms_on_ranks",
    "write_json",
]


def component_file(source: str | Path, component: str, flag: str) -> Path:
    """The weights file a flag such as ``--init-from`` names: ``source`` itself (a
    ``.safetensors`` file), or the file of ``component`` when ``source`` is a bundle folder.

    Raises:
        TrainingError: a folder that is not a bundle holding ``component``.
    """
    path = Path(source).expanduser()
    if not path.is_dir():
        return path
    try:
        return read_bundle(path).component_path(component)
    except BundleError as exc:
        raise TrainingError(f"{flag}: {exc}") from exc


def write_json(path: Path, data: Any) -> None:
    """Write ``data`` as indented JSON, atomically (temp file, fsync, rename)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.partial")  # plain open: honours umask
    try:
        with tmp.open("w", encoding="utf-8") as f:
            json.dump(data, f, indent=2, sort_keys=False)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def finite_or_none(value: float | None) -> float | None:
    """``value`` as a float, or ``None`` when missing or not finite (JSON-safe)."""
    return None if value is None or not math.isfinite(value) else float(value)


@dataclass(frozen=True)
class DistInfo:
    """Where this process stands in a ``torchrun`` job (world 1 without one)."""

    world: int
    rank: int
    local_rank: int
    owns_group: bool

    @property
    def main(self) -> bool:
        """Rank 0: validates, writes checkpoints and bundles, shows progress."""
        return self.rank == 0

    def barrier(self) -> None:
        """Wait for every rank (no-op without torchrun)."""
        if self.world > 1:
            dist.barrier()

    def any_flag(self, flag: bool, device: torch.device) -> bool:
        """True on every rank when ``flag`` is true on any (all ranks must call it)."""
        if self.world == 1:
            return flag
        t = torch.tensor([1.0 if flag else 0.0], device=device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return bool(t.item() > 0)

    def mean(self, value: float, device: torch.device) -> float:
        """The mean of ``value`` over ranks (all ranks must call it)."""
        if self.world == 1:
            return value
        t = torch.tensor([value], device=device, dtype=torch.float64)
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return float(t.item()) / self.world


def setup_distributed(device_name: str) -> tuple[DistInfo, torch.device]:
    """Join the ``torchrun`` process group when ``WORLD_SIZE`` > 1 (NCCL on CUDA, Gloo on CPU)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo(1, 0, 0, False), resolve_device(device_name)
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(device_name)
    if device.type == "mps":
        raise TrainingError("distributed training (torchrun) supports CUDA or CPU, not MPS")
    if device.type == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    owns = False
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
        owns = True
    return DistInfo(world, dist.get_rank(), local_rank, owns), device


def teardown_distributed(info: DistInfo) -> None:
    """Leave the process group this process created."""
    if info.owns_group and dist.is_initialized():
        dist.destroy_process_group()


@contextlib.contextmanager
def distributed_session(
    device_name: str, threads: int | None = None
) -> Iterator[tuple[DistInfo, torch.device]]:
    """Set torch's CPU threads, join the ``torchrun`` group (if any) and leave it at the end:
    ``with distributed_session(options.device, options.threads) as (dist_info, device): ...``."""
    if threads is not None:
        torch.set_num_threads(threads)
    info, device = setup_distributed(device_name)
    try:
        yield info, device
    finally:
        teardown_distributed(info)


def amp_dtype_for(device: torch.device, amp: bool) -> torch.dtype | None:
    """bf16 autocast on CUDA (fp16 where the GPU has no bf16); ``None`` elsewhere or when off."""
    if not amp or device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def training_amp_dtype(device: torch.device, amp: bool, log: logging.Logger) -> torch.dtype | None:
    """:func:`amp_dtype_for`, warning on ``log`` when AMP was asked for off CUDA (float32 then)."""
    if amp and device.type != "cuda":
        log.warning("--amp needs a CUDA device; training in float32 on %s", device)
    return amp_dtype_for(device, amp)


def autocast(
    device: torch.device, dtype: torch.dtype | None
) -> contextlib.AbstractContextManager[Any]:
    """``torch.autocast`` for ``dtype``, or nothing when ``dtype`` is ``None``."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


@contextlib.contextmanager
def progress_bar(enabled: bool, total: int, initial: int, desc: str) -> Iterator[Any]:
    """A tqdm bar on stderr (off when ``enabled`` is false or stderr is not a terminal)."""
    from tqdm import tqdm

    bar = tqdm(
        total=total,
        initial=initial,
        desc=desc,
        unit="step",
        disable=True if not enabled else None,  # None: off when stderr is no terminal
        dynamic_ncols=True,
        file=sys.stderr,
    )
    try:
        yield bar
    finally:
        bar.close()


class CheckpointDir:
    """A resumable checkpoint folder (see the module docstring)."""

    def __init__(self, folder: str | Path, *, state_version: int = 1) -> None:
        self.folder = Path(folder)
        self.state_version = state_version

    @property
    def _old(self) -> Path:
        return self.folder.with_name(f".{self.folder.name}.old")

    @property
    def _partial(self) -> Path:
        return self.folder.with_name(f".{self.folder.name}.partial")

    def recover(self) -> None:
        """Undo a crash between the two renames of :meth:`save` (call on rank 0 at start)."""
        if not (self.folder / STATE_FILE).is_file() and (self._old / STATE_FILE).is_file():
            if self.folder.exists():
                shutil.rmtree(self.folder)
            os.replace(self._old, self.folder)
        if self._partial.exists():
            shutil.rmtree(self._partial)

    def read_state(self) -> dict[str, Any] | None:
        """The saved trainer state (or, mid-swap, the previous one); ``None`` when none exists.

        Read-only: safe to call while a run writes checkpoints.
        """
        path = self.folder / STATE_FILE
        if not path.is_file():
            path = self._old / STATE_FILE
        if not path.is_file():
            return None
        try:
            state = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise TrainingError(f"{path}: unreadable trainer state ({exc})") from exc
        if not isinstance(state, dict) or state.get("version") != self.state_version:
            raise TrainingError(f"{path}: unknown trainer state version")
        return state

    def save(
        self,
        modules: Mapping[str, nn.Module],
        optimizers: Mapping[str, torch.optim.Optimizer],
        state: dict[str, Any],
        configs: Mapping[str, Any],
    ) -> None:
        """Write every module (with ``configs[name]``), optimizer and ``state``, atomically."""
        tmp = self._partial
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir(parents=True)
        step = {"step": state.get("step")}
        for name, module in modules.items():
            save_module(module, tmp / f"{name}.safetensors", configs[name], extra=step)
        for name, optimizer in optimizers.items():
            save_tree(optimizer.state_dict(), tmp / f"{name}.optim.safetensors", extra=step)
        write_json(tmp / STATE_FILE, {"version": self.state_version, **state})
        old = self._old
        if old.exists():
            shutil.rmtree(old)
        if self.folder.exists():
            os.replace(self.folder, old)
        os.replace(tmp, self.folder)
        if old.exists():
            shutil.rmtree(old)

    def load(
        self,
        modules: Mapping[str, nn.Module],
        optimizers: Mapping[str, torch.optim.Optimizer],
        device: torch.device,
    ) -> None:
        """Load weights and optimizer states saved by :meth:`save` into the given objects."""
        try:
            for name, module in modules.items():
                load_into(module, self.folder / f"{name}.safetensors", device=device)
            for name, optimizer in optimizers.items():
                optimizer.load_state_dict(
                    load_tree(self.folder / f"{name}.optim.safetensors", device=device)
                )
        except (CheckpointError, ValueError, KeyError) as exc:
            raise TrainingError(
                f"{self.folder}: cannot resume from this checkpoint ({exc})"
            ) from exc


def require_same_config(stored: Any, config: Any, *, what: str, elsewhere: str) -> None:
    """Refuse to resume ``stored`` (a checkpoint's config) with another asked ``config``.

    Both are config dataclasses with ``to_dict()``; ``None`` (nothing stored) always passes.

    Raises:
        TrainingError: naming every field that differs, e.g. ``"the codec checkpoint in the
            output folder has another config (dim 64 (asked 128)); resume without --config, or
            train into another --out"`` for ``what="the codec checkpoint in the output folder"``
            and ``elsewhere="another --out"``.
    """
    if stored is None or stored == config:
        return
    want = config.to_dict()
    diff = ", ".join(
        f"{k} {v} (asked {want[k]})" for k, v in stored.to_dict().items() if want.get(k) != v
    )
    raise TrainingError(
        f"{what} has another config ({diff}); resume without --config, or train into {elsewhere}"
    )


# --- the first steps of every trainer's run -------------------------------------------------------


def check_fields(
    options: Any,
    *,
    at_least_one: Iterable[str] = (),
    zero_or_more: Iterable[str] = (),
    positive: Iterable[str] = (),
    non_negative: Iterable[str] = (),
) -> None:
    """Validate the named fields of an options dataclass, in this order (a field that is
    ``None`` is not set and passes):

    - ``at_least_one``: whole numbers >= 1 (``"batch must be at least 1, got 0"``);
    - ``zero_or_more``: whole numbers >= 0 (``"val_every must be 0 or more, got -1"``);
    - ``positive``: finite numbers > 0 (``"lr must be a positive number, got 0.0"``);
    - ``non_negative``: finite numbers >= 0 (``"mel_weight must be 0 or more, got -1.0"``).

    Raises:
        TrainingError: for the first field that fails, with the messages above.
    """
    for field in at_least_one:
        value = getattr(options, field)
        if value is not None and int(value) < 1:
            raise TrainingError(f"{field} must be at least 1, got {value}")
    for field in zero_or_more:
        value = getattr(options, field)
        if value is not None and int(value) < 0:
            raise TrainingError(f"{field} must be 0 or more, got {value}")
    for field in positive:
        value = getattr(options, field)
        if value is not None and not (float(value) > 0 and math.isfinite(float(value))):
            raise TrainingError(f"{field} must be a positive number, got {float(value)}")
    for field in non_negative:
        value = getattr(options, field)
        if value is not None and not (float(value) >= 0 and math.isfinite(float(value))):
            raise TrainingError(f"{field} must be 0 or more, got {float(value)}")


def check_valid_fraction(valid_fraction: float) -> None:
    """Refuse a held-out tail of each file outside ``[0, 0.5)`` (:class:`TrainingError`)."""
    if not 0 <= valid_fraction < 0.5:
        raise TrainingError(f"valid_fraction must be within [0, 0.5), got {valid_fraction}")


def open_checkpoint(out: Path, ckpt: CheckpointDir, dinfo: DistInfo) -> dict[str, Any] | None:
    """Start a run into the folder ``out`` whose checkpoints live in ``ckpt``: rank 0 creates
    ``out`` and :meth:`~CheckpointDir.recover` s ``ckpt``, every rank waits for it, then reads the
    saved trainer state (``None`` on a fresh start; all ranks must call this).

    Raises:
        TrainingError: ``out`` is a file, or the state is unreadable or of another version.
    """
    if out.exists() and not out.is_dir():
        raise TrainingError(f"{out}: exists and is not a folder")
    if dinfo.main:
        out.mkdir(parents=True, exist_ok=True)
        ckpt.recover()
    dinfo.barrier()
    return ckpt.read_state()


def stored_config(
    resume: Mapping[str, Any] | None,
    from_dict: Callable[[Any], _C],
    folder: Path,
    what: str = "config",
) -> _C | None:
    """The config a resumed trainer state was trained with (``from_dict(resume["config"])``),
    ``None`` without a state.

    Raises:
        TrainingError: ``"<folder>: bad <what> in trainer state"`` when it is missing or invalid.
    """
    if resume is None:
        return None
    try:
        return from_dict(resume["config"])
    except (KeyError, ValueError) as exc:
        raise TrainingError(f"{folder}: bad {what} in trainer state") from exc


def named_config_of(config: Any, named: Mapping[str, Any], resume: Mapping[str, Any] | None) -> str:
    """The name ``config`` has in ``named``; else the name the resumed state recorded; else
    ``"custom"``."""
    return next(
        (n for n, c in named.items() if c == config),
        str((resume or {}).get("config_name", "custom")),
    )


class _Dataset(Protocol):
    @property
    def valid(self) -> object: ...


_D = TypeVar("_D", bound=_Dataset)


def prepare_on_ranks(
    dinfo: DistInfo, prepare: Callable[[bool], _D], log: logging.Logger, no_valid: str
) -> _D:
    """Load the training audio on every rank: rank 0 first with ``prepare(True)`` (decodes and
    writes the cache), then, after a barrier, the others with ``prepare(False)`` (read it
    only). Warns ``no_valid`` on ``log`` when the dataset has no validation split."""
    dataset = prepare(True) if dinfo.main else None
    dinfo.barrier()
    if dataset is None:
        dataset = prepare(False)
    if dataset.valid is None:
        log.warning(no_valid)
    return dataset


class _DataOptions(Protocol):
    @property
    def data(self) -> str | Path: ...

    @property
    def valid_fraction(self) -> float: ...


def waveforms_on_ranks(
    dinfo: DistInfo,
    options: _DataOptions,
    sample_rate: int,
    cache_dir: Path | None,
    log: logging.Logger,
    no_valid: str = "no validation audio: metrics are computed on training crops",
) -> WaveformDataset:
    """:func:`prepare_on_ranks` for the :class:`WaveformDataset` of ``options.data`` at
    ``sample_rate`` (cached in ``cache_dir`` unless ``None``)."""
    return prepare_on_ranks(
        dinfo,
        lambda write: WaveformDataset.prepare(
            options.data,
            sample_rate=sample_rate,
            cache_dir=cache_dir,
            valid_fraction=options.valid_fraction,
            write_cache=write,
        ),
        log,
        no_valid,
    )
