"""Semantic tokenizers that need no encoder training: k-means over a ready feature encoder.

Two encoders qualify: a user's own HuBERT / wav2vec 2.0 weights
(:func:`~audiogen_studio.training.semantic_trainer.tokenizer_from_ssl`) and the pitch-class
encoder of :mod:`audiogen_studio.models.chroma_encoder` (:func:`tokenizer_from_chroma`,
``audiogen-studio train semantic --encoder chroma``), which gives a music bundle semantic tokens
that carry harmony (MusicGen §2.3 conditions on a chromagram for the same reason). Both fit
k-means on random crops of the corpus's training split and write ``BUNDLE/semantic.safetensors``
declared in ``bundle.json`` exactly as ``train semantic`` does, so the pipeline cannot tell them
apart.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from audiogen_studio import __version__
from audiogen_studio.engine.bundles import BUNDLE_FILE, BundleError, read_bundle, write_component
from audiogen_studio.models.chroma_encoder import ChromaConfig, ChromaEncoder
from audiogen_studio.models.semantic import (
    FeatureEncoder,
    SemanticTokenizer,
    count_parameters,
    token_usage,
)
from audiogen_studio.training.audio_dataset import TrainingError
from audiogen_studio.training.semantic_trainer import (
    COMPONENT,
    WEIGHTS_FILE,
    WORK_DIR,
    riff_purity,
)
from audiogen_studio.training.waveform_dataset import Split, WaveformDataset

__all__ = ["fit_encoder_tokenizer", "tokenizer_from_chroma"]


def fit_encoder_tokenizer(
    encoder: FeatureEncoder,
    data: str | Path,
    out: str | Path,
    *,
    layer: int,
    n_clusters: int = 500,
    kmeans_seconds: float = 1_200.0,
    crop_seconds: float = 4.0,
    seed: int = 0,
    name: str | None = None,
    cache: bool = True,
    source: str,
    extra: Mapping[str, Any] | None = None,
) -> Path:
    """k-means (``n_clusters``) over ``encoder``'s ``layer`` features of ``kmeans_seconds`` of
    random training crops of ``data`` into ``out/semantic.safetensors`` and ``bundle.json``.

    Args:
        source: how the encoder came about (the component's ``training.source``).
        extra: more metadata stored in the tokenizer file.

    Returns:
        The tokenizer file.

    Raises:
        TrainingError: bad data or a layer the encoder lacks; BundleError: another kind of
            bundle, or one at another sample rate, in ``out``.
    """
    folder = Path(out).expanduser()
    started = time.perf_counter()
    try:
        encoder.check_layer(layer)
    except ValueError as exc:
        raise TrainingError(f"{encoder.kind} encoder: {exc}") from exc
    if (folder / BUNDLE_FILE).is_file():
        info = read_bundle(folder)
        info.require_kind("audiolm")
        if info.sample_rate != encoder.sample_rate:
            raise BundleError(
                f"{folder}: the bundle is at {info.sample_rate} Hz, the {encoder.kind} encoder "
                f"at {encoder.sample_rate} Hz"
            )
    folder.mkdir(parents=True, exist_ok=True)
    dataset = WaveformDataset.prepare(
        data, sample_rate=encoder.sample_rate, cache_dir=folder / WORK_DIR if cache else None
    )
    crop = max(encoder.hop, round(crop_seconds * encoder.sample_rate))
    rng = np.random.default_rng([seed, 104_729, 1000])
    tensors = [*encoder.parameters(), *encoder.buffers()]
    device = tensors[0].device if tensors else torch.device("cpu")
    count = max(1, math.ceil(kmeans_seconds / crop_seconds))
    pieces = (
        dataset.sample("train", rng, min(8, count - i), crop).to(device) for i in range(0, count, 8)
    )
    tokenizer = SemanticTokenizer.fit(
        encoder, pieces, layer=layer, n_clusters=n_clusters, seed=seed
    )
    split: Split = "valid" if dataset.valid is not None else "train"
    crops = dataset.sample(split, np.random.default_rng([seed, 31337]), 8, crop)
    usage = token_usage(tokenizer.tokens(crops), tokenizer.n_tokens)
    purity = riff_purity(tokenizer)
    path = tokenizer.save(folder / WEIGHTS_FILE, extra={"source": source, **(extra or {})})
    write_component(
        folder,
        COMPONENT,
        file=WEIGHTS_FILE,
        config=tokenizer.config.to_dict(),
        kind="audiolm",
        sample_rate=tokenizer.sample_rate,
        training={
            "source": source,
            "data": str(data),
            "hours": round(dataset.train_hours, 6),
            "tokens": f"k-means({n_clusters}) of layer {layer} features",
            "kmeans_seconds": kmeans_seconds,
            "seed": seed,
            "time_seconds": round(time.perf_counter() - started, 3),
            "audiogen_studio": __version__,
        },
        metrics={
            "token_usage": round(usage["used_fraction"], 4),
            "token_perplexity": round(usage["perplexity"], 2),
            "tokens_measured_on": split,
            "riff_purity": round(float(purity["purity"]), 4),
            "n_tokens": tokenizer.n_tokens,
            "token_rate": tokenizer.token_rate,
            "parameters": count_parameters(encoder),
        },
        name=name,
    )
    return path


def tokenizer_from_chroma(
    data: str | Path,
    out: str | Path,
    *,
    config: ChromaConfig | None = None,
    n_clusters: int = 500,
    kmeans_seconds: float = 1_200.0,
    crop_seconds: float = 4.0,
    seed: int = 0,
    name: str | None = None,
    cache: bool = True,
) -> Path:
    """The ``semantic`` component of bundle ``out``: k-means (``n_clusters``) of the
    pitch-class features of :class:`~audiogen_studio.models.chroma_encoder.ChromaEncoder`
    (``config``, default :class:`ChromaConfig`) over ``kmeans_seconds`` of ``data``.

    The LMs of a bundle are trained on its semantic tokens: after replacing the tokenizer,
    train ``lm-semantic`` and ``lm-coarse`` again (``lm-fine`` does not read semantic tokens).

    Returns:
        The tokenizer file.
    """
    encoder = ChromaEncoder(config or ChromaConfig())
    c = encoder.config
    return fit_encoder_tokenizer(
        encoder,
        data,
        out,
        layer=0,
        n_clusters=n_clusters,
        kmeans_seconds=kmeans_seconds,
        crop_seconds=crop_seconds,
        seed=seed,
        name=name,
        cache=cache,
        source=(
            f"chroma encoder (no training): 12 pitch classes {c.f_min:g}-{c.f_max:g} Hz from a "
            f"{c.n_fft}-point STFT, log energy and onset, hop {c.hop}"
        ),
    )
