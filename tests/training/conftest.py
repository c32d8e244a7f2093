"""Fixtures shared by the training tests."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from audiogen_studio.audio import io, synth
from audiogen_studio.audio.clip import Clip
from audiogen_studio.models.ssl_adapter import SSLConfig, TorchaudioSSLEncoder, save_ssl_weights

RATE = 16_000


@pytest.fixture(scope="module")
def riff_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three renditions of the riff (7.35 s each, other pluck noise): two train, one valid."""
    folder = tmp_path_factory.mktemp("riffs")
    lines = []
    for i, split in enumerate(("train", "train", "valid")):
        clip = synth.riff(seed=i + 10)
        io.save(Clip(np.asarray(clip.samples), RATE), folder / f"riff{i}.wav")
        lines.append(json.dumps({"path": f"riff{i}.wav", "split": split}))
    (folder / "riffs.jsonl").write_text("\n".join(lines) + "\n")
    return folder / "riffs.jsonl"


@pytest.fixture
def tiny_ssl_weights(tmp_path: Path) -> Path:
    """A 2-layer wav2vec 2.0-shaped model (random weights) saved as the user's safetensors file."""
    conv = [[16, 10, 5], [16, 3, 2], [16, 3, 2], [16, 3, 2], [16, 3, 2], [16, 2, 2], [16, 2, 2]]
    config = SSLConfig(
        model={
            "extractor_mode": "group_norm",
            "extractor_conv_layer_config": conv,
            "extractor_conv_bias": False,
            "encoder_embed_dim": 32,
            "encoder_pos_conv_kernel": 16,
            "encoder_pos_conv_groups": 4,
            "encoder_num_layers": 2,
            "encoder_num_heads": 4,
            "encoder_ff_interm_features": 64,
            "encoder_layer_norm_first": False,
        }
    )
    return save_ssl_weights(TorchaudioSSLEncoder(config), tmp_path / "w.safetensors", config)
