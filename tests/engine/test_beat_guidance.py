"""Beat-grid guidance of the semantic stage: the prompt's grid, the tilt, the engine's use."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from audiolm_stack import random_audiolm_bundle

from audiogen_studio.audio.clip import Clip
from audiogen_studio.engine import audiolm_pipeline
from audiogen_studio.engine.api import GenerationError, GenerationRequest
from audiogen_studio.engine.audiolm_pipeline import AudioLMEngine
from audiogen_studio.engine.beat_guidance import (
    BeatGrid,
    BeatGuidanceSettings,
    BeatGuide,
    estimate_beat_grid,
    token_onsets,
)
from audiogen_studio.engine.bundles import BundleError, read_bundle
from audiogen_studio.engine.loader import load_engine
from audiogen_studio.engine.takes import collect
from audiogen_studio.models.chroma_encoder import ChromaConfig, ChromaEncoder
from audiogen_studio.models.semantic import NAMED_CONFIGS, SemanticEncoder, SemanticTokenizer

RATE = 16_000


def click_track(bpm: float, phase: float, seconds: float, rate: int = RATE, seed: int = 0):
    """Plucked-noise clicks every beat from ``phase`` s, over a quiet noise floor: ``[T]``."""
    rng = np.random.default_rng(seed)
    out = 0.003 * rng.standard_normal(round(seconds * rate))
    period = 60.0 / bpm
    decay = np.exp(-np.arange(round(0.06 * rate)) / (0.012 * rate))
    t = phase
    while t < seconds:
        i = round(t * rate)
        burst = 0.5 * rng.standard_normal(decay.size) * decay
        n = min(burst.size, out.size - i)
        out[i : i + n] += burst[:n]
        t += period
    return out.astype(np.float32)


@pytest.mark.parametrize("bpm", [84.0, 120.0, 150.0])
def test_a_click_track_gives_its_tempo_and_phase(bpm: float) -> None:
    grid = estimate_beat_grid(click_track(bpm, 0.13, 6.0), RATE)
    assert grid is not None
    assert grid.bpm == pytest.approx(bpm, rel=0.01)
    assert abs(grid.distance(0.13)) < 0.012  # the clicks' onsets are on the grid
    assert abs(grid.distance(0.13 + 9 * 60.0 / bpm)) < 0.012
    assert grid.clarity > 0.3


def test_the_grid_reads_the_prompts_end_and_other_rates() -> None:
    # 20 s of clicks: only the last GRID_SECONDS are read, and the phase still counts from the
    # prompt's first sample
    grid = estimate_beat_grid(click_track(100.0, 0.2, 20.0), RATE)
    assert grid is not None and grid.bpm == pytest.approx(100.0, rel=0.01)
    assert abs(grid.distance(0.2 + 30 * 0.6)) < 0.012
    x = click_track(120.0, 0.1, 5.0, rate=22_050)
    other = estimate_beat_grid(x, 22_050)
    assert other is not None and other.bpm == pytest.approx(120.0, rel=0.01)
    assert abs(other.distance(0.1)) < 0.012


def test_no_pulse_no_grid() -> None:
    assert estimate_beat_grid(np.zeros(3 * RATE, np.float32), RATE) is None
    assert estimate_beat_grid(np.zeros(RATE // 4, np.float32), RATE) is None  # too short
    noise = np.random.default_rng(1).standard_normal(4 * RATE).astype(np.float32) * 0.1
    noisy = estimate_beat_grid(noise, RATE)
    clicks = estimate_beat_grid(click_track(120.0, 0.0, 4.0), RATE)
    assert noisy is not None and clicks is not None and noisy.clarity < clicks.clarity
    assert estimate_beat_grid(noise, RATE, min_clarity=0.3) is None
    with pytest.raises(GenerationError, match="finite"):
        estimate_beat_grid(np.full(RATE, np.nan, np.float32), RATE)


def test_the_distance_to_the_nearest_beat() -> None:
    grid = BeatGrid(period=0.5, phase=0.1, clarity=1.0)
    assert grid.bpm == 120.0
    assert grid.distance(0.1) == pytest.approx(0.0)
    assert grid.distance(2.15) == pytest.approx(0.05)
    assert grid.distance(2.05) == pytest.approx(-0.05)
    assert grid.distance(-0.4) == pytest.approx(0.0)


def test_the_tilt_favours_onset_tokens_on_the_beat_only() -> None:
    onsets = torch.tensor([-1.0, 0.0, 2.0])
    settings = BeatGuidanceSettings(enabled=True, strength=2.0, width_seconds=0.02, off_beat=0.25)
    guide = BeatGuide(BeatGrid(period=0.5, phase=0.01, clarity=1.0), onsets, settings, 0.02)
    assert guide.weight(0) == pytest.approx(2.0 * 0.75)  # frame 0 is centred on 0.01 s
    assert guide.weight(12) == pytest.approx(-0.5, abs=1e-3)  # 0.25 s: between beats
    logits = torch.zeros(2, 5)  # the stream's vocabulary may be larger than the tokens'
    out = guide.apply(logits, 25)  # 0.51 s: on the next beat
    assert out is logits
    assert torch.allclose(out[:, :3], 1.5 * onsets.expand(2, 3))
    assert torch.equal(out[:, 3:], torch.zeros(2, 2))


def test_settings_read_back_and_bad_values_are_clear() -> None:
    assert BeatGuidanceSettings.from_generation({}).enabled is False
    assert BeatGuidanceSettings.from_generation({"beat_guidance": True}).enabled is True
    custom = BeatGuidanceSettings(enabled=True, strength=2.5, width_seconds=0.04, off_beat=0.1)
    assert BeatGuidanceSettings.from_generation({"beat_guidance": custom.to_dict()}) == custom
    for bad, message in (
        ({"beat_guidance": "yes"}, "true, false or an object"),
        ({"beat_guidance": {"strength": -1}}, "strength"),
        ({"beat_guidance": {"width_seconds": True}}, "a number"),
        ({"beat_guidance": {"tempo": 1}}, "unknown keys"),
        ({"beat_guidance": {"enabled": 1}}, "true or false"),
    ):
        with pytest.raises(GenerationError, match=message):
            BeatGuidanceSettings.from_generation(bad)


def test_token_onsets_need_a_chroma_tokenizer() -> None:
    torch.manual_seed(0)
    chroma = SemanticTokenizer(
        ChromaEncoder(ChromaConfig()), layer=0, centroids=torch.randn(32, 14)
    )
    z = token_onsets(chroma)
    assert z is not None and z.shape == (32,)
    assert float(z.mean()) == pytest.approx(0.0, abs=0.15)  # standardised (then clipped)
    assert float(z.min()) >= -1.5 and float(z.max()) <= 3.0
    # the onset is the last feature: the token with the largest onset centroid scores highest
    assert int(z.argmax()) == int(chroma.centroids[:, 13].argmax())
    encoder = SemanticEncoder(NAMED_CONFIGS["tiny"])
    layer = NAMED_CONFIGS["tiny"].feature_layer
    speech = SemanticTokenizer(
        encoder, layer=layer, centroids=torch.randn(8, encoder.feature_dim(layer))
    )
    assert token_onsets(speech) is None


@pytest.fixture(scope="module")
def music_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.set_num_threads(1)
    return random_audiolm_bundle(tmp_path_factory.mktemp("beat") / "music", chroma=True)


def _with_guidance(folder: Path, value: object, target: Path) -> Path:
    """A copy of bundle ``folder`` at ``target`` with ``generation.beat_guidance = value``."""
    shutil.copytree(folder, target)
    manifest = target / "bundle.json"
    data = json.loads(manifest.read_text())
    data.setdefault("generation", {})["beat_guidance"] = value
    manifest.write_text(json.dumps(data))
    return target


def _prompt() -> Clip:
    return Clip(click_track(120.0, 0.05, 2.0)[None], RATE)


def test_guided_semantic_tokens_put_their_onsets_on_the_prompts_beat(
    music_bundle: Path, tmp_path: Path
) -> None:
    settings = {"strength": 8.0, "width_seconds": 0.02, "off_beat": 0.5}
    folder = _with_guidance(music_bundle, settings, tmp_path / "guided")
    engine = load_engine(str(folder), engine="audiolm", device="cpu")
    assert isinstance(engine, AudioLMEngine) and engine.beat_guidance.enabled
    sampled: list[tuple[int, torch.Tensor]] = []
    original = AudioLMEngine._sample_into

    def recording(
        self: AudioLMEngine, stream: object, count: int, *args: object, **kwargs: object
    ) -> torch.Tensor:
        ids = original(self, stream, count, *args, **kwargs)  # type: ignore[arg-type]
        if getattr(stream, "stage", "") == "semantic":
            sampled.append((stream.tokens.shape[1] - count, ids))  # type: ignore[attr-defined]
        return ids

    request = GenerationRequest(prompt=_prompt(), seconds=3.0, seed=3, takes=2)
    audiolm_pipeline.AudioLMEngine._sample_into = recording  # type: ignore[method-assign]
    try:
        guide = engine.beat_guide(request, _prompt().samples[0])
        collect(engine, request)
        # the same request with the guidance turned off by the request
        plain_sampled = list(sampled)
        sampled.clear()
        collect(engine, replace(request, beat_guidance=False))
    finally:
        audiolm_pipeline.AudioLMEngine._sample_into = original  # type: ignore[method-assign]
    assert guide is not None and guide.grid.bpm == pytest.approx(120.0, rel=0.02)
    onsets = engine._token_onsets
    assert onsets is not None

    def on_and_off(records: list[tuple[int, torch.Tensor]]) -> tuple[float, float]:
        s_p = (RATE * 2 - round(audiolm_pipeline.MIN_CROSSFADE_SECONDS * RATE)) // engine.hop_s
        first = s_p - min(s_p, engine.stages["semantic"].model.config.max_seq_len // 2)
        on, off = [], []
        for start, ids in records:
            for j in range(ids.shape[1]):
                frame = first + start + j
                z = onsets[ids[:, j]].mean().item()
                (on if guide.weight(frame) > 0 else off).append(z)
        return float(np.mean(on)), float(np.mean(off))

    guided_on, guided_off = on_and_off(plain_sampled)
    free_on, free_off = on_and_off(sampled)
    assert guided_on - guided_off > 1.0  # onset tokens land on the beat
    assert abs(free_on - free_off) < 0.5  # a random LM alone has no beat
    assert guided_on > free_on


def test_bundles_and_requests_without_onset_tokens_are_refused(
    music_bundle: Path, tmp_path: Path
) -> None:
    speech = random_audiolm_bundle(tmp_path / "speech")
    engine = load_engine(str(speech), engine="audiolm", device="cpu")
    with pytest.raises(GenerationError, match="onsets"):
        collect(engine, GenerationRequest(prompt=_prompt(), seconds=0.5, beat_guidance=True))
    # off, or left to the bundle: it continues as before
    (take,) = collect(engine, GenerationRequest(prompt=_prompt(), seconds=0.5, beat_guidance=False))
    assert take.complete
    with pytest.raises(BundleError, match="onsets"):
        AudioLMEngine.from_bundle(read_bundle(_with_guidance(speech, True, tmp_path / "bad")))
    with pytest.raises(BundleError, match="beat_guidance"):
        AudioLMEngine.from_bundle(
            read_bundle(_with_guidance(music_bundle, {"off_beat": 2}, tmp_path / "range"))
        )
    with pytest.raises(GenerationError, match="beat_guidance"):
        GenerationRequest(prompt=_prompt(), seconds=0.5, beat_guidance="on")  # type: ignore[arg-type]


def test_a_prompt_without_a_clear_pulse_is_continued_unguided(
    music_bundle: Path, tmp_path: Path
) -> None:
    folder = _with_guidance(music_bundle, {"min_clarity": 0.3}, tmp_path / "guided")
    engine = load_engine(str(folder), engine="audiolm", device="cpu")
    assert isinstance(engine, AudioLMEngine)
    noise = np.random.default_rng(1).standard_normal((1, 2 * RATE)).astype(np.float32) * 0.1
    request = GenerationRequest(prompt=Clip(noise, RATE), seconds=0.5, seed=1)
    assert engine.beat_guide(request, noise[0]) is None
    (guided,) = collect(engine, request)
    (off,) = collect(engine, replace(request, beat_guidance=False))
    assert np.array_equal(guided.generated.samples, off.generated.samples)


def test_prepare_finds_the_grid_ahead_and_the_stream_reuses_it(
    music_bundle: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = _with_guidance(music_bundle, True, tmp_path / "guided")
    engine = load_engine(str(folder), engine="audiolm", device="cpu")
    assert isinstance(engine, AudioLMEngine)
    calls: list[int] = []
    estimate = audiolm_pipeline.estimate_beat_grid

    def counting(audio: np.ndarray, rate: int, **kwargs: float) -> BeatGrid | None:
        calls.append(audio.size)
        return estimate(audio, rate, **kwargs)

    monkeypatch.setattr(audiolm_pipeline, "estimate_beat_grid", counting)
    request = GenerationRequest(prompt=_prompt(), seconds=0.3, seed=2)
    assert engine.prepare(request) is False  # nothing adapts: the grid is all there is
    assert len(calls) == 1
    (prepared,) = collect(engine, request)
    assert len(calls) == 1  # the stream used the kept grid
    other = GenerationRequest(prompt=Clip(click_track(100.0, 0.1, 2.0)[None], RATE), seconds=0.3)
    collect(engine, other)
    assert len(calls) == 2
    engine.forget_beat_grids()
    (fresh,) = collect(engine, request)
    assert np.array_equal(prepared.generated.samples, fresh.generated.samples)


def test_the_cli_turns_it_on_and_off_and_records_it(music_bundle: Path, tmp_path: Path) -> None:
    from audiogen_studio.audio import io
    from audiogen_studio.cli.main import main

    folder = _with_guidance(music_bundle, {"strength": 6.0}, tmp_path / "guided")
    prompt = io.save(_prompt(), tmp_path / "clicks.wav")
    common = ["continue", str(prompt), "--model", str(folder), "--seconds", "1.0", "--seed", "2"]
    common += ["--no-progress", "--no-library"]
    outs = {}
    for flag in ("", "--beat-guidance", "--no-beat-guidance"):
        outs[flag] = tmp_path / f"take{flag}.wav"
        assert main([*common, *([flag] if flag else []), "-o", str(outs[flag])]) == 0
    default, on, off = (io.load(outs[f]).samples for f in outs)
    np.testing.assert_array_equal(default, on)  # the bundle's default is on
    assert not np.array_equal(on, off)
    speech = random_audiolm_bundle(tmp_path / "speech")
    refused = [*common[:3], str(speech), *common[4:], "--beat-guidance"]
    assert main([*refused, "-o", str(tmp_path / "refused.wav")]) != 0


def test_the_beat_guidance_benchmark_runs_both_ways(music_bundle: Path, tmp_path: Path) -> None:
    import sys

    from audiogen_studio.audio import io

    sys.path.insert(0, str(Path(__file__).parents[2] / "benchmarks"))
    from beat_guidance import compare

    wav = io.save(_prompt(), tmp_path / "clicks.wav")
    result = compare(str(music_bundle), str(wav), seconds=0.5, prompt_seconds=2.0, runs=2)
    assert set(result["rtf"]) == {"on", "off"} and result["on_over_off"] > 0
    assert all(len(v) == 2 for v in result["rtf_runs"].values())
    assert result["grid"]["bpm"] == pytest.approx(120.0, rel=0.02) and result["grid_ms"] > 0
    assert result["bundle_beat_guidance"]["enabled"] is False
