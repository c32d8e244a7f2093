"""Copy trained components from one AudioLM bundle into another (``audiogen-studio models adopt``).

The stages of one bundle can be trained in separate folders side by side, each with its own
checkpoints and token caches: a longer codec-decoder run in one folder while an LM is fine-tuned
on more data in another. :func:`adopt_components` copies the weights file and the manifest
entries (component, training provenance, metrics) of each named component into the destination.

Token LMs only mean something over the tokens they were trained on, so the two bundles must
*tokenise alike*: a fixed probe signal (seeded noise plus a chirp, 2 s) is encoded by both
bundles' codecs (every quantizer: the codec *decoder* may differ, which is what a longer decoder
run changes) and semantic tokenizers, and every token must agree.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from audiogen_studio.engine.bundles import (
    BUNDLE_FILE,
    BundleError,
    BundleInfo,
    read_bundle,
    write_manifest,
)

__all__ = ["adopt_components", "probe_tokens"]

PROBE_SECONDS = 2.0


def _probe_signal(rate: int) -> torch.Tensor:
    """``[1, T]`` float32: seeded noise at -20 dBFS plus a 100 Hz → 4 kHz chirp."""
    n = int(PROBE_SECONDS * rate)
    t = np.arange(n) / rate
    chirp = 0.3 * np.sin(2 * np.pi * (100 * t + (4000 - 100) / (2 * PROBE_SECONDS) * t**2))
    noise = 0.1 * np.random.default_rng(1234).standard_normal(n)
    return torch.from_numpy((chirp + noise).astype(np.float32))[None]


@torch.inference_mode()
def probe_tokens(info: BundleInfo) -> dict[str, torch.Tensor]:
    """The bundle's tokens of the probe signal: ``acoustic [Q, F]`` (every quantizer of its
    codec) and ``semantic [S]`` (when it has a semantic tokenizer)."""
    from audiogen_studio.models.acoustic_codec import load_acoustic_codec
    from audiogen_studio.models.semantic import SemanticTokenizer

    audio = _probe_signal(info.sample_rate)
    out: dict[str, torch.Tensor] = {}
    if "codec" in info.components:
        codec = load_acoustic_codec(info.path)
        out["acoustic"] = codec.encode(audio[:, None, :], n_q=int(codec.config.n_q))[0]
    if "semantic" in info.components:
        tokenizer = SemanticTokenizer.from_pretrained(info.component_path("semantic")).eval()
        out["semantic"] = tokenizer.tokens(audio)[0]
    return out


def _check_tokenise_alike(dest: BundleInfo, source: BundleInfo) -> None:
    mine, theirs = probe_tokens(dest), probe_tokens(source)
    for name in sorted(mine.keys() & theirs.keys()):
        a, b = mine[name], theirs[name]
        if a.shape != b.shape or not torch.equal(a, b):
            agree = float((a == b).float().mean()) if a.shape == b.shape else 0.0
            raise BundleError(
                f"{source.path} and {dest.path} tokenise differently ({name} tokens of a probe "
                f"signal agree {100 * agree:.0f} %): their LMs are not interchangeable; adopt "
                "only from a bundle with the same codec quantizer and semantic tokenizer"
            )


def adopt_components(
    destination: str | Path, source: str | Path, components: Iterable[str]
) -> BundleInfo:
    """Copy ``components`` (weights + manifest entries) from ``source`` into ``destination``.

    Raises:
        BundleError: unreadable bundles, another kind or sample rate, a component the source
            lacks, or bundles that tokenise differently.
    """
    dest, src = read_bundle(destination), read_bundle(source)
    if dest.path.resolve() == src.path.resolve():
        raise BundleError(f"{dest.path}: adopting from the bundle itself")
    if (dest.kind, dest.sample_rate) != (src.kind, src.sample_rate):
        raise BundleError(
            f"{src.path} is a {src.kind} bundle at {src.sample_rate} Hz, {dest.path} a "
            f"{dest.kind} bundle at {dest.sample_rate} Hz"
        )
    names = list(dict.fromkeys(components))
    if not names:
        raise BundleError("name at least one component to adopt")
    files = {name: src.component_path(name) for name in names}  # BundleError if missing
    _check_tokenise_alike(dest, src)
    manifest = dest.path / BUNDLE_FILE
    data: dict[str, Any] = json.loads(manifest.read_text(encoding="utf-8"))
    for name, path in files.items():
        target = dest.path / path.name
        partial = target.with_name(f".{path.name}.partial")
        shutil.copyfile(path, partial)
        os.replace(partial, target)
        data["components"][name] = src.components[name]
        for section, source_table in (("training", src.training), ("metrics", src.metrics)):
            value = source_table.get(name)
            table = data.setdefault(section, {})
            if value is None:
                table.pop(name, None)
            else:
                table[name] = value
    write_manifest(dest.path, data)
    return read_bundle(dest.path)
