"""Held-out clips of a corpus, and a bundle's continuations scored against the real ones (with
stand-in engines: one that plays the real continuation back, one that babbles noise)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from eval_signals import RATE, TEXT_A, TEXT_B, write_corpus

pytest.importorskip("resemblyzer", reason="needs the [eval] extra (resemblyzer)")
pytest.importorskip("librosa", reason="needs the [eval] extra (librosa)")

from audiogen_studio.engine.api import AudioChunk, GenerationRequest
from audiogen_studio.evaluation.common import EvaluationError
from audiogen_studio.evaluation.held_out import (
    ContinuationReport,
    evaluate_continuations,
    held_out_clips,
    take_figures,
)

Say = Callable[..., npt.NDArray[np.float32]]


def _tone(seconds: float, freq: float) -> npt.NDArray[np.float32]:
    t = np.arange(round(seconds * RATE)) / RATE
    return (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def test_clips_come_round_robin_over_speakers_and_are_cut(tmp_path: Path) -> None:
    corpus = write_corpus(
        tmp_path / "c",
        {
            "a1": ("alice", _tone(3.0, 200)),
            "a2": ("alice", _tone(3.0, 210)),
            "b1": ("bob", _tone(3.0, 300)),
            "c1": ("carol", _tone(0.5, 400)),  # too short: skipped
            "d1": ("dave", _tone(3.0, 500)),
        },
    )
    clips = held_out_clips(corpus, clips=4, seconds=2.0)
    assert [c.id for c in clips] == ["a1", "b1", "d1", "a2"]
    assert all(c.audio.shape == (2 * RATE,) and c.rate == RATE for c in clips)
    assert clips[1].speaker_id == "bob" and clips[0].seconds == 2.0
    at_8k = held_out_clips(corpus, clips=1, rate=8_000)
    assert at_8k[0].audio.shape == (3 * 8_000,)
    with pytest.raises(EvaluationError, match="no clips in split 'valid'"):
        held_out_clips(corpus, split="valid")
    with pytest.raises(EvaluationError, match="not a corpus"):
        held_out_clips(tmp_path)
    with pytest.raises(EvaluationError, match="10 s long"):
        held_out_clips(corpus, seconds=10.0)


class _StandIn:
    """An engine that continues each prompt with the real continuation of its clip (``oracle``)
    or with noise."""

    name = "stand-in"
    sample_rate = RATE

    def __init__(self, clips: list[npt.NDArray[np.float32]], *, oracle: bool) -> None:
        self.clips = clips
        self.oracle = oracle
        self.requests: list[GenerationRequest] = []

    def expected_frames(self, request: GenerationRequest) -> int:
        return round(request.seconds * RATE)

    def real_continuation(self, prompt: npt.NDArray[np.float32], n: int) -> npt.NDArray[np.float32]:
        """The ``n`` samples after ``prompt`` in the clip it was cut from (the prompt went
        through a 16-bit FLAC: matched within its rounding)."""
        clip = next(c for c in self.clips if np.allclose(c[: prompt.shape[0]], prompt, atol=1e-3))
        return clip[prompt.shape[0] : prompt.shape[0] + n]

    def take(self, request: GenerationRequest, take: int, n: int) -> npt.NDArray[np.float32]:
        """Take ``take``'s ``n`` samples."""
        if self.oracle:
            return self.real_continuation(request.prompt.samples[0], n)
        rng = np.random.default_rng([request.seed or 0, take])
        return (0.1 * rng.standard_normal(n)).astype(np.float32)

    def stream(
        self, request: GenerationRequest, cancel: threading.Event | None = None
    ) -> Iterator[AudioChunk]:
        self.requests.append(request)
        n = self.expected_frames(request)
        for take in range(request.takes):
            out = self.take(request, take, n)
            yield AudioChunk(take, 0, out[None].copy(), RATE, 1.0, seed=request.seed or 0)


def test_oracle_continuations_beat_noise(tmp_path: Path, say: Say) -> None:
    long_a = np.concatenate([say(TEXT_A, "en-us+m3"), say(TEXT_B, "en-us+m3")])
    long_b = np.concatenate([say(TEXT_B, "en-us+f2"), say(TEXT_A, "en-us+f2")])
    corpus = write_corpus(tmp_path / "speech", {"s1": ("m3", long_a), "s2": ("f2", long_b)})

    def run(engine: _StandIn, clips: int, with_reference: bool) -> ContinuationReport:
        return evaluate_continuations(
            "stand-in",
            corpus,
            "speech",
            engine=engine,
            clips=clips,
            prompt_seconds=3.0,
            seconds=3.0,
            with_dnsmos=False,
            with_reference=with_reference,
        )

    oracle = _StandIn([long_a, long_b], oracle=True)
    good = run(oracle, 2, True)
    bad = run(_StandIn([long_a, long_b], oracle=False), 1, False)
    assert len(oracle.requests) == 3  # a warm-up, then one per clip
    assert [r.seed for r in oracle.requests[1:]] == [0, 1]
    g, b = good.summary, bad.summary
    assert g["speaker_cosine"]["value"] > 0.8 and g["speaker_cosine"]["met"] is True
    assert b["speaker_cosine"]["value"] < 0.7 and b["speaker_cosine"]["met"] is False
    assert g["speaker_cosine"]["value"] > b["speaker_cosine"]["value"] + 0.2
    # each mean carries its standard error over the takes (none from a single take)
    cosines = [float(c.model.speech.speaker_cosine or 0.0) for c in good.clips if c.model.speech]
    assert g["speaker_cosine"]["stderr"] == pytest.approx(
        np.std(cosines, ddof=1) / np.sqrt(2), abs=1e-4
    )
    assert "stderr" not in b["speaker_cosine"]
    pitch = [c.model.speech.pitch_difference_semitones for c in good.clips if c.model.speech]
    assert g["pitch_difference_median_semitones"]["value"] == pytest.approx(
        float(np.median([v for v in pitch if v is not None])), abs=1e-4
    )
    assert oracle.requests[0].adapt_steps == 0  # the warm-up adapts to no prompt
    assert g["seam_click_percentile"]["value"] < 95
    assert (
        b["seam_loudness_percentile"]["takes_meeting"] < 1.0
        or b["seam_click_percentile"]["takes_meeting"] < 1.0
    )
    assert good.rtf is not None and g["rtf"]["target"] == "<= 0.5"
    # the oracle *is* the real continuation: both summaries agree
    assert good.reference_summary["speaker_cosine"]["value"] == pytest.approx(
        g["speaker_cosine"]["value"], abs=1e-6
    )
    assert bad.reference_summary == {} and bad.clips[0].reference is None
    assert [c.id for c in good.clips] == ["s2", "s1"]  # speakers in sorted order
    assert good.clips[0].model.prompt_seconds == 3.0
    assert good.clips[0].generated_seconds == 3.0


def test_music_continuations_are_scored_for_key_and_tempo(tmp_path: Path) -> None:
    from eval_signals import riff

    x = riff(note_seconds=0.3, repeats=3)
    corpus = write_corpus(tmp_path / "music", {"m1": ("pluck", x)})
    report = evaluate_continuations(
        "stand-in",
        corpus,
        "music",
        engine=_StandIn([x], oracle=True),
        clips=1,
        prompt_seconds=3.0,
        seconds=3.0,
    )
    s = report.summary
    assert s["key_score"]["value"] == 1.0 and s["key_score"]["met"] is True
    # no codec (not an AudioLM engine): no codec-bounded reference
    assert report.codec_reference_summary == {} and report.clips[0].codec_reference is None
    assert s["tempo_ratio"]["value"] == pytest.approx(1.0, abs=0.05)
    assert "speaker_cosine" not in s
    assert report.clips[0].model.music is not None
    assert report.clips[0].model.music.key_prompt == "C major"
    # the per-take figures are what the summary averages (one take here)
    figures = take_figures(report.clips[0].model)
    assert figures["key_score"] == s["key_score"]["value"]
    assert figures["chroma_correlation"] == pytest.approx(
        s["chroma_correlation"]["value"], abs=1e-4
    )
    assert "speaker_cosine" not in figures and take_figures(None) == {}


class _HalfGainCodec:
    """A stand-in codec: ``encode`` keeps the samples as "codes", ``decode`` halves them."""

    config = SimpleNamespace(sample_rate=RATE)
    latency = 0

    def __init__(self) -> None:
        self.n_q: list[int | None] = []

    def parameters(self) -> Iterator[Any]:
        return iter(())

    def encode(self, audio: Any, n_q: int | None = None) -> Any:
        self.n_q.append(n_q)
        return audio

    def decode(self, codes: Any) -> Any:
        return 0.5 * codes


def test_audiolm_engines_also_score_the_codec_bounded_reference(tmp_path: Path) -> None:
    """The real continuation through the bundle's codec, with the LMs' quantizers, is scored
    beside the real one (engines without a codec get none: the test above)."""
    from eval_signals import riff

    x = riff(note_seconds=0.3, repeats=3)
    corpus = write_corpus(tmp_path / "music", {"m1": ("pluck", x)})
    engine = _StandIn([x], oracle=True)
    engine.codec = _HalfGainCodec()  # type: ignore[attr-defined]
    engine.layout = SimpleNamespace(coarse_quantizers=3, fine_quantizers=5)  # type: ignore[attr-defined]
    report = evaluate_continuations(
        "stand-in", corpus, "music", engine=engine, clips=1, prompt_seconds=3.0, seconds=3.0
    )
    assert engine.codec.n_q == [8]  # type: ignore[attr-defined]
    coded, real = report.codec_reference_summary, report.reference_summary
    assert coded["key_score"]["value"] == real["key_score"]["value"] == 1.0
    # halving the continuation is a loudness jump at the seam that the real one lacks
    coded_clip = report.clips[0].codec_reference
    assert coded_clip is not None and coded_clip.seam is not None
    assert report.clips[0].reference is not None and report.clips[0].reference.seam is not None
    real_jump = report.clips[0].reference.seam.loudness_jump_db
    assert abs(coded_clip.seam.loudness_jump_db - real_jump) == pytest.approx(6.02, abs=1.5)
    # an engine that decodes fewer quantizers than its LMs model is bounded by those
    engine.decode_quantizers = 4  # type: ignore[attr-defined]
    evaluate_continuations(
        "stand-in", corpus, "music", engine=engine, clips=1, prompt_seconds=3.0, seconds=3.0
    )
    assert engine.codec.n_q == [8, 4]  # type: ignore[attr-defined]


class _OneGoodTake(_StandIn):
    """Take 2 plays the real continuation back; every other take babbles noise."""

    def take(self, request: GenerationRequest, take: int, n: int) -> npt.NDArray[np.float32]:
        if take == 2:
            return self.real_continuation(request.prompt.samples[0], n)
        return (0.1 * np.random.default_rng(take).standard_normal(n)).astype(np.float32)


def test_best_of_n_scores_the_take_that_matches_its_prompt(tmp_path: Path) -> None:
    from eval_signals import riff

    x = riff(note_seconds=0.3, repeats=3)
    corpus = write_corpus(tmp_path / "music", {"m1": ("pluck", x)})

    def run(best_of: int, rank_by: str | None = "pitch") -> ContinuationReport:
        engine = _OneGoodTake([x], oracle=True)
        report = evaluate_continuations(
            "stand-in",
            corpus,
            "music",
            engine=engine,
            clips=1,
            prompt_seconds=3.0,
            seconds=3.0,
            best_of=best_of,
            rank_by=rank_by,
        )
        assert engine.requests[-1].takes == best_of
        return report

    one, three = run(1), run(3)
    assert one.clips[0].take == 0 and one.clips[0].match_scores == ()  # the noise take
    assert one.best_of == 1 and one.rank_by is None
    kept = three.clips[0]
    assert kept.take == 2 and len(kept.match_scores) == 3  # the real continuation, found
    assert kept.match_scores[2] == max(kept.match_scores)
    assert three.best_of == 3 and three.rank_by == "pitch"
    assert three.summary["key_score"]["value"] == 1.0
    assert three.summary["chroma_correlation"]["value"] > one.summary["chroma_correlation"]["value"]
    with pytest.raises(EvaluationError, match="needs rank_by voice or pitch or rhythm"):
        run(2, None)
    with pytest.raises(EvaluationError, match="best_of must be 1..8"):
        run(9)
