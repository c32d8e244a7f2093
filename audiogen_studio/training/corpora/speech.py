"""The speech corpus: synthetic voices (espeak-ng, flite, festival) and recorded human speech.

Voices (each one a ``speaker_id``):

- **espeak-ng**: English accents (``en-us``, ``en-gb``, ``en-gb-scotland``, ``en-gb-x-rp``, ...)
  combined with the voice variants (``+f3``, ``+m7``, ``+Annie``, ...), each with its own base
  pitch and rate; plus a few other languages' voices reading the English text (accented
  English, marked ``accent`` in ``params``). Per item the rate and pitch vary around the base.
- **flite**: awb, rms, slt, kal16; per item the duration stretch varies.
- **festival**: every installed voice (Debian: kal_diphone, cmu_us_slt_arctic_hts); per item
  the duration stretch (or the HTS speed) varies.
- **asterisk**: the Asterisk core prompts, real recorded speech of one speaker (8 kHz
  telephone band, upsampled), with their transcripts. The prompts are short (~2.7 s), so an item
  joins 1–4 of them with a short pause between, like consecutive sentences.

Held-out split by voice: whole voices go to valid/test. flite and festival share people (slt and
kal appear in both), so those split as one group per person. The one human speaker stays in
train. Texts come from :mod:`audiogen_studio.training.corpora.texts`.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import shutil
import subprocess
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import count
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import soundfile as sf

from audiogen_studio.audio import io
from audiogen_studio.audio.errors import AudioError
from audiogen_studio.training.corpora import texts
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
from audiogen_studio.training.corpora.jobs import PlannedItem, RenderContext
from audiogen_studio.training.corpora.postprocess import (
    FinishSettings,
    finish_file,
    finish_samples,
)

SOURCES = ("espeak-ng", "flite", "festival", "asterisk")
TOOLS: dict[str, Tool] = {
    "espeak-ng": Tool("espeak-ng", "espeak-ng"),
    "flite": Tool("flite", "flite"),
    "festival": Tool("text2wave", "festival festvox-kallpc16k festvox-us-slt-hts"),
}
ASTERISK_DIR = Path("/usr/share/asterisk/sounds/en")
ASTERISK_APT = "asterisk-core-sounds-en-wav asterisk-core-sounds-en"
FESTIVAL_VOICE_DIR = Path("/usr/share/festival/voices")

#: Per-item probability weights of the sources (renormalised over those available in a split).
#: Items of every source last ~7 s on average, so these are roughly the shares by duration too
#: (the recordings are train only: ~30 % of train, ~20 % of the whole corpus).
SOURCE_WEIGHTS: dict[str, float] = {
    "espeak-ng": 0.40,
    "asterisk": 0.30,
    "flite": 0.15,
    "festival": 0.15,
}

FLITE_VOICES = ("awb", "rms", "slt", "kal16")
#: espeak-ng variants left out: robotic, whispered or deliberately distorted.
ESPEAK_EXCLUDED_VARIANTS = frozenset(
    {"Demonic", "UniRobot", "anikaRobot", "whisper", "whisperf", "croak", "fast"}
    | {f"robosoft{n}" for n in ("", 2, 3, 4, 5, 6, 7, 8)}
)
#: Languages whose espeak-ng voices read the English texts as accented English.
ACCENT_LANGUAGES = ("de", "nl", "sv", "es", "it", "pl", "fr-fr", "pt", "da", "nb")
#: Which person a flite / festival voice is; voices of one person share a split.
PERSONS: dict[str, str] = {
    "flite:slt": "cmu-slt",
    "festival:cmu_us_slt_arctic_hts": "cmu-slt",
    "flite:kal16": "cmu-kal",
    "festival:kal_diphone": "cmu-kal",
    "flite:awb": "cmu-awb",
    "flite:rms": "cmu-rms",
}

LICENCES: dict[str, str] = {
    "espeak-ng": "audio synthesised by espeak-ng (program GPL-3.0-or-later; its output is not "
    "covered by the GPL)",
    "flite": "audio synthesised by CMU Flite (BSD-style licence; CMU ARCTIC / CMU Kal voice "
    "data, BSD-style)",
    "festival": "audio synthesised by Festival (X11-style licence) with CMU/Edinburgh/NITech "
    "voice data (BSD-style licences)",
    "asterisk": "CC-BY-SA-3.0: Asterisk core sound prompts recorded by Allison Smith for Digium "
    "(attribution and share-alike required)",
}


@dataclass(frozen=True, slots=True)
class Voice:
    """A speaker of the corpus.

    Attributes:
        source: ``espeak-ng`` / ``flite`` / ``festival`` / ``asterisk``.
        name: the engine's voice (``en-us+f3``, ``slt``, ``kal_diphone``, ``allison``).
        speaker_id: unique id; decides the split.
        group: voices of one group (one person) always share a split.
        split: ``train`` / ``valid`` / ``test``.
        settings: fixed per-voice settings (espeak-ng base pitch and rate, accent, ...).
    """

    source: str
    name: str
    speaker_id: str
    group: str
    split: str = "train"
    settings: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class SpeechSetup:
    """Everything the speech plan depends on: the voices with their splits, texts, files."""

    seed: int
    voices: tuple[Voice, ...]
    asterisk_files: tuple[tuple[str, str, float], ...]  # (path under ASTERISK_DIR, text, s)
    asterisk_lines: tuple[str, ...]
    available: tuple[str, ...]
    missing: Mapping[str, str]
    tools: Mapping[str, str]
    valid_fraction: float
    test_fraction: float

    def fingerprint(self) -> str:
        """A hash of what decides the plan (voices, splits, files, seed, fractions)."""
        data = {
            "kind": "speech",
            "seed": self.seed,
            "voices": [(v.speaker_id, v.split) for v in self.voices],
            "asterisk": len(self.asterisk_files),
            "fractions": [self.valid_fraction, self.test_fraction],
            "weights": SOURCE_WEIGHTS,
            "format": 1,
        }
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


# --- discovery -------------------------------------------------------------------------------

_VOICE_LINE = re.compile(r"^\s*\d+\s+(\S+)\s+\S+\s+\S+\s+(.+?)\s*(?:\(.*)?$")


def _espeak_list(espeak: str, which: str) -> list[tuple[str, str]]:
    """``(language, file)`` rows of ``espeak-ng --voices=WHICH``."""
    out = subprocess.run(
        [espeak, f"--voices={which}"], capture_output=True, text=True, timeout=30, check=False
    )
    rows = []
    for line in out.stdout.splitlines()[1:]:
        m = _VOICE_LINE.match(line)
        if m:
            rows.append((m.group(1), m.group(2).strip()))
    return rows


def espeak_english_voices(espeak: str) -> list[str]:
    """English accent voices (``en-us``, ``en-gb-scotland``, ...), sorted; mbrola voices only
    when the ``mbrola`` program is installed."""
    has_mbrola = shutil.which("mbrola") is not None
    names = {
        lang
        for lang, file in _espeak_list(espeak, "en")
        if lang.startswith("en") and (has_mbrola or not file.startswith("mb/"))
    }
    return sorted(names)


def espeak_variants(espeak: str) -> list[str]:
    """Voice variants (``f3``, ``m7``, ``Annie``, ...), sorted, without the excluded ones."""
    names = set()
    for _, file in _espeak_list(espeak, "variant"):
        name = file.split("/", 1)[-1]
        if name and " " not in name and name not in ESPEAK_EXCLUDED_VARIANTS:
            names.add(name)
    return sorted(names)


def espeak_languages(espeak: str) -> set[str]:
    """All language codes espeak-ng has a voice for."""
    return {lang for lang, file in _espeak_list(espeak, "") if not file.startswith("mb/")}


def flite_voices(flite: str) -> list[str]:
    """The :data:`FLITE_VOICES` that ``flite -lv`` lists."""
    out = subprocess.run([flite, "-lv"], capture_output=True, text=True, timeout=30, check=False)
    listed = set(out.stdout.replace("Voices available:", " ").split())
    return [v for v in FLITE_VOICES if v in listed]


def festival_voices(voice_dir: Path = FESTIVAL_VOICE_DIR) -> list[str]:
    """Installed festival voices (``kal_diphone``, ``cmu_us_slt_arctic_hts``, ...), sorted."""
    if not voice_dir.is_dir():
        return []
    return sorted(
        d.name
        for lang in voice_dir.iterdir()
        if lang.is_dir()
        for d in lang.iterdir()
        if d.is_dir()
    )


def asterisk_files(
    sound_dir: Path = ASTERISK_DIR, transcripts: Mapping[str, str] | None = None
) -> list[tuple[str, str, float]]:
    """``(relative wav path, transcript, seconds)`` for each Asterisk prompt with a transcript."""
    if not sound_dir.is_dir():
        return []
    lines = texts.asterisk_transcripts() if transcripts is None else transcripts
    found = []
    for wav in sorted(sound_dir.resolve().rglob("*.wav")):
        rel = wav.relative_to(sound_dir.resolve())
        key = rel.with_suffix("").as_posix()
        if key in lines:
            try:
                seconds = float(sf.info(str(wav)).duration)
            except (sf.LibsndfileError, RuntimeError):
                continue
            found.append((rel.as_posix(), lines[key], seconds))
    return found


def _readable_lines(transcripts: Mapping[str, str]) -> tuple[str, ...]:
    """Transcripts fit for synthetic voices to read: whole phrases of three words or more
    (single digits, letters and ordinals stay with the recordings only)."""
    return tuple(sorted({t for t in transcripts.values() if len(t.split()) >= 3}))


def _held_out(n: int, fraction: float, minimum_from: int) -> int:
    """How many of ``n`` groups a split of ``fraction`` gets (at least one once ``n`` reaches
    ``minimum_from`` and the fraction is positive)."""
    if fraction <= 0:
        return 0
    k = round(fraction * n)
    return max(k, 1 if n >= minimum_from else 0)


def _assign_splits(
    voices: list[Voice], seed: int, family: str, valid_fraction: float, test_fraction: float
) -> list[Voice]:
    """Give whole groups of ``voices`` to valid/test (seeded), the rest to train."""
    groups = sorted({v.group for v in voices})
    rng = random.Random(f"{seed}:split:{family}")
    rng.shuffle(groups)
    n_test = _held_out(len(groups), test_fraction, 4)
    n_valid = _held_out(len(groups), valid_fraction, 8)
    n_valid = min(n_valid, max(0, len(groups) - n_test - 1))
    split_of = {g: "test" for g in groups[:n_test]}
    split_of.update({g: "valid" for g in groups[n_test : n_test + n_valid]})
    return [
        Voice(v.source, v.name, v.speaker_id, v.group, split_of.get(v.group, "train"), v.settings)
        for v in voices
    ]


def discover(
    *,
    seed: int,
    sources: Sequence[str] | None = None,
    espeak_voices: int = 40,
    accented_voices: int = 6,
    valid_fraction: float = 0.1,
    test_fraction: float = 0.1,
) -> SpeechSetup:
    """Find the installed engines, voices and recordings and fix every voice's split.

    Args:
        seed: corpus seed (voice sampling and split assignment).
        sources: the sources to use; ``None``: every one that is installed.
        espeak_voices: how many English espeak-ng voices (accent × variant, each with its own
            base pitch and rate) to sample.
        accented_voices: how many other-language espeak-ng voices read English.
        valid_fraction, test_fraction: share of items (and about that share of the voices of
            each engine family) held out.

    Raises:
        CorpusError: an explicitly requested source is missing, or no source is available.
    """
    wanted = tuple(SOURCES if sources is None else sources)
    unknown = [s for s in wanted if s not in SOURCES]
    if unknown:
        raise CorpusError(
            f"unknown speech source(s) {', '.join(unknown)}: use {', '.join(SOURCES)}"
        )
    missing: dict[str, str] = {}
    tools: dict[str, str] = {}
    for name in wanted:
        if name == "asterisk":
            if not ASTERISK_DIR.is_dir() or not texts.ASTERISK_TRANSCRIPTS.is_file():
                missing[name] = f"apt-get install {ASTERISK_APT}"
            continue
        path = TOOLS[name].path()
        if path is None:
            missing[name] = f"apt-get install {TOOLS[name].apt_package}"
        else:
            tools[name] = path
    if sources is not None and missing:
        name, fix = next(iter(missing.items()))
        raise CorpusError(f"speech source {name} is not installed: {fix}")

    voices: list[Voice] = []
    if "espeak-ng" in tools:
        espeak = tools["espeak-ng"]
        rng = random.Random(f"{seed}:espeak-voices")
        accents = espeak_english_voices(espeak)
        variants = espeak_variants(espeak)
        combos = [(a, v) for a in accents for v in variants]
        chosen = rng.sample(combos, min(espeak_voices, len(combos)))
        languages = sorted(espeak_languages(espeak) & set(ACCENT_LANGUAGES))
        foreign = [(a, v) for a in languages for v in variants]
        chosen += rng.sample(foreign, min(accented_voices, len(foreign)))
        espeak_list = []
        for accent, variant in chosen:
            pitch, rate = rng.randint(30, 70), rng.randint(145, 190)
            name = f"{accent}+{variant}"
            speaker = f"espeak-ng:{name}:p{pitch}:r{rate}"
            settings = {"pitch": pitch, "rate": rate, "language": accent}
            if not accent.startswith("en"):
                settings["accent"] = accent
            espeak_list.append(Voice("espeak-ng", name, speaker, speaker, "train", settings))
        voices += _assign_splits(espeak_list, seed, "espeak-ng", valid_fraction, test_fraction)
    cmu: list[Voice] = []
    if "flite" in tools:
        for v in flite_voices(tools["flite"]):
            key = f"flite:{v}"
            cmu.append(Voice("flite", v, key, PERSONS.get(key, key)))
    if "festival" in tools:
        for v in festival_voices():
            key = f"festival:{v}"
            cmu.append(Voice("festival", v, key, PERSONS.get(key, key)))
    voices += _assign_splits(cmu, seed, "cmu", valid_fraction, test_fraction)

    files: list[tuple[str, str, float]] = []
    lines: tuple[str, ...] = ()
    if "asterisk" in wanted and "asterisk" not in missing:
        transcripts = texts.asterisk_transcripts()
        lines = _readable_lines(transcripts)
        files = asterisk_files(ASTERISK_DIR, transcripts)
        if files:
            voices.append(Voice("asterisk", "allison", "asterisk:allison", "asterisk:allison"))
        else:
            missing["asterisk"] = f"apt-get install {ASTERISK_APT}"
    elif texts.ASTERISK_TRANSCRIPTS.is_file():
        lines = _readable_lines(texts.asterisk_transcripts())
    if not voices:
        fixes = "; ".join(f"{k}: {v}" for k, v in missing.items())
        raise CorpusError(f"no speech source is installed ({fixes})")
    available = tuple(s for s in SOURCES if any(v.source == s for v in voices))
    return SpeechSetup(
        seed=seed,
        voices=tuple(voices),
        asterisk_files=tuple(files),
        asterisk_lines=lines,
        available=available,
        missing=missing,
        tools=tools,
        valid_fraction=valid_fraction,
        test_fraction=test_fraction,
    )


# --- the plan --------------------------------------------------------------------------------


def _estimate(source: str, words: int, settings: Mapping[str, Any]) -> float:
    """Expected seconds of speech for ``words`` words (measured on these engines)."""
    if source == "espeak-ng":
        return 0.3 + words * 60.0 / float(settings["rate"]) * 0.95
    per_word = 0.33 if source == "flite" else 0.37
    return 0.3 + words * per_word * float(settings.get("stretch", 1.0))


def speech_plan(setup: SpeechSetup) -> Iterator[PlannedItem]:
    """The deterministic, unbounded sequence of speech items for ``setup`` (ends only when no
    source is left, which happens when the recordings are the only source and are used up)."""
    by_split: dict[str, dict[str, list[Voice]]] = {s: {} for s in SPLITS}
    for v in setup.voices:
        by_split[v.split].setdefault(v.source, []).append(v)
    order = list(setup.asterisk_files)
    random.Random(f"{setup.seed}:asterisk-order").shuffle(order)
    next_recording = 0
    split_weights = {
        "train": max(0.0, 1.0 - setup.valid_fraction - setup.test_fraction),
        "valid": setup.valid_fraction,
        "test": setup.test_fraction,
    }
    for index in count():
        seed = item_seed(setup.seed, "speech", index)
        rng = random.Random(seed)

        recordings_left = next_recording < len(order)
        usable = {
            split: [
                src
                for src in SOURCES
                if by_split[split].get(src) and (src != "asterisk" or recordings_left)
            ]
            for split in SPLITS
        }
        splits = [s for s in SPLITS if split_weights[s] > 0 and usable[s]]
        if not splits:
            return
        split = rng.choices(splits, weights=[split_weights[s] for s in splits])[0]
        sources = usable[split]
        source = rng.choices(sources, weights=[SOURCE_WEIGHTS[s] for s in sources])[0]
        voice = rng.choice(by_split[split][source])
        item_id = f"s{index:06d}"
        rel = f"audio/{split}/{source}/{slug(voice.speaker_id)}/{item_id}.flac"
        spec: dict[str, Any] = {"voice": voice.name, "group": voice.group}
        if source == "asterisk":
            n = rng.choices([1, 2, 3, 4], weights=[0.15, 0.3, 0.3, 0.25])[0]
            chosen = order[next_recording : next_recording + n]
            next_recording += len(chosen)
            gaps = [round(rng.uniform(0.25, 0.6), 3) for _ in chosen[1:]]
            spec.update(
                files=[c[0] for c in chosen],
                transcript=" ".join(_sentence(c[1]) for c in chosen),
                gaps=gaps,
            )
            estimate = sum(c[2] for c in chosen) + sum(gaps) - 0.2 * len(chosen)
        else:
            n = rng.choices([1, 2, 3], weights=[0.3, 0.45, 0.25])[0]
            text, pools = texts.choose_text(rng, asterisk_lines=setup.asterisk_lines, sentences=n)
            spec.update(transcript=text, text_pools=sorted(set(pools)))
            if source == "espeak-ng":
                base_rate, base_pitch = int(voice.settings["rate"]), int(voice.settings["pitch"])
                rate = max(80, round(base_rate * rng.uniform(0.9, 1.1)))
                pitch = min(99, max(0, base_pitch + rng.randint(-6, 6)))
                spec.update(
                    rate=rate,
                    pitch=pitch,
                    **{k: v for k, v in voice.settings.items() if k in ("language", "accent")},
                )
                spec["base_rate"], spec["base_pitch"] = base_rate, base_pitch
            else:
                spec["stretch"] = round(rng.uniform(0.85, 1.2), 3)
            estimate = _estimate(source, len(text.split()), spec)
        yield PlannedItem(
            id=item_id,
            index=index,
            seed=seed,
            split=split,
            source=source,
            speaker_id=voice.speaker_id,
            rel_path=rel,
            estimate=estimate,
            spec=spec,
        )


def _sentence(text: str) -> str:
    """``text`` with a capital first letter and final punctuation."""
    text = text[:1].upper() + text[1:]
    return text if text[-1:] in ".?!" else text + "."


# --- rendering (runs in worker processes or threads) -----------------------------------------


def _noise_floor(x: npt.NDArray[np.float32], rate: int) -> float:
    """RMS of the quietest non-silent 10 ms frames (10th percentile) of ``x [T]``."""
    hop = max(1, rate // 100)
    n = x.shape[0] // hop
    if n == 0:
        return 0.0
    rms = np.sqrt(np.mean(np.square(x[: n * hop].reshape(n, hop), dtype=np.float64), axis=1))
    rms = rms[rms > 0]
    return float(np.percentile(rms, 10)) if rms.size else 0.0


def _joined_recordings(
    folder: Path, files: Sequence[str], gaps: Sequence[float], seed: int
) -> tuple[npt.NDArray[np.float32], int]:
    """Recordings joined into ``[1, T]`` with ``gaps`` seconds between them, and their rate
    (the Asterisk prompts share one rate; others are resampled to the first's). The gaps hold
    seeded noise at the recordings' noise floor rather than digital silence."""
    clips: list[npt.NDArray[np.float32]] = []
    rate = 0
    for name in files:
        try:
            clip = io.load(folder / name, mono=True, rate=rate or None)
        except AudioError as exc:
            raise ItemError(f"unreadable recording: {exc}") from exc
        rate = rate or clip.rate
        clips.append(np.asarray(clip.samples, dtype=np.float32))
    floor = min(_noise_floor(c[0], rate) for c in clips)
    rng = np.random.default_rng(seed)
    pieces = [clips[0]]
    for gap, clip_samples in zip(gaps, clips[1:], strict=True):
        noise = rng.standard_normal((1, round(gap * rate))) * floor
        pieces += [noise.astype(np.float32), clip_samples]
    return np.concatenate(pieces, axis=1), rate


SPEECH_FINISH = FinishSettings(trim_db=-40.0, pad_start=0.1, pad_end=0.15, min_seconds=0.3)


def _festival_setup(voice: str, stretch: float) -> list[str]:
    if voice.endswith("_hts"):
        speed = round(1.0 / stretch, 4)
        return [
            "-eval",
            f"(voice_{voice})",
            "-eval",
            f'(set! hts_engine_params (append hts_engine_params (list \'("-r" {speed}))))',
        ]
    return ["-eval", f"(voice_{voice})", "-eval", f"(Parameter.set 'Duration_Stretch {stretch})"]


def render_speech(item: PlannedItem, ctx: RenderContext) -> dict[str, Any]:
    """Produce one speech item's FLAC and return its manifest entry."""
    spec = item.spec
    target = ctx.corpus_dir / item.rel_path
    ctx.tmp_dir.mkdir(parents=True, exist_ok=True)
    raw = ctx.tmp_dir / f"{item.id}.wav"
    params: dict[str, Any] = {}
    text: str = spec["transcript"]
    try:
        if item.source == "asterisk":
            folder = Path(ctx.options.get("asterisk_dir", ASTERISK_DIR))
            samples, rate = _joined_recordings(folder, spec["files"], spec["gaps"], item.seed)
            params.update(files=spec["files"], gaps=spec["gaps"])
        elif item.source == "espeak-ng":
            cmd = [
                ctx.tools["espeak-ng"], "-v", spec["voice"], "-s", str(spec["rate"]),
                "-p", str(spec["pitch"]), "-w", str(raw), "--stdin",
            ]  # fmt: skip
            run_tool(cmd, timeout=ctx.timeout, input_text=text)
            params.update(
                {k: spec[k] for k in ("rate", "pitch", "base_rate", "base_pitch") if k in spec}
            )
            if "accent" in spec:
                params["accent"] = spec["accent"]
        elif item.source == "flite":
            cmd = [
                ctx.tools["flite"], "-voice", spec["voice"],
                "--setf", f"duration_stretch={spec['stretch']}", "-t", text, "-o", str(raw),
            ]  # fmt: skip
            run_tool(cmd, timeout=ctx.timeout)
            params["stretch"] = spec["stretch"]
        elif item.source == "festival":
            cmd = [
                ctx.tools["festival"], "-o", str(raw),
                *_festival_setup(spec["voice"], float(spec["stretch"])),
            ]  # fmt: skip
            run_tool(cmd, timeout=ctx.timeout, input_text=text + "\n")
            params["stretch"] = spec["stretch"]
        else:
            raise ItemError(f"unknown source {item.source}")
        if item.source == "asterisk":
            done = finish_samples(samples, rate, target, SPEECH_FINISH)
        else:
            done = finish_file(raw, target, SPEECH_FINISH)
    finally:
        raw.unlink(missing_ok=True)
    params.update(done.params())
    licence = LICENCES[item.source]
    if item.source != "asterisk":
        pools = spec.get("text_pools", [])
        licence += "; text: " + ", ".join(texts.TEXT_LICENCES[p] for p in pools)
        params["text_pools"] = pools
    return {
        "id": item.id,
        "path": item.rel_path,
        "duration": done.duration,
        "frames": done.frames,
        "rate": CORPUS_RATE,
        "source": item.source,
        "licence": licence,
        "voice": spec["voice"],
        "speaker_id": item.speaker_id,
        "transcript": text,
        "split": item.split,
        "seed": item.seed,
        "params": params,
    }
