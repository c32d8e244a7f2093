"""Level matching: a token model's continuation is scaled, window by window, to its prompt's
level (engine/level_match.py); the AudioLM engine applies it to every take and candidate."""

from __future__ import annotations

import itertools
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from audiolm_stack import random_audiolm_bundle

from audiogen_studio.audio import synth
from audiogen_studio.audio.clip import Clip
from audiogen_studio.engine.api import GenerationError, GenerationRequest
from audiogen_studio.engine.audiolm_pipeline import AudioLMEngine
from audiogen_studio.engine.level_match import (
    PEAK_CEILING,
    LevelFollower,
    LevelMatchSettings,
)
from audiogen_studio.engine.loader import load_engine
from audiogen_studio.engine.model_card import render_model_card, update_bundle
from audiogen_studio.engine.takes import collect

RATE = 16000
ON = LevelMatchSettings(enabled=True)


def _db(x: np.ndarray) -> float:
    return float(10 * np.log10(np.mean(np.asarray(x, np.float64) ** 2)))


def _noise(seconds: float, db: float, seed: int) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal(round(seconds * RATE))
    return (x / np.sqrt(np.mean(x * x)) * 10 ** (db / 20)).astype(np.float32)


def _windows(wave: np.ndarray, first: int = 2560, size: int = RATE) -> list[np.ndarray]:
    """``wave [R, n]`` cut as the engine cuts it: a short first window, then ``size`` each."""
    bounds = [0, first, *range(first + size, wave.shape[1], size), wave.shape[1]]
    return [wave[:, a:b] for a, b in itertools.pairwise(bounds) if b > a]


def _follow(follower: LevelFollower, wave: np.ndarray) -> np.ndarray:
    return np.concatenate([follower.apply(w)[0] for w in _windows(wave)], axis=1)


def test_a_soft_continuation_is_brought_to_the_prompts_level() -> None:
    prompt = _noise(3.0, -20.0, 0)
    soft = np.stack([_noise(5.0, -26.0, 1), _noise(5.0, -15.0, 2)])  # [2, n]: 6 dB under, 5 over
    out = _follow(LevelFollower(prompt, 2, RATE, ON), soft)
    for row in out:
        assert _db(row) == pytest.approx(-20.0, abs=0.3)
        assert _db(row[RATE:]) == pytest.approx(-20.0, abs=0.3)  # settled, not just the seam
    # at the seam: the first window already has the prompt's level
    assert _db(out[0, :2560]) == pytest.approx(-20.0, abs=0.5)
    # the reference is the prompt's end: a prompt that ends softer asks for less
    ending_soft = np.concatenate([_noise(2.0, -10.0, 3), _noise(2.0, -30.0, 4)])
    out = _follow(LevelFollower(ending_soft, 1, RATE, ON), soft[:1])
    assert _db(out[0]) == pytest.approx(-30.0, abs=0.3)


def test_the_gain_stays_within_its_range_and_never_steps() -> None:
    prompt = _noise(3.0, -10.0, 0)
    quiet = _noise(4.0, -40.0, 1)[None]  # 30 dB under: more than max_db
    follower = LevelFollower(prompt, 1, RATE, LevelMatchSettings(enabled=True, max_db=6.0))
    out = _follow(follower, quiet)
    assert _db(out[0]) == pytest.approx(-34.0, abs=0.3)
    assert follower.gain_db is not None and follower.gain_db[0] == pytest.approx(6.0)
    # a continuation whose level changes: the gain moves, but smoothly across window edges
    changing = np.concatenate([_noise(2.16, -30.0, 2), _noise(3.0, -18.0, 3)])[None]
    follower = LevelFollower(prompt, 1, RATE, ON)
    out = _follow(follower, changing)
    gain = out[0] / changing[0]
    edges = np.cumsum([w.shape[1] for w in _windows(changing)])[:-1]
    for e in edges:
        assert abs(gain[e] - gain[e - 1]) < 0.01 * max(gain[e], 1.0)  # no step at any edge
    free = np.abs(out[0]) < PEAK_CEILING  # not soft-limited
    both = free[1:] & free[:-1]
    assert np.max(np.abs(np.diff(gain))[both]) < 0.01  # nor within a window, glides included
    # a loud window after soft ones: the gain glides down, and the few peaks it would have
    # lifted past the ceiling on the way are limited below full scale
    assert 0 < np.count_nonzero(~free) < 20
    assert np.max(np.abs(out)) < 1.0


def test_it_lifts_nothing_above_the_ceiling_or_out_of_silence() -> None:
    prompt = _noise(3.0, -6.0, 0)
    spiky = _noise(3.0, -30.0, 1)
    spiky[5000] = 0.9  # one loud sample in a soft window
    out = _follow(LevelFollower(prompt, 1, RATE, ON), spiky[None])
    assert np.max(np.abs(out)) <= PEAK_CEILING + 1e-6
    # a continuation that is still silent is not lifted (there is nothing to match yet)
    silent = np.full((1, RATE), 1e-5, np.float32)
    np.testing.assert_array_equal(_follow(LevelFollower(prompt, 1, RATE, ON), silent), silent)
    # a silent prompt turns the matching off
    quiet_prompt = np.zeros(3 * RATE, np.float32)
    wave = _noise(2.0, -20.0, 2)[None]
    np.testing.assert_array_equal(_follow(LevelFollower(quiet_prompt, 1, RATE, ON), wave), wave)


def test_a_kept_row_goes_on_as_it_would_have_alone() -> None:
    prompt = _noise(3.0, -20.0, 0)
    rows = np.stack([_noise(4.0, d, i) for i, d in enumerate((-30.0, -12.0, -24.0))])
    windows = _windows(rows)
    together = LevelFollower(prompt, 3, RATE, ON)
    out = [together.apply(windows[0])[0], together.apply(windows[1])[0]]
    together.keep(np.array([2]))  # the choice: row 2 goes on
    out += [together.apply(w[2:3])[0] for w in windows[2:]]
    kept = np.concatenate([o[-1:] for o in out], axis=1)
    alone = _follow(LevelFollower(prompt, 1, RATE, ON), rows[2:3])
    np.testing.assert_allclose(kept, alone, rtol=1e-6, atol=1e-7)


def test_settings_read_from_a_bundle_and_are_checked() -> None:
    assert LevelMatchSettings.from_generation({}) == LevelMatchSettings()
    assert LevelMatchSettings.from_generation({"level_match": True}).enabled
    custom = LevelMatchSettings.from_generation(
        {"level_match": {"reference_seconds": 1, "max_db": 6}}
    )
    assert custom == LevelMatchSettings(enabled=True, reference_seconds=1.0, max_db=6.0)
    assert LevelMatchSettings.from_generation({"level_match": custom.to_dict()}) == custom
    for bad, message in (
        ("yes", "must be true, false or an object"),
        ({"max_db": 0}, "max_db must be in"),
        ({"max_db": True}, "max_db must be a number"),
        ({"reference_seconds": 0.01}, "reference_seconds must be"),
        ({"enabled": 1}, "enabled must be true or false"),
        ({"gain": 3}, "unknown keys"),
    ):
        with pytest.raises(GenerationError, match=message):
            LevelMatchSettings.from_generation({"level_match": bad})
    prompt = synth.sine(330.0, 0.5, rate=RATE, amp=0.4)
    with pytest.raises(GenerationError, match="level_match must be true, false or None"):
        GenerationRequest(prompt=prompt, level_match=1)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.set_num_threads(1)
    return random_audiolm_bundle(tmp_path_factory.mktemp("level") / "random-audiolm")


def test_the_engine_matches_every_take_and_a_request_can_turn_it_off(
    folder: Path, tmp_path: Path
) -> None:
    on = tmp_path / "on"
    shutil.copytree(folder, on)
    info = update_bundle(on, level_match=True)
    assert info.generation["level_match"] is True
    assert "kept at its prompt's level" in render_model_card(info)
    engine = load_engine(str(on), engine="audiolm", device="cpu")
    assert isinstance(engine, AudioLMEngine) and engine.level_match.enabled
    prompt = Clip((synth.sine(330.0, 1.0, rate=RATE, amp=0.3).samples * 1.0), RATE)

    def run(**kw: object) -> list:
        request = GenerationRequest(prompt=prompt, seconds=2.5, takes=2, seed=3, **kw)  # type: ignore[arg-type]
        return collect(engine, request)

    matched, raw = run(), run(level_match=False)
    target = _db(prompt.samples[0])
    for m, r in zip(matched, raw, strict=True):
        # the same tokens, scaled: the ratio is one smooth gain curve
        ratio = m.generated.samples[0] / np.where(
            np.abs(r.generated.samples[0]) > 1e-4, r.generated.samples[0], np.nan
        )
        assert np.nanmax(ratio) > 0 and np.nanmax(np.abs(np.diff(ratio[~np.isnan(ratio)]))) < 0.05
        if abs(_db(r.generated.samples[0]) - target) < 8.0:  # within max_db 9 of the prompt
            assert _db(m.generated.samples[0]) == pytest.approx(target, abs=0.5)
        assert m.lead_in is not None and r.lead_in is not None
        assert (
            abs(_db(m.generated.samples[0]) - target)
            <= abs(_db(r.generated.samples[0]) - target) + 1e-6
        )
    # off by default, and a request can turn it on
    plain = load_engine(str(folder), engine="audiolm", device="cpu")
    assert isinstance(plain, AudioLMEngine) and not plain.level_match.enabled
    assert plain.level_match_for(GenerationRequest(prompt=prompt, level_match=True)).enabled
    # a bad setting in a bundle is a clear error when it loads
    bad = tmp_path / "bad"
    shutil.copytree(folder, bad)
    data = json.loads((bad / "bundle.json").read_text())
    data.setdefault("generation", {})["level_match"] = {"max_db": -1}
    (bad / "bundle.json").write_text(json.dumps(data))
    with pytest.raises(GenerationError, match=r"generation\.level_match\.max_db"):
        load_engine(str(bad), engine="audiolm", device="cpu")


def test_the_cli_sets_it_per_run_and_per_bundle(folder: Path, tmp_path: Path) -> None:
    """``continue --level-match / --no-level-match`` and ``models card --level-match``."""
    from audiogen_studio.audio import io
    from audiogen_studio.cli.main import main

    copy = tmp_path / "b"
    shutil.copytree(folder, copy)
    prompt = io.save(
        Clip(synth.sine(330.0, 1.0, rate=RATE, amp=0.3).samples, RATE), tmp_path / "p.wav"
    )
    common = ["continue", str(prompt), "--model", str(copy), "--seconds", "1.5", "--seed", "4"]
    common += ["--no-progress", "--no-library"]
    outs = {}
    for flag in ("--level-match", "--no-level-match"):
        outs[flag] = tmp_path / f"{flag}.wav"
        assert main([*common, flag, "-o", str(outs[flag])]) == 0
    matched, raw = (io.load(outs[f]).samples[0, RATE:] for f in outs)  # the continuations
    target = _db(io.load(prompt).samples[0])
    assert abs(_db(matched) - target) < abs(_db(raw) - target)
    # the bundle's default, written by models card and read back by a plain continue
    assert main(["models", "card", str(copy), "--level-match", "on"]) == 0
    assert json.loads((copy / "bundle.json").read_text())["generation"]["level_match"] is True
    default = tmp_path / "default.wav"
    assert main([*common, "-o", str(default)]) == 0
    np.testing.assert_array_equal(io.load(default).samples, io.load(outs["--level-match"]).samples)
    assert main(["models", "card", str(copy), "--level-match", "off"]) == 0
    assert "level_match" not in json.loads((copy / "bundle.json").read_text()).get("generation", {})
