"""The command line: output of the inspection commands, one-line errors with exit status 2."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from audiogen_studio.audio import io, synth
from audiogen_studio.cli.main import main


@pytest.fixture
def wav(tmp_path: Path) -> Path:
    clip = synth.sine(440, 1.25, rate=22050, amp=0.5)
    stereo = clip.replace(samples=np.vstack([clip.samples, clip.samples * 0.5]))
    return io.save(stereo, tmp_path / "tone.wav", subtype="PCM_16")


def test_info_text_and_json(wav: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["info", str(wav)]) == 0
    out = capsys.readouterr().out
    assert "22050 Hz" in out and "channels:  2" in out and "1.250 s" in out
    assert main(["info", "--json", str(wav)]) == 0
    row = json.loads(capsys.readouterr().out)
    assert row["rate"] == 22050 and row["channels"] == 2 and row["frames"] == 27562
    assert row["format"] == "WAV" and row["peak"] == pytest.approx(0.5, abs=1e-3)


def test_info_truncated_wav_exits_2_with_one_line(wav: Path) -> None:
    data = wav.read_bytes()
    bad = wav.with_name("cut.wav")
    bad.write_bytes(data[: len(data) // 3])
    proc = subprocess.run(
        [sys.executable, "-m", "audiogen_studio", "info", str(bad)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "cut.wav" in lines[0] and "truncated WAV" in lines[0]
    assert "Traceback" not in proc.stderr and proc.stdout == ""


def test_debug_shows_traceback(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "audiogen_studio", "--debug", "info", str(tmp_path / "no.wav")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode != 0 and "Traceback" in proc.stderr and "file not found" in proc.stderr


@pytest.mark.parametrize("args", [["info"], ["frobnicate"], ["models"]])
def test_usage_errors_exit_2(args: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(args)
    assert exc.value.code == 2
    assert "error" in capsys.readouterr().err


def test_no_command_prints_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "COMMAND" in capsys.readouterr().out


def test_models_list_finds_bundles_and_reports_broken(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    good = tmp_path / "tiny"
    good.mkdir()
    (good / "bundle.json").write_text(
        json.dumps(
            {
                "format": 1,
                "name": "tiny",
                "version": "0.1",
                "kind": "wavenet",
                "sample_rate": 16000,
                "components": {},
            }
        )
    )
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "bundle.json").write_text("{not json")
    monkeypatch.setenv("AUDIOGEN_MODELS", str(tmp_path))
    assert main(["models", "list"]) == 0
    out = capsys.readouterr().out
    assert "tiny 0.1 (wavenet, 16000 Hz" in out
    assert "broken" in out and "unreadable" in out
    assert main(["models", "list", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {"tiny"} == {r["name"] for r in rows if "name" in r}


def test_devices_without_portaudio_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from audiogen_studio.audio import devices

    def no_portaudio() -> object:
        raise devices.AudioDeviceError("PortAudio library not found (install libportaudio2)")

    monkeypatch.setattr(devices, "list_devices", no_portaudio)
    assert main(["devices"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "PortAudio" in err


def test_demo_without_screenshot_writes_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("AUDIOGEN_MODELS", str(tmp_path / "none"))
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--no-screenshot"]) == 0
    printed = capsys.readouterr().out
    assert str(out) in printed
    summary = json.loads((out / "demo.json").read_text())
    edited = io.load(summary["edited"])
    assert edited.rate == 16000 and edited.frames == io.load(summary["prompt"]).frames
    assert summary["edited_loudness_lufs"] == pytest.approx(-20.0, abs=0.1)
    assert edited.samples[0, 0] == 0.0  # faded in from silence
    assert summary["models"] == []


def test_gui_without_display_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for var in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(sys, "platform", "linux")
    assert main(["gui"]) == 2
    assert "no display" in capsys.readouterr().err


def test_a_reader_that_goes_away_is_not_a_traceback(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``audiogen-studio models list | grep -q x``: the closed pipe ends the command quietly
    with the shell's SIGPIPE status."""
    import audiogen_studio.cli.commands as commands

    def closed_pipe(*args: object, **kwargs: object) -> None:
        raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr(commands, "_emit", closed_pipe)
    assert main(["models", "list"]) == 141
    assert "Traceback" not in capsys.readouterr().err


def test_the_cli_choices_name_every_aspect_and_context_slide() -> None:
    """The CLI spells its choices out (its modules import no engine at start-up); they must stay
    the engine's own lists."""
    import argparse

    from audiogen_studio.cli.main import build_parser
    from audiogen_studio.engine.api import ASPECTS, CONTEXT_SLIDES

    def option(command: list[str], flag: str) -> list[str]:
        parser: argparse.ArgumentParser = build_parser()
        for name in command:
            sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
            parser = sub.choices[name]
        (action,) = (a for a in parser._actions if flag in a.option_strings)
        return list(action.choices or [])

    assert option(["continue"], "--rank-by") == list(ASPECTS)
    assert option(["models", "card"], "--rank-by") == [*ASPECTS, "none"]
    assert option(["models", "card"], "--context-slide") == list(CONTEXT_SLIDES)
