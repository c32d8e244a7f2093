"""``audiogen-studio demo [--out DIR]``: a headless tour of what the installed app can do.

Runs without a display: synthesizes a prompt clip, runs it through the audio core (loudness
normalization, fades, file round trips), lists the installed model bundles, and renders the real
app window offscreen to a PNG. It prints where everything went. Generation joins the tour as soon
as model bundles are installed (``audiogen-studio models list``).
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import platformdirs


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``demo`` command."""
    p = sub.add_parser("demo", help="headless demo: writes example audio and a screenshot")
    p.add_argument(
        "--out",
        default=None,
        help="output folder (default: the user data folder's demo/)",
    )
    p.add_argument("--no-screenshot", action="store_true", help="skip the offscreen window render")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Write the demo files and print their paths."""
    from audiogen_studio.audio import edit, io, synth
    from audiogen_studio.engine import bundles

    out = Path(args.out or Path(platformdirs.user_data_dir("audiogen-studio")) / "demo")
    out.mkdir(parents=True, exist_ok=True)
    prompt = synth.riff(repeats=2, rate=16000, seed=7)
    prompt_path = io.save(prompt, out / "prompt.wav", overwrite=True)
    loud = edit.normalize_loudness(prompt, target_lufs=-20.0)
    faded = edit.fade_out(edit.fade_in(loud, frames=prompt.rate // 50), frames=prompt.rate // 4)
    edited_path = io.save(faded, out / "prompt-edited.flac", overwrite=True)
    summary = {
        "prompt": str(prompt_path),
        "prompt_loudness_lufs": round(edit.integrated_loudness(prompt), 2),
        "edited": str(edited_path),
        "edited_loudness_lufs": round(edit.integrated_loudness(faded), 2),
        "models": [f"{b.name} ({b.kind})" for b in bundles.list_bundles()],
    }
    if not args.no_screenshot:
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
        from audiogen_studio.app.launch import launch

        shot = out / "window.png"
        launch(file=edited_path, screenshot=shot, after_seconds=0.3, size=(1400, 900))
        summary["screenshot"] = str(shot)
    (out / "demo.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    print(f"AudioGen Studio demo: output in {out}")
    for key, value in summary.items():
        print(f"  {key}: {value}")
    if not summary["models"]:
        print(
            "  (no model bundles installed yet, so the demo does not generate; the app opens empty)"
        )
    return 0
