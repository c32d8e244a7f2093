"""Project files (JSON + audio), autosave, and crash recovery: no edit or take is ever lost."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from editor_support import make_clip, new_window, same_bits, thread_names

from audiogen_studio.app import project
from audiogen_studio.app.project import (
    AutosaveSession,
    ProjectError,
    ProjectState,
    data_dir,
    find_recoverable,
    is_exact_24bit,
    load_project,
    save_project,
)
from audiogen_studio.app.takes_model import TakeRecord, new_take_id
from audiogen_studio.audio import edit
from audiogen_studio.audio.clip import Clip


def _take(seconds: float, *, seed: int, quantized: bool = False, name: str = "") -> TakeRecord:
    clip = make_clip(seconds, channels=1, seed=seed)
    if quantized:  # 24-bit values: stored as FLAC, still exact
        clip = Clip(np.round(clip.samples * 2**23) / 2**23, clip.rate)
    return TakeRecord(
        id=new_take_id(),
        name=name or f"Take {seed}",
        output=clip,
        prompt_frames=800,
        prompt_range=(100, 900),
        provenance={"engine": "wavenet", "model": "tiny", "seed": seed, "temperature": 0.9},
        kept=seed % 2 == 0,
    )


def _assert_same_state(a: ProjectState, b: ProjectState) -> None:
    assert (a.clip is None) == (b.clip is None)
    if a.clip is not None and b.clip is not None:
        assert a.clip.rate == b.clip.rate and same_bits(a.clip.samples, b.clip.samples)
    assert len(a.takes) == len(b.takes)
    for x, y in zip(a.takes, b.takes, strict=True):
        assert (x.id, x.name, x.prompt_frames, x.prompt_range, x.kept) == (
            y.id, y.name, y.prompt_frames, y.prompt_range, y.kept,
        )  # fmt: skip
        assert x.provenance == y.provenance and x.created == y.created
        assert x.output.rate == y.output.rate and same_bits(x.output.samples, y.output.samples)


# -- the file format -------------------------------------------------------------------------


def test_save_load_round_trip_is_exact(tmp_path: Path) -> None:
    clip = edit.gain(make_clip(1.5), 9.0)  # beyond full scale: must survive unclipped
    assert clip.peak > 1.0
    state = ProjectState(
        clip=clip,
        takes=(_take(0.5, seed=1), _take(0.4, seed=2, quantized=True)),
        clip_token="abc",
        selection=(10, 500),
        cursor=10,
        view=(0.25, 1.0),
        source_path="/music/riff.wav",
        settings={"spectrogram_scale": "mel", "colormap": "viridis"},
    )
    written = save_project(tmp_path / "song", state)
    assert written == tmp_path / "song.agsproj"
    files = sorted(p.name for p in data_dir(written).iterdir())
    assert files[0] == "clip-abc.wav"  # the edited clip: float WAV
    take_files = {Path(f).suffix for f in files[1:]}
    assert take_files == {".wav", ".flac"}  # FLAC only where it is lossless
    doc = json.loads(written.read_text())
    assert doc["format"] == 1 and doc["app"] == "audiogen-studio"
    loaded = load_project(written)
    _assert_same_state(state, loaded)
    assert loaded.selection == (10, 500) and loaded.cursor == 10 and loaded.view == (0.25, 1.0)
    assert loaded.source_path == "/music/riff.wav" and loaded.clip_token == "abc"
    assert dict(loaded.settings) == {"spectrogram_scale": "mel", "colormap": "viridis"}


def test_saving_again_writes_only_what_changed(tmp_path: Path) -> None:
    take = _take(0.3, seed=4)
    state = ProjectState(clip=make_clip(0.5), takes=(take,), clip_token="one")
    path = save_project(tmp_path / "p.agsproj", state)
    folder = data_dir(path)
    stamps = {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}
    save_project(path, state)
    assert {p.name: p.stat().st_mtime_ns for p in folder.iterdir()} == stamps
    # a new clip state gets a new file; the old one is removed once the JSON points away
    edited = ProjectState(clip=edit.silence(state.clip, 0, 100), takes=(), clip_token="two")
    save_project(path, edited)
    assert sorted(p.name for p in folder.iterdir()) == ["clip-two.wav"]
    _assert_same_state(edited, load_project(path))


def test_a_failed_save_leaves_the_previous_project_intact(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = ProjectState(clip=make_clip(0.5), takes=(_take(0.2, seed=1),), clip_token="a")
    path = save_project(tmp_path / "p.agsproj", first)

    def crash(target: Path, data: bytes) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(project, "_write_atomic", crash)
    second = ProjectState(clip=make_clip(0.7, seed=5), takes=(), clip_token="b")
    with pytest.raises(ProjectError, match="disk full"):
        save_project(path, second)
    monkeypatch.undo()
    _assert_same_state(first, load_project(path))  # the old JSON and all its audio are there


def test_bad_projects_are_clear_errors(tmp_path: Path) -> None:
    path = save_project(tmp_path / "p.agsproj", ProjectState(clip=make_clip(0.2), clip_token="x"))
    doc = json.loads(path.read_text())
    doc["format"] = 2
    newer = tmp_path / "newer.agsproj"
    newer.write_text(json.dumps(doc))
    with pytest.raises(ProjectError, match="newer"):
        load_project(newer)
    (data_dir(path) / "clip-x.wav").unlink()
    with pytest.raises(ProjectError, match="clip-x.wav is missing"):
        load_project(path)
    junk = tmp_path / "junk.agsproj"
    junk.write_text("{not json")
    with pytest.raises(ProjectError, match="not a readable project"):
        load_project(junk)
    with pytest.raises(ProjectError, match="not found"):
        load_project(tmp_path / "absent.agsproj")
    other = tmp_path / "other.agsproj"
    other.write_text(json.dumps({"format": 1, "app": "something else"}))
    with pytest.raises(ProjectError, match="not an AudioGen Studio project"):
        load_project(other)


def test_exact_24bit_check() -> None:
    k = np.array([[-(2**23), -1, 0, 1, 2**23 - 1]], dtype=np.float64)
    assert is_exact_24bit((k / 2**23).astype(np.float32))
    assert not is_exact_24bit(np.array([[1.0]], np.float32))  # FLAC-24 would clip it
    assert not is_exact_24bit(np.array([[0.1]], np.float32))
    assert is_exact_24bit(np.zeros((2, 0), np.float32))


# -- autosave sessions -----------------------------------------------------------------------


def test_sessions_hold_a_lock_and_clean_up(tmp_path: Path) -> None:
    root = tmp_path / "recovery"
    session = AutosaveSession(root)
    state = ProjectState(clip=make_clip(0.2), clip_token="t")
    session.write(state, title="riff.wav", project_path=None)
    assert session.project_file.is_file()
    assert find_recoverable(root) == []  # alive: its lock is held
    session.close()
    assert not session.folder.exists() and find_recoverable(root) == []
    crashed = AutosaveSession(root)
    crashed.write(state, title="riff.wav", project_path=tmp_path / "riff.agsproj")
    crashed.abandon()  # what a crash leaves: files, no lock
    (info,) = find_recoverable(root)
    assert info.folder == crashed.folder and info.title == "riff.wav"
    assert info.project_path == tmp_path / "riff.agsproj" and "riff.wav" in info.describe()
    _assert_same_state(state, load_project(info.project_file))
    assert project.discard_recovery(info) and find_recoverable(root) == []


# -- the window ------------------------------------------------------------------------------


def test_project_round_trip_through_the_window(qtbot: Any, tmp_path: Path) -> None:
    window = new_window(qtbot, tmp_path)
    window.set_clip(make_clip(1.0))
    window.set_selection(1000, 5000)
    window.gain(3.0)
    window.takes.add(_take(0.3, seed=1))
    window.takes.add(_take(0.2, seed=2, quantized=True))
    window.set_visible_range(0.1, 0.6)
    window.set_colormap("magma")
    assert window.is_modified()
    assert window.save_project(tmp_path / "session.agsproj")
    assert not window.is_modified() and "session.agsproj" in window.windowTitle()
    saved = window.snapshot()
    other = new_window(qtbot, tmp_path)
    assert other.open_file(tmp_path / "session.agsproj")  # open accepts projects too
    _assert_same_state(saved, other.snapshot())
    assert other.selection() == (1000, 5000)
    assert other.visible_range() == pytest.approx((0.1, 0.6))
    assert other.spectrogram.colormap == "magma"
    assert not other.is_modified() and other.project_path == tmp_path / "session.agsproj"
    assert str((tmp_path / "session.agsproj").resolve()) in other.recent_files()
    # Ctrl+S saves to the same project
    other.silence()
    assert other.save_project() and not other.is_modified()
    _assert_same_state(other.snapshot(), load_project(tmp_path / "session.agsproj"))


def test_edits_and_takes_are_autosaved_after_a_short_delay(qtbot: Any, tmp_path: Path) -> None:
    window = new_window(qtbot, tmp_path, autosave_delay=0.05)
    session = window.autosave_session
    window.set_clip(make_clip(0.5))
    qtbot.waitUntil(lambda: session.writes >= 1, timeout=5000)
    window.set_selection(0, 100)
    window.cut()
    window.takes.add(_take(0.2, seed=3))
    qtbot.waitUntil(lambda: session.writes >= 2, timeout=5000)
    window._autosave_wait()
    _assert_same_state(window.snapshot(), load_project(session.project_file))
    assert any(name.startswith("autosave") for name in thread_names())
    # saving the project makes the autosave redundant: it is removed
    assert window.save_project(tmp_path / "p.agsproj")
    assert not session.folder.exists()
    window.close()
    assert not any(name.startswith("autosave") for name in thread_names())


def test_crash_recovery_restores_every_edit_and_take(qtbot: Any, tmp_path: Path) -> None:
    root = tmp_path / "recovery"
    crashed = new_window(qtbot, tmp_path)
    crashed.set_clip(make_clip(1.0))
    crashed.set_selection(2000, 4000)
    crashed.fade_out()
    crashed.takes.add(_take(0.3, seed=1, name="keeper"))
    assert crashed.save_project(tmp_path / "song.agsproj")
    crashed.normalize(-2.0)  # unsaved after the last save
    crashed.takes.add(_take(0.2, seed=2))
    crashed.autosave_now(wait=True)
    expected = crashed.snapshot()
    # simulate a crash: the lock goes away with the process, the autosave stays
    crashed.autosave_session.abandon()
    crashed.autosave_session = AutosaveSession(tmp_path / "elsewhere")
    asked: list[int] = []

    def restore(infos: list[Any]) -> str:
        asked.append(len(infos))
        return "restore"

    window = new_window(qtbot, tmp_path, recovery_prompt=restore)
    assert window.check_recovery()
    assert asked == [1]
    _assert_same_state(expected, window.snapshot())
    assert window.selection() == (2000, 4000)
    assert window.is_modified() and window.project_path == tmp_path / "song.agsproj"
    # the restored work is now this session's autosave; the crashed copy is gone
    assert find_recoverable(root) == []
    _assert_same_state(expected, load_project(window.autosave_session.project_file))
    assert not window.check_recovery()  # once per window


@pytest.mark.parametrize("answer", ["later", "discard"])
def test_declined_recovery(qtbot: Any, tmp_path: Path, answer: str) -> None:
    root = tmp_path / "recovery"
    session = AutosaveSession(root)
    session.write(ProjectState(clip=make_clip(0.2), clip_token="z"), title="x", project_path=None)
    session.abandon()
    window = new_window(qtbot, tmp_path, recovery_prompt=lambda infos: answer)
    qtbot.waitUntil(lambda: window._recovery_checked, timeout=2000)  # runs by itself at start
    assert window.clip is None
    assert len(find_recoverable(root)) == (1 if answer == "later" else 0)


def test_clean_close_leaves_nothing_to_recover(qtbot: Any, tmp_path: Path) -> None:
    window = new_window(qtbot, tmp_path, unsaved_prompt=lambda name: "discard")
    window.set_clip(make_clip(0.3))
    window.silence()
    window.autosave_now(wait=True)
    folder = window.autosave_session.folder
    assert folder.is_dir()
    window.close()
    assert not folder.exists() and find_recoverable(tmp_path / "recovery") == []
