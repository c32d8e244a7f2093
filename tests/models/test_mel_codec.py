"""The mel codec: config round trip, causal framing, the overlap-add's alignment, streamed ==
full, priming as the engine does it, fitting, checkpoints and the acoustic-codec loader."""

from __future__ import annotations

import dataclasses
import itertools
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from audiogen_studio.engine.bundles import write_component
from audiogen_studio.models.acoustic_codec import (
    component_kind,
    decoder_latency,
    load_acoustic_codec,
)
from audiogen_studio.models.checkpoint import CheckpointError
from audiogen_studio.models.codec import NAMED_CODEC_CONFIGS, Codec
from audiogen_studio.models.mel_codec import (
    MEL_CODEC_KIND,
    NAMED_MEL_CODEC_CONFIGS,
    MelCodec,
    MelCodecConfig,
    named_mel_codec_config,
)

torch.set_num_threads(1)

TINY = NAMED_MEL_CODEC_CONFIGS["tiny"]


def _codec(config: MelCodecConfig = TINY, seed: int = 0) -> MelCodec:
    """Random decoder weights; statistics and codebooks fitted on noise and a chirp."""
    torch.manual_seed(seed)
    codec = MelCodec(config).eval()
    t = torch.arange(40 * config.hop) / config.sample_rate
    audio = torch.stack([0.1 * torch.randn_like(t), 0.5 * torch.sin(2 * np.pi * 300 * t * t)])
    frames = codec.log_mel(audio[:, None]).transpose(1, 2).reshape(-1, config.n_mels)
    codec.fit_quantizer(frames, iters=3, seed=seed)
    return codec


def test_config_round_trip_and_properties(tmp_path: Path) -> None:
    for name, config in NAMED_MEL_CODEC_CONFIGS.items():
        again = MelCodecConfig.from_dict(json.loads(config.to_json()))
        assert again == config, name
        assert named_mel_codec_config(name) is config
    default = NAMED_MEL_CODEC_CONFIGS["default"]
    assert default.hop == 320 and default.frame_rate == 50.0 and default.sample_rate == 16000
    assert default.n_q == 12 and default.codebook_size == 1024 and default.n_mels == 80
    assert default.bits_per_second == 6000.0  # the first 8 books: 4 kbps
    assert default.latency == 704 and default.n_bins == 513
    assert default.frames(1) == 1 and default.frames(320) == 1 and default.frames(321) == 2
    path = tmp_path / "c.json"
    path.write_text(dataclasses.replace(default, n_q=8).to_json())
    assert named_mel_codec_config(str(path)).bits_per_second == 4000.0
    with pytest.raises(ValueError, match="unknown mel codec config keys"):
        MelCodecConfig.from_dict({**default.to_dict(), "bogus": 1})
    with pytest.raises(ValueError, match="n_fft"):
        MelCodecConfig(n_fft=512)
    with pytest.raises(ValueError, match="odd"):
        MelCodecConfig(kernel_size=6)
    with pytest.raises(ValueError, match="f_max"):
        MelCodecConfig(f_max=9000.0)
    with pytest.raises(ValueError, match="unknown mel codec config"):
        named_mel_codec_config("huge")
    # the default is DESIGN.md §7's decoder size
    assert 2.5e6 < MelCodec(default).num_parameters() < 3.2e6


def test_encoder_is_causal_and_frames_whole_hops() -> None:
    codec = _codec()
    hop = TINY.hop
    torch.manual_seed(1)
    x = 0.3 * torch.randn(1, 1, 20 * hop - 7)
    codes = codec.encode(x)
    assert codes.shape == (1, TINY.n_q, 20) and codes.dtype == torch.int64
    y = x.clone()
    y[..., 12 * hop :] = 0.3 * torch.randn(1, 1, y.shape[-1] - 12 * hop)
    other = codec.encode(y)
    assert torch.equal(other[..., :12], codes[..., :12])  # frame f sees samples < (f + 1) hop
    assert not torch.equal(other[..., 12:], codes[..., 12:])
    assert torch.equal(codec.encode(x, n_q=2), codes[:, :2])


def test_decoder_output_depends_on_frames_up_to_its_own() -> None:
    codec = _codec()
    hop = TINY.hop
    torch.manual_seed(2)
    codes = torch.randint(0, TINY.codebook_size, (1, TINY.n_q, 16))
    changed = codes.clone()
    changed[..., 9] = (changed[..., 9] + 1) % TINY.codebook_size
    with torch.inference_mode():
        a, b = codec.decode(codes), codec.decode(changed)
    assert a.shape == (1, 1, 16 * hop)
    torch.testing.assert_close(a[..., : 9 * hop], b[..., : 9 * hop], atol=0, rtol=0)
    assert not torch.allclose(a[..., 9 * hop : 10 * hop], b[..., 9 * hop : 10 * hop])


def test_overlap_add_reproduces_the_analysed_signal_delayed_by_the_latency() -> None:
    """If the head gave the exact STFT frames the encoder analyses, the overlap-add returns the
    input ``latency`` samples later: analysis and synthesis windows line up."""
    for config in NAMED_MEL_CODEC_CONFIGS.values():
        decoder = MelCodec(config).decoder
        hop, n_fft, lat = config.hop, config.n_fft, config.latency
        torch.manual_seed(3)
        x = torch.randn(2, 30 * hop)
        padded = torch.nn.functional.pad(x, (lat, 0))  # as MelCodec.log_mel pads
        spec = torch.stft(
            padded, n_fft, hop, window=decoder.window, center=False, return_complex=True
        )  # [B, bins, 30]
        frames = torch.fft.irfft(spec.transpose(1, 2), n=n_fft) * decoder.window
        out = decoder._normalise(decoder._overlap_add(frames)[:, : 30 * hop])
        torch.testing.assert_close(out[:, lat:], x[:, : 30 * hop - lat], atol=1e-5, rtol=1e-4)
        assert float(out[:, lat:].abs().max()) > 1.0  # the check can fail


@pytest.mark.parametrize("name", ["tiny", "default"])
def test_stream_decoder_equals_full_decode(name: str) -> None:
    config = NAMED_MEL_CODEC_CONFIGS[name]
    codec = _codec(config)
    torch.manual_seed(4)
    codes = torch.randint(0, config.codebook_size, (2, config.n_q, 23))
    with torch.inference_mode():
        full = codec.decode(codes)
        for q in (config.n_q, 2):
            if q != config.n_q:
                full = codec.decode(codes[:, :q])
            stream = codec.stream_decoder(2)
            pieces = [stream.push(codes[:, :q, a:b]) for a, b in ((0, 1), (1, 4), (4, 4), (4, 23))]
            assert [p.shape[-1] for p in pieces] == [config.hop, 3 * config.hop, 0, 19 * config.hop]
            torch.testing.assert_close(torch.cat(pieces, -1), full, atol=1e-5, rtol=0)
            assert stream.frames == 23
    assert float(full.abs().max()) > 1e-3


def test_stream_encoder_equals_full_encode() -> None:
    codec = _codec()
    hop = TINY.hop
    torch.manual_seed(5)
    x = 0.3 * torch.randn(2, 1, 17 * hop)
    stream = codec.stream_encoder(2)
    pieces = [stream.push(x[..., a * hop : b * hop]) for a, b in ((0, 1), (1, 6), (6, 17))]
    assert torch.equal(torch.cat(pieces, -1), codec.encode(x))
    with pytest.raises(ValueError, match="whole frames"):
        stream.push(x[..., :100])


@pytest.mark.parametrize("name", ["tiny", "default"])
def test_partial_encoding_and_priming_equal_the_whole_prompt(name: str) -> None:
    """What the AudioLM engine relies on (as for the SoundStream codec): encoding from
    ENCODE_MARGIN_FRAMES earlier and priming the decoder with PRIME_FRAMES frames give the
    codes and the state of the whole prompt."""
    from audiogen_studio.engine.audiolm_pipeline import ENCODE_MARGIN_FRAMES, PRIME_FRAMES

    config = NAMED_MEL_CODEC_CONFIGS[name]
    codec = _codec(config)
    assert codec.receptive_frames <= PRIME_FRAMES
    frames, used = 120, 20
    torch.manual_seed(6)
    audio = 0.1 * torch.randn(1, 1, frames * config.hop)
    with torch.inference_mode():
        full = codec.encode(audio)
        start = frames - used - ENCODE_MARGIN_FRAMES
        tail = codec.encode(audio[:, :, start * config.hop :])
        assert torch.equal(tail[:, :, -used:], full[:, :, -used:])
        more = torch.randint(0, config.codebook_size, (1, config.n_q, 6))
        whole = codec.stream_decoder(1)
        whole.push(full)
        primed = codec.stream_decoder(1)
        primed.push(full[:, :, -PRIME_FRAMES:])
        torch.testing.assert_close(primed.push(more), whole.push(more), atol=1e-5, rtol=0)
        # fewer frames than the receptive field do not give the same state
        short = codec.stream_decoder(1)
        short.push(full[:, :, -4:])
        assert not torch.allclose(short.push(more), whole.push(more), atol=1e-5)


def test_non_causal_decoder_decodes_but_cannot_stream() -> None:
    config = dataclasses.replace(TINY, causal=False)
    codec = _codec(config)
    codes = torch.randint(0, config.codebook_size, (1, config.n_q, 10))
    assert codec.decode(codes).shape == (1, 1, 10 * config.hop)
    with pytest.raises(ValueError, match="cannot stream"):
        codec.stream_decoder(1)


def test_fit_quantizer_sets_statistics_and_residual_codebooks() -> None:
    codec = MelCodec(TINY)
    assert not codec.fitted
    torch.manual_seed(7)
    frames = 3.0 + 2.0 * torch.randn(3000, TINY.n_mels)
    errors = codec.fit_quantizer(frames, iters=5)
    assert codec.fitted
    torch.testing.assert_close(codec.mel_mean, frames.mean(0))
    torch.testing.assert_close(codec.mel_std, frames.std(0))
    values = [errors[f"rel_err_q{i}"] for i in range(1, TINY.n_q + 1)]
    assert all(b < a for a, b in itertools.pairwise(values)), values
    # encoding the fitted frames: the residual codes reconstruct them as well as k-means did
    z = codec.normalize(frames.T[None])  # [1, n_mels, N]
    codes = codec.quantizer.encode(z)
    err = float((codec.dequantize(codes) - z).square().sum() / z.square().sum())
    assert err == pytest.approx(values[-1], rel=0.05)
    with pytest.raises(ValueError, match="log-mel frames"):
        codec.fit_quantizer(torch.zeros(10, 3))


def test_a_beam_search_encodes_closer_frames_with_the_same_codebooks() -> None:
    codec = _codec()
    t = torch.arange(30 * TINY.hop) / TINY.sample_rate
    audio = (0.3 * torch.sin(2 * np.pi * 440 * t) + 0.05 * torch.randn_like(t))[None, None]
    z = codec.features(audio)  # [1, n_mels, F]
    greedy, searched = codec.encode(audio), codec.encode(audio, beam=8)
    assert searched.shape == greedy.shape and not torch.equal(searched, greedy)

    def error(codes: torch.Tensor) -> float:
        return float((codec.dequantize(codes) - z).square().sum())

    assert error(searched) < error(greedy)
    assert torch.equal(codec.encode(audio, 2, beam=1), greedy[:, :2])
    assert codec.decode(searched).shape == codec.decode(greedy).shape


def test_adopted_decoder_renders_the_same_audio_under_other_statistics() -> None:
    source = _codec(seed=0)
    target = MelCodec(TINY).eval()
    t = torch.arange(60 * TINY.hop) / TINY.sample_rate
    music = torch.stack([0.3 * torch.sin(2 * np.pi * 440 * t), 0.05 * torch.randn_like(t)])
    frames = target.log_mel(music[:, None]).transpose(1, 2).reshape(-1, TINY.n_mels)
    target.fit_quantizer(frames, iters=3, seed=1)
    assert not torch.allclose(target.mel_mean, source.mel_mean)
    target.adopt_decoder(source)
    audio = 0.2 * torch.randn(2, 1, 30 * TINY.hop)
    with torch.no_grad():
        expected = source.decoder(source.features(audio))
        got = target.decoder(target.features(audio))
    skip = target.receptive_frames * TINY.hop + TINY.latency  # past the convs' zero padding
    torch.testing.assert_close(got[..., skip:], expected[..., skip:], rtol=1e-4, atol=1e-4)
    # the source is untouched and the decoders are independent copies
    assert target.decoder.head.weight is not source.decoder.head.weight
    wider = MelCodec(dataclasses.replace(TINY, dim=TINY.dim * 2))
    with pytest.raises(ValueError, match="differ in dim"):
        wider.adopt_decoder(source)
    with pytest.raises(ValueError, match="fit the quantizer"):
        MelCodec(TINY).adopt_decoder(source)


def test_checkpoint_round_trip_and_loader(tmp_path: Path) -> None:
    codec = _codec()
    path = codec.save_pretrained(tmp_path / "mel.safetensors")
    again = MelCodec.from_pretrained(path)
    assert again.config == TINY and again.fitted and not again.training
    codes = torch.randint(0, TINY.codebook_size, (1, TINY.n_q, 8))
    x = 0.2 * torch.randn(1, 1, 8 * TINY.hop)
    with torch.inference_mode():
        torch.testing.assert_close(again.decode(codes), codec.decode(codes), atol=0, rtol=0)
    assert torch.equal(again.encode(x), codec.encode(x))
    with pytest.raises(CheckpointError, match="differs"):
        MelCodec.from_pretrained(path, expected_config=dataclasses.replace(TINY, n_q=3))
    # the loader tells the codecs apart by the module named in the file...
    loaded = load_acoustic_codec(path)
    assert isinstance(loaded, MelCodec) and decoder_latency(loaded) == TINY.latency
    soundstream = Codec(NAMED_CODEC_CONFIGS["tiny"])
    sfile = soundstream.save_pretrained(tmp_path / "ss.safetensors")
    loaded_ss = load_acoustic_codec(sfile)
    assert isinstance(loaded_ss, Codec) and decoder_latency(loaded_ss) == 0
    with pytest.raises(CheckpointError, match="Codec checkpoint, not a MelCodec"):
        MelCodec.from_pretrained(sfile)
    # ...and a bundle by its codec entry's kind (none: a SoundStream codec of an older bundle)
    for folder, model, kind in (
        (tmp_path / "mel", codec, MEL_CODEC_KIND),
        (tmp_path / "ss", soundstream, None),
    ):
        model.save_pretrained(folder / "codec.safetensors")
        write_component(
            folder,
            "codec",
            file="codec.safetensors",
            config=model.config.to_dict(),
            sample_rate=16000,
            component_kind=kind,
        )
    entry = json.loads((tmp_path / "mel" / "bundle.json").read_text())["components"]["codec"]
    assert entry["kind"] == "mel" and component_kind(tmp_path / "mel", entry) == "mel"
    assert isinstance(load_acoustic_codec(tmp_path / "mel"), MelCodec)
    assert isinstance(load_acoustic_codec(tmp_path / "ss"), Codec)
    write_component(
        tmp_path / "ss",
        "codec",
        file="codec.safetensors",
        config=soundstream.config.to_dict(),
        sample_rate=16000,
        component_kind="wavelet",
    )
    with pytest.raises(CheckpointError, match="unknown codec kind 'wavelet'"):
        load_acoustic_codec(tmp_path / "ss")
    with pytest.raises(CheckpointError, match="not a model bundle"):
        load_acoustic_codec(tmp_path)


def test_decode_is_fast_enough_to_stream() -> None:
    """A coarse guard (the measured figure is in the report): the default decoder renders a
    second of audio in well under a second on one thread."""
    import time

    config = NAMED_MEL_CODEC_CONFIGS["default"]
    codec = MelCodec(config).eval()
    codes = torch.randint(0, config.codebook_size, (1, config.n_q, 250))
    with torch.inference_mode():
        codec.decode(codes[..., :10])
        began = time.perf_counter()
        codec.decode(codes)
        seconds = time.perf_counter() - began
    assert seconds / 5.0 < 0.25  # RTF; ~0.01 measured on a loaded 2-core machine
