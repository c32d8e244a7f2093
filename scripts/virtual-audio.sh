#!/usr/bin/env bash
# A virtual audio device for tests and headless machines (DESIGN.md §6): a PulseAudio daemon with
# a null sink (output, "agstudio_null") and a 440 Hz sine source (input, "agstudio_sine"), both
# the server's defaults. PortAudio reaches it through ALSA's pulse plugin (libasound2-plugins):
# the ALSA devices "pulse" and "default" route to this server while it runs.
#
# Usage:
#   scripts/virtual-audio.sh [start]   start (idempotent); prints the exports below on stdout
#   scripts/virtual-audio.sh stop      stop what `start` started
#   scripts/virtual-audio.sh status    exit 0 and print the server string when the device is up
#   scripts/virtual-audio.sh env       print the exports for a running server
#
#   eval "$(scripts/virtual-audio.sh)"   # start, then export PULSE_SERVER, PULSE_SINK, PULSE_SOURCE
#
# Clients of the same user find the server without PULSE_SERVER (libpulse looks in the runtime
# directory); the export helps clients with another HOME or XDG_RUNTIME_DIR. When this script
# starts the server, the virtual sink and source are its defaults; when a server was already
# running (a desktop session), its defaults are left alone and PULSE_SINK / PULSE_SOURCE (which
# libpulse, hence ALSA's pulse plugin, hence PortAudio, honours) route a client to ours. The socket accepts
# anonymous clients (auth-anonymous=1) for the same reason; it lives in a 0700 directory.
#
# Works as root: the daemon is started per-user (--system=false) and only warns that it is meant
# for non-root users. One low-latency `pacat` client keeps playing silence into the null sink,
# otherwise each new stream waits ~1 s for the idle sink to wake up. Needs the apt packages
# pulseaudio pulseaudio-utils libasound2-plugins libportaudio2 (scripts/setup.sh installs them).
#
# Note: module-sine-source has a fixed 2 s latency: a recording client gets ~2 s of sine at
# once when it starts, then one 2 s block every 2 s (and stopping an input stream may wait for
# the next block). Fine for checking pitch and levels, not for timing tests of input.
#
# Environment: AGSTUDIO_AUDIO_RATE (default 48000), AGSTUDIO_SINE_HZ (default 440).
set -euo pipefail

SINK=agstudio_null
SOURCE=agstudio_sine
RATE=${AGSTUDIO_AUDIO_RATE:-48000}
SINE_HZ=${AGSTUDIO_SINE_HZ:-440}
STATE_DIR=${TMPDIR:-/tmp}/agstudio-virtual-audio-$(id -u)
PACAT_PID_FILE=$STATE_DIR/pacat.pid
STARTED_FILE=$STATE_DIR/started-daemon
MODULES_FILE=$STATE_DIR/loaded-modules
LOG_FILE=$STATE_DIR/pulseaudio.log

log() { echo "[virtual-audio] $*" >&2; }
die() { log "error: $*"; exit 1; }

need() {
  command -v "$1" >/dev/null 2>&1 ||
    die "'$1' not found (install: apt-get install pulseaudio pulseaudio-utils libasound2-plugins)"
}

# pactl with a timeout: a wedged server must not hang the caller.
pa() { timeout 5 pactl "$@"; }

server_up() { pa info >/dev/null 2>&1; }

server_string() { pa info 2>/dev/null | sed -n 's/^Server String: //p'; }

print_env() {
  local s
  s=$(server_string)
  [ -n "$s" ] || die "no PulseAudio server answers"
  case "$s" in
    /*) s="unix:$s" ;;
  esac
  echo "export PULSE_SERVER=$s"
  echo "export PULSE_SINK=$SINK"
  echo "export PULSE_SOURCE=$SOURCE"
}

pacat_alive() {
  [ -f "$PACAT_PID_FILE" ] || return 1
  local pid
  pid=$(cat "$PACAT_PID_FILE")
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null &&
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q '^pacat '
}

# The daemon's pid, from the pid file next to its socket.
server_pid() {
  local s
  s=$(server_string)
  s=${s#unix:}
  [ -n "$s" ] && cat "$(dirname "$s")/pid" 2>/dev/null
}

# True when the server that answers is the one this script started.
started_by_us() {
  [ -f "$STARTED_FILE" ] && [ "$(cat "$STARTED_FILE")" = "$(server_pid)" ]
}

has_sink() { pa list short sinks 2>/dev/null | awk '{print $2}' | grep -qx "$SINK"; }
has_source() { pa list short sources 2>/dev/null | awk '{print $2}' | grep -qx "$SOURCE"; }

start() {
  need pulseaudio
  need pactl
  need pacat
  mkdir -p "$STATE_DIR"
  chmod 700 "$STATE_DIR"

  if server_up; then
    log "a PulseAudio server already answers: $(server_string)"
  else
    log "starting PulseAudio (log: $LOG_FILE)"
    rm -f "$MODULES_FILE"
    # -n: no default.pa, only the modules named here. --exit-idle-time=-1: never exit when idle.
    pulseaudio -n --daemonize=yes --exit-idle-time=-1 --system=false \
      --log-target="file:$LOG_FILE" \
      -L "module-native-protocol-unix auth-anonymous=1" \
      -L "module-null-sink sink_name=$SINK rate=$RATE channels=2 \
sink_properties=device.description=AudioGen-Studio-null-sink" \
      -L "module-sine-source source_name=$SOURCE frequency=$SINE_HZ rate=$RATE" \
      2>>"$LOG_FILE" || {
      tail -n 20 "$LOG_FILE" >&2 || true
      die "pulseaudio failed to start"
    }
    for _ in $(seq 50); do
      server_up && break
      sleep 0.1
    done
    server_up || {
      tail -n 20 "$LOG_FILE" >&2 || true
      die "pulseaudio started but does not answer"
    }
    server_pid >"$STARTED_FILE"
  fi

  # A server we did not start (or a restart) may lack our devices: load them into it.
  if ! has_sink; then
    pa load-module module-null-sink "sink_name=$SINK" "rate=$RATE" channels=2 \
      "sink_properties=device.description=AudioGen-Studio-null-sink" >>"$MODULES_FILE"
  fi
  if ! has_source; then
    pa load-module module-sine-source "source_name=$SOURCE" "frequency=$SINE_HZ" "rate=$RATE" \
      >>"$MODULES_FILE"
  fi
  if started_by_us; then
    # Our own server: make the virtual devices its defaults. A server we did not start (a
    # desktop session) keeps its defaults; clients pick ours with PULSE_SINK / PULSE_SOURCE.
    pa set-default-sink "$SINK"
    pa set-default-source "$SOURCE"
  fi

  if pacat_alive; then
    log "keep-alive pacat already running (pid $(cat "$PACAT_PID_FILE"))"
  else
    # Raw zeros at low latency into the null sink; setsid detaches it from our session.
    setsid pacat --playback --raw --device="$SINK" --format=s16le --rate="$RATE" --channels=2 \
      --latency-msec=20 --client-name=agstudio-keepalive </dev/zero >/dev/null 2>>"$LOG_FILE" &
    echo $! >"$PACAT_PID_FILE"
    sleep 0.2
    pacat_alive || die "keep-alive pacat exited at once (see $LOG_FILE)"
    log "keep-alive pacat started (pid $(cat "$PACAT_PID_FILE"))"
    # A freshly started sink still sleeps in its idle 2 s cycle: wait until its monitor
    # delivers 0.1 s of audio at low latency, so that the caller's first stream does not stall.
    t0=$(date +%s%N)
    timeout 5 parec --raw --latency-msec=20 --device="$SINK.monitor" 2>/dev/null |
      head -c $((RATE * 4 / 10)) >/dev/null || true
    log "sink settled in $((($(date +%s%N) - t0) / 1000000)) ms"
  fi
  log "ready: sink $SINK, source $SOURCE (${SINE_HZ} Hz), ${RATE} Hz"
  print_env
}

stop() {
  if pacat_alive; then
    kill "$(cat "$PACAT_PID_FILE")" 2>/dev/null || true
    log "stopped keep-alive pacat"
  fi
  rm -f "$PACAT_PID_FILE"
  if started_by_us; then
    kill "$(server_pid)" 2>/dev/null || true
    for _ in $(seq 50); do
      server_up || break
      sleep 0.1
    done
    rm -f "$STARTED_FILE" "$MODULES_FILE"
    log "stopped PulseAudio"
  elif [ -s "$MODULES_FILE" ] && server_up; then
    # We only added modules to someone else's server: unload just those.
    while read -r idx; do
      pa unload-module "$idx" 2>/dev/null || true
    done <"$MODULES_FILE"
    rm -f "$MODULES_FILE"
    log "unloaded our modules from the existing server"
  else
    log "nothing to stop"
  fi
}

status() {
  if server_up && has_sink && has_source; then
    echo "up: $(server_string) sink=$SINK source=$SOURCE keepalive=$(pacat_alive && echo yes || echo no)"
  else
    echo "down"
    return 1
  fi
}

case "${1:-start}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  env) print_env ;;
  *)
    echo "usage: $0 [start|stop|status|env]" >&2
    exit 2
    ;;
esac
