"""Corpus builders: plans, splits, the resumable runner, finishing, and tiny real builds.

The real builds call the installed tools (espeak-ng, flite, festival, the Asterisk prompts,
fluidsynth with music21); a source's test is skipped, saying which package is missing, only when
its tool is not installed (CI installs them all through scripts/setup.sh).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

from audiogen_studio.audio import io
from audiogen_studio.audio.clip import Clip
from audiogen_studio.training.corpora import (
    CORPUS_JSON,
    MANIFEST_NAME,
    CorpusError,
    ItemError,
    MusicOptions,
    SpeechOptions,
    build_music_corpus,
    build_speech_corpus,
    music,
    read_manifest,
    speech,
    texts,
)
from audiogen_studio.training.corpora.jobs import (
    PlannedItem,
    RenderContext,
    python_timeout,
    run_plan,
)
from audiogen_studio.training.corpora.manifest import load_for_resume, validate_entry
from audiogen_studio.training.corpora.postprocess import FinishSettings, finish

RATE = 16_000

# --- helpers ---------------------------------------------------------------------------------


def _installed(source: str) -> bool:
    if source == "asterisk":
        return speech.ASTERISK_DIR.is_dir() and texts.ASTERISK_TRANSCRIPTS.is_file()
    return speech.TOOLS[source].path() is not None


def _require(source: str) -> None:
    if not _installed(source):
        package = speech.ASTERISK_APT if source == "asterisk" else speech.TOOLS[source].apt_package
        pytest.skip(f"{source} is not installed (apt-get install {package})")


def _require_music() -> None:
    if music.FLUIDSYNTH.path() is None:
        pytest.skip("fluidsynth is not installed (apt-get install fluidsynth)")
    pytest.importorskip("music21")
    pytest.importorskip("pretty_midi")


def _check_corpus(corpus: Path) -> list[dict[str, Any]]:
    """Every manifest line valid, every file 16 kHz mono with the listed length."""
    lines = (corpus / MANIFEST_NAME).read_text().splitlines()
    entries = [json.loads(line) for line in lines]
    assert entries, "empty manifest"
    assert len({e["id"] for e in entries}) == len(entries)
    for e in entries:
        validate_entry(e)
        info = sf.info(str(corpus / e["path"]))
        assert info.samplerate == RATE and info.channels == 1, e["path"]
        assert info.frames == e["frames"], e["path"]
        assert e["duration"] == pytest.approx(info.frames / RATE, abs=1e-6)
        assert e["licence"]
        samples, _ = sf.read(str(corpus / e["path"]), dtype="float32")
        peak = float(np.abs(samples).max())
        assert 0.05 < peak <= 10 ** (-1 / 20) + 1e-3, (e["path"], peak)
    info_json = json.loads((corpus / CORPUS_JSON).read_text())
    assert info_json["status"] == "complete"
    assert info_json["totals"]["items"] == len(entries)
    assert info_json["totals"]["seconds"] == pytest.approx(
        sum(e["duration"] for e in entries), abs=0.01
    )
    return entries


def _splits_hold_out_speakers(entries: list[dict[str, Any]]) -> None:
    split_of: dict[str, str] = {}
    for e in entries:
        assert split_of.setdefault(e["speaker_id"], e["split"]) == e["split"], e["speaker_id"]


# --- finishing -------------------------------------------------------------------------------


def _tone(seconds: float, rate: int, freq: float = 220.0, amp: float = 0.3) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def test_finish_trims_resamples_and_normalises() -> None:
    rate = 22_050
    tone = _tone(1.0, rate)
    x = np.concatenate([np.zeros(rate), tone, np.zeros(rate // 2)])[np.newaxis, :]
    done = finish(x, rate, FinishSettings(pad_start=0.1, pad_end=0.15))
    assert done.samples.shape[0] == 1 and done.samples.dtype == np.float32
    # 1 s of tone plus the two pads (frame rounding: ±10 ms each side)
    assert done.duration == pytest.approx(1.25, abs=0.03)
    assert done.trimmed_start == pytest.approx(0.9, abs=0.02)
    y = done.samples[0]
    body = y[int(0.15 * RATE) : int(1.05 * RATE)]
    rms_db = 20 * np.log10(np.sqrt(np.mean(body.astype(np.float64) ** 2)))
    assert rms_db == pytest.approx(-20.0, abs=0.5)
    # still a 220 Hz tone after resampling
    spectrum = np.abs(np.fft.rfft(body))
    assert np.argmax(spectrum) * RATE / body.size == pytest.approx(220.0, abs=2.0)


def test_finish_limits_peak_cuts_with_fade_and_rejects_silence() -> None:
    spiky = _tone(6.0, RATE, amp=0.01)
    spiky[RATE] = 0.9  # a click far above the quiet tone: the gain must respect the peak
    done = finish(spiky[np.newaxis, :], RATE, FinishSettings(max_seconds=3.0, fade_seconds=0.5))
    assert done.cut and done.duration == pytest.approx(3.0, abs=1e-3)
    assert float(np.abs(done.samples).max()) == pytest.approx(10 ** (-1 / 20), rel=1e-3)
    # the fade: the last 100 samples (1/80 of the 0.5 s fade) are below 2 % of the level before
    assert float(np.abs(done.samples[0, -100:]).max()) < 0.02 * float(
        np.abs(done.samples[0, RATE * 2 : RATE * 2 + 2000]).max()
    )
    with pytest.raises(ItemError, match="silent"):
        finish(np.zeros((1, RATE), np.float32), RATE, FinishSettings())
    with pytest.raises(ItemError, match="too short"):
        finish(_tone(0.1, RATE)[np.newaxis, :], RATE, FinishSettings(min_seconds=0.5, pad_end=0))


# --- the runner, with a fake renderer (no external tools) ------------------------------------


def _fake_plan(n: int | None = None) -> Any:
    index = 0
    while n is None or index < n:
        rng = random.Random(index)
        yield PlannedItem(
            id=f"x{index:04d}",
            index=index,
            seed=index,
            split="train",
            source="fake",
            speaker_id=f"spk{index % 3}",
            rel_path=f"audio/train/x{index:04d}.flac",
            estimate=1.0,
            spec={"seconds": round(rng.uniform(0.5, 1.5), 2), "fail": index % 7 == 3},
        )
        index += 1


def _fake_render(item: PlannedItem, ctx: RenderContext) -> dict[str, Any]:
    if item.spec["fail"]:
        raise ItemError("planned failure")
    if ctx.options.get("slow"):
        time.sleep(0.05)
    samples = _tone(item.spec["seconds"], RATE, freq=200 + item.index)
    target = ctx.corpus_dir / item.rel_path
    target.parent.mkdir(parents=True, exist_ok=True)
    io.save(Clip(samples, RATE), target, overwrite=True, subtype="PCM_16")
    ctx.options["calls"].append(item.id)
    return {
        "id": item.id,
        "path": item.rel_path,
        "duration": samples.size / RATE,
        "frames": samples.size,
        "rate": RATE,
        "source": "fake",
        "licence": "test",
        "voice": item.speaker_id,
        "speaker_id": item.speaker_id,
        "transcript": None,
        "split": item.split,
        "seed": item.seed,
        "params": {},
    }


def _ctx(tmp_path: Path, **options: Any) -> RenderContext:
    return RenderContext(
        corpus_dir=tmp_path,
        tmp_dir=tmp_path / ".tmp",
        timeout=5.0,
        options={"calls": [], **options},
    )


def test_runner_reaches_the_target_records_failures_and_resumes(tmp_path: Path) -> None:
    ctx = _ctx(tmp_path)
    report = run_plan(_fake_plan(), _fake_render, ctx, target_seconds=20.0, max_items=None, jobs=1)
    total = sum(e["duration"] for e in report.entries)
    assert total >= 20.0 and report.stopped_by == "minutes"
    assert total - max(e["duration"] for e in report.entries) < 20.0 + 1.5  # no big overshoot
    assert report.failures and all(int(i[1:]) % 7 == 3 for i in report.failures)
    assert all(r == "planned failure" for r in report.failures.values())
    assert not any(int(e["id"][1:]) % 7 == 3 for e in report.entries)
    assert len(read_manifest(tmp_path)) == report.new_items == len(report.entries)

    # second run: nothing to do, nothing rendered, failures not retried
    ctx2 = _ctx(tmp_path)
    again = run_plan(_fake_plan(), _fake_render, ctx2, target_seconds=20.0, max_items=None, jobs=1)
    assert again.new_items == 0 and ctx2.options["calls"] == []
    assert again.reused_items == len(report.entries)
    assert [e["id"] for e in again.entries] == [e["id"] for e in report.entries]

    # a deleted file is rebuilt, and only that one
    victim = report.entries[2]
    (tmp_path / victim["path"]).unlink()
    ctx3 = _ctx(tmp_path)
    third = run_plan(_fake_plan(), _fake_render, ctx3, target_seconds=20.0, max_items=None, jobs=1)
    assert ctx3.options["calls"] == [victim["id"]] and third.new_items == 1
    assert (tmp_path / victim["path"]).is_file()
    assert len(read_manifest(tmp_path)) == len(report.entries)

    # a bigger target extends the same plan
    ctx4 = _ctx(tmp_path)
    more = run_plan(_fake_plan(), _fake_render, ctx4, target_seconds=30.0, max_items=None, jobs=1)
    assert more.reused_items == len(report.entries) and more.new_items > 0
    assert sum(e["duration"] for e in more.entries) >= 30.0


def test_runner_is_independent_of_jobs_and_respects_max_items(tmp_path: Path) -> None:
    serial = run_plan(
        _fake_plan(), _fake_render, _ctx(tmp_path / "a"), target_seconds=15.0, max_items=None,
        jobs=1,
    )  # fmt: skip
    parallel = run_plan(
        _fake_plan(), _fake_render, _ctx(tmp_path / "b", slow=True), target_seconds=15.0,
        max_items=None, jobs=3, executor="thread",
    )  # fmt: skip
    assert sorted(e["id"] for e in serial.entries) == sorted(e["id"] for e in parallel.entries)
    limited = run_plan(
        _fake_plan(), _fake_render, _ctx(tmp_path / "c"), target_seconds=None, max_items=4,
        jobs=1,
    )  # fmt: skip
    assert len(limited.entries) == 4 and limited.stopped_by == "max_items"


def test_runner_gives_up_when_everything_fails(tmp_path: Path) -> None:
    def always_fails(item: PlannedItem, ctx: RenderContext) -> dict[str, Any]:
        raise ItemError("tool broken")

    with pytest.raises(CorpusError, match="tool broken"):
        run_plan(_fake_plan(), always_fails, _ctx(tmp_path), target_seconds=60.0, max_items=None,
                 jobs=1)  # fmt: skip


def test_manifest_repair_after_a_kill(tmp_path: Path) -> None:
    ctx = _ctx(tmp_path)
    report = run_plan(_fake_plan(), _fake_render, ctx, target_seconds=5.0, max_items=None, jobs=1)
    manifest = tmp_path / MANIFEST_NAME
    good = manifest.read_text()
    # a kill mid-line, and an audio file whose line never got written
    manifest.write_text(good + '{"id": "x9999", "path": "audio/tr')
    kept = load_for_resume(tmp_path)
    assert sorted(kept) == sorted(e["id"] for e in report.entries)
    assert manifest.read_text() == good
    # appending after the repair yields valid JSON lines only
    run_plan(_fake_plan(), _fake_render, _ctx(tmp_path), target_seconds=8.0, max_items=None, jobs=1)
    for line in manifest.read_text().splitlines():
        json.loads(line)


def test_growing_a_hard_linked_copy_leaves_the_original_alone(tmp_path: Path) -> None:
    original = tmp_path / "a"
    first = run_plan(
        _fake_plan(), _fake_render, _ctx(original), target_seconds=5.0, max_items=None, jobs=1
    )
    before = (original / MANIFEST_NAME).read_text()
    copy = tmp_path / "b"
    shutil.copytree(original, copy, copy_function=os.link)  # cp -al: one inode per file
    more = run_plan(
        _fake_plan(), _fake_render, _ctx(copy), target_seconds=10.0, max_items=None, jobs=1
    )
    assert more.new_items > 0 and more.reused_items == len(first.entries)
    assert (original / MANIFEST_NAME).read_text() == before
    assert len(read_manifest(copy)) == len(more.entries) > len(read_manifest(original))


def test_python_timeout_turns_into_an_item_error() -> None:
    start = time.monotonic()
    with pytest.raises(ItemError, match="timed out"), python_timeout(0.2):
        try:
            while True:
                pass
        except Exception:  # a parser's broad except must not swallow the timeout
            pytest.fail("the timeout was caught as an Exception")
    assert time.monotonic() - start < 2.0


# --- speech: plan and splits -----------------------------------------------------------------


def _speech_setup(seed: int = 0) -> speech.SpeechSetup:
    if not any(_installed(s) for s in speech.SOURCES):
        pytest.skip("no speech source installed (apt-get install espeak-ng flite festival)")
    return speech.discover(seed=seed)


def _take(plan: Any, n: int) -> list[PlannedItem]:
    return [item for item, _ in zip(plan, range(n), strict=False)]


def test_speech_plan_is_deterministic_given_the_seed() -> None:
    a = _take(speech.speech_plan(_speech_setup(0)), 200)
    b = _take(speech.speech_plan(_speech_setup(0)), 200)
    c = _take(speech.speech_plan(_speech_setup(1)), 200)
    assert a == b
    assert [i.spec for i in a] != [i.spec for i in c]
    assert _speech_setup(0).fingerprint() == _speech_setup(0).fingerprint()
    assert _speech_setup(0).fingerprint() != _speech_setup(1).fingerprint()


def test_speech_splits_hold_out_whole_voices() -> None:
    setup = _speech_setup(0)
    items = _take(speech.speech_plan(setup), 600)
    split_of = {v.speaker_id: v.split for v in setup.voices}
    group_split: dict[str, str] = {}
    for v in setup.voices:
        assert group_split.setdefault(v.group, v.split) == v.split, v.group
    for item in items:
        assert item.split == split_of[item.speaker_id]
        assert item.spec["transcript"].strip()
    splits = {i.split for i in items}
    if _installed("espeak-ng"):
        assert splits == {"train", "valid", "test"}
        valid_share = sum(i.split == "valid" for i in items) / len(items)
        assert 0.05 < valid_share < 0.16
        assert len({i.speaker_id for i in items}) >= 10
    assert all(i.split == "train" for i in items if i.source == "asterisk")


def test_missing_tools_are_named_with_their_package(monkeypatch: pytest.MonkeyPatch) -> None:
    real_which = shutil.which
    monkeypatch.setattr(
        shutil, "which", lambda name, *a, **k: None if name == "flite" else real_which(name)
    )
    with pytest.raises(CorpusError, match="apt-get install flite"):
        speech.discover(seed=0, sources=("flite",))
    if any(_installed(s) for s in ("espeak-ng", "festival", "asterisk")):
        setup = speech.discover(seed=0)
        assert "flite" in setup.missing and "flite" not in setup.available
        assert all(v.source != "flite" for v in setup.voices)
    monkeypatch.setattr(shutil, "which", lambda name, *a, **k: None)
    monkeypatch.setattr(speech, "ASTERISK_DIR", Path("/nonexistent/asterisk"))
    with pytest.raises(CorpusError, match="no speech source is installed.*apt-get install"):
        speech.discover(seed=0)
    with pytest.raises(CorpusError, match="apt-get install fluidsynth"):
        music.discover(seed=0)


# --- speech: real tiny builds ----------------------------------------------------------------


@pytest.mark.parametrize("source", speech.SOURCES)
def test_each_speech_source_renders(tmp_path: Path, source: str) -> None:
    _require(source)
    options = SpeechOptions(sources=(source,), max_items=1, minutes=None, jobs=1)
    summary = build_speech_corpus(tmp_path, options)
    (entry,) = _check_corpus(tmp_path)
    assert entry["source"] == source and summary.new_items == 1
    assert entry["transcript"] and entry["duration"] > 0.3
    assert entry["split"] in ("train", "valid", "test")


def test_tiny_speech_corpus_is_valid_resumable_and_deterministic(tmp_path: Path) -> None:
    _speech_setup()
    corpus = tmp_path / "speech"
    options = SpeechOptions(max_items=6, minutes=None, jobs=2, seed=3)
    first = build_speech_corpus(corpus, options)
    entries = _check_corpus(corpus)
    assert len(entries) == 6 and first.new_items == 6
    _splits_hold_out_speakers(entries)
    info = json.loads((corpus / CORPUS_JSON).read_text())
    assert info["seed"] == 3 and info["options"]["max_items"] == 6
    assert {v["split"] for v in info["plan"]["voices"]} <= {"train", "valid", "test"}
    assert "sources" in info and info["licence_notes"]

    # re-run: nothing new
    second = build_speech_corpus(corpus, options)
    assert second.new_items == 0 and second.reused_items == 6
    assert (corpus / MANIFEST_NAME).read_text().count("\n") == 6

    # a deleted file is rebuilt, bit-identical (the tools are deterministic)
    victim = entries[0]
    before = sf.read(str(corpus / victim["path"]), dtype="int16")[0]
    (corpus / victim["path"]).unlink()
    third = build_speech_corpus(corpus, options)
    assert third.new_items == 1
    after = sf.read(str(corpus / victim["path"]), dtype="int16")[0]
    np.testing.assert_array_equal(before, after)

    # another seed in the same folder is refused
    with pytest.raises(CorpusError, match="other plan options"):
        build_speech_corpus(corpus, SpeechOptions(max_items=6, minutes=None, seed=4))


def test_speech_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _require("espeak-ng")
    from audiogen_studio.cli.main import main

    out = tmp_path / "c"
    args = ["corpus", "speech", str(out), "--max-items", "2", "--minutes", "0.05"]
    assert main([*args, "--jobs", "1", "--sources", "espeak-ng", "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "speech corpus in" in printed and "items" in printed
    assert 1 <= len(read_manifest(out)) <= 2
    stranger = tmp_path / "stranger"
    stranger.mkdir()
    (stranger / "notes.txt").write_text("mine")
    assert main(["corpus", "speech", str(stranger), "--max-items", "1", "--no-progress"]) == 2
    assert "not empty" in capsys.readouterr().err


# --- music -----------------------------------------------------------------------------------


def test_music_plan_is_deterministic_and_holds_out_instruments() -> None:
    _require_music()
    setup = music.discover(seed=0)
    a = _take(music.music_plan(setup), 300)
    assert a == _take(music.music_plan(music.discover(seed=0)), 300)
    assert [i.spec for i in a] != [
        i.spec for i in _take(music.music_plan(music.discover(seed=1)), 300)
    ]
    pools = {split: set(p) for split, p in setup.programs.items()}
    assert not (pools["train"] & pools["valid"] or pools["train"] & pools["test"])
    assert not pools["valid"] & pools["test"]
    assert len(pools["train"]) >= 8 and pools["valid"] and pools["test"]
    for item in a:
        assert set(item.spec["programs"]) <= pools[item.split]
    assert {i.split for i in a} == {"train", "valid", "test"}
    assert len({i.spec["collection"] for i in a}) >= 10  # collections are mixed
    assert len(setup.scores) > 3000


def test_tiny_music_corpus(tmp_path: Path) -> None:
    _require_music()
    corpus = tmp_path / "music"
    options = MusicOptions(max_items=3, minutes=None, jobs=2, max_seconds=6.0, seed=5)
    summary = build_music_corpus(corpus, options)
    entries = _check_corpus(corpus)
    assert len(entries) == 3 and summary.new_items == 3
    setup = music.discover(seed=5, max_seconds=6.0)
    for e in entries:
        assert e["duration"] <= 6.0 + 1e-6
        assert e["instrument"] and e["score_id"]
        assert set(e["params"]["programs"]) <= set(setup.programs[e["split"]])
    _splits_hold_out_speakers(entries)
    start = time.monotonic()
    again = build_music_corpus(corpus, options)
    assert again.new_items == 0 and again.reused_items == 3
    assert time.monotonic() - start < 5.0
