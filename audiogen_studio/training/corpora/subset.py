"""A random, seeded piece of a corpus, itself a corpus: ``audiogen-studio corpus subset``.

What it is for: carrying part of a corpus to a machine that can take only so much (a lent GPU
machine takes 64 MiB of files per call), trying a recipe quickly on a few minutes, or training
on fresh audio each run (``--exclude`` an earlier subset). The subset keeps the corpus's layout
and its own ``manifest.jsonl`` with the source's lines unchanged (ids, splits, speakers), so
every trainer reads its splits as in the full corpus. Without that manifest, a copied
``audio/train|valid|test`` tree would be read as a plain folder; the data loader keeps such
folders' held-out splits too (:func:`~audiogen_studio.training.audio_dataset.find_audio_sources`),
but the manifest is the contract.

- ``train``: whole files drawn at random (seeded) until ``minutes`` are reached; a file that would
  overshoot is passed over for a shorter one;
- ``valid``: likewise up to ``valid_minutes`` (0: none), so trainers validate on voices or
  instruments they do not train on;
- ``test`` is never copied: it stays held out for the evaluations of the full corpus.

``subset.json`` beside the manifest records the source, the seed, the exclusions and the totals.
"""

from __future__ import annotations

import json
import random
import shutil
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from audiogen_studio.training.corpora.common import CorpusError
from audiogen_studio.training.corpora.manifest import MANIFEST_NAME, read_manifest, write_manifest

SUBSET_INFO = "subset.json"


@dataclass(frozen=True, slots=True)
class SubsetSummary:
    """What :func:`make_subset` wrote: the folder and, per split, files, minutes and speakers."""

    out_dir: Path
    splits: dict[str, dict[str, Any]]


def _pick(
    entries: Sequence[Mapping[str, Any]], seconds: float, rng: random.Random
) -> list[Mapping[str, Any]]:
    """Entries in a seeded random order, each kept while the total stays within ``seconds``."""
    order = list(entries)
    rng.shuffle(order)
    picked: list[Mapping[str, Any]] = []
    total = 0.0
    for entry in order:
        duration = float(entry["duration"])
        if total + duration <= seconds:
            picked.append(entry)
            total += duration
    return picked


def _excluded_ids(folders: Iterable[str | Path]) -> set[str]:
    ids: set[str] = set()
    for folder in folders:
        entries = read_manifest(folder)
        if not entries:
            raise CorpusError(f"--exclude {folder}: no {MANIFEST_NAME} with entries there")
        ids.update(str(e["id"]) for e in entries)
    return ids


def make_subset(
    corpus: str | Path,
    out_dir: str | Path,
    *,
    minutes: float,
    valid_minutes: float = 3.0,
    seed: int = 0,
    exclude: Sequence[str | Path] = (),
) -> SubsetSummary:
    """Copy a seeded random subset of ``corpus`` into the new folder ``out_dir``.

    Args:
        corpus: a corpus folder from ``audiogen-studio corpus`` (with ``manifest.jsonl``).
        out_dir: folder to create; an existing non-empty one is refused (nothing is overwritten).
        minutes: minutes of ``train`` audio at most.
        valid_minutes: minutes of ``valid`` audio at most (0: none).
        seed: the draw's seed.
        exclude: earlier subsets (or corpora) whose train items are not drawn again (the valid
            draw ignores them: runs on fresh training audio may validate alike).

    Raises:
        CorpusError: no manifest, a refused folder, nothing left to draw, a listed file missing.
    """
    source = Path(corpus).expanduser()
    out = Path(out_dir).expanduser()
    if not minutes > 0 or not valid_minutes >= 0:
        raise CorpusError("the subset needs minutes > 0 and valid minutes >= 0")
    entries = read_manifest(source)
    if not entries:
        raise CorpusError(f"{source}: no {MANIFEST_NAME} with entries (not a corpus folder)")
    if out.resolve() == source.resolve():
        raise CorpusError("the subset needs a folder of its own, not the corpus itself")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise CorpusError(f"{out} exists and is not an empty folder: give a new folder")
    skip = _excluded_ids(exclude)
    rng = random.Random(seed)
    train = [e for e in entries if e["split"] == "train" and str(e["id"]) not in skip]
    if not train:
        raise CorpusError(f"{source}: no train items left to draw (all excluded?)")
    chosen = _pick(train, minutes * 60.0, rng)
    if not chosen:
        raise CorpusError(f"--minutes {minutes:g} is shorter than every train item of {source}")
    if valid_minutes > 0:
        chosen += _pick([e for e in entries if e["split"] == "valid"], valid_minutes * 60.0, rng)
    missing = [e["path"] for e in chosen if not (source / e["path"]).is_file()]
    if missing:
        raise CorpusError(f"{source}: {len(missing)} listed file(s) are missing, e.g. {missing[0]}")
    try:
        out.mkdir(parents=True, exist_ok=True)
        for entry in chosen:
            target = out / entry["path"]
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source / entry["path"], target)
    except OSError as exc:  # a full disk, say: the source corpus is only read
        raise CorpusError(f"{out}: cannot copy the subset there ({exc})") from exc
    write_manifest(out, chosen)
    splits: dict[str, dict[str, Any]] = {}
    for split in ("train", "valid"):
        part = [e for e in chosen if e["split"] == split]
        splits[split] = {
            "files": len(part),
            "minutes": round(sum(float(e["duration"]) for e in part) / 60.0, 3),
            "speakers": len({str(e["speaker_id"]) for e in part}),
        }
    info = {
        "source": str(source.resolve()),
        "seed": seed,
        "minutes": minutes,
        "valid_minutes": valid_minutes,
        "exclude": [str(Path(p).expanduser().resolve()) for p in exclude],
        "splits": splits,
    }
    (out / SUBSET_INFO).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    return SubsetSummary(out, splits)
