"""``audiogen-studio gui FILE --screenshot PNG --generate SECONDS``: the real window, rendered
offscreen after a tiny WaveNet generated SECONDS from FILE (and the error paths)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtGui import QImage

from audiogen_studio.app.views import WAVE_COLOR
from audiogen_studio.audio import io
from audiogen_studio.audio.clip import Clip
from audiogen_studio.cli.main import main

RATE = 16000


@pytest.fixture
def prompt_file(tmp_path: Path) -> Path:
    t = np.arange(RATE // 2) / RATE
    x = 0.3 * np.sin(2 * np.pi * 440.0 * t) + 0.3 * np.sin(2 * np.pi * 1100.0 * t + 1.0)
    return io.save(Clip(x.astype(np.float32), RATE), tmp_path / "prompt.wav")


@pytest.fixture
def models_env(tiny_wavenet_models: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("AUDIOGEN_MODELS", str(tiny_wavenet_models))
    empty = tiny_wavenet_models.parent / "no-shipped-models"
    empty.mkdir(exist_ok=True)
    monkeypatch.setenv("AUDIOGEN_SHIPPED_MODELS", str(empty))  # only the tiny test models
    return tiny_wavenet_models


def wave_pixels(png: Path) -> int:
    """Pixels drawn in the waveform colour (both the editor's view and the live take view)."""
    image = QImage(str(png)).convertToFormat(QImage.Format.Format_RGB32)
    ptr = image.constBits()
    rgb = np.frombuffer(ptr, np.uint8).reshape(image.height(), image.width(), 4)[..., 2::-1]
    return int(np.all(np.abs(rgb.astype(int) - WAVE_COLOR) <= 8, axis=-1).sum())


def run_gui(*args: str) -> subprocess.CompletedProcess[str]:
    """``audiogen-studio gui ...`` in its own process, as a user runs it (a screenshot run ends
    with ``QApplication.quit()``, which must not leak into the test process's event loop)."""
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    return subprocess.run(
        [sys.executable, "-m", "audiogen_studio", "gui", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=240,
        check=False,
    )


def test_screenshot_after_generating(models_env: Path, prompt_file: Path, tmp_path: Path) -> None:
    plain, generated = tmp_path / "plain.png", tmp_path / "generated.png"
    args = [str(prompt_file), "--size", "1200x800", "--after", "0.1", "--screenshot"]
    first = run_gui(*args, str(plain))
    assert first.returncode == 0, first.stderr
    second = run_gui(*args, str(generated), "--generate", "0.5", "--model", "tiny")
    assert second.returncode == 0, second.stderr
    assert "generated 1 take(s) (complete): 0.50 s with tiny 1.0.0 on cpu, RTF" in second.stdout
    for png in (plain, generated):
        image = QImage(str(png))
        assert (image.width(), image.height()) == (1200, 800)
    # the generated continuation is drawn: the live take view is full of waveform
    assert wave_pixels(generated) > wave_pixels(plain) + 2000


def test_generate_errors(
    models_env: Path, prompt_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    png = tmp_path / "shot.png"
    assert main(["gui", "--screenshot", str(png), "--generate", "1"]) == 2
    assert "--generate needs FILE" in capsys.readouterr().err
    assert main(["gui", str(prompt_file), "--screenshot", str(png), "--model", "tiny"]) == 2
    assert "only apply with --generate" in capsys.readouterr().err
    shot = ["gui", str(prompt_file), "--screenshot", str(png), "--generate", "1"]
    assert main([*shot, "--model", "nope"]) == 2
    assert "no model bundle named 'nope'" in capsys.readouterr().err
    assert main([*shot, "--generate", "0"]) == 2
    # an engine with no installed model: the window still renders, the status is 3
    result = run_gui(*shot[1:], "--engine", "audiolm", "--after", "0")
    assert result.returncode == 3, result.stderr
    assert "No model installed for AudioLM continuation" in result.stderr
    assert QImage(str(png)).width() == 1400
