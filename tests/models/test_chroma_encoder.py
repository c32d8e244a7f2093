"""The pitch-class semantic encoder: filterbank, frames, invariances, tokenizer files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from audiogen_studio.audio import synth
from audiogen_studio.models.checkpoint import load_state
from audiogen_studio.models.chroma_encoder import (
    PITCH_CLASSES,
    ChromaConfig,
    ChromaEncoder,
    chroma_filterbank,
)
from audiogen_studio.models.semantic import SemanticTokenizer, build_encoder

RATE = 16_000


def _tone(midi: float, seconds: float = 1.0, amplitude: float = 0.3) -> torch.Tensor:
    t = np.arange(round(seconds * RATE)) / RATE
    hz = 440.0 * 2.0 ** ((midi - 69) / 12)
    x = amplitude * np.sin(2 * np.pi * hz * t)
    return torch.tensor(x, dtype=torch.float32)[None]


def _mean_chroma(encoder: ChromaEncoder, audio: torch.Tensor) -> torch.Tensor:
    feats = encoder.features(audio, 0)[0]
    return feats[10:-10, :12].mean(0)  # away from the edges' zero padding


def test_filterbank_maps_each_band_bin_to_its_pitch_classes() -> None:
    n_fft = 4096
    bank = chroma_filterbank(RATE, n_fft, 60.0, 4200.0)
    freqs = np.arange(n_fft // 2 + 1) * RATE / n_fft
    band = (freqs >= 60.0) & (freqs <= 4200.0)
    assert bank.shape == (12, n_fft // 2 + 1)
    np.testing.assert_allclose(bank[:, band].sum(0), 1.0, atol=1e-6)
    assert not bank[:, ~band].any()
    a4 = int(np.argmin(np.abs(freqs - 440.0)))  # 439.45 Hz: 0.02 semitone flat of A
    assert PITCH_CLASSES[int(np.argmax(bank[:, a4]))] == "A"


@pytest.mark.parametrize("samples", [1, 319, 320, 321, 16_000, 16_001])
def test_features_have_one_frame_per_hop(samples: int) -> None:
    encoder = ChromaEncoder()
    feats = encoder.features(torch.randn(2, samples) * 0.1, 0)
    assert feats.shape == (2, -(-samples // 320), 14)
    assert torch.isfinite(feats).all()
    assert encoder.feature_dim(0) == 14


@pytest.mark.parametrize("midi", [48, 55, 61, 66, 70, 76, 83])
def test_a_tone_lights_its_pitch_class_in_every_octave(midi: int) -> None:
    encoder = ChromaEncoder()
    low, high = _mean_chroma(encoder, _tone(midi)), _mean_chroma(encoder, _tone(midi + 12))
    assert int(low.argmax()) == midi % 12
    assert int(high.argmax()) == midi % 12
    assert (
        float(torch.nn.functional.cosine_similarity(low, high, dim=0)) > 0.9
    )  # low notes smear more (3.9 Hz bins)


def test_a_triad_names_its_three_notes_and_loudness_moves_only_energy() -> None:
    encoder = ChromaEncoder()
    chord = _tone(60) + _tone(64) + _tone(67)  # C E G
    top = set(_mean_chroma(encoder, chord).topk(3).indices.tolist())
    assert {PITCH_CLASSES[i] for i in top} == {"C", "E", "G"}
    loud, quiet = encoder.features(chord, 0), encoder.features(0.1 * chord, 0)
    torch.testing.assert_close(loud[..., :12], quiet[..., :12], atol=1e-4, rtol=0)
    mid = slice(10, 40)
    torch.testing.assert_close(
        loud[0, mid, 12] - quiet[0, mid, 12],
        torch.full((30,), float(np.log(100.0))),
        atol=1e-3,
        rtol=0,
    )


def test_onset_marks_the_attack_frame_and_not_the_sustain() -> None:
    encoder = ChromaEncoder()
    start = 8_000  # frame 25 holds samples 8000..8319
    audio = torch.cat((torch.zeros(1, start), _tone(67, seconds=1.0)), dim=1)
    feats = encoder.features(audio, 0)[0]
    onset = feats[:, 13]
    assert int(onset.argmax()) in (24, 25)  # the analysis window is 2 hops, centred
    assert float(onset[24:26].max()) > 5.0
    assert float(onset[30:70].max()) < 0.5
    silent = encoder.features(torch.zeros(1, 3_200), 0)[0]
    assert torch.isfinite(silent).all() and float(silent[:, 13].abs().max()) == 0.0


def test_config_is_checked_and_rebuilds_the_encoder() -> None:
    config = ChromaConfig(n_fft=2048, f_min=80.0, compression=0.0)
    encoder = build_encoder("chroma", config.to_dict())
    assert isinstance(encoder, ChromaEncoder) and encoder.config == config
    with pytest.raises(ValueError, match="power of two"):
        ChromaConfig(n_fft=3000)
    with pytest.raises(ValueError, match="f_min < f_max"):
        ChromaConfig(f_min=5000.0, f_max=4000.0)
    with pytest.raises(ValueError, match="layer must be within 0..0"):
        ChromaEncoder().features(torch.zeros(1, 320), 1)
    with pytest.raises(ValueError, match="unknown"):
        ChromaConfig.from_dict({**config.to_dict(), "bins": 36})


def test_tokenizer_file_holds_no_encoder_tensors_and_round_trips(tmp_path: Path) -> None:
    riff = [synth.riff(seed=s).samples[0] for s in (1, 2)]
    tokenizer = SemanticTokenizer.fit(ChromaEncoder(), riff, layer=0, n_clusters=16, seed=0)
    path = tokenizer.save(tmp_path / "semantic.safetensors")
    state, meta = load_state(path)
    assert sorted(state) == ["centroids", "feature_mean", "feature_std"]
    assert meta["config"]["encoder"] == "chroma"
    loaded = SemanticTokenizer.from_pretrained(path)
    held = np.asarray(synth.riff(seed=3).samples[0])
    assert torch.equal(loaded.tokens(held), tokenizer.tokens(held))
    # windowed encoding (long audio) equals encoding the whole at once
    torch.testing.assert_close(
        loaded.normalized_features(held, window_seconds=2.0),
        loaded.normalized_features(held, window_seconds=None),
    )
