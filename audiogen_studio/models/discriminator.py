"""Multi-scale STFT discriminator and GAN losses (SoundStream §3.4, EnCodec §3.4 "MS-STFTD").

Each scale looks at the complex STFT of the waveform (real and imaginary parts as two input
channels, time × frequency as a 2-D image) with a small 2-D conv net::

    audio [B, 1, T] → STFT (n_fft, hop n_fft/4, Hann) → [B, 2, frames, n_fft/2 + 1]
    conv (3, 9)                            2 → F
    conv (3, 9), dilation (d, 1) in time, stride (1, 2) in frequency     for d in dilations
                                           (F → F · filters_scale, up to max_filters)
    conv (3, 3)                            → same width
    conv (3, 3)                            → 1      logits [B, 1, frames, bins']

LeakyReLU(0.2) between layers, weight normalisation throughout. :meth:`MultiScaleSTFTDiscriminator
.forward` returns the logits of every scale and every scale's intermediate feature maps (for the
feature-matching loss).

Losses (SoundStream eqs. 1-3):

- discriminator, hinge: ``mean_k [ relu(1 - D_k(x)) + relu(1 + D_k(G(x))) ]``;
- generator, hinge: ``mean_k relu(1 - D_k(G(x)))``;
- feature matching: ``mean_{k,l} |D_k^l(x) - D_k^l(G(x))|_1 / mean |D_k^l(x)|`` (relative L1 as
  in EnCodec, so every layer counts alike).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn
from torch.nn.utils import parametrizations

from audiogen_studio.models.checkpoint import config_from_dict

__all__ = [
    "DiscriminatorConfig",
    "DiscriminatorOutput",
    "MultiScaleSTFTDiscriminator",
    "discriminator_hinge_loss",
    "feature_matching_loss",
    "generator_hinge_loss",
]


@dataclass(frozen=True, kw_only=True)
class DiscriminatorConfig:
    """Hyper-parameters of a :class:`MultiScaleSTFTDiscriminator`.

    Attributes:
        n_ffts: FFT size of each scale (hop ``n_fft // 4``, window ``n_fft``).
        filters: channels of the first conv (EnCodec: 32).
        filters_scale: width factor of each dilated layer (EnCodec: 1, constant width).
        max_filters: channel cap.
        dilations: time dilations of the strided convs.
    """

    n_ffts: tuple[int, ...] = (1024, 2048, 512)
    filters: int = 32
    filters_scale: int = 1
    max_filters: int = 256
    dilations: tuple[int, ...] = (1, 2, 4)

    def __post_init__(self) -> None:
        object.__setattr__(self, "n_ffts", tuple(int(n) for n in self.n_ffts))
        object.__setattr__(self, "dilations", tuple(int(d) for d in self.dilations))
        if not self.n_ffts or min(self.n_ffts) < 16:
            raise ValueError(f"DiscriminatorConfig.n_ffts must be >= 16, got {self.n_ffts}")
        if self.filters < 1 or self.max_filters < self.filters or self.filters_scale < 1:
            raise ValueError(
                "DiscriminatorConfig: need 1 <= filters <= max_filters and filters_scale >= 1"
            )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields."""
        data = dataclasses.asdict(self)
        data["n_ffts"] = list(self.n_ffts)
        data["dilations"] = list(self.dilations)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DiscriminatorConfig:
        """Rebuild from :meth:`to_dict` output (``ValueError`` on unknown keys or bad values)."""
        return config_from_dict(cls, data, "discriminator config")


@dataclass
class DiscriminatorOutput:
    """Logits ``[B, 1, frames, bins]`` per scale and the feature maps of each scale's layers."""

    logits: list[torch.Tensor]
    features: list[list[torch.Tensor]]


def _wn(module: nn.Module) -> nn.Module:
    wrapped: nn.Module = parametrizations.weight_norm(module)
    return wrapped


class STFTDiscriminator(nn.Module):
    """One scale of the MS-STFT discriminator (see the module docstring)."""

    window: torch.Tensor

    def __init__(self, n_fft: int, config: DiscriminatorConfig) -> None:
        super().__init__()
        self.n_fft = n_fft
        self.hop = n_fft // 4
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)
        f = config.filters
        convs: list[nn.Module] = [_wn(nn.Conv2d(2, f, (3, 9), padding=(1, 4)))]
        ch = f
        for d in config.dilations:
            nxt = min(ch * config.filters_scale, config.max_filters)
            convs.append(
                _wn(nn.Conv2d(ch, nxt, (3, 9), stride=(1, 2), dilation=(d, 1), padding=(d, 4)))
            )
            ch = nxt
        convs.append(_wn(nn.Conv2d(ch, ch, (3, 3), padding=(1, 1))))
        self.convs = nn.ModuleList(convs)
        self.out = _wn(nn.Conv2d(ch, 1, (3, 3), padding=(1, 1)))

    def forward(self, audio: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """``audio [B, 1, T]`` → ``(logits [B, 1, frames, bins'], feature maps)``."""
        spec = torch.stft(
            audio[:, 0].float(),
            self.n_fft,
            self.hop,
            window=self.window,
            return_complex=True,
        )  # [B, bins, frames]
        x = torch.stack((spec.real, spec.imag), 1).transpose(2, 3)  # [B, 2, frames, bins]
        features: list[torch.Tensor] = []
        for conv in self.convs:
            x = F.leaky_relu(conv(x), 0.2)
            features.append(x)
        return self.out(x), features


class MultiScaleSTFTDiscriminator(nn.Module):
    """STFT discriminators at several resolutions (EnCodec §3.4)."""

    def __init__(self, config: DiscriminatorConfig | None = None) -> None:
        super().__init__()
        self.config = config or DiscriminatorConfig()
        self.scales = nn.ModuleList(STFTDiscriminator(n, self.config) for n in self.config.n_ffts)

    def forward(self, audio: torch.Tensor) -> DiscriminatorOutput:
        """Logits and feature maps of every scale for ``audio [B, 1, T]``."""
        logits: list[torch.Tensor] = []
        features: list[list[torch.Tensor]] = []
        for scale in self.scales:
            out, feats = scale(audio)
            logits.append(out)
            features.append(feats)
        return DiscriminatorOutput(logits, features)


def discriminator_hinge_loss(
    real: Sequence[torch.Tensor], fake: Sequence[torch.Tensor]
) -> torch.Tensor:
    """Hinge loss of the discriminator: ``mean_k relu(1 - real_k) + relu(1 + fake_k)``."""
    losses = [
        F.relu(1.0 - r.float()).mean() + F.relu(1.0 + f.float()).mean()
        for r, f in zip(real, fake, strict=True)
    ]
    return torch.stack(losses).mean()


def generator_hinge_loss(fake: Sequence[torch.Tensor]) -> torch.Tensor:
    """Adversarial loss of the generator: ``mean_k relu(1 - fake_k)``."""
    return torch.stack([F.relu(1.0 - f.float()).mean() for f in fake]).mean()


def feature_matching_loss(
    real: Sequence[Sequence[torch.Tensor]], fake: Sequence[Sequence[torch.Tensor]]
) -> torch.Tensor:
    """Relative L1 between the discriminator's feature maps of real and generated audio.

    ``real`` features are treated as constants (detached).
    """
    losses = []
    for rs, fs in zip(real, fake, strict=True):
        for r, f in zip(rs, fs, strict=True):
            r = r.detach().float()
            losses.append(F.l1_loss(f.float(), r) / r.abs().mean().clamp_min(1e-8))
    return torch.stack(losses).mean()
