"""The music corpus: music21's score corpus rendered through General MIDI instruments.

Each item: one score of the music21 corpus (a tune of a multi-tune ABC file counts as a score) →
MIDI through music21 → re-built with pretty_midi (fresh tempo map, notes only, the chosen General
MIDI programs, optional transposition, tempo change and velocity jitter, cut near the maximum
length; rebuilding also removes the stray events that make fluidsynth write for ever) → rendered
by ``fluidsynth`` at 16 kHz under a timeout → mono, trimmed, cut to ``max_seconds`` with a fade,
gain-normalised, FLAC.

Scores are drawn collection by collection with weights ``min(sqrt(size), 20)`` so that the large
collections (Essen folk songs, Palestrina, Ryan's Mammoth, Bach chorales) do not crowd out the
rest. Held-out split by instrument: each program of :data:`INSTRUMENTS` belongs to one split, and
an item uses programs of its split only.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import random
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from itertools import count
from pathlib import Path
from typing import Any

from audiogen_studio.training.corpora.common import (
    CORPUS_RATE,
    SPLITS,
    CorpusError,
    ItemError,
    Tool,
    item_seed,
    run_tool,
    slug,
)
from audiogen_studio.training.corpora.jobs import PlannedItem, RenderContext, python_timeout
from audiogen_studio.training.corpora.postprocess import FinishSettings, finish_file

FLUIDSYNTH = Tool("fluidsynth", "fluidsynth")
FLUID_R3 = Path("/usr/share/sounds/sf2/FluidR3_GM.sf2")

#: General MIDI programs (0-based) used, with readable names.
INSTRUMENTS: dict[int, str] = {
    0: "acoustic grand piano",
    4: "electric piano",
    6: "harpsichord",
    8: "celesta",
    11: "vibraphone",
    12: "marimba",
    19: "church organ",
    21: "accordion",
    22: "harmonica",
    24: "nylon guitar",
    25: "steel guitar",
    26: "jazz guitar",
    32: "acoustic bass",
    40: "violin",
    41: "viola",
    42: "cello",
    46: "harp",
    48: "string ensemble",
    52: "choir aahs",
    56: "trumpet",
    57: "trombone",
    60: "french horn",
    65: "alto sax",
    68: "oboe",
    70: "bassoon",
    71: "clarinet",
    73: "flute",
    75: "pan flute",
    81: "sawtooth lead",
    89: "warm pad",
    105: "banjo",
    108: "kalimba",
}

SCORE_LICENCE = (
    "score: music21 corpus (freely distributable encodings licensed to the music21 project, "
    "BSD-3-Clause distribution; not necessarily free in every country)"
)
SOUNDFONT_LICENCES = {
    "FluidR3_GM.sf2": "FluidR3_GM soundfont (MIT, Frank Wen)",
    "TimGM6mb.sf2": "TimGM6mb soundfont (GPL-2.0, Tim Brechbill; shipped in pretty_midi)",
}
RENDER_LICENCE = "rendered by FluidSynth (LGPL-2.1; its output is not covered by the LGPL)"


def default_soundfont() -> Path | None:
    """FluidR3_GM (Debian ``fluid-soundfont-gm``) when installed, else pretty_midi's TimGM6mb."""
    if FLUID_R3.is_file():
        return FLUID_R3
    try:
        import pretty_midi
    except ImportError:
        return None
    tim = Path(pretty_midi.__file__).parent / "TimGM6mb.sf2"
    return tim if tim.is_file() else None


@dataclass(frozen=True, slots=True)
class Score:
    """One score of the music21 corpus: ``path`` relative to the corpus root, ``number`` the
    tune number (``X:``) inside a multi-tune ABC file."""

    path: str
    number: int | None
    collection: str

    @property
    def score_id(self) -> str:
        return self.path if self.number is None else f"{self.path}#{self.number}"


@dataclass(frozen=True, slots=True)
class MusicSetup:
    """Everything the music plan depends on."""

    seed: int
    scores: tuple[Score, ...]
    corpus_root: Path
    programs: Mapping[str, tuple[int, ...]]  # split -> programs
    soundfont: Path
    tools: Mapping[str, str]
    max_seconds: float
    valid_fraction: float
    test_fraction: float
    versions: Mapping[str, str] = field(default_factory=dict)

    def fingerprint(self) -> str:
        """A hash of what decides the plan."""
        data = {
            "kind": "music",
            "seed": self.seed,
            "scores": len(self.scores),
            "programs": {k: list(v) for k, v in self.programs.items()},
            "soundfont": self.soundfont.name,
            "max_seconds": self.max_seconds,
            "fractions": [self.valid_fraction, self.test_fraction],
            "format": 1,
        }
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


_ABC_NUMBER = re.compile(rb"^X:\s*(\d+)", re.MULTILINE)


def list_scores(corpus_root: Path, paths: list[Path]) -> list[Score]:
    """Every score of the corpus, multi-tune ABC files expanded into their tunes, sorted."""
    scores = []
    for p in sorted(paths):
        rel = p.relative_to(corpus_root).as_posix()
        collection = rel.split("/", 1)[0]
        numbers: list[int] = []
        if p.suffix == ".abc":
            numbers = sorted({int(n) for n in _ABC_NUMBER.findall(p.read_bytes())})
        if len(numbers) > 1:
            scores += [Score(rel, n, collection) for n in numbers]
        else:
            scores.append(Score(rel, None, collection))
    return scores


def _split_programs(
    seed: int, valid_fraction: float, test_fraction: float
) -> dict[str, tuple[int, ...]]:
    programs = sorted(INSTRUMENTS)
    rng = random.Random(f"{seed}:instrument-split")
    rng.shuffle(programs)
    n_test = max(1, round(test_fraction * len(programs))) if test_fraction > 0 else 0
    n_valid = max(1, round(valid_fraction * len(programs))) if valid_fraction > 0 else 0
    return {
        "test": tuple(sorted(programs[:n_test])),
        "valid": tuple(sorted(programs[n_test : n_test + n_valid])),
        "train": tuple(sorted(programs[n_test + n_valid :])),
    }


def discover(
    *,
    seed: int,
    soundfont: str | Path | None = None,
    max_seconds: float = 40.0,
    valid_fraction: float = 0.1,
    test_fraction: float = 0.1,
) -> MusicSetup:
    """Check music21, pretty_midi, fluidsynth and a soundfont; list the scores; split programs.

    Raises:
        CorpusError: something needed is missing (naming how to install it).
    """
    fluidsynth = FLUIDSYNTH.path()
    if fluidsynth is None:
        raise CorpusError(f"fluidsynth is not installed: apt-get install {FLUIDSYNTH.apt_package}")
    try:
        import music21
        import pretty_midi  # noqa: F401
        from music21 import corpus
    except ImportError as exc:
        raise CorpusError(f"{exc.name} is missing: pip install music21 pretty_midi") from exc
    sf2 = Path(soundfont) if soundfont is not None else default_soundfont()
    if sf2 is None or not sf2.is_file():
        raise CorpusError(
            f"soundfont {sf2 or 'FluidR3_GM.sf2'} not found: apt-get install fluid-soundfont-gm"
        )
    root = Path(corpus.__file__).parent
    scores = list_scores(root, [Path(p) for p in corpus.getPaths()])
    if not scores:
        raise CorpusError("the music21 corpus is empty: pip install --force-reinstall music21")
    return MusicSetup(
        seed=seed,
        scores=tuple(scores),
        corpus_root=root,
        programs=_split_programs(seed, valid_fraction, test_fraction),
        soundfont=sf2,
        tools={"fluidsynth": fluidsynth},
        max_seconds=max_seconds,
        valid_fraction=valid_fraction,
        test_fraction=test_fraction,
        versions={"music21": str(music21.__version__)},
    )


def _score_order(setup: MusicSetup) -> Iterator[Score]:
    """Scores in a seeded order that mixes collections (weights ``min(sqrt(n), 20)``)."""
    rng = random.Random(f"{setup.seed}:score-order")
    pools: dict[str, list[Score]] = {}
    for s in setup.scores:
        pools.setdefault(s.collection, []).append(s)
    names = sorted(pools)
    weights = {n: min(math.sqrt(len(pools[n])), 20.0) for n in names}
    for n in names:
        rng.shuffle(pools[n])
    while names:
        name = rng.choices(names, weights=[weights[n] for n in names])[0]
        yield pools[name].pop()
        if not pools[name]:
            names.remove(name)


def music_plan(setup: MusicSetup) -> Iterator[PlannedItem]:
    """The deterministic sequence of music items (ends when every score has been used)."""
    split_weights = {
        "train": max(0.0, 1.0 - setup.valid_fraction - setup.test_fraction),
        "valid": setup.valid_fraction,
        "test": setup.test_fraction,
    }
    splits = [s for s in SPLITS if split_weights[s] > 0 and setup.programs[s]]
    scores = _score_order(setup)
    for index in count():
        score = next(scores, None)
        if score is None:
            return
        seed = item_seed(setup.seed, "music", index)
        rng = random.Random(seed)
        split = rng.choices(splits, weights=[split_weights[s] for s in splits])[0]
        pool = setup.programs[split]
        k = min(len(pool), rng.choices([1, 2, 3], weights=[0.5, 0.35, 0.15])[0])
        programs = rng.sample(pool, k)
        spec = {
            "score": score.path,
            "number": score.number,
            "score_id": score.score_id,
            "collection": score.collection,
            "programs": programs,
            "transpose": rng.choice([-3, -2, -1, 0, 0, 0, 1, 2, 3]),
            "tempo": round(rng.uniform(0.9, 1.12), 3),
            "velocity_jitter": 6,
            "offset_fraction": round(rng.random(), 4),
            "render_seed": rng.getrandbits(32),
        }
        item_id = f"m{index:06d}"
        speaker = "+".join(f"gm{p:03d}" for p in programs)
        yield PlannedItem(
            id=item_id,
            index=index,
            seed=seed,
            split=split,
            source="fluidsynth",
            speaker_id=speaker,
            rel_path=f"audio/{split}/{slug(score.collection)}/{item_id}.flac",
            estimate=0.88 * setup.max_seconds,  # measured: items average ~0.89 of the maximum
            spec=spec,
        )


# --- rendering (runs in worker processes) ----------------------------------------------------


def _unshare_time_signatures(score: Any) -> None:
    """music21's ABC reader can put one TimeSignature object into several measures, which its
    MIDI writer refuses; give each measure its own copy."""
    import copy

    from music21 import meter, stream

    seen: set[int] = set()
    for measure in score.recurse().getElementsByClass(stream.Measure):
        for ts in list(measure.getElementsByClass(meter.TimeSignature)):
            if id(ts) in seen:
                measure.replace(ts, copy.deepcopy(ts))
            seen.add(id(ts))


def _strip_repeats(score: Any) -> None:
    """Remove repeat barlines, brackets and expressions (for scores whose repeats music21
    cannot expand): the music is then played through once."""
    from music21 import bar, repeat, spanner, stream

    for measure in score.recurse().getElementsByClass(stream.Measure):
        if isinstance(measure.leftBarline, bar.Repeat):
            measure.leftBarline = bar.Barline()  # type: ignore[no-untyped-call]
        if isinstance(measure.rightBarline, bar.Repeat):
            measure.rightBarline = bar.Barline()  # type: ignore[no-untyped-call]
    marks = (repeat.RepeatExpression, spanner.RepeatBracket)
    for el in list(score.recurse().getElementsByClass(marks)):
        for site in list(el.sites.get()):
            if site is not None and hasattr(site, "remove"):
                with contextlib.suppress(Exception):
                    site.remove(el)


def _excerpt(score: Any, fraction: float, max_seconds: float) -> tuple[Any, list[int] | None]:
    """A long score cut to a window of measures (about ``4 * max_seconds`` quarter notes, enough
    for ``max_seconds`` at any tempo up to 240 bpm) starting at ``fraction`` of the piece, so that
    writing MIDI does not have to translate a whole symphony. Returns the score and the measure
    indices kept (``None`` when the score is short enough to keep whole)."""
    from music21 import stream

    window = 4.0 * max_seconds
    total = float(score.highestTime)
    parts = list(score.parts) if isinstance(score, stream.Score) else []
    if total <= 1.25 * window or not parts:
        return score, None
    measures = list(parts[0].getElementsByClass(stream.Measure))
    if len(measures) < 2:
        return score, None
    start_q = fraction * (total - window)
    first = next((i for i, m in enumerate(measures) if m.offset >= start_q), len(measures) - 1)
    last = next(
        (i for i, m in enumerate(measures) if m.offset >= measures[first].offset + window),
        len(measures) - 1,
    )
    return score.measures(first, last, indicesNotNumbers=True), [first, last]


def _score_to_midi(
    root: Path, spec: Mapping[str, Any], out: Path, timeout: float, max_seconds: float
) -> dict[str, Any]:
    """Parse the score with music21 and write (an excerpt of) it as MIDI, under a Python-level
    timeout. Returns what was done (``excerpt``, ``repeats_stripped``)."""
    import warnings

    from music21 import converter, repeat, stream

    done: dict[str, Any] = {}
    with python_timeout(timeout), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            parsed = converter.parse(root / spec["score"], number=spec["number"], forceSource=True)
            if isinstance(parsed, stream.Opus):
                parsed = parsed.scores[0] if parsed.scores else parsed
            if not parsed.flatten().notes:
                raise ItemError("score has no notes")
            parsed, window = _excerpt(parsed, float(spec["offset_fraction"]), max_seconds)
            if window is not None:
                done["excerpt_measures"] = window
            _unshare_time_signatures(parsed)
            try:
                parsed.write("midi", fp=str(out))
            except repeat.ExpanderException:
                _strip_repeats(parsed)
                parsed.write("midi", fp=str(out))
                done["repeats_stripped"] = True
        except ItemError:
            raise
        except Exception as exc:
            raise ItemError(
                f"music21 could not convert the score: {type(exc).__name__}: {exc}"
            ) from exc
    return done


def _rebuild_midi(
    raw: Path, out: Path, spec: Mapping[str, Any], max_seconds: float, fraction: float
) -> dict[str, Any]:
    """Re-build the MIDI with pretty_midi: chosen programs, transposition, tempo, a window of
    about ``max_seconds`` (starting on a note), velocity jitter. Returns what was done."""
    import pretty_midi

    # Long pieces at music21's 10080 ticks per quarter pass pretty_midi's "corrupt" guess (1e7).
    pretty_midi.pretty_midi.MAX_TICK = max(pretty_midi.pretty_midi.MAX_TICK, 1e9)
    try:
        source = pretty_midi.PrettyMIDI(str(raw))
    except Exception as exc:
        raise ItemError(f"pretty_midi could not read music21's MIDI: {exc}") from exc
    parts = [inst for inst in source.instruments if inst.notes and not inst.is_drum]
    if not parts:
        raise ItemError("MIDI has no notes")
    # Highest part first, so the first chosen program gets the melody.
    parts.sort(key=lambda inst: -sum(n.pitch for n in inst.notes) / len(inst.notes))
    tempo = float(spec["tempo"])
    onsets = sorted({n.start / tempo for inst in parts for n in inst.notes})
    end = max(n.end / tempo for inst in parts for n in inst.notes)
    latest_start = end - max_seconds
    offset = onsets[0]
    if latest_start > onsets[0]:
        wanted = onsets[0] + fraction * (latest_start - onsets[0])
        offset = max(t for t in onsets if t <= wanted)
    stop = offset + max_seconds + 0.5
    rng = random.Random(int(spec["render_seed"]))
    programs = list(spec["programs"])
    used: list[int] = []
    out_midi = pretty_midi.PrettyMIDI(resolution=480, initial_tempo=120.0)
    notes_kept = 0
    for j, part in enumerate(parts[:15]):
        program = programs[j % len(programs)]
        inst = pretty_midi.Instrument(program=program, name=INSTRUMENTS[program])
        for n in part.notes:
            start, note_end = n.start / tempo, n.end / tempo
            if start < offset or start >= stop:
                continue
            pitch = n.pitch + int(spec["transpose"])
            while pitch < 21:
                pitch += 12
            while pitch > 108:
                pitch -= 12
            velocity = min(127, max(30, n.velocity + rng.randint(-6, 6)))
            inst.notes.append(
                pretty_midi.Note(
                    velocity=velocity,
                    pitch=pitch,
                    start=start - offset,
                    end=max(min(note_end, stop + 1.0), start + 0.02) - offset,
                )
            )
        if inst.notes:
            out_midi.instruments.append(inst)
            notes_kept += len(inst.notes)
            if program not in used:
                used.append(program)
    if not notes_kept:
        raise ItemError("no notes in the chosen window")
    out_midi.write(str(out))
    return {
        "programs": used,
        "parts": len(parts),
        "offset_seconds": round(offset, 3),
        "notes": notes_kept,
    }


def render_music(item: PlannedItem, ctx: RenderContext) -> dict[str, Any]:
    """Produce one music item's FLAC and return its manifest entry."""
    spec = item.spec
    max_seconds = float(ctx.options["max_seconds"])
    root = Path(ctx.options["corpus_root"])
    soundfont = Path(ctx.options["soundfont"])
    ctx.tmp_dir.mkdir(parents=True, exist_ok=True)
    m21_mid = ctx.tmp_dir / f"{item.id}.m21.mid"
    mid = ctx.tmp_dir / f"{item.id}.mid"
    wav = ctx.tmp_dir / f"{item.id}.wav"
    try:
        done_score = _score_to_midi(root, spec, m21_mid, ctx.timeout, max_seconds)
        fraction = 0.0 if "excerpt_measures" in done_score else float(spec["offset_fraction"])
        done_midi = _rebuild_midi(m21_mid, mid, spec, max_seconds, fraction)
        cmd = [
            ctx.tools["fluidsynth"], "-ni", "-q", "-g", "0.5", "-r", str(CORPUS_RATE),
            "-O", "float", "-T", "wav", "-F", str(wav), str(soundfont), str(mid),
        ]  # fmt: skip
        run_tool(cmd, timeout=ctx.timeout)
        settings = FinishSettings(
            trim_db=-50.0,
            pad_start=0.05,
            pad_end=0.5,
            max_seconds=max_seconds,
            fade_seconds=1.0,
            min_seconds=2.0,
        )
        done = finish_file(wav, ctx.corpus_dir / item.rel_path, settings)
    finally:
        for p in (m21_mid, mid, wav):
            p.unlink(missing_ok=True)
    programs: list[int] = done_midi["programs"]
    params = {
        "programs": programs,
        "planned_programs": list(spec["programs"]),
        "transpose": spec["transpose"],
        "tempo": spec["tempo"],
        "velocity_jitter": spec["velocity_jitter"],
        "parts": done_midi["parts"],
        "offset_seconds": done_midi["offset_seconds"],
        **done_score,
        "notes": done_midi["notes"],
        "soundfont": soundfont.name,
        "score": spec["score_id"],
        "collection": spec["collection"],
        **done.params(),
    }
    sf_licence = SOUNDFONT_LICENCES.get(soundfont.name, f"soundfont {soundfont.name}")
    return {
        "id": item.id,
        "path": item.rel_path,
        "duration": done.duration,
        "frames": done.frames,
        "rate": CORPUS_RATE,
        "source": "fluidsynth",
        "licence": f"{SCORE_LICENCE}; {RENDER_LICENCE} with {sf_licence}",
        "instrument": "+".join(INSTRUMENTS[p] for p in programs),
        "speaker_id": "+".join(f"gm{p:03d}" for p in programs),
        "score_id": spec["score_id"],
        "split": item.split,
        "seed": item.seed,
        "params": params,
    }
