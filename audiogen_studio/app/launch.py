"""Start the Qt application and the main window; optionally generate, render a screenshot, exit."""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

#: exit status when ``--generate`` could not start or failed (the screenshot is still written)
GENERATION_FAILED = 3
#: exit status when the screenshot could not be written
SCREENSHOT_FAILED = 2


@dataclass
class _Outcome:
    code: int = 0
    messages: list[str] = field(default_factory=list)


def launch(
    *,
    file: Path | None = None,
    screenshot: Path | None = None,
    after_seconds: float = 0.5,
    size: tuple[int, int] = (1400, 900),
    generate_seconds: float | None = None,
    model: str | None = None,
    engine: str | None = None,
    timeout_seconds: float = 600.0,
) -> int:
    """Open the main window (with ``file`` loaded) and run the event loop.

    With ``generate_seconds``, generation starts at once with ``engine`` / ``model`` (defaults:
    the panel's, i.e. the first engine with an installed model and its first model) from the
    selection or whole clip. With ``screenshot``, the window is rendered to that PNG
    ``after_seconds`` after the window is up, or after generation finished (or failed, or ran
    past ``timeout_seconds``), and the application exits; this works with the offscreen platform
    and under Xvfb. A screenshot run does not play audio. One summary line per generation is
    printed to stdout.

    Returns:
        The process exit status: 0 on success, :data:`SCREENSHOT_FAILED`, or
        :data:`GENERATION_FAILED` (unknown engine or model, nothing to continue, engine error,
        timeout).
    """
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication

    from audiogen_studio.app.main_window import MainWindow
    from audiogen_studio.app.panel_support import raise_dock, reveal

    app = QApplication.instance() or QApplication(sys.argv[:1])
    assert isinstance(app, QApplication)
    app.setApplicationName("AudioGen Studio")
    app.setOrganizationName("audiogen-studio")
    app.setDesktopFileName("audiogen-studio")
    window = MainWindow(interactive=screenshot is None)
    window.resize(*size)
    if file is not None:
        window.open_file(file)
    window.show()
    outcome = _Outcome()
    done = {"grabbed": False}

    def grab() -> None:
        if done["grabbed"] or screenshot is None:
            return
        done["grabbed"] = True
        window.refresh_views()
        app.processEvents()
        if generate_seconds is not None:  # show the progress and the live take in the panel
            reveal(window.generation_panel.live_view, margin=40)
            app.processEvents()
        screenshot.parent.mkdir(parents=True, exist_ok=True)
        if not window.grab().save(str(screenshot), "PNG"):
            log.error("could not write screenshot %s", screenshot)
            outcome.code = SCREENSHOT_FAILED
        window.close()
        app.quit()

    def grab_later() -> None:
        if screenshot is not None:
            QTimer.singleShot(max(0, int(after_seconds * 1000)), grab)

    def fail(message: str) -> None:
        print(f"generation failed: {message}", file=sys.stderr)
        outcome.messages.append(message)
        if outcome.code == 0:
            outcome.code = GENERATION_FAILED
        grab_later()

    if generate_seconds is None:
        grab_later()
    else:
        panel = window.generation_panel
        controller = window.generation

        def finished(result: object) -> None:
            from audiogen_studio.app.generation import GenerationResult

            if isinstance(result, GenerationResult):
                states = ", ".join("complete" if t.complete else "partial" for t in result.takes)
                print(
                    f"generated {len(result.takes)} take(s) ({states}): "
                    f"{result.seconds_done:.2f} s with {result.engine_name} on "
                    f"{result.device_used}, RTF {result.rtf:.3f}",
                    flush=True,
                )
            takes = getattr(window, "takes", None)
            takes_panel = getattr(window, "takes_panel", None)
            if takes_panel is not None and takes is not None and len(takes):
                takes_panel.select(takes[len(takes) - 1].id)
            grab_later()

        def start() -> None:
            if screenshot is not None:
                controller.worker.playback = False  # a screenshot run stays silent
            try:
                if engine is not None:
                    panel.set_engine(engine)
            except KeyError as exc:
                fail(str(exc.args[0]))
                return
            if model is not None and not panel.select_model(model, switch_engine=engine is None):
                fail(f"no {panel.engine.label} model named {model!r} is installed")
                return
            panel.seconds_spin.setValue(float(generate_seconds))
            raise_dock(panel)
            takes_panel = getattr(window, "takes_panel", None)
            if takes_panel is not None:
                raise_dock(takes_panel)
            controller.finished.connect(finished)
            controller.failed.connect(fail)
            if not panel.generate():
                controller.finished.disconnect(finished)
                controller.failed.disconnect(fail)
                fail(panel.status_label.text() or "generation did not start")

        def give_up() -> None:
            if not done["grabbed"] and controller.busy:
                controller.stop()
                fail(f"generation did not finish within {timeout_seconds:g} s")

        QTimer.singleShot(0, start)
        if screenshot is not None:
            QTimer.singleShot(max(1, int(timeout_seconds * 1000)), give_up)
    app.exec()
    window.deleteLater()
    app.processEvents()
    return outcome.code
