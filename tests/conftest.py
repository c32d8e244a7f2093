"""Test-wide setup: offscreen Qt, and (with AUDIOGEN_BLOCK_QT=1) a run where Qt cannot be imported.

The second mode proves the audio, models, engine, training and CLI layers work without PySide6,
as DESIGN.md §2 asks (the napari approach).
"""

from __future__ import annotations

import importlib.abc
import os
import sys

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

_BLOCKED = ("PySide6", "pyqtgraph", "shiboken6")


class _QtBlocker(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname: str, path: object, target: object = None) -> None:
        if fullname.split(".")[0] in _BLOCKED:
            raise ImportError(f"{fullname} is blocked: this test run proves the core needs no Qt")
        return None


if os.environ.get("AUDIOGEN_BLOCK_QT") == "1":
    for name in list(sys.modules):
        if name.split(".")[0] in _BLOCKED:
            del sys.modules[name]
    sys.meta_path.insert(0, _QtBlocker())
