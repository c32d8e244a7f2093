#!/usr/bin/env bash
# Sets everything up (scripts/setup.sh), then the full check: lint, types, layer contracts, the test suite (with the real virtual audio
# device), the non-Qt tests once more without PySide6 importable, and a screenshot under Xvfb.
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
echo "== pytest";          .venv/bin/python -m pytest "$@"
echo "== pytest without Qt (engine, models, audio, training and CLI must not need PySide6;"
echo "   the slow training tests import nothing the others do not, so they run once, above)"
AUDIOGEN_BLOCK_QT=1 .venv/bin/python -m pytest -q -p no:pytest-qt --ignore=tests/app \
  -m "not device and not slow" tests
echo "== screenshot under Xvfb"
mkdir -p build
.venv/bin/audiogen-studio demo --out build/demo --no-screenshot >/dev/null
xvfb-run -a -s "-screen 0 1600x1000x24" env QT_QPA_PLATFORM=xcb \
  .venv/bin/audiogen-studio gui build/demo/prompt.wav --screenshot build/screenshot.png
echo "screenshot: build/screenshot.png"
