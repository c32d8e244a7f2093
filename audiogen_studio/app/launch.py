"""Start the Qt application and the main window; optionally render a screenshot and exit."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

log = logging.getLogger(__name__)


def launch(
    *,
    file: Path | None = None,
    screenshot: Path | None = None,
    after_seconds: float = 0.5,
    size: tuple[int, int] = (1400, 900),
) -> int:
    """Open the main window (with ``file`` loaded) and run the event loop.

    With ``screenshot``, the window is rendered to that PNG after ``after_seconds`` and the
    application exits; this works with the offscreen platform and under Xvfb.

    Returns:
        The process exit status (0 on success; 2 when the screenshot could not be written).
    """
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication

    from audiogen_studio.app.main_window import MainWindow

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
    status = {"code": 0}
    if screenshot is not None:

        def grab() -> None:
            window.refresh_views()
            app.processEvents()
            screenshot.parent.mkdir(parents=True, exist_ok=True)
            if not window.grab().save(str(screenshot), "PNG"):
                log.error("could not write screenshot %s", screenshot)
                status["code"] = 2
            window.close()
            app.quit()

        QTimer.singleShot(max(0, int(after_seconds * 1000)), grab)
    app.exec()
    window.deleteLater()
    app.processEvents()
    return status["code"]
