"""TakeLibrary: records, user fields, soft delete + undo, dedup, gc, export/import, check."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import pytest
from library_support import RATE, noise, tone

from audiogen_studio.audio.clip import Clip
from audiogen_studio.library import (
    Filters,
    LibraryError,
    TakeInfo,
    TakeLibrary,
    default_root,
)
from audiogen_studio.library.blobs import audio_hash
from audiogen_studio.library.fingerprint import bundle_fingerprint


def _info(**kw: object) -> TakeInfo:
    base: dict[str, object] = {"engine": "wavenet", "model": "tiny", "model_version": "1.0"}
    base.update(kw)
    return TakeInfo(**base)  # type: ignore[arg-type]


def test_a_take_keeps_everything_that_produced_it(library: TakeLibrary) -> None:
    prompt_clip = tone(440, 0.25)
    prompt = library.add_prompt(prompt_clip, source="/music/riff.wav", range=(800, 4800))
    output = Clip(np.concatenate([prompt_clip.samples, noise(3).samples], axis=1), RATE)
    provenance = {
        "engine": "audiolm",
        "model": "speech",
        "model_version": "2.1",
        "seed": 1234,
        "temperature": 0.8,
        "top_k": 50,
        "device": "auto",
        "device_used": "cpu",
        "rtf": 0.42,
        "complete": False,
        "parent": "feedface" * 4,
        "np_value": np.float32(0.5),
    }
    info = TakeInfo.from_provenance(
        provenance, name="Take 7", rating=4, tags=("Rain", " rain ", "Soft  pad"), notes="keep"
    )
    entry = library.add_take(output, info, prompt_id=prompt.id, prompt_frames=prompt_clip.frames)
    got = library.get(entry.uid)
    assert got == entry
    assert (got.engine, got.model, got.model_version, got.seed) == (
        "audiolm",
        "speech",
        "2.1",
        1234,
    )
    assert got.device == "cpu" and got.rtf == pytest.approx(0.42) and got.complete is False
    assert got.parent == "feedface" * 4 and got.prompt_id == prompt.id
    assert got.settings["temperature"] == 0.8 and got.settings["np_value"] == 0.5
    assert got.name == "Take 7" and got.rating == 4 and got.tags == ("rain", "soft pad")
    assert got.duration == pytest.approx(0.75) and got.generated_seconds == pytest.approx(0.5)
    assert got.audio_hash == audio_hash(output) and abs(time.time() - got.created) < 60
    assert library.prompt(prompt.id).range == (800, 4800)
    assert library.prompt(prompt.id).source == "/music/riff.wav"
    np.testing.assert_allclose(library.audio(got.uid).samples, output.samples, atol=2**-23)
    np.testing.assert_allclose(
        library.prompt_audio(prompt.id).samples, prompt_clip.samples, atol=2**-23
    )
    json.dumps(got.to_dict())  # JSON-ready


def test_identical_audio_is_stored_once_and_kept_while_referenced(library: TakeLibrary) -> None:
    a = library.add_take(tone(300), _info(name="first"))
    b = library.add_take(tone(300), _info(name="same sound"))
    p1 = library.add_prompt(tone(300), source="x.wav")
    p2 = library.add_prompt(tone(300), source="x.wav")
    c = library.add_take(tone(600), _info(name="other"), prompt_id=p1.id)
    assert a.audio_hash == b.audio_hash == p1.audio_hash != c.audio_hash and p1 == p2
    assert library.stats()["audio_files"] == 2  # two sounds, whatever refers to them
    library.delete(a.uid)
    assert library.gc(orphan_grace=0).removed_blobs == 0  # b still uses the sound
    library.delete(b.uid)
    report = library.gc(orphan_grace=0)
    assert report.purged_takes == 1 and report.removed_blobs == 0  # the prompt uses it
    assert a.uid not in library and b.uid not in library and c.uid in library
    library.delete(c.uid)
    report = library.gc(orphan_grace=0)  # now the prompt has no take, and goes too
    assert report.removed_prompts == 1 and report.removed_blobs == 2
    assert library.stats()["audio_files"] == 0 and library.check() == []


def test_user_fields_update_and_are_searchable(library: TakeLibrary) -> None:
    e = library.add_take(noise(1), _info(name="untitled"))
    e = library.update(e.uid, name="Thunder roll", rating=5, tags=["storm"], notes="deep")
    assert (e.name, e.rating, e.tags, e.notes) == ("Thunder roll", 5, ("storm",), "deep")
    assert [r.take.uid for r in library.search("thunder")] == [e.uid]
    e = library.add_tags(e.uid, ["night", "storm"])
    assert e.tags == ("night", "storm")
    assert [r.take.uid for r in library.search("night")] == [e.uid]
    e = library.remove_tags(e.uid, ["STORM"])
    assert e.tags == ("night",) and library.search("storm") == []
    e = library.update(e.uid, rating=None)
    assert e.rating is None and e.name == "Thunder roll"  # unset fields stay
    with pytest.raises(LibraryError, match="rating must be 1–5"):
        library.update(e.uid, rating=6)
    with pytest.raises(LibraryError, match="rating"):
        library.add_take(noise(2), _info(rating=0))


def test_delete_is_undoable_until_gc(library: TakeLibrary) -> None:
    keep = library.add_take(tone(500), _info(name="keeper"))
    gone = library.add_take(tone(700), _info(name="oops"))
    library.delete(gone.uid)
    assert [e.uid for e in library.list_takes()] == [keep.uid]
    assert [e.uid for e in library.list_takes(Filters(deleted=True))] == [gone.uid]
    assert library.search("oops") == [] and library.like_this(keep.uid) == []
    library.undelete(gone.uid)
    assert {e.uid for e in library.list_takes()} == {keep.uid, gone.uid}
    assert [r.take.uid for r in library.search("oops")] == [gone.uid]
    assert [r.take.uid for r in library.like_this(keep.uid)] == [gone.uid]
    library.delete(gone.uid)
    # the trash is purged by age: a take deleted just now survives a gc for older ones
    assert library.gc(deleted_before=time.time() - 3600).purged_takes == 0
    dry = library.gc(orphan_grace=0, dry_run=True)
    assert dry.purged_takes == 1 and dry.removed_blobs == 1 and gone.uid in library
    report = library.gc(orphan_grace=0)
    assert report.purged_takes == 1 and report.removed_blobs == 1 and report.freed_bytes > 0
    assert gone.uid not in library
    with pytest.raises(LibraryError, match="no take"):
        library.undelete(gone.uid)
    assert library.check() == []


def test_uids_resolve_by_unique_prefix(library: TakeLibrary) -> None:
    a = library.add_take(tone(200), _info(uid="abcd1111" + "0" * 24))
    library.add_take(tone(210), _info(uid="abcd2222" + "0" * 24))
    assert library.get("abcd1").uid == a.uid
    with pytest.raises(LibraryError, match="ambiguous"):
        library.get("abcd")
    with pytest.raises(LibraryError, match="at least 4"):
        library.get("ab")
    with pytest.raises(LibraryError, match="already in the library"):
        library.add_take(tone(220), _info(uid=a.uid))


def test_gc_removes_orphan_audio_and_partial_files(library: TakeLibrary) -> None:
    """What a writer killed between writing the blob and committing its row leaves behind."""
    kept = library.add_take(tone(250), _info())
    orphan = library.blobs.put(noise(9))  # blob on disk, row never committed
    partial = orphan.path.parent / ".0123456789abcdef.zz.partial"
    partial.write_bytes(b"half")
    assert library.check() == []  # an orphan is not damage
    young = library.gc()  # default grace: an orphan may be a take about to commit
    assert young.removed_blobs == 0 and orphan.path.exists() and partial.exists()
    report = library.gc(orphan_grace=0)
    assert report.removed_blobs == 1 and report.removed_partials == 1
    assert not orphan.path.exists() and not partial.exists()
    assert library.blobs.verify(kept.audio_hash) and library.check() == []


def test_check_reports_missing_or_damaged_audio(library: TakeLibrary) -> None:
    e = library.add_take(noise(4), _info())
    path = library.blobs.path(e.audio_hash)
    os.remove(path)
    problems = library.check()
    assert len(problems) == 1 and e.audio_hash[:12] in problems[0]
    with pytest.raises(LibraryError, match="missing or unreadable"):
        library.audio(e.uid)


def test_export_and_import_round_trip(tmp_path: Path, library: TakeLibrary) -> None:
    prompt = library.add_prompt(tone(330, 0.2), source="p.wav")
    a = library.add_take(
        tone(330, 0.6),
        _info(name="A", tags=("x",), rating=2),
        prompt_id=prompt.id,
        prompt_frames=3200,
        quality_figures={"seam_db": -3.5},
    )
    b = library.add_take(noise(5), _info(name="B", parent=a.uid))
    library.add_take(noise(6), _info(name="C", engine="audiolm"))
    manifest = library.export(tmp_path / "out", filters=Filters(engine="wavenet"))
    data = json.loads(manifest.read_text())
    assert {t["name"] for t in data["takes"]} == {"A", "B"} and len(data["prompts"]) == 1
    with TakeLibrary(tmp_path / "other", sync_audio=False) as other:
        report = other.import_from(tmp_path / "out")
        assert sorted(report.added) == sorted([a.uid, b.uid]) and report.prompts == 1
        got = other.get(a.uid)
        assert (got.name, got.tags, got.rating, got.quality) == ("A", ("x",), 2, {"seam_db": -3.5})
        assert got.created == a.created and got.prompt_frames == 3200
        assert other.prompt(got.prompt_id or 0).source == "p.wav"
        assert other.get(b.uid).parent == a.uid
        np.testing.assert_array_equal(other.audio(a.uid).samples, library.audio(a.uid).samples)
        assert other.like_this(a.uid, limit=1)  # embeddings recomputed on import
        again = other.import_from(manifest)
        assert again.added == [] and sorted(again.skipped) == sorted([a.uid, b.uid])
        assert other.check() == []
    flac = next((tmp_path / "out" / "audio").rglob("*.flac"))
    flac.write_bytes(flac.read_bytes()[:200])
    with TakeLibrary(tmp_path / "third") as third, pytest.raises(LibraryError, match="hash"):
        third.import_from(tmp_path / "out")
    with pytest.raises(LibraryError, match="not a library export"):
        library.import_from(tmp_path)


def test_another_process_writes_are_seen(tmp_path: Path) -> None:
    """The cached similarity matrix reloads when another connection commits."""
    with TakeLibrary(tmp_path / "lib", sync_audio=False) as one:
        a = one.add_take(tone(900), _info())
        assert one.like_this(a.uid) == []
        with TakeLibrary(tmp_path / "lib", sync_audio=False) as two:
            b = two.add_take(tone(905), _info())
        assert [r.take.uid for r in one.like_this(a.uid)] == [b.uid]


def test_default_root_honours_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AUDIOGEN_LIBRARY", str(tmp_path / "env-lib"))
    assert default_root() == tmp_path / "env-lib"
    with TakeLibrary() as lib:
        assert (
            lib.root == tmp_path / "env-lib" and (tmp_path / "env-lib" / "library.sqlite3").exists()
        )
    monkeypatch.delenv("AUDIOGEN_LIBRARY")
    assert default_root().name == "library" and "audiogen-studio" in str(default_root())


def test_bundle_fingerprint_follows_content_not_location(tmp_path: Path) -> None:
    bundle = tmp_path / "b1"
    bundle.mkdir()
    (bundle / "bundle.json").write_text(
        json.dumps({"format": 1, "components": {"wavenet": {"file": "w.safetensors"}}})
    )
    (bundle / "w.safetensors").write_bytes(b"\x00" * 1000)
    first = bundle_fingerprint(bundle)
    copy = tmp_path / "copy"
    copy.mkdir()
    for f in bundle.iterdir():
        (copy / f.name).write_bytes(f.read_bytes())
    assert bundle_fingerprint(copy) == first
    (copy / "w.safetensors").write_bytes(b"\x01" + b"\x00" * 999)
    assert bundle_fingerprint(copy) != first


def test_quality_figures_when_the_eval_extra_is_there(
    library: TakeLibrary, monkeypatch: pytest.MonkeyPatch
) -> None:
    from audiogen_studio.library import quality

    prompt = noise(1, 1.0)
    output = Clip(np.concatenate([prompt.samples, 3 * noise(2, 1.0).samples], axis=1), RATE)
    if not quality.available():
        pytest.skip("audiogen_studio.evaluation is not installed")
    pytest.importorskip("scipy")
    e = library.add_take(output, _info(), prompt_frames=prompt.frames)
    assert {"seam_click_db", "seam_loudness_jump_db"} <= set(e.quality)
    assert e.quality["seam_loudness_jump_db"] > 6  # the continuation is 3x louder: a jump
    assert not any(k.startswith("dnsmos") for k in e.quality)  # "fast": no DNSMOS
    monkeypatch.setattr(quality, "_evaluation", lambda: None)  # without the extra: nothing
    assert library.add_take(noise(3), _info(), prompt_frames=100).quality == {}


def test_the_cached_vector_index_equals_a_fresh_load(library: TakeLibrary) -> None:
    """Kept in step by this process's own writes (add, gc), reloaded on other processes'."""
    from audiogen_studio.library import embedding, search

    first = [library.add_take(tone(200 + 40 * i), _info()) for i in range(5)]
    q = embedding.embed(tone(260))
    library.similar(q)  # load the cache
    more = [library.add_take(noise(i), _info()) for i in range(3)]  # upserts
    library.delete(first[1].uid)
    library.delete(more[0].uid)
    library.gc(orphan_grace=0)  # discards
    fresh = search.VectorIndex()
    with library._lock:
        fresh.refresh(library._conn)
    cached = library._index
    assert len(cached) == len(fresh) == 6
    assert cached.query(q, limit=10) == fresh.query(q, limit=10)
