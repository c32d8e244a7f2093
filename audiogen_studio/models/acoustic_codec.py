"""The acoustic codecs AudioLM can use, behind one interface and one loader.

Two codecs turn audio into acoustic tokens (residual-VQ codes ``[B, n_q, F]``) and back:

- ``"soundstream"``: :class:`~audiogen_studio.models.codec.Codec`, a learned causal conv
  encoder/decoder (Zeghidour et al. 2021); decoded audio is aligned with the input;
- ``"mel"``: :class:`~audiogen_studio.models.mel_codec.MelCodec`, residual k-means of log-mel
  frames and a Vocos-style ISTFT decoder (Siuzdak 2023); decoded audio lags the input by
  ``latency = n_fft - hop`` samples (its overlap-add needs the windows that follow).

:class:`AcousticCodec` is the structural type both satisfy (what the engine and the CLI use);
:func:`load_acoustic_codec` loads either from a bundle (``components.codec.kind``; bundles
written before the field existed hold a SoundStream codec) or from a ``.safetensors`` file (the
``module`` its metadata names).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Protocol, Self

import torch
from safetensors import safe_open
from torch import nn

from audiogen_studio.models.checkpoint import CheckpointError
from audiogen_studio.models.codec import Codec
from audiogen_studio.models.mel_codec import MEL_CODEC_KIND, MelCodec

__all__ = [
    "CODEC_COMPONENT",
    "CODEC_KINDS",
    "SOUNDSTREAM_KIND",
    "AcousticCodec",
    "AcousticCodecConfig",
    "AcousticDecoderStream",
    "AcousticEncoderStream",
    "component_kind",
    "decoder_latency",
    "load_acoustic_codec",
]

CODEC_COMPONENT = "codec"
SOUNDSTREAM_KIND = "soundstream"
#: ``components.codec.kind`` → the class that loads it.
CODEC_KINDS: dict[str, type[Codec] | type[MelCodec]] = {
    SOUNDSTREAM_KIND: Codec,
    MEL_CODEC_KIND: MelCodec,
}
_MODULE_KINDS = {
    Codec.checkpoint_module: SOUNDSTREAM_KIND,
    MelCodec.checkpoint_module: MEL_CODEC_KIND,
}


class AcousticCodecConfig(Protocol):
    """What callers read from a codec's config."""

    @property
    def sample_rate(self) -> int: ...
    @property
    def hop(self) -> int: ...
    @property
    def n_q(self) -> int: ...
    @property
    def codebook_size(self) -> int: ...
    @property
    def frame_rate(self) -> float: ...
    @property
    def bits_per_second(self) -> float: ...
    def frames(self, samples: int) -> int: ...
    def to_dict(self) -> dict[str, Any]: ...
    def to_json(self) -> str: ...


class AcousticDecoderStream(Protocol):
    """``push(codes [B, q, f]) -> audio [B, 1, f hop]``; equals the full decode."""

    def push(self, codes: torch.Tensor) -> torch.Tensor: ...


class AcousticEncoderStream(Protocol):
    """``push(audio [B, 1, n hop]) -> codes [B, n_q, n]``; equals the full encode."""

    def push(self, audio: torch.Tensor) -> torch.Tensor: ...


class AcousticCodec(Protocol):
    """The interface :class:`~audiogen_studio.models.codec.Codec` and
    :class:`~audiogen_studio.models.mel_codec.MelCodec` share."""

    @property
    def config(self) -> AcousticCodecConfig: ...
    @property
    def sample_rate(self) -> int: ...
    @property
    def hop(self) -> int: ...
    def encode(
        self, audio: torch.Tensor, n_q: int | None = None, *, beam: int = 1
    ) -> torch.Tensor: ...
    def decode(self, codes: torch.Tensor) -> torch.Tensor: ...
    def stream_encoder(self, batch: int = 1, n_q: int | None = None) -> AcousticEncoderStream: ...
    def stream_decoder(self, batch: int = 1) -> AcousticDecoderStream: ...
    def num_parameters(self) -> int: ...
    def parameters(self, recurse: bool = True) -> Iterator[nn.Parameter]: ...
    def eval(self) -> Self: ...
    def to(self, device: torch.device) -> Self: ...


def decoder_latency(codec: AcousticCodec) -> int:
    """Samples by which ``codec.decode`` (and its stream) lag the encoded audio (0 for the
    SoundStream codec, ``n_fft - hop`` for the mel codec)."""
    return int(codec.latency) if isinstance(codec, MelCodec) else 0


def _module_of(file: Path) -> str | None:
    if not file.is_file():
        raise CheckpointError(file, "file not found")
    try:
        with safe_open(str(file), framework="pt") as f:
            return (f.metadata() or {}).get("module")
    except Exception as exc:  # safetensors raises its own error types
        raise CheckpointError(file, f"not a readable safetensors file ({exc})") from exc


def component_kind(bundle_dir: str | Path, entry: Mapping[str, Any]) -> str:
    """The codec kind of a bundle's ``codec`` entry: its ``kind`` field, else the module its
    weights file names (bundles written before the field existed).

    Raises:
        CheckpointError: no kind and an unreadable weights file.
    """
    kind = entry.get("kind") if isinstance(entry, Mapping) else None
    if kind:
        return str(kind)
    module = _module_of(Path(bundle_dir) / str(entry["file"]))
    return _MODULE_KINDS.get(str(module), SOUNDSTREAM_KIND)


def load_acoustic_codec(
    path_or_bundle: str | Path, *, device: str | torch.device = "cpu"
) -> Codec | MelCodec:
    """The codec of a bundle folder (``components.codec``) or of a ``.safetensors`` file.

    A bundle's entry names the file, the config the file must hold, and (``kind``) which codec
    it is; a file is recognised by the module its metadata names. In eval mode on ``device``.

    Raises:
        CheckpointError: no such file, no codec component, an unknown kind, unreadable or
            mismatched weights.
    """
    p = Path(path_or_bundle)
    if p.is_dir():
        manifest = p / "bundle.json"
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
        kind = component_kind(p, entry)
        expected = entry.get("config") or None
    else:
        file = p
        kind = _MODULE_KINDS.get(str(_module_of(p)), SOUNDSTREAM_KIND)
        expected = None
    cls = CODEC_KINDS.get(kind)
    if cls is None:
        names = ", ".join(CODEC_KINDS)
        raise CheckpointError(file, f"unknown codec kind {kind!r} (this version reads {names})")
    return cls.from_pretrained(file, device=device, expected_config=expected)
