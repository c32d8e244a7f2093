"""Candidate beginnings: the AudioLM engine samples N beginnings per take, keeps the one that
matches the prompt best and goes on with it alone, exactly as it would have gone on in the batch
(random weights: the mechanics, not the quality)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from audiolm_stack import random_audiolm_bundle

import audiogen_studio.engine.audiolm_pipeline as pipeline
from audiogen_studio.audio import synth
from audiogen_studio.audio.clip import Clip
from audiogen_studio.engine.api import (
    CONTEXT_SLIDES,
    ContextSlide,
    GenerationError,
    GenerationRequest,
)
from audiogen_studio.engine.audiolm_pipeline import AudioLMEngine
from audiogen_studio.engine.loader import load_engine
from audiogen_studio.engine.take_ranking import ChoiceSettings, match_score
from audiogen_studio.engine.takes import collect


def _set_generation(folder: Path, **settings: object) -> None:
    manifest = folder / "bundle.json"
    data = json.loads(manifest.read_text())
    data["generation"] = {**data.get("generation", {}), **settings}
    manifest.write_text(json.dumps(data))


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.set_num_threads(1)
    out = random_audiolm_bundle(tmp_path_factory.mktemp("cand") / "random-audiolm")
    _set_generation(out, rank_by="voice")
    return out


@pytest.fixture
def engine(folder: Path) -> AudioLMEngine:
    eng = load_engine(str(folder), engine="audiolm", device="cpu")
    assert isinstance(eng, AudioLMEngine)
    assert eng.choice.rank_by == "voice" and eng.choice.candidates == 1
    return eng


def _prompt() -> Clip:
    return synth.sine(330.0, 0.5, rate=16000, amp=0.4)


@pytest.fixture
def forced(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, int]]:
    """``forced["candidate"]`` wins every choice (the scores come in candidate order)."""
    state = {"candidate": 0, "calls": 0, "candidates": 1}

    def score(prompt: object, continuation: object, rate: int, aspect: str) -> float:
        c = state["calls"] % state["candidates"]
        state["calls"] += 1
        return 1.0 if c == state["candidate"] else 0.0

    monkeypatch.setattr(pipeline, "match_score", score)
    yield state


def _run(engine: AudioLMEngine, *, candidates: int, takes: int = 1, seed: int = 5) -> list:
    request = GenerationRequest(
        prompt=_prompt(), seconds=1.2, takes=takes, seed=seed, candidates=candidates
    )
    return [t.generated.samples for t in collect(engine, request)]


@pytest.mark.parametrize("slide", CONTEXT_SLIDES)
def test_a_kept_candidate_goes_on_as_it_would_have_in_the_batch(
    engine: AudioLMEngine, forced: dict[str, int], slide: ContextSlide
) -> None:
    engine.slide = slide  # 1.2 s slides every stage's context (the tiny LMs hold < 1 s)
    forced.update(candidate=2, candidates=3)
    # no choice before the end: every candidate runs in the batch
    engine.choice = replace(engine.choice, choose_after=60.0)
    (late,) = _run(engine, candidates=3)
    # chosen after 0.5 s: candidate 2 goes on alone
    engine.choice = replace(engine.choice, choose_after=0.5)
    (early,) = _run(engine, candidates=3)
    assert late.shape == early.shape == (1, round(1.2 * 16000))
    np.testing.assert_allclose(early, late, atol=1e-5)
    # candidate 0 is the take a request without candidates makes; candidate 2 is another one
    (plain,) = _run(engine, candidates=1)
    forced.update(candidate=0, calls=0)
    (first,) = _run(engine, candidates=3)
    np.testing.assert_allclose(first, plain, atol=1e-5)
    assert np.abs(early - plain).max() > 1e-3
    # several takes, each with its own candidates: the same on both paths
    forced.update(candidate=1, candidates=2, calls=0)
    engine.choice = replace(engine.choice, choose_after=60.0)
    late2 = _run(engine, candidates=2, takes=2)
    engine.choice = replace(engine.choice, choose_after=0.5)
    early2 = _run(engine, candidates=2, takes=2)
    for a, b in zip(early2, late2, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-5)
    assert np.abs(early2[0] - early2[1]).max() > 1e-3  # two takes, two different beginnings


def test_the_candidate_that_matches_the_prompt_best_is_kept(engine: AudioLMEngine) -> None:
    # ranked on the whole continuation: each candidate is checkable
    engine.choice = replace(engine.choice, choose_after=60.0)
    (kept,) = _run(engine, candidates=3, seed=9)
    each = []
    with pytest.MonkeyPatch.context() as patch:
        for c in range(3):
            state = {"n": 0}

            def score(*args: object, c: int = c, state: dict[str, int] = state) -> float:
                state["n"] += 1
                return 1.0 if (state["n"] - 1) % 3 == c else 0.0

            patch.setattr(pipeline, "match_score", score)
            each.append(_run(engine, candidates=3, seed=9)[0])
    prompt = _prompt().samples[0]
    scores = [match_score(prompt, x[0], 16000, "voice") for x in each]
    np.testing.assert_allclose(kept, each[int(np.argmax(scores))], atol=1e-5)


def test_stopping_while_choosing_keeps_the_best_partial_take(engine: AudioLMEngine) -> None:
    engine.choice = replace(engine.choice, choose_after=60.0)
    cancel = threading.Event()
    calls = 0
    sample_into = engine._sample_into

    def counting(*args: object, **kwargs: object) -> torch.Tensor:
        nonlocal calls
        calls += 1
        if calls == 150:  # a few windows in
            cancel.set()
        return sample_into(*args, **kwargs)  # type: ignore[arg-type]

    engine._sample_into = counting  # type: ignore[method-assign]
    request = GenerationRequest(prompt=_prompt(), seconds=3.0, seed=1, candidates=2)
    (take,) = collect(engine, request, cancel)
    assert not take.complete and 0 < take.generated.frames < 3 * 16000
    assert take.lead_in is not None  # the held first window's lead-in came with it


def test_a_request_names_what_its_candidates_are_ranked_by(
    engine: AudioLMEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    aspects: list[str] = []

    def score(prompt: object, continuation: object, rate: int, aspect: str) -> float:
        aspects.append(aspect)
        return 0.0

    monkeypatch.setattr(pipeline, "match_score", score)
    _run(engine, candidates=2)  # the bundle's: voice
    request = GenerationRequest(
        prompt=_prompt(), seconds=1.2, seed=5, candidates=2, rank_by="pitch+rhythm"
    )
    collect(engine, request)
    assert aspects == ["voice", "voice", "pitch+rhythm", "pitch+rhythm"]
    # a bundle that names nothing to rank by: the request's aspect is enough
    engine.choice = ChoiceSettings()
    collect(engine, replace(request, rank_by="rhythm"))
    assert aspects[-2:] == ["rhythm", "rhythm"]
    with pytest.raises(GenerationError, match="rank_by must be one of"):
        GenerationRequest(prompt=_prompt(), rank_by="loud")  # type: ignore[arg-type]


def test_candidates_are_checked(folder: Path, engine: AudioLMEngine, tmp_path: Path) -> None:
    for bad in (0, 9, True):
        with pytest.raises(GenerationError, match="candidates must be an integer 1–8"):
            GenerationRequest(prompt=_prompt(), candidates=bad)  # type: ignore[arg-type]
    engine.choice = ChoiceSettings()
    with pytest.raises(GenerationError, match="names nothing to rank candidates by"):
        _run(engine, candidates=2)
    _run(engine, candidates=1)  # one candidate needs no ranking
    import shutil

    for settings, message in (
        ({"rank_by": None, "candidates": 2}, "needs rank_by"),
        ({"candidates": 2, "choose_after": 0.1}, r"choose_after must be 0.5..60 s"),
        ({"candidates": 10}, "candidates must be an integer 1..8"),
        ({"rank_by": "loud"}, "rank_by must be voice or pitch"),
    ):
        copy = tmp_path / f"b{len(list(tmp_path.iterdir()))}"
        shutil.copytree(folder, copy)
        _set_generation(copy, **settings)
        with pytest.raises(GenerationError, match=message):  # the loader words BundleErrors so
            load_engine(str(copy), engine="audiolm", device="cpu")
    # a bundle's default: its requests get its candidates unless they ask otherwise
    copy = tmp_path / "default"
    shutil.copytree(folder, copy)
    _set_generation(copy, candidates=3, choose_after=0.5)
    eng = load_engine(str(copy), engine="audiolm", device="cpu")
    assert isinstance(eng, AudioLMEngine)
    assert eng.candidates_for(GenerationRequest(prompt=_prompt())) == 3
    assert eng.candidates_for(GenerationRequest(prompt=_prompt(), candidates=1)) == 1
