#!/usr/bin/env bash
# Sets up everything AudioGen Studio needs on Debian 12 (as root) or any machine with the
# packages already present: system packages, a virtual environment in .venv, the package in
# editable mode with its dev extra. Idempotent: a second run only checks and returns quickly.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(
  # Python 3.11 with venv (Debian 12's python3), the build tools some wheels need, make
  python3 python3-venv python3-dev build-essential make
  # audio I/O and the virtual test device (DESIGN.md §6)
  libportaudio2 libsndfile1 pulseaudio pulseaudio-utils libasound2-plugins
  # Qt's xcb platform plugin and a virtual X server for screenshots
  xvfb xauth libxcb-cursor0 libxkbcommon-x11-0 libxcb-icccm4 libxcb-image0 libxcb-keysyms1
  libxcb-randr0 libxcb-render-util0 libxcb-shape0 libxcb-xinerama0 libxcb-xfixes0 libxcb-xkb1
  libegl1 libgl1 libopengl0 libfontconfig1 libdbus-1-3 libglib2.0-0
  # corpus sources (DESIGN.md §5): speech synthesizers, recorded speech, music rendering
  espeak-ng flite festival festvox-kallpc16k festvox-us-slt-hts
  asterisk-core-sounds-en-wav asterisk-core-sounds-en
  sox fluidsynth fluid-soundfont-gm
  # Opus reference encoder for the codec evaluation (audiogen-studio eval codec)
  opus-tools
)

if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  missing=()
  for p in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "[setup] installing system packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
else
  echo "[setup] not root or no apt-get: assuming system packages are present (${APT_PACKAGES[*]})"
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "[setup] creating .venv"
  "$PY" -m venv .venv
fi
stamp=.venv/.installed-$(cat pyproject.toml | sha1sum | cut -c1-12)
if [ ! -f "$stamp" ]; then
  echo "[setup] installing audiogen_studio[dev,eval] into .venv"
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e ".[dev,eval]"
  rm -f .venv/.installed-*
  touch "$stamp"
fi
echo "[setup] ready: .venv/bin/audiogen-studio"
