#!/usr/bin/env bash
# Sets everything up (scripts/setup.sh), then the full check: lint, types, layer contracts, the test
# suite (the app's, the real virtual audio device's and the slow tests with Qt; all others with
# PySide6 blocked, once each), and a screenshot under Xvfb.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
export QT_QPA_PLATFORM=offscreen
export AUDIOGEN_REQUIRE_AUDIO_DEVICE=1   # CI must never skip the real device tests
export PYTHONDONTWRITEBYTECODE=1

echo "== ruff";            .venv/bin/ruff check audiogen_studio tests benchmarks
                           .venv/bin/ruff format --check audiogen_studio tests benchmarks
echo "== mypy";            .venv/bin/mypy
echo "== import-linter";   .venv/bin/lint-imports
echo "== virtual audio";   ./scripts/virtual-audio.sh start
# Every test runs once: the Qt app's tests, the real-device tests and the slow training tests
# with PySide6 importable; all the others (engine, models, audio, training, CLI, library,
# evaluation) with PySide6 blocked, which proves that the core needs no Qt.
echo "== pytest: the Qt app (tests/app)"
.venv/bin/python -m pytest "$@" tests/app
echo "== pytest: the real audio device and the slow training tests"
.venv/bin/python -m pytest "$@" --ignore=tests/app -m "device or slow" tests
echo "== pytest without Qt: everything else, with PySide6 blocked (AUDIOGEN_BLOCK_QT=1)"
AUDIOGEN_BLOCK_QT=1 .venv/bin/python -m pytest "$@" -p no:pytest-qt --ignore=tests/app \
  -m "not device and not slow" tests
echo "== screenshot under Xvfb"
mkdir -p build
.venv/bin/audiogen-studio demo --out build/demo --no-screenshot >/dev/null
xvfb-run -a -s "-screen 0 1600x1000x24" env QT_QPA_PLATFORM=xcb \
  .venv/bin/audiogen-studio gui build/demo/prompt.wav --screenshot build/screenshot.png
echo "screenshot: build/screenshot.png"
