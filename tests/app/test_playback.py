"""Space plays the visible clip through a real PortAudio stream; the playhead follows it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from audiogen_studio.audio import io, synth


@pytest.mark.device
def test_space_plays_and_playhead_follows(
    virtual_audio: object, make_window: Callable[[], object], tmp_path: Path, qtbot: object
) -> None:
    path = io.save(synth.sine(660, 1.2, rate=48000), tmp_path / "tone.wav")
    window = make_window()
    window.show()  # type: ignore[attr-defined]
    window.open_file(path)  # type: ignore[attr-defined]
    window.play_action.trigger()  # type: ignore[attr-defined]
    player = window._player  # type: ignore[attr-defined]
    assert player is not None, window.statusBar().currentMessage()  # type: ignore[attr-defined]
    seen: list[float] = []

    def finished() -> bool:
        if window.waveform.playhead.isVisible():  # type: ignore[attr-defined]
            seen.append(float(window.waveform.playhead.value()))  # type: ignore[attr-defined]
        return window._player is None  # type: ignore[attr-defined]

    qtbot.waitUntil(finished, timeout=6000)  # type: ignore[attr-defined]
    assert player.position == 57600  # every frame of the clip was played
    assert player.underruns == 0
    assert len(seen) >= 5 and seen == sorted(seen)  # the playhead moved forward, ~30 Hz
    assert 0.3 < seen[-1] <= 1.2
    assert not window.waveform.playhead.isVisible()  # type: ignore[attr-defined]
