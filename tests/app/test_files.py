"""Files: export in each format and read it back, the export dialog, unsaved-changes prompts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from editor_support import make_clip, new_window, same_bits
from PySide6.QtCore import QMimeData, QPoint, QPointF, QSettings, Qt, QUrl
from PySide6.QtGui import QDragEnterEvent, QDropEvent

from audiogen_studio.app.export_dialog import ExportDialog, ExportOptions, export_clip
from audiogen_studio.app.project import load_project
from audiogen_studio.audio import io

NONE = Qt.KeyboardModifier.NoModifier
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


_MIME: list[QMimeData] = []  # the events point at their mime data: keep it alive
# PySide6 marks QDragEnterEvent's only constructor (QPoint) deprecated
_DRAG_CTOR = pytest.mark.filterwarnings("ignore:Function.*QDragEnterEvent:DeprecationWarning")


def _drop_events(urls: list[QUrl]) -> tuple[QDragEnterEvent, QDropEvent]:
    mime = QMimeData()
    mime.setUrls(urls)
    _MIME.append(mime)
    args = (Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton, NONE)
    return QDragEnterEvent(QPoint(10, 10), *args), QDropEvent(QPointF(10, 10), *args)


@_DRAG_CTOR
def test_dropping_a_file_opens_it(qtbot: Any, tmp_path: Path) -> None:
    window = new_window(qtbot, tmp_path)
    path = io.save(make_clip(0.2), tmp_path / "dropped.wav")
    enter, drop = _drop_events([QUrl("https://example.com/x.wav"), QUrl.fromLocalFile(str(path))])
    window.dragEnterEvent(enter)
    assert enter.isAccepted()
    window.dropEvent(drop)
    assert drop.isAccepted()
    qtbot.waitUntil(lambda: window.path == path, timeout=2000)  # opened after the drop returned
    assert window.clip is not None and str(path.resolve()) in window.recent_files()


@_DRAG_CTOR
def test_drops_that_are_not_audio_are_refused(qtbot: Any, tmp_path: Path) -> None:
    window = new_window(qtbot, tmp_path)
    text = tmp_path / "notes.txt"
    text.write_text("not audio")
    for urls in ([QUrl("https://example.com/x.wav")], [QUrl.fromLocalFile(str(text))]):
        enter, drop = _drop_events(urls)
        window.dragEnterEvent(enter)
        assert not enter.isAccepted()
        window.dropEvent(drop)
        assert not drop.isAccepted()
    qtbot.wait(20)
    assert window.clip is None and window.recent_files() == []


def test_recent_files_menu(qtbot: Any, tmp_path: Path) -> None:
    window = new_window(qtbot, tmp_path)
    a = io.save(make_clip(0.2, seed=1), tmp_path / "a & b.wav")
    b = io.save(make_clip(0.3, seed=2), tmp_path / "b.wav")
    # an INI file reads a one-element list back as a string (what a restart sees)
    QSettings().setValue("recent_files", str(a.resolve()))
    assert window.recent_files() == [str(a.resolve())]
    assert window.open_file(b)
    assert window.recent_files() == [str(b.resolve()), str(a.resolve())]
    entries = [act for act in window.recent_menu.actions() if act.data()]
    assert [act.data() for act in entries] == window.recent_files()
    assert entries[1].text() == f"&2 {a.resolve()}".replace(" & ", " && ")
    entries[1].trigger()  # reopens a
    assert window.path == a.resolve() and window.recent_files()[0] == str(a.resolve())
    b.unlink()  # a recent file that is gone is reported and forgotten
    gone = next(act for act in window.recent_menu.actions() if act.data() == str(b.resolve()))
    gone.trigger()
    assert window.path == a.resolve()
    assert "no longer exists" in window.statusBar().currentMessage()
    assert window.recent_files() == [str(a.resolve())]
    clear = next(a for a in window.recent_menu.actions() if "Clear" in a.text())
    clear.trigger()
    assert window.recent_files() == [] and not window.recent_menu.isEnabled()
