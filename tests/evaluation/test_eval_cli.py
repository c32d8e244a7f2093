"""``audiogen-studio eval``: JSON out, clear one-line errors, every subcommand wired."""

from __future__ import annotations

import importlib.util
import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
import soundfile as sf
import torch
from eval_signals import RATE, riff, write_corpus

pytest.importorskip("pesq", reason="needs the [eval] extra (pesq)")
pytest.importorskip("librosa", reason="needs the [eval] extra (librosa)")
pytest.importorskip("mir_eval", reason="needs the [eval] extra (mir_eval)")

from audiogen_studio.cli.main import main

Say = Callable[..., npt.NDArray[np.float32]]


def _music_take(tmp_path: Path, shift: float) -> tuple[Path, Path]:
    prompt = riff(note_seconds=0.3, repeats=2)
    cont = riff(note_seconds=0.3, repeats=2, semitones=shift, seed=5)
    sf.write(tmp_path / "prompt.wav", prompt, RATE)
    sf.write(tmp_path / f"take{shift:g}.wav", np.concatenate([prompt, cont]), RATE)
    return tmp_path / "prompt.wav", tmp_path / f"take{shift:g}.wav"


def test_eval_continuation_writes_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    prompt, same = _music_take(tmp_path, 0)
    _, shifted = _music_take(tmp_path, 6)
    assert main(["eval", "continuation", str(prompt), str(same), "--kind", "music"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["evaluation"] == "continuation"
    assert data["summary"]["key_score"] == {
        "value": 1.0,
        "target": ">= 0.7",
        "met": True,
        "note": "mir_eval weighted score",
        "takes_meeting": 1.0,
    }
    assert data["scores"]["prompt_seconds"] == pytest.approx(prompt_seconds(prompt))
    assert 0 <= data["scores"]["seam"]["click_percentile"] <= 100
    out = tmp_path / "shifted.json"
    assert (
        main(["eval", "continuation", str(prompt), str(shifted), "--kind", "music", "-o", str(out)])
        == 0
    )
    assert capsys.readouterr().out == ""
    assert json.loads(out.read_text())["summary"]["key_score"]["value"] == 0.0
    # --prompt-seconds wins over the prompt file's length
    assert (
        main(
            [
                "eval",
                "continuation",
                str(prompt),
                str(same),
                "--kind",
                "music",
                "--prompt-seconds",
                "2",
            ]
        )
        == 0
    )
    assert json.loads(capsys.readouterr().out)["scores"]["prompt_seconds"] == 2.0


def prompt_seconds(path: Path) -> float:
    return float(sf.info(str(path)).frames / RATE)


def test_eval_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    prompt, take = _music_take(tmp_path, 0)
    code = main(["eval", "continuation", str(take), str(prompt), "--kind", "music"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "must be shorter than the take" in err
    code = main(["eval", "codec", "--model", str(tmp_path), "--data", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2 and "no model bundle" in err
    with pytest.raises(SystemExit) as exit_info:
        main(["eval", "continuation", str(prompt), str(take), "--kind", "noise"])
    assert exit_info.value.code == 2
    capsys.readouterr()
    code = main(
        [
            "eval",
            "continuation",
            str(prompt),
            str(take),
            "--kind",
            "music",
            "-o",
            str(tmp_path / "no" / "x.json"),
        ]
    )
    assert code == 2 and "does not exist" in capsys.readouterr().err


def _codec_bundle(folder: Path) -> Path:
    from audiogen_studio.engine.bundles import write_component
    from audiogen_studio.models.codec import NAMED_CODEC_CONFIGS, Codec

    torch.manual_seed(0)
    codec = Codec(NAMED_CODEC_CONFIGS["tiny"]).eval()
    folder.mkdir(parents=True)
    codec.save_pretrained(folder / "codec.safetensors")
    write_component(
        folder,
        "codec",
        file="codec.safetensors",
        config=codec.config.to_dict(),
        sample_rate=codec.config.sample_rate,
        name="tiny-codec",
    )
    return folder


def test_eval_codec_scores_a_bundle_next_to_opus(
    tmp_path: Path, say: Say, capsys: pytest.CaptureFixture[str]
) -> None:
    bundle = _codec_bundle(tmp_path / "bundle")
    corpus = write_corpus(
        tmp_path / "corpus", {"s1": ("m3", say()), "s2": ("f2", say(voice="en-us+f2"))}
    )
    opus = shutil.which("opusenc") is not None and shutil.which("opusdec") is not None
    argv = ["eval", "codec", "--model", str(bundle), "--data", str(corpus), "--clips", "1"]
    argv += ["--seconds", "2", "--no-visqol", "--n-q", "2"] + ([] if opus else ["--no-opus"])
    assert main(argv) == 0
    data = json.loads(capsys.readouterr().out)
    summary = data["summary"]
    assert data["bundle"] == "tiny-codec" and data["report"]["n_q"] == 2
    assert summary["pesq_wb"]["value"] < 2.0  # random weights
    assert summary["visqol"]["value"] is None
    if opus:
        assert summary["pesq_wb"]["met"] is False
        assert summary["opus_same"]["kbps"] == 6.0  # Opus' floor: the tiny codec is lower
        assert summary["opus_same"]["pesq_wb"] > summary["pesq_wb"]["value"]
    assert summary["encoder_beam"] == 1  # greedy unless asked: the AudioLM tokens' encoder
    assert main([*argv, "--no-opus", "--beam", "4"]) == 0
    searched = json.loads(capsys.readouterr().out)
    assert searched["summary"]["encoder_beam"] == 4 and searched["report"]["beam"] == 4
    assert main([*argv[:-2], "--n-q", "99"]) == 2
    assert "codebooks" in capsys.readouterr().err
    if importlib.util.find_spec("speechmos") is not None:  # DNSMOS next to the input's
        assert main([*argv, "--dnsmos"]) == 0
        summary = json.loads(capsys.readouterr().out)["summary"]
        assert 1.0 < summary["dnsmos_input"]["value"] < 5.0 and "dnsmos" in summary
        if opus:
            assert 1.0 < summary["opus_same"]["dnsmos"] < 5.0


def _random_audiolm_bundle(folder: Path) -> Path:
    path = Path(__file__).resolve().parents[1] / "engine" / "audiolm_stack.py"
    spec = importlib.util.spec_from_file_location("eval_audiolm_stack", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.random_audiolm_bundle(folder)  # type: ignore[no-any-return]


def test_eval_bundle_continues_held_out_prompts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bundle = _random_audiolm_bundle(tmp_path / "audiolm")
    corpus = write_corpus(tmp_path / "music", {"m1": ("pluck", riff(note_seconds=0.3, repeats=2))})
    out = tmp_path / "bundle.json"
    argv = ["eval", "bundle", "--model", str(bundle), "--data", str(corpus), "--kind", "music"]
    argv += ["--clips", "1", "--prompt-seconds", "1.5", "--seconds", "1", "--no-progress"]
    assert main([*argv, "-o", str(out)]) == 0
    report = json.loads(out.read_text())["report"]
    assert report["kind"] == "music" and report["prompt_seconds"] == 1.5
    assert report["rtf"] > 0 and report["summary"]["rtf"]["target"] == "<= 0.5"
    assert report["clips"][0]["generated_seconds"] == pytest.approx(1.0, abs=0.05)
    assert report["reference_summary"]["key_score"]["value"] in (0.0, 0.2, 0.3, 0.5, 1.0)
    assert report["clips"][0]["model"]["seam"] is not None


def test_eval_vocoder_scores_a_vocoder_bundle_next_to_griffin_lim(
    tmp_path: Path, say: Say, capsys: pytest.CaptureFixture[str]
) -> None:
    from audiogen_studio.engine.bundles import write_component
    from audiogen_studio.models.wavenet import WaveNet, named_config

    torch.manual_seed(0)
    model = WaveNet(named_config("tiny", mel=True))
    bundle = tmp_path / "vocoder"
    model.save_pretrained(bundle / "wavenet.safetensors")
    write_component(
        bundle,
        "wavenet",
        file="wavenet.safetensors",
        config=model.config.to_dict(),
        sample_rate=model.config.sample_rate,
        kind="wavenet-vocoder",
        name="tiny-vocoder",
    )
    corpus = write_corpus(tmp_path / "corpus", {"s1": ("m3", say())})
    argv = ["eval", "vocoder", "--model", str(bundle), "--data", str(corpus), "--clips", "1"]
    assert main([*argv, "--seconds", "1", "--no-visqol"]) == 0
    summary = json.loads(capsys.readouterr().out)["summary"]
    assert summary["bundle"].startswith("tiny-vocoder") and summary["beats_griffin_lim"] is False
    assert summary["vocoder"]["visqol"] is None and summary["griffin_lim"]["estoi"] > 0.5
    # a continuation bundle is not a vocoder: one line on stderr, exit status 2
    audiolm = _random_audiolm_bundle(tmp_path / "audiolm")
    assert main(["eval", "vocoder", "--model", str(audiolm), "--data", str(corpus)]) == 2
    assert "vocode" in capsys.readouterr().err
