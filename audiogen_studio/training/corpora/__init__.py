"""Reproducible training corpora built from offline sources (DESIGN.md §5).

``build_speech_corpus(dir, SpeechOptions(...))`` renders speech with espeak-ng, flite and festival
voices and takes the recorded Asterisk prompts; ``build_music_corpus(dir, MusicOptions(...))``
renders music21's scores through fluidsynth with General MIDI instruments. Both are deterministic
given the seed, parallel, resumable, and hold out whole voices / instruments for valid and test.
``make_subset(corpus, out, minutes=...)`` copies a seeded random piece of one (no test split).
See :mod:`audiogen_studio.training.corpora.manifest` for the manifest format.
"""

from __future__ import annotations

from audiogen_studio.training.corpora.build import (
    CORPUS_JSON,
    CorpusSummary,
    MusicOptions,
    SpeechOptions,
    build_music_corpus,
    build_speech_corpus,
)
from audiogen_studio.training.corpora.common import CORPUS_RATE, CorpusError, ItemError
from audiogen_studio.training.corpora.jobs import PlannedItem, Progress
from audiogen_studio.training.corpora.manifest import MANIFEST_NAME, read_manifest
from audiogen_studio.training.corpora.subset import SubsetSummary, make_subset

__all__ = [
    "CORPUS_JSON",
    "CORPUS_RATE",
    "MANIFEST_NAME",
    "CorpusError",
    "CorpusSummary",
    "ItemError",
    "MusicOptions",
    "PlannedItem",
    "Progress",
    "SpeechOptions",
    "SubsetSummary",
    "build_music_corpus",
    "build_speech_corpus",
    "make_subset",
    "read_manifest",
]
