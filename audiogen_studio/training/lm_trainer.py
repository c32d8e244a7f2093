"""Train AudioLM's three token LMs (Borsos et al. 2022 §4.2) into an AudioLM bundle.

``train_lm(LMTrainOptions(stage="semantic" | "coarse" | "fine", data=..., bundle=BUNDLE))``:

- the bundle must already hold the ``codec`` and ``semantic`` components (``audiogen-studio train
  codec`` / ``train semantic`` into the same folder); their weights tokenise the data once into
  ``BUNDLE/work/tokens-*`` (:class:`~audiogen_studio.training.token_cache.TokenCorpus`), which every
  stage and every resumed run reuses;
- each step draws ``batch`` aligned windows (the token RNG of step ``s`` on rank ``r`` is
  ``numpy.random.default_rng([seed, r, s])``) of a random number of semantic tokens up to the
  stage's window, lays them out with :class:`~audiogen_studio.models.audiolm_layout.TokenLayout`
  (conditioning interleaved frame by frame), and minimises next-token cross-entropy on the
  stage's own positions (semantic: all; coarse: the coarse ids; fine: the fine ids), AdamW with
  warm-up and cosine decay, gradient clipping;
- ``data`` may instead be a folder of tokens that :func:`export_tokens` wrote (``train tokens``),
  checked against the bundle's tokenizer weights and layout: the stages then train where the
  audio is not (the same tokens, so the same run);
- ``init_from`` fine-tunes: a new run starts from another bundle's ``lm_<stage>`` (e.g. a shipped
  default, continued on your own material) instead of random weights;
- resumable from ``BUNDLE/checkpoint/lm_<stage>/`` (a resume on other ``data`` restarts the
  best-validation bookkeeping, since the old split's losses do not compare); tqdm;
  CPU/CUDA/MPS; bf16 autocast on CUDA; DDP under ``torchrun``; writes
  ``BUNDLE/lm_<stage>.safetensors`` and registers the component (with its layout and window)
  in ``bundle.json``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import shutil
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

from audiogen_studio import __version__
from audiogen_studio.engine.bundles import BundleError, read_bundle, write_component
from audiogen_studio.models.audiolm_layout import TokenLayout
from audiogen_studio.models.checkpoint import (
    CheckpointError,
    check_state_dict,
    load_state,
    save_module,
)
from audiogen_studio.models.lm import LMConfig, TokenLM
from audiogen_studio.training.audio_dataset import TrainingError
from audiogen_studio.training.common import (
    CheckpointDir,
    DistInfo,
    amp_dtype_for,
    autocast,
    distributed_session,
    finite_or_none,
    progress_bar,
)
from audiogen_studio.training.token_cache import (
    TokenCorpus,
    encoder_digest,
    file_digest,
    is_token_export,
    read_token_export,
)
from audiogen_studio.training.transposition import transpose_windows, transposition_table
from audiogen_studio.training.waveform_dataset import WaveformDataset

log = logging.getLogger(__name__)

Stage = Literal["semantic", "coarse", "fine"]
STAGES: tuple[Stage, ...] = ("semantic", "coarse", "fine")
STATE_VERSION = 1
#: a validation loss must beat the best by this many nats/token to count as a new best
MIN_IMPROVEMENT = 1e-4
WORK_DIR = "work"

#: transformer sizes by name (the vocabulary and context come from the stage)
LM_SIZES: dict[str, dict[str, int]] = {
    "tiny": {"dim": 64, "depth": 2, "heads": 4},
    "small": {"dim": 192, "depth": 4, "heads": 6},
    "default": {"dim": 256, "depth": 4, "heads": 8},
}


def size_name(config: LMConfig) -> str:
    """The :data:`LM_SIZES` name of ``config``'s width, depth and heads (``"custom"`` if none):
    what a resumed run trains, whatever ``--size`` it was given."""
    shape = {"dim": config.dim, "depth": config.depth, "heads": config.heads}
    return next((name for name, size in LM_SIZES.items() if size == shape), "custom")


@dataclass(frozen=True, kw_only=True)
class LMTrainOptions:
    """What ``audiogen-studio train lm-<stage>`` asks for.

    Attributes:
        stage: ``semantic``, ``coarse`` or ``fine``.
        data: corpus folder, manifest, folder of audio or one file.
        bundle: the AudioLM bundle folder (with ``codec`` and ``semantic`` components).
        size: a name of :data:`LM_SIZES` (ignored when resuming).
        window: semantic tokens per training window (the LM's context); ``None`` = 250 for the
            semantic stage (10 s at 25 Hz), 100 for coarse, 50 for fine.
        coarse_quantizers: codec quantizers modelled by the coarse stage (the rest are fine);
            must agree across stages of a bundle (read from the bundle when present).
        fine_quantizers: ``None`` = every remaining quantizer of the codec.
        keep: which weights the bundle gets: ``best`` (lowest validation loss seen, checked
            every ``val_every`` steps: early stopping, which matters on a small corpus that the
            LM overfits) or ``last``.
        patience: stop after this many validations in a row without a new best (0: never).
        init_from: fine-tune: a bundle folder (or an ``lm_<stage>.safetensors`` file) whose
            ``lm_<stage>`` weights and config start a *new* run (``size`` is then ignored, and
            the window defaults to that bundle's); it must model the same token layout. A
            resumed run ignores it (the checkpoint wins).
        semantic_dropout: coarse stage only: the probability that a training window's semantic
            ids are all replaced by the layout's separator id (conditioning dropout, so the LM
            also learns ``p(c_t | c_<t)`` for classifier-free guidance: Ho & Salimans 2022;
            MusicGen §2.4 drops its conditions with probability 0.2). 0: never.
        transpose: semantic stage of a chroma tokenizer only: the probability that a training
            window is transposed by a random 1–11 semitones
            (:mod:`~audiogen_studio.training.transposition`). 0: never.
    """

    stage: Stage
    data: str | Path
    bundle: str | Path
    steps: int = 5_000
    batch: int = 16
    size: str = "default"
    window: int | None = None
    coarse_quantizers: int = 2
    fine_quantizers: int | None = None
    lr: float = 3e-4
    warmup: int = 200
    weight_decay: float = 0.01
    dropout: float = 0.1
    grad_clip: float = 1.0
    seed: int = 0
    device: str = "auto"
    amp: bool = True
    threads: int | None = None
    val_every: int = 500
    val_batches: int = 4
    save_every: int = 500
    keep: Literal["best", "last"] = "best"
    patience: int = 0
    time_limit: float | None = None
    progress: bool = True
    init_from: str | Path | None = None
    semantic_dropout: float = 0.0
    transpose: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    def check(self) -> None:
        """Raise :class:`TrainingError` for impossible settings."""
        if self.stage not in STAGES:
            raise TrainingError(f"unknown stage {self.stage!r}: use {', '.join(STAGES)}")
        if self.size not in LM_SIZES:
            raise TrainingError(f"unknown LM size {self.size!r}: use {', '.join(LM_SIZES)}")
        if not 0.0 <= self.semantic_dropout < 1.0:
            raise TrainingError(f"semantic dropout must be in [0, 1), got {self.semantic_dropout}")
        if self.semantic_dropout and self.stage != "coarse":
            raise TrainingError("semantic dropout conditions the coarse stage only")
        if not 0.0 <= self.transpose <= 1.0:
            raise TrainingError(f"transpose must be in [0, 1], got {self.transpose}")
        if self.transpose and self.stage != "semantic":
            raise TrainingError(
                "transposition augments the semantic stage only (the acoustic tokens of a "
                "window cannot be transposed with it)"
            )
        for name in ("steps", "batch", "coarse_quantizers"):
            if getattr(self, name) < 1:
                raise TrainingError(f"{name} must be at least 1")
        if self.window is not None and self.window < 2:
            raise TrainingError("window must be at least 2 semantic tokens")
        if not self.lr > 0:
            raise TrainingError("lr must be positive")
        if self.keep not in ("best", "last"):
            raise TrainingError(f"keep must be 'best' or 'last', not {self.keep!r}")
        if self.patience < 0 or self.val_every < 0:
            raise TrainingError("patience and val_every must not be negative")
        if self.patience and not self.val_every:
            raise TrainingError("patience needs validation: set val_every")


@dataclass(frozen=True)
class LMTrainResult:
    """How a run ended."""

    bundle: Path
    stage: str
    step: int
    start_step: int
    completed: bool
    train_loss: float | None
    val_loss: float | None
    seconds: float
    tokens_per_second: float
    rank: int = 0
    world_size: int = 1
    #: the step whose weights the bundle holds (the best validation loss with keep="best")
    weights_step: int | None = None


DEFAULT_WINDOWS = {"semantic": 250, "coarse": 100, "fine": 50}


@dataclass(frozen=True)
class InitialWeights:
    """The ``lm_<stage>`` a fine-tuning run starts from (``LMTrainOptions.init_from``)."""

    source: str
    config: LMConfig
    window: int | None  # the source bundle's window; None for a bare file
    state: dict[str, torch.Tensor]


def load_initial_weights(source: str | Path, stage: str, layout: TokenLayout) -> InitialWeights:
    """Read the ``lm_<stage>`` of a bundle folder or ``.safetensors`` file to fine-tune from.

    Raises:
        TrainingError: no such component, not an LM checkpoint, or an LM of another token
            layout (another codec, tokenizer or quantizer split).
    """
    path = Path(source).expanduser()
    window: int | None = None
    component = f"lm_{stage}"
    if path.is_dir():
        try:
            info = read_bundle(path)
            file = info.component_path(component)
        except BundleError as exc:
            raise TrainingError(f"--init-from: {exc}") from exc
        entry = info.components[component].get("config") or {}
        stored = entry.get("layout")
        if stored and TokenLayout.from_dict(stored) != layout:
            raise TrainingError(
                f"--init-from {source}: its {component} models another token layout "
                f"({TokenLayout.from_dict(stored)}) than this bundle ({layout})"
            )
        if entry.get("window") is not None:
            window = int(entry["window"])
        path = file
    try:
        state, meta = load_state(path)
    except CheckpointError as exc:
        raise TrainingError(f"--init-from {source}: {exc}") from exc
    if meta.get("module") not in (None, TokenLM.__name__) or not meta.get("config"):
        raise TrainingError(f"--init-from {source}: {path} is not a token LM checkpoint")
    try:
        config = LMConfig.from_dict(meta["config"])
    except ValueError as exc:
        raise TrainingError(f"--init-from {source}: {exc}") from exc
    want = stage_vocab(stage, layout)
    if config.vocab_size != want:
        raise TrainingError(
            f"--init-from {source}: its LM has a vocabulary of {config.vocab_size} ids, the "
            f"{stage} stage of this bundle needs {want} (another codec, tokenizer or layout)"
        )
    return InitialWeights(source=str(source), config=config, window=window, state=state)


def validation_key(dataset: WaveformDataset) -> str:
    """Identifies the validation split (its files and length): a resumed run on other data
    must not compare its validation losses with the old split's."""
    valid = dataset.valid
    # a corpus names its validation files; otherwise the split is carved from the training files
    files = dataset.sources.valid or dataset.sources.train
    body = json.dumps(
        {
            "files": [str(p) for p in files],
            "samples": 0 if valid is None else int(valid.samples.shape[0]),
        },
        sort_keys=True,
    )
    return hashlib.sha1(body.encode()).hexdigest()[:16]


def stage_sequence_length(stage: str, window: int, layout: TokenLayout) -> int:
    """Tokens of a full training sequence of ``window`` semantic tokens for ``stage``."""
    if stage == "semantic":
        return window
    if stage == "coarse":
        return window * layout.coarse_group
    return window * layout.ratio * layout.fine_group


def stage_vocab(stage: str, layout: TokenLayout) -> int:
    """Vocabulary of ``stage``'s LM."""
    return {
        "semantic": layout.semantic_vocab,
        "coarse": layout.coarse_vocab,
        "fine": layout.fine_vocab,
    }[stage]


def _layout_for(bundle: Path, options: LMTrainOptions) -> tuple[TokenLayout, Any, Any]:
    """The bundle's tokenizers and the token layout the stages share."""
    from audiogen_studio.models.acoustic_codec import load_acoustic_codec
    from audiogen_studio.models.semantic import SemanticTokenizer

    try:
        info = read_bundle(bundle)
        info.component_path("codec")
        semantic_path = info.component_path("semantic")
    except BundleError as exc:
        raise TrainingError(
            f"{exc}; train the codec and the semantic tokenizer into this bundle first "
            "('audiogen-studio train codec' and 'train semantic')"
        ) from exc
    codec = load_acoustic_codec(info.path)  # SoundStream or mel codec, by the bundle's kind
    tokenizer = SemanticTokenizer.from_pretrained(semantic_path).eval()
    stored = None
    for name in ("lm_semantic", "lm_coarse", "lm_fine"):
        # an LM's component entry holds its layout in its config (write_component(config=...))
        layout = info.components.get(name, {}).get("config", {}).get("layout")
        if layout:
            stored = TokenLayout.from_dict(layout)
            break
    n_q = int(codec.config.n_q)
    qc = options.coarse_quantizers if stored is None else stored.coarse_quantizers
    qf = options.fine_quantizers if options.fine_quantizers is not None else n_q - qc
    if stored is not None and options.fine_quantizers is None:
        qf = stored.fine_quantizers
    if qc + qf > n_q:
        raise TrainingError(f"the codec has {n_q} quantizers; {qc} coarse + {qf} fine is too many")
    layout = TokenLayout(
        semantic_vocab=int(tokenizer.n_tokens),
        codebook_size=int(codec.config.codebook_size),
        coarse_quantizers=qc,
        fine_quantizers=qf,
        semantic_rate=float(tokenizer.token_rate),
        acoustic_rate=float(codec.config.frame_rate),
    )
    if stored is not None and stored != layout:
        raise TrainingError(
            f"{bundle}: the bundle's LMs were trained with another token layout ({stored}); "
            "retrain every LM stage after changing the codec or tokenizer"
        )
    return layout, codec, tokenizer


def tokenize_corpus(
    bundle: Path,
    dataset: WaveformDataset,
    codec: Any,
    tokenizer: Any,
    layout: TokenLayout,
    *,
    write: bool,
    progress: bool,
) -> TokenCorpus:
    """Tokens of ``dataset`` with the bundle's codec and tokenizer (cached in BUNDLE/work)."""
    key = tokenizer_key(bundle)
    hop = int(tokenizer.hop)
    n_q = layout.quantizers

    @torch.inference_mode()
    def encode(samples: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        audio = torch.from_numpy(samples)[None]
        sem = tokenizer.tokens(audio)[0].numpy()
        codes = codec.encode(audio[:, None, :], n_q=n_q)[0].numpy()
        return sem, codes

    bars: list[Any] = []

    def report(done: int, total: int) -> None:
        if not (progress and write):
            return
        if not bars:
            from tqdm import tqdm

            bars.append(tqdm(total=total, desc="tokenise", unit="file", file=sys.stderr))
        bars[0].update(done - bars[0].n)

    try:
        return TokenCorpus.build(
            dataset,
            encode,
            hop=hop,
            ratio=layout.ratio,
            key=key,
            folder=bundle / WORK_DIR,
            progress=report,
            write_cache=write,
        )
    finally:
        for bar in bars:
            bar.close()


@dataclass(frozen=True)
class TokenSource:
    """What the trainer records of the data its tokens came from."""

    valid_key: str  # :func:`validation_key` of the audio
    sample_rate: int
    train_hours: float


def tokenizer_key(bundle: Path) -> str:
    """Digests of the weights that make a bundle's tokens (the codec's encoder side and the
    semantic tokenizer's file): equal keys, equal tokens."""
    info = read_bundle(bundle)
    return encoder_digest(info.component_path("codec")) + file_digest(
        info.component_path("semantic")
    )


def _tokenised_audio(
    options: LMTrainOptions,
    bundle: Path,
    layout: TokenLayout,
    codec: Any,
    tokenizer: Any,
    dinfo: DistInfo,
) -> tuple[TokenCorpus, TokenSource]:
    """Tokens of ``options.data`` (audio), rank 0 writing the caches, the others reading them."""
    dataset: WaveformDataset | None = None
    corpus: TokenCorpus | None = None
    rate = int(codec.config.sample_rate)
    for write in (True, False):
        if dinfo.main == write:
            dataset = WaveformDataset.prepare(
                options.data, sample_rate=rate, cache_dir=bundle / WORK_DIR, write_cache=write
            )
            corpus = tokenize_corpus(
                bundle, dataset, codec, tokenizer, layout, write=write, progress=options.progress
            )
        dinfo.barrier()
    assert dataset is not None and corpus is not None
    source = TokenSource(validation_key(dataset), int(dataset.sample_rate), dataset.train_hours)
    return corpus, source


def exported_tokens(
    folder: str | Path, bundle: Path, layout: TokenLayout
) -> tuple[TokenCorpus, TokenSource]:
    """The tokens of an :func:`export_tokens` folder, checked against ``bundle``.

    Raises:
        TrainingError: the export was made by other tokenizer weights or for another layout.
    """
    corpus, meta = read_token_export(folder)
    if meta.get("tokenizer_key") != tokenizer_key(bundle):
        raise TrainingError(
            f"{folder}: these tokens were extracted with another codec or semantic tokenizer "
            f"than {bundle}'s (export them again with 'train tokens --bundle {bundle}')"
        )
    try:
        exported = TokenLayout.from_dict(meta["layout"])
    except (TypeError, ValueError, KeyError) as exc:
        raise TrainingError(f"{folder}: a damaged layout in its tokens.json ({exc})") from exc
    if exported != layout:
        raise TrainingError(
            f"{folder}: tokens exported for the layout {exported}, the bundle's LMs use {layout}"
        )
    source = TokenSource(
        str(meta["validation_key"]), int(meta["sample_rate"]), float(meta["train_hours"])
    )
    return corpus, source


def export_tokens(
    data: str | Path,
    bundle: str | Path,
    out: str | Path,
    *,
    coarse_quantizers: int = 2,
    fine_quantizers: int | None = None,
    progress: bool = True,
) -> Path:
    """Tokenise ``data`` with ``bundle``'s codec and semantic tokenizer (through the bundle's
    token cache, as a training run does) and export the tokens to ``out`` for the LM stages to
    train on elsewhere (``train lm-<stage> --data OUT --bundle <a copy of the bundle>``).

    The layout is the bundle's LMs' when it has any, else ``coarse_quantizers`` /
    ``fine_quantizers``. Returns ``out``.
    """
    bundle = Path(bundle).expanduser()
    options = LMTrainOptions(
        stage="semantic",
        data=data,
        bundle=bundle,
        coarse_quantizers=coarse_quantizers,
        fine_quantizers=fine_quantizers,
        progress=progress,
    )
    options.check()
    layout, codec, tokenizer = _layout_for(bundle, options)
    corpus, source = _tokenised_audio(
        options, bundle, layout, codec, tokenizer, DistInfo(1, 0, 0, False)
    )
    meta = {
        "tokenizer_key": tokenizer_key(bundle),
        "layout": layout.to_dict(),
        "validation_key": source.valid_key,
        "sample_rate": source.sample_rate,
        "train_hours": round(source.train_hours, 6),
        "train_tokens": corpus.train_tokens,
        "valid_tokens": 0 if corpus.valid is None else int(corpus.valid.semantic.shape[0]),
        "data": str(data),
        "bundle": str(bundle),
        "audiogen_studio": __version__,
    }
    return corpus.export(out, meta)


def _lr_at(step: int, options: LMTrainOptions) -> float:
    if step < options.warmup:
        return options.lr * (step + 1) / options.warmup
    progress = (step - options.warmup) / max(1, options.steps - options.warmup)
    return options.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


def drop_semantic(
    semantic: torch.Tensor, layout: TokenLayout, p: float, rng: np.random.Generator
) -> torch.Tensor:
    """``semantic [B, S]`` with each row, with probability ``p``, replaced by the separator id
    (the coarse LM's "no conditioning"; classifier-free guidance's unconditional model)."""
    if p <= 0:
        return semantic
    rows = torch.from_numpy(rng.random(semantic.shape[0]) < p)
    if not bool(rows.any()):
        return semantic
    out = semantic.clone()
    out[rows.to(out.device)] = layout.coarse_sep
    return out


def _loss(
    model: nn.Module,
    stage: str,
    layout: TokenLayout,
    semantic: torch.Tensor,
    acoustic: torch.Tensor,
    device: torch.device,
) -> torch.Tensor:
    seq, mask = layout.stage_sequence(stage, semantic, acoustic)
    seq = seq.to(device)
    logits = model(seq[:, :-1])  # [B, L - 1, V]: position i predicts token i + 1
    targets = seq[:, 1:].masked_fill(~mask[1:].to(device)[None, :], -100)
    return F.cross_entropy(logits.float().transpose(1, 2), targets, ignore_index=-100)


def train_lm(
    options: LMTrainOptions,
    *,
    on_step: Callable[[int, float], None] | None = None,
    stop: threading.Event | None = None,
) -> LMTrainResult:
    """Train (or resume) one LM stage into ``options.bundle``; see the module docstring.

    Raises:
        TrainingError: no codec/tokenizer in the bundle, bad data or options, a checkpoint of
            another config.
    """
    options.check()
    with distributed_session(options.device, options.threads) as (dinfo, device):
        return _train(options, Path(options.bundle).expanduser(), dinfo, device, on_step, stop)


def _train(
    options: LMTrainOptions,
    bundle: Path,
    dinfo: DistInfo,
    device: torch.device,
    on_step: Callable[[int, float], None] | None,
    stop: threading.Event | None,
) -> LMTrainResult:
    stage = options.stage
    component = f"lm_{stage}"
    layout, codec, tokenizer = _layout_for(bundle, options)
    shifts = transposition_table(tokenizer) if options.transpose else None
    ckpt = CheckpointDir(bundle / "checkpoint" / component, state_version=STATE_VERSION)
    if dinfo.main:
        ckpt.recover()
    dinfo.barrier()
    resume = ckpt.read_state()

    if is_token_export(options.data):
        corpus, source = exported_tokens(options.data, bundle, layout)
    else:
        corpus, source = _tokenised_audio(options, bundle, layout, codec, tokenizer, dinfo)
    del codec, tokenizer

    window = options.window or DEFAULT_WINDOWS[stage]
    initial: InitialWeights | None = None
    if resume is not None:
        config = LMConfig.from_dict(resume["config"])
        window = int(resume["window"])
        if options.init_from is not None and dinfo.main:
            log.info("resuming from %s: --init-from is ignored", ckpt.folder)
    elif options.init_from is not None:
        initial = load_initial_weights(options.init_from, stage, layout)
        config = initial.config
        window = options.window or initial.window or window
        if stage_sequence_length(stage, window, layout) > config.max_seq_len:
            raise TrainingError(
                f"--init-from {options.init_from}: its LM holds {config.max_seq_len} positions, "
                f"fewer than a window of {window} semantic tokens needs; pass a smaller --window"
            )
    else:
        config = LMConfig(
            vocab_size=stage_vocab(stage, layout),
            max_seq_len=stage_sequence_length(stage, window, layout),
            dropout=options.dropout,
            dim=LM_SIZES[options.size]["dim"],
            depth=LM_SIZES[options.size]["depth"],
            heads=LM_SIZES[options.size]["heads"],
        )
    torch.manual_seed(options.seed)
    model = TokenLM(config)
    if initial is not None:
        check_state_dict(model, initial.state, Path(initial.source))
        model.load_state_dict(initial.state)  # copies (and upcasts float16) into the params
        if dinfo.main:
            log.info("lm_%s initialised from %s", stage, initial.source)
    model = model.to(device)
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.ndim < 2]
    optimizer = torch.optim.AdamW(
        [
            {"params": decay, "weight_decay": options.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ],
        lr=options.lr,
        betas=(0.9, 0.98),
    )
    start_step = 0
    history: list[dict[str, Any]] = []
    base_seconds = 0.0
    val_loss: float | None = None
    # the best validated weights live beside the checkpoint folder (which save() swaps whole)
    best_file = bundle / "checkpoint" / f"{component}.best.safetensors"
    best: dict[str, Any] | None = None  # {"step", "val_loss"} of best_file
    stale = 0  # validations in a row without a new best
    valid_key = source.valid_key
    init_from = initial.source if initial is not None else None
    if resume is not None:
        ckpt.load({"model": model}, {"optimizer": optimizer}, device)
        start_step = int(resume["step"])
        history = list(resume.get("history", []))
        base_seconds = float(resume.get("seconds", 0.0))
        val_loss = resume.get("val_loss")
        stored_best = resume.get("best")
        init_from = resume.get("init_from")
        stored_key = resume.get("valid_key")
        if stored_key is not None and stored_key != valid_key:
            # other data: its validation losses do not compare with the stored best
            if dinfo.main:
                log.warning(
                    "the validation split differs from the checkpoint's (other --data): the "
                    "best-validation weights start afresh at this run's validations"
                )
            stored_best = None
        if isinstance(stored_best, dict) and best_file.is_file():
            best = {"step": int(stored_best["step"]), "val_loss": float(stored_best["val_loss"])}
            stale = int(stored_best.get("stale", 0))
    amp_dtype = amp_dtype_for(device, options.amp)
    train_model: nn.Module = model
    if dinfo.world > 1:
        from torch.nn.parallel import DistributedDataParallel

        train_model = DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )

    def draw(split: str, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        # short windows too: generation starts with little context
        n = int(rng.integers(max(2, window // 4), window + 1))
        return corpus.windows(split, rng, options.batch, n)  # type: ignore[arg-type]

    @torch.no_grad()
    def validate() -> float | None:
        if corpus.valid is None:
            return None
        model.eval()
        total = 0.0
        for i in range(options.val_batches):
            rng = np.random.default_rng([options.seed, 7919, i])
            sem, ac = corpus.windows("valid", rng, options.batch, window)
            with autocast(device, amp_dtype):
                total += float(_loss(model, stage, layout, sem, ac, device))
        model.train()
        return total / options.val_batches

    def note_validation(loss: float | None) -> None:
        """Keep the weights of a new best validation loss; count validations without one."""
        nonlocal best, stale
        if loss is None or not math.isfinite(loss):
            return
        if best is None or loss < best["val_loss"] - MIN_IMPROVEMENT:
            save_module(model, best_file, config, extra={"step": step, "stage": stage})
            best = {"step": step, "val_loss": loss}
            stale = 0
        else:
            stale += 1

    recent: deque[float] = deque(maxlen=20)
    step = start_step
    started = time.perf_counter()
    tokens_seen = 0
    stopped = False

    def state() -> dict[str, Any]:
        return {
            "step": step,
            "stage": stage,
            "config": config.to_dict(),
            "window": window,
            "layout": layout.to_dict(),
            "train_loss": sum(recent) / len(recent) if recent else None,
            "val_loss": val_loss,
            "best": None if best is None else {**best, "stale": stale},
            "valid_key": valid_key,
            "init_from": init_from,
            "history": history,
            "seconds": base_seconds + time.perf_counter() - started,
            "seed": options.seed,
            "audiogen_studio": __version__,
        }

    def save_checkpoint() -> None:
        ckpt.save({"model": model}, {"optimizer": optimizer}, state(), {"model": config})

    model.train()
    with progress_bar(
        options.progress and dinfo.main, options.steps, start_step, f"train lm-{stage}"
    ) as bar:
        while step < options.steps:
            rng = np.random.default_rng([options.seed, dinfo.rank, step])
            sem, ac = draw("train", rng)
            sem = drop_semantic(sem, layout, options.semantic_dropout, rng)
            if shifts is not None:
                sem = transpose_windows(sem, shifts, options.transpose, rng)
            for group in optimizer.param_groups:
                group["lr"] = _lr_at(step, options)
            with autocast(device, amp_dtype):
                loss = _loss(train_model, stage, layout, sem, ac, device)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()  # type: ignore[no-untyped-call]
            if options.grad_clip > 0:
                nn.utils.clip_grad_norm_(model.parameters(), options.grad_clip)
            optimizer.step()
            step += 1
            value = float(loss.detach())
            if not math.isfinite(value):
                raise TrainingError(f"the loss became {value} at step {step}; lower --lr")
            recent.append(value)
            tokens_seen += sem.shape[0] * stage_sequence_length(stage, sem.shape[1], layout)
            if dinfo.main:
                if options.val_every and step % options.val_every == 0:
                    val_loss = validate()
                    note_validation(val_loss)
                    log.info(
                        "lm-%s step %d/%d: train loss %.4f, validation %s%s",
                        stage,
                        step,
                        options.steps,
                        sum(recent) / len(recent),
                        "-" if val_loss is None else f"{val_loss:.4f}",
                        " (best)" if best is not None and best["step"] == step else "",
                    )
                    history.append(
                        {"step": step, "loss": sum(recent) / len(recent), "val": val_loss}
                    )
                if options.save_every and step % options.save_every == 0:
                    ckpt.save(
                        {"model": model}, {"optimizer": optimizer}, state(), {"model": config}
                    )
                bar.set_postfix({"loss": f"{sum(recent) / len(recent):.3f}"}, refresh=False)
                bar.update(1)
                if on_step is not None:
                    on_step(step, value)
            patience_out = bool(options.patience) and stale >= options.patience
            want = (
                (stop is not None and stop.is_set())
                or patience_out
                or (
                    options.time_limit is not None
                    and time.perf_counter() - started >= options.time_limit
                )
            )
            if (
                stop is not None or options.time_limit is not None or options.patience
            ) and dinfo.any_flag(want, device):
                if patience_out:
                    log.info(
                        "validation loss has not improved for %d validations: stopping at step "
                        "%d (best %.4f at step %d)",
                        stale,
                        step,
                        best["val_loss"] if best else float("nan"),
                        best["step"] if best else -1,
                    )
                stopped = step < options.steps
                break
    elapsed = time.perf_counter() - started
    selected_step = step
    if dinfo.main:
        if step > start_step and not (history and history[-1]["step"] == step):
            val_loss = validate()
            note_validation(val_loss)
            history.append(
                {
                    "step": step,
                    "loss": sum(recent) / len(recent) if recent else None,
                    "val": val_loss,
                }
            )
        ckpt.save({"model": model}, {"optimizer": optimizer}, state(), {"model": config})
        file = f"{component}.safetensors"
        selected_step, selected_val = step, val_loss
        if options.keep == "best" and best is not None and best["step"] != step:
            # early stopping: the bundle gets the weights of the lowest validation loss
            shutil.copyfile(best_file, bundle / f".{file}.partial")
            os.replace(bundle / f".{file}.partial", bundle / file)
            selected_step, selected_val = best["step"], best["val_loss"]
        else:
            save_module(model, bundle / file, config, extra={"step": step, "stage": stage})
        train_loss = sum(recent) / len(recent) if recent else None
        write_component(
            bundle,
            component,
            file=file,
            config={"lm": config.to_dict(), "layout": layout.to_dict(), "window": window},
            sample_rate=source.sample_rate,
            training={
                "data": str(options.data),
                "init_from": init_from,
                "steps": step,
                "weights_step": selected_step,
                "weights": "best validation loss" if selected_step != step else "last step",
                "completed": step >= options.steps,
                "size": size_name(config),
                "batch": options.batch,
                "lr": options.lr,
                **(
                    {"semantic_dropout": options.semantic_dropout}
                    if options.semantic_dropout
                    else {}
                ),
                **({"transpose": options.transpose} if options.transpose else {}),
                "train_hours": round(source.train_hours, 6),
                "train_tokens": corpus.train_tokens,
                "device": str(device),
                "world_size": dinfo.world,
                "time_seconds": round(base_seconds + elapsed, 3),
                "audiogen_studio": __version__,
            },
            metrics={
                "train_loss": finite_or_none(train_loss),
                "val_loss": finite_or_none(selected_val),
                "last_val_loss": finite_or_none(val_loss),
                "loss": "cross-entropy in nats per token of the stage's part of the sequence",
                "parameters": sum(p.numel() for p in model.parameters()),
            },
        )
        if stopped:
            log.info("stopped at step %d of %d", step, options.steps)
    dinfo.barrier()
    return LMTrainResult(
        bundle=bundle,
        stage=stage,
        step=step,
        start_step=start_step,
        completed=step >= options.steps,
        train_loss=finite_or_none(sum(recent) / len(recent)) if recent else None,
        val_loss=finite_or_none(val_loss),
        seconds=base_seconds + elapsed,
        weights_step=selected_step,
        tokens_per_second=tokens_seen * dinfo.world / max(elapsed, 1e-9),
        rank=dinfo.rank,
        world_size=dinfo.world,
    )
