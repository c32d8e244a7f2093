"""Semantic tokens: a HuBERT-style self-supervised encoder and the k-means tokenizer over it.

AudioLM (Borsos et al. 2022, §3.1 and §4) takes its *semantic tokens* from k-means over the
intermediate activations of a masked-language-model audio encoder (w2v-BERT there). Here the
encoder is trained by the project HuBERT-style (Hsu et al. 2021, §2–3): frames are masked in
spans and the network predicts, on the masked frames, the cluster ids of offline targets — first
k-means of MFCCs, then k-means of its own intermediate features (``training/semantic_trainer``).

Architecture (``B`` batch, ``T`` samples, ``F = ceil(T / hop)`` frames, ``D`` = ``dim``)::

    audio [B, T] ──► front end ──────────────────────► frames [B, F, C]
         "mel":  log-mel, n_fft = next_pow2(2·hop), Hann window 2·hop, hop  (C = n_mels)
         "conv": wav2vec 2.0 / HuBERT waveform CNN (kernel 10 stride 5, then kernel 3/2
                 stride 2 layers; GroupNorm after the first, GELU)            (C = conv_channels)
    LayerNorm(C) → Linear(C, D)                                                [B, F, D]
    masked frames ← learned mask embedding  (span masking, HuBERT §2 / wav2vec 2.0 §3.1)
    x + GELU(grouped Conv1d(x))              convolutional relative positions (wav2vec 2.0 §2)
    depth × pre-norm TransformerEncoderLayer (bidirectional self-attention, GELU FFN)
    LayerNorm                                                                  [B, F, D]
    MaskedPredictionHead: logits = cos(A·h, e_c) / τ over the target clusters  (HuBERT §3)

Frame alignment and padding: frame ``j`` describes the block of samples ``[j·hop, (j+1)·hop)``;
its analysis window is centred on sample ``j·hop + hop/2``. The signal is zero-padded by
``(window - hop) / 2`` samples on the left (``window`` = ``n_fft`` for "mel", the CNN's receptive
field for "conv") and as many on the right as make exactly ``F = ceil(T / hop)`` frames. So
every tokenizer built on this module gives ``ceil(T / hop)`` tokens for ``T`` samples.

Layers: ``features(audio, layer)`` is the output of transformer block ``layer`` (1-based; ``0``
is the transformer's input, after the positional convolution); block ``depth`` includes the
final LayerNorm.

:class:`SemanticTokenizer` pairs any :class:`FeatureEncoder` (this encoder, or a torchaudio
HuBERT / wav2vec 2.0 from :mod:`audiogen_studio.models.ssl_adapter`) with per-dimension feature
normalisation and k-means centroids, and is saved as one safetensors file (encoder weights,
centroids, mean/std, and a :class:`TokenizerConfig` that rebuilds it).

Front end choice, measured on a 2-core CPU (1 thread, ``tiny`` sizes, batch 8 × 1 s of a
plucked-string riff, log-mel targets): the log-mel front end ran 24–31 steps/s and reached 59 %
masked-prediction accuracy after 150 steps (5 s); the waveform CNN (64 channels) ran 5.7–7.4
steps/s and was at 6 % after 100 steps and 32–45 % after 350–400 steps (50 s) — ~10× the wall
time to the same accuracy, since the CNN must first learn a filterbank the STFT gives for free.
So "mel" is the default; "conv" follows the papers and is meant for GPU training.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812
import torchaudio
from torch import nn

from audiogen_studio.audio.errors import AudioError
from audiogen_studio.models.checkpoint import (
    CheckpointError,
    check_state_dict,
    config_from_dict,
    load_state,
    save_module,
)
from audiogen_studio.models.kmeans import assign, kmeans

__all__ = [
    "FIRST_TARGETS",
    "FRONTENDS",
    "NAMED_CONFIGS",
    "FeatureEncoder",
    "MaskedPredictionHead",
    "MaskedPredictionResult",
    "SemanticConfig",
    "SemanticEncoder",
    "SemanticInputError",
    "SemanticTokenizer",
    "TokenizerConfig",
    "check_audio",
    "count_parameters",
    "frame_count",
    "masked_prediction_loss",
    "named_config",
    "pad_to_centred_frames",
    "span_mask",
    "token_purity",
    "token_usage",
]

FRONTENDS = ("mel", "conv")
FIRST_TARGETS = ("logmel", "mfcc")
LOG_MEL_FLOOR = 1e-5


class SemanticInputError(AudioError, ValueError):
    """Audio given to a semantic encoder/tokenizer is empty, not finite, or of the wrong shape."""


def frame_count(length: int, hop: int) -> int:
    """Frames (= tokens) for ``length`` samples: ``ceil(length / hop)``."""
    return -(-int(length) // int(hop))


def pad_to_centred_frames(audio: torch.Tensor, hop: int, window: int) -> torch.Tensor:
    """``audio [..., T]`` zero-padded so that analysis windows of ``window`` samples every
    ``hop`` give exactly ``ceil(T / hop)`` frames, frame ``j`` centred on ``j·hop + hop/2``
    (this module's frame convention): ``window/2 - hop/2`` zeros on the left, the rest on the
    right."""
    frames = frame_count(audio.shape[-1], hop)
    left = window // 2 - hop // 2
    right = window + (frames - 1) * hop - left - audio.shape[-1]
    return F.pad(audio, (left, right))


def count_parameters(module: nn.Module) -> int:
    """Number of scalar parameters."""
    return sum(p.numel() for p in module.parameters())


def check_audio(audio: torch.Tensor | np.ndarray[Any, Any]) -> torch.Tensor:
    """``audio`` as a float32 ``[B, T]`` tensor; ``[T]`` becomes ``[1, T]``.

    Raises:
        SemanticInputError: not 1-D/2-D, no samples, or NaN/infinite values.
    """
    x = (
        torch.from_numpy(np.array(audio, dtype=np.float32))
        if isinstance(audio, np.ndarray)
        else audio
    )
    if not isinstance(x, torch.Tensor):
        raise SemanticInputError(f"audio must be a tensor or numpy array, got {type(audio)!r}")
    if x.ndim == 1:
        x = x[None]
    if x.ndim != 2:
        raise SemanticInputError(f"audio must be [T] or [B, T] samples, got shape {list(x.shape)}")
    if x.shape[0] == 0 or x.shape[1] == 0:
        raise SemanticInputError("audio is empty (no samples)")
    x = x.float()
    if not bool(torch.isfinite(x).all()):
        raise SemanticInputError("audio contains NaN or infinite samples")
    return x


# --- config ---------------------------------------------------------------------------------------


def _conv_layout(hop: int) -> tuple[tuple[int, int], ...]:
    """(kernel, stride) of the waveform CNN for ``hop = 5 · 2**k``: wav2vec 2.0's
    ``(10, 5), (3, 2) × 4, (2, 2) × 2`` for hop 320, one more ``(2, 2)`` per further doubling."""
    k = 0
    rest = hop // 5
    while rest > 1 and rest % 2 == 0:
        rest //= 2
        k += 1
    if hop % 5 or rest != 1:
        raise ValueError(f"the conv front end needs hop = 5 * 2**k (e.g. 320, 640), got {hop}")
    return ((10, 5), *[(3 if i < 4 else 2, 2) for i in range(k)])


@dataclass(frozen=True, kw_only=True)
class SemanticConfig:
    """Hyper-parameters of a :class:`SemanticEncoder` and of its training targets/tokens.

    ``SemanticConfig.from_dict(config.to_dict())`` rebuilds it.

    Attributes:
        sample_rate: Hz of the audio the encoder reads.
        hop: samples per frame (320 → 50 Hz, 640 → 25 Hz at 16 kHz).
        frontend: ``"mel"`` (log-mel) or ``"conv"`` (waveform CNN).
        n_mels: mel bins of the "mel" front end.
        conv_channels: channels of the "conv" front end.
        dim: transformer width ``D``.
        depth: transformer blocks.
        heads: attention heads (``dim % heads == 0``).
        ff_mult: feed-forward width = ``ff_mult · dim``.
        dropout: dropout in the transformer and on its input (training only).
        pos_conv_kernel: odd kernel of the convolutional positional embedding.
        pos_conv_groups: its groups (divides ``dim``).
        mask_prob: probability that a frame starts a masked span (HuBERT: 0.08).
        mask_length: frames per masked span (HuBERT: 10 at 50 Hz).
        first_targets: features clustered into the iteration-1 targets: ``"logmel"`` (80-bin
            log-mel frames) or ``"mfcc"`` (13 MFCCs + deltas + delta-deltas, HuBERT's choice for
            speech). MFCCs drop pitch: on a plucked-string riff k-means of MFCCs gives note
            purity 0.43–0.52 where log-mel gives 0.77–0.98 (16–100 clusters), and an encoder
            trained on MFCC targets loses the pitch information a random one has — so log-mel is
            the default for this music-and-speech app.
        first_clusters: k-means clusters of the iteration-1 targets (HuBERT: 100).
        target_clusters: k-means clusters of the feature targets of iterations ≥ 2 (HuBERT: 500).
        target_layer: block whose features are clustered into the iteration ≥ 2 targets.
        feature_layer: block whose features feed the final tokenizer's k-means.
        n_clusters: tokens of the final tokenizer (AudioLM: 1024 at 25 Hz; HuBERT: 500).
        head_dim: projection size of the prediction head.
        logit_temperature: τ of the cosine-similarity logits (HuBERT: 0.1).
    """

    sample_rate: int = 16_000
    hop: int = 320
    frontend: str = "mel"
    n_mels: int = 80
    conv_channels: int = 256
    dim: int = 256
    depth: int = 6
    heads: int = 4
    ff_mult: int = 4
    dropout: float = 0.1
    pos_conv_kernel: int = 31
    pos_conv_groups: int = 16
    mask_prob: float = 0.08
    mask_length: int = 10
    first_targets: str = "logmel"
    first_clusters: int = 100
    target_clusters: int = 500
    target_layer: int = 4
    feature_layer: int = 4
    n_clusters: int = 500
    head_dim: int = 256
    logit_temperature: float = 0.1

    def __post_init__(self) -> None:
        for name in (
            "sample_rate",
            "hop",
            "n_mels",
            "conv_channels",
            "dim",
            "depth",
            "heads",
            "ff_mult",
            "pos_conv_kernel",
            "pos_conv_groups",
            "mask_length",
            "head_dim",
        ):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"SemanticConfig.{name} must be a positive integer, got {value!r}")
        for name in ("first_clusters", "target_clusters", "n_clusters"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 2:
                raise ValueError(f"SemanticConfig.{name} must be an integer >= 2, got {value!r}")
        if self.first_targets not in FIRST_TARGETS:
            raise ValueError(
                f"SemanticConfig.first_targets must be one of {FIRST_TARGETS}, "
                f"got {self.first_targets!r}"
            )
        if self.frontend not in FRONTENDS:
            raise ValueError(
                f"SemanticConfig.frontend must be one of {FRONTENDS}, got {self.frontend!r}"
            )
        if self.frontend == "conv":
            _conv_layout(self.hop)
        if self.hop < 2:
            raise ValueError(f"SemanticConfig.hop must be at least 2, got {self.hop}")
        if self.dim % self.heads:
            raise ValueError(
                f"SemanticConfig: dim ({self.dim}) must be a multiple of heads ({self.heads})"
            )
        if self.dim % self.pos_conv_groups:
            raise ValueError(
                f"SemanticConfig: dim ({self.dim}) must be a multiple of pos_conv_groups "
                f"({self.pos_conv_groups})"
            )
        if self.pos_conv_kernel % 2 == 0:
            raise ValueError(
                f"SemanticConfig.pos_conv_kernel must be odd, got {self.pos_conv_kernel}"
            )
        for name in ("target_layer", "feature_layer"):
            value = getattr(self, name)
            if not isinstance(value, int) or not 0 <= value <= self.depth:
                raise ValueError(
                    f"SemanticConfig.{name} must be within 0..depth ({self.depth}), got {value!r}"
                )
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"SemanticConfig.dropout must be within [0, 1), got {self.dropout}")
        if not 0.0 < self.mask_prob < 1.0:
            raise ValueError(
                f"SemanticConfig.mask_prob must be within (0, 1), got {self.mask_prob}"
            )
        if not self.logit_temperature > 0:
            raise ValueError("SemanticConfig.logit_temperature must be positive")

    @property
    def token_rate(self) -> float:
        """Frames (tokens) per second."""
        return self.sample_rate / self.hop

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SemanticConfig:
        """Rebuild from :meth:`to_dict` output.

        Raises:
            ValueError: unknown keys or invalid values.
        """
        return config_from_dict(cls, data, "semantic config")


#: Named configurations for ``audiogen-studio train semantic --config NAME``.
#:
#: - ``tiny``: tests and the end-to-end test stack (mel front end, 2 × 64-wide blocks, ~0.1 M
#:   parameters; 32 tokens at 50 Hz). Trains on a riff in seconds on one CPU thread.
#: - ``default``: the shipped bundles (mel front end, 6 × 256-wide blocks, ~5 M parameters;
#:   500 tokens at 50 Hz, HuBERT's numbers; features of block 4 feed k-means).
#: - ``base``: HuBERT BASE sizes for GPU training (conv front end 512 channels, 12 × 768 blocks,
#:   ~95 M parameters; tokens from block 9 as in AudioLM's choice of an upper-middle layer).
NAMED_CONFIGS: dict[str, SemanticConfig] = {
    "tiny": SemanticConfig(
        dim=64,
        depth=2,
        heads=4,
        n_mels=40,
        dropout=0.0,
        pos_conv_kernel=15,
        pos_conv_groups=8,
        mask_length=5,
        first_clusters=32,
        target_clusters=32,
        target_layer=1,
        feature_layer=2,
        n_clusters=32,
        head_dim=64,
    ),
    "default": SemanticConfig(),
    "base": SemanticConfig(
        frontend="conv",
        conv_channels=512,
        dim=768,
        depth=12,
        heads=12,
        ff_mult=4,
        pos_conv_kernel=127,
        pos_conv_groups=16,
        target_layer=6,
        feature_layer=9,
        n_clusters=1024,
        head_dim=256,
    ),
}


def named_config(name: str) -> SemanticConfig:
    """A config of :data:`NAMED_CONFIGS`, or one read from a ``.json`` file.

    Raises:
        ValueError: unknown name, unreadable or invalid JSON.
    """
    if name in NAMED_CONFIGS:
        return NAMED_CONFIGS[name]
    path = Path(name)
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ValueError(f"{path}: cannot read a semantic config ({exc})") from exc
        return SemanticConfig.from_dict(data)
    raise ValueError(
        f"unknown semantic config {name!r} (use {', '.join(NAMED_CONFIGS)} or a .json file)"
    )


# --- feature encoders -----------------------------------------------------------------------------


class FeatureEncoder(nn.Module):
    """What a :class:`SemanticTokenizer` needs of an encoder (subclasses implement it).

    Attributes:
        kind: the name under which :class:`TokenizerConfig` records the encoder type.
        sample_rate: Hz of the audio it reads.
        hop: samples per output frame; ``features`` gives ``ceil(T / hop)`` frames.
        num_layers: valid ``layer`` values are ``0 .. num_layers``.
    """

    kind: ClassVar[str] = ""
    sample_rate: int
    hop: int
    num_layers: int

    def features(self, audio: torch.Tensor, layer: int) -> torch.Tensor:
        """``audio [B, T]`` → features of ``layer``, ``[B, ceil(T / hop), D]``."""
        raise NotImplementedError

    def feature_dim(self, layer: int) -> int:
        """``D`` of :meth:`features` at ``layer``."""
        raise NotImplementedError

    def config_dict(self) -> dict[str, Any]:
        """JSON config that rebuilds this encoder (see :func:`build_encoder`)."""
        raise NotImplementedError

    def check_layer(self, layer: int) -> None:
        """Raise ``ValueError`` unless ``0 <= layer <= num_layers``."""
        if not isinstance(layer, int) or not 0 <= layer <= self.num_layers:
            raise ValueError(f"layer must be within 0..{self.num_layers}, got {layer!r}")


class MelFrontend(nn.Module):
    """Log-mel frames ``[B, T] → [B, ceil(T / hop), n_mels]`` (natural log, floor 1e-5).

    STFT with a Hann window of ``2·hop`` samples inside ``n_fft = next_pow2(2·hop)``; the signal
    is zero-padded by ``n_fft/2 - hop/2`` on the left so frame ``j`` is centred on
    ``j·hop + hop/2`` (torchaudio ``MelSpectrogram``, Slaney mel scale, power spectrum).
    """

    def __init__(self, sample_rate: int, hop: int, n_mels: int) -> None:
        super().__init__()
        self.hop = hop
        self.win = 2 * hop
        self.n_fft = 1 << (self.win - 1).bit_length()
        self.out_channels = n_mels
        self.mel = torchaudio.transforms.MelSpectrogram(
            sample_rate=sample_rate,
            n_fft=self.n_fft,
            win_length=self.win,
            hop_length=hop,
            n_mels=n_mels,
            center=False,
            power=2.0,
            norm="slaney",
            mel_scale="slaney",
        )

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        padded = pad_to_centred_frames(audio.float(), self.hop, self.n_fft)
        with torch.autocast(device_type=audio.device.type, enabled=False):
            mel = self.mel(padded)  # [B, n_mels, F]
        return torch.log(mel.clamp_min(LOG_MEL_FLOOR)).transpose(1, 2)


class ConvFrontend(nn.Module):
    """wav2vec 2.0 / HuBERT waveform CNN ``[B, T] → [B, ceil(T / hop), C]`` (wav2vec 2.0 §2).

    ``Conv1d(1, C, 10, 5) → GroupNorm(C, C) → GELU`` then ``Conv1d(C, C, k, 2) → GELU`` layers
    (see :func:`_conv_layout`); no bias. Padding: ``(R - hop) / 2`` zeros on the left, where
    ``R`` is the CNN's receptive field (400 samples for hop 320), and enough on the right for
    ``ceil(T / hop)`` frames, so frame ``j`` is centred on ``j·hop + hop/2``.
    """

    def __init__(self, hop: int, channels: int) -> None:
        super().__init__()
        layout = _conv_layout(hop)
        self.hop = hop
        self.out_channels = channels
        receptive, jump = 1, 1
        for kernel, stride in layout:
            receptive += (kernel - 1) * jump
            jump *= stride
        self.receptive_field = receptive
        layers: list[nn.Module] = []
        for i, (kernel, stride) in enumerate(layout):
            layers.append(
                nn.Conv1d(1 if i == 0 else channels, channels, kernel, stride, bias=False)
            )
            if i == 0:
                layers.append(nn.GroupNorm(channels, channels))
            layers.append(nn.GELU())
        self.layers = nn.Sequential(*layers)

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        frames = frame_count(audio.shape[-1], self.hop)
        left = (self.receptive_field - self.hop) // 2
        right = (frames - 1) * self.hop + self.receptive_field - left - audio.shape[-1]
        x = F.pad(audio[:, None], (left, right))  # [B, 1, T']
        out: torch.Tensor = self.layers(x)  # [B, C, F]
        return out.transpose(1, 2)


class SemanticEncoder(FeatureEncoder):
    """HuBERT-style bidirectional encoder (module docstring; Hsu et al. 2021 §2–3).

    ``forward(audio [B, T], mask [B, F] | None) → [B, F, D]`` (final block, normalised);
    :meth:`hidden_states` gives every block's output; :meth:`features` one block's.
    """

    kind: ClassVar[str] = "audiogen-hubert"

    def __init__(self, config: SemanticConfig) -> None:
        super().__init__()
        self.config = config
        self.sample_rate = config.sample_rate
        self.hop = config.hop
        self.num_layers = config.depth
        self.frontend: MelFrontend | ConvFrontend
        if config.frontend == "mel":
            self.frontend = MelFrontend(config.sample_rate, config.hop, config.n_mels)
        else:
            self.frontend = ConvFrontend(config.hop, config.conv_channels)
        channels = self.frontend.out_channels
        self.frontend_norm = nn.LayerNorm(channels)
        self.projection = nn.Linear(channels, config.dim)
        self.mask_embedding = nn.Parameter(torch.empty(config.dim).uniform_())
        self.pos_conv = nn.Conv1d(
            config.dim,
            config.dim,
            config.pos_conv_kernel,
            padding=config.pos_conv_kernel // 2,
            groups=config.pos_conv_groups,
        )
        self.input_dropout = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(
            nn.TransformerEncoderLayer(
                config.dim,
                config.heads,
                dim_feedforward=config.ff_mult * config.dim,
                dropout=config.dropout,
                activation="gelu",
                batch_first=True,
                norm_first=True,
            )
            for _ in range(config.depth)
        )
        self.final_norm = nn.LayerNorm(config.dim)

    # --- FeatureEncoder ---

    def feature_dim(self, layer: int) -> int:
        """``dim`` for every layer."""
        self.check_layer(layer)
        return self.config.dim

    def config_dict(self) -> dict[str, Any]:
        """:meth:`SemanticConfig.to_dict`."""
        return self.config.to_dict()

    def frames(self, length: int) -> int:
        """``ceil(length / hop)``."""
        return frame_count(length, self.hop)

    # --- computation ---

    def embed(self, audio: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Transformer input ``[B, F, D]``: front end, projection, mask embedding, positions.

        Args:
            audio: ``[B, T]`` float samples at ``sample_rate``.
            mask: ``[B, F]`` bool, ``True`` where the frame is replaced by the mask embedding.
        """
        x = self.projection(self.frontend_norm(self.frontend(audio)))  # [B, F, D]
        if mask is not None:
            if mask.shape != x.shape[:2]:
                raise ValueError(
                    f"mask must be [B, F] = {list(x.shape[:2])}, got {list(mask.shape)}"
                )
            x = torch.where(mask[..., None], self.mask_embedding.to(x.dtype), x)
        x = x + F.gelu(self.pos_conv(x.transpose(1, 2))).transpose(1, 2)
        out: torch.Tensor = self.input_dropout(x)
        return out

    def hidden_states(
        self, audio: torch.Tensor, mask: torch.Tensor | None = None, *, upto: int | None = None
    ) -> list[torch.Tensor]:
        """``[h_0, h_1, ..., h_upto]``, each ``[B, F, D]``; ``h_depth`` is normalised."""
        upto = self.num_layers if upto is None else upto
        self.check_layer(upto)
        states = [self.embed(audio, mask)]
        for i in range(upto):
            h = self.blocks[i](states[-1])
            if i + 1 == self.num_layers:
                h = self.final_norm(h)
            states.append(h)
        return states

    def forward(self, audio: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Final (normalised) block output ``[B, F, D]`` for ``audio [B, T]``."""
        return self.hidden_states(audio, mask)[-1]

    def features(self, audio: torch.Tensor, layer: int) -> torch.Tensor:
        """Output of block ``layer``, ``[B, ceil(T / hop), D]`` (no mask)."""
        return self.hidden_states(audio, None, upto=layer)[-1]


# --- masked prediction ----------------------------------------------------------------------------


def span_mask(
    batch: int,
    frames: int,
    *,
    prob: float,
    length: int,
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """Span mask ``[batch, frames]`` bool (wav2vec 2.0 §3.1, HuBERT §2).

    Every frame that leaves room for a whole span starts one with probability ``prob``; each
    start masks itself and the ``length - 1`` frames after it (spans may overlap), so about
    ``1 - (1 - prob) ** length`` of the frames are masked (≈ 57 % for 0.08 × 10). Every row
    gets at least one span. Drawn on the CPU from ``generator`` (reproducible), then moved.
    """
    if batch < 1 or frames < 1:
        raise ValueError(f"span_mask needs batch, frames >= 1, got {batch}, {frames}")
    span = max(1, min(length, frames))
    positions = frames - span + 1
    starts = torch.rand(batch, positions, generator=generator) < prob
    empty = ~starts.any(1)
    if bool(empty.any()):
        pick = torch.randint(positions, (batch,), generator=generator)
        starts[empty, pick[empty]] = True
    padded = F.pad(starts.float()[:, None], (span - 1, span - 1))  # [B, 1, frames + span - 1]
    mask = F.max_pool1d(padded, kernel_size=span, stride=1)[:, 0] > 0  # [B, frames]
    return mask.to(device)


class MaskedPredictionHead(nn.Module):
    """HuBERT's prediction head (Hsu et al. 2021 §3): ``logits[c] = cos(A·h, e_c) / τ``.

    ``forward(h [B, F, D]) → logits [B, F, K]``; ``K`` = ``n_targets`` clusters.
    """

    def __init__(self, dim: int, n_targets: int, *, head_dim: int, temperature: float) -> None:
        super().__init__()
        self.n_targets = n_targets
        self.temperature = temperature
        self.projection = nn.Linear(dim, head_dim)
        self.embeddings = nn.Parameter(torch.randn(n_targets, head_dim))

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        z = F.normalize(self.projection(hidden).float(), dim=-1)  # [B, F, E]
        e = F.normalize(self.embeddings.float(), dim=-1)  # [K, E]
        return (z @ e.T) / self.temperature


@dataclass(frozen=True)
class MaskedPredictionResult:
    """Cross-entropy on the masked frames and the accuracy of its argmax there."""

    loss: torch.Tensor
    accuracy: float
    masked_frames: int


def masked_prediction_loss(
    logits: torch.Tensor,
    targets: torch.Tensor,
    mask: torch.Tensor,
    *,
    unmasked_weight: float = 0.0,
) -> MaskedPredictionResult:
    """HuBERT's loss ``L = L_m + unmasked_weight · L_u`` (§2; α = 1 in the paper's best setup).

    Args:
        logits: ``[B, F, K]``.
        targets: ``[B, F]`` cluster ids in ``0 .. K-1``.
        mask: ``[B, F]`` bool, the masked frames.
        unmasked_weight: weight of the cross-entropy on the unmasked frames.
    """
    flat_logits = logits.reshape(-1, logits.shape[-1]).float()
    flat_targets = targets.reshape(-1)
    flat_mask = mask.reshape(-1)
    masked = flat_mask.nonzero().squeeze(1)
    if masked.numel() == 0:
        raise ValueError("masked_prediction_loss: no masked frames")
    loss = F.cross_entropy(flat_logits[masked], flat_targets[masked])
    if unmasked_weight > 0:
        unmasked = (~flat_mask).nonzero().squeeze(1)
        if unmasked.numel():
            loss = loss + unmasked_weight * F.cross_entropy(
                flat_logits[unmasked], flat_targets[unmasked]
            )
    with torch.no_grad():
        hits = (flat_logits[masked].argmax(-1) == flat_targets[masked]).float().mean()
    return MaskedPredictionResult(loss, float(hits), int(masked.numel()))


# --- tokenizer ------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class TokenizerConfig:
    """What rebuilds a :class:`SemanticTokenizer`: the encoder type and config, the layer, ``K``.

    Attributes:
        encoder: :attr:`FeatureEncoder.kind` (``"audiogen-hubert"``, ``"torchaudio-ssl"`` or
            ``"chroma"``).
        encoder_config: the encoder's :meth:`FeatureEncoder.config_dict`.
        layer: block whose features are tokenized.
        n_tokens: ``K``, number of centroids.
        dim: ``D``, feature size.
        sample_rate: Hz of the audio the tokenizer reads.
        hop: samples per token.
    """

    encoder: str
    encoder_config: dict[str, Any]
    layer: int
    n_tokens: int
    dim: int
    sample_rate: int
    hop: int

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TokenizerConfig:
        """Rebuild from :meth:`to_dict` output (``ValueError`` on unknown or missing keys)."""
        return config_from_dict(cls, data, "tokenizer config")


def build_encoder(kind: str, config: Mapping[str, Any]) -> FeatureEncoder:
    """A fresh (randomly initialised) encoder of ``kind`` from its :meth:`config_dict`.

    Raises:
        ValueError: unknown kind or bad config.
    """
    if kind == SemanticEncoder.kind:
        return SemanticEncoder(SemanticConfig.from_dict(config))
    if kind == "chroma":
        from audiogen_studio.models.chroma_encoder import ChromaConfig, ChromaEncoder

        return ChromaEncoder(ChromaConfig.from_dict(config))
    if kind == "torchaudio-ssl":
        from audiogen_studio.models.ssl_adapter import SSLConfig, TorchaudioSSLEncoder

        return TorchaudioSSLEncoder(SSLConfig.from_dict(config))
    raise ValueError(f"unknown semantic encoder kind {kind!r}")


class SemanticTokenizer(nn.Module):
    """Audio → semantic tokens: encoder features of one layer, normalised, nearest centroid.

    ``tokens(audio [B, T]) → LongTensor [B, ceil(T / hop)]`` in ``0 .. n_tokens-1``.
    Always computed in eval mode (deterministic). Buffers: ``centroids [K, D]``,
    ``feature_mean [D]``, ``feature_std [D]`` (k-means runs on ``(f - mean) / std``).

    Attributes:
        token_rate: tokens per second (Hz).
        hop: samples per token.
        n_tokens: ``K``.
        sample_rate: Hz of the audio :meth:`tokens` expects (other rates: pass ``rate=``).
    """

    def __init__(
        self,
        encoder: FeatureEncoder,
        *,
        layer: int,
        centroids: torch.Tensor,
        mean: torch.Tensor | None = None,
        std: torch.Tensor | None = None,
    ) -> None:
        super().__init__()
        encoder.check_layer(layer)
        dim = encoder.feature_dim(layer)
        if centroids.ndim != 2 or centroids.shape[1] != dim or centroids.shape[0] < 1:
            raise ValueError(f"centroids must be [K, {dim}], got {list(centroids.shape)}")
        self.encoder = encoder
        self.layer = layer
        self.register_buffer("centroids", centroids.detach().float().clone())
        self.register_buffer(
            "feature_mean", torch.zeros(dim) if mean is None else mean.detach().float().clone()
        )
        self.register_buffer(
            "feature_std", torch.ones(dim) if std is None else std.detach().float().clone()
        )
        self.eval()

    centroids: torch.Tensor
    feature_mean: torch.Tensor
    feature_std: torch.Tensor

    @property
    def hop(self) -> int:
        """Samples per token."""
        return self.encoder.hop

    @property
    def sample_rate(self) -> int:
        """Hz of the audio the encoder reads."""
        return self.encoder.sample_rate

    @property
    def token_rate(self) -> float:
        """Tokens per second."""
        return self.encoder.sample_rate / self.encoder.hop

    @property
    def n_tokens(self) -> int:
        """``K``, the vocabulary size."""
        return int(self.centroids.shape[0])

    @property
    def dim(self) -> int:
        """``D``, the feature size."""
        return int(self.centroids.shape[1])

    @property
    def config(self) -> TokenizerConfig:
        """The :class:`TokenizerConfig` saved with the weights."""
        return TokenizerConfig(
            encoder=self.encoder.kind,
            encoder_config=self.encoder.config_dict(),
            layer=self.layer,
            n_tokens=self.n_tokens,
            dim=self.dim,
            sample_rate=self.sample_rate,
            hop=self.hop,
        )

    def num_tokens(self, length: int) -> int:
        """Tokens for ``length`` samples: ``ceil(length / hop)``."""
        return frame_count(length, self.hop)

    def _prepare(
        self, audio: torch.Tensor | np.ndarray[Any, Any], rate: int | None
    ) -> torch.Tensor:
        x = check_audio(audio).to(self.centroids.device)
        if rate is not None and int(rate) != self.sample_rate:
            if int(rate) < 1:
                raise SemanticInputError(f"sample rate must be positive, got {rate}")
            x = torchaudio.functional.resample(x, int(rate), self.sample_rate)
            if x.shape[-1] == 0:
                raise SemanticInputError("audio is empty after resampling")
        return x

    def _windowed(self, x: torch.Tensor, window_seconds: float | None) -> torch.Tensor:
        """Normalised features ``[B, F, D]``, computed in windows with context when long."""
        frames = frame_count(x.shape[-1], self.hop)
        if window_seconds is None:
            return (
                self.encoder.features(x, self.layer).float() - self.feature_mean
            ) / self.feature_std
        window = max(1, round(window_seconds * self.token_rate))
        if frames <= window:
            return self._windowed(x, None)
        context = max(1, window // 4)
        out = []
        for start in range(0, frames, window):
            end = min(start + window, frames)
            a = max(0, start - context)
            b = min(frames, end + context)
            piece = x[:, a * self.hop : min(b * self.hop, x.shape[-1])]
            feats = self._windowed(piece, None)  # [B, b - a, D]
            out.append(feats[:, start - a : end - a])
        return torch.cat(out, dim=1)

    @torch.inference_mode()
    def normalized_features(
        self,
        audio: torch.Tensor | np.ndarray[Any, Any],
        *,
        rate: int | None = None,
        window_seconds: float | None = 30.0,
    ) -> torch.Tensor:
        """``(features - mean) / std`` of :attr:`layer`, ``[B, ceil(T / hop), D]`` float32."""
        was_training = self.training
        self.eval()
        try:
            return self._windowed(self._prepare(audio, rate), window_seconds)
        finally:
            self.train(was_training)

    @torch.inference_mode()
    def tokens(
        self,
        audio: torch.Tensor | np.ndarray[Any, Any],
        *,
        rate: int | None = None,
        window_seconds: float | None = 30.0,
    ) -> torch.Tensor:
        """Semantic tokens ``LongTensor [B, ceil(T / hop)]`` of ``audio [B, T]`` (or ``[T]``).

        Args:
            audio: float samples at :attr:`sample_rate`, or at ``rate`` (then resampled).
            rate: sample rate of ``audio`` when it is not :attr:`sample_rate`; the token count
                is then ``ceil(T' / hop)`` with ``T'`` the resampled length.
            window_seconds: longer audio is encoded in windows of this length, each with a
                quarter window of context on both sides (bounded memory; attention is
                quadratic); ``None`` encodes everything at once.

        Raises:
            SemanticInputError: empty, non-finite or misshapen audio.
        """
        feats = self.normalized_features(audio, rate=rate, window_seconds=window_seconds)
        return assign(feats, self.centroids)

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        """:meth:`tokens`."""
        return self.tokens(audio)

    # --- fitting and files ---

    @classmethod
    @torch.no_grad()
    def fit(
        cls,
        encoder: FeatureEncoder,
        audio: Iterable[torch.Tensor | np.ndarray[Any, Any]],
        *,
        layer: int,
        n_clusters: int,
        seed: int = 0,
        iters: int = 25,
        max_points: int | None = 200_000,
        window_seconds: float | None = 30.0,
    ) -> SemanticTokenizer:
        """Fit mean/std and k-means (``n_clusters``) on ``encoder``'s ``layer`` features of
        ``audio`` (pieces ``[T]`` or ``[B, T]`` at the encoder's rate), on the encoder's device.

        Raises:
            SemanticInputError: a bad piece, or no audio at all.
        """
        encoder.check_layer(layer)
        device = next((p.device for p in encoder.parameters()), torch.device("cpu"))
        dim = encoder.feature_dim(layer)
        probe = cls(encoder, layer=layer, centroids=torch.zeros(1, dim, device=device))
        probe.to(device)
        chunks = [
            probe.normalized_features(piece, window_seconds=window_seconds).reshape(-1, dim)
            for piece in audio
        ]
        if not chunks:
            raise SemanticInputError("no audio to fit the tokenizer on")
        feats = torch.cat(chunks)
        mean = feats.mean(0)
        std = feats.std(0).clamp_min(1e-5) if feats.shape[0] > 1 else torch.ones_like(mean)
        normed = (feats - mean) / std
        centroids = kmeans(normed, n_clusters, iters=iters, seed=seed, max_points=max_points)
        tokenizer = cls(encoder, layer=layer, centroids=centroids, mean=mean, std=std)
        return tokenizer.to(device)

    def save(self, path: str | Path, *, extra: Mapping[str, Any] | None = None) -> Path:
        """Write encoder weights, centroids and :attr:`config` to one ``.safetensors`` file."""
        return save_module(self, path, self.config, extra=extra)

    @classmethod
    def from_pretrained(
        cls, path: str | Path, *, device: str | torch.device = "cpu"
    ) -> SemanticTokenizer:
        """Load a tokenizer written by :meth:`save` (eval mode, on ``device``).

        Raises:
            CheckpointError: missing/unreadable file, not a tokenizer, shape mismatch.
        """
        state, meta = load_state(path, device="cpu")
        if meta.get("module") != cls.__name__:
            raise CheckpointError(path, f"not a semantic tokenizer (module {meta.get('module')!r})")
        try:
            config = TokenizerConfig.from_dict(meta["config"])
            encoder = build_encoder(config.encoder, config.encoder_config)
            tokenizer = cls(
                encoder,
                layer=config.layer,
                centroids=torch.zeros(config.n_tokens, config.dim),
            )
        except (ValueError, TypeError) as exc:
            raise CheckpointError(path, f"bad tokenizer config ({exc})") from exc
        check_state_dict(tokenizer, state, path)
        tokenizer.load_state_dict(state)
        return tokenizer.to(device).eval()


# --- metrics --------------------------------------------------------------------------------------


def token_usage(tokens: torch.Tensor, n_tokens: int) -> dict[str, float]:
    """Cluster usage of ``tokens`` (any shape): fraction of the ``n_tokens`` ids that occur,
    and the perplexity ``exp(H)`` of their empirical distribution (``n_tokens`` at best)."""
    counts = torch.bincount(tokens.reshape(-1).cpu(), minlength=n_tokens).double()
    total = float(counts.sum())
    if total == 0:
        return {"used_fraction": 0.0, "perplexity": 0.0}
    p = counts[counts > 0] / total
    entropy = float(-(p * p.log()).sum())
    return {"used_fraction": float((counts > 0).sum()) / n_tokens, "perplexity": math.exp(entropy)}


def token_purity(
    fit_tokens: torch.Tensor,
    fit_labels: torch.Tensor,
    eval_tokens: torch.Tensor | None = None,
    eval_labels: torch.Tensor | None = None,
) -> dict[str, Any]:
    """Label purity of tokens (HuBERT §4.2's "phone purity", with any frame labels).

    Each token id is mapped to the label it co-occurs with most on the *fit* frames; purity is
    the accuracy of that mapping on the *eval* frames (the fit frames when none are given), overall
    and per label (the recall of each label). Labels < 0 are ignored.

    Returns:
        ``{"purity": float, "per_label": {label: float}, "unmapped": fraction of eval frames
        whose token never occurred on the fit frames}``.
    """
    ft, fl = fit_tokens.reshape(-1).cpu(), fit_labels.reshape(-1).cpu()
    et = ft if eval_tokens is None else eval_tokens.reshape(-1).cpu()
    el = fl if eval_labels is None else eval_labels.reshape(-1).cpu()
    if ft.shape != fl.shape or et.shape != el.shape:
        raise ValueError("tokens and labels must have the same number of frames")
    keep = fl >= 0
    ft, fl = ft[keep], fl[keep]
    keep = el >= 0
    et, el = et[keep], el[keep]
    if et.numel() == 0 or ft.numel() == 0:
        raise ValueError("token_purity: no labelled frames")
    n_tok = int(max(ft.max(), et.max())) + 1
    n_lab = int(max(fl.max(), el.max())) + 1
    table = torch.zeros(n_tok, n_lab, dtype=torch.long)
    table.index_put_((ft, fl), torch.ones_like(ft), accumulate=True)
    mapping = table.argmax(1)
    seen = table.sum(1) > 0
    predicted = torch.where(seen[et], mapping[et], torch.full_like(et, -1))
    correct = predicted == el
    per_label = {
        int(lab): float(correct[el == lab].float().mean()) for lab in torch.unique(el).tolist()
    }
    return {
        "purity": float(correct.float().mean()),
        "per_label": per_label,
        "unmapped": float((~seen[et]).float().mean()),
    }
