"""Codec quality against the input, side by side with Opus (issue 6 item 4; DESIGN.md §7).

Four full-reference figures, each of a degraded signal against the clean input:

- **PESQ-wb** (ITU-T P.862.2, the ``pesq`` package): MOS-LQO 1.0–4.64 at 16 kHz;
- **ESTOI** (Jensen & Taal 2016, ``pystoi``): extended short-time objective intelligibility, 0–1;
- **ViSQOL** v3 (Chinen et al. 2020, ``visqol-python``): MOS-LQO 1–5, speech mode at 16 kHz
  with the deep-lattice mapping of the C++ default (its TFLite model ships in the wheel; it runs
  on ``ai-edge-litert``, ``visqol-python[lattice]``). Audio mode (48 kHz, SVR) is available for
  full-band codecs but not used for 16 kHz audio: on held-out TTS it scored the 4 kbit/s
  default-audiolm codec (PESQ 1.04) level with Opus 6 kbit/s (PESQ 1.8), while speech mode ranks
  them like PESQ (1.0–1.3 against 1.6–2.2; Opus 12 kbit/s ~4.0). Speech mode's polynomial
  fallback, which visqol-python uses without ai-edge-litert, over-predicts by 1–2 MOS points, so
  it is never used silently;
- **log-mel L1**: mean absolute difference of natural-log mel spectrograms (80 Slaney mels,
  1024-point FFT, hop 256 at 16 kHz, floor 1e-5), the "mel distance" of EnCodec/HiFi-GAN.

With ``with_dnsmos`` (speech) each decoded clip, and the input, also gets DNSMOS OVRL
(:func:`~audiogen_studio.evaluation.speech_quality.dnsmos`, no reference): how natural the
re-synthesis sounds, next to the input's own score (the ceiling) — what a GAN-trained decoder
should raise where PESQ, which rewards waveform fidelity, need not.

:func:`evaluate_codec` runs a codec (anything with ``encode(audio [B, 1, T]) -> codes [B, Q, F]``,
``decode(codes) -> audio [B, 1, T']``, ``config.sample_rate`` and ``config.bits_per_second``:
:class:`~audiogen_studio.models.codec.Codec` or the mel codec) and Opus (``opusenc``/``opusdec``
from opus-tools) at the codec's bitrate and at double it over the same clips.
"""

from __future__ import annotations

import functools
import logging
import re
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
import torch

from audiogen_studio.evaluation.common import (
    SILENT_PEAK,
    EvaluationError,
    MissingExtraError,
    as_mono,
    finite,
    mean_or_none,
    require,
    resample_mono,
)

log = logging.getLogger(__name__)

PESQ_RATE = 16_000
VISQOL_AUDIO_RATE = 48_000
VISQOL_SPEECH_RATE = 16_000
OPUS_MIN_KBPS = 6.0  # libopus does not go lower
OPUS_DECODE_RATES = (8_000, 12_000, 16_000, 24_000, 48_000)
OPUS_TIMEOUT_S = 120.0


class OpusUnavailableError(MissingExtraError):
    """``opusenc``/``opusdec`` (Debian/Ubuntu package ``opus-tools``) are not on ``PATH``."""


class CodecLike(Protocol):
    """What :func:`evaluate_codec` needs of a codec."""

    config: Any  # .sample_rate (Hz) and .bits_per_second (with all codebooks)

    def encode(self, audio: torch.Tensor) -> torch.Tensor: ...  # [B, 1, T] -> [B, Q, F]

    def decode(self, codes: torch.Tensor) -> torch.Tensor: ...  # [B, Q, F] -> [B, 1, T']


# --- metrics --------------------------------------------------------------------------------


def pesq_wb(reference: npt.ArrayLike, degraded: npt.ArrayLike, rate: int) -> float | None:
    """Wide-band PESQ (P.862.2) of ``degraded`` against ``reference`` (both ``[T]`` at
    ``rate``, resampled to 16 kHz); ``None`` when PESQ finds no speech in the reference.
    A digitally silent ``degraded`` is scored as -100 dBFS noise (PESQ rejects all-zero input)."""
    pesq = require("pesq")
    ref = resample_mono(reference, rate, PESQ_RATE)
    deg = resample_mono(degraded, rate, PESQ_RATE)
    n = min(ref.shape[0], deg.shape[0])
    if float(np.max(np.abs(ref))) < SILENT_PEAK:
        return None  # nothing to compare (PESQ would divide by zero)
    if not np.any(deg):  # digital silence out: score it as -100 dBFS dither, not "no score"
        dither = np.asarray(np.random.default_rng(0).standard_normal(deg.shape[0]))
        deg = np.asarray(1e-5 * dither, dtype=np.float32)
    try:
        return finite(pesq.pesq(PESQ_RATE, ref[:n], deg[:n], "wb"))
    except Exception as exc:  # pesq raises NoUtterancesError / PesqError subclasses
        log.debug("PESQ failed: %s", exc)
        return None


def estoi(reference: npt.ArrayLike, degraded: npt.ArrayLike, rate: int) -> float | None:
    """Extended STOI (0–1) of ``degraded`` against ``reference`` (``[T]`` at ``rate``)."""
    pystoi = require("pystoi")
    ref = as_mono(reference).astype(np.float64)
    deg = as_mono(degraded).astype(np.float64)
    n = min(ref.shape[0], deg.shape[0])
    with np.errstate(all="ignore"):
        return finite(pystoi.stoi(ref[:n], deg[:n], rate, extended=True))


@functools.lru_cache(maxsize=2)
def _visqol_api(mode: str) -> Any:
    visqol_mod = require("visqol", "visqol-python")
    api = visqol_mod.VisqolApi()
    if mode == "speech":
        try:
            api.create(mode="speech", use_lattice_model=True)
        except ImportError as exc:
            raise MissingExtraError(
                "ViSQOL speech mode needs the ai-edge-litert runtime of the [eval] extra "
                f"(pip install 'visqol-python[lattice]'), or skip ViSQOL: {exc}"
            ) from exc
    else:
        api.create(mode="audio")
    return api


def visqol(
    reference: npt.ArrayLike, degraded: npt.ArrayLike, rate: int, *, mode: str = "speech"
) -> float | None:
    """ViSQOL MOS-LQO (1–5) of ``degraded`` against ``reference`` (``[T]`` at ``rate``).

    ``mode="speech"`` resamples to 16 kHz and uses the deep-lattice mapping (needs
    ``ai-edge-litert``); ``mode="audio"`` resamples to 48 kHz (SVR mapping, for full-band audio).

    Raises:
        MissingExtraError: visqol-python, or for speech mode ai-edge-litert, is missing.
    """
    if mode not in ("audio", "speech"):
        raise EvaluationError(f"unknown ViSQOL mode {mode!r}: use 'audio' or 'speech'")
    target = VISQOL_AUDIO_RATE if mode == "audio" else VISQOL_SPEECH_RATE
    ref = resample_mono(reference, rate, target).astype(np.float64)
    deg = resample_mono(degraded, rate, target).astype(np.float64)
    n = min(ref.shape[0], deg.shape[0])
    try:
        result = _visqol_api(mode).measure_from_arrays(ref[:n], deg[:n], sample_rate=target)
    except (ValueError, RuntimeError, IndexError) as exc:  # too short, silent
        log.debug("ViSQOL failed: %s", exc)
        return None
    return finite(result.moslqo)


@functools.lru_cache(maxsize=4)
def _mel_basis(rate: int, n_fft: int, n_mels: int) -> torch.Tensor:
    import torchaudio

    basis: torch.Tensor = torchaudio.functional.melscale_fbanks(
        n_fft // 2 + 1, 0.0, rate / 2, n_mels, rate, norm="slaney", mel_scale="slaney"
    )  # [bins, mels]
    return basis


def log_mel(
    audio: npt.ArrayLike, rate: int, *, n_mels: int = 80, n_fft: int = 1024, hop: int = 256
) -> torch.Tensor:
    """Natural-log mel magnitude spectrogram ``[n_mels, frames]`` of ``audio [T]`` (floor 1e-5).

    ``n_fft`` and ``hop`` are for 16 kHz and scale with ``rate``.
    """
    x = torch.from_numpy(np.array(as_mono(audio), dtype=np.float32))
    scale = rate / 16_000
    n = max(64, round(n_fft * scale))
    h = max(16, round(hop * scale))
    with torch.inference_mode():
        spec = torch.stft(x, n, h, window=torch.hann_window(n), return_complex=True).abs()
        mel = torch.einsum("ft,fm->mt", spec, _mel_basis(rate, n, n_mels))
        return mel.clamp_min(1e-5).log()


def log_mel_l1(reference: npt.ArrayLike, degraded: npt.ArrayLike, rate: int) -> float:
    """Mean ``|log mel(degraded) - log mel(reference)|`` over the common length."""
    ref = as_mono(reference)
    deg = as_mono(degraded)
    n = min(ref.shape[0], deg.shape[0])
    a, b = log_mel(ref[:n], rate), log_mel(deg[:n], rate)
    return float((a - b).abs().mean())


@dataclass(frozen=True, slots=True)
class CodecScores:
    """Full-reference scores of one degraded clip (``None``: the metric could not score it)."""

    pesq_wb: float | None = None
    estoi: float | None = None
    visqol: float | None = None
    log_mel_l1: float | None = None
    dnsmos: float | None = None

    @staticmethod
    def mean(scores: Sequence[CodecScores]) -> CodecScores:
        """Per-field mean over the clips that have the field."""
        return CodecScores(
            pesq_wb=mean_or_none([s.pesq_wb for s in scores]),
            estoi=mean_or_none([s.estoi for s in scores]),
            visqol=mean_or_none([s.visqol for s in scores]),
            log_mel_l1=mean_or_none([s.log_mel_l1 for s in scores]),
            dnsmos=mean_or_none([s.dnsmos for s in scores]),
        )


def score_pair(
    reference: npt.ArrayLike,
    degraded: npt.ArrayLike,
    rate: int,
    *,
    with_visqol: bool = True,
    visqol_mode: str = "speech",
    with_dnsmos: bool = False,
) -> CodecScores:
    """PESQ-wb, ESTOI, ViSQOL (unless ``with_visqol`` is false), log-mel L1 and, with
    ``with_dnsmos``, the degraded clip's DNSMOS OVRL."""
    ref, deg = as_mono(reference), as_mono(degraded)
    n = min(ref.shape[0], deg.shape[0])
    ref, deg = ref[:n], deg[:n]
    return CodecScores(
        pesq_wb=pesq_wb(ref, deg, rate),
        estoi=estoi(ref, deg, rate),
        visqol=visqol(ref, deg, rate, mode=visqol_mode) if with_visqol else None,
        log_mel_l1=log_mel_l1(ref, deg, rate),
        dnsmos=_dnsmos_or_none(deg, rate) if with_dnsmos else None,
    )


def _dnsmos_or_none(audio: npt.NDArray[np.float32], rate: int) -> float | None:
    """DNSMOS OVRL of ``audio``; ``None`` for a silent clip (DNSMOS cannot score silence)."""
    from audiogen_studio.evaluation.speech_quality import dnsmos

    if not np.any(np.abs(audio) >= SILENT_PEAK):
        return None
    return dnsmos(audio, rate).ovrl


# --- round trips ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OpusRoundTrip:
    """Opus-coded audio and its bitrate.

    Attributes:
        audio: float32 ``[T]`` decoded at the input's rate and length.
        kbps_requested: the ``--bitrate`` given to opusenc.
        kbps_payload: Opus packets only (``opusinfo``), or ``None`` without opusinfo.
        kbps_file: the whole ``.opus`` file (Ogg pages and headers included).
    """

    audio: npt.NDArray[np.float32]
    kbps_requested: float
    kbps_payload: float | None
    kbps_file: float


def _opus_tools() -> tuple[str, str]:
    enc, dec = shutil.which("opusenc"), shutil.which("opusdec")
    if enc is None or dec is None:
        raise OpusUnavailableError(
            "the Opus comparison needs opusenc and opusdec on PATH: install opus-tools "
            "(apt-get install opus-tools, brew install opus-tools), or pass --no-opus"
        )
    return enc, dec


def opus_available() -> bool:
    """Whether ``opusenc`` and ``opusdec`` are on ``PATH``."""
    return shutil.which("opusenc") is not None and shutil.which("opusdec") is not None


def _run(cmd: list[str]) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            cmd, check=True, capture_output=True, text=True, timeout=OPUS_TIMEOUT_S
        )
    except subprocess.CalledProcessError as exc:
        raise EvaluationError(
            f"{Path(cmd[0]).name} failed (exit {exc.returncode}): {exc.stderr.strip()[-300:]}"
        ) from exc
    except subprocess.TimeoutExpired as exc:
        raise EvaluationError(
            f"{Path(cmd[0]).name} timed out after {OPUS_TIMEOUT_S:.0f} s"
        ) from exc


def opus_round_trip(
    audio: npt.ArrayLike, rate: int, kbps: float, *, hard_cbr: bool = False
) -> OpusRoundTrip:
    """Encode ``audio [T]`` at ``rate`` with opusenc at ``kbps`` (VBR, opusenc's default,
    unless ``hard_cbr``) and decode it back with opusdec, in a temporary folder.

    Raises:
        OpusUnavailableError: opus-tools is not installed.
        EvaluationError: ``kbps`` below Opus' 6 kbit/s floor, or a tool failed.
    """
    import soundfile as sf

    if kbps < OPUS_MIN_KBPS:
        raise EvaluationError(f"Opus cannot go below {OPUS_MIN_KBPS:g} kbit/s, asked {kbps:g}")
    enc, dec = _opus_tools()
    x = as_mono(audio)
    decode_rate = rate if rate in OPUS_DECODE_RATES else 48_000
    with tempfile.TemporaryDirectory(prefix="audiogen-opus-") as folder:
        src, coded, out = (Path(folder) / name for name in ("in.wav", "coded.opus", "out.wav"))
        sf.write(src, np.clip(x, -1.0, 1.0), rate, subtype="FLOAT")
        cmd = [enc, "--quiet", "--bitrate", f"{kbps:g}"]
        if hard_cbr:
            cmd.append("--hard-cbr")
        _run([*cmd, str(src), str(coded)])
        _run([dec, "--quiet", "--float", "--rate", str(decode_rate), str(coded), str(out)])
        y, got_rate = sf.read(out, dtype="float32", always_2d=True)
        size = coded.stat().st_size
        payload = _opus_payload_kbps(coded)
    y = resample_mono(y.T, int(got_rate), rate)
    if y.shape[0] < x.shape[0]:
        y = np.pad(y, (0, x.shape[0] - y.shape[0]))
    seconds = x.shape[0] / rate
    return OpusRoundTrip(
        audio=np.ascontiguousarray(y[: x.shape[0]]),
        kbps_requested=float(kbps),
        kbps_payload=payload,
        kbps_file=size * 8 / seconds / 1000,
    )


def _opus_payload_kbps(path: Path) -> float | None:
    info = shutil.which("opusinfo")
    if info is None:
        return None
    try:
        text = _run([info, str(path)]).stdout
    except EvaluationError:
        return None
    match = re.search(r"w/o overhead:\s*([0-9.]+)\s*kbit/s", text)
    return float(match.group(1)) if match else None


def codec_bitrate(codec: CodecLike, n_q: int | None = None) -> float:
    """Bits per second of ``codec`` with its first ``n_q`` codebooks (all when ``None``)."""
    bps = float(codec.config.bits_per_second)
    total = getattr(codec.config, "n_q", None)
    if n_q is not None and total:
        bps *= n_q / int(total)
    return bps


def codec_round_trip(
    codec: CodecLike,
    audio: npt.ArrayLike,
    rate: int,
    *,
    n_q: int | None = None,
    beam: int = 1,
) -> npt.NDArray[np.float32]:
    """``audio [T]`` at ``rate`` through ``codec.encode``/``decode`` (at the codec's rate, first
    ``n_q`` codebooks, codes searched with a beam of ``beam``; 1: greedy), back at ``rate`` and
    the input's length (``[T]``).

    A codec whose decoded audio lags its input by ``codec.latency`` samples (the mel codec's
    overlap-add) gets that many zeros appended before encoding, and the lag is cut off again.
    """
    x = as_mono(audio)
    codec_rate = int(codec.config.sample_rate)
    y = resample_mono(x, rate, codec_rate)
    lag = int(getattr(codec, "latency", 0) or 0)
    params = list(codec.parameters()) if isinstance(codec, torch.nn.Module) else []
    device = params[0].device if params else torch.device("cpu")
    with torch.inference_mode():
        t = torch.from_numpy(np.array(y, dtype=np.float32))[None, None]  # [1, 1, T]
        t = torch.nn.functional.pad(t, (0, lag)).to(device)
        if beam == 1:  # any codec, also one whose encode takes no search width
            codes = codec.encode(t) if n_q is None else codec.encode(t, n_q)  # type: ignore[call-arg]
        else:
            codes = codec.encode(t, n_q, beam=beam)  # type: ignore[call-arg]
        out = codec.decode(codes)  # [1, 1, T'] with T' >= T + lag (whole frames)
        z = out.reshape(-1)[lag : lag + y.shape[0]].float().cpu().numpy()
    z = resample_mono(z, codec_rate, rate)
    if z.shape[0] < x.shape[0]:
        z = np.pad(z, (0, x.shape[0] - z.shape[0]))
    return np.ascontiguousarray(z[: x.shape[0]], dtype=np.float32)


# --- the whole comparison -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SystemResult:
    """One system (the codec, or Opus at a bitrate) over all clips.

    Attributes:
        name: ``"codec"``, ``"opus_same"`` or ``"opus_double"``.
        kbps: its nominal bitrate (the codec's, or the Opus ``--bitrate``).
        kbps_measured: Opus packet bitrate (``opusinfo``; the on-disk one without it);
            ``None`` for the codec (its bitrate is exact).
        mean: per-metric mean over the clips.
        clips: per-clip scores, in the order of :attr:`CodecReport.clip_ids`.
        note: e.g. that Opus was raised to its 6 kbit/s floor.
    """

    name: str
    kbps: float
    kbps_measured: float | None
    mean: CodecScores
    clips: list[CodecScores] = field(default_factory=list)
    note: str = ""


@dataclass(frozen=True, slots=True)
class CodecReport:
    """Codec against the input, next to Opus at the same and at double the bitrate."""

    sample_rate: int
    clip_ids: list[str]
    clip_seconds: list[float]
    codec_kbps: float
    n_q: int | None
    systems: dict[str, SystemResult]
    visqol_mode: str | None
    input_dnsmos: float | None = None
    beam: int = 1


def evaluate_codec(
    codec: CodecLike,
    clips: Sequence[npt.ArrayLike],
    rate: int,
    *,
    clip_ids: Sequence[str] | None = None,
    n_q: int | None = None,
    opus: bool = True,
    with_visqol: bool = True,
    visqol_mode: str = "speech",
    with_dnsmos: bool = False,
    beam: int = 1,
) -> CodecReport:
    """Score ``codec`` on ``clips`` (each ``[T]`` at ``rate``) and, with ``opus``, Opus at the
    codec's bitrate (raised to 6 kbit/s when lower) and at double it; ``with_dnsmos`` adds each
    system's DNSMOS and the input's (:attr:`CodecReport.input_dnsmos`). ``beam`` > 1 encodes
    with a beam search over the codes (same bitrate).

    Raises:
        EvaluationError: no clips.
        OpusUnavailableError: ``opus`` is set and opus-tools is missing.
    """
    if not clips:
        raise EvaluationError("no clips to evaluate the codec on")
    if opus:
        _opus_tools()
    ids = list(clip_ids) if clip_ids is not None else [f"clip{i}" for i in range(len(clips))]
    kbps = codec_bitrate(codec, n_q) / 1000
    refs = [as_mono(c) for c in clips]
    systems: dict[str, SystemResult] = {}

    def score(deg: npt.NDArray[np.float32], ref: npt.NDArray[np.float32]) -> CodecScores:
        return score_pair(
            ref,
            deg,
            rate,
            with_visqol=with_visqol,
            visqol_mode=visqol_mode,
            with_dnsmos=with_dnsmos,
        )

    codec_scores = [score(codec_round_trip(codec, r, rate, n_q=n_q, beam=beam), r) for r in refs]
    systems["codec"] = SystemResult(
        "codec", kbps, None, CodecScores.mean(codec_scores), codec_scores
    )
    if opus:
        for name, factor in (("opus_same", 1.0), ("opus_double", 2.0)):
            target = kbps * factor
            asked = max(target, OPUS_MIN_KBPS)
            note = (
                f"Opus' floor is {OPUS_MIN_KBPS:g} kbit/s; {target:.2f} was asked"
                if asked > target
                else ""
            )
            scores, measured = [], []
            for r in refs:
                rt = opus_round_trip(r, rate, asked)
                scores.append(score(rt.audio, r))
                measured.append(rt.kbps_payload if rt.kbps_payload is not None else rt.kbps_file)
            systems[name] = SystemResult(
                name, asked, float(np.mean(measured)), CodecScores.mean(scores), scores, note
            )
    return CodecReport(
        sample_rate=rate,
        clip_ids=ids,
        clip_seconds=[round(r.shape[0] / rate, 3) for r in refs],
        codec_kbps=kbps,
        n_q=n_q,
        systems=systems,
        visqol_mode=visqol_mode if with_visqol else None,
        beam=beam,
        input_dnsmos=(
            mean_or_none([_dnsmos_or_none(r, rate) for r in refs]) if with_dnsmos else None
        ),
    )
