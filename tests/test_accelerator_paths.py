"""The same checks on every compute device this machine has: the CPU always, CUDA and MPS where
present (on the CPU-only CI these run on the CPU alone; on a GPU machine the GPU rows run too).

Each cached or streaming path equals its full computation on the device itself (LM KV cache,
WaveNet queues, the mel codec's streaming decoder), the AudioLM engine streams a seeded,
reproducible take there, and the LM and mel-codec trainers run their AMP steps there.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

import audiogen_studio.engine.audiolm_pipeline as audiolm_pipeline
from audiogen_studio.audio import synth
from audiogen_studio.engine.api import GenerationRequest
from audiogen_studio.engine.audiolm_pipeline import AudioLMEngine
from audiogen_studio.engine.bundles import read_bundle
from audiogen_studio.engine.takes import collect
from audiogen_studio.models.device import mps_available
from audiogen_studio.models.lm import LMConfig, TokenLM
from audiogen_studio.models.mel_codec import NAMED_MEL_CODEC_CONFIGS, MelCodec
from audiogen_studio.models.wavenet import WaveNet, WaveNetConfig
from audiogen_studio.training.lm_trainer import LMTrainOptions, train_lm
from audiogen_studio.training.mel_codec_trainer import MelCodecTrainOptions, train_mel_codec

sys.path.insert(0, str(Path(__file__).parent / "engine"))
from audiolm_stack import random_audiolm_bundle

DEVICES = ["cpu"]
if torch.cuda.is_available():
    DEVICES.append("cuda")
if mps_available():
    DEVICES.append("mps")


@pytest.fixture(params=DEVICES)
def device(request: pytest.FixtureRequest) -> Iterator[torch.device]:
    """A device with exact float32 arithmetic (no TF32 matrix or convolution shortcuts)."""
    torch.set_num_threads(1)
    matmul = torch.backends.cuda.matmul.allow_tf32
    cudnn = torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    try:
        yield torch.device(request.param)
    finally:
        torch.backends.cuda.matmul.allow_tf32 = matmul
        torch.backends.cudnn.allow_tf32 = cudnn


def test_lm_kv_cache_equals_the_full_forward(device: torch.device) -> None:
    torch.manual_seed(0)
    model = TokenLM(LMConfig(vocab_size=40, dim=32, depth=2, heads=4, max_seq_len=64))
    model = model.eval().to(device)
    x = torch.randint(0, 40, (3, 50), device=device)
    with torch.inference_mode():
        full = model(x)  # [B, T, V]
        cache = model.new_cache(3, 64)
        parts = [model.forward_cached(x[:, :12], cache)]
        parts += [model.forward_cached(x[:, i : i + 1], cache) for i in range(12, 50)]
    assert full.device.type == device.type
    torch.testing.assert_close(torch.cat(parts, 1), full, atol=1e-4, rtol=0)
    assert float(full.std()) > 0.1  # the comparison can fail


def test_wavenet_queues_equal_the_full_forward(device: torch.device) -> None:
    torch.manual_seed(1)
    config = WaveNetConfig(
        layers=6, stacks=2, residual_channels=16, gate_channels=32, skip_channels=16
    )
    model = WaveNet(config).eval().to(device)
    x = torch.randint(0, 256, (2, 90), device=device)
    with torch.no_grad():
        full = model(x)  # [B, classes, T]
        state = model.prime(x[:, :30])
        steps = [model.step(x[:, t], state) for t in range(30, 90)]
    stepped = torch.stack(steps, dim=-1)
    assert (stepped - full[:, :, 30:]).abs().max().item() < 1e-4
    assert full[:, :, 30:].std(dim=-1).min().item() > 1e-3


def test_mel_codec_streaming_decode_equals_the_full_decode(device: torch.device) -> None:
    torch.manual_seed(2)
    config = NAMED_MEL_CODEC_CONFIGS["tiny"]
    codec = MelCodec(config).eval().to(device)
    codes = torch.randint(0, config.codebook_size, (2, config.n_q, 17), device=device)
    with torch.inference_mode():
        full = codec.decode(codes)  # [B, 1, T]
        stream = codec.stream_decoder(2)
        pieces = [stream.push(codes[..., a:b]) for a, b in ((0, 1), (1, 5), (5, 17))]
    torch.testing.assert_close(torch.cat(pieces, -1), full, atol=1e-5, rtol=0)
    assert float(full.abs().max()) > 1e-3


def test_audiolm_engine_streams_a_reproducible_take(
    device: torch.device, tmp_path_factory: pytest.TempPathFactory
) -> None:
    folder = random_audiolm_bundle(tmp_path_factory.mktemp("bundle") / "random-audiolm")
    engine = AudioLMEngine.from_bundle(read_bundle(folder), device=str(device))
    assert engine.device.type == device.type
    prompt = synth.sine(330.0, 0.5, rate=16000, amp=0.4)
    request = GenerationRequest(prompt=prompt, seconds=0.4, seed=3)
    first = collect(engine, request)[0].generated.samples  # [1, T]
    second = collect(engine, request)[0].generated.samples
    assert first.shape[-1] == engine.expected_frames(request)
    assert np.isfinite(first).all() and float(np.abs(first).max()) > 1e-4
    np.testing.assert_array_equal(first, second)
    other = collect(engine, GenerationRequest(prompt=prompt, seconds=0.4, seed=4))
    assert not np.array_equal(other[0].generated.samples, first)


def test_a_kept_candidate_goes_on_as_in_the_batch_on_the_device(
    device: torch.device, tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Candidate beginnings on the device: candidate 1 of 2, kept after 0.5 s (every stream's
    rows and KV caches cut to it, the decoder re-primed), equals it kept at the end."""
    folder = random_audiolm_bundle(tmp_path_factory.mktemp("cand") / "random-audiolm")
    engine = AudioLMEngine.from_bundle(read_bundle(folder), device=str(device))
    calls = {"n": 0}

    def second_wins(*args: object) -> float:  # the scores come in candidate order
        calls["n"] += 1
        return float(calls["n"] % 2 == 0)

    monkeypatch.setattr(audiolm_pipeline, "match_score", second_wins)
    prompt = synth.sine(330.0, 0.5, rate=16000, amp=0.4)
    request = GenerationRequest(prompt=prompt, seconds=1.2, seed=5, candidates=2)
    takes = []
    for after in (60.0, 0.5):
        engine.choice = replace(engine.choice, rank_by="voice", choose_after=after)
        takes.append(collect(engine, request)[0].generated.samples)  # [1, T]
    late, early = takes
    assert early.shape == late.shape == (1, round(1.2 * 16000))
    np.testing.assert_allclose(early, late, atol=1e-4)
    plain = collect(engine, replace(request, candidates=1))[0].generated.samples
    assert np.abs(early - plain).max() > 1e-3  # candidate 1 is not the plain take


def test_lm_trainer_learns_on_the_device(
    device: torch.device, riff_pair: Path, tmp_path: Path
) -> None:
    bundle = random_audiolm_bundle(tmp_path / "bundle", windows={})
    options = LMTrainOptions(
        stage="coarse",
        data=riff_pair,
        bundle=bundle,
        steps=30,
        batch=4,
        size="tiny",
        window=12,
        threads=1,
        progress=False,
        save_every=0,
        val_every=0,
        warmup=5,
        lr=3e-3,
        device=str(device),
    )
    result = train_lm(options)
    assert result.step == 30
    loss = read_bundle(bundle).metrics["lm_coarse"]["train_loss"]
    assert np.isfinite(loss) and loss < np.log(64) - 0.5  # 2 x 64 coarse ids, far from uniform


def test_mel_codec_gan_phase_runs_on_the_device(
    device: torch.device, riff_pair: Path, tmp_path: Path
) -> None:
    options = MelCodecTrainOptions(
        data=riff_pair,
        out=tmp_path / "codec",
        config="tiny",
        steps=6,
        batch=2,
        segment=0.3,
        threads=1,
        progress=False,
        save_every=0,
        val_every=0,
        kmeans_seconds=10.0,
        discriminator="tiny",
        device=str(device),
    )
    result = train_mel_codec(options)
    assert result.step == 6
    metrics = read_bundle(tmp_path / "codec").metrics["codec"]
    assert np.isfinite(metrics["train_loss"]) and np.isfinite(metrics["val_mel_l1"])
