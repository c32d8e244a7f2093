"""``audiogen-studio codec encode|decode``: round trip through a token file, clear errors."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open

from audiogen_studio.audio import io, synth
from audiogen_studio.audio.clip import Clip
from audiogen_studio.audio.errors import AudioError
from audiogen_studio.cli import codec as codec_cli
from audiogen_studio.cli.errors import CliError
from audiogen_studio.engine.bundles import write_component
from audiogen_studio.models.codec import NAMED_CODEC_CONFIGS, Codec, CodecConfig

torch.set_num_threads(1)

TINY = NAMED_CODEC_CONFIGS["tiny"]


def _cli(argv: list[str]) -> int:
    """Run the codec commands as ``audiogen-studio`` does: user errors -> one line, status 2."""
    parser = argparse.ArgumentParser(prog="audiogen-studio")
    sub = parser.add_subparsers(dest="command")
    codec_cli.register(sub)
    tsub = sub.add_parser("train").add_subparsers(dest="model")
    codec_cli.register_train(tsub)
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except (AudioError, CliError) as exc:
        print(f"audiogen-studio: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2


def _bundle(folder: Path, config: CodecConfig, seed: int = 0) -> Path:
    torch.manual_seed(seed)
    codec = Codec(config)
    with torch.no_grad():
        z = codec.encode_latent(0.3 * torch.randn(4, 1, 40 * config.hop))
        codec.quantizer.initialize(z)
    codec.save_pretrained(folder / "codec.safetensors")
    write_component(
        folder,
        "codec",
        file="codec.safetensors",
        config=config.to_dict(),
        sample_rate=config.sample_rate,
        name=folder.name,
    )
    return folder


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _bundle(tmp_path_factory.mktemp("models") / "tinycodec", TINY)


def test_round_trip_restores_length_rate_and_matches_the_codec(
    bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    clip = synth.riff(note_seconds=0.1, repeats=1, rate=22_050)
    stereo = Clip(np.vstack([clip.samples, 0.5 * clip.samples]), 22_050)
    wav = io.save(stereo, tmp_path / "in.wav")
    tokens = tmp_path / "in.tokens.safetensors"
    assert _cli(["codec", "encode", str(wav), "--model", str(bundle), "-o", str(tokens)]) == 0
    assert "4 codebooks" in capsys.readouterr().out
    with safe_open(str(tokens), framework="pt") as f:
        meta = f.metadata()
        codes = f.get_tensor("codes")
    samples_16k = int(meta["samples"])
    assert codes.dtype == torch.int16 and codes.shape == (4, -(-samples_16k // TINY.hop))
    assert meta["format"] == codec_cli.TOKENS_FORMAT and meta["bundle"] == "tinycodec"
    assert int(meta["original_rate"]) == 22_050 and int(meta["original_frames"]) == clip.frames
    assert json.loads(meta["codec_config"]) == TINY.to_dict()
    out = tmp_path / "out.wav"
    assert _cli(["codec", "decode", str(tokens), "--model", str(bundle), "-o", str(out)]) == 0
    back = io.load(out)
    assert back.rate == 22_050 and back.frames == clip.frames and back.channels == 1
    # at the codec's own rate, decode is exactly the codec's output (no resampling)
    mono16 = io.save(synth.sine(330.0, 0.5, rate=16_000), tmp_path / "s.wav")
    tokens16 = tmp_path / "s.safetensors"
    assert _cli(["codec", "encode", str(mono16), "--model", str(bundle), "-o", str(tokens16)]) == 0
    out16 = tmp_path / "s-out.wav"
    assert _cli(["codec", "decode", str(tokens16), "-o", str(out16)]) == 0  # bundle from metadata
    codec = Codec.from_pretrained(bundle / "codec.safetensors")
    with safe_open(str(tokens16), framework="pt") as f:
        codes16 = f.get_tensor("codes").long()
    with torch.inference_mode():
        expected = codec.decode(codes16[None])[0, 0, :8000].numpy()
    got = io.load(out16).samples[0]
    assert got.shape == (8000,) and np.allclose(got, expected, atol=1e-6)
    audio16 = torch.from_numpy(io.load(mono16).samples.copy())[None]
    reencoded = codec.encode(audio16, beam=codec_cli.DEFAULT_ENCODE_BEAM)
    assert torch.equal(reencoded[0], codes16)
    assert meta["encoder_beam"] == str(codec_cli.DEFAULT_ENCODE_BEAM)


def test_the_beam_finds_closer_codes_and_width_one_is_greedy(bundle: Path, tmp_path: Path) -> None:
    wav = io.save(synth.riff(note_seconds=0.1, repeats=1, rate=16_000), tmp_path / "r.wav")
    codec = Codec.from_pretrained(bundle / "codec.safetensors")
    audio = torch.from_numpy(io.load(wav).samples.copy())[None]
    with torch.inference_mode():
        latent = codec.encode_latent(audio)
    found = {}
    for beam in ("1", "8"):
        tokens = tmp_path / f"b{beam}.safetensors"
        argv = ["codec", "encode", str(wav), "--model", str(bundle), "-o", str(tokens)]
        assert _cli([*argv, "--beam", beam]) == 0
        with safe_open(str(tokens), framework="pt") as f:
            found[beam] = f.get_tensor("codes").long()
            assert f.metadata()["encoder_beam"] == beam
    assert torch.equal(found["1"], codec.encode(audio)[0])  # --beam 1: the greedy encoder

    def error(codes: torch.Tensor) -> float:
        return float((codec.quantizer.decode(codes[None]) - latent).square().sum())

    assert error(found["8"]) < error(found["1"])
    argv[-1] = str(tmp_path / "b0.safetensors")
    with pytest.raises((SystemExit, argparse.ArgumentError)):
        _cli([*argv, "--beam", "0"])


def test_fewer_codebooks(bundle: Path, tmp_path: Path) -> None:
    wav = io.save(synth.sine(220.0, 0.3), tmp_path / "a.wav")
    tokens = tmp_path / "a.safetensors"
    argv = ["codec", "encode", str(wav), "--model", str(bundle), "-o", str(tokens), "--n-q", "2"]
    assert _cli(argv) == 0
    with safe_open(str(tokens), framework="pt") as f:
        assert f.get_tensor("codes").shape[0] == 2 and f.metadata()["n_q"] == "2"
    out = tmp_path / "a-out.flac"
    assert _cli(["codec", "decode", str(tokens), "--model", str(bundle), "-o", str(out)]) == 0
    assert io.load(out).frames == 4800
    argv[-1] = "5"
    argv[6] = str(tmp_path / "b.safetensors")
    assert _cli(argv) == 2


def _error(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    assert _cli(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


def test_clear_errors(bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    wav = io.save(synth.sine(220.0, 0.3), tmp_path / "a.wav")
    tokens = tmp_path / "a.safetensors"
    assert _cli(["codec", "encode", str(wav), "--model", str(bundle), "-o", str(tokens)]) == 0
    capsys.readouterr()
    # a token file from another codec config
    other = _bundle(tmp_path / "other", dataclasses.replace(TINY, codebook_size=32))
    x_wav = str(tmp_path / "x.wav")
    err = _error(capsys, ["codec", "decode", str(tokens), "--model", str(other), "-o", x_wav])
    assert "another codec" in err
    # not a token file: audio, a weights file, garbage
    err = _error(capsys, ["codec", "decode", str(wav), "-o", str(tmp_path / "x.wav")])
    assert "not a codec token file" in err
    weights = str(bundle / "codec.safetensors")
    err = _error(capsys, ["codec", "decode", weights, "-o", str(tmp_path / "x.wav")])
    assert "not a codec token file" in err
    missing = str(tmp_path / "none.safetensors")
    assert "not found" in _error(capsys, ["codec", "decode", missing, "-o", x_wav])
    # empty audio
    empty = tmp_path / "empty.wav"
    import soundfile as sf

    sf.write(str(empty), np.zeros((0, 1), dtype=np.float32), 16_000)
    encode_empty = ["codec", "encode", str(empty), "--model", str(bundle), "-o"]
    err = _error(capsys, [*encode_empty, str(tmp_path / "e.st")])
    assert "must end in .safetensors" in err
    err = _error(capsys, [*encode_empty, str(tmp_path / "e.safetensors")])
    assert "empty.wav" in err and "no audio frames" in err
    # existing output, unknown bundle, bundle without a codec
    err = _error(capsys, ["codec", "encode", str(wav), "--model", str(bundle), "-o", str(tokens)])
    assert "already exists" in err
    out_n = str(tmp_path / "n.safetensors")
    err = _error(capsys, ["codec", "encode", str(wav), "--model", "nope", "-o", out_n])
    assert "no model bundle named 'nope'" in err
    (tmp_path / "wn").mkdir()
    (tmp_path / "wn" / "bundle.json").write_text(
        json.dumps(
            {
                "format": 1,
                "name": "wn",
                "version": "1",
                "kind": "wavenet",
                "sample_rate": 16000,
                "components": {"wavenet": {"file": "wavenet.safetensors"}},
            }
        )
    )
    out = str(tmp_path / "w.safetensors")
    err = _error(capsys, ["codec", "encode", str(wav), "--model", str(tmp_path / "wn"), "-o", out])
    assert "has no codec" in err
    # decode without --model when the encoding bundle is gone
    moved = _bundle(tmp_path / "gone", TINY)
    t2 = str(tmp_path / "g.safetensors")
    assert _cli(["codec", "encode", str(wav), "--model", str(moved), "-o", t2]) == 0
    (moved / "bundle.json").unlink()
    capsys.readouterr()
    err = _error(capsys, ["codec", "decode", t2, "-o", str(tmp_path / "g.wav")])
    assert "not installed" in err and "--model" in err


def test_train_codec_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = io.save(synth.riff(note_seconds=0.1, repeats=1), tmp_path / "riff.wav")
    out = tmp_path / "bundle"
    argv = [
        "train",
        "codec",
        "--data",
        str(data),
        "--bundle",
        str(out),
        "--config",
        "tiny",
        "--discriminator",
        "none",
        "--steps",
        "2",
        "--batch",
        "2",
        "--segment",
        "0.1",
        "--quantize-start",
        "1",
        "--threads",
        "1",
        "--no-progress",
        "--json",
    ]
    assert _cli(argv) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["step"] == 2 and result["completed"] and result["metrics"]["n_q"] == 4
    tokens = tmp_path / "t.safetensors"
    assert _cli(["codec", "encode", str(data), "--model", str(out), "-o", str(tokens)]) == 0
    assert _cli([*argv[:-4], "--config", "default"]) == 2
    assert "another config" in capsys.readouterr().err


def test_installed_command_reports_one_line(tmp_path: Path) -> None:
    import subprocess

    wav = io.save(synth.sine(220.0, 0.1), tmp_path / "a.wav")
    proc = subprocess.run(
        [sys.executable, "-m", "audiogen_studio", "codec", "decode", str(wav), "-o", "x.wav"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        check=False,
    )
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "not a codec token file" in lines[0]
    assert not (tmp_path / "x.wav").exists()
