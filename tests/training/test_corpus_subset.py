"""``audiogen-studio corpus subset``: a seeded random piece of a corpus that is itself a corpus
with the source's splits (and never its test split)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from audiogen_studio.cli.main import main
from audiogen_studio.training.audio_dataset import find_audio_sources
from audiogen_studio.training.corpora import CorpusError, make_subset, read_manifest

RATE = 16_000


def _corpus(folder: Path, per_split: dict[str, int], seconds: float = 6.0) -> Path:
    rows = []
    n = 0
    for split, count in per_split.items():
        for _ in range(count):
            rel = f"audio/{split}/voice{n % 3}/s{n:06d}.flac"
            (folder / rel).parent.mkdir(parents=True, exist_ok=True)
            tone = 0.1 * np.sin(2 * np.pi * (100 + 10 * n) * np.arange(int(seconds * RATE)) / RATE)
            sf.write(folder / rel, tone.astype(np.float32), RATE)
            rows.append(
                {
                    "id": f"s{n:06d}",
                    "path": rel,
                    "duration": seconds,
                    "frames": int(seconds * RATE),
                    "rate": RATE,
                    "source": "espeak-ng",
                    "licence": "test",
                    "voice": f"{split}{n % 3}",
                    "speaker_id": f"{split}{n % 3}",
                    "split": split,
                    "seed": n,
                    "params": {},
                }
            )
            n += 1
    (folder / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder


def test_subset_draws_whole_files_within_its_minutes_and_never_the_test_split(
    tmp_path: Path,
) -> None:
    corpus = _corpus(tmp_path / "corpus", {"train": 20, "valid": 6, "test": 6})
    summary = make_subset(corpus, tmp_path / "sub", minutes=0.5, valid_minutes=0.2, seed=3)
    entries = read_manifest(summary.out_dir)
    by_split = {s: [e for e in entries if e["split"] == s] for s in ("train", "valid", "test")}
    assert len(by_split["train"]) == 5  # 5 x 6 s = 0.5 min
    assert len(by_split["valid"]) == 2  # 2 x 6 s <= 12 s
    assert by_split["test"] == [] and not (summary.out_dir / "audio" / "test").exists()
    assert summary.splits["train"]["files"] == 5 and summary.splits["train"]["minutes"] == 0.5
    for entry in entries:  # the source's lines, and their files copied as they were
        assert (summary.out_dir / entry["path"]).read_bytes() == (
            corpus / entry["path"]
        ).read_bytes()
    # the trainers read the subset's splits from its manifest
    sources = find_audio_sources(summary.out_dir)
    assert len(sources.train) == 5 and len(sources.valid) == 2
    info = json.loads((summary.out_dir / "subset.json").read_text())
    assert info["seed"] == 3 and info["splits"]["valid"]["files"] == 2
    # seeded: the same draw again, another seed another draw
    again = make_subset(corpus, tmp_path / "again", minutes=0.5, valid_minutes=0.2, seed=3)
    other = make_subset(corpus, tmp_path / "other", minutes=0.5, valid_minutes=0.2, seed=4)
    ids = [sorted(e["id"] for e in read_manifest(s.out_dir)) for s in (summary, again, other)]
    assert ids[0] == ids[1] and ids[0] != ids[2]


def test_exclude_draws_fresh_training_files(tmp_path: Path) -> None:
    corpus = _corpus(tmp_path / "corpus", {"train": 10, "valid": 2})
    first = make_subset(corpus, tmp_path / "a", minutes=0.5, valid_minutes=0, seed=0)
    second = make_subset(corpus, tmp_path / "b", minutes=1.0, seed=0, exclude=[first.out_dir])
    a = {e["id"] for e in read_manifest(first.out_dir)}
    b = {e["id"] for e in read_manifest(second.out_dir) if e["split"] == "train"}
    assert len(a) == 5 and len(b) == 5 and not a & b  # only 5 train files were left
    assert first.splits["valid"]["files"] == 0 and second.splits["valid"]["files"] == 2
    with pytest.raises(CorpusError, match="no train items left"):
        make_subset(corpus, tmp_path / "c", minutes=1, exclude=[first.out_dir, second.out_dir])


def test_subset_refusals_leave_everything_as_it_was(tmp_path: Path) -> None:
    corpus = _corpus(tmp_path / "corpus", {"train": 4})
    with pytest.raises(CorpusError, match="not a corpus folder"):
        make_subset(tmp_path / "nothing", tmp_path / "x", minutes=1)
    with pytest.raises(CorpusError, match="folder of its own"):
        make_subset(corpus, corpus, minutes=1)
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "take.wav").write_bytes(b"mine")
    with pytest.raises(CorpusError, match="not an empty folder"):
        make_subset(corpus, busy, minutes=1)
    assert sorted(p.name for p in busy.iterdir()) == ["take.wav"]
    with pytest.raises(CorpusError, match="not an empty folder"):
        make_subset(corpus, busy / "take.wav", minutes=1)
    assert (busy / "take.wav").read_bytes() == b"mine"
    with pytest.raises(CorpusError, match="shorter than every train item"):
        make_subset(corpus, tmp_path / "short", minutes=0.05)
    assert not (tmp_path / "short").exists()
    (corpus / "audio/train/voice1/s000001.flac").unlink()
    with pytest.raises(CorpusError, match="missing"):
        make_subset(corpus, tmp_path / "gone", minutes=1)
    assert not (tmp_path / "gone").exists()


def test_corpus_subset_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    corpus = _corpus(tmp_path / "corpus", {"train": 6, "valid": 2, "test": 2})
    out = tmp_path / "sub"
    assert main(["corpus", "subset", str(corpus), str(out), "--minutes", "0.3", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["splits"]["train"]["files"] == 3 and report["splits"]["valid"]["files"] == 2
    assert main(["corpus", "subset", str(corpus), str(out), "--minutes", "0.3"]) == 2
    assert "not an empty folder" in capsys.readouterr().err
