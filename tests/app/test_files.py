"""Files: export in each format and read it back, the export dialog, unsaved-changes prompts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from editor_support import make_clip, new_window, same_bits
from PySide6.QtCore import QMimeData, QPointF, Qt, QUrl
from PySide6.QtGui import QDropEvent

from audiogen_studio.app.export_dialog import ExportDialog, ExportOptions, export_clip
from audiogen_studio.app.project import load_project
from audiogen_studio.audio import io

EXPORTS = [
    ("wav", "PCM_16", 2.0**-15),
    ("wav", "PCM_24", 2.0**-23),
    ("wav", "FLOAT", 0.0),
    ("flac", "PCM_16", 2.0**-15),
    ("flac", "PCM_24", 2.0**-23),
]


@pytest.mark.parametrize(("fmt", "subtype", "tolerance"), EXPORTS)
def test_export_lossless_formats_and_reload(
    tmp_path: Path, fmt: str, subtype: str, tolerance: float
) -> None:
    clip = make_clip(0.5)
    options = ExportOptions(format=fmt, subtype=subtype)  # type: ignore[arg-type]
    written = export_clip(clip, tmp_path / "out", options)
    assert written == tmp_path / f"out.{fmt}"
    info = io.info(written)
    assert (info.subtype, info.rate, info.channels) == (subtype, clip.rate, 2)
    back = io.load(written)
    assert back.frames == clip.frames
    error = float(np.abs(back.samples - clip.samples).max())
    assert error <= tolerance  # rounding to the format's step, no worse
    if tolerance:
        assert error > 0.0  # really quantized: the test can tell the formats apart


def test_export_ogg_quality_changes_size(tmp_path: Path) -> None:
    clip = make_clip(2.0)
    low = export_clip(clip, tmp_path / "low.ogg", ExportOptions("ogg", "VORBIS", quality=0))
    high = export_clip(clip, tmp_path / "high.wav", ExportOptions("ogg", "VORBIS", quality=10))
    assert high.suffix == ".ogg"  # the extension follows the format
    assert io.info(low).format == "OGG" and low.stat().st_size < high.stat().st_size
    back = io.load(high)
    assert abs(back.frames - clip.frames) < 2048
    n = min(back.frames, clip.frames)
    ref, got = clip.samples[:, :n], back.samples[:, :n]
    snr = 10 * np.log10(np.sum(ref**2) / np.sum((ref - got) ** 2))
    assert snr > 12.0  # the same audio, lossily coded


def test_export_options_validate_and_fix_extensions() -> None:
    with pytest.raises(ValueError, match="cannot be written as FLOAT"):
        ExportOptions("flac", "FLOAT")
    with pytest.raises(ValueError, match="unknown export format"):
        ExportOptions("mp3", "PCM_16")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="quality"):
        ExportOptions("ogg", "VORBIS", quality=11)
    options = ExportOptions("flac", "PCM_16")
    assert options.path_for("a/song.wav") == Path("a/song.flac")
    assert options.path_for("a/song.flac") == Path("a/song.flac")
    assert options.path_for("a/song.take1") == Path("a/song.take1.flac")
    assert options.file_filter == "FLAC (*.flac)"


def test_export_dialog_maps_widgets_to_options(qtbot: Any) -> None:
    dialog = ExportDialog(has_selection=True)
    qtbot.addWidget(dialog)
    assert dialog.options() == ExportOptions()  # WAV 24-bit by default
    dialog.format_combo.setCurrentIndex(dialog.format_combo.findData("flac"))
    encodings = [dialog.encoding_combo.itemData(i) for i in range(dialog.encoding_combo.count())]
    assert encodings == ["PCM_16", "PCM_24"] and not dialog.quality_spin.isEnabled()
    dialog.encoding_combo.setCurrentIndex(0)
    dialog.selection_check.setChecked(True)
    assert dialog.options() == ExportOptions("flac", "PCM_16", selection_only=True)
    dialog.format_combo.setCurrentIndex(dialog.format_combo.findData("ogg"))
    dialog.quality_spin.setValue(8)
    assert dialog.quality_spin.isEnabled()
    assert dialog.options() == ExportOptions("ogg", "VORBIS", quality=8, selection_only=True)
    no_selection = ExportDialog(options=ExportOptions("wav", "FLOAT", selection_only=True))
    qtbot.addWidget(no_selection)
    assert no_selection.options() == ExportOptions("wav", "FLOAT")  # nothing to export alone


def test_window_exports_the_clip_or_the_selection(qtbot: Any, tmp_path: Path) -> None:
    window = new_window(qtbot, tmp_path)
    clip = make_clip(0.5)
    window.set_clip(clip)
    out = window.export_audio(tmp_path / "all.wav", ExportOptions("wav", "FLOAT"))
    assert out is not None and same_bits(io.load(out).samples, clip.samples)
    window.set_selection(1000, 3000)
    part = window.export_audio(
        tmp_path / "part", ExportOptions("wav", "FLOAT", selection_only=True)
    )
    assert part is not None and same_bits(io.load(part).samples, clip.samples[:, 1000:3000])
    assert window.export_audio(tmp_path / "no-such-dir" / "x.wav") is None
    assert "Cannot export" in window.statusBar().currentMessage()


# -- unsaved changes -------------------------------------------------------------------------


def _modified_window(qtbot: Any, tmp_path: Path, answers: list[str]) -> Any:
    asked: list[str] = []

    def prompt(name: str) -> Any:
        asked.append(name)
        return answers.pop(0)

    window = new_window(qtbot, tmp_path, unsaved_prompt=prompt)
    window.asked = asked
    path = io.save(make_clip(0.5), tmp_path / "orig.wav")
    assert window.open_file(path) and not window.is_modified()
    window.set_selection(0, 1000)
    window.delete_selection()
    assert window.is_modified()
    return window


def test_close_with_unsaved_changes_cancel_then_discard(qtbot: Any, tmp_path: Path) -> None:
    window = _modified_window(qtbot, tmp_path, ["cancel", "discard"])
    assert not window.close()  # Cancel: the window stays open with its edits
    assert window.isVisible() and window.asked == ["orig.wav"]
    assert window.undo_stack.count() == 1
    assert window.close()  # Discard
    assert not window.isVisible()


def test_close_with_unsaved_changes_save(qtbot: Any, tmp_path: Path) -> None:
    window = _modified_window(qtbot, tmp_path, ["save", "save"])
    window.ask_project_path = lambda: None  # the save dialog is cancelled ...
    assert not window.close() and window.isVisible()  # ... so nothing closes
    window.ask_project_path = lambda: tmp_path / "saved.agsproj"
    edited = window.clip
    assert window.close() and not window.isVisible()
    loaded = load_project(tmp_path / "saved.agsproj")
    assert loaded.clip is not None and same_bits(loaded.clip.samples, edited.samples)


def test_opening_another_file_asks_first(qtbot: Any, tmp_path: Path) -> None:
    window = _modified_window(qtbot, tmp_path, ["cancel", "discard"])
    other = io.save(make_clip(0.2, seed=7), tmp_path / "other.flac")
    edited = window.clip
    assert not window.open_file(other)  # cancelled: the edited clip stays
    assert window.clip is edited and window.is_modified()
    assert window.open_file(other)
    assert window.path == other and window.clip.frames == 3200
    assert not window.is_modified() and window.undo_stack.count() == 0
    assert window.asked == ["orig.wav", "orig.wav"]


def test_no_prompt_without_changes(qtbot: Any, tmp_path: Path) -> None:
    def never(name: str) -> Any:
        raise AssertionError("asked without unsaved changes")

    window = new_window(qtbot, tmp_path, unsaved_prompt=never)
    path = io.save(make_clip(0.2), tmp_path / "a.wav")
    assert window.open_file(path)
    window.set_selection(0, 100)
    window.silence()
    window.undo_stack.undo()  # back to the file's content
    assert window.open_file(path)
    assert window.close()


def test_dropping_a_file_opens_it(qtbot: Any, tmp_path: Path) -> None:
    window = new_window(qtbot, tmp_path)
    path = io.save(make_clip(0.2), tmp_path / "dropped.wav")
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(path))])
    event = QDropEvent(
        QPointF(10, 10),
        Qt.DropAction.CopyAction,
        mime,
        Qt.MouseButton.LeftButton,
        Qt.KeyboardModifier.NoModifier,
    )
    window.dropEvent(event)
    assert window.path == path and window.clip is not None
