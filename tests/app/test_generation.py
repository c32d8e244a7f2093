"""Generation in the app: a tiny WaveNet (trained in seconds) streams into the session's takes.

The worker runs on the window's one generation thread; playback goes into a ring buffer that a
player would read. Without ``device`` tests no PortAudio stream opens: ``Player.start`` is
patched (a no-op, or a device error).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PySide6.QtCore import QPointF, Qt
from PySide6.QtGui import QDropEvent

from audiogen_studio.audio import devices
from audiogen_studio.audio.clip import Clip
from audiogen_studio.audio.errors import AudioDeviceError

RATE = 16000


def two_tone(seconds: float, channels: int = 1) -> Clip:
    t = np.arange(round(seconds * RATE)) / RATE
    x = 0.3 * np.sin(2 * np.pi * 440.0 * t) + 0.3 * np.sin(2 * np.pi * 1100.0 * t + 1.0)
    gains = (0.9 ** np.arange(channels))[:, None]  # channels differ, so order is checked
    return Clip((gains * x[None, :]).astype(np.float32), RATE)


@pytest.fixture
def tiny_models(tiny_wavenet_models: Path) -> Path:
    """A folder holding one tiny two-tone WaveNet bundle named ``tiny`` (tests/conftest.py)."""
    return tiny_wavenet_models


@pytest.fixture
def models_env(tiny_models: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point the model search path at the tiny bundle (overrides conftest's empty folder)."""
    monkeypatch.setenv("AUDIOGEN_MODELS", str(tiny_models))
    return tiny_models


@pytest.fixture
def no_stream(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """``Player.start`` opens no stream; returns the players that were started."""
    started: list[Any] = []
    monkeypatch.setattr(devices.Player, "start", lambda self: started.append(self))
    return started


def _window(make_window: Callable[[], Any], prompt: Clip) -> Any:
    window = make_window()
    window.show()
    window.set_clip(prompt)
    return window


def test_generate_streams_progress_and_records_the_take(
    models_env: Path, no_stream: list[Any], make_window: Callable[[], Any], qtbot: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    clip = two_tone(0.75, channels=2)
    window = _window(make_window, clip)
    monkeypatch.setattr(window, "selection", lambda: (2000, 10000))  # the prompt
    panel = window.generation_panel
    assert panel.engine.key == "wavenet"  # the first engine with an installed model
    assert panel.model_combo.isEnabled() and panel.model_combo.currentText().startswith("tiny")
    panel.seconds_spin.setValue(0.6)
    panel.seed_spin.setValue(7)
    panel.temperature_spin.setValue(0.8)
    panel.top_k_spin.setValue(50)
    panel.top_p_spin.setValue(0.95)
    progress: list[tuple[float, float, float]] = []
    window.generation.progress.connect(lambda *a: progress.append(a))
    worker_threads: set[int] = set()
    window.generation.worker.chunk_ready.connect(
        lambda *_: worker_threads.add(threading.get_ident()), Qt.ConnectionType.DirectConnection
    )
    # the first generation of a fresh checkout also compiles the fused WaveNet kernels (numba's
    # on-disk cache is empty): on a loaded 2-core machine that took over 60 s once
    with qtbot.waitSignal(window.generation.finished, timeout=180_000) as blocker:
        panel.generate_button.click()
        assert not panel.generate_button.isEnabled() and panel.stop_button.isEnabled()
    result = blocker.args[0]
    # generation ran on the generation thread, never on the GUI thread
    assert worker_threads and threading.get_ident() not in worker_threads
    # progress: increasing seconds up to the requested total, with a real-time factor
    assert len(progress) >= 5
    done = [p[0] for p in progress]
    assert done == sorted(done) and done[-1] == pytest.approx(0.6)
    assert all(p[1] == pytest.approx(0.6) and p[2] > 0 for p in progress)
    # the engine's take: the exact selected samples, then 0.6 s, in the prompt's channels
    (take,) = result.takes
    assert take.complete and take.seed == 7
    out = take.output
    assert out.channels == 2 and out.frames == 8000 + round(0.6 * RATE)
    np.testing.assert_array_equal(out.samples[:, :8000], clip.samples[:, 2000:10000])
    assert float(np.abs(out.samples[:, 8000:]).max()) > 0.05  # not silence
    # take 0 was streamed into the player's ring, converted to the prompt's channel count
    (player,) = no_stream
    assert player.rate == RATE and player.channels == 2
    assert player.buffer.write_pos == round(0.6 * RATE) and player.buffer.closed
    # the live view shows the whole continuation of take 0
    live = panel.live_view.clip
    assert live is not None and live.channels == 2
    np.testing.assert_array_equal(live.samples, out.samples[:, 8000:])
    # the session's takes hold it with its provenance
    (record,) = list(window.takes)
    assert record.output.equals(out) and record.prompt_frames == 8000
    assert record.prompt_range == (2000, 10000) and record.name == "Take 1"
    p = record.provenance
    assert p["engine"] == "wavenet" and p["model"] == "tiny" and p["model_version"] == "1.0.0"
    assert (p["seed"], p["temperature"], p["top_k"], p["top_p"]) == (7, 0.8, 50, 0.95)
    assert p["seconds"] == pytest.approx(0.6) and p["generated_seconds"] == pytest.approx(0.6)
    assert p["device"] == "auto" and p["device_used"] == "cpu"
    assert p["rtf"] == pytest.approx(result.rtf, abs=1e-4) and p["rtf"] > 0
    assert p["complete"] is True and p["prompt_range"] == [2000, 10000]
    assert p["adapt_steps"] is None and not panel.adapt_spin.isEnabled()  # WaveNet: no LMs
    assert p["level_match"] is None and not panel.level_check.isEnabled()
    assert p["time"][:4].isdigit() and abs(record.created - time.time()) < 60
    assert json.loads(json.dumps(p)) == p  # JSON-ready for the project file
    assert "0.6 / 0.6 s · RTF" in panel.progress_bar.format()
    assert "selection 0.12–0.62 s" in panel.prompt_label.text()
    assert panel.generate_button.isEnabled() and not panel.stop_button.isEnabled()
    # the takes panel lists and selects it; "Insert after prompt" puts the continuation after
    # the selection, as one undo step
    takes_panel = window.takes_panel
    assert takes_panel.table.rowCount() == 1 and takes_panel.selected_ids() == [record.id]
    assert "seed 7" in takes_panel.details.text()
    takes_panel.insert_button.click()
    expected = np.concatenate(
        [clip.samples[:, :10000], out.samples[:, 8000:], clip.samples[:, 10000:]], axis=1
    )
    np.testing.assert_array_equal(window.clip.samples, expected)
    window.undo_stack.undo()
    np.testing.assert_array_equal(window.clip.samples, clip.samples)
    # the take landed in the take library by itself, with its provenance and exact audio
    dock, library = window.library_dock, window.library
    assert dock is not None and library is not None
    dock.wait_idle()
    entry = library.get(record.id)
    assert (entry.engine, entry.model, entry.seed, entry.name) == ("wavenet", "tiny", 7, "Take 1")
    assert entry.settings["temperature"] == 0.8
    stored = library.audio(record.id)
    np.testing.assert_allclose(stored.samples, out.samples, atol=1e-4)  # 24-bit FLAC
    prompt_entry = library.prompt(entry.prompt_id)
    assert prompt_entry.range == (2000, 10000) and prompt_entry.frames == 8000
    # dragging it from the Library dock into the waveform inserts it there, one undo step
    qtbot.waitUntil(lambda: dock.model.rowCount() == 1, timeout=5000)
    mime = dock.model.mimeData([dock.model.index(0)])
    target = window.waveform
    point = target.mapTo(window, target.rect().center())
    drop = QDropEvent(
        QPointF(point),
        Qt.DropAction.CopyAction,
        mime,
        Qt.MouseButton.LeftButton,
        Qt.KeyboardModifier.NoModifier,
    )
    window.dropEvent(drop)
    assert drop.isAccepted()
    qtbot.waitUntil(lambda: window.clip.frames == clip.frames + out.frames, timeout=5000)
    assert window.undo_stack.undoText().startswith("Insert library take")
    window.undo_stack.undo()
    np.testing.assert_array_equal(window.clip.samples, clip.samples)


def test_stop_keeps_a_partial_take_quickly(
    models_env: Path, no_stream: list[Any], make_window: Callable[[], Any], qtbot: Any
) -> None:
    window = _window(make_window, two_tone(0.5))
    panel = window.generation_panel
    panel.seconds_spin.setValue(60.0)
    panel.takes_spin.setValue(2)
    window.generation.chunk_ready.connect(lambda *_: panel.stop_button.click())
    started = time.perf_counter()
    with qtbot.waitSignal(window.generation.finished, timeout=60_000) as blocker:
        panel.generate_button.click()
    elapsed = time.perf_counter() - started
    result = blocker.args[0]
    assert result.cancelled and len(result.takes) == 2
    assert all(not t.complete for t in result.takes)
    assert all(0 < t.generated.frames < 10 * RATE for t in result.takes)
    assert elapsed < 20  # 60 s were asked for; stop took effect after the first chunks
    records = list(window.takes)
    assert [r.name for r in records] == ["Take 1", "Take 2"]
    assert all(r.provenance["complete"] is False for r in records)
    assert [r.provenance["take_index"] for r in records] == [0, 1]
    assert all(
        r.continuation.frames == t.generated.frames
        for r, t in zip(records, result.takes, strict=True)
    )
    assert "partial" in records[0].describe()
    assert "stopped early" in panel.status_label.text()
    assert not window.generation.busy and panel.generate_button.isEnabled()


def test_error_arrives_as_failed_and_the_ui_recovers(
    models_env: Path, no_stream: list[Any], make_window: Callable[[], Any], qtbot: Any
) -> None:
    window = _window(make_window, Clip(np.zeros((1, RATE // 2), dtype=np.float32), RATE))
    panel = window.generation_panel
    panel.seconds_spin.setValue(0.2)
    with qtbot.waitSignal(window.generation.failed, timeout=60_000) as blocker:
        panel.generate_button.click()
    assert "silent" in blocker.args[0]
    assert "silent" in panel.status_label.text()
    assert "silent" in window.statusBar().currentMessage()
    assert len(window.takes) == 0
    assert panel.generate_button.isEnabled() and not panel.stop_button.isEnabled()
    # usable again: the next request with a real prompt succeeds
    window.set_clip(two_tone(0.4))
    with qtbot.waitSignal(window.generation.finished, timeout=60_000):
        panel.generate_button.click()
    assert len(window.takes) == 1


def test_no_output_device_still_generates(
    models_env: Path,
    monkeypatch: pytest.MonkeyPatch,
    make_window: Callable[[], Any],
    qtbot: Any,
) -> None:
    def refuse(self: Any) -> None:
        raise AudioDeviceError("no output device: none found")

    monkeypatch.setattr(devices.Player, "start", refuse)
    window = _window(make_window, two_tone(0.4))
    panel = window.generation_panel
    panel.seconds_spin.setValue(0.3)
    messages: list[str] = []
    window.generation.playback_unavailable.connect(messages.append)
    with qtbot.waitSignal(window.generation.finished, timeout=60_000) as blocker:
        panel.generate_button.click()
    assert messages and messages[0].startswith("playback unavailable: no output device")
    (take,) = blocker.args[0].takes
    assert take.complete and take.generated.frames == round(0.3 * RATE)
    assert window.generation.worker.player is None


def test_no_models_disables_generate(make_window: Callable[[], Any]) -> None:
    window = make_window()
    panel = window.generation_panel
    assert panel.model_combo.currentText() == "No AudioLM models installed"
    assert not panel.model_combo.isEnabled() and not panel.generate_button.isEnabled()
    assert "train" in panel.model_info.text()
    assert not panel.generate()
    assert "No model installed for AudioLM continuation" in panel.status_label.text()


def test_engines_list_only_their_kinds(models_env: Path, make_window: Callable[[], Any]) -> None:
    panel = make_window().generation_panel
    assert [panel.engine_combo.itemText(i) for i in range(3)] == [
        "AudioLM continuation", "WaveNet continuation", "WaveNet vocoding of the selection",
    ]  # fmt: skip
    assert panel.model_combo.isEnabled()
    for key in ("wavenet-vocoder", "audiolm"):  # the tiny bundle is a WaveNet continuation model
        panel.set_engine(key)
        assert panel.engine.key == key and not panel.model_combo.isEnabled()
        assert not panel.generate_button.isEnabled()
    assert panel.mode == "continue"
    panel.set_engine("wavenet")
    assert panel.generate_button.isEnabled() and panel.bundle is not None
    with pytest.raises(KeyError, match="unknown engine"):
        panel.set_engine("musiclm")


def test_model_card_is_shown(models_env: Path, make_window: Callable[[], Any]) -> None:
    panel = make_window().generation_panel
    info = panel.model_info.text()
    assert "wavenet, 16000 Hz" in info and "val_loss" in info
    card = panel.model_combo.itemData(panel.model_combo.currentIndex(), Qt.ItemDataRole.ToolTipRole)
    assert card == panel.model_combo.toolTip() == panel.model_info.toolTip()
    for text in ("<b>tiny 1.0.0</b>", "unconditional WaveNet", "Training", "steps", "Metrics",
                 "receptive_field"):  # fmt: skip
        assert text in card
    assert panel.select_model("tiny") and not panel.select_model("nope")
    assert panel.select_model(str(models_env / "tiny"))
    panel.set_engine("audiolm")  # a WaveNet bundle: the engine follows unless told not to
    assert not panel.select_model("tiny", switch_engine=False) and panel.engine.key == "audiolm"
    assert panel.select_model("tiny") and panel.engine.key == "wavenet"
    assert panel.bundle is not None and panel.bundle.name == "tiny"


def _audiolm_models(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    generation: dict[str, Any],
    *,
    chroma: bool = False,
) -> None:
    """Point the model search path at one random AudioLM bundle (tests/engine/audiolm_stack.py)
    with ``generation`` as its bundle.json generation settings (``chroma``: a music bundle's
    tokenizer)."""
    import sys

    sys.path.insert(0, str(Path(__file__).parents[1] / "engine"))
    from audiolm_stack import random_audiolm_bundle

    folder = random_audiolm_bundle(tmp_path / "models" / "random-audiolm", chroma=chroma)
    data = json.loads((folder / "bundle.json").read_text())
    data["generation"] = generation
    (folder / "bundle.json").write_text(json.dumps(data))
    monkeypatch.setenv("AUDIOGEN_MODELS", str(tmp_path / "models"))


def test_audiolm_prompt_adaptation_follows_the_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, make_window: Callable[[], Any]
) -> None:
    generation = {
        "adaptation": {"steps": 6, "lr": 1e-3},
        "rank_by": "voice",
        "candidates": 3,
        "level_match": True,
    }
    _audiolm_models(tmp_path, monkeypatch, generation)
    window = _window(make_window, two_tone(0.5))
    panel = window.generation_panel
    assert panel.engine.key == "audiolm" and panel.bundle is not None
    assert panel.adapt_spin.isEnabled() and panel.adapt_spin.value() == 6  # the model's default
    # candidate beginnings: the model ranks them, so the spin box is on, at its default
    assert panel.candidates_spin.isEnabled() and panel.candidates_spin.value() == 3
    assert panel.level_check.isEnabled() and panel.level_check.isChecked()  # its default
    assert panel.rank_combo.isEnabled() and panel.rank_combo.currentData() == "voice"
    assert not panel.beat_check.isEnabled()  # its semantic tokens carry no onsets
    from audiogen_studio.engine.api import ASPECTS

    offered = [panel.rank_combo.itemData(i) for i in range(panel.rank_combo.count())]
    assert offered == list(ASPECTS)  # every aspect the engine knows
    requests: list[Any] = []
    monkeypatch.setattr(  # the stand-in keeps the request and says it started
        window.generation, "generate", lambda request, *a: requests.append(request) or True
    )
    panel.adapt_spin.setValue(0)
    assert panel.adapt_spin.text() == "off"
    panel.generate()
    assert panel.progress_bar.format() == "starting, then choosing among 3 beginnings…"
    panel.adapt_spin.setValue(9)
    panel.candidates_spin.setValue(1)
    assert panel.candidates_spin.text() == "off"
    panel.level_check.setChecked(False)
    panel.rank_combo.setCurrentIndex(panel.rank_combo.findData("pitch+rhythm"))
    panel.generate()
    assert [r.adapt_steps for r in requests] == [0, 9]
    assert [r.candidates for r in requests] == [3, 1]
    assert [r.level_match for r in requests] == [True, False]
    assert [r.rank_by for r in requests] == ["voice", "pitch+rhythm"]
    assert [r.beat_guidance for r in requests] == [None, None]


def test_a_music_models_beat_guidance_follows_the_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, make_window: Callable[[], Any]
) -> None:
    _audiolm_models(tmp_path, monkeypatch, {"beat_guidance": True}, chroma=True)
    window = _window(make_window, two_tone(0.5))
    panel = window.generation_panel
    assert panel.beat_check.isEnabled() and panel.beat_check.isChecked()  # its default
    requests: list[Any] = []
    monkeypatch.setattr(
        window.generation, "generate", lambda request, *a: requests.append(request) or True
    )
    panel.generate()
    panel.beat_check.setChecked(False)
    panel.generate()
    assert [r.beat_guidance for r in requests] == [True, False]


def _adapting_window(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    make_window: Callable[[], Any],
    steps: int,
    *,
    hold_first: bool = False,
) -> tuple[Any, list[int]]:
    """A window with a random AudioLM bundle that adapts ``steps`` steps to each prompt, and
    the count of adaptations its engines ran (``adapt_copy`` calls, on the worker thread).
    With ``hold_first`` the first adaptation waits until it is cancelled (up to 30 s), so a
    test can change the prompt while it runs."""
    from audiogen_studio.engine import audiolm_pipeline

    _audiolm_models(tmp_path, monkeypatch, {"adaptation": {"steps": steps, "lr": 1e-3}})
    calls: list[int] = []
    real = audiolm_pipeline.adapt_copy

    def counting(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if hold_first and len(calls) == 1:
            deadline = time.perf_counter() + 30
            while not kwargs["should_stop"]() and time.perf_counter() < deadline:
                time.sleep(0.01)
        return real(*args, **kwargs)

    monkeypatch.setattr(audiolm_pipeline, "adapt_copy", counting)
    noise = np.random.default_rng(0).uniform(-0.3, 0.3, (1, round(0.8 * RATE)))
    # noise: every selection has other tokens (a steady tone would give the same ones)
    return _window(make_window, Clip(noise.astype(np.float32), RATE)), calls


def test_the_prompt_is_adapted_to_before_generate(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    no_stream: list[Any],
    make_window: Callable[[], Any],
    qtbot: Any,
) -> None:
    window, calls = _adapting_window(tmp_path, monkeypatch, make_window, steps=3)
    panel = window.generation_panel
    controller = window.generation
    # the prompt settles: the generation thread adapts the model to it, unasked
    with qtbot.waitSignal(controller.prepared, timeout=60_000) as prepared:
        pass
    report = prepared.args[0]
    assert report.ready and not report.cancelled and report.request.adapt_steps == 3
    assert len(calls) == 1 and panel.progress_bar.format().startswith("ready: adapted")
    # a new selection is a new prompt: prepared again once it settles
    window.set_selection(0, 8000)
    with qtbot.waitSignal(controller.prepared, timeout=60_000) as prepared:
        pass
    assert prepared.args[0].ready and prepared.args[0].request.prompt.frames == 8000
    assert len(calls) == 2
    # Generate of the prepared prompt starts without adapting again
    panel.seconds_spin.setValue(0.3)
    with qtbot.waitSignal(controller.finished, timeout=60_000) as finished:
        assert panel.generate()
        assert panel.progress_bar.format() == "starting…"
    assert finished.args[0].takes[0].complete and len(calls) == 2
    qtbot.wait(3 * 250)  # nothing changed: nothing more is prepared
    assert len(calls) == 2
    # with adaptation off there is nothing to prepare
    panel.adapt_spin.setValue(0)
    window.set_selection(0, 4000)
    qtbot.wait(1500)
    assert len(calls) == 2


def test_a_changed_prompt_cancels_its_preparation(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    no_stream: list[Any],
    make_window: Callable[[], Any],
    qtbot: Any,
) -> None:
    from audiogen_studio.engine.api import MAX_ADAPT_STEPS

    window, calls = _adapting_window(
        tmp_path, monkeypatch, make_window, MAX_ADAPT_STEPS, hold_first=True
    )
    controller = window.generation
    qtbot.waitUntil(lambda: len(calls) == 1, timeout=60_000)  # adapting to the whole clip
    started = time.perf_counter()
    with qtbot.waitSignal(controller.prepared, timeout=60_000) as prepared:
        window.set_selection(0, 8000)
    assert prepared.args[0].cancelled and not prepared.args[0].ready
    assert time.perf_counter() - started < 5  # noticed within a few polls
    # the new prompt is being prepared (1000 steps); closing the window cancels that too
    qtbot.waitUntil(lambda: len(calls) == 2, timeout=60_000)
    thread = controller.worker_thread
    started = time.perf_counter()
    window.close()
    assert thread.isFinished() and time.perf_counter() - started < 10


def test_device_menu_offers_what_torch_has(make_window: Callable[[], Any], qtbot: Any) -> None:
    import torch

    window = make_window()
    panel = window.generation_panel
    with qtbot.waitSignal(window.generation.devices_found, timeout=30_000):
        window.show()  # the first show asks the generation thread which devices exist
    offered = [panel.device_combo.itemData(i) for i in range(panel.device_combo.count())]
    expected = ["auto", "cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    backend = getattr(torch.backends, "mps", None)
    expected += ["mps"] if backend is not None and backend.is_available() else []
    assert offered == expected and panel.device == "auto"


def test_new_seed_changes_the_seed(make_window: Callable[[], Any]) -> None:
    panel = make_window().generation_panel
    seen = {panel.seed_spin.value()}
    for _ in range(3):
        panel.new_seed_button.click()
        seen.add(panel.seed_spin.value())
    assert len(seen) >= 3


def test_closing_the_window_stops_the_generation_thread(
    models_env: Path, no_stream: list[Any], make_window: Callable[[], Any], qtbot: Any
) -> None:
    window = _window(make_window, two_tone(0.5))
    thread = window.generation.worker_thread
    assert thread.isRunning()
    panel = window.generation_panel
    panel.seconds_spin.setValue(60.0)
    with qtbot.waitSignal(window.generation.chunk_ready, timeout=60_000):
        panel.generate_button.click()
    started = time.perf_counter()
    window.close()  # mid-generation: cancels, quits and waits for the thread
    assert thread.isFinished()
    assert time.perf_counter() - started < 10


@pytest.mark.device
def test_continuation_plays_while_it_is_generated(
    virtual_audio: object, models_env: Path, make_window: Callable[[], Any], qtbot: Any
) -> None:
    window = _window(make_window, two_tone(0.5))
    panel = window.generation_panel
    panel.seconds_spin.setValue(2.0)
    worker = window.generation.worker
    seen: list[tuple[Any, int]] = []
    worker.chunk_ready.connect(
        lambda *_: seen.append((worker.player, worker.player.position if worker.player else -1)),
        Qt.ConnectionType.DirectConnection,
    )
    with qtbot.waitSignal(window.generation.finished, timeout=60_000):
        panel.generate_button.click()
    player = seen[0][0]
    assert player is not None, panel.status_label.text()
    # audio was handed to the device before the last chunk was generated
    assert max(pos for _, pos in seen[:-1]) > 0
    assert player.finished.wait(10.0)
    assert player.position == round(2.0 * RATE)
    assert player.callback_errors == 0


def test_takes_are_ranked_by_how_well_they_match_the_prompt(
    tiny_models: Path, no_stream: list[Any], make_window: Callable[[], Any], qtbot: Any,
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    import shutil

    from audiogen_studio.engine import model_card

    models = tmp_path / "ranked-models"
    shutil.copytree(tiny_models / "tiny", models / "tiny")
    model_card.update_bundle(models / "tiny", rank_by="voice")
    monkeypatch.setenv("AUDIOGEN_MODELS", str(models))
    window = _window(make_window, two_tone(0.75))
    panel = window.generation_panel
    panel.seconds_spin.setValue(0.4)
    # a continuation model that ranks its takes: candidate beginnings are offered too
    assert panel.candidates_spin.isEnabled() and panel.candidates_spin.value() == 1
    panel.takes_spin.setValue(3)
    panel.temperature_spin.setValue(1.0)
    with qtbot.waitSignal(window.generation.finished, timeout=60_000) as blocker:
        panel.generate_button.click()
    result = blocker.args[0]
    assert result.rank_by == "voice" and sorted(result.matches) == [0, 1, 2]
    records = list(window.takes)
    by_index = {r.provenance["take_index"]: r for r in records}
    ranks = {i: r.provenance["match_rank"] for i, r in by_index.items()}
    expected = sorted(result.matches, key=lambda i: -result.matches[i])
    assert [i for i, _ in sorted(ranks.items(), key=lambda kv: kv[1])] == expected
    best = by_index[expected[0]]
    assert all(
        r.provenance["match_of"] == 3 and r.provenance["rank_by"] == "voice" for r in records
    )
    assert "best voice match of 3" in best.describe()
    assert "voice match 2/3" in by_index[expected[1]].describe()
    from audiogen_studio.app.takes_panel import describe_provenance

    assert "voice match" in describe_provenance(best) and ": 1 of 3 takes" in describe_provenance(
        best
    )
    assert f"best voice match: {best.name}" in panel.status_label.text()
    # ranked by what the panel names instead of the model's default
    panel.rank_combo.setCurrentIndex(panel.rank_combo.findData("rhythm"))
    with qtbot.waitSignal(window.generation.finished, timeout=60_000) as blocker:
        panel.generate_button.click()
    assert blocker.args[0].rank_by == "rhythm" and sorted(blocker.args[0].matches) == [0, 1, 2]
    assert "best rhythm match: " in panel.status_label.text()
    # one take, or a bundle that names nothing to rank by: no ranks
    panel.takes_spin.setValue(1)
    with qtbot.waitSignal(window.generation.finished, timeout=60_000) as blocker:
        panel.generate_button.click()
    assert blocker.args[0].matches == {} and "match_rank" not in list(window.takes)[-1].provenance


def test_candidate_beginnings_stream_into_the_take_and_the_player(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    no_stream: list[Any],
    make_window: Callable[[], Any],
    qtbot: Any,
) -> None:
    """An AudioLM take chosen among 2 beginnings: the held audio reaches the player, the live
    view and the take whole, and the take says how it was made."""
    _audiolm_models(
        tmp_path, monkeypatch, {"rank_by": "voice", "candidates": 2, "choose_after": 0.5}
    )
    noise = np.random.default_rng(1).uniform(-0.3, 0.3, (1, round(0.6 * RATE)))
    window = _window(make_window, Clip(noise.astype(np.float32), RATE))
    panel = window.generation_panel
    assert panel.candidates_spin.value() == 2
    panel.seconds_spin.setValue(1.0)
    with qtbot.waitSignal(window.generation.finished, timeout=60_000) as finished:
        assert panel.generate()
    (take,) = finished.args[0].takes
    assert take.complete and take.generated.frames == RATE
    (player,) = no_stream
    assert player.buffer.write_pos == RATE and player.buffer.closed  # nothing was lost
    live = panel.live_view.clip
    assert live is not None
    np.testing.assert_array_equal(live.samples, take.generated.samples)
    (record,) = list(window.takes)
    assert record.provenance["candidates"] == 2
    assert "chosen of 2 beginnings" in record.describe()
