"""File ▸ Export Audio: the format dialog and the export itself (through ``audio.io.save``).

Formats: WAV 16-bit / 24-bit / 32-bit float, FLAC 16-bit / 24-bit, OGG Vorbis at a quality of
0–10 (as in Audacity; mapped to libsndfile's 0–1 compression setting). Integer formats clip
samples beyond full scale (``audio.io.save`` does it); no dither is applied. "Selected audio
only" exports the selection instead of the whole clip.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from audiogen_studio.audio import io
from audiogen_studio.audio.clip import Clip

FormatKey = Literal["wav", "flac", "ogg"]


@dataclass(frozen=True, slots=True)
class ExportFormat:
    """One container the dialog offers, with its encodings ``(label, libsndfile subtype)``."""

    key: FormatKey
    label: str
    extension: str
    encodings: tuple[tuple[str, str], ...]


FORMATS: dict[FormatKey, ExportFormat] = {
    "wav": ExportFormat(
        "wav",
        "WAV",
        ".wav",
        (("16-bit PCM", "PCM_16"), ("24-bit PCM", "PCM_24"), ("32-bit float", "FLOAT")),
    ),
    "flac": ExportFormat("flac", "FLAC", ".flac", (("16-bit", "PCM_16"), ("24-bit", "PCM_24"))),
    "ogg": ExportFormat("ogg", "OGG Vorbis", ".ogg", (("Vorbis", "VORBIS"),)),
}


@dataclass(frozen=True, slots=True)
class ExportOptions:
    """What to write.

    Attributes:
        format: ``"wav"``, ``"flac"`` or ``"ogg"``.
        subtype: libsndfile subtype (one of the format's encodings).
        quality: OGG Vorbis quality 0–10 (ignored for other formats).
        selection_only: export only the selected range.
    """

    format: FormatKey = "wav"
    subtype: str = "PCM_24"
    quality: int = 5
    selection_only: bool = False

    def __post_init__(self) -> None:
        if self.format not in FORMATS:
            raise ValueError(f"unknown export format {self.format!r}")
        subtypes = [s for _, s in FORMATS[self.format].encodings]
        if self.subtype not in subtypes:
            raise ValueError(f"{self.format} cannot be written as {self.subtype}: use {subtypes}")
        if not 0 <= self.quality <= 10:
            raise ValueError(f"quality must be 0–10, got {self.quality}")

    @property
    def extension(self) -> str:
        """The file extension of the format (``.wav``, ``.flac``, ``.ogg``)."""
        return FORMATS[self.format].extension

    def path_for(self, path: str | Path) -> Path:
        """``path`` with the format's extension (replacing another audio extension)."""
        p = Path(path)
        if p.suffix.lower() == self.extension:
            return p
        if p.suffix.lower() in (".wav", ".flac", ".ogg", ".oga"):
            return p.with_suffix(self.extension)
        return p.with_name(p.name + self.extension)

    @property
    def file_filter(self) -> str:
        """A QFileDialog name filter for the format."""
        fmt = FORMATS[self.format]
        return f"{fmt.label} (*{fmt.extension})"


def export_clip(clip: Clip, path: str | Path, options: ExportOptions) -> Path:
    """Write ``clip`` to ``path`` (extension fixed to the format), replacing an existing file.

    Raises:
        AudioFileError: the file cannot be written.
    """
    quality = options.quality / 10.0 if options.format == "ogg" else None
    return io.save(
        clip, options.path_for(path), overwrite=True, subtype=options.subtype, ogg_quality=quality
    )


class ExportDialog(QDialog):
    """Format, encoding, quality and "selected audio only" for File ▸ Export Audio."""

    def __init__(
        self,
        parent: QWidget | None = None,
        *,
        options: ExportOptions | None = None,
        has_selection: bool = False,
    ) -> None:
        super().__init__(parent)
        self.setWindowTitle("Export Audio")
        self.format_combo = QComboBox()
        for fmt in FORMATS.values():
            self.format_combo.addItem(fmt.label, fmt.key)
        self.encoding_combo = QComboBox()
        self.quality_spin = QSpinBox(minimum=0, maximum=10, value=5)
        self.quality_spin.setToolTip("Vorbis quality: 0 smallest … 10 best")
        self.selection_check = QCheckBox("Selected audio only")
        self.selection_check.setEnabled(has_selection)
        buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel
        )
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        form = QFormLayout()
        form.addRow("Format", self.format_combo)
        form.addRow("Encoding", self.encoding_combo)
        form.addRow("Quality", self.quality_spin)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.selection_check)
        layout.addWidget(buttons)
        self.format_combo.currentIndexChanged.connect(lambda _: self._fill_encodings())
        self.set_options(options or ExportOptions())
        self.selection_check.setChecked(has_selection and bool(options and options.selection_only))

    def _fill_encodings(self, subtype: str | None = None) -> None:
        fmt = FORMATS[self.format_combo.currentData()]
        current = subtype or self.encoding_combo.currentData()
        self.encoding_combo.clear()
        for label, sub in fmt.encodings:
            self.encoding_combo.addItem(label, sub)
        index = self.encoding_combo.findData(current)
        default = next((i for i, (_, s) in enumerate(fmt.encodings) if s == "PCM_24"), 0)
        self.encoding_combo.setCurrentIndex(index if index >= 0 else default)
        self.quality_spin.setEnabled(fmt.key == "ogg")

    def set_options(self, options: ExportOptions) -> None:
        """Show ``options`` in the widgets."""
        self.format_combo.blockSignals(True)
        self.format_combo.setCurrentIndex(self.format_combo.findData(options.format))
        self.format_combo.blockSignals(False)
        self._fill_encodings(options.subtype)
        self.quality_spin.setValue(options.quality)
        if self.selection_check.isEnabled():
            self.selection_check.setChecked(options.selection_only)

    def options(self) -> ExportOptions:
        """The options chosen in the widgets."""
        return ExportOptions(
            format=self.format_combo.currentData(),
            subtype=str(self.encoding_combo.currentData()),
            quality=self.quality_spin.value(),
            selection_only=self.selection_check.isEnabled() and self.selection_check.isChecked(),
        )
