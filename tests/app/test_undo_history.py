"""The undo history survives saving and reopening a project, and a crash + recovery: every step
undoes and redoes to the exact samples, selection and takes it had before."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from editor_support import make_clip, new_window, same_bits

from audiogen_studio.app.clipboard import clipboard
from audiogen_studio.app.project import AutosaveSession, data_dir, load_project, save_project
from audiogen_studio.app.takes_model import TakeRecord, new_take_id
from audiogen_studio.app.undo_history import (
    DeleteTakeRecord,
    Effect,
    HistoryError,
    ReplaceRecord,
    Splice,
    SpliceRecord,
    UndoHistory,
    ViewState,
    read_history,
    write_history,
)
from audiogen_studio.audio.clip import Clip

State = tuple[Clip | None, tuple[int, int] | None, tuple[str, ...]]


@pytest.fixture(autouse=True)
def empty_clipboard() -> None:
    clipboard().clear()


def _take(window: Any, seconds: float = 0.25) -> TakeRecord:
    clip = window.clip
    prompt = clip.samples[:, :1600]
    cont = make_clip(seconds, channels=clip.channels, seed=9).samples
    return TakeRecord(
        id=new_take_id(),
        name="Take 1",
        output=Clip(np.concatenate([prompt, cont], axis=1), clip.rate),
        prompt_frames=1600,
        prompt_range=(0, 1600),
        provenance={"engine": "wavenet", "seed": 5},
    )


def _state(window: Any) -> State:
    return window.clip, window.selection(), tuple(t.id for t in window.takes)


def _assert_state(window: Any, expected: State, step: str) -> None:
    clip, selection, takes = expected
    if clip is None:
        assert window.clip is None, step
    else:
        assert window.clip is not None and same_bits(window.clip.samples, clip.samples), step
    assert window.selection() == selection, step
    assert tuple(t.id for t in window.takes) == takes, step


def _edit_everything(window: Any) -> list[State]:
    """Every kind of undo step; returns the state after each (``[0]``: before any)."""
    states = [_state(window)]

    def step(action: Any) -> None:
        action()
        states.append(_state(window))

    window.set_selection(1000, 5000)
    step(window.cut)
    window.set_cursor(200)
    step(window.paste)
    window.set_selection(3000, 9000)
    step(lambda: window.gain(4.5))
    step(window.fade_in)
    window.set_selection(0, 2000)
    step(window.silence)
    step(lambda: window.normalize(-3.0))
    take = _take(window)
    window.takes.add(take)
    states[-1] = _state(window)  # adding a take is not an undo step
    step(lambda: window.takes_panel.insert_after_prompt(take.id))
    step(lambda: window.takes_panel.delete(take.id))
    window.set_selection(100, 12000)
    step(window.trim)
    assert window.undo_stack.count() == len(states) - 1
    return states


def _walk(window: Any, states: list[State], index: int) -> list[State]:
    """From ``states[index]``, undo to the start and redo to the end; every state's samples
    must be ``states``'; returns the states seen (selections and takes included, which the
    walk may reach differently: adding a take is no undo step, undo restores the selection
    from before an edit)."""
    stack = window.undo_stack
    seen: list[State] = []

    def check(i: int, step: str) -> None:
        clip = states[i][0]
        _assert_state(window, (clip, window.selection(), tuple(t.id for t in window.takes)), step)
        seen.append(_state(window))

    check(index, "as reopened")
    for i in range(index, 0, -1):
        stack.undo()
        check(i - 1, f"undo to {i - 1}")
    for i in range(1, len(states)):
        stack.redo()
        check(i, f"redo to {i}")
    return seen


def _same_walk(a: list[State], b: list[State]) -> None:
    assert len(a) == len(b)
    for i, (x, y) in enumerate(zip(a, b, strict=True)):
        assert (x[0] is None) == (y[0] is None), i
        if x[0] is not None and y[0] is not None:
            assert same_bits(x[0].samples, y[0].samples), i
        assert x[1:] == y[1:], i  # selection and takes too


def test_undo_history_survives_save_and_reopen(qtbot: Any, tmp_path: Path) -> None:
    window = new_window(qtbot, tmp_path)
    window.set_clip(make_clip(1.0))
    states = _edit_everything(window)
    texts = [window.undo_stack.text(i) for i in range(window.undo_stack.count())]
    window.undo_stack.undo()  # one step left to redo
    index = len(states) - 2
    assert window.save_project(tmp_path / "song.agsproj")
    before_saving = _walk(window, states, index)  # what the session itself undoes and redoes

    other = new_window(qtbot, tmp_path)
    assert other.open_file(tmp_path / "song.agsproj")
    stack = other.undo_stack
    assert stack.count() == len(states) - 1 and stack.index() == index
    assert [stack.text(i) for i in range(stack.count())] == texts
    assert not other.is_modified() and stack.isClean()
    assert other.undo_action.text() == f"&Undo {texts[index - 1]}"
    after_reopening = _walk(other, states, index)
    _same_walk(before_saving, after_reopening)
    assert other.is_modified()
    # undoing "Delete Take 1" brought the take back, redoing it removed it again
    takes_seen = [len(takes) for _, _, takes in after_reopening]
    assert takes_seen[0] == 0 and takes_seen[1] == 1 and takes_seen[-1] == 0
    # the effects were saved as names + parameters: only their original frames are on disk
    doc = json.loads((tmp_path / "song.agsproj").read_text())
    gain = next(r for r in doc["undo"]["records"] if r["text"] == "Gain +4.5 dB")
    assert gain["splices"][0]["effect"] == {"name": "gain", "params": {"db": 4.5}}
    assert gain["splices"][0]["new"] is None


def test_undo_history_survives_a_crash(qtbot: Any, tmp_path: Path) -> None:
    crashed = new_window(qtbot, tmp_path)
    start: State = (None, None, ())
    crashed.insert_clip(0, make_clip(0.5, seed=4), "Record")  # no clip yet: a document swap
    states = [start, _state(crashed)]
    crashed.set_selection(500, 3000)
    crashed.fade_out()
    states.append(_state(crashed))
    crashed.autosave_now(wait=True)
    crashed.autosave_session.abandon()  # the process "died": its lock is gone, the files stay
    crashed.autosave_session = AutosaveSession(tmp_path / "elsewhere")

    window = new_window(qtbot, tmp_path, recovery_prompt=lambda infos: "restore")
    assert window.check_recovery()
    assert window.undo_stack.count() == 2 and window.undo_stack.index() == 2
    _same_walk(_walk(crashed, states, 2), _walk(window, states, 2))
    window.undo_stack.setIndex(0)
    assert window.clip is None


def test_saving_again_writes_only_new_history_and_collects_old(qtbot: Any, tmp_path: Path) -> None:
    window = new_window(qtbot, tmp_path)
    window.set_clip(make_clip(0.5))
    window.set_selection(100, 2000)
    window.gain(2.0)
    window.delete_selection()
    path = tmp_path / "p.agsproj"
    assert window.save_project(path)
    folder = data_dir(path)
    first = {p.name: p.stat().st_mtime_ns for p in folder.glob("undo-*.npy")}
    assert len(first) == 2  # gain: the original range; delete: the deleted frames
    window.set_selection(0, 50)
    window.silence()
    assert window.save_project()
    second = {p.name: p.stat().st_mtime_ns for p in folder.glob("undo-*.npy")}
    assert len(second) == 3 and all(second[n] == t for n, t in first.items())
    # a save that keeps only the last step deletes the files the others used
    assert save_project(path, window.snapshot(), max_history_records=1)
    assert len(list(folder.glob("undo-*.npy"))) == 1
    assert load_project(path).history is not None
    assert len(load_project(path).history.records) == 1  # type: ignore[union-attr]


def test_history_bounds_keep_the_steps_nearest_the_current_state() -> None:
    def rec(n: int) -> SpliceRecord:
        old = np.zeros((1, n), np.float32)
        view = ViewState(None, 0)
        return SpliceRecord(f"{n}", (Splice(0, old, stored=old),), view, view)

    records = tuple(rec(n) for n in (10, 20, 30, 40, 50))  # 8 bytes per frame (old + new)
    history = UndoHistory(records, 3)
    assert history.bounded(100, 10**9).records == records
    two = history.bounded(2, 10**9)
    assert [r.text for r in two.records] == ["20", "30"] and two.index == 2
    four = history.bounded(4, 10**9)  # undo side first, then redo
    assert [r.text for r in four.records] == ["10", "20", "30", "40"] and four.index == 3
    undo_only = history.bounded(100, 8 * (30 + 20 + 10 + 39))  # the redo step does not fit
    assert [r.text for r in undo_only.records] == ["10", "20", "30"] and undo_only.index == 3
    tight = history.bounded(100, 8 * (30 + 20 + 5))  # stops at the first step that does not fit
    assert [r.text for r in tight.records] == ["20", "30"] and tight.index == 2
    assert history.bounded(100, 8 * 29).records == ()


def test_history_files_are_exact_and_checked(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    clip = Clip(rng.standard_normal((2, 1000)).astype(np.float32) * 3.0, 16000)  # beyond ±1
    view = ViewState((10, 20), 10)
    take = TakeRecord(id=new_take_id(), name="t", output=clip, prompt_frames=100)
    splice = Splice(
        10, clip.samples[:, 10:20].copy(), effect=Effect.of("gain", db=-2.0), rate=16000
    )
    history = UndoHistory(
        (
            ReplaceRecord("Open", None, clip, ViewState(None, 0), view),
            SpliceRecord("Gain", (splice,), view, view),
            DeleteTakeRecord("Delete t", take, 0),
        ),
        3,
    )
    doc, files = write_history(history, tmp_path)
    back = read_history(json.loads(json.dumps(doc)), tmp_path)
    back.check(clip)
    replace, gain, delete = back.records
    assert isinstance(replace, ReplaceRecord) and replace.before is None
    assert replace.after is not None and same_bits(replace.after.samples, clip.samples)
    assert isinstance(gain, SpliceRecord)
    assert same_bits(gain.splices[0].new, splice.new) and gain.before == view
    assert isinstance(delete, DeleteTakeRecord) and delete.take.id == take.id
    assert same_bits(delete.take.output.samples, clip.samples)
    # a history that does not lead to the project's clip is refused
    with pytest.raises(HistoryError, match="does not end"):
        back.check(Clip(clip.samples[:, :500], 16000))
    with pytest.raises(HistoryError, match="missing"):
        (tmp_path / sorted(files)[0]).unlink()
        read_history(doc, tmp_path)
    with pytest.raises(HistoryError, match="invalid file name"):
        bad = json.loads(json.dumps(doc))
        bad["records"][0]["after"]["file"] = "../clip.npy"
        read_history(bad, tmp_path)


def test_a_broken_history_still_opens_the_project(qtbot: Any, tmp_path: Path) -> None:
    window = new_window(qtbot, tmp_path)
    window.set_clip(make_clip(0.5))
    window.set_selection(0, 100)
    window.cut()
    path = tmp_path / "p.agsproj"
    assert window.save_project(path)
    for npy in data_dir(path).glob("undo-*.npy"):
        npy.unlink()
    other = new_window(qtbot, tmp_path)
    assert other.open_file(path)
    assert same_bits(other.clip.samples, window.clip.samples)
    assert other.undo_stack.count() == 0
    assert "undo history could not be restored" in other.statusBar().currentMessage()
