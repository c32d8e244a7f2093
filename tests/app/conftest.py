"""Qt test fixtures: offscreen platform, isolated settings, a leak-checking window factory."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


@pytest.fixture(autouse=True)
def isolated_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep QSettings (recent files) and model search paths out of the user's real folders."""
    from PySide6.QtCore import QSettings

    QSettings.setDefaultFormat(QSettings.Format.IniFormat)
    QSettings.setPath(QSettings.Format.IniFormat, QSettings.Scope.UserScope, str(tmp_path / "qs"))
    monkeypatch.setenv("AUDIOGEN_MODELS", str(tmp_path / "no-models"))
    monkeypatch.setenv("AUDIOGEN_SHIPPED_MODELS", str(tmp_path / "no-shipped-models"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))


@pytest.fixture
def make_window(qtbot: object) -> Iterator[Callable[[], object]]:
    """Create main windows that are closed after the test; asserts none is left open."""
    from PySide6.QtWidgets import QApplication

    from audiogen_studio.app.main_window import MainWindow

    made: list[MainWindow] = []

    def factory() -> MainWindow:
        window = MainWindow(interactive=False)
        window.resize(1200, 800)
        qtbot.addWidget(window)  # type: ignore[attr-defined]
        made.append(window)
        return window

    yield factory
    for window in made:
        window.close()
    QApplication.processEvents()
    leaked = [w for w in QApplication.topLevelWidgets() if w.isVisible()]
    assert not leaked, f"windows left open: {leaked}"
