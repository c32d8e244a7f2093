"""Pitch-class (chroma) features as the semantic encoder of a music bundle.

AudioLM's semantic tokens (Borsos et al. 2022, §3.1) come from a self-supervised *speech* encoder;
on music they carry timbre and rhythm but little pitch (measured for the ``music`` bundle: with
the real continuation's semantic tokens the generated continuation still agreed with the prompt's
key no better than with generated ones). MusicGen conditions its melody model on a chromagram for
exactly this reason (Copet et al. 2023, §2.3 "Melody conditioning"). This encoder gives the
k-means tokenizer frames that *are* pitch content, so the semantic LM models harmony and the
coarse LM, conditioned on those tokens, must render the pitch classes they name.

Per frame (``F = ceil(T / hop)`` frames of ``audio [B, T]``, frame ``j`` centred on sample
``j·hop + hop/2``: the convention of :mod:`audiogen_studio.models.semantic`)::

    audio [B, T] ─► |STFT| (Hann, n_fft samples, centred)  ─► pitch-class filterbank ─► [B, F, 12]
                      chroma (Fujishima 1999; Bartsch & Wakefield 2005): each bin between f_min and
                      f_max adds its magnitude to the pitch classes within a semitone of its
                      frequency (triangular weight), then the 12 values are scaled to unit L2 norm
                      (``log1p`` compressed first), so loudness does not move the pitch profile
                 ─► |STFT| (Hann, 2·hop samples, centred)  ─► log energy e_j              [B, F, 1]
                                                          ─► onset  max(0, e_j - e_{j-1})  [B, F, 1]
    concatenated                                                                          [B, F, 14]

The long window (``n_fft`` 4096 = 256 ms at 16 kHz, 3.9 Hz per bin) resolves semitones down to
about 65 Hz; the short one keeps the attacks the rhythm lives in. No weights: the filterbanks
are buffers rebuilt from :class:`ChromaConfig`, so a tokenizer file holds only the config,
centroids and normalisation. ``layer`` is always 0 (there are no layers).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F  # noqa: N812

from audiogen_studio.models.checkpoint import config_from_dict
from audiogen_studio.models.semantic import FeatureEncoder, frame_count, pad_to_centred_frames

__all__ = ["PITCH_CLASSES", "ChromaConfig", "ChromaEncoder", "chroma_filterbank"]

#: names of the first 12 feature dimensions (and filterbank rows)
PITCH_CLASSES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")

# MIDI note of A4 and its frequency: pitch class of MIDI note m is m mod 12 (C = 0).
_A4_MIDI = 69
_A4_HZ = 440.0


@dataclass(frozen=True, kw_only=True)
class ChromaConfig:
    """Configuration of a :class:`ChromaEncoder`.

    Attributes:
        sample_rate: Hz of the audio it reads.
        hop: samples per frame (320 → 50 Hz at 16 kHz, the acoustic token rate).
        n_fft: STFT size (and Hann window) of the chroma analysis.
        f_min, f_max: the band whose bins count towards the chroma (Hz).
        compression: ``log1p(compression · chroma / max)`` before the unit-norm scaling
            (0: linear magnitudes).
    """

    sample_rate: int = 16_000
    hop: int = 320
    n_fft: int = 4096
    f_min: float = 60.0
    f_max: float = 4_200.0
    compression: float = 10.0

    def __post_init__(self) -> None:
        if self.sample_rate < 1 or self.hop < 1:
            raise ValueError("sample_rate and hop must be positive")
        if self.n_fft < 2 * self.hop or self.n_fft & (self.n_fft - 1):
            raise ValueError(f"n_fft must be a power of two of at least 2·hop, got {self.n_fft}")
        if not 0 < self.f_min < self.f_max <= self.sample_rate / 2:
            raise ValueError(
                f"need 0 < f_min < f_max <= {self.sample_rate / 2:g} Hz, "
                f"got {self.f_min:g}..{self.f_max:g}"
            )
        if self.compression < 0:
            raise ValueError(f"compression must be >= 0, got {self.compression}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ChromaConfig:
        """Rebuild from :meth:`to_dict` output (``ValueError`` on unknown or missing keys)."""
        return config_from_dict(cls, data, "chroma encoder config")


def chroma_filterbank(
    sample_rate: int, n_fft: int, f_min: float, f_max: float
) -> npt.NDArray[np.float32]:
    """``[12, n_fft/2 + 1]`` weights from STFT bins to pitch classes (C first).

    A bin at frequency ``f`` lies at fractional MIDI pitch ``p = 69 + 12 log2(f / 440)``; it
    adds to pitch class ``c`` with weight ``max(0, 1 - d)``, ``d`` the circular distance in
    semitones between ``p mod 12`` and ``c``. Bins outside ``[f_min, f_max]`` weigh nothing;
    each bin's weights sum to 1.
    """
    freqs = np.arange(n_fft // 2 + 1) * sample_rate / n_fft
    bank = np.zeros((12, freqs.size), dtype=np.float64)
    band = (freqs >= f_min) & (freqs <= f_max)
    pitch = _A4_MIDI + 12.0 * np.log2(freqs[band] / _A4_HZ)
    for c in range(12):
        d = np.abs((pitch - c + 6.0) % 12.0 - 6.0)
        bank[c, band] = np.maximum(0.0, 1.0 - d)
    total = bank.sum(axis=0, keepdims=True)
    bank = np.divide(bank, total, out=np.zeros_like(bank), where=total > 0)
    out: npt.NDArray[np.float32] = bank.astype(np.float32)
    return out


class ChromaEncoder(FeatureEncoder):
    """Chroma + log energy + onset frames of ``audio [B, T]`` (module docstring).

    ``features(audio, 0) → [B, ceil(T / hop), 14]`` float32. It has no parameters.
    """

    kind: ClassVar[str] = "chroma"
    FEATURES: ClassVar[int] = 14
    _FLOOR: ClassVar[float] = 1e-8

    chroma_bank: torch.Tensor
    chroma_window: torch.Tensor
    energy_window: torch.Tensor

    def __init__(self, config: ChromaConfig | None = None) -> None:
        super().__init__()
        self.config = config or ChromaConfig()
        c = self.config
        self.sample_rate = c.sample_rate
        self.hop = c.hop
        self.num_layers = 0
        self.energy_fft = 2 * c.hop
        bank = chroma_filterbank(c.sample_rate, c.n_fft, c.f_min, c.f_max)
        self.register_buffer("chroma_bank", torch.from_numpy(bank), persistent=False)
        self.register_buffer(
            "chroma_window", torch.hann_window(c.n_fft, periodic=True), persistent=False
        )
        self.register_buffer(
            "energy_window", torch.hann_window(self.energy_fft, periodic=True), persistent=False
        )

    def feature_dim(self, layer: int) -> int:
        """14 (12 pitch classes, log energy, onset)."""
        self.check_layer(layer)
        return self.FEATURES

    def config_dict(self) -> dict[str, Any]:
        """:class:`ChromaConfig` as a dict."""
        return self.config.to_dict()

    def _magnitudes(self, audio: torch.Tensor, n_fft: int, window: torch.Tensor) -> torch.Tensor:
        """``|STFT| [B, n_fft/2 + 1, F]`` with frame ``j`` centred on ``j·hop + hop/2``."""
        padded = pad_to_centred_frames(audio, self.hop, n_fft)
        spec = torch.stft(
            padded, n_fft, hop_length=self.hop, window=window, center=False, return_complex=True
        )
        return spec.abs()[..., : frame_count(audio.shape[-1], self.hop)]

    def features(self, audio: torch.Tensor, layer: int) -> torch.Tensor:
        """``audio [B, T]`` → ``[B, ceil(T / hop), 14]`` (layer must be 0)."""
        self.check_layer(layer)
        x = audio.float()
        if x.ndim != 2:
            raise ValueError(f"expected audio [B, T], got {tuple(x.shape)}")
        mag = self._magnitudes(x, self.config.n_fft, self.chroma_window)  # [B, K, F]
        chroma = torch.einsum("ck,bkf->bfc", self.chroma_bank, mag)  # [B, F, 12]
        if self.config.compression > 0:
            peak = chroma.amax(dim=-1, keepdim=True).clamp_min(self._FLOOR)
            chroma = torch.log1p(self.config.compression * chroma / peak)
        chroma = chroma / chroma.norm(dim=-1, keepdim=True).clamp_min(self._FLOOR)
        short = self._magnitudes(x, self.energy_fft, self.energy_window)  # [B, K', F]
        power = short.square().mean(dim=1) / float(self.energy_window.square().sum())
        energy = torch.log(power + 1e-10)  # [B, F]
        onset = (energy - F.pad(energy, (1, 0), value=-23.0)[:, :-1]).clamp_min(0.0)
        return torch.cat((chroma, energy[..., None], onset[..., None]), dim=-1)

    def extra_repr(self) -> str:
        c = self.config
        return (
            f"sample_rate={c.sample_rate}, hop={c.hop}, n_fft={c.n_fft}, "
            f"band={c.f_min:g}..{c.f_max:g} Hz ({math.log2(c.f_max / c.f_min):.1f} octaves)"
        )
