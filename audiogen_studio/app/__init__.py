"""Desktop app (PySide6 + pyqtgraph): the only layer that imports Qt."""
