"""The takes panel on the real main window: list + provenance, rename, keep, delete (undo),
insert after prompt (undo), export, audition and A/B switching at the same position.

No PortAudio stream is opened here (``Player.start`` is patched): the tests read what the
audition feeder writes into the player's ring, which is exactly what a device would play.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PySide6.QtCore import Qt

from audiogen_studio.app.takes_model import TakeRecord, new_take_id
from audiogen_studio.app.takes_panel import (
    AUDITION_PROMPT_SECONDS,
    Audition,
    TakesPanel,
    describe_provenance,
)
from audiogen_studio.audio import devices, io
from audiogen_studio.audio.clip import Clip
from audiogen_studio.audio.errors import AudioDeviceError
from audiogen_studio.audio.ringbuffer import RingBuffer

RATE = 16000


def tone(freq: float, seconds: float, channels: int = 1, amp: float = 0.3) -> np.ndarray:
    t = np.arange(round(seconds * RATE)) / RATE
    return np.tile(amp * np.sin(2 * np.pi * freq * t), (channels, 1)).astype(np.float32)


def make_take(
    prompt: np.ndarray, freq: float, seconds: float, *, name: str = "", start: int = 0
) -> TakeRecord:
    """A take whose output is ``prompt`` followed by a ``freq`` tone; the prompt came from
    frames ``[start, start + prompt_frames)`` of the editor's clip."""
    continuation = tone(freq, seconds, prompt.shape[0], amp=0.5)
    output = Clip(np.concatenate([prompt, continuation], axis=1), RATE)
    return TakeRecord(
        id=new_take_id(),
        name=name or f"{freq:g} Hz",
        output=output,
        prompt_frames=prompt.shape[1],
        prompt_range=(start, start + prompt.shape[1]),
        provenance={
            "engine": "wavenet",
            "model": "tiny",
            "model_version": "1.0.0",
            "seed": 11,
            "temperature": 0.9,
            "top_k": 40,
            "seconds": seconds,
            "device_used": "cpu",
            "rtf": 0.25,
            "complete": True,
        },
    )


@pytest.fixture
def no_stream(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """``Player.start`` opens no stream; returns the players that were started."""
    started: list[Any] = []
    monkeypatch.setattr(devices.Player, "start", lambda self: started.append(self))
    return started


@pytest.fixture
def window(make_window: Callable[[], Any]) -> Any:
    w = make_window()
    w.show()
    return w


def panel_of(window: Any) -> TakesPanel:
    panel = window.takes_panel
    assert isinstance(panel, TakesPanel)
    return panel


def cell(panel: TakesPanel, row: int, column: int) -> str:
    item = panel.table.item(row, column)
    assert item is not None, (row, column)
    return item.text()


def drain(ring: RingBuffer, frames: int | None = None, timeout: float = 10.0) -> np.ndarray:
    """Read ``frames`` (or everything until the ring is closed) as ``[C, n]``."""
    parts, got = [], 0
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        want = None if frames is None else frames - got
        if want == 0:
            break
        chunk = ring.read(want)
        if chunk.shape[0]:
            parts.append(chunk)
            got += chunk.shape[0]
        elif ring.closed and ring.available() == 0:
            break
        else:
            time.sleep(0.002)
    return np.concatenate(parts, axis=0).T if parts else np.zeros((ring.channels, 0), np.float32)


def test_lists_takes_with_provenance_and_follows_changes(window: Any) -> None:
    panel = panel_of(window)
    assert panel.table.rowCount() == 0
    take = make_take(tone(220, 1.0), 440, 0.5, name="first")
    window.takes.add(take)
    assert panel.table.rowCount() == 1
    assert cell(panel, 0, 1) == "first"
    assert cell(panel, 0, 2) == "0.50 s"
    assert "seed 11" in cell(panel, 0, 3)
    panel.select(take.id)
    details = panel.details.text()
    for text in ("wavenet", "tiny 1.0.0", "seed 11", "T 0.9", "top-k 40", "complete", "RTF 0.25",
                 "prompt 0.00–1.00 s"):  # fmt: skip
        assert text in details, (text, details)
    second = make_take(tone(220, 1.0), 660, 0.25, name="second")
    second.provenance.update(
        candidates=4,
        rank_by="voice",
        match=-0.5,
        match_rank=2,
        match_of=3,
        level_match=True,
        beat_guidance=True,
    )
    window.takes.add(second)
    for text in (
        "chosen of 4 beginnings · at the prompt's level · on the prompt's beat",
        "voice match -0.500: 2 of 3 takes",
    ):
        assert text in describe_provenance(second)
    assert "chosen of 4 beginnings · 0.25 s · voice match 2/3" in second.describe()
    assert "beginnings" not in describe_provenance(take)
    assert "level" not in describe_provenance(take)
    assert [cell(panel, r, 1) for r in range(2)] == ["first", "second"]
    assert panel.selected_ids() == [second.id]  # a new take is selected
    window.takes.update(take.id, name="renamed")
    assert cell(panel, 0, 1) == "renamed"
    assert panel.selected_ids() == [second.id]  # the selection survives other changes


def test_rename_inline_keep_and_delete_with_undo(window: Any, qtbot: Any) -> None:
    panel = panel_of(window)
    a = make_take(tone(220, 0.5), 440, 0.3, name="a")
    b = make_take(tone(220, 0.5), 660, 0.3, name="b")
    window.takes.add(a)
    window.takes.add(b)
    # inline edit of the name cell renames the take
    item = panel.table.item(1, 1)
    assert item is not None
    item.setText("  the good one ")
    assert window.takes.get(b.id).name == "the good one"
    assert cell(panel, 1, 1) == "the good one"
    # keep toggles the star
    panel.select(a.id)
    panel.keep_button.click()
    assert window.takes.get(a.id).kept and cell(panel, 0, 0) == "★"
    assert panel.toggle_keep(a.id) is False
    # delete is one undo step on the window's stack; undo puts the take back in its place
    panel.select(a.id)
    panel.delete_button.click()
    assert [t.id for t in window.takes] == [b.id]
    window.undo_stack.undo()
    assert [t.id for t in window.takes] == [a.id, b.id]
    assert window.takes.get(a.id).output is a.output
    window.undo_stack.redo()
    assert [t.id for t in window.takes] == [b.id]
    # the Delete key in the list deletes the selected take, not audio in the editor
    window.set_clip(Clip(tone(220, 0.5), RATE))
    panel.select(b.id)
    panel.table.setFocus()
    qtbot.keyClick(panel.table, Qt.Key.Key_Delete)
    assert len(window.takes) == 0 and window.clip.frames == RATE // 2


def test_insert_after_prompt_is_undoable(window: Any) -> None:
    base = tone(330, 1.5, channels=2)
    window.set_clip(Clip(base, RATE))
    prompt = base[:, 4000:12000]
    take = make_take(prompt, 880, 0.4, start=4000)
    window.takes.add(take)
    panel = panel_of(window)
    panel.select(take.id)
    panel.insert_button.click()
    clip = window.clip
    cont = take.continuation.samples
    assert clip.frames == base.shape[1] + cont.shape[1]
    np.testing.assert_array_equal(clip.samples[:, :12000], base[:, :12000])
    np.testing.assert_array_equal(clip.samples[:, 12000 : 12000 + cont.shape[1]], cont)
    np.testing.assert_array_equal(clip.samples[:, 12000 + cont.shape[1] :], base[:, 12000:])
    window.undo_stack.undo()
    np.testing.assert_array_equal(window.clip.samples, base)


def test_insert_converts_rate_and_channels(window: Any) -> None:
    base = Clip(tone(330, 0.5, channels=2), RATE)
    window.set_clip(io.resample(base, 32000))
    take = make_take(tone(330, 0.25), 440, 0.25, start=0)  # mono, 16 kHz
    window.takes.add(take)
    assert panel_of(window).insert_after_prompt(take.id)
    clip = window.clip
    assert clip.rate == 32000 and clip.channels == 2
    assert clip.frames == 32000 // 2 + 32000 // 4  # 0.5 s + 0.25 s at 32 kHz


def test_export_one_and_all(window: Any, tmp_path: Path) -> None:
    panel = panel_of(window)
    a = make_take(tone(220, 0.5), 440, 0.3, name="same/name")
    b = make_take(tone(220, 0.5), 660, 0.2, name="same/name")
    window.takes.add(a)
    window.takes.add(b)
    one = panel.export(a.id, tmp_path / "a.flac")
    back = io.load(one)
    assert back.rate == RATE and back.frames == a.output.frames
    np.testing.assert_allclose(back.samples, a.output.samples, atol=1e-6)  # 24-bit FLAC
    (tmp_path / "all").mkdir()
    paths = panel.export_all(tmp_path / "all")
    assert [p.name for p in paths] == ["same_name.wav", "same_name (2).wav"]
    np.testing.assert_array_equal(io.load(paths[1]).samples, b.output.samples)  # float WAV
    cont = panel.export_all(tmp_path / "all", "flac", continuation_only=True)
    assert io.load(cont[0]).frames == a.continuation.frames
    with pytest.raises(ValueError, match="unknown export format"):
        panel.export_all(tmp_path, "mp3")


def test_audition_plays_prompt_tail_then_take(window: Any, no_stream: list[Any]) -> None:
    panel = panel_of(window)
    prompt = tone(220, 3.0)
    take = make_take(prompt, 440, 0.5)
    window.takes.add(take)
    panel.select(take.id)
    panel.audition_button.click()
    player = panel.audition_player
    assert player is not None and no_stream == [player.player]
    heard = drain(player.buffer)
    lead = round(AUDITION_PROMPT_SECONDS * RATE)
    expected = take.output.samples[:, take.prompt_frames - lead :]
    np.testing.assert_array_equal(heard, expected)
    assert "playing" in panel.playing_label.text()
    panel.stop_button.click()
    assert panel.audition_player is None and panel.playing_label.text() == ""


def test_ab_switches_at_the_same_position(window: Any, no_stream: list[Any], qtbot: Any) -> None:
    panel = panel_of(window)
    prompt = tone(220, 1.0)
    a = make_take(prompt, 440, 1.0, name="A")
    b = make_take(prompt, 660, 1.0, name="B")
    window.takes.add(a)
    window.takes.add(b)
    panel.select(a.id, b.id)
    assert panel.ab_button.isEnabled()
    panel.ab_button.click()
    player = panel.audition_player
    assert player is not None and len(player.sources) == 2
    ring = player.buffer
    first = drain(ring, 4000)
    qtbot.waitUntil(lambda: ring.space() == 0, timeout=5000)  # the feeder is ahead, blocked
    window.activateWindow()
    panel.table.setFocus()
    qtbot.waitUntil(lambda: window.isActiveWindow() and panel.table.hasFocus(), timeout=2000)
    qtbot.keyClick(panel.table, "b")  # the B key toggles which take is heard
    assert player.active == 1
    rest = drain(ring)
    heard = np.concatenate([first, rest], axis=1)
    (switch, source), *more = player.switches[1:]
    assert source == 1 and not more
    # the switch happens where the feeder was: no earlier than what the device already had
    assert 4000 + ring.capacity <= switch <= 4000 + ring.capacity + round(0.02 * RATE)
    lead = round(AUDITION_PROMPT_SECONDS * RATE)
    src_a = a.output.samples[:, a.prompt_frames - min(lead, a.prompt_frames) :]
    src_b = b.output.samples[:, b.prompt_frames - min(lead, b.prompt_frames) :]
    fade = round(0.005 * RATE)
    assert heard.shape[1] == src_a.shape[1]
    np.testing.assert_array_equal(heard[:, :switch], src_a[:, :switch])
    np.testing.assert_array_equal(heard[:, switch + fade :], src_b[:, switch + fade :])
    t = (np.arange(fade) + 0.5) / fade  # equal-power crossfade from A to B
    window_a, window_b = src_a[:, switch : switch + fade], src_b[:, switch : switch + fade]
    np.testing.assert_allclose(
        heard[:, switch : switch + fade],
        window_a * np.cos(0.5 * np.pi * t) + window_b * np.sin(0.5 * np.pi * t),
        atol=1e-6,
    )
    # what is "heard" follows the played position
    assert player.heard == 1  # the ring was fully read
    panel.stop_playback()


def test_compare_three_takes_cycle_and_pick(window: Any, no_stream: list[Any], qtbot: Any) -> None:
    panel = panel_of(window)
    prompt = tone(220, 1.0)
    takes = [make_take(prompt, f, 1.0, name=n) for f, n in ((440, "x"), (550, "y"), (660, "z"))]
    short = make_take(tone(220, 0.5), 880, 1.0, name="short prompt")
    for take in (*takes, short):
        window.takes.add(take)
    panel.select(takes[0].id)
    assert not panel.ab_button.isEnabled()  # one take: nothing to compare
    assert not panel.start_ab()
    panel.select(*(t.id for t in takes))
    assert panel.ab_button.isEnabled()
    panel.ab_button.click()
    player = panel.audition_player
    assert player is not None and len(player.sources) == 3
    lead = round(AUDITION_PROMPT_SECONDS * RATE)
    lead = min(lead, prompt.shape[1])
    sources = [t.output.samples[:, t.prompt_frames - lead :] for t in takes]
    for got, expected in zip(player.sources, sources, strict=True):
        np.testing.assert_array_equal(got.samples, expected)  # aligned at the prompt's end
    assert panel.switch_button.isEnabled()
    assert "A/B/C: hearing A = x" in panel.playing_label.text()
    ring = player.buffer
    first = drain(ring, 4000)
    qtbot.waitUntil(lambda: ring.space() == 0, timeout=5000)
    window.activateWindow()
    panel.table.setFocus()
    qtbot.waitUntil(lambda: window.isActiveWindow() and panel.table.hasFocus(), timeout=2000)
    qtbot.keyClick(panel.table, "3")  # jump straight to C
    assert player.active == 2
    assert "switching to C" in panel.playing_label.text()
    rest = drain(ring)
    heard = np.concatenate([first, rest], axis=1)
    (switch, source), *more = player.switches[1:]
    assert source == 2 and not more
    fade = round(0.005 * RATE)
    np.testing.assert_array_equal(heard[:, :switch], sources[0][:, :switch])
    np.testing.assert_array_equal(heard[:, switch + fade :], sources[2][:, switch + fade :])
    # B cycles C -> A -> B; picking a take that is not in the comparison does nothing
    panel.toggle_ab()
    assert player.active == 0
    qtbot.keyClick(panel.table, "b")
    assert player.active == 1
    assert not panel.select_ab(3)
    assert player.active == 1
    panel.stop_playback()
    assert not panel.select_ab(0)
    # takes whose prompts differ in length still line up at the prompt's end
    assert panel.start_ab(takes[0].id, short.id)
    pair = panel.audition_player
    assert pair is not None
    short_lead = short.prompt_frames  # 0.5 s < AUDITION_PROMPT_SECONDS
    np.testing.assert_array_equal(
        pair.sources[0].samples, takes[0].output.samples[:, takes[0].prompt_frames - short_lead :]
    )
    np.testing.assert_array_equal(pair.sources[1].samples, short.output.samples)
    panel.stop_playback()


def test_audition_without_output_device_is_a_message(
    window: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(self: Any) -> None:
        raise AudioDeviceError("no output device: none found")

    monkeypatch.setattr(devices.Player, "start", refuse)
    panel = panel_of(window)
    take = make_take(tone(220, 0.5), 440, 0.2)
    window.takes.add(take)
    assert not panel.audition(take.id)
    assert panel.audition_player is None
    assert "no output device" in panel.playing_label.text()
    assert "no output device" in window.statusBar().currentMessage()


def test_closing_the_window_stops_playback_threads(
    make_window: Callable[[], Any], no_stream: list[Any]
) -> None:
    window = make_window()
    window.show()
    take = make_take(tone(220, 0.5), 440, 3.0)
    window.takes.add(take)
    panel = panel_of(window)
    assert panel.audition(take.id)
    assert any(t.name == "audition-feeder" for t in threading.enumerate())
    window.close()
    assert panel.audition_player is None
    assert not any(t.name == "audition-feeder" for t in threading.enumerate())


def test_audition_needs_a_source() -> None:
    with pytest.raises(ValueError, match="at least one source"):
        Audition([])


@pytest.mark.device
def test_audition_plays_through_a_real_device(
    virtual_audio: object, window: Any, qtbot: Any
) -> None:
    panel = panel_of(window)
    take = make_take(tone(220, 0.5), 440, 0.3)
    window.takes.add(take)
    assert panel.audition(take.id), panel.playing_label.text()
    player = panel.audition_player
    assert player is not None
    _wait_or_report(qtbot, panel, player)  # played, cleaned up
    assert player.player.position == take.output.frames  # 0.5 s of prompt tail + 0.3 s
    assert player.player.callback_errors == 0
    assert not any(t.name == "audition-feeder" for t in threading.enumerate())


def _wait_or_report(qtbot: Any, panel: Any, player: Any) -> None:
    """Wait until the audition ended and cleaned up; say where playback stood if it did not."""
    try:
        qtbot.waitUntil(lambda: panel.audition_player is None, timeout=10_000)
    except Exception:
        p = player.player
        raise AssertionError(
            f"audition did not end: position {p.position}, underruns "
            f"{getattr(p, 'underruns', '?')}, errors {p.callback_errors}, "
            f"label {panel.playing_label.text()!r}"
        ) from None


def test_typing_a_take_name_does_not_trigger_single_key_shortcuts(
    window: Any, monkeypatch: pytest.MonkeyPatch, qtbot: Any
) -> None:
    from PySide6.QtWidgets import QApplication, QLineEdit

    panel = panel_of(window)
    take = make_take(tone(220, 0.3), 440, 0.3, name="T")
    window.takes.add(take)
    calls: list[str] = []
    if window.recording_panel is not None:
        monkeypatch.setattr(window.recording_panel, "toggle_record", lambda: calls.append("R"))
    panel.ab_shortcut.activated.connect(lambda: calls.append("B"))
    for shortcut in panel.pick_shortcuts:
        shortcut.activated.connect(lambda: calls.append("digit"))
    window.activateWindow()
    qtbot.waitUntil(window.isActiveWindow, timeout=2000)
    panel.select(take.id)
    panel.rename_button.click()
    qtbot.waitUntil(lambda: isinstance(QApplication.focusWidget(), QLineEdit), timeout=2000)
    editor = QApplication.focusWidget()
    assert isinstance(editor, QLineEdit)
    editor.selectAll()
    qtbot.keyClicks(editor, "rb 1")  # R records, B switches, 1 picks: not while typing
    qtbot.keyClick(editor, Qt.Key.Key_Return)  # the delegate commits in a queued call
    qtbot.waitUntil(lambda: window.takes.get(take.id).name == "rb 1", timeout=2000)
    assert calls == []
