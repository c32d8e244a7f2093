"""The streaming codec: config round trip, shapes, causality, streamed == full, checkpoints."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from audiogen_studio.models.checkpoint import CheckpointError, save_module
from audiogen_studio.models.codec import (
    NAMED_CODEC_CONFIGS,
    Codec,
    CodecConfig,
    load_codec,
    named_codec_config,
)

torch.set_num_threads(1)

#: small enough for fast tests, but with every kind of layer (hop 40: strides 2, 4, 5)
SMALL = CodecConfig(
    channels=4,
    strides=(2, 4, 5),
    latent_dim=8,
    dilations=(1, 3),
    residual_kernel_size=5,
    n_q=3,
    codebook_size=16,
)


def _codec(config: CodecConfig = SMALL, seed: int = 0) -> Codec:
    torch.manual_seed(seed)
    codec = Codec(config).eval()
    # random, distinct codebooks (the random init), with a spread that matches the latents
    with torch.no_grad():
        z = codec.encode_latent(0.3 * torch.randn(2, 1, 40 * config.hop))
        scale = float(z.std())
        for q in codec.quantizer.codebooks:
            q.embed.copy_(torch.randn_like(q.embed) * scale)
    return codec


def test_config_round_trip_and_properties() -> None:
    for name, config in NAMED_CODEC_CONFIGS.items():
        again = CodecConfig.from_dict(json.loads(json.dumps(config.to_dict())))
        assert again == config, name
    default = NAMED_CODEC_CONFIGS["default"]
    assert default.hop == 320 and default.frame_rate == 50.0 and default.sample_rate == 16000
    assert default.n_q == 8 and default.codebook_size == 1024
    assert default.bits_per_second == 4000.0
    assert default.frames(1) == 1 and default.frames(320) == 1 and default.frames(321) == 2
    assert named_codec_config("tiny") is NAMED_CODEC_CONFIGS["tiny"]
    with pytest.raises(ValueError, match="unknown codec config keys"):
        CodecConfig.from_dict({**default.to_dict(), "bogus": 1})
    with pytest.raises(ValueError, match="channels"):
        CodecConfig(channels=0)
    with pytest.raises(ValueError, match="unknown codec config"):
        named_codec_config("huge")


def test_named_config_from_json_file(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    path.write_text(json.dumps(SMALL.to_dict()))
    assert named_codec_config(str(path)) == SMALL


def test_shapes_of_encode_decode_forward() -> None:
    codec = _codec()
    hop = SMALL.hop
    audio = 0.3 * torch.randn(2, 1, 7 * hop + 3)  # not a whole number of frames
    codes = codec.encode(audio)
    assert codes.shape == (2, 3, 8) and codes.dtype == torch.int64
    assert int(codes.min()) >= 0 and int(codes.max()) < SMALL.codebook_size
    assert codec.decode(codes).shape == (2, 1, 8 * hop)
    assert codec.decode(codes[:, :1]).shape == (2, 1, 8 * hop)  # fewer codebooks
    assert codec.encode(audio, n_q=2).shape == (2, 2, 8)
    out, result = codec(audio)
    assert out.shape == (2, 1, 8 * hop) and result.codes.shape == (2, 3, 8)
    assert torch.equal(result.codes, codes)
    assert torch.allclose(out, codec.decode(codes), atol=1e-5)
    with pytest.raises(ValueError, match="audio"):
        codec.encode(torch.randn(2, 2, hop))


def test_encoder_is_causal() -> None:
    codec = _codec()
    hop = SMALL.hop
    audio = 0.3 * torch.randn(1, 1, 12 * hop)
    changed = audio.clone()
    changed[..., 5 * hop :] = 0.3 * torch.randn(1, 1, 7 * hop)
    with torch.no_grad():
        a = codec.encode_latent(audio)
        b = codec.encode_latent(changed)
    assert torch.equal(a[..., :5], b[..., :5])  # frames before the change see nothing of it
    assert not torch.allclose(a[..., 5], b[..., 5])  # the frame holding it does
    assert torch.equal(codec.encode(audio)[..., :5], codec.encode(changed)[..., :5])


def test_decoder_is_causal() -> None:
    codec = _codec()
    hop = SMALL.hop
    codes = torch.randint(0, SMALL.codebook_size, (1, SMALL.n_q, 12))
    changed = codes.clone()
    changed[..., 6:] = torch.randint(0, SMALL.codebook_size, (1, SMALL.n_q, 6))
    with torch.no_grad():
        a = codec.decode(codes)
        b = codec.decode(changed)
    assert torch.equal(a[..., : 6 * hop], b[..., : 6 * hop])
    assert not torch.allclose(a[..., 6 * hop : 7 * hop], b[..., 6 * hop : 7 * hop])


def _chunks(total: int, rng: np.random.Generator) -> list[tuple[int, int]]:
    out, pos = [], 0
    sizes = [1, 1, 3, 1, 2]  # single frames first, then random sizes
    while pos < total:
        n = sizes.pop(0) if sizes else int(rng.integers(1, 6))
        n = min(n, total - pos)
        out.append((pos, pos + n))
        pos += n
    return out


@pytest.mark.parametrize("activation", ["snake", "elu"])
def test_streaming_encoder_equals_full(activation: str) -> None:
    config = dataclasses.replace(SMALL, activation=activation)
    codec = _codec(config)
    hop = config.hop
    frames = 23
    audio = 0.3 * torch.randn(2, 1, frames * hop)
    with torch.no_grad():
        full_latent = codec.encode_latent(audio)
    full = codec.encode(audio)
    stream = codec.stream_encoder(batch=2)
    chunks = _chunks(frames, np.random.default_rng(0))
    parts = [stream.push(audio[..., a * hop : b * hop]) for a, b in chunks]
    assert torch.equal(torch.cat(parts, -1), full)
    assert stream.frames == frames
    # and the latents themselves, to 1e-5
    state = codec.encoder.init_state(2, torch.device("cpu"), torch.float32)
    with torch.no_grad():
        pieces = [
            codec.encoder.push(audio[..., a * hop : b * hop].transpose(1, 2), state)
            for a, b in _chunks(frames, np.random.default_rng(1))
        ]
    streamed = torch.cat(pieces, 1).transpose(1, 2)
    assert float((streamed - full_latent).abs().max()) < 1e-5


@pytest.mark.parametrize("n_q", [3, 1])
def test_streaming_decoder_equals_full(n_q: int) -> None:
    codec = _codec()
    frames = 23
    codes = torch.randint(0, SMALL.codebook_size, (2, n_q, frames))
    with torch.no_grad():
        full = codec.decode(codes)
    stream = codec.stream_decoder(batch=2)
    parts = [stream.push(codes[..., a:b]) for a, b in _chunks(frames, np.random.default_rng(2))]
    streamed = torch.cat(parts, -1)
    assert streamed.shape == full.shape
    assert float((streamed - full).abs().max()) < 1e-5
    assert stream.frames == frames


@pytest.mark.parametrize("name", ["tiny", "default"])
def test_named_configs_stream_frame_by_frame_like_full(name: str) -> None:
    config = NAMED_CODEC_CONFIGS[name]
    codec = _codec(config, seed=3)
    hop = config.hop
    audio = 0.3 * torch.randn(1, 1, 6 * hop)
    codes = codec.encode(audio)
    with torch.no_grad():
        full = codec.decode(codes)
        latent = codec.encode_latent(audio)
    stream = codec.stream_decoder()
    streamed = torch.cat([stream.push(codes[..., i : i + 1]) for i in range(6)], -1)
    assert float((streamed - full).abs().max()) < 1e-5
    state = codec.encoder.init_state(1, torch.device("cpu"), torch.float32)
    with torch.no_grad():
        pieces = [
            codec.encoder.push(audio[..., i * hop : (i + 1) * hop].transpose(1, 2), state)
            for i in range(6)
        ]
    assert float((torch.cat(pieces, 1).transpose(1, 2) - latent).abs().max()) < 1e-5


def test_stream_inputs_are_checked() -> None:
    codec = _codec()
    with pytest.raises(ValueError, match="whole frames"):
        codec.stream_encoder().push(torch.zeros(1, 1, SMALL.hop + 1))
    with pytest.raises(ValueError, match="expected codes"):
        codec.stream_decoder(batch=2).push(torch.zeros(1, 3, 2, dtype=torch.long))


def test_save_and_load_round_trip(tmp_path: Path) -> None:
    codec = _codec()
    path = codec.save_pretrained(tmp_path / "codec.safetensors", extra={"step": 3})
    again = Codec.from_pretrained(path, expected_config=SMALL.to_dict())
    assert again.config == SMALL and not again.training
    audio = 0.3 * torch.randn(1, 1, 5 * SMALL.hop)
    assert torch.equal(codec.encode(audio), again.encode(audio))
    with torch.no_grad():
        assert torch.equal(codec.decode(codec.encode(audio)), again.decode(codec.encode(audio)))
    other = dataclasses.replace(SMALL, n_q=2)
    with pytest.raises(CheckpointError, match="differs"):
        Codec.from_pretrained(path, expected_config=other)


def test_load_codec_from_bundle_and_errors(tmp_path: Path) -> None:
    codec = _codec()
    bundle = tmp_path / "b"
    bundle.mkdir()
    codec.save_pretrained(bundle / "codec.safetensors")
    manifest = {
        "format": 1,
        "name": "b",
        "version": "1.0.0",
        "kind": "audiolm",
        "sample_rate": 16000,
        "components": {"codec": {"file": "codec.safetensors", "config": SMALL.to_dict()}},
    }
    (bundle / "bundle.json").write_text(json.dumps(manifest))
    assert load_codec(bundle).config == SMALL
    assert load_codec(bundle / "codec.safetensors").config == SMALL
    manifest["components"] = {}
    (bundle / "bundle.json").write_text(json.dumps(manifest))
    with pytest.raises(CheckpointError, match="no codec component"):
        load_codec(bundle)
    with pytest.raises(CheckpointError, match="without bundle.json"):
        load_codec(tmp_path)
    with pytest.raises(CheckpointError, match="not found"):
        load_codec(tmp_path / "nothing.safetensors")
    # another module's checkpoint
    save_module(torch.nn.Linear(2, 2), tmp_path / "lin.safetensors", {"a": 1})
    with pytest.raises(CheckpointError, match="not a Codec"):
        Codec.from_pretrained(tmp_path / "lin.safetensors")


def test_parameter_counts_of_named_configs() -> None:
    counts = {n: Codec(c).num_parameters() for n, c in NAMED_CODEC_CONFIGS.items()}
    assert counts["tiny"] < counts["default"] < counts["large"]
    assert counts["tiny"] < 500_000 and counts["default"] < 3_000_000


# --- the discriminator (models/discriminator.py) -------------------------------------------------


def test_discriminator_shapes_and_losses() -> None:
    from audiogen_studio.models.discriminator import (
        DiscriminatorConfig,
        MultiScaleSTFTDiscriminator,
        discriminator_hinge_loss,
        feature_matching_loss,
        generator_hinge_loss,
    )

    config = DiscriminatorConfig(n_ffts=(256, 128), filters=4, dilations=(1, 2))
    assert DiscriminatorConfig.from_dict(config.to_dict()) == config
    torch.manual_seed(0)
    disc = MultiScaleSTFTDiscriminator(config)
    audio = torch.randn(2, 1, 2048, requires_grad=True)
    out = disc(audio)
    assert len(out.logits) == 2 and len(out.features) == 2
    assert len(out.features[0]) == 1 + 2 + 1  # first conv, dilated convs, 3x3 conv
    assert out.logits[0].shape[:2] == (2, 1) and out.logits[0].shape[2] == 2048 // 64 + 1
    generator_hinge_loss(out.logits).backward()
    assert audio.grad is not None and float(audio.grad.abs().sum()) > 0
    # hinge values on known logits
    real, fake = [torch.full((1, 1, 2, 2), 2.0)], [torch.full((1, 1, 2, 2), -2.0)]
    assert float(discriminator_hinge_loss(real, fake)) == 0.0  # both beyond the margin
    assert float(discriminator_hinge_loss(fake, real)) == pytest.approx(6.0)
    assert float(generator_hinge_loss(fake)) == pytest.approx(3.0)
    feats = [[torch.ones(1, 2, 3, 3), 2 * torch.ones(1, 2, 3, 3)]]
    assert float(feature_matching_loss(feats, feats)) == 0.0
    half = [[0.5 * f for f in feats[0]]]
    assert float(feature_matching_loss(feats, half)) == pytest.approx(0.5)
