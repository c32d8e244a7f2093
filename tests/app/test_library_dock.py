"""The Library dock (issue 7 §4) through pytest-qt: search, filters, mini waveforms, play on
click, inline rating and tags, drag payload, delete with confirm + undo, takes landing by
themselves."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import QPoint, Qt
from PySide6.QtGui import QImage

from audiogen_studio.app.library_dock import (
    TAKE_MIME,
    LibraryDock,
    TakeDelegate,
    take_uids_from_mime,
)
from audiogen_studio.app.takes_model import TakeList, TakeRecord
from audiogen_studio.audio.clip import Clip
from audiogen_studio.library import TakeInfo, TakeLibrary

RATE = 16000


def _tone(freq: float, seconds: float = 0.5, amp: float = 0.4) -> Clip:
    t = np.arange(int(seconds * RATE)) / RATE
    return Clip((amp * np.sin(2 * np.pi * freq * t)).astype(np.float32), RATE)


def _noise(seed: int, seconds: float = 0.5) -> Clip:
    x = np.random.default_rng(seed).uniform(-0.3, 0.3, int(seconds * RATE))
    return Clip(x.astype(np.float32), RATE)


class FakeTransport:
    """Records play/stop calls (no audio device needed)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, int, int, int]] = []

    def play(self, clip: Clip, start: int, end: int, *, loop: bool = False) -> None:
        self.calls.append(("play", clip.frames, start, end))

    def stop(self) -> None:
        self.calls.append(("stop", 0, 0, 0))


@pytest.fixture
def library(tmp_path: Path) -> Iterator[TakeLibrary]:
    lib = TakeLibrary(tmp_path / "lib", sync_audio=False)
    lib.add_take(
        _tone(440),
        TakeInfo(
            engine="wavenet", model="tiny", name="Bell A", tags=("bell",), rating=4, created=1000.0
        ),
    )
    lib.add_take(
        _tone(450), TakeInfo(engine="wavenet", model="tiny", name="Bell B", created=2000.0)
    )
    lib.add_take(
        _noise(1),
        TakeInfo(engine="audiolm", model="speech", name="Hiss", tags=("noise",), created=3000.0),
    )
    yield lib
    lib.close()


@pytest.fixture
def dock(qtbot: object, library: TakeLibrary) -> Iterator[LibraryDock]:
    transport = FakeTransport()
    d = LibraryDock(library, transport)  # type: ignore[arg-type]
    d.resize(480, 400)
    qtbot.addWidget(d)  # type: ignore[attr-defined]
    d.show()
    yield d
    d.close()
    assert d._executor is None  # the recording thread is joined


def _names(dock: LibraryDock) -> list[str]:
    return [e.name for e in dock.model.entries]


def _row_rect(dock: LibraryDock, name: str) -> tuple[int, object]:
    row = _names(dock).index(name)
    return row, dock.view.visualRect(dock.model.index(row))


def test_lists_newest_first_and_searches_as_you_type(dock: LibraryDock, qtbot: object) -> None:
    assert _names(dock) == ["Hiss", "Bell B", "Bell A"]
    assert "3 of 3 takes" in dock.status.text()
    qtbot.keyClicks(dock.search_box, "bel")  # type: ignore[attr-defined]
    qtbot.waitUntil(lambda: set(_names(dock)) == {"Bell A", "Bell B"})  # type: ignore[attr-defined]
    dock.search_box.setText("noise")
    qtbot.waitUntil(lambda: _names(dock) == ["Hiss"])  # type: ignore[attr-defined]


def test_filters(dock: LibraryDock) -> None:
    engines = [dock.engine_combo.itemText(i) for i in range(dock.engine_combo.count())]
    assert engines == ["All engines", "audiolm", "wavenet"]
    dock.engine_combo.setCurrentIndex(dock.engine_combo.findData("wavenet"))
    assert set(_names(dock)) == {"Bell A", "Bell B"}
    dock.rating_combo.setCurrentIndex(dock.rating_combo.findData(4))
    assert _names(dock) == ["Bell A"]
    dock.engine_combo.setCurrentIndex(0)
    dock.rating_combo.setCurrentIndex(0)
    assert len(_names(dock)) == 3


def test_like_this_shows_similar_sounds(dock: LibraryDock) -> None:
    dock.like_this(dock.library.list_takes()[-1].uid)  # Bell A
    assert dock.like_button.isChecked()
    assert _names(dock)[0] == "Bell B" and "Bell A" not in _names(dock)
    dock.like_this(None)
    assert len(_names(dock)) == 3


def test_click_on_the_waveform_plays_from_there(dock: LibraryDock, qtbot: object) -> None:
    row, rect = _row_rect(dock, "Hiss")
    wave = TakeDelegate.wave_rect(rect)  # type: ignore[arg-type]
    point = QPoint(wave.left() + wave.width() // 2, wave.center().y())
    qtbot.mouseClick(dock.view.viewport(), Qt.MouseButton.LeftButton, pos=point)  # type: ignore[attr-defined]
    transport = dock.transport
    assert isinstance(transport, FakeTransport)
    kind, frames, start, end = transport.calls[-1]
    assert kind == "play" and frames == end == 8000 and abs(start - 4000) <= 100
    assert dock.playing == dock.model.entries[row].uid
    assert dock.selected_uids() == [dock.model.entries[row].uid]


def test_click_on_a_star_rates_inline(dock: LibraryDock, qtbot: object) -> None:
    row, rect = _row_rect(dock, "Bell B")
    star3 = TakeDelegate.star_rect(rect, 3)  # type: ignore[arg-type]
    viewport = dock.view.viewport()
    qtbot.mouseClick(viewport, Qt.MouseButton.LeftButton, pos=star3.center())  # type: ignore[attr-defined]
    uid = dock.model.entries[row].uid
    assert dock.library.get(uid).rating == 3 and dock.model.entries[row].rating == 3
    qtbot.mouseClick(viewport, Qt.MouseButton.LeftButton, pos=star3.center())  # type: ignore[attr-defined]
    assert dock.library.get(uid).rating is None  # the same star again clears it


def test_tags_are_edited_inline(dock: LibraryDock, qtbot: object) -> None:
    row, _ = _row_rect(dock, "Bell B")
    index = dock.model.index(row)
    dock.view.setCurrentIndex(index)
    dock.view.edit(index)
    from PySide6.QtWidgets import QLineEdit

    viewport = dock.view.viewport()
    qtbot.waitUntil(lambda: bool(viewport.findChildren(QLineEdit)))  # type: ignore[attr-defined]
    editor = viewport.findChildren(QLineEdit)[0]
    assert editor.text() == ""  # no tags yet
    editor.setText("Bright, bell ,  metal")
    qtbot.keyClick(editor, Qt.Key.Key_Return)  # type: ignore[attr-defined]
    uid = dock.model.entries[row].uid
    editing = dock.view.State.EditingState
    qtbot.waitUntil(lambda: dock.view.state() != editing)  # type: ignore[attr-defined]
    assert dock.library.get(uid).tags == ("bell", "bright", "metal")
    dock.search_box.setText("metal")
    dock.refresh()
    assert _names(dock) == ["Bell B"]


def test_rows_paint_mini_waveforms(dock: LibraryDock) -> None:
    _, rect = _row_rect(dock, "Hiss")
    image: QImage = dock.view.viewport().grab().toImage()
    wave = TakeDelegate.wave_rect(rect)  # type: ignore[arg-type]
    mid = wave.center().y()
    bright = [image.pixelColor(x, mid).green() for x in range(wave.left() + 2, wave.right() - 2)]
    assert min(bright) > 150  # the noise envelope crosses the middle line everywhere
    quiet_top = image.pixelColor(wave.center().x(), wave.top() + 1).green()
    assert quiet_top < 100  # ±0.3 noise stays away from the top edge


def test_drag_payload(dock: LibraryDock) -> None:
    indexes = [dock.model.index(0), dock.model.index(2)]
    mime = dock.model.mimeData(indexes)
    uids, root = take_uids_from_mime(mime) or ([], "")
    assert uids == [dock.model.entries[0].uid, dock.model.entries[2].uid]
    assert root == str(dock.library.root) and TAKE_MIME in mime.formats()
    files = [Path(u.toLocalFile()) for u in mime.urls()]
    assert len(files) == 2 and all(f.is_file() and f.suffix == ".flac" for f in files)
    assert dock.model.flags(indexes[0]) & Qt.ItemFlag.ItemIsDragEnabled
    from PySide6.QtCore import QMimeData

    assert take_uids_from_mime(QMimeData()) is None


def test_delete_asks_and_can_be_undone(dock: LibraryDock, qtbot: object) -> None:
    answers: list[bool] = [False]
    asked: list[str] = []

    def confirm(title: str, question: str) -> bool:
        asked.append(question)
        return answers[0]

    dock.confirm = confirm
    dock.select(dock.model.entries[0].uid)  # Hiss
    uid = dock.model.entries[0].uid
    dock.view.setFocus()
    qtbot.keyClick(dock.view, Qt.Key.Key_Delete)  # type: ignore[attr-defined]
    assert asked == ["Delete 'Hiss' from the library?"] and uid in [
        e.uid for e in dock.model.entries
    ]
    answers[0] = True
    with qtbot.waitSignal(dock.deleted):  # type: ignore[attr-defined]
        qtbot.keyClick(dock.view, Qt.Key.Key_Delete)  # type: ignore[attr-defined]
    assert "Hiss" not in _names(dock) and dock.library.get(uid).deleted is not None
    assert dock.undo_button.isVisible()
    with qtbot.waitSignal(dock.restored):  # type: ignore[attr-defined]
        qtbot.mouseClick(dock.undo_button, Qt.MouseButton.LeftButton)  # type: ignore[attr-defined]
    assert "Hiss" in _names(dock) and dock.library.get(uid).deleted is None
    assert dock.selected_uids() == [uid] and not dock.undo_button.isVisible()
    # Ctrl+Z in the list undoes too
    dock.delete(uid)
    qtbot.keyClick(dock.view, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)  # type: ignore[attr-defined]
    assert dock.library.get(uid).deleted is None


def test_generated_takes_land_by_themselves(dock: LibraryDock, qtbot: object) -> None:
    prompt = _tone(300, 0.25)
    output = Clip(np.concatenate([prompt.samples, _noise(5, 0.5).samples], axis=1), RATE)
    record = TakeRecord(
        id="f" * 32,
        name="Take 1",
        output=output,
        prompt_frames=prompt.frames,
        prompt_range=(100, 100 + prompt.frames),
        provenance={
            "engine": "wavenet",
            "model": "tiny",
            "model_version": "1.0",
            "seed": 9,
            "device_used": "cpu",
            "rtf": 0.5,
            "temperature": 1.0,
        },
        created=5000.0,
    )
    main_thread = threading.get_ident()
    with qtbot.waitSignal(dock.recorded, timeout=20000) as blocker:  # type: ignore[attr-defined]
        dock.record_take(record, prompt=prompt, prompt_source="/tmp/riff.wav")
    assert blocker.args == [record.id] and threading.get_ident() == main_thread
    entry = dock.library.get(record.id)
    assert (entry.name, entry.seed, entry.device, entry.prompt_frames) == ("Take 1", 9, "cpu", 4000)
    stored_prompt = dock.library.prompt(entry.prompt_id or 0)
    assert stored_prompt.source == "/tmp/riff.wav" and stored_prompt.range == (100, 4100)
    assert _names(dock)[0] == "Take 1"
    # a TakeList the dock watches: new takes land without any call
    takes = TakeList()
    dock.watch(takes)
    second = TakeRecord(
        id="e" * 32,
        name="Take 2",
        output=_tone(660),
        created=6000.0,
        provenance={"engine": "audiolm", "model": "speech"},
    )
    with qtbot.waitSignal(dock.recorded, timeout=20000):  # type: ignore[attr-defined]
        takes.add(second)
    assert _names(dock)[0] == "Take 2" and dock.library.get(second.id).engine == "audiolm"
    assert "audiolm" in [dock.engine_combo.itemText(i) for i in range(dock.engine_combo.count())]
    # recording the same take twice is harmless
    dock.record_take(record).result(timeout=20)
    assert dock.library.count() == 5


def test_a_failing_record_is_reported(dock: LibraryDock, qtbot: object) -> None:
    bad = TakeRecord(
        id="d" * 32, name="bad", output=_tone(200), provenance={"rating": 1}, prompt_frames=0
    )
    dock.library.close()  # the library is gone: recording must fail cleanly
    with qtbot.waitSignal(dock.record_failed, timeout=20000):  # type: ignore[attr-defined]
        dock.record_take(bad)
    assert "could not add" in dock.status.text()


def test_json_payload_is_plain(dock: LibraryDock) -> None:
    mime = dock.model.mimeData([dock.model.index(1)])
    data = json.loads(bytes(mime.data(TAKE_MIME).data()))
    assert set(data) == {"uids", "library"}
