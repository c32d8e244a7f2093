"""A SoundStream-style streaming neural audio codec (Zeghidour et al. 2021, §3.1-3.3).

Architecture (shapes for the default config: 16 kHz, strides 2·4·5·8 → hop 320 → 50 Hz)::

    audio [B, 1, T]                       T padded up to a multiple of hop with zeros
    encoder (§3.1, Fig. 3):
        conv k7             1 → C                        [B, C, T]
        for stride s_i, i = 0..3:
            3 residual units at width C·2^i, dilations 1, 3, 9   (Snake → conv k7 dil d →
                                                                   Snake → conv k1, + skip)
            Snake, conv k=2 s_i, stride s_i:  C·2^i → C·2^(i+1)  [B, C·2^(i+1), T / prod(s_≤i)]
        Snake, conv k3      C·2^4 → D                    [B, D, F],  F = T / hop
    residual VQ (§3.3, models/quantize.py):  n_q codebooks of K   codes [B, n_q, F]
    decoder (§3.2, mirrors the encoder):
        conv k7             D → C·2^4                    [B, C·16, F]
        for stride s_i in reverse:
            Snake, transposed conv k=2 s_i, stride s_i: halves the width, s_i times the rate
            3 residual units, dilations 1, 3, 9
        Snake, conv k7      C → 1                        [B, 1, F * hop]

Every convolution is **causal** (left padding only; a strided conv of kernel ``k`` pads
``k - s`` on the left so output ``i`` sees inputs ``< (i + 1) s``; a transposed conv drops its
last ``k - s`` outputs, which future frames would complete). So code frame ``f`` depends on
samples ``< (f + 1) * hop`` only, and decoded sample ``t`` on code frames ``<= t // hop``.
Activations are Snake (``x + sin^2(a x) / a``, per-channel ``a``; Ziyin et al. 2020, as in
BigVGAN/DAC) and convolutions use weight normalisation (DESIGN.md §7: both converged faster).

**Streaming** with explicit state (as audiocraft): :meth:`Codec.stream_encoder` and
:meth:`Codec.stream_decoder` return objects whose ``push`` takes any number of whole frames and
returns exactly what the full computation gives for them (tested to 1e-5). Each conv's state is
its left context (a transposed conv's: the partial sums that overhang into the next frames);
weights are snapshotted (weight norm folded) when the stream is created. Streams compute
channels-last (``[B, T, C]``) with one ``unfold`` + ``addmm`` per conv: for the few frames of a
push this is several times faster than ``conv1d``'s small-input paths (default config, one CPU
thread: ~1.5 ms per 1-frame push, ~4.3 ms per 5 frames, i.e. faster than real time from the
first frame on).
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn
from torch.nn.utils import parametrizations

from audiogen_studio.models.checkpoint import (
    CheckpointError,
    config_from_dict,
    load_configured,
    save_module,
)
from audiogen_studio.models.quantize import QuantizedResult, ResidualVQ

__all__ = [
    "NAMED_CODEC_CONFIGS",
    "Codec",
    "CodecConfig",
    "CodecDecoderStream",
    "CodecEncoderStream",
    "load_codec",
    "named_codec_config",
]

CODEC_COMPONENT = "codec"


@dataclass(frozen=True, kw_only=True)
class CodecConfig:
    """Hyper-parameters of a :class:`Codec`; ``CodecConfig.from_dict(c.to_dict()) == c``.

    Attributes:
        sample_rate: Hz of the audio.
        channels: ``C``, width of the first encoder stage; doubled at every downsampling.
        strides: downsampling factors of the encoder (upsampling of the decoder, reversed);
            their product is the hop (samples per code frame).
        latent_dim: ``D``, dimensions of a frame (and of the codebook vectors).
        kernel_size: taps of the first and last convolutions.
        residual_kernel_size: taps of the dilated convolution of a residual unit.
        dilations: dilations of the residual units of each stage.
        residual_compress: a residual unit's hidden width is its width divided by this.
        n_q: residual-VQ codebooks.
        codebook_size: ``K``, vectors per codebook.
        ema_decay: EMA decay of the codebooks.
        dead_code_ratio: restart codes used less than this times the mean (0: never).
        quantizer_dropout: train with a random number of codebooks per batch.
        activation: ``"snake"`` or ``"elu"``.
        weight_norm: weight-normalised convolutions.
    """

    sample_rate: int = 16_000
    channels: int = 16
    strides: tuple[int, ...] = (2, 4, 5, 8)
    latent_dim: int = 128
    kernel_size: int = 7
    residual_kernel_size: int = 7
    dilations: tuple[int, ...] = (1, 3, 9)
    residual_compress: int = 2
    n_q: int = 8
    codebook_size: int = 1024
    ema_decay: float = 0.99
    dead_code_ratio: float = 0.1
    quantizer_dropout: bool = True
    activation: str = "snake"
    weight_norm: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "strides", tuple(int(s) for s in self.strides))
        object.__setattr__(self, "dilations", tuple(int(d) for d in self.dilations))
        for name in (
            "sample_rate",
            "channels",
            "latent_dim",
            "kernel_size",
            "residual_kernel_size",
            "residual_compress",
            "n_q",
            "codebook_size",
        ):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"CodecConfig.{name} must be a positive integer, got {value!r}")
        if not self.strides or min(self.strides) < 1:
            raise ValueError(f"CodecConfig.strides must be positive integers, got {self.strides}")
        if not self.dilations or min(self.dilations) < 1:
            raise ValueError(f"CodecConfig.dilations must be positive, got {self.dilations}")
        if self.channels % self.residual_compress:
            raise ValueError("CodecConfig.channels must be a multiple of residual_compress")
        if self.codebook_size > 65_536:
            raise ValueError("CodecConfig.codebook_size must be at most 65536")
        if not 0.0 < self.ema_decay < 1.0:
            raise ValueError(f"CodecConfig.ema_decay must be within (0, 1), got {self.ema_decay}")
        if not 0.0 <= self.dead_code_ratio < 1.0:
            raise ValueError("CodecConfig.dead_code_ratio must be within [0, 1)")
        if self.activation not in ("snake", "elu"):
            raise ValueError(f"CodecConfig.activation must be snake or elu, not {self.activation}")

    @property
    def hop(self) -> int:
        """Samples per code frame: the product of the strides."""
        return math.prod(self.strides)

    @property
    def frame_rate(self) -> float:
        """Code frames per second."""
        return self.sample_rate / self.hop

    @property
    def bits_per_second(self) -> float:
        """Bitrate with all ``n_q`` codebooks."""
        return self.n_q * math.log2(self.codebook_size) * self.frame_rate

    def frames(self, samples: int) -> int:
        """Code frames for ``samples`` samples: ``ceil(samples / hop)``."""
        return -(-int(samples) // self.hop)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields (tuples as lists)."""
        data = dataclasses.asdict(self)
        data["strides"] = list(self.strides)
        data["dilations"] = list(self.dilations)
        return data

    def to_json(self) -> str:
        """The config as a JSON object string."""
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CodecConfig:
        """Rebuild from :meth:`to_dict` output.

        Raises:
            ValueError: not a mapping, unknown keys, or invalid values.
        """
        return config_from_dict(cls, data, "codec config")


#: Named configurations for ``audiogen-studio train codec --config NAME``.
#:
#: - ``tiny``: for tests and the AudioLM end-to-end test: 16 kHz, 50 Hz frames (two stages,
#:   strides 8 and 40), 4 x 64 codes, ELU without weight norm, 0.39 M parameters; with
#:   ``training/codec_trainer.py: fit_tiny_codec`` (400 steps) it reproduces every note's pitch
#:   of a plucked riff within 2 % (measured over 3 seeds; the four-stage SoundStream layout at
#:   this size, Snake or ELU, needed more steps than that).
#: - ``default``: SoundStream's layout at 16 kHz / 50 Hz (strides 2·4·5·8, Snake, weight norm,
#:   D = 128, 8 x 1024 codes = 4 kbps) at C = 16: ~2 M parameters; on one CPU thread decoding
#:   runs at RTF ~0.05 and a streamed push of 1 / 5 frames takes ~1.5 / ~4.5 ms.
#: - ``large``: the same at SoundStream's C = 32 (~7.8 M parameters, ~2x the cost per sample;
#:   for GPU training).
NAMED_CODEC_CONFIGS: dict[str, CodecConfig] = {
    "tiny": CodecConfig(
        channels=16,
        strides=(8, 40),
        latent_dim=32,
        dilations=(1, 3, 9),
        residual_kernel_size=5,
        n_q=4,
        codebook_size=64,
        activation="elu",
        weight_norm=False,
    ),
    "default": CodecConfig(channels=16),
    "large": CodecConfig(channels=32),
}


def named_codec_config(name: str) -> CodecConfig:
    """A config of :data:`NAMED_CODEC_CONFIGS`, or one read from a ``.json`` file.

    Raises:
        ValueError: unknown name, unreadable or invalid JSON file.
    """
    if name in NAMED_CODEC_CONFIGS:
        return NAMED_CODEC_CONFIGS[name]
    path = Path(name)
    if path.suffix == ".json":
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ValueError(f"{path}: cannot read a codec config ({exc})") from exc
        return CodecConfig.from_dict(data)
    names = ", ".join(NAMED_CODEC_CONFIGS)
    raise ValueError(f"unknown codec config {name!r} (use {names}, or a .json file)")


# --- building blocks ------------------------------------------------------------------------------


@dataclass
class ConvState:
    """Streaming state of one causal conv: folded weights and the left context (channels last).

    ``weight`` is the effective (weight-norm folded) kernel as a matmul operand; ``context`` is
    ``[B, P, C_in]`` (the last ``P`` inputs) for a conv and ``[B, k - s, C_out]`` (bias-free
    partial sums that overhang into the next frames) for a transposed conv.
    """

    weight: torch.Tensor
    bias: torch.Tensor | None
    context: torch.Tensor


def _maybe_weight_norm(module: nn.Module, enabled: bool) -> nn.Module:
    return parametrizations.weight_norm(module) if enabled else module


class CausalConv1d(nn.Module):
    """``Conv1d`` padded on the left by ``(k - 1) d + 1 - s``: output ``i`` sees inputs
    ``< (i + 1) s``. Input ``[B, C_in, n s]`` → output ``[B, C_out, n]``."""

    def __init__(
        self,
        cin: int,
        cout: int,
        kernel: int,
        *,
        stride: int = 1,
        dilation: int = 1,
        weight_norm: bool = True,
    ) -> None:
        super().__init__()
        span = (kernel - 1) * dilation + 1
        if span < stride:
            raise ValueError(f"kernel span {span} shorter than stride {stride}")
        self.conv = _maybe_weight_norm(
            nn.Conv1d(cin, cout, kernel, stride=stride, dilation=dilation), weight_norm
        )
        self.stride = stride
        self.dilation = dilation
        self.padding = span - stride

    def _conv(self) -> nn.Conv1d:
        return self.conv  # type: ignore[return-value]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x, (self.padding, 0)))  # type: ignore[no-any-return]

    def init_state(self, batch: int, device: torch.device, dtype: torch.dtype) -> ConvState:
        conv = self._conv()
        cout, cin, k = conv.weight.shape
        # [C_out, C_in, k] -> [C_in * k, C_out]: rows match the unfolded columns below
        weight = conv.weight.detach().to(device, dtype).permute(1, 2, 0).reshape(cin * k, cout)
        bias = None if conv.bias is None else conv.bias.detach().to(device, dtype).clone()
        context = torch.zeros(batch, self.padding, cin, device=device, dtype=dtype)
        return ConvState(weight.contiguous(), bias, context)

    def push(self, x: torch.Tensor, state: ConvState) -> torch.Tensor:
        """Channels-last step: ``x [B, n s, C_in]`` → ``[B, n, C_out]`` (context updated)."""
        if self.padding:
            buf = torch.cat((state.context, x), dim=1)
            state.context = buf[:, buf.shape[1] - self.padding :]
        else:
            buf = x
        batch = buf.shape[0]
        span = state.context.shape[1] + self.stride
        cols = buf.unfold(1, span, self.stride)  # [B, n, C_in, span]
        if self.dilation > 1:
            cols = cols[..., :: self.dilation]  # [B, n, C_in, k]
        n = cols.shape[1]
        flat = cols.reshape(batch * n, -1)  # [B n, C_in k]
        out = (
            flat @ state.weight
            if state.bias is None
            else torch.addmm(state.bias, flat, state.weight)
        )
        return out.view(batch, n, -1)


class CausalConvTranspose1d(nn.Module):
    """``ConvTranspose1d`` (kernel ``k``, stride ``s``, ``s <= k <= 2 s``) with its last
    ``k - s`` outputs dropped: ``[B, C_in, n]`` → ``[B, C_out, n s]``; output ``t`` depends on
    input frames ``<= t // s``."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, *, weight_norm: bool) -> None:
        super().__init__()
        if not stride <= kernel <= 2 * stride:
            raise ValueError(f"transposed conv needs stride <= kernel <= 2 stride, got {kernel}")
        self.conv = _maybe_weight_norm(nn.ConvTranspose1d(cin, cout, kernel, stride), weight_norm)
        self.stride = stride
        self.trim = kernel - stride

    def _conv(self) -> nn.ConvTranspose1d:
        return self.conv  # type: ignore[return-value]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        return y[..., : y.shape[-1] - self.trim] if self.trim else y  # type: ignore[no-any-return]

    def init_state(self, batch: int, device: torch.device, dtype: torch.dtype) -> ConvState:
        conv = self._conv()
        cin, cout, k = conv.weight.shape
        # [C_in, C_out, k] -> [C_in, k * C_out]: one matmul gives every tap of every frame
        weight = conv.weight.detach().to(device, dtype).permute(0, 2, 1).reshape(cin, k * cout)
        bias = None if conv.bias is None else conv.bias.detach().to(device, dtype).clone()
        context = torch.zeros(batch, self.trim, cout, device=device, dtype=dtype)
        return ConvState(weight.contiguous(), bias, context)

    def push(self, x: torch.Tensor, state: ConvState) -> torch.Tensor:
        """Channels-last step: ``x [B, n, C_in]`` → ``[B, n s, C_out]`` (overhang updated)."""
        batch, n, _ = x.shape
        s, trim = self.stride, self.trim
        cout = state.weight.shape[1] // (s + trim)
        taps = (x.reshape(batch * n, -1) @ state.weight).view(batch, n, s + trim, cout)
        out = taps[:, :, :s].reshape(batch, n * s, cout)  # tap m of frame j lands at j s + m
        if trim:
            tail = taps[:, :, s:]  # [B, n, trim, C]: taps s..k-1 land in the next frame
            if trim < s:
                tail = F.pad(tail, (0, 0, 0, s - trim))
            tail = tail.reshape(batch, n * s, cout)
            out[:, s:] += tail[:, : (n - 1) * s]
            out[:, :trim] += state.context
            state.context = tail[:, (n - 1) * s : (n - 1) * s + trim]
        return out if state.bias is None else out + state.bias


class Snake(nn.Module):
    """Snake activation ``x + sin^2(a x) / a`` with a learned ``a`` per channel ``[1, C, 1]``."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.alpha = nn.Parameter(torch.ones(1, channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + (self.alpha + 1e-9).reciprocal() * torch.sin(self.alpha * x).pow(2)

    def init_state(self, batch: int, device: torch.device, dtype: torch.dtype) -> Any:
        alpha = self.alpha.detach().to(device, dtype).reshape(-1)  # [C]: channels last
        return (alpha.clone(), (alpha + 1e-9).reciprocal())

    def push(self, x: torch.Tensor, state: Any) -> torch.Tensor:
        """Channels-last: ``x [B, T, C]``."""
        alpha, inv = state
        return torch.addcmul(x, inv, torch.sin(alpha * x).square())


class _Elu(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.elu(x)

    def init_state(self, batch: int, device: torch.device, dtype: torch.dtype) -> Any:
        return None

    def push(self, x: torch.Tensor, state: Any) -> torch.Tensor:
        return F.elu(x)


def _activation(config: CodecConfig, channels: int) -> nn.Module:
    return Snake(channels) if config.activation == "snake" else _Elu()


class _Chain(nn.Module):
    """Layers applied in order; each has ``forward``, ``init_state`` and ``push``."""

    def __init__(self, layers: Sequence[nn.Module]) -> None:
        super().__init__()
        self.layers = nn.ModuleList(layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x)
        return x

    def init_state(self, batch: int, device: torch.device, dtype: torch.dtype) -> list[Any]:
        return [layer.init_state(batch, device, dtype) for layer in self.layers]  # type: ignore[operator]

    def push(self, x: torch.Tensor, state: list[Any]) -> torch.Tensor:
        for layer, s in zip(self.layers, state, strict=True):
            x = layer.push(x, s)  # type: ignore[operator]
        return x


class ResidualUnit(nn.Module):
    """``x + conv1(act(conv_k_dil(act(x))))`` at constant width and rate (SoundStream Fig. 3)."""

    def __init__(self, config: CodecConfig, channels: int, dilation: int) -> None:
        super().__init__()
        hidden = max(1, channels // config.residual_compress)
        wn = config.weight_norm
        self.block = _Chain(
            [
                _activation(config, channels),
                CausalConv1d(
                    channels,
                    hidden,
                    config.residual_kernel_size,
                    dilation=dilation,
                    weight_norm=wn,
                ),
                _activation(config, hidden),
                CausalConv1d(hidden, channels, 1, weight_norm=wn),
            ]
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y: torch.Tensor = self.block(x)
        return x + y

    def init_state(self, batch: int, device: torch.device, dtype: torch.dtype) -> list[Any]:
        return self.block.init_state(batch, device, dtype)

    def push(self, x: torch.Tensor, state: list[Any]) -> torch.Tensor:
        return x + self.block.push(x, state)


def _widths(config: CodecConfig) -> list[int]:
    """Width of each encoder stage input, then the last stage's output: C, 2C, 4C, ..."""
    return [config.channels * 2**i for i in range(len(config.strides) + 1)]


def build_encoder(config: CodecConfig) -> _Chain:
    """Audio ``[B, 1, n hop]`` → frames ``[B, D, n]`` (SoundStream §3.1)."""
    wn = config.weight_norm
    widths = _widths(config)
    layers: list[nn.Module] = [CausalConv1d(1, widths[0], config.kernel_size, weight_norm=wn)]
    for i, stride in enumerate(config.strides):
        ch = widths[i]
        layers.extend(ResidualUnit(config, ch, d) for d in config.dilations)
        layers.append(_activation(config, ch))
        layers.append(CausalConv1d(ch, widths[i + 1], 2 * stride, stride=stride, weight_norm=wn))
    layers.append(_activation(config, widths[-1]))
    layers.append(CausalConv1d(widths[-1], config.latent_dim, 3, weight_norm=wn))
    return _Chain(layers)


def build_decoder(config: CodecConfig) -> _Chain:
    """Frames ``[B, D, n]`` → audio ``[B, 1, n hop]`` (SoundStream §3.2, the encoder mirrored)."""
    wn = config.weight_norm
    widths = _widths(config)
    layers: list[nn.Module] = [
        CausalConv1d(config.latent_dim, widths[-1], config.kernel_size, weight_norm=wn)
    ]
    for i, stride in reversed(list(enumerate(config.strides))):
        layers.append(_activation(config, widths[i + 1]))
        layers.append(
            CausalConvTranspose1d(widths[i + 1], widths[i], 2 * stride, stride, weight_norm=wn)
        )
        layers.extend(ResidualUnit(config, widths[i], d) for d in config.dilations)
    layers.append(_activation(config, widths[0]))
    layers.append(CausalConv1d(widths[0], 1, config.kernel_size, weight_norm=wn))
    return _Chain(layers)


# --- the codec ------------------------------------------------------------------------------------


class Codec(nn.Module):
    """Causal conv encoder → residual VQ → causal conv decoder (see the module docstring).

    ``Codec(CodecConfig.from_dict(meta["config"]))`` rebuilds a saved model.
    """

    checkpoint_module: ClassVar[str] = "Codec"

    def __init__(self, config: CodecConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = build_encoder(config)
        self.quantizer = ResidualVQ(
            config.latent_dim,
            config.n_q,
            config.codebook_size,
            decay=config.ema_decay,
            dead_code_ratio=config.dead_code_ratio,
            quantizer_dropout=config.quantizer_dropout,
        )
        self.decoder = build_decoder(config)

    @property
    def hop(self) -> int:
        """Samples per code frame."""
        return self.config.hop

    @property
    def sample_rate(self) -> int:
        """Hz of the audio."""
        return self.config.sample_rate

    def _device_dtype(self) -> tuple[torch.device, torch.dtype]:
        p = next(self.parameters())
        return p.device, p.dtype

    def pad(self, audio: torch.Tensor) -> torch.Tensor:
        """``audio [B, 1, T]`` zero-padded on the right to ``ceil(T / hop) * hop`` samples."""
        if audio.ndim != 3 or audio.shape[1] != 1:
            raise ValueError(f"expected audio [B, 1, T], got {tuple(audio.shape)}")
        extra = (-audio.shape[-1]) % self.hop
        return F.pad(audio, (0, extra)) if extra else audio

    def encode_latent(self, audio: torch.Tensor) -> torch.Tensor:
        """Unquantized frames ``[B, D, ceil(T / hop)]`` of ``audio [B, 1, T]``."""
        return self.encoder(self.pad(audio))  # type: ignore[no-any-return]

    def forward(
        self, audio: torch.Tensor, n_q: int | None = None
    ) -> tuple[torch.Tensor, QuantizedResult]:
        """Training pass: ``audio [B, 1, T]`` → ``(audio_hat [B, 1, F hop], QuantizedResult)``.

        ``n_q``: codebooks to use (``None``: all, or random with quantizer dropout in
        training; 0: no quantization).
        """
        z = self.encode_latent(audio)
        result = self.quantizer(z, n_q)
        return self.decoder(result.quantized), result

    def encode(self, audio: torch.Tensor, n_q: int | None = None, *, beam: int = 1) -> torch.Tensor:
        """Codes ``[B, n_q, F]`` (int64) of ``audio [B, 1, T]``, ``F = ceil(T / hop)``;
        ``beam`` > 1 searches them (:mod:`~audiogen_studio.models.rvq_search`)."""
        return self.quantizer.encode(self.encode_latent(audio), n_q, beam=beam)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """Audio ``[B, 1, F hop]`` from codes ``[B, q, F]`` of the first ``q <= n_q`` books."""
        device, dtype = self._device_dtype()
        z = self.quantizer.decode(codes.to(device)).to(dtype)
        return self.decoder(z)  # type: ignore[no-any-return]

    def stream_encoder(self, batch: int = 1, n_q: int | None = None) -> CodecEncoderStream:
        """A streaming encoder of ``batch`` signals (weights snapshotted now)."""
        return CodecEncoderStream(self, batch, n_q)

    def stream_decoder(self, batch: int = 1) -> CodecDecoderStream:
        """A streaming decoder of ``batch`` code sequences (weights snapshotted now)."""
        return CodecDecoderStream(self, batch)

    def num_parameters(self) -> int:
        """Learned scalars (the codebooks are buffers and not counted)."""
        return sum(p.numel() for p in self.parameters())

    # --- checkpoints ----------------------------------------------------------------------------

    def save_pretrained(self, path: str | Path, extra: Mapping[str, Any] | None = None) -> Path:
        """Weights, codebooks and config as one ``.safetensors`` file."""
        return save_module(self, path, self.config, extra=extra)

    @classmethod
    def from_pretrained(
        cls,
        path: str | Path,
        *,
        device: str | torch.device = "cpu",
        expected_config: CodecConfig | Mapping[str, Any] | None = None,
    ) -> Codec:
        """Rebuild a codec from a file written by :meth:`save_pretrained` (eval mode).

        Args:
            path: the ``.safetensors`` weights (their metadata holds the config).
            device: where to put the model.
            expected_config: when given (e.g. the config in ``bundle.json``), the stored config
                must equal it.

        Raises:
            CheckpointError: missing or unreadable file, another module's checkpoint, a bad or
                unexpected config, tensors that do not fit.
        """
        return load_configured(  # type: ignore[no-any-return]
            path, cls, CodecConfig, device=device, expected_config=expected_config
        )


def load_codec(path_or_bundle: str | Path, *, device: str | torch.device = "cpu") -> Codec:
    """A codec from a ``.safetensors`` file or a bundle folder with a ``codec`` component.

    A bundle's ``bundle.json`` names the file (``components.codec.file``) and the config it
    must hold (``components.codec.config``).

    Raises:
        CheckpointError: no such file, no codec component, unreadable or mismatched weights.
    """
    p = Path(path_or_bundle)
    manifest = p / "bundle.json"
    if p.is_dir():
        if not manifest.is_file():
            raise CheckpointError(p, "is a folder without bundle.json (not a model bundle)")
        try:
            data = json.loads(manifest.read_text(encoding="utf-8"))
            entry = data["components"][CODEC_COMPONENT]
            file = p / str(entry["file"])
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise CheckpointError(manifest, f"unreadable bundle manifest ({exc})") from exc
        except (KeyError, TypeError) as exc:
            raise CheckpointError(manifest, "the bundle has no codec component") from exc
        expected = entry.get("config") if isinstance(entry, Mapping) else None
        return Codec.from_pretrained(file, device=device, expected_config=expected or None)
    return Codec.from_pretrained(p, device=device)


# --- streaming ------------------------------------------------------------------------------------


class CodecEncoderStream:
    """Encodes audio pushed in pieces of whole frames; equals :meth:`Codec.encode` on the whole.

    ``push(audio [B, 1, n hop]) -> codes [B, n_q, n]``. Create with :meth:`Codec.stream_encoder`.
    """

    def __init__(self, codec: Codec, batch: int, n_q: int | None = None) -> None:
        self.codec = codec
        self.batch = batch
        self.n_q = codec.quantizer._n_q(n_q)
        device, dtype = codec._device_dtype()
        self.device = device
        self.dtype = dtype
        with torch.inference_mode():
            self._state = codec.encoder.init_state(batch, device, dtype)
        self.frames = 0  # frames encoded so far

    @torch.inference_mode()
    def push(self, audio: torch.Tensor) -> torch.Tensor:
        """Codes ``[B, n_q, n]`` of the next ``n * hop`` samples ``[B, 1, n * hop]``."""
        hop = self.codec.hop
        if audio.ndim != 3 or audio.shape[0] != self.batch or audio.shape[1] != 1:
            raise ValueError(f"expected audio [{self.batch}, 1, n*{hop}], got {tuple(audio.shape)}")
        if audio.shape[-1] % hop:
            raise ValueError(f"push whole frames: {audio.shape[-1]} is not a multiple of {hop}")
        x = audio.to(self.device, self.dtype).transpose(1, 2)  # [B, n hop, 1]
        z = self.codec.encoder.push(x, self._state).transpose(1, 2)  # [B, D, n]
        self.frames += z.shape[-1]
        return self.codec.quantizer.encode(z, self.n_q)


class CodecDecoderStream:
    """Decodes codes pushed a few frames at a time; equals :meth:`Codec.decode` on the whole.

    ``push(codes [B, q, f]) -> audio [B, 1, f hop]`` (any ``q <= n_q``). Create with
    :meth:`Codec.stream_decoder`.
    """

    def __init__(self, codec: Codec, batch: int) -> None:
        self.codec = codec
        self.batch = batch
        device, dtype = codec._device_dtype()
        self.device = device
        self.dtype = dtype
        with torch.inference_mode():
            self._state = codec.decoder.init_state(batch, device, dtype)
        self.frames = 0  # frames decoded so far

    @torch.inference_mode()
    def push(self, codes: torch.Tensor) -> torch.Tensor:
        """Audio ``[B, 1, f * hop]`` of the next ``f`` code frames ``[B, q, f]``."""
        if codes.ndim != 3 or codes.shape[0] != self.batch:
            raise ValueError(f"expected codes [{self.batch}, q, f], got {tuple(codes.shape)}")
        z = self.codec.quantizer.decode(codes.to(self.device)).to(self.dtype)  # [B, D, f]
        self.frames += z.shape[-1]
        audio = self.codec.decoder.push(z.transpose(1, 2), self._state)  # [B, f hop, 1]
        return audio.transpose(1, 2).contiguous()
