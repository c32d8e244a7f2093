"""WaveNet (van den Oord et al. 2016) with the cached incremental step of Fast WaveNet.

Architecture (paper sections in brackets)::

    x [B, T] μ-law classes of the input samples                          (§2.2, 256 levels)
    h0 = embed(x)                             [B, R, T]  (≡ 1x1 conv on one-hot input)
    for layer i = 0 .. layers-1, dilation d_i = 2 ** (i % (layers // stacks))   (§2.1)
        a   = conv_i(pad_left(h_i, (K-1) d_i))   [B, G, T]  dilated causal conv
              (+ cond_i(c_up)  local conditioning, [G, M, 1]       (§2.5)
              (+ gcond_i(g)    global conditioning, [G, Dg, 1]     (§2.5)
        z   = tanh(a[:, :G/2]) * sigmoid(a[:, G/2:])   [B, G/2, T]  gated unit  (§2.3)
        s_i = skip_i(z)                          [B, S, T]
        h_{i+1} = (h_i + res_i(z)) * sqrt(0.5)   [B, R, T]  residual            (§2.4)
    logits = out2(relu(out1(relu(sum_i s_i))))   [B, classes, T]              (§2.4, Fig. 4)

Teacher forcing: ``logits[:, :, t]`` is the distribution of the sample *after* input ``t``.
The receptive field is ``(K - 1) * sum(dilations) + 1`` input samples.

Incremental generation (Paine et al. 2016, "Fast WaveNet"): each layer keeps a queue of the last
``(K-1) d_i`` inputs it saw, so one new sample costs O(layers) work. :meth:`WaveNet.prime` fills
the queues from a prompt in one parallel pass; :meth:`WaveNet.step` consumes one input and returns
the logits of the next sample. Both give the same logits as :meth:`WaveNet.forward` (tested to
1e-4 in float32).

Local conditioning and its alignment (the vocoder): log-mel frames ``c [B, M, F]`` from
:func:`log_mel` are normalised to ``(c + 4) / 4`` and upsampled by :class:`MelUpsampler` — one
``ConvTranspose2d`` per scale with kernel ``(3, s)`` and stride ``(1, s)`` over (mel, time), so
kernel == stride in time and frame ``j`` produces exactly the features of samples
``[j * hop, (j + 1) * hop)``: ``c_up[..., t]`` depends on frame ``t // hop`` alone (its 3
neighbouring mel bins mix). Position ``t`` of the input uses ``c_up[..., c_offset + t]``.

A vocoder is trained and run *output-aligned*: the input at position ``t`` is the class of sample
``t - 1`` (``silence_class`` for the first), the conditioning is that of sample ``t``, and
``logits[:, :, t]`` predicts sample ``t``. The trainer does exactly this, so a generator starts
with ``step(silence, c_up[0])`` → sample 0, ``step(sample0, c_up[1])`` → sample 1, and so on.

:func:`log_mel` defines the frames: STFT with ``n_fft = win = 4 * hop`` (Hann), zero padding of
``n_fft/2 - hop/2`` samples on the left, so frame ``j``'s window is centred on ``j * hop + hop/2``
— the middle of the block ``[j * hop, (j + 1) * hop)`` the vocoder generates from it; ``ceil(T /
hop)`` frames for ``T`` samples; 0–sr/2 Slaney mel filterbank on the magnitude spectrum; natural
log with a floor of 1e-5.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

from audiogen_studio.models.checkpoint import (
    config_from_dict,
    load_configured,
    save_module,
)

SQRT_HALF = math.sqrt(0.5)
LOG_MEL_FLOOR = 1e-5
#: Fixed affine map the upsampler applies to log-mel values first: ``(c + 4) / 4`` takes the
#: floor ln(1e-5) = -11.5 to -1.9, ln(1) to 1 and ln(e^4) to 2, so the conditioning enters the
#: gates at unit scale (unnormalised, the tiny vocoder's held-out loss was 5x worse).
MEL_SHIFT = 4.0
MEL_SCALE = 4.0


@dataclass(frozen=True, kw_only=True)
class WaveNetConfig:
    """Hyper-parameters of a :class:`WaveNet`; ``WaveNetConfig(**config.to_dict())`` rebuilds it.

    Attributes:
        layers: residual layers in total.
        stacks: dilation cycles; layer ``i`` has dilation ``2 ** (i % (layers // stacks))``.
        residual_channels: ``R``, width of the residual stream.
        gate_channels: ``G``, output channels of the dilated conv (two halves: tanh, sigmoid).
        skip_channels: ``S``, width of the skip sum and the output head.
        kernel_size: ``K``, taps of each dilated conv.
        bits: μ-law bits; the softmax has ``2 ** bits`` classes.
        sample_rate: Hz of the audio the model was trained on.
        mel_channels: ``M`` > 0 enables local conditioning on log-mel frames (vocoder).
        hop_length: samples per mel frame (== product of ``upsample_scales``).
        upsample_scales: time strides of the learned upsampler.
        global_classes: > 0 enables global conditioning by an id (an embedding table).
        global_dim: ``Dg``, size of the global conditioning vector (the embedding size when
            ``global_classes`` > 0; a vector the caller gives when ``global_classes`` == 0).
    """

    layers: int = 20
    stacks: int = 2
    residual_channels: int = 64
    gate_channels: int = 128
    skip_channels: int = 64
    kernel_size: int = 3
    bits: int = 8
    sample_rate: int = 16_000
    mel_channels: int = 0
    hop_length: int = 256
    upsample_scales: tuple[int, ...] = (4, 4, 4, 4)
    global_classes: int = 0
    global_dim: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "upsample_scales", tuple(int(s) for s in self.upsample_scales))
        for name in (
            "layers",
            "stacks",
            "residual_channels",
            "gate_channels",
            "skip_channels",
            "sample_rate",
            "hop_length",
        ):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"WaveNetConfig.{name} must be a positive integer, got {value!r}")
        for name in ("mel_channels", "global_classes", "global_dim"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(f"WaveNetConfig.{name} must be an integer >= 0, got {value!r}")
        if self.layers % self.stacks:
            raise ValueError(
                f"WaveNetConfig: layers ({self.layers}) must be a multiple of "
                f"stacks ({self.stacks})"
            )
        if self.gate_channels % 2:
            raise ValueError(f"WaveNetConfig.gate_channels must be even, got {self.gate_channels}")
        if not isinstance(self.kernel_size, int) or self.kernel_size < 2:
            raise ValueError(f"WaveNetConfig.kernel_size must be >= 2, got {self.kernel_size!r}")
        if not isinstance(self.bits, int) or not 2 <= self.bits <= 16:
            raise ValueError(f"WaveNetConfig.bits must be within 2..16, got {self.bits!r}")
        if self.mel_channels > 0:
            if not self.upsample_scales or min(self.upsample_scales) < 1:
                raise ValueError("WaveNetConfig.upsample_scales must be positive integers")
            if math.prod(self.upsample_scales) != self.hop_length:
                raise ValueError(
                    f"WaveNetConfig: the product of upsample_scales {list(self.upsample_scales)} "
                    f"must equal hop_length {self.hop_length}"
                )
        if self.global_classes > 0 and self.global_dim < 1:
            raise ValueError("WaveNetConfig: global_classes > 0 needs global_dim > 0")

    # --- derived -------------------------------------------------------------------------------

    @property
    def classes(self) -> int:
        """Softmax size, ``2 ** bits``."""
        return 1 << self.bits

    @property
    def half(self) -> int:
        """``gate_channels // 2``: channels of the gated unit's output."""
        return self.gate_channels // 2

    @property
    def dilations(self) -> list[int]:
        """Dilation of each layer: ``1, 2, ..., 2 ** (layers/stacks - 1)`` repeated per stack."""
        per_stack = self.layers // self.stacks
        return [2 ** (i % per_stack) for i in range(self.layers)]

    @property
    def receptive_field(self) -> int:
        """Input samples that influence one output: ``(K - 1) * sum(dilations) + 1``."""
        return (self.kernel_size - 1) * sum(self.dilations) + 1

    @property
    def local_conditioning(self) -> bool:
        """Whether the model is conditioned on log-mel frames."""
        return self.mel_channels > 0

    @property
    def global_conditioning(self) -> bool:
        """Whether the model takes a global id or vector."""
        return self.global_dim > 0

    # --- (de)serialisation ---------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields (``upsample_scales`` as a list)."""
        data = dataclasses.asdict(self)
        data["upsample_scales"] = list(self.upsample_scales)
        return data

    def to_json(self) -> str:
        """The config as a JSON object string."""
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> WaveNetConfig:
        """Rebuild from :meth:`to_dict` output.

        Raises:
            ValueError: unknown keys (a config from another model or a newer version) or
                invalid values.
        """
        return config_from_dict(cls, data, "WaveNet config")

    def with_mel(self, mel_channels: int = 80) -> WaveNetConfig:
        """This config with local conditioning on ``mel_channels`` log-mel bins."""
        return dataclasses.replace(self, mel_channels=mel_channels)


#: Named configurations for ``audiogen-studio train wavenet --config NAME``.
#:
#: - ``tiny``: for tests (RF 29 samples, ~10k parameters).
#: - ``tiny-vocoder``: ``tiny`` conditioned on 20 mel bins at hop 64 (n_fft 256).
#: - ``peer``: the public r9y9 ``wavenet_vocoder`` size used by the benchmark: 20 layers, 2
#:   stacks, 64/128/64 (0.70 M parameters here, 0.68 M MACs/sample, RF 4093 samples = 256 ms
#:   at 16 kHz).
#: - ``default``: the shipped continuation model: the peer's depth and receptive field at
#:   48/96/48 channels (0.40 M parameters, 0.38 M MACs/sample: 57 % of the peer's weights), so
#:   a weight-streaming-bound fused CPU step should run ~1.7x the peer's samples/s (DESIGN.md
#:   measured ~1.5x real time at 16 kHz for the peer size); benchmarks/wavenet.py measures it.
#: - ``vocoder``: ``default`` conditioned on 80 log-mel bins at hop 256 (16 ms at 16 kHz).
NAMED_CONFIGS: dict[str, WaveNetConfig] = {
    "tiny": WaveNetConfig(
        layers=6, stacks=2, residual_channels=16, gate_channels=32, skip_channels=16
    ),
    "tiny-vocoder": WaveNetConfig(
        layers=6,
        stacks=2,
        residual_channels=16,
        gate_channels=32,
        skip_channels=16,
        mel_channels=20,
        hop_length=64,
        upsample_scales=(4, 4, 4),
    ),
    "peer": WaveNetConfig(
        layers=20, stacks=2, residual_channels=64, gate_channels=128, skip_channels=64
    ),
    "default": WaveNetConfig(
        layers=20, stacks=2, residual_channels=48, gate_channels=96, skip_channels=48
    ),
    "vocoder": WaveNetConfig(
        layers=20,
        stacks=2,
        residual_channels=48,
        gate_channels=96,
        skip_channels=48,
        mel_channels=80,
        hop_length=256,
        upsample_scales=(4, 4, 4, 4),
    ),
}

#: What ``--mel`` turns a named config into.
MEL_VARIANTS = {"tiny": "tiny-vocoder", "default": "vocoder"}


def named_config(name: str, *, mel: bool = False) -> WaveNetConfig:
    """A config from :data:`NAMED_CONFIGS`, or from a JSON file when ``name`` is a path.

    Args:
        name: ``tiny``, ``tiny-vocoder``, ``peer``, ``default``, ``vocoder`` or a ``.json`` file
            holding :meth:`WaveNetConfig.to_dict` fields.
        mel: the mel-conditioned variant (``tiny`` → ``tiny-vocoder``, ``default`` →
            ``vocoder``, anything else gets 80 mel bins at its own hop length).

    Raises:
        ValueError: unknown name, unreadable or invalid JSON file.
    """
    if name in NAMED_CONFIGS:
        if mel and NAMED_CONFIGS[name].mel_channels == 0:
            variant = MEL_VARIANTS.get(name)
            return NAMED_CONFIGS[variant] if variant else NAMED_CONFIGS[name].with_mel(80)
        return NAMED_CONFIGS[name]
    path = Path(name)
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ValueError(f"{path}: cannot read a WaveNet config ({exc})") from exc
        config = WaveNetConfig.from_dict(data)
        if mel and config.mel_channels == 0:
            config = config.with_mel(80)
        return config
    raise ValueError(
        f"unknown WaveNet config {name!r} (use {', '.join(NAMED_CONFIGS)} or a .json file)"
    )


# --- log-mel features ---------------------------------------------------------------------------

_MEL_CACHE: dict[tuple[int, int, int, int, str], nn.Module] = {}


def _mel_transform(rate: int, hop: int, n_mels: int, device: torch.device) -> nn.Module:
    key = (rate, hop, n_mels, 4 * hop, str(device))
    module = _MEL_CACHE.get(key)
    if module is None:
        import torchaudio

        n_fft = 4 * hop
        module = torchaudio.transforms.MelSpectrogram(
            sample_rate=rate,
            n_fft=n_fft,
            win_length=n_fft,
            hop_length=hop,
            f_min=0.0,
            f_max=rate / 2,
            n_mels=n_mels,
            power=1.0,
            center=False,
            norm="slaney",
            mel_scale="slaney",
        ).to(device)
        _MEL_CACHE[key] = module
    return module


def mel_frames(samples: int, hop: int) -> int:
    """Frames :func:`log_mel` gives for ``samples`` samples: ``ceil(samples / hop)``."""
    return -(-samples // hop)


def log_mel(
    samples: torch.Tensor | npt.NDArray[np.floating[Any]], config: WaveNetConfig
) -> torch.Tensor:
    """Natural-log mel spectrogram aligned with the vocoder's sample blocks.

    Args:
        samples: ``[T]`` or ``[B, T]`` float samples at ``config.sample_rate``.
        config: supplies ``sample_rate``, ``hop_length`` and ``mel_channels`` (``M`` > 0).

    Returns:
        ``[B, M, ceil(T / hop)]`` float32 on the samples' device. Frame ``j`` is the STFT
        (``n_fft = win = 4 * hop``, Hann) window centred on sample ``j * hop + hop / 2``, i.e. the
        middle of the block ``[j * hop, (j + 1) * hop)`` it conditions; the signal is zero-padded
        by ``n_fft/2 - hop/2`` on the left and as needed on the right. Slaney mel filterbank over
        0 .. sr/2 on the magnitude spectrum, then ``log(max(mel, 1e-5))``.
    """
    if config.mel_channels < 1:
        raise ValueError("log_mel needs a config with mel_channels > 0")
    if isinstance(samples, torch.Tensor):
        x = samples
    else:  # a copy: Clip samples are read-only, which torch.from_numpy warns about
        x = torch.from_numpy(np.array(samples, dtype=np.float32))
    if x.ndim == 1:
        x = x[None]
    if x.ndim != 2:
        raise ValueError(f"log_mel expects [T] or [B, T] samples, got shape {list(x.shape)}")
    x = x.to(torch.float32)
    length = x.shape[-1]
    if length == 0:
        raise ValueError("log_mel got no samples")
    hop = config.hop_length
    n_fft = 4 * hop
    frames = mel_frames(length, hop)
    left = n_fft // 2 - hop // 2
    right = n_fft + (frames - 1) * hop - left - length
    padded = F.pad(x, (left, right))
    mel = _mel_transform(config.sample_rate, hop, config.mel_channels, x.device)(padded)
    return torch.log(torch.clamp(mel, min=LOG_MEL_FLOOR))


# --- modules ------------------------------------------------------------------------------------


class MelUpsampler(nn.Module):
    """Learned upsampling of log-mel frames to per-sample features (§2.5, "transposed conv").

    One ``ConvTranspose2d(1, 1, kernel=(3, s), stride=(1, s), padding=(1, 0), bias=False)`` per
    scale ``s`` over (mel bin, time), no nonlinearity in between (as r9y9's upsample network).
    Kernel == stride in time, so output sample ``t`` depends only on frame ``t // hop``. The input
    is first normalised to ``(c + MEL_SHIFT) / MEL_SCALE``. Weights start at 1/3: at
    initialisation the output repeats each (3-bin smoothed, normalised) frame ``hop`` times.

    Parameters: ``layers.{j}.weight [1, 1, 3, s_j]``.
    """

    def __init__(self, scales: tuple[int, ...]) -> None:
        super().__init__()
        self.scales = tuple(scales)
        convs = [
            nn.ConvTranspose2d(1, 1, (3, s), stride=(1, s), padding=(1, 0), bias=False)
            for s in self.scales
        ]
        with torch.no_grad():
            for conv in convs:
                conv.weight.fill_(1.0 / 3.0)
        self.layers = nn.ModuleList(convs)

    def forward(self, c: torch.Tensor) -> torch.Tensor:
        """Log-mel ``c [B, M, F]`` → features ``[B, M, F * hop]``."""
        x = ((c + MEL_SHIFT) / MEL_SCALE).unsqueeze(1)  # [B, 1, M, F], unit scale
        for layer in self.layers:
            x = layer(x)  # [B, 1, M, F * s_0 * ... * s_j]
        return x.squeeze(1)


class ResidualLayer(nn.Module):
    """One gated residual layer (§2.3, §2.4) with its dilated causal conv (§2.1).

    Parameters: ``conv.weight [G, R, K]`` (tap ``k`` multiplies ``x[t - (K-1-k) d]``),
    ``conv.bias [G]``, ``res.weight [R, G/2, 1]``, ``res.bias [R]``, ``skip.weight [S, G/2, 1]``,
    ``skip.bias [S]``, optional ``cond.weight [G, M, 1]`` and ``gcond.weight [G, Dg, 1]``.
    """

    cond: nn.Conv1d | None
    gcond: nn.Conv1d | None

    def __init__(
        self,
        *,
        residual_channels: int,
        gate_channels: int,
        skip_channels: int,
        kernel_size: int,
        dilation: int,
        mel_channels: int = 0,
        global_dim: int = 0,
    ) -> None:
        super().__init__()
        self.dilation = dilation
        self.kernel_size = kernel_size
        self.half_channels = gate_channels // 2
        self.conv = nn.Conv1d(residual_channels, gate_channels, kernel_size, dilation=dilation)
        self.res = nn.Conv1d(self.half_channels, residual_channels, 1)
        self.skip = nn.Conv1d(self.half_channels, skip_channels, 1)
        self.cond = nn.Conv1d(mel_channels, gate_channels, 1, bias=False) if mel_channels else None
        self.gcond = nn.Conv1d(global_dim, gate_channels, 1, bias=False) if global_dim else None

    @property
    def queue_length(self) -> int:
        """Past inputs the layer needs besides the current one: ``(K - 1) * dilation``."""
        return (self.kernel_size - 1) * self.dilation

    def forward(
        self,
        h: torch.Tensor,
        c_up: torch.Tensor | None = None,
        g_vec: torch.Tensor | None = None,
        *,
        residual: bool = True,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``h [B, R, T]`` (+ ``c_up [B, M, T]``, ``g_vec [B, Dg]``) → ``(h_next, skip)``.

        ``residual=False`` skips the residual 1x1 conv and returns ``h`` unchanged (the last
        layer's residual output feeds nothing).
        """
        a = self.conv(F.pad(h, (self.queue_length, 0)))  # [B, G, T], causal
        if self.cond is not None and c_up is not None:
            a = a + self.cond(c_up)
        if self.gcond is not None and g_vec is not None:
            a = a + self.gcond(g_vec.unsqueeze(-1))  # [B, G, 1] broadcast over time
        half = self.half_channels
        z = torch.tanh(a[:, :half]) * torch.sigmoid(a[:, half:])  # [B, G/2, T]
        skip = self.skip(z)  # [B, S, T]
        if not residual:
            return h, skip
        return (h + self.res(z)) * SQRT_HALF, skip


@dataclass
class WaveNetState:
    """Per-layer input queues of the incremental (Fast WaveNet) path.

    Attributes:
        queues: per layer ``[B, R, (K-1) d_i]``, circular: slot ``tau % ((K-1) d_i)`` holds the
            layer's input at time ``tau`` for the last ``(K-1) d_i`` times (zeros before the
            start, the same as the causal zero padding of :meth:`WaveNet.forward`).
        time: inputs consumed so far (the index of the next input).
        global_bias: ``[B, layers, G]`` projections of the global conditioning, or ``None``.
        last_logits: ``[B, classes]`` logits after the last consumed input (``None`` before
            any input).
    """

    queues: list[torch.Tensor]
    time: int = 0
    global_bias: torch.Tensor | None = None
    last_logits: torch.Tensor | None = None

    @property
    def batch(self) -> int:
        """Streams in the batch."""
        return int(self.queues[0].shape[0])


GlobalInput = torch.Tensor | None


class WaveNet(nn.Module):
    """WaveNet over μ-law classes; see the module docstring for the equations and alignment.

    Parameters (``state_dict`` names, read as they are by the fast path):
    ``embed.weight [classes, R]``; ``layers.{i}.*`` (:class:`ResidualLayer`);
    ``out1.weight [S, S, 1]``, ``out1.bias [S]``, ``out2.weight [classes, S, 1]``,
    ``out2.bias [classes]``; with local conditioning ``upsample.layers.{j}.weight``; with
    ``global_classes`` > 0 ``global_embed.weight [global_classes, Dg]``. The last layer's
    ``res`` output is unused (it only exists for a uniform layout) and its parameters are frozen.
    """

    global_embed: nn.Embedding | None
    upsample: MelUpsampler | None
    checkpoint_module: ClassVar[str] = "WaveNet"

    def __init__(self, config: WaveNetConfig) -> None:
        super().__init__()
        self.config = config
        cfg = config
        self.embed = nn.Embedding(cfg.classes, cfg.residual_channels)
        self.global_embed = (
            nn.Embedding(cfg.global_classes, cfg.global_dim) if cfg.global_classes else None
        )
        self.upsample = MelUpsampler(cfg.upsample_scales) if cfg.mel_channels else None
        self.layers = nn.ModuleList(
            ResidualLayer(
                residual_channels=cfg.residual_channels,
                gate_channels=cfg.gate_channels,
                skip_channels=cfg.skip_channels,
                kernel_size=cfg.kernel_size,
                dilation=d,
                mel_channels=cfg.mel_channels,
                global_dim=cfg.global_dim,
            )
            for d in cfg.dilations
        )
        self.out1 = nn.Conv1d(cfg.skip_channels, cfg.skip_channels, 1)
        self.out2 = nn.Conv1d(cfg.skip_channels, cfg.classes, 1)
        # The last layer's residual output feeds nothing: its res conv keeps the uniform layer
        # layout the fast path reads, but is frozen (no gradient; DDP needs every trained
        # parameter to be used).
        self._layers()[-1].res.requires_grad_(False)

    @property
    def receptive_field(self) -> int:
        """See :attr:`WaveNetConfig.receptive_field`."""
        return self.config.receptive_field

    def _layers(self) -> list[ResidualLayer]:
        return [layer for layer in self.layers if isinstance(layer, ResidualLayer)]

    # --- conditioning ----------------------------------------------------------------------

    def global_vector(self, g: GlobalInput, batch: int) -> torch.Tensor | None:
        """The global conditioning vector ``[B, Dg]`` from ids ``[B]`` or vectors ``[B, Dg]``.

        Raises:
            ValueError: conditioning missing for a conditioned model, given to an unconditioned
                one, or of the wrong shape.
        """
        cfg = self.config
        if not cfg.global_conditioning:
            if g is not None:
                raise ValueError("this WaveNet has no global conditioning; pass g=None")
            return None
        if g is None:
            raise ValueError("this WaveNet needs global conditioning g (ids or vectors)")
        if cfg.global_classes:
            if g.dtype.is_floating_point or g.ndim != 1 or g.shape[0] != batch:
                raise ValueError(f"g must be [B={batch}] integer ids, got {list(g.shape)}")
            assert self.global_embed is not None
            if int(g.min()) < 0 or int(g.max()) >= cfg.global_classes:
                raise ValueError(f"global ids must be within 0..{cfg.global_classes - 1}")
            vec: torch.Tensor = self.global_embed(g)
            return vec
        if g.ndim != 2 or g.shape != (batch, cfg.global_dim):
            raise ValueError(f"g must be [B={batch}, {cfg.global_dim}], got {list(g.shape)}")
        return g.to(self.embed.weight.dtype)

    def global_bias(self, g: GlobalInput, batch: int) -> torch.Tensor | None:
        """Per-layer global projections ``gcond_i(g)``: ``[B, layers, G]`` (or ``None``)."""
        vec = self.global_vector(g, batch)
        if vec is None:
            return None
        weights = [
            layer.gcond.weight[:, :, 0] for layer in self._layers() if layer.gcond is not None
        ]
        return torch.einsum("lgd,bd->blg", torch.stack(weights), vec)

    def upsample_conditioning(self, c: torch.Tensor) -> torch.Tensor:
        """Log-mel frames ``[B, M, F]`` → per-sample features ``[B, M, F * hop]``.

        ``out[..., t]`` depends on frame ``t // hop`` only, so chunks of frames can be upsampled
        independently and concatenated.
        """
        if self.upsample is None:
            raise ValueError("this WaveNet has no local (mel) conditioning")
        if c.ndim != 3 or c.shape[1] != self.config.mel_channels:
            raise ValueError(
                f"mel frames must be [B, {self.config.mel_channels}, F], got {list(c.shape)}"
            )
        c_up: torch.Tensor = self.upsample(c.to(self.embed.weight.dtype))
        return c_up

    def local_bias(self, c_up: torch.Tensor) -> torch.Tensor:
        """Per-layer local projections ``cond_i(c_up)``: ``[B, M, T]`` → ``[B, layers, G, T]``.

        This is what a fused step adds to each layer's pre-activation at each sample; compute it
        once per chunk of upsampled features.
        """
        if self.upsample is None:
            raise ValueError("this WaveNet has no local (mel) conditioning")
        weights = torch.stack(
            [layer.cond.weight[:, :, 0] for layer in self._layers() if layer.cond is not None]
        )
        return torch.einsum("lgm,bmt->blgt", weights, c_up.to(weights.dtype))

    def _local_features(
        self, c: torch.Tensor | None, batch: int, length: int, c_offset: int
    ) -> torch.Tensor | None:
        if self.upsample is None:
            if c is not None:
                raise ValueError("this WaveNet has no local (mel) conditioning; pass c=None")
            return None
        if c is None:
            raise ValueError("this WaveNet needs mel frames c [B, M, F]")
        if c.shape[0] != batch:
            raise ValueError(f"mel frames have batch {c.shape[0]}, the input {batch}")
        c_up = self.upsample_conditioning(c)
        if c_offset < 0 or c_offset + length > c_up.shape[-1]:
            raise ValueError(
                f"{c.shape[-1]} mel frames give {c_up.shape[-1]} samples of conditioning; "
                f"positions {c_offset}..{c_offset + length} were asked for"
            )
        return c_up[..., c_offset : c_offset + length]

    # --- parallel pass -----------------------------------------------------------------------

    def _check_input(self, x: torch.Tensor) -> None:
        if x.ndim != 2 or x.dtype.is_floating_point:
            raise ValueError(f"x must be [B, T] integer classes, got {x.dtype} {list(x.shape)}")

    def _head(self, skips: torch.Tensor) -> torch.Tensor:
        logits: torch.Tensor = self.out2(F.relu(self.out1(F.relu(skips))))
        return logits

    def _trunk(
        self,
        h: torch.Tensor,
        c_up: torch.Tensor | None,
        g_vec: torch.Tensor | None,
        inputs: list[torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """Residual layers over ``h [B, R, T]``; returns the skip sum ``[B, S, T]``."""
        skips: torch.Tensor | None = None
        layers = self._layers()
        for i, layer in enumerate(layers):
            if inputs is not None:
                inputs.append(h)
            h, s = layer(h, c_up, g_vec, residual=i < len(layers) - 1)
            skips = s if skips is None else skips + s
        assert skips is not None
        return skips

    def forward(
        self,
        x: torch.Tensor,
        c: torch.Tensor | None = None,
        g: GlobalInput = None,
        *,
        c_offset: int = 0,
        output_from: int = 0,
    ) -> torch.Tensor:
        """Teacher-forced logits.

        Args:
            x: ``[B, T]`` int64 classes of the input samples.
            c: ``[B, M, F]`` log-mel frames (local conditioning), upsampled here to
                ``F * hop`` per-sample features; position ``t`` uses feature ``c_offset + t``.
            g: ``[B]`` global ids or ``[B, Dg]`` vectors (global conditioning).
            c_offset: first upsampled feature to use.
            output_from: compute the output head only for positions ``>= output_from`` (the
                trainer skips the first ``receptive_field - 1`` positions, which lack context).

        Returns:
            ``[B, classes, T - output_from]`` logits; ``[:, :, t - output_from]`` is the
            distribution of the sample after input ``t``.
        """
        self._check_input(x)
        batch, length = x.shape
        if not 0 <= output_from < max(length, 1):
            raise ValueError(f"output_from must be within 0..{length - 1}, got {output_from}")
        c_up = self._local_features(c, batch, length, c_offset)
        g_vec = self.global_vector(g, batch)
        h = self.embed(x).transpose(1, 2)  # [B, R, T]
        skips = self._trunk(h, c_up, g_vec)  # [B, S, T]
        return self._head(skips[:, :, output_from:] if output_from else skips)

    # --- incremental path (Fast WaveNet) -----------------------------------------------------

    def incremental_state(
        self,
        batch: int,
        g: GlobalInput = None,
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> WaveNetState:
        """Empty queues (all zeros, i.e. the causal zero padding) for ``batch`` streams."""
        ref = self.embed.weight
        device = ref.device if device is None else torch.device(device)
        dtype = ref.dtype if dtype is None else dtype
        queues = [
            torch.zeros(
                batch, self.config.residual_channels, layer.queue_length, device=device, dtype=dtype
            )
            for layer in self._layers()
        ]
        gbias = self.global_bias(g, batch)
        return WaveNetState(queues=queues, time=0, global_bias=gbias)

    @torch.no_grad()
    def prime(
        self,
        x: torch.Tensor,
        c: torch.Tensor | None = None,
        g: GlobalInput = None,
        *,
        c_offset: int = 0,
    ) -> WaveNetState:
        """Consume a prompt in one parallel pass and fill every layer's queue.

        Args:
            x: ``[B, T]`` classes of the prompt's inputs (``T`` may be 0).
            c, g, c_offset: as in :meth:`forward`.

        Returns:
            A state after ``T`` inputs; ``last_logits`` are ``forward(x)[:, :, -1]`` (the
            distribution of the next sample). Continue with :meth:`step`.
        """
        self._check_input(x)
        batch, length = x.shape
        state = self.incremental_state(batch, g)
        if length == 0:
            return state
        c_up = self._local_features(c, batch, length, c_offset)
        g_vec = self.global_vector(g, batch)
        h = self.embed(x).transpose(1, 2)  # [B, R, T]
        inputs: list[torch.Tensor] = []
        skips = self._trunk(h, c_up, g_vec, inputs)
        state.last_logits = self._head(skips[:, :, -1:])[:, :, 0]
        for i, (layer, h_i) in enumerate(zip(self._layers(), inputs, strict=True)):
            n = layer.queue_length
            recent = h_i[:, :, -n:]  # inputs at times T-n .. T-1 (fewer when T < n)
            if recent.shape[-1] < n:
                recent = F.pad(recent, (n - recent.shape[-1], 0))
            # circular layout: time tau lives in slot tau % n
            state.queues[i] = torch.roll(recent, shifts=length % n, dims=-1).contiguous()
        state.time = length
        return state

    @torch.no_grad()
    def step(
        self,
        x_t: torch.Tensor,
        state: WaveNetState,
        c_t: torch.Tensor | None = None,
        g: GlobalInput = None,
    ) -> torch.Tensor:
        """Consume one input per stream and return the next sample's logits.

        Args:
            x_t: ``[B]`` int64 classes of the current input sample.
            state: from :meth:`incremental_state` or :meth:`prime`; updated in place.
            c_t: ``[B, M]`` upsampled conditioning feature of this position (vocoder), i.e.
                ``upsample_conditioning(c)[:, :, c_offset + state.time]``.
            g: global ids/vectors; default: the ones the state was made with.

        Returns:
            ``[B, classes]`` logits (also kept in ``state.last_logits``).
        """
        if x_t.ndim != 1 or x_t.shape[0] != state.batch:
            raise ValueError(f"x_t must be [B={state.batch}] classes, got {list(x_t.shape)}")
        batch = state.batch
        gbias = self.global_bias(g, batch) if g is not None else state.global_bias
        if self.config.global_conditioning and gbias is None:
            raise ValueError("this WaveNet needs global conditioning g")
        if self.upsample is not None:
            if c_t is None or c_t.shape != (batch, self.config.mel_channels):
                shape = None if c_t is None else list(c_t.shape)
                raise ValueError(
                    f"this WaveNet needs c_t [B={batch}, {self.config.mel_channels}], got {shape}"
                )
        elif c_t is not None:
            raise ValueError("this WaveNet has no local (mel) conditioning; pass c_t=None")
        t = state.time
        h = self.embed(x_t)  # [B, R]
        skips: torch.Tensor | None = None
        for i, layer in enumerate(self._layers()):
            queue = state.queues[i]  # [B, R, n]
            n, d, k = layer.queue_length, layer.dilation, layer.kernel_size
            pos = t % n  # slot of time t - n: the oldest, tap 0
            taps = queue[:, :, [(pos + j * d) % n for j in range(k - 1)]]  # [B, R, K-1]
            window = torch.cat([taps, h.unsqueeze(-1)], dim=-1)  # [B, R, K], oldest first
            weight = layer.conv.weight  # [G, R, K]
            a = F.linear(
                window.reshape(batch, -1), weight.reshape(weight.shape[0], -1), layer.conv.bias
            )  # [B, G]
            if layer.cond is not None:
                assert c_t is not None
                a = a + F.linear(c_t.to(a.dtype), layer.cond.weight[:, :, 0])
            if gbias is not None:
                a = a + gbias[:, i]
            half = layer.half_channels
            z = torch.tanh(a[:, :half]) * torch.sigmoid(a[:, half:])  # [B, G/2]
            s = F.linear(z, layer.skip.weight[:, :, 0], layer.skip.bias)  # [B, S]
            queue[:, :, pos] = h
            h = (h + F.linear(z, layer.res.weight[:, :, 0], layer.res.bias)) * SQRT_HALF
            skips = s if skips is None else skips + s
        assert skips is not None
        hidden = F.relu(F.linear(F.relu(skips), self.out1.weight[:, :, 0], self.out1.bias))
        logits = F.linear(hidden, self.out2.weight[:, :, 0], self.out2.bias)  # [B, classes]
        state.time = t + 1
        state.last_logits = logits
        return logits

    # --- checkpoints -------------------------------------------------------------------------

    def save_pretrained(self, path: str | Path, extra: Mapping[str, Any] | None = None) -> Path:
        """Write the weights and config to a ``.safetensors`` file (see :mod:`.checkpoint`)."""
        return save_module(self, path, self.config, extra)

    @classmethod
    def from_pretrained(
        cls,
        path: str | Path,
        *,
        device: str | torch.device = "cpu",
        expected_config: WaveNetConfig | Mapping[str, Any] | None = None,
    ) -> WaveNet:
        """Rebuild a model from a ``.safetensors`` file written by :meth:`save_pretrained`.

        Args:
            path: the weights file (its metadata holds the config).
            device: where to put the model.
            expected_config: when given (e.g. the config in ``bundle.json``), the stored config
                must equal it.

        Returns:
            The model in eval mode.

        Raises:
            CheckpointError: missing or unreadable file, another module's checkpoint, a missing,
                unknown-keyed or invalid config, tensors that do not fit the config.
        """
        return load_configured(  # type: ignore[no-any-return]
            path, cls, WaveNetConfig, device=device, expected_config=expected_config
        )


def count_parameters(model: nn.Module) -> int:
    """Number of scalar parameters."""
    return sum(p.numel() for p in model.parameters())
