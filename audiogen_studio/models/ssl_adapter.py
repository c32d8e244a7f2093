"""Semantic tokens from a torchaudio HuBERT / wav2vec 2.0 whose weights the user has on disk.

AudioLM (Borsos et al. 2022, §3.1) takes semantic tokens from k-means over an intermediate layer
of a pretrained self-supervised speech model. This module builds such a model's *architecture*
with torchaudio (``torchaudio.models.wav2vec2_model`` — HuBERT (Hsu et al. 2021) and wav2vec 2.0
(Baevski et al. 2020) share it), randomly initialised, and loads a LOCAL weights file into it.
Nothing is ever downloaded. The result is a
:class:`~audiogen_studio.models.semantic.FeatureEncoder`, so
:meth:`SemanticTokenizer.fit <audiogen_studio.models.semantic.SemanticTokenizer.fit>` turns it into
the same :class:`~audiogen_studio.models.semantic.SemanticTokenizer` the project's own encoder
gives (one safetensors file: weights + centroids; the pipeline treats both alike).

Weights files: **safetensors only**. Accepted key layouts (detected automatically):

- torchaudio (``model.state_dict()`` of a ``Wav2Vec2Model``: ``feature_extractor.*``,
  ``encoder.feature_projection.*``, ``encoder.transformer.*``), as written by
  :func:`save_ssl_weights` or converted from a torchaudio ``.pth``;
- Hugging Face ``transformers`` (``HubertModel`` / ``Wav2Vec2Model`` and their ``*ForCTC`` /
  ``*ForPreTraining`` wrappers: ``feature_projection.*``, ``encoder.pos_conv_embed.*``, optional
  ``hubert.`` / ``wav2vec2.`` prefix) — a hub ``model.safetensors`` works as it is;
- fairseq (``post_extract_proj.*``, ``encoder.pos_conv.0.*``), converted with torchaudio's own
  key map.

Old-style weight-norm keys (``weight_g`` / ``weight_v``) are renamed to torch's parametrization
keys. Heads that are not part of the encoder (CTC, quantizer, label embeddings) are dropped.

A pickle file (``.pt``, ``.pth``, ``.bin``, ``.ckpt``) is refused — unpickling runs code. Convert
it once, on a machine and with a file you trust, with this one-liner (``sd.get('model', sd)``
unwraps fairseq checkpoints; those also need ``weights_only=False``, which unpickles)::

    python -c "import sys, torch; from safetensors.torch import save_file; \\
    sd = torch.load(sys.argv[1], map_location='cpu', weights_only=True); \\
    sd = sd.get('model', sd); \\
    save_file({k: v.contiguous() for k, v in sd.items() if torch.is_tensor(v)}, sys.argv[2])" \\
    hubert.pth hubert.safetensors

Architecture: a name of :data:`SSL_ARCHITECTURES` (``hubert_base``, ``hubert_large``,
``hubert_xlarge``, ``wav2vec2_base``, ``wav2vec2_large``, ``wav2vec2_large_lv60k``), an
:class:`SSLConfig` (any ``wav2vec2_model`` arguments), the ``SSLConfig`` stored in the file's
metadata by :func:`save_ssl_weights`, or — when none is given — inferred from the tensor shapes
(attention heads from the width: 768 → 12, 1024 → 16, 1280 → 16; pass a config otherwise).

Frames: the CNN has stride 320 (50 Hz at 16 kHz) and a 400-sample receptive field; the audio is
zero-padded by 40 samples on the left and as needed on the right, so ``T`` samples give
``ceil(T / 320)`` frames and frame ``j`` is centred on ``j·320 + 160`` — the same convention as
:mod:`audiogen_studio.models.semantic`. Layer ``l`` (1-based) is the output of transformer layer
``l`` (``Wav2Vec2Model.extract_features``); layer 0 is not available here.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812
import torchaudio
from torch import nn

from audiogen_studio.models.checkpoint import (
    CheckpointError,
    config_from_dict,
    load_state,
    save_module,
)
from audiogen_studio.models.semantic import (
    FeatureEncoder,
    SemanticTokenizer,
    frame_count,
)

__all__ = [
    "SSL_ARCHITECTURES",
    "SSLConfig",
    "SSLWeightsError",
    "TorchaudioSSLEncoder",
    "describe",
    "fit_ssl_tokenizer",
    "infer_ssl_config",
    "load_ssl_encoder",
    "save_ssl_weights",
    "to_torchaudio_state",
]

_DROPOUTS = {
    "encoder_projection_dropout": 0.0,
    "encoder_attention_dropout": 0.0,
    "encoder_ff_interm_dropout": 0.0,
    "encoder_dropout": 0.0,
    "encoder_layer_drop": 0.0,
}


def _preset(
    mode: str, bias: bool, dim: int, layers: int, heads: int, ff: int, ln_first: bool
) -> dict[str, Any]:
    return {
        "extractor_mode": mode,
        "extractor_conv_layer_config": None,
        "extractor_conv_bias": bias,
        "encoder_embed_dim": dim,
        "encoder_pos_conv_kernel": 128,
        "encoder_pos_conv_groups": 16,
        "encoder_num_layers": layers,
        "encoder_num_heads": heads,
        "encoder_ff_interm_features": ff,
        "encoder_layer_norm_first": ln_first,
        **_DROPOUTS,
    }


#: ``torchaudio.models.wav2vec2_model`` arguments of torchaudio's named builders (dropouts 0:
#: the encoder only ever runs in eval mode here), and whether the model expects each waveform
#: normalised to zero mean and unit variance (torchaudio's pipelines' ``_normalize_waveform``).
SSL_ARCHITECTURES: dict[str, tuple[dict[str, Any], bool]] = {
    "hubert_base": (_preset("group_norm", False, 768, 12, 12, 3072, False), False),
    "wav2vec2_base": (_preset("group_norm", False, 768, 12, 12, 3072, False), False),
    "wav2vec2_large": (_preset("group_norm", False, 1024, 24, 16, 4096, False), False),
    "hubert_large": (_preset("layer_norm", False, 1024, 24, 16, 4096, True), True),
    "wav2vec2_large_lv60k": (_preset("layer_norm", True, 1024, 24, 16, 4096, True), True),
    "hubert_xlarge": (_preset("layer_norm", False, 1280, 48, 16, 5120, True), True),
}

_HEADS_BY_WIDTH = {768: 12, 1024: 16, 1280: 16}
_DEFAULT_CONV = [(512, 10, 5)] + [(512, 3, 2)] * 4 + [(512, 2, 2)] * 2
_PICKLE_SUFFIXES = {".pt", ".pth", ".bin", ".ckpt", ".pkl", ".pickle", ".tar"}
CONVERT_HINT = (
    'convert it once with: python -c "import sys,torch; from safetensors.torch import '
    "save_file; sd=torch.load(sys.argv[1], map_location='cpu', weights_only=True); "
    "sd=sd.get('model', sd); save_file({k: v.contiguous() for k, v in sd.items() if "
    'torch.is_tensor(v)}, sys.argv[2])" IN.pth OUT.safetensors'
)


class SSLWeightsError(CheckpointError):
    """A weights file is not safetensors, or does not fit a torchaudio HuBERT / wav2vec 2.0."""


@dataclass(frozen=True, kw_only=True)
class SSLConfig:
    """A torchaudio ``Wav2Vec2Model`` architecture (``SSLConfig.from_dict(c.to_dict())`` rebuilds).

    Attributes:
        model: keyword arguments of ``torchaudio.models.wav2vec2_model`` (without
            ``aux_num_out``); ``extractor_conv_layer_config`` is ``None`` (the standard 7-layer
            CNN) or ``[[channels, kernel, stride], ...]``.
        arch: a name of :data:`SSL_ARCHITECTURES` or ``"custom"`` (informative).
        normalize_waveform: normalise each waveform to zero mean, unit variance first.
        sample_rate: Hz the model was trained at.
    """

    model: dict[str, Any] = field(default_factory=dict)
    arch: str = "custom"
    normalize_waveform: bool = False
    sample_rate: int = 16_000

    def __post_init__(self) -> None:
        model = dict(self.model)
        model.pop("aux_num_out", None)
        for key, value in _DROPOUTS.items():
            model.setdefault(key, value)
        conv = model.get("extractor_conv_layer_config")
        if conv is not None:
            model["extractor_conv_layer_config"] = [[int(v) for v in layer] for layer in conv]
        object.__setattr__(self, "model", model)
        required = set(_preset("group_norm", False, 8, 1, 1, 8, False))
        missing = sorted(required - set(model))
        if missing:
            raise ValueError(f"SSLConfig.model lacks {', '.join(missing)}")
        if self.sample_rate < 1:
            raise ValueError(f"SSLConfig.sample_rate must be positive, got {self.sample_rate}")

    @classmethod
    def named(cls, arch: str) -> SSLConfig:
        """The config of a torchaudio builder name (``hubert_base``, ...)."""
        if arch not in SSL_ARCHITECTURES:
            raise ValueError(
                f"unknown SSL architecture {arch!r} (use {', '.join(SSL_ARCHITECTURES)})"
            )
        model, normalize = SSL_ARCHITECTURES[arch]
        return cls(model=dict(model), arch=arch, normalize_waveform=normalize)

    @property
    def conv_layers(self) -> list[tuple[int, int, int]]:
        """``(channels, kernel, stride)`` of each CNN layer."""
        conv = self.model.get("extractor_conv_layer_config")
        if not conv:
            return list(_DEFAULT_CONV)
        return [(int(c), int(k), int(s)) for c, k, s in conv]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SSLConfig:
        """Rebuild from :meth:`to_dict` output (``ValueError`` on unknown keys)."""
        return config_from_dict(cls, data, "SSL config", article="an")


class TorchaudioSSLEncoder(FeatureEncoder):
    """A torchaudio ``Wav2Vec2Model`` (HuBERT / wav2vec 2.0) as a semantic feature encoder.

    ``features(audio [B, T], layer) → [B, ceil(T / hop), D]``: output of transformer layer
    ``layer`` (1-based) with ``hop`` = product of the CNN strides (320) and ``D`` =
    ``encoder_embed_dim``. Always evaluated in eval mode (no dropout).
    """

    kind: ClassVar[str] = "torchaudio-ssl"

    def __init__(self, config: SSLConfig) -> None:
        super().__init__()
        self.config = config
        kwargs = dict(config.model)
        conv = kwargs.get("extractor_conv_layer_config")
        if conv is not None:
            kwargs["extractor_conv_layer_config"] = [tuple(layer) for layer in conv]
        try:
            self.model = torchaudio.models.wav2vec2_model(**kwargs, aux_num_out=None)
        except (TypeError, ValueError, RuntimeError) as exc:
            raise ValueError(f"cannot build this torchaudio architecture ({exc})") from exc
        self.sample_rate = config.sample_rate
        self.num_layers = int(kwargs["encoder_num_layers"])
        self.hop = math.prod(stride for _, _, stride in config.conv_layers)
        receptive, jump = 1, 1
        for _, kernel, stride in config.conv_layers:
            receptive += (kernel - 1) * jump
            jump *= stride
        self.receptive_field = receptive
        self.dim = int(kwargs["encoder_embed_dim"])
        self.eval()

    def check_layer(self, layer: int) -> None:
        """Raise ``ValueError`` unless ``1 <= layer <= num_layers``."""
        if not isinstance(layer, int) or not 1 <= layer <= self.num_layers:
            raise ValueError(f"layer must be within 1..{self.num_layers}, got {layer!r}")

    def feature_dim(self, layer: int) -> int:
        """``encoder_embed_dim``."""
        self.check_layer(layer)
        return self.dim

    def config_dict(self) -> dict[str, Any]:
        """:meth:`SSLConfig.to_dict`."""
        return self.config.to_dict()

    def features(self, audio: torch.Tensor, layer: int) -> torch.Tensor:
        """Output of transformer layer ``layer``, ``[B, ceil(T / hop), D]`` (module docstring)."""
        self.check_layer(layer)
        x = audio.float()
        if self.config.normalize_waveform:
            x = F.layer_norm(x, x.shape[-1:])
        frames = frame_count(x.shape[-1], self.hop)
        left = (self.receptive_field - self.hop) // 2
        right = (frames - 1) * self.hop + self.receptive_field - left - x.shape[-1]
        x = F.pad(x, (left, right))
        outputs, _ = self.model.extract_features(x, num_layers=layer)
        last: torch.Tensor = outputs[-1]
        return last


# --- weights files --------------------------------------------------------------------------------


def _refuse_pickle(path: Path) -> None:
    if not path.exists():
        raise SSLWeightsError(path, "file not found")
    if path.is_dir():
        raise SSLWeightsError(path, "is a directory, not a .safetensors weights file")
    with path.open("rb") as f:
        head = f.read(16)
    is_zip = head.startswith(b"PK\x03\x04")
    is_pickle = head[:1] == b"\x80" and len(head) > 1 and head[1] <= 5
    looks_safetensors = len(head) >= 9 and head[8:9] == b"{"
    if path.suffix.lower() in _PICKLE_SUFFIXES or is_zip or is_pickle or not looks_safetensors:
        kind = "a PyTorch pickle file" if (is_zip or is_pickle) else "not a safetensors file"
        raise SSLWeightsError(
            path,
            f"{kind}: only .safetensors weights are loaded (unpickling can run code); "
            + CONVERT_HINT,
        )


_WRAPPERS = ("module.", "w2v_encoder.w2v_model.", "w2v_model.", "hubert.", "wav2vec2.", "model.")
_HF_DROP = re.compile(
    r"^(masked_spec_embed|lm_head\.|quantizer\.|project_hid\.|project_q\.|final_proj\."
    r"|label_embeddings|label_embs_concat|mask_emb|dropout_features|classifier\.|projector\.)"
)


def _strip_wrappers(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out = dict(state)
    changed = True
    while changed:
        changed = False
        if any(k.startswith("feature_extractor.") for k in out):
            break
        for prefix in _WRAPPERS:
            if any(k.startswith(prefix + "feature_extractor.") for k in out):
                out = {k.removeprefix(prefix): v for k, v in out.items()}
                changed = True
                break
    return out


def _rename_weight_norm(key: str) -> str:
    key = re.sub(r"\.weight_g$", ".parametrizations.weight.original0", key)
    return re.sub(r"\.weight_v$", ".parametrizations.weight.original1", key)


def to_torchaudio_state(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A HuBERT / wav2vec 2.0 state dict in torchaudio's key layout (module docstring).

    Raises:
        ValueError: no known layout (no ``feature_extractor.*`` keys).
    """
    sd = _strip_wrappers(state)
    keys = list(sd)
    if not any(k.startswith("feature_extractor.") for k in keys):
        raise ValueError("no feature_extractor.* tensors: not a HuBERT / wav2vec 2.0 state dict")
    if any(k.startswith(("encoder.transformer.", "encoder.feature_projection.")) for k in keys):
        converted = {k: v for k, v in sd.items() if not k.startswith("aux.")}
    elif any(k.startswith(("post_extract_proj.", "encoder.pos_conv.0.")) for k in keys):
        try:
            from torchaudio.models.wav2vec2.utils.import_fairseq import (
                _convert_state_dict,
            )
        except ImportError as exc:  # pragma: no cover - depends on the torchaudio version
            raise ValueError("this torchaudio cannot convert fairseq keys") from exc
        converted = {
            k: v for k, v in _convert_state_dict(sd).items() if not k.startswith(("aux.", "label"))
        }
    elif any(k.startswith(("feature_projection.", "encoder.pos_conv_embed.")) for k in keys):
        converted = {}
        for k, v in sd.items():
            if _HF_DROP.match(k):
                continue
            if k.startswith("feature_projection."):
                converted["encoder." + k] = v
            elif k.startswith("encoder."):
                converted["encoder.transformer." + k.removeprefix("encoder.")] = v
            elif k.startswith("feature_extractor."):
                converted[k] = v
            elif k.startswith(("adapter.", "layer_norm_for_extract.")):
                continue
            else:
                raise ValueError(f"unexpected tensor {k} in a Hugging Face state dict")
    else:
        raise ValueError("unknown key layout (expected torchaudio, Hugging Face or fairseq keys)")
    return {_rename_weight_norm(k): v for k, v in converted.items()}


def infer_ssl_config(state: Mapping[str, torch.Tensor], *, heads: int | None = None) -> SSLConfig:
    """The architecture of a torchaudio-layout state dict, from its tensor shapes.

    Convention of every published HuBERT / wav2vec 2.0: a layer-norm CNN goes with a pre-norm
    transformer, a group-norm CNN with a post-norm one. Strides are the standard 5,2,2,2,2,2,2
    when the kernels are 10,3,3,3,3,2,2.

    Raises:
        ValueError: missing tensors, a non-standard CNN, or an unknown width without ``heads``.
    """
    try:
        conv: list[list[int]] = []
        i = 0
        while f"feature_extractor.conv_layers.{i}.conv.weight" in state:
            w = state[f"feature_extractor.conv_layers.{i}.conv.weight"]
            conv.append([int(w.shape[0]), int(w.shape[2])])
            i += 1
        kernels = [k for _, k in conv]
        if kernels != [10, 3, 3, 3, 3, 2, 2]:
            raise ValueError(
                f"non-standard CNN kernels {kernels}: pass an SSLConfig with its strides"
            )
        strides = [5, 2, 2, 2, 2, 2, 2]
        layer_norm = "feature_extractor.conv_layers.1.layer_norm.weight" in state
        dim = int(state["encoder.feature_projection.projection.weight"].shape[0])
        layers = 1 + max(
            int(m.group(1))
            for k in state
            if (m := re.match(r"encoder\.transformer\.layers\.(\d+)\.", k))
        )
        ff = int(
            state["encoder.transformer.layers.0.feed_forward.intermediate_dense.weight"].shape[0]
        )
        pos = state["encoder.transformer.pos_conv_embed.conv.parametrizations.weight.original1"]
    except (KeyError, ValueError) as exc:
        if isinstance(exc, ValueError) and "CNN" in str(exc):
            raise
        raise ValueError(f"cannot infer the architecture: missing or odd tensor ({exc})") from exc
    if heads is None:
        if dim not in _HEADS_BY_WIDTH:
            raise ValueError(
                f"cannot infer the attention heads of a {dim}-wide model: pass an SSLConfig"
            )
        heads = _HEADS_BY_WIDTH[dim]
    model = {
        "extractor_mode": "layer_norm" if layer_norm else "group_norm",
        "extractor_conv_layer_config": [[c, k, s] for (c, k), s in zip(conv, strides, strict=True)],
        "extractor_conv_bias": "feature_extractor.conv_layers.0.conv.bias" in state,
        "encoder_embed_dim": dim,
        "encoder_pos_conv_kernel": int(pos.shape[2]),
        "encoder_pos_conv_groups": dim // int(pos.shape[1]),
        "encoder_num_layers": layers,
        "encoder_num_heads": heads,
        "encoder_ff_interm_features": ff,
        "encoder_layer_norm_first": layer_norm,
        **_DROPOUTS,
    }
    arch, normalize = "custom", False
    for name, (preset, norm) in SSL_ARCHITECTURES.items():
        candidate = dict(preset)
        candidate["extractor_conv_layer_config"] = [list(layer) for layer in _DEFAULT_CONV]
        if candidate == model:
            arch, normalize = name, norm
            break
    return SSLConfig(model=model, arch=arch, normalize_waveform=normalize)


def load_ssl_encoder(
    path: str | Path,
    *,
    arch: str | SSLConfig | None = None,
    normalize_waveform: bool | None = None,
    device: str | torch.device = "cpu",
) -> TorchaudioSSLEncoder:
    """Build a torchaudio HuBERT / wav2vec 2.0 and load the local ``.safetensors`` file ``path``.

    Args:
        path: the weights (torchaudio, Hugging Face or fairseq key layout).
        arch: a name of :data:`SSL_ARCHITECTURES`, an :class:`SSLConfig`, or ``None``: the
            config in the file's metadata (:func:`save_ssl_weights`), else inferred from shapes.
        normalize_waveform: override the architecture's waveform normalisation.
        device: where to put the model.

    Raises:
        SSLWeightsError: a pickle or non-safetensors file (the message says how to convert it),
            missing or unexpected tensors, shape mismatches, an unknown architecture.
    """
    p = Path(path)
    _refuse_pickle(p)
    try:
        raw, meta = load_state(p, device="cpu")
    except SSLWeightsError:
        raise
    except CheckpointError as exc:
        raise SSLWeightsError(p, exc.problem) from exc
    try:
        state = to_torchaudio_state(raw)
        if isinstance(arch, SSLConfig):
            config = arch
        elif isinstance(arch, str):
            config = SSLConfig.named(arch)
        elif isinstance(meta.get("config"), dict) and "model" in meta["config"]:
            config = SSLConfig.from_dict(meta["config"])
        else:
            config = infer_ssl_config(state)
        if normalize_waveform is not None:
            config = dataclasses.replace(config, normalize_waveform=normalize_waveform)
        encoder = TorchaudioSSLEncoder(config)
    except ValueError as exc:
        raise SSLWeightsError(p, str(exc)) from exc
    own = encoder.model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    problems = []
    if missing:
        problems.append(f"missing tensors {', '.join(missing[:5])}" + " ..." * (len(missing) > 5))
    if unexpected:
        problems.append(
            f"unexpected tensors {', '.join(unexpected[:5])}" + " ..." * (len(unexpected) > 5)
        )
    for name in sorted(set(own) & set(state)):
        if own[name].shape != state[name].shape:
            problems.append(
                f"shape mismatch: {name} is {list(state[name].shape)} in the file, "
                f"{list(own[name].shape)} in {config.arch}"
            )
            break
    if problems:
        raise SSLWeightsError(p, f"does not fit {config.arch}: " + "; ".join(problems))
    encoder.model.load_state_dict(state)
    return encoder.to(device).eval()


def save_ssl_weights(model: nn.Module, path: str | Path, config: SSLConfig) -> Path:
    """Write a torchaudio ``Wav2Vec2Model``'s weights with its :class:`SSLConfig` (safetensors)."""
    if isinstance(model, TorchaudioSSLEncoder):
        model = model.model
    return save_module(model, path, config, extra={"kind": TorchaudioSSLEncoder.kind})


def fit_ssl_tokenizer(
    encoder: TorchaudioSSLEncoder,
    audio: Iterable[torch.Tensor | np.ndarray[Any, Any]],
    *,
    layer: int,
    n_clusters: int = 500,
    seed: int = 0,
    iters: int = 25,
    max_points: int | None = 200_000,
) -> SemanticTokenizer:
    """k-means (``n_clusters``) over ``encoder``'s ``layer`` features of ``audio`` (pieces at
    ``encoder.sample_rate``) → a :class:`SemanticTokenizer` (save it with ``.save(path)``).

    HuBERT BASE's layer 6 and w2v-BERT's upper-middle layers are the usual choices (AudioLM §4).
    """
    return SemanticTokenizer.fit(
        encoder,
        audio,
        layer=layer,
        n_clusters=n_clusters,
        seed=seed,
        iters=iters,
        max_points=max_points,
    )


def describe(config: SSLConfig) -> str:
    """One line naming the architecture (for logs and bundle descriptions)."""
    m = config.model
    return (
        f"{config.arch}: {m['encoder_num_layers']} layers × {m['encoder_embed_dim']} "
        f"({m['encoder_num_heads']} heads), {m['extractor_mode']} CNN"
        + (", normalised waveform" if config.normalize_waveform else "")
    )
