"""Every edit is one undo step that restores the exact samples; redo gives the exact result."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from editor_support import make_clip, new_window, same_bits
from hypothesis import given, settings
from hypothesis import strategies as st

from audiogen_studio.app.clipboard import clipboard
from audiogen_studio.app.edit_commands import Splice, diff_splice
from audiogen_studio.audio import edit, io
from audiogen_studio.audio.clip import Clip

SEL = (4000, 9000)


@pytest.fixture(autouse=True)
def empty_clipboard() -> None:
    clipboard().clear()


@pytest.fixture
def window(qtbot: Any, tmp_path: Path) -> Any:
    w = new_window(qtbot, tmp_path)
    w.set_clip(make_clip(1.0))
    w.set_selection(*SEL)
    return w


def _check_round_trip(window: Any, before: Clip, expected: Clip, text: str) -> None:
    """The edit gave ``expected``; undo gives ``before`` and redo ``expected``, bit for bit."""
    after = window.clip
    assert same_bits(after.samples, expected.samples), text
    assert window.undo_action.text() == f"&Undo {text}"
    window.undo_stack.undo()
    assert same_bits(window.clip.samples, before.samples)
    assert window.redo_action.text() == f"&Redo {text}"
    window.undo_stack.redo()
    assert same_bits(window.clip.samples, expected.samples)
    window.undo_stack.undo()  # and once more: undo after redo is still exact
    assert same_bits(window.clip.samples, before.samples)


S, E = SEL
CASES: list[tuple[str, str, Callable[[Any], object], Callable[[Clip], Clip]]] = [
    ("cut", "Cut", lambda w: w.cut(), lambda c: edit.delete(c, S, E)),
    ("delete", "Delete", lambda w: w.delete_selection(), lambda c: edit.delete(c, S, E)),
    ("trim", "Trim", lambda w: w.trim(), lambda c: edit.crop(c, S, E)),
    ("silence", "Silence", lambda w: w.silence(), lambda c: edit.silence(c, S, E)),
    ("fade_in", "Fade In", lambda w: w.fade_in(), lambda c: edit.fade_in(c, start=S, end=E)),
    ("fade_out", "Fade Out", lambda w: w.fade_out(), lambda c: edit.fade_out(c, start=S, end=E)),
    ("gain", "Gain +4.5 dB", lambda w: w.gain(4.5), lambda c: edit.gain(c, 4.5, S, E)),
    (
        "normalize",
        "Normalize to -3 dB",
        lambda w: w.normalize(-3.0),
        lambda c: edit.normalize_peak(c, -3.0, S, E),
    ),
]


@pytest.mark.parametrize(("name", "text", "op", "reference"), CASES, ids=[c[0] for c in CASES])
def test_edit_undo_redo_exact(
    window: Any,
    name: str,
    text: str,
    op: Callable[[Any], object],
    reference: Callable[[Clip], Clip],
) -> None:
    before = window.clip
    assert op(window) is not False
    _check_round_trip(window, before, reference(before), text)
    assert window.selection() == SEL  # undo restored the selection too


def test_select_cut_undo_redo_restores_exact_samples_and_selection(window: Any) -> None:
    before = window.clip
    window.cut()
    assert window.clip.frames == before.frames - (E - S)
    assert window.selection() is None and window.cursor_frame() == S
    cut = clipboard().clip
    assert cut is not None and same_bits(cut.samples, before.samples[:, S:E])
    window.undo_action.trigger()
    assert same_bits(window.clip.samples, before.samples) and window.selection() == SEL
    window.redo_action.trigger()
    assert window.clip.frames == before.frames - (E - S) and window.cursor_frame() == S
    # the cut range is kept once (for undo), not the whole clip
    command = window.undo_stack.command(0)
    assert command.nbytes == before.samples[:, S:E].nbytes


def test_paste_at_cursor_and_over_selection(window: Any) -> None:
    before = window.clip
    window.copy()
    window.set_cursor(100)
    window.paste()
    piece = Clip(before.samples[:, S:E], before.rate)
    expected = edit.insert(before, 100, piece)
    assert window.selection() == (100, 100 + E - S)  # the pasted audio is selected
    _check_round_trip(window, before, expected, "Paste")
    window.set_selection(0, 50)  # paste over a selection replaces it
    window.paste()
    expected = edit.insert(edit.delete(before, 0, 50), 0, piece)
    _check_round_trip(window, before, expected, "Paste")


def test_paste_converts_rate_and_channels(window: Any) -> None:
    mono = make_clip(0.25, channels=1, rate=8000, seed=3)
    clipboard().set(mono)
    window.set_cursor(0)
    window.paste()
    expected_piece = io.to_channels(io.resample(mono, 16000), 2)
    assert window.selection() == (0, expected_piece.frames)
    assert same_bits(window.clip.samples[:, : expected_piece.frames], expected_piece.samples)
    clipboard().set(Clip(np.zeros((3, 10), np.float32), 16000))
    frames = window.clip.frames
    assert window.paste() is False  # three channels cannot go into stereo
    assert "3-channel" in window.statusBar().currentMessage()
    assert window.clip.frames == frames


def test_edits_without_selection(window: Any) -> None:
    window.clear_selection()
    before = window.clip
    assert window.cut() is False and "Select a range" in window.statusBar().currentMessage()
    assert window.undo_stack.count() == 0
    window.gain(-6.0)  # range effects act on the whole clip when nothing is selected
    assert same_bits(window.clip.samples, edit.gain(before, -6.0).samples)
    assert window.gain(float("nan")) is False
    assert window.undo_stack.count() == 1


def test_insert_clip_and_apply_edit(window: Any) -> None:
    before = window.clip
    take = make_clip(0.3, channels=1, seed=9)
    window.insert_clip(before.frames, take, "Insert take")
    expected = edit.insert(before, before.frames, take)
    assert window.selection() == (before.frames, expected.frames)
    _check_round_trip(window, before, expected, "Insert take")
    # a whole-clip replacement keeps only what differs: here the appended take
    window.apply_edit("Insert after prompt", expected, (100, 200))
    assert window.selection() == (100, 200)
    command = window.undo_stack.command(window.undo_stack.index() - 1)
    assert command.nbytes == take.frames * 2 * 4  # the new frames (2 ch, float32), no old ones
    _check_round_trip(window, before, expected, "Insert after prompt")
    # no change, no undo step
    count = window.undo_stack.count()
    window.apply_edit("Nothing", Clip(before.samples.copy(), before.rate))
    assert window.undo_stack.count() == count


def test_insert_into_empty_window_and_undo_back_to_nothing(qtbot: Any, tmp_path: Path) -> None:
    window = new_window(qtbot, tmp_path)
    take = make_clip(0.2, channels=1)
    window.insert_clip(0, take, "Record")
    assert window.clip is take and window.selection() == (0, take.frames)
    window.undo_stack.undo()
    assert window.clip is None and window.waveform.clip is None
    window.undo_stack.redo()
    assert window.clip is take
    # a clip of another rate replaces the document as a whole, undoably
    other = make_clip(0.1, channels=2, rate=22050)
    window.apply_edit("Resample", other)
    assert window.clip is other
    window.undo_stack.undo()
    assert window.clip is take


def test_modified_follows_the_undo_stack(window: Any, tmp_path: Path) -> None:
    assert window.is_modified()  # set_clip without a path: new, unsaved audio
    assert window.save_project(tmp_path / "p.agsproj")
    assert not window.is_modified() and not window.isWindowModified()
    window.silence()
    assert window.is_modified() and window.isWindowModified()
    window.undo_stack.undo()
    assert not window.is_modified()


def test_unlimited_undo_of_many_edits(window: Any) -> None:
    original = window.clip
    states = [original]
    for i in range(25):
        window.set_selection(100 * i, 100 * i + 500)
        (window.gain if i % 2 else window.cut)(*((1.0,) if i % 2 else ()))
        states.append(window.clip)
    for state in reversed(states[:-1]):
        window.undo_stack.undo()
        assert same_bits(window.clip.samples, state.samples)
    assert not window.undo_stack.canUndo()


# -- splices ---------------------------------------------------------------------------------


def test_diff_splice_finds_the_changed_middle() -> None:
    rng = np.random.default_rng(0)
    a = rng.standard_normal((2, 5000)).astype(np.float32)
    b = np.concatenate([a[:, :1000], np.ones((2, 70), np.float32), a[:, 1500:]], axis=1)
    splice = diff_splice(a, b)
    assert splice is not None
    assert splice.start == 1000 and splice.old.shape[1] == 500 and splice.new.shape[1] == 70
    assert same_bits(splice.apply(a), b)
    assert same_bits(splice.revert(b, 70), a)
    assert diff_splice(a, a.copy()) is None
    zeros = np.zeros((1, 4), np.float32)
    negative = zeros.copy()
    negative[0, 2] = -0.0  # equal as numbers, different bits: still a change
    minus = diff_splice(zeros, negative)
    assert minus is not None and minus.start == 2


def test_splice_needs_one_source_of_new_frames() -> None:
    old = np.zeros((1, 3), np.float32)
    with pytest.raises(ValueError, match="exactly one"):
        Splice(0, old)
    with pytest.raises(ValueError, match="exactly one"):
        Splice(0, old, stored=old, transform=lambda x: x)


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(0, 300),
    cut=st.tuples(st.integers(0, 300), st.integers(0, 300)),
    insert=st.integers(0, 50),
    seed=st.integers(0, 2**16),
)
def test_diff_splice_round_trips(n: int, cut: tuple[int, int], insert: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    a = rng.integers(-3, 3, size=(2, n)).astype(np.float32)  # small alphabet: long equal runs
    lo, hi = sorted((min(cut[0], n), min(cut[1], n)))
    b = np.concatenate(
        [a[:, :lo], rng.integers(-3, 3, size=(2, insert)).astype(np.float32), a[:, hi:]], axis=1
    )
    splice = diff_splice(a, b)
    if splice is None:
        assert same_bits(a, b)
        return
    assert same_bits(splice.apply(a), b)
    assert same_bits(splice.revert(b, splice.new.shape[1]), a)
    # minimal: the first and last stored frames differ from what they replace (or one is empty)
    assert splice.old.shape[1] + splice.new.shape[1] <= a.shape[1] + b.shape[1]
