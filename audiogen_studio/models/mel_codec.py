"""A spectral acoustic codec: residual k-means VQ of log-mel frames + a Vocos-style decoder.

The fast-converging alternative to the time-domain SoundStream codec (:mod:`.codec`) that
DESIGN.md §7 asks for. Shapes for the default config (16 kHz, hop 320 → 50 Hz, ``n_fft`` 1024)::

    audio [B, 1, T]                 right-padded with zeros to F·hop, F = ceil(T / hop);
                                    left-padded with n_fft - hop zeros
    |STFT| (Hann n_fft, hop, no centring)                      [B, n_fft/2 + 1, F]
    80-band mel (torchaudio filterbank), natural log           [B, n_mels, F]
    per-band mean/variance normalisation (fitted)             z [B, n_mels, F]
    residual k-means VQ, n_q × K (fitted; models/quantize.py) codes [B, n_q, F]
    ─── decode ───
    sum of the code vectors                                   ẑ [B, n_mels, F]
    Vocos (Siuzdak 2023, §3) backbone:
        conv k7  n_mels → dim, LayerNorm
        depth × ConvNeXt block: depthwise conv k7 → LayerNorm → Linear(dim, 3·dim) → GELU →
                                Linear(3·dim, dim) → layer scale, + skip   (Liu et al. 2022)
        LayerNorm                                              [B, F, dim]
    ISTFT head (Vocos §3.2): Linear(dim, n_fft + 2) → log-magnitude and phase of
        n_fft/2 + 1 bins; S = exp(log-mag) · e^{i·phase}       [B, F, n_fft/2 + 1]
    inverse real FFT, Hann synthesis window, overlap-add, division by the (periodic)
        window-square envelope                                 audio [B, 1, F·hop]

**Framing and latency.** Code frame ``f`` analyses samples ``[(f + 1)·hop - n_fft, (f + 1)·hop)``:
the encoder is causal (frame ``f`` needs no sample at or after ``(f + 1)·hop``). Its decoded
frame is synthesised over the same window, so output sample ``t`` is complete only once every
window that covers it is known — frames up to ``(t + n_fft - hop) // hop``. The decoder therefore
emits audio **delayed by** :attr:`MelCodec.latency` ``= n_fft - hop`` samples (704 = 44 ms for
the default config): ``decode(codes)[..., t]`` renders input sample ``t - latency``, and its
first ``latency`` samples render the zero padding before the signal. This keeps every code exact
(no frame is analysed with zeros standing in for future audio) and lets the stream emit exactly
``f·hop`` finished samples for ``f`` pushed frames, keeping the unfinished ``n_fft - hop``
overlap-add tail as state: :meth:`MelCodec.decode` equals the concatenated
:meth:`MelCodec.stream_decoder` output. The AudioLM engine skips the first ``latency`` samples of
its stream and generates that much more (``acoustic_codec.decoder_latency``). Vocos itself uses
centred, non-causal convolutions; here they are causal (left padding only) so that the decoder
streams — ``causal=False`` gives the centred variant, which cannot stream.

The overlap-add is written out (``irfft`` + ``fold``) rather than calling ``torch.istft``:
without centring the window envelope is zero at the first sample, which ``torch.istft`` refuses
(Vocos §3.2 does the same with its "same"-padding ISTFT), and the stream needs its tail anyway.
The envelope is the periodic sum of shifted squared windows, as if frames before the first
existed and were silent (they analysed the zero padding), so the full and the streamed decode
divide by the same numbers.

**Fitting.** The encoder has no learned weights: :meth:`MelCodec.fit_quantizer` sets the
normalisation statistics and runs residual k-means (``models/kmeans.py``) over log-mel frames of
the training data; then only the decoder is trained, on *dequantized* frames
(``training/mel_codec_trainer.py``).

**Measured** (``default`` config trained on the speech corpus on one contended CPU thread:
stage 1 in 11 min, then 15.1k decoder steps of 16 × 0.64 s in 88 min — 9.75k at lr 5e-4, 3.3k
at 1.5e-4, 2k at 5e-5; PESQ-wb / ESTOI on 8 held-out TTS clips, 57 s, voices unseen in
training): 12 codebooks (6 kbps) 1.80 / 0.80; 8 (4 kbps) 1.68 / 0.77; 4 (2 kbps) 1.47 / 0.71;
2 (1 kbps) 1.30 / 0.62; the unquantized mel through the same decoder 1.88 / 0.83, so the decoder,
not the codebooks, limits it. Opus on the same clips: ``--bitrate 6`` (7.9 kbps on disk)
2.01 / 0.85; ``--bitrate 4`` (6.9 kbps: Opus's floor) 1.33 / 0.67. Still improving when
stopped (1.13 → 1.45 → 1.64 → 1.80 at 0.5k / 2.75k / 6.75k / 15.1k steps). A causal decoder
cost nothing measurable against the centred one on identical data (1.31 / 0.69 vs
1.32 / 0.70 after 1.25k steps). One CPU thread: encode and decode RTF ~0.004; a streamed push
of 1 / 5 frames ~2 / ~3 ms (the SoundStream codec's: ~1.6 / ~4 ms).
DESIGN.md §7's throwaway prototype (same recipe, non-causal decoder, 8 × 1024): 1.94 / 0.82.
Continued on 4.6× the speech (118 min; the codebooks, hence every token, unchanged) by re-runs
of ``train mel-codec`` at falling rates — 11.8k steps at 2e-4, 2.4k at 5e-5, 2.2k + 3.9k at
2e-5 — the same 8 clips went 1.77 (0.2.0 as shipped, float16) → 1.79 → 1.85 → 1.87 → 1.89
(float32; ESTOI 0.80 → 0.82; Opus 6 kbit/s on them 1.91): lowering the rate, more than the
steps at 2e-4, moved PESQ. 6.9k more steps at 1e-5 (batch 32, codebook dropout 0.3 or 0) moved
it by -0.02 to +0.02 on test and validation clips, the noise between checkpoints: a plateau.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, cast

import torch
import torch.nn.functional as F  # noqa: N812
import torchaudio
from torch import nn

from audiogen_studio.models.checkpoint import config_from_dict, load_configured, save_module
from audiogen_studio.models.kmeans import assign, kmeans
from audiogen_studio.models.quantize import ResidualVQ

__all__ = [
    "MEL_CODEC_KIND",
    "NAMED_MEL_CODEC_CONFIGS",
    "ConvNeXtBlock",
    "MelCodec",
    "MelCodecConfig",
    "MelCodecDecoderStream",
    "MelCodecEncoderStream",
    "VocosDecoder",
    "named_mel_codec_config",
]

#: ``components.codec.kind`` of a bundle whose codec is a :class:`MelCodec`.
MEL_CODEC_KIND = "mel"
LOG_FLOOR = 1e-5  # mel magnitudes are clamped here before the log
MAX_LOG_MAGNITUDE = math.log(100.0)  # the head's magnitudes are capped at 100 (as Vocos)


@dataclass(frozen=True, kw_only=True)
class MelCodecConfig:
    """Hyper-parameters of a :class:`MelCodec`; ``MelCodecConfig.from_dict(c.to_dict()) == c``.

    Attributes:
        sample_rate: Hz of the audio.
        n_mels: mel bands per frame (the dimension the codebooks quantize).
        hop: samples per code frame.
        n_fft: FFT size and (Hann) window length of both the analysis and the synthesis;
            at least ``2 * hop``. The decoder's latency is ``n_fft - hop`` samples.
        f_min, f_max: edges of the mel filterbank in Hz (``f_max`` ``None``: Nyquist).
        n_q: residual-VQ codebooks.
        codebook_size: ``K``, vectors per codebook.
        dim: decoder width.
        depth: ConvNeXt blocks.
        intermediate: hidden width of a block's MLP (Vocos: 3 × dim).
        kernel_size: taps of the input conv and of each depthwise conv (odd).
        causal: left-padded convolutions (streamable); ``False``: centred, as in Vocos.
    """

    sample_rate: int = 16_000
    n_mels: int = 80
    hop: int = 320
    n_fft: int = 1024
    f_min: float = 0.0
    f_max: float | None = None
    n_q: int = 12
    codebook_size: int = 1024
    dim: int = 256
    depth: int = 6
    intermediate: int = 768
    kernel_size: int = 7
    causal: bool = True

    def __post_init__(self) -> None:
        for name in (
            "sample_rate",
            "n_mels",
            "hop",
            "n_fft",
            "n_q",
            "codebook_size",
            "dim",
            "depth",
            "intermediate",
            "kernel_size",
        ):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"MelCodecConfig.{name} must be a positive integer, got {value!r}")
        if self.n_fft < 2 * self.hop:
            raise ValueError(
                f"MelCodecConfig.n_fft ({self.n_fft}) must be at least 2 * hop ({2 * self.hop})"
            )
        if self.kernel_size % 2 == 0:
            raise ValueError(f"MelCodecConfig.kernel_size must be odd, got {self.kernel_size}")
        if self.codebook_size > 65_536:
            raise ValueError("MelCodecConfig.codebook_size must be at most 65536")
        if not isinstance(self.causal, bool):
            raise ValueError(f"MelCodecConfig.causal must be true or false, got {self.causal!r}")
        top = self.sample_rate / 2 if self.f_max is None else float(self.f_max)
        if not 0.0 <= float(self.f_min) < top <= self.sample_rate / 2:
            raise ValueError(
                f"MelCodecConfig: need 0 <= f_min < f_max <= {self.sample_rate / 2} Hz, got "
                f"{self.f_min}, {self.f_max}"
            )

    @property
    def frame_rate(self) -> float:
        """Code frames per second."""
        return self.sample_rate / self.hop

    @property
    def bits_per_second(self) -> float:
        """Bitrate with all ``n_q`` codebooks."""
        return self.n_q * math.log2(self.codebook_size) * self.frame_rate

    @property
    def latency(self) -> int:
        """Samples by which decoded audio lags the input: ``n_fft - hop``."""
        return self.n_fft - self.hop

    @property
    def n_bins(self) -> int:
        """Frequency bins of one STFT frame: ``n_fft // 2 + 1``."""
        return self.n_fft // 2 + 1

    def frames(self, samples: int) -> int:
        """Code frames for ``samples`` samples: ``ceil(samples / hop)``."""
        return -(-int(samples) // self.hop)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields."""
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        """The config as a JSON object string."""
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MelCodecConfig:
        """Rebuild from :meth:`to_dict` output.

        Raises:
            ValueError: not a mapping, unknown keys, or invalid values.
        """
        return config_from_dict(cls, data, "mel codec config")


#: Named configurations for ``audiogen-studio train mel-codec --config NAME``.
#:
#: - ``tiny``: for tests: 16 kHz, 50 Hz frames, 32 bands, 4 × 64 codes, width 64, 2 blocks
#:   (~0.1 M parameters).
#: - ``default``: DESIGN.md §7's prototype made causal: 80 bands, ``n_fft`` 1024 (latency 44 ms),
#:   12 × 1024 codes (6 kbps; the first 8 give 4 kbps, 4 give 2 kbps: one model, several
#:   bitrates), width 256, 6 blocks (~2.8 M parameters; figures in the module docstring).
NAMED_MEL_CODEC_CONFIGS: dict[str, MelCodecConfig] = {
    "tiny": MelCodecConfig(
        n_mels=32, n_fft=640, n_q=4, codebook_size=64, dim=64, depth=2, intermediate=192
    ),
    "default": MelCodecConfig(),
}


def named_mel_codec_config(name: str) -> MelCodecConfig:
    """A config of :data:`NAMED_MEL_CODEC_CONFIGS`, or one read from a ``.json`` file.

    Raises:
        ValueError: unknown name, unreadable or invalid JSON file.
    """
    if name in NAMED_MEL_CODEC_CONFIGS:
        return NAMED_MEL_CODEC_CONFIGS[name]
    path = Path(name)
    if path.suffix == ".json":
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ValueError(f"{path}: cannot read a mel codec config ({exc})") from exc
        return MelCodecConfig.from_dict(data)
    names = ", ".join(NAMED_MEL_CODEC_CONFIGS)
    raise ValueError(f"unknown mel codec config {name!r} (use {names}, or a .json file)")


# --- decoder --------------------------------------------------------------------------------------


class _FrameConv(nn.Module):
    """``Conv1d`` over frames ``[B, C_in, F]`` → ``[B, C_out, F]``, causal (``k - 1`` frames of
    left padding) or centred; ``push`` continues a causal conv from its left context."""

    def __init__(self, cin: int, cout: int, kernel: int, *, groups: int = 1, causal: bool) -> None:
        super().__init__()
        self.conv = nn.Conv1d(cin, cout, kernel, groups=groups)
        self.context = kernel - 1
        self.left = kernel - 1 if causal else (kernel - 1) // 2
        self.right = kernel - 1 - self.left

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x, (self.left, self.right)))  # type: ignore[no-any-return]

    def init_state(self, batch: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        """Zeros ``[B, C_in, k - 1]``: the padding the full computation starts with."""
        return torch.zeros(batch, self.conv.in_channels, self.context, device=device, dtype=dtype)

    def push(self, x: torch.Tensor, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``x [B, C_in, f]`` → ``([B, C_out, f], new state)``."""
        buf = torch.cat((state, x), dim=-1) if self.context else x
        return self.conv(buf), buf[..., buf.shape[-1] - self.context :]


class ConvNeXtBlock(nn.Module):
    """ConvNeXt block over frames (Liu et al. 2022; Vocos §3.1), ``[B, dim, F]`` → same.

    ``x + γ · W2 GELU(W1 LN(dwconv(x)))`` with a per-channel layer scale ``γ`` (init
    ``1 / depth``, as Vocos).
    """

    def __init__(self, config: MelCodecConfig) -> None:
        super().__init__()
        dim = config.dim
        self.dwconv = _FrameConv(dim, dim, config.kernel_size, groups=dim, causal=config.causal)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pwconv1 = nn.Linear(dim, config.intermediate)
        self.pwconv2 = nn.Linear(config.intermediate, dim)
        self.gamma = nn.Parameter(torch.full((dim,), 1.0 / config.depth))

    def _mlp(self, y: torch.Tensor) -> torch.Tensor:
        y = y.transpose(1, 2)  # [B, F, dim]
        y = self.pwconv2(F.gelu(self.pwconv1(self.norm(y))))
        return (self.gamma * y).transpose(1, 2)  # [B, dim, F]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self._mlp(self.dwconv(x))

    def push(self, x: torch.Tensor, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Streaming step over ``x [B, dim, f]``; ``state`` is the depthwise conv's context."""
        y, state = self.dwconv.push(x, state)
        return x + self._mlp(y), state


class VocosDecoder(nn.Module):
    """Normalised mel frames ``[B, n_mels, F]`` → audio ``[B, 1, F · hop]`` (Vocos §3, causal).

    Output sample ``t`` renders input sample ``t - (n_fft - hop)`` (see the module docstring).
    """

    window: torch.Tensor
    envelope: torch.Tensor

    def __init__(self, config: MelCodecConfig) -> None:
        super().__init__()
        self.config = config
        self.embed = _FrameConv(config.n_mels, config.dim, config.kernel_size, causal=config.causal)
        self.norm = nn.LayerNorm(config.dim, eps=1e-6)
        self.blocks = nn.ModuleList(ConvNeXtBlock(config) for _ in range(config.depth))
        self.final_norm = nn.LayerNorm(config.dim, eps=1e-6)
        self.head = nn.Linear(config.dim, 2 * config.n_bins)
        window = torch.hann_window(config.n_fft)
        self.register_buffer("window", window, persistent=False)
        # periodic overlap-add envelope: env[j] = sum_m w(j + m hop)^2 over the whole window
        sq = F.pad(window.square(), (0, (-config.n_fft) % config.hop))
        self.register_buffer("envelope", sq.view(-1, config.hop).sum(0), persistent=False)

    # -- pieces shared by the full and the streaming paths --------------------------------------

    def _blocks(self) -> list[ConvNeXtBlock]:
        return cast(list[ConvNeXtBlock], list(self.blocks))

    def _trunk_out(self, h: torch.Tensor) -> torch.Tensor:
        """``h [B, dim, f]`` after the blocks → windowed time frames ``[B, f, n_fft]`` (float32)."""
        y = self.final_norm(h.transpose(1, 2))
        out = self.head(y).float()  # [B, f, 2 bins]
        with torch.autocast(device_type=out.device.type, enabled=False):
            log_mag, phase = out.chunk(2, dim=-1)
            spec = torch.polar(log_mag.clamp(max=MAX_LOG_MAGNITUDE).exp(), phase)
            frames: torch.Tensor = torch.fft.irfft(spec, n=self.config.n_fft, dim=-1)
            return frames * self.window  # [B, f, n_fft]

    def _overlap_add(self, frames: torch.Tensor) -> torch.Tensor:
        """Windowed frames ``[B, f, n_fft]`` → overlap-added samples ``[B, f hop + latency]``."""
        batch, count, n_fft = frames.shape
        hop = self.config.hop
        out = F.fold(
            frames.transpose(1, 2),  # [B, n_fft, f]
            output_size=(1, (count - 1) * hop + n_fft),
            kernel_size=(1, n_fft),
            stride=(1, hop),
        )
        return out.view(batch, -1)

    def _normalise(self, samples: torch.Tensor) -> torch.Tensor:
        """Divide ``[B, f hop]`` finished samples by the periodic window envelope."""
        count = samples.shape[-1] // self.config.hop
        return samples / self.envelope.repeat(count)

    # -- full computation -----------------------------------------------------------------------

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x [B, n_mels, F]`` → audio ``[B, 1, F hop]`` (float32)."""
        h = self.norm(self.embed(x).transpose(1, 2)).transpose(1, 2)  # [B, dim, F]
        for block in self.blocks:
            h = block(h)
        frames = self._trunk_out(h)
        samples = self._overlap_add(frames)[:, : frames.shape[1] * self.config.hop]
        return self._normalise(samples)[:, None]

    # -- streaming ------------------------------------------------------------------------------

    def init_state(self, batch: int, device: torch.device, dtype: torch.dtype) -> list[Any]:
        """Conv contexts (input conv, each block) and the overlap-add tail ``[B, n_fft - hop]``."""
        if not self.config.causal:
            raise ValueError("a mel codec with causal=False cannot stream (its convs look ahead)")
        convs = [self.embed.init_state(batch, device, dtype)]
        convs.extend(b.dwconv.init_state(batch, device, dtype) for b in self._blocks())
        tail = torch.zeros(batch, self.config.latency, device=device, dtype=torch.float32)
        return [convs, tail]

    def push(self, x: torch.Tensor, state: list[Any]) -> torch.Tensor:
        """``x [B, n_mels, f]`` → the ``f hop`` samples ``[B, 1, f hop]`` they finish."""
        convs, tail = state
        h, convs[0] = self.embed.push(x, convs[0])
        h = self.norm(h.transpose(1, 2)).transpose(1, 2)
        for i, block in enumerate(self._blocks(), start=1):
            h, convs[i] = block.push(h, convs[i])
        frames = self._trunk_out(h)
        samples = self._overlap_add(frames)  # [B, f hop + latency]
        lat = tail.shape[-1]
        samples = torch.cat((samples[:, :lat] + tail, samples[:, lat:]), dim=-1)
        done = frames.shape[1] * self.config.hop
        state[1] = samples[:, done:]
        return self._normalise(samples[:, :done])[:, None]


# --- the codec ------------------------------------------------------------------------------------


class MelCodec(nn.Module):
    """Log-mel → residual k-means VQ → Vocos-style decoder (see the module docstring).

    Has the interface of :class:`~audiogen_studio.models.codec.Codec` that the AudioLM engine
    and the codec CLI use (``config``, ``encode``, ``decode``, ``stream_encoder``,
    ``stream_decoder``, ``from_pretrained``, ``num_parameters``), plus :attr:`latency`.
    ``MelCodec(MelCodecConfig.from_dict(meta["config"]))`` rebuilds a saved model.
    """

    checkpoint_module: ClassVar[str] = "MelCodec"
    kind: ClassVar[str] = MEL_CODEC_KIND

    mel_mean: torch.Tensor
    mel_std: torch.Tensor
    analysis_window: torch.Tensor
    mel_fb: torch.Tensor

    def __init__(self, config: MelCodecConfig) -> None:
        super().__init__()
        self.config = config
        self.register_buffer("mel_mean", torch.zeros(config.n_mels))
        self.register_buffer("mel_std", torch.ones(config.n_mels))
        self.register_buffer("analysis_window", torch.hann_window(config.n_fft), persistent=False)
        fb = torchaudio.functional.melscale_fbanks(
            config.n_bins,
            float(config.f_min),
            float(config.sample_rate / 2 if config.f_max is None else config.f_max),
            config.n_mels,
            config.sample_rate,
        )  # [bins, mels]
        self.register_buffer("mel_fb", fb, persistent=False)
        self.quantizer = ResidualVQ(
            config.n_mels, config.n_q, config.codebook_size, quantizer_dropout=False
        )
        self.decoder = VocosDecoder(config)

    @property
    def hop(self) -> int:
        """Samples per code frame."""
        return self.config.hop

    @property
    def sample_rate(self) -> int:
        """Hz of the audio."""
        return self.config.sample_rate

    @property
    def latency(self) -> int:
        """Samples by which :meth:`decode` (and the stream) lag the encoded audio."""
        return self.config.latency

    @property
    def receptive_frames(self) -> int:
        """Code frames of history the decoder state depends on (input conv, blocks, overlap)."""
        c = self.config
        return (c.kernel_size - 1) * (c.depth + 1) + -(-c.latency // c.hop) + 1

    @property
    def fitted(self) -> bool:
        """Whether :meth:`fit_quantizer` has set the statistics and codebooks."""
        return self.quantizer.initialized

    def _device(self) -> torch.device:
        return self.mel_mean.device

    def _dtype(self) -> torch.dtype:
        return next(self.decoder.parameters()).dtype

    # -- analysis -------------------------------------------------------------------------------

    def log_mel(self, audio: torch.Tensor, *, with_context: bool = False) -> torch.Tensor:
        """Natural-log mel frames ``[B, n_mels, F]`` (float32) of ``audio [B, 1, T]`` or ``[B, T]``.

        By default the audio is padded as :meth:`encode` does (``F = ceil(T / hop)``). With
        ``with_context`` its first ``n_fft - hop`` samples are the left context of the first
        frame instead of zeros: ``T = latency + F hop`` gives ``F`` frames, frame ``f``
        analysing ``audio[f hop : f hop + n_fft]`` (training crops).
        """
        if audio.ndim == 3:
            if audio.shape[1] != 1:
                raise ValueError(f"expected audio [B, 1, T], got {tuple(audio.shape)}")
            audio = audio[:, 0]
        if audio.ndim != 2:
            raise ValueError(f"expected audio [B, 1, T] or [B, T], got {tuple(audio.shape)}")
        c = self.config
        x = audio.to(self._device(), torch.float32)
        if with_context:
            if x.shape[-1] < c.n_fft or (x.shape[-1] - c.latency) % c.hop:
                raise ValueError(
                    f"with_context wants {c.latency} + F * {c.hop} samples, got {x.shape[-1]}"
                )
        else:
            x = F.pad(x, (c.latency, (-x.shape[-1]) % c.hop))
        with torch.autocast(device_type=x.device.type, enabled=False):
            spec = torch.stft(
                x, c.n_fft, c.hop, window=self.analysis_window, center=False, return_complex=True
            ).abs()  # [B, bins, F]
            mel = torch.einsum("bkf,km->bmf", spec, self.mel_fb)
            return mel.clamp_min(LOG_FLOOR).log()

    def normalize(self, log_mel: torch.Tensor) -> torch.Tensor:
        """``(log_mel - mean) / std`` per band, ``[B, n_mels, F]``."""
        return (log_mel - self.mel_mean[:, None]) / self.mel_std[:, None]

    def features(self, audio: torch.Tensor, *, with_context: bool = False) -> torch.Tensor:
        """Normalised log-mel frames ``z [B, n_mels, F]`` (what the codebooks quantize)."""
        return self.normalize(self.log_mel(audio, with_context=with_context))

    @torch.no_grad()
    def fit_quantizer(
        self, log_mel: torch.Tensor, *, iters: int = 20, seed: int = 0, max_points: int = 200_000
    ) -> dict[str, float]:
        """Fit the normalisation and the codebooks on log-mel frames ``[N, n_mels]``.

        Per-band mean and standard deviation, then residual k-means: codebook ``i`` clusters
        what codebooks ``< i`` left (k-means++ seeding, ``iters`` Lloyd iterations, at most
        ``max_points`` frames; models/kmeans.py). Runs on the frames' device, without any
        collective call (under torchrun, fit on one rank and share the weights).

        Returns:
            The relative squared error ``|z - ẑ|² / |z|²`` of the frames after each codebook
            (``"rel_err_q1"``, ...).
        """
        c = self.config
        if log_mel.ndim != 2 or log_mel.shape[1] != c.n_mels:
            raise ValueError(f"expected log-mel frames [N, {c.n_mels}], got {tuple(log_mel.shape)}")
        x = log_mel.detach().float()
        mean = x.mean(0)
        std = x.std(0).clamp_min(1e-3)
        self.mel_mean.copy_(mean)
        self.mel_std.copy_(std)
        z = (x - mean) / std
        if z.shape[0] > max_points:
            g = torch.Generator().manual_seed(seed)
            z = z[torch.randperm(z.shape[0], generator=g)[:max_points].to(z.device)]
        total = float(z.square().sum())
        residual = z
        errors: dict[str, float] = {}
        for i, q in enumerate(self.quantizer.codebooks):
            centroids = kmeans(residual, c.codebook_size, iters=iters, seed=seed + i)
            codes = assign(residual, centroids)
            counts = torch.bincount(codes, minlength=c.codebook_size).float()
            q.embed.copy_(centroids)
            q.cluster_size.copy_(counts)
            q.embed_sum.copy_(centroids * counts[:, None])
            q.initialized.fill_(True)
            residual = residual - centroids[codes]
            errors[f"rel_err_q{i + 1}"] = float(residual.square().sum()) / max(total, 1e-12)
        return errors

    # -- the codec interface --------------------------------------------------------------------

    def encode(self, audio: torch.Tensor, n_q: int | None = None, *, beam: int = 1) -> torch.Tensor:
        """Codes ``[B, n_q, F]`` (int64) of ``audio [B, 1, T]``, ``F = ceil(T / hop)``.

        ``beam`` > 1 searches the codes with that many partial sums per stage
        (:mod:`~audiogen_studio.models.rvq_search`): closer frames, same codebooks and bitrate.
        """
        with torch.no_grad():
            return self.quantizer.encode(self.features(audio), n_q, beam=beam)

    def dequantize(self, codes: torch.Tensor) -> torch.Tensor:
        """Normalised frames ``ẑ [B, n_mels, F]`` from codes ``[B, q, F]`` (``q <= n_q``)."""
        return self.quantizer.decode(codes.to(self._device()))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """Decoder: normalised frames ``z [B, n_mels, F]`` → audio ``[B, 1, F hop]`` (float32),
        delayed by :attr:`latency` samples."""
        return self.decoder(z.to(self._dtype()))  # type: ignore[no-any-return]

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """Audio ``[B, 1, F hop]`` from codes ``[B, q, F]`` of the first ``q <= n_q`` books.

        Sample ``t`` renders input sample ``t - latency``; equals the concatenated
        :meth:`stream_decoder` output. Use :meth:`decode_aligned` for audio aligned with the
        input.
        """
        return self(self.dequantize(codes))  # type: ignore[no-any-return]

    def decode_aligned(self, codes: torch.Tensor, samples: int | None = None) -> torch.Tensor:
        """Audio ``[B, 1, samples]`` aligned with the encoded input (default ``F hop - latency``
        samples: those every window of which is known; later ones are zeros)."""
        audio = self.decode(codes)[..., self.latency :]
        if samples is None:
            return audio
        if audio.shape[-1] >= samples:
            return audio[..., :samples]
        return F.pad(audio, (0, samples - audio.shape[-1]))

    def stream_encoder(self, batch: int = 1, n_q: int | None = None) -> MelCodecEncoderStream:
        """A streaming encoder of ``batch`` signals."""
        return MelCodecEncoderStream(self, batch, n_q)

    def stream_decoder(self, batch: int = 1) -> MelCodecDecoderStream:
        """A streaming decoder of ``batch`` code sequences (needs ``causal=True``)."""
        return MelCodecDecoderStream(self, batch)

    @torch.no_grad()
    def adopt_decoder(self, other: MelCodec) -> None:
        """Start from ``other``'s trained decoder (fine-tuning on new material).

        This codec's normalisation statistics differ from ``other``'s, so the decoder's input
        conv is rewritten to see what it saw before: ``z_other = a·z + b`` per band with
        ``a = std / std_other`` and ``b = (mean - mean_other) / std_other``, folded into the
        conv's weights ``W·a`` and bias ``+ Σ_k W·b``: the same audio past the first
        :attr:`receptive_frames` frames, where the zero padding means silence in either scale.

        Raises:
            ValueError: the decoders differ in shape (mels, FFT, hop, width, depth, kernel) or
                either codec is unfitted.
        """
        mine, theirs = self.config, other.config
        shape = ("sample_rate", "n_mels", "n_fft", "hop", "dim", "depth", "kernel_size", "causal")
        differ = [f for f in shape if getattr(mine, f) != getattr(theirs, f)]
        if differ:
            raise ValueError(f"the decoders differ in {', '.join(differ)}")
        if not (self.fitted and other.fitted):
            raise ValueError("fit the quantizer (stage 1) of both codecs first")
        self.decoder.load_state_dict(other.decoder.state_dict())
        scale = self.mel_std / other.mel_std  # [n_mels]
        shift = (self.mel_mean - other.mel_mean) / other.mel_std
        conv = self.decoder.embed.conv
        weight = conv.weight.clone()  # [dim, n_mels, k]
        conv.weight.copy_(weight * scale[None, :, None])
        if conv.bias is not None:
            conv.bias.add_(torch.einsum("omk,m->o", weight, shift))

    def num_parameters(self) -> int:
        """Learned scalars (the codebooks and statistics are buffers and not counted)."""
        return sum(p.numel() for p in self.parameters())

    # -- checkpoints ----------------------------------------------------------------------------

    def save_pretrained(self, path: str | Path, extra: Mapping[str, Any] | None = None) -> Path:
        """Weights, statistics, codebooks and config as one ``.safetensors`` file."""
        return save_module(self, path, self.config, extra=extra)

    @classmethod
    def from_pretrained(
        cls,
        path: str | Path,
        *,
        device: str | torch.device = "cpu",
        expected_config: MelCodecConfig | Mapping[str, Any] | None = None,
    ) -> MelCodec:
        """Rebuild a codec from a file written by :meth:`save_pretrained` (eval mode).

        Raises:
            CheckpointError: missing or unreadable file, another module's checkpoint, a bad or
                unexpected config, tensors that do not fit.
        """
        return load_configured(  # type: ignore[no-any-return]
            path, cls, MelCodecConfig, device=device, expected_config=expected_config
        )


# --- streaming ------------------------------------------------------------------------------------


class MelCodecEncoderStream:
    """Encodes audio pushed in whole frames; equals :meth:`MelCodec.encode` on the whole.

    ``push(audio [B, 1, n hop]) -> codes [B, n_q, n]``; the state is the last ``n_fft - hop``
    samples (the next frame's left context).
    """

    def __init__(self, codec: MelCodec, batch: int, n_q: int | None = None) -> None:
        self.codec = codec
        self.batch = batch
        self.n_q = codec.quantizer._n_q(n_q)
        self._context = torch.zeros(batch, codec.latency, device=codec._device())
        self.frames = 0

    @torch.inference_mode()
    def push(self, audio: torch.Tensor) -> torch.Tensor:
        """Codes ``[B, n_q, n]`` of the next ``n * hop`` samples ``[B, 1, n * hop]``."""
        hop = self.codec.hop
        if audio.ndim != 3 or audio.shape[0] != self.batch or audio.shape[1] != 1:
            raise ValueError(f"expected audio [{self.batch}, 1, n*{hop}], got {tuple(audio.shape)}")
        if audio.shape[-1] % hop:
            raise ValueError(f"push whole frames: {audio.shape[-1]} is not a multiple of {hop}")
        n = audio.shape[-1] // hop
        if n == 0:
            return torch.zeros(self.batch, self.n_q, 0, dtype=torch.long, device=audio.device)
        buf = torch.cat((self._context, audio[:, 0].to(self._context)), dim=-1)
        self._context = buf[:, buf.shape[-1] - self.codec.latency :]
        self.frames += n
        z = self.codec.features(buf, with_context=True)
        return self.codec.quantizer.encode(z, self.n_q)


class MelCodecDecoderStream:
    """Decodes codes pushed a few frames at a time; equals :meth:`MelCodec.decode` on the whole.

    ``push(codes [B, q, f]) -> audio [B, 1, f hop]``: the samples those frames finish, i.e.
    delayed by :attr:`MelCodec.latency`. Weights are used as they are at each push.
    """

    def __init__(self, codec: MelCodec, batch: int) -> None:
        self.codec = codec
        self.batch = batch
        with torch.inference_mode():
            self._state = codec.decoder.init_state(batch, codec._device(), codec._dtype())
        self.frames = 0

    @torch.inference_mode()
    def push(self, codes: torch.Tensor) -> torch.Tensor:
        """Audio ``[B, 1, f * hop]`` finished by the next ``f`` code frames ``[B, q, f]``."""
        if codes.ndim != 3 or codes.shape[0] != self.batch:
            raise ValueError(f"expected codes [{self.batch}, q, f], got {tuple(codes.shape)}")
        if codes.shape[-1] == 0:
            return torch.zeros(self.batch, 1, 0, device=self.codec._device())
        z = self.codec.dequantize(codes).to(self.codec._dtype())
        self.frames += codes.shape[-1]
        return self.codec.decoder.push(z, self._state)
