#!/usr/bin/env bash
# Sets everything up (scripts/setup.sh), then opens the app on a display; with no display, runs the headless demo and says where its output went.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
if [ -n "${DISPLAY:-}" ] || [ -n "${WAYLAND_DISPLAY:-}" ]; then
  unset QT_QPA_PLATFORM
  exec .venv/bin/audiogen-studio gui "$@"
fi
echo "[run] no display (DISPLAY/WAYLAND_DISPLAY unset): running the headless demo instead"
exec .venv/bin/audiogen-studio demo "$@"
