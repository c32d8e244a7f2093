"""Desktop-app targets (issue 5), printed as one JSON object.

1. **Open**: a ``--minutes`` (default 60) 48 kHz stereo 16-bit WAV written to a temp dir is opened
   in the real main window (offscreen), once the window's start-up work (the compute-device
   probe that imports torch on the generation thread) has finished. Two times are reported:

   * ``open_until_drawn_seconds`` -- until both views show the whole file (waveform envelope and
     spectrogram data set, then the window rendered once). **This is the issue's target
     (<= 2 s).** A long file is drawn from its mapped 16-bit samples (``app.loading``) while
     its float32 clip is converted on a worker thread;
   * ``open_until_loaded_seconds`` -- until that clip is the window's document (editing and
     playback possible; no target). Without background opening both times are the same.

   ``gui_worst_stall_until_loaded_ms`` is how late a 5 ms GUI timer fired at worst meanwhile
   (``open_file`` itself included): the window's responsiveness while the file opens.

   Also the peak RSS growth of the process until loaded, against the raw float32 sample bytes
   the clip holds (target <= 4x). Runs in a fresh child process so that nothing else inflates
   its peak RSS.
2. **Generation**: the real window generates ``--seconds`` (default 10) of continuation with
   playback on while a 5 ms :class:`QTimer` probe measures how late the GUI event loop is.
   Reports the worst lateness (target <= 50 ms) from Generate until the player finished, the
   engine's real-time factor, and the player's underrun counters (target 0 when RTF < 1). The
   model is ``--model``, or two the benchmark trains itself: a tiny WaveNet (~10 s on one
   core; ``generation``) and one of the shipped ``default`` size trained for 2 steps only
   (untrained, but it costs what the real one costs per sample; ``generation_default_size``).
   A warm-up generation first loads the engine (its GUI stall is reported separately, as
   ``warmup_worst_stall_ms``). Playback needs an output device; without one the script starts
   the virtual PulseAudio device (``scripts/virtual-audio.sh``) and stops it again.
   ``first_chunk_ms`` is from Generate until the first chunk arrives in the GUI thread. For a
   model that adapts to the prompt (an AudioLM bundle with ``generation.adaptation``, such as
   ``--model models/speech``) ``new_prompt`` adds two more 2 s generations of new prompts:
   ``first_chunk_ms_cold`` when Generate is pressed as soon as the prompt is there (the
   adaptation runs first) and ``first_chunk_ms_prepared`` when the prompt had settled and the
   panel had prepared it (``prepare_seconds``) before Generate.

    .venv/bin/python benchmarks/app.py [--minutes 60] [--seconds 10] [--model BUNDLE]
                                       [--skip-open] [--skip-generation]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
VIRTUAL_AUDIO = ROOT / "scripts" / "virtual-audio.sh"
PROBE_MS = 5
TARGETS = {"open_seconds": 2.0, "open_rss_over_raw": 4.0, "worst_stall_ms": 50.0, "underruns": 0}


def _peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


# -- the long file ------------------------------------------------------------------------------


def write_long_wav(path: Path, minutes: float, rate: int) -> int:
    """A stereo 16-bit WAV of ``minutes`` (tone + noise, written in 10 s blocks); frames."""
    import soundfile as sf

    frames = int(minutes * 60 * rate)
    rng = np.random.default_rng(0)
    step = 10 * rate
    with sf.SoundFile(path, "w", samplerate=rate, channels=2, subtype="PCM_16") as f:
        for start in range(0, frames, step):
            t = np.arange(start, min(frames, start + step)) / rate
            block = 0.3 * np.sin(2 * np.pi * 220 * t) + 0.05 * rng.standard_normal(t.size)
            f.write(np.stack([block, 0.5 * block[::-1]], axis=1).astype(np.float32))
    return frames


def _qt_app() -> Any:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance() or QApplication([sys.argv[0]])
    app.setOrganizationName("audiogen-studio-bench")
    app.setApplicationName("AudioGen Studio benchmark")
    return app


def _window(app: Any) -> Any:
    from audiogen_studio.app.main_window import MainWindow

    window = MainWindow(interactive=False)
    window.resize(1400, 900)
    window.show()
    # let start-up work settle: the device probe (torch import on the generation thread, which
    # holds the GIL for seconds on a busy 2-core machine) and the first layout
    deadline = time.perf_counter() + 60
    while window.generation.compute_devices is None and time.perf_counter() < deadline:
        _run_for(app, 0.05)
    _run_for(app, 1.0)
    return window


def _run_for(app: Any, seconds: float) -> None:
    from PySide6.QtCore import QEventLoop, QTimer

    loop = QEventLoop()
    QTimer.singleShot(int(seconds * 1000), loop.quit)
    loop.exec()


def _views_drawn(window: Any) -> bool:
    wave, spec = window.waveform, window.spectrogram
    curves = getattr(wave, "_curves", [])
    if not curves:
        return False
    xs, _ = curves[0].getData()
    image = getattr(getattr(spec, "image", None), "image", None)
    return xs is not None and len(xs) > 0 and image is not None and image.size > 0


def child_open(path: Path) -> dict[str, Any]:
    """Open ``path`` in a fresh window; seconds until both views are drawn, peak RSS growth."""
    import soundfile as sf

    info = sf.info(str(path))
    raw = info.frames * info.channels * 4  # float32 samples as the clip holds them
    app = _qt_app()
    t0 = time.perf_counter()
    window = _window(app)
    startup = time.perf_counter() - t0
    base_rss, base_peak = _rss_bytes(), _peak_rss_bytes()
    probe = _Probe()  # how late a 5 ms GUI timer fires while the file opens
    probe.start()
    started = time.perf_counter()
    assert window.open_file(path), window.statusBar().currentMessage()
    returned = time.perf_counter()
    background = getattr(window, "opening", None) is not None
    deadline = started + 120
    while not _views_drawn(window) and time.perf_counter() < deadline:
        app.processEvents()
        time.sleep(0.001)
    drawn_ok = _views_drawn(window)
    window.grab()  # render the whole window once, views included
    drawn = time.perf_counter()
    while window.clip is None and time.perf_counter() < deadline:  # the float32 clip
        app.processEvents()
        time.sleep(0.001)
    loaded = time.perf_counter()
    probe.stop()
    probe.late_ms.append(1000 * (returned - started))  # open_file itself blocks the GUI
    clip = window.clip
    peak = _peak_rss_bytes()
    result = {
        "file": f"{info.duration / 60:.1f} min, {info.samplerate} Hz, {info.channels} ch, "
        f"{info.subtype}, {path.stat().st_size / 2**20:.0f} MiB on disk",
        "raw_sample_mib": round(raw / 2**20, 1),
        "views_drawn_from": "mapped 16-bit samples (float32 clip converted in the background)"
        if background
        else "the float32 clip (loaded before open_file returned)",
        "open_file_returned_seconds": round(returned - started, 3),
        "open_until_drawn_seconds": round(drawn - started, 3),
        "open_until_loaded_seconds": round(loaded - started, 3),
        "views_drawn": drawn_ok,
        "loaded": clip is not None and clip.frames == info.frames,
        "gui_worst_stall_until_loaded_ms": probe.stats()["worst_stall_ms"],
        "peak_rss_growth_mib": round((max(peak, base_peak) - base_rss) / 2**20, 1),
        "peak_rss_growth_over_raw": round((max(peak, base_peak) - base_rss) / raw, 2),
        "rss_before_open_mib": round(base_rss / 2**20, 1),
        "window_startup_seconds": round(startup, 2),
    }
    window.close()
    return result


# -- generation -----------------------------------------------------------------------------------


def train_wavenet_bundle(out: Path, config: str, steps: int) -> Path:
    """A WaveNet bundle of ``config`` trained ``steps`` steps on a two-tone signal.

    ``tiny`` with 300 steps is the test suite's recipe (it continues the tones); ``default``
    with 2 steps is untrained but costs exactly what the shipped size costs per sample, which
    is what the GUI-stall and underrun measurements need.
    """
    import torch

    from audiogen_studio.audio import io
    from audiogen_studio.audio.clip import Clip
    from audiogen_studio.training.wavenet_trainer import TrainOptions, train_wavenet

    torch.set_num_threads(1)
    (out / "data").mkdir(parents=True, exist_ok=True)
    t = np.arange(4 * 16000) / 16000
    x = 0.3 * np.sin(2 * np.pi * 440.0 * t) + 0.3 * np.sin(2 * np.pi * 1100.0 * t + 1.0)
    io.save(Clip(x.astype(np.float32), 16000), out / "data" / "two.wav", overwrite=True)
    options = TrainOptions(
        data=out / "data", out=out / "models" / config, config=config, steps=steps, batch=4,
        crop=1000 if config == "tiny" else 8192, lr=3e-3, val_every=0, save_every=0,
        progress=False, threads=1,
    )  # fmt: skip
    train_wavenet(options)
    return out / "models" / config


class _Probe:
    """A 5 ms timer in the GUI thread recording how late each tick fires."""

    def __init__(self) -> None:
        from PySide6.QtCore import Qt, QTimer

        self.timer = QTimer()
        self.timer.setTimerType(Qt.TimerType.PreciseTimer)
        self.timer.setInterval(PROBE_MS)
        self.timer.timeout.connect(self._tick)
        self.late_ms: list[float] = []
        self._last = 0.0

    def start(self) -> None:
        self.late_ms = []
        self._last = time.perf_counter()
        self.timer.start()

    def stop(self) -> None:
        self.timer.stop()

    def _tick(self) -> None:
        now = time.perf_counter()
        self.late_ms.append(max(0.0, 1000 * (now - self._last) - PROBE_MS))
        self._last = now

    def stats(self) -> dict[str, Any]:
        late = np.array(self.late_ms or [0.0])
        return {
            "worst_stall_ms": round(float(late.max()), 1),
            "p99_late_ms": round(float(np.percentile(late, 99)), 2),
            "median_late_ms": round(float(np.median(late)), 2),
            "ticks": len(self.late_ms),
            "stalls_over_50ms": int((late > 50).sum()),
        }


def _generate(app: Any, window: Any, seconds: float, probe: _Probe) -> dict[str, Any]:
    from PySide6.QtCore import QEventLoop, QTimer

    panel, controller = window.generation_panel, window.generation
    panel.seconds_spin.setValue(seconds)
    players: list[Any] = []
    results: list[Any] = []
    errors: list[str] = []

    def on_chunk(*_: Any) -> None:
        if not players and controller.worker.player is not None:
            players.append(controller.worker.player)

    loop = QEventLoop()

    def on_finished(result: Any) -> None:
        results.append(result)
        loop.quit()

    def on_failed(message: str) -> None:
        errors.append(message)
        loop.quit()

    firsts: list[float] = []

    def on_first(*_: Any) -> None:
        if not firsts:
            firsts.append(time.perf_counter())

    controller.chunk_ready.connect(on_chunk)
    controller.chunk_ready.connect(on_first)
    controller.finished.connect(on_finished)
    controller.failed.connect(on_failed)
    probe.start()
    started = time.perf_counter()
    if not panel.generate():
        raise SystemExit(f"generation did not start: {panel.status_label.text()}")
    QTimer.singleShot(int((seconds * 20 + 120) * 1000), loop.quit)
    loop.exec()
    generated = time.perf_counter()
    if players:  # wait (in the event loop) until the buffered audio has played
        poll = QTimer()
        poll.setInterval(20)

        def check() -> None:
            if players[0].finished.is_set():
                loop.quit()

        poll.timeout.connect(check)
        poll.start()
        QTimer.singleShot(int((seconds + 10) * 1000), loop.quit)
        loop.exec()
        poll.stop()
    ended = time.perf_counter()
    probe.stop()
    controller.chunk_ready.disconnect(on_chunk)
    controller.chunk_ready.disconnect(on_first)
    controller.finished.disconnect(on_finished)
    controller.failed.disconnect(on_failed)
    if errors or not results:
        raise SystemExit(f"generation failed: {errors or 'timeout'}")
    result = results[0]
    out: dict[str, Any] = {
        "seconds": seconds,
        "rtf": round(result.rtf, 3),
        "generate_wall_seconds": round(generated - started, 2),
        "first_chunk_ms": round(1000 * (firsts[0] - started), 1) if firsts else None,
        "until_played_seconds": round(ended - started, 2),
        "device_used": result.device_used,
        **probe.stats(),
    }
    if players:
        player = players[0]
        out["playback"] = {
            "played_frames": player.position,
            "finished": player.finished.is_set(),
            "underruns": player.underruns,
            "underrun_frames": player.underrun_frames,
            "rebuffers": player.rebuffers,
            "device_underflows": player.stream_underflows,
            "callback_errors": player.callback_errors,
        }
    else:
        out["playback"] = {"unavailable": panel.status_label.text()}
    return out


def child_generation(model: Path, seconds: float) -> dict[str, Any]:
    """Warm up, then generate ``seconds`` with playback while probing the event loop."""
    import torch

    from audiogen_studio.audio.clip import Clip

    torch.set_num_threads(1)
    app = _qt_app()
    window = _window(app)
    panel = window.generation_panel
    if not panel.select_model(str(model)):
        raise SystemExit(f"{model}: not a continuation model bundle the panel can use")

    def two_tone(low: float) -> Clip:
        t = np.arange(2 * 16000) / 16000
        x = 0.3 * np.sin(2 * np.pi * low * t) + 0.3 * np.sin(2 * np.pi * 2.5 * low * t + 1.0)
        return Clip(x.astype(np.float32), 16000)

    window.set_clip(two_tone(440.0))
    _run_for(app, 0.5)  # the clip's first draw is not part of the generation's stall
    probe = _Probe()
    warm = _generate(app, window, 0.5, probe)
    measured = _generate(app, window, seconds, probe)
    measured["model"] = str(model)
    measured["warmup_worst_stall_ms"] = warm["worst_stall_ms"]
    if panel.adapt_spin.isEnabled() and panel.adapt_spin.value() > 0:
        measured["new_prompt"] = _new_prompts(app, window, two_tone, probe)
    window.close()
    return measured


def _new_prompts(app: Any, window: Any, make: Any, probe: _Probe) -> dict[str, Any]:
    """First-chunk times of 2 s generations of new prompts: Generate at once (the adaptation
    runs first), and Generate after the panel prepared the settled prompt."""
    from PySide6.QtCore import QEventLoop, QTimer

    panel = window.generation_panel
    out: dict[str, Any] = {"adapt_steps": panel.adapt_spin.value()}
    window.set_clip(make(330.0))
    out["first_chunk_ms_cold"] = _generate(app, window, 2.0, probe)["first_chunk_ms"]
    reports: list[Any] = []
    loop = QEventLoop()

    def on_prepared(report: Any) -> None:
        if report.request.prompt is window.clip:  # not a late one for the previous prompt
            reports.append(report)
            loop.quit()

    window.generation.prepared.connect(on_prepared)
    window.set_clip(make(262.0))
    QTimer.singleShot(60_000, loop.quit)
    loop.exec()
    window.generation.prepared.disconnect(on_prepared)
    if not reports or not reports[0].ready:
        out["prepare_failed"] = reports[0].message if reports else "timeout"
        return out
    out["prepare_seconds"] = round(reports[0].seconds, 3)
    out["first_chunk_ms_prepared"] = _generate(app, window, 2.0, probe)["first_chunk_ms"]
    return out


# -- driver ---------------------------------------------------------------------------------------


def _child(args: list[str], env: dict[str, str] | None = None) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), *args],
        capture_output=True, text=True, env=env, timeout=1800, check=False,
    )  # fmt: skip
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        return {"error": (proc.stderr or proc.stdout).strip()[-1500:]}
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def _output_device_env() -> tuple[dict[str, str], str, bool]:
    """Environment with a usable output device: ``(env, device, started_virtual_audio)``."""
    from audiogen_studio.audio import devices
    from audiogen_studio.audio.errors import AudioDeviceError

    env = dict(os.environ)
    try:
        return env, devices.default_output_device().name, False
    except AudioDeviceError as exc:
        reason = str(exc)
    if not VIRTUAL_AUDIO.exists() or not sys.platform.startswith("linux"):
        return env, f"none ({reason})", False
    up = subprocess.run([str(VIRTUAL_AUDIO), "status"], capture_output=True, check=False)
    started = subprocess.run(
        [str(VIRTUAL_AUDIO), "start"], capture_output=True, text=True, timeout=60, check=False
    )
    if started.returncode != 0:
        return env, f"none ({reason}; virtual audio failed: {started.stderr[-300:]})", False
    for line in started.stdout.splitlines():
        if line.startswith("export ") and "=" in line:
            key, _, value = line.removeprefix("export ").partition("=")
            env[key] = value
    return env, "virtual PulseAudio null sink (scripts/virtual-audio.sh)", up.returncode != 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--minutes", type=float, default=60.0)
    parser.add_argument("--rate", type=int, default=48000)
    parser.add_argument("--seconds", type=float, default=10.0, help="generation length")
    parser.add_argument("--model", type=Path, default=None, help="WaveNet continuation bundle")
    parser.add_argument("--skip-open", action="store_true")
    parser.add_argument("--skip-generation", action="store_true")
    parser.add_argument("--child-open", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--child-generation", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_open:
        print(json.dumps(child_open(args.child_open)))
        return
    if args.child_generation:
        print(json.dumps(child_generation(args.child_generation, args.seconds)))
        return

    result: dict[str, Any] = {
        "benchmark": "app",
        "machine": f"{platform.machine()}, {os.cpu_count()} cpus, Python "
        f"{platform.python_version()}, Qt platform "
        f"{os.environ.get('QT_QPA_PLATFORM', 'offscreen')}",
        "targets": TARGETS,
    }
    with tempfile.TemporaryDirectory(prefix="agstudio-bench-") as tmp:
        root = Path(tmp)
        if not args.skip_open:
            path = root / "long.wav"
            t0 = time.perf_counter()
            write_long_wav(path, args.minutes, args.rate)
            result["open"] = {"write_seconds": round(time.perf_counter() - t0, 1)}
            result["open"].update(_child(["--child-open", str(path)]))
            path.unlink()
            # the machine's floor: allocating and first touching as many bytes as the clip holds
            # (page faults dominate on some VMs), with numpy's memory (transparent huge pages
            # advised: compaction stalls where free memory is fragmented) and with the 4 KiB
            # pages of the anonymous map io.new_samples gives long clips
            from audiogen_studio.audio.io import new_samples

            count = int(args.minutes * 60 * args.rate)
            t0 = time.perf_counter()
            floor = np.ones(count * 2, np.float32)
            result["open"]["first_touch_of_raw_bytes_seconds"] = round(time.perf_counter() - t0, 3)
            del floor
            t0 = time.perf_counter()
            floor = new_samples(2, count)
            floor.fill(1.0)
            seconds = round(time.perf_counter() - t0, 3)
            result["open"]["first_touch_of_raw_bytes_4k_pages_seconds"] = seconds
            del floor
        if not args.skip_generation:
            models: list[tuple[str, Path | None]] = (
                [("generation", args.model)]
                if args.model is not None
                else [("generation", None), ("generation_default_size", None)]
            )
            env, device, started = _output_device_env()
            try:
                for key, model in models:
                    gen: dict[str, Any] = {"output_device": device}
                    if model is None:
                        config, steps = ("tiny", 300) if key == "generation" else ("default", 2)
                        t0 = time.perf_counter()
                        model = train_wavenet_bundle(root / config, config, steps)
                        gen["model_config"] = f"{config}, {steps} training steps"
                        gen["train_seconds"] = round(time.perf_counter() - t0, 1)
                    gen.update(
                        _child(
                            ["--child-generation", str(model), "--seconds", str(args.seconds)],
                            env,
                        )
                    )
                    result[key] = gen
            finally:
                if started:
                    subprocess.run([str(VIRTUAL_AUDIO), "stop"], capture_output=True, check=False)
    opened = result.get("open", {})
    met: dict[str, bool | None] = {}
    if "open_until_drawn_seconds" in opened:
        met["open_seconds"] = opened["open_until_drawn_seconds"] <= TARGETS["open_seconds"]
        met["open_rss_over_raw"] = (
            opened["peak_rss_growth_over_raw"] <= TARGETS["open_rss_over_raw"]
        )
    for key in ("generation", "generation_default_size"):
        gen = result.get(key, {})
        if "worst_stall_ms" in gen:
            met[f"{key}.worst_stall_ms"] = gen["worst_stall_ms"] <= TARGETS["worst_stall_ms"]
            underruns = gen.get("playback", {}).get("underruns")
            faster = gen["rtf"] < 1.0
            met[f"{key}.underruns"] = None if underruns is None or not faster else underruns == 0
    result["targets_met"] = met
    print(json.dumps(result))


if __name__ == "__main__":
    main()
