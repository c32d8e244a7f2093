"""AudioLM continuation engine: streaming mechanics, takes, cancel, bad input (random weights).

That a trained stack continues musical structure is tested in test_audiolm_end_to_end.py.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from audiolm_stack import pushed_codes, random_audiolm_bundle

from audiogen_studio.audio import synth
from audiogen_studio.audio.clip import Clip
from audiogen_studio.engine import audiolm_pipeline
from audiogen_studio.engine.api import GenerationError, GenerationRequest
from audiogen_studio.engine.audiolm_pipeline import AudioLMEngine
from audiogen_studio.engine.bundles import BundleError, read_bundle
from audiogen_studio.engine.loader import load_engine
from audiogen_studio.engine.takes import collect


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> AudioLMEngine:
    torch.set_num_threads(1)
    folder = random_audiolm_bundle(tmp_path_factory.mktemp("audiolm") / "random-audiolm")
    eng = load_engine(str(folder), engine="audiolm", device="cpu")
    assert isinstance(eng, AudioLMEngine)
    return eng


def _prompt(seconds: float = 0.5, rate: int = 16000) -> Clip:
    return synth.sine(330.0, seconds, rate=rate, amp=0.4)


def test_stream_is_contiguous_and_has_the_requested_length(engine: AudioLMEngine) -> None:
    request = GenerationRequest(prompt=_prompt(), seconds=0.7, takes=2, seed=3)
    starts = {0: 0, 1: 0}
    leads = {}
    for chunk in engine.stream(request):
        assert chunk.start == starts[chunk.take]
        assert chunk.samples.dtype == np.float32 and chunk.samples.shape[0] == 1
        assert np.isfinite(chunk.samples).all()
        if chunk.lead_in is not None:
            leads[chunk.take] = chunk.lead_in
        starts[chunk.take] += chunk.frames
    expected = engine.expected_frames(request)
    assert starts == {0: expected, 1: expected}
    # the continuation starts on a semantic frame >= 10 ms before the prompt's end
    lead = leads[0].shape[-1]
    assert 160 <= lead <= 160 + engine.hop_s
    assert set(leads) == {0, 1}


def test_output_keeps_the_prompt_and_crossfades_only_its_last_frames(
    engine: AudioLMEngine,
) -> None:
    prompt = _prompt(0.43)
    request = GenerationRequest(prompt=prompt, seconds=0.3, seed=1)
    (take,) = collect(engine, request)
    assert take.complete
    assert take.lead_in is not None
    lead = take.lead_in.frames
    out = take.output
    assert out.frames == prompt.frames + take.generated.frames
    keep = prompt.frames - lead
    np.testing.assert_array_equal(out.samples[:, :keep], prompt.samples[:, :keep])
    np.testing.assert_array_equal(out.samples[:, prompt.frames :], take.generated.samples)


def test_seeded_takes_are_reproducible_and_differ(engine: AudioLMEngine) -> None:
    request = GenerationRequest(prompt=_prompt(), seconds=0.3, takes=2, seed=11)
    a = collect(engine, request)
    b = collect(engine, request)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x.generated.samples, y.generated.samples)
    assert not np.array_equal(a[0].generated.samples, a[1].generated.samples)
    # take 0 is the same whether generated alone or with another take
    alone = collect(engine, GenerationRequest(prompt=_prompt(), seconds=0.3, takes=1, seed=11))
    np.testing.assert_allclose(alone[0].generated.samples, a[0].generated.samples, atol=1e-5)


def test_long_requests_slide_every_context(engine: AudioLMEngine) -> None:
    # the semantic LM holds 40 tokens (0.8 s), coarse 12, fine 8: 2 s must slide all of them
    request = GenerationRequest(prompt=_prompt(1.0), seconds=2.0, seed=0)
    (take,) = collect(engine, request)
    assert take.complete and take.generated.frames == 32000


def test_evicting_bundles_slide_without_a_refill(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``generation.context_slide = "evict"``: every stream slides by dropping the older half of
    its cache (no re-prefill); audio before any slide equals the refilling engine's."""
    import json

    from audiogen_studio.models.lm import KVCache, TokenLM

    folder = random_audiolm_bundle(tmp_path / "b")
    refill = AudioLMEngine.from_bundle(read_bundle(folder), device="cpu")
    manifest = folder / "bundle.json"
    data = json.loads(manifest.read_text())
    data["generation"] = {"context_slide": "evict"}
    manifest.write_text(json.dumps(data))
    evict = AudioLMEngine.from_bundle(read_bundle(folder), device="cpu")
    assert (refill.slide, evict.slide) == ("refill", "evict")
    short = GenerationRequest(prompt=_prompt(0.3), seconds=0.05, seed=4)
    (a,) = collect(refill, short)
    (b,) = collect(evict, short)
    np.testing.assert_array_equal(a.generated.samples, b.generated.samples)

    dropped: dict[int, int] = {}
    resets = 0
    real_evict, real_reset = TokenLM.evict, KVCache.reset

    def counting_evict(model: TokenLM, cache: KVCache, drop: int) -> None:
        dropped[model.config.max_seq_len] = dropped.get(model.config.max_seq_len, 0) + drop
        real_evict(model, cache, drop)

    def counting_reset(cache: KVCache) -> None:
        nonlocal resets
        resets += 1
        real_reset(cache)

    monkeypatch.setattr(TokenLM, "evict", counting_evict)
    monkeypatch.setattr(KVCache, "reset", counting_reset)
    long = GenerationRequest(prompt=_prompt(1.0), seconds=2.0, seed=0)
    (take,) = collect(evict, long)
    assert take.complete and take.generated.frames == 32000
    assert np.isfinite(take.generated.samples).all()
    windows = {st.model.config.max_seq_len for st in evict.stages.values()}
    assert set(dropped) == windows and all(d > 0 for d in dropped.values())
    assert resets == 0  # the refilling engine resets a cache at every slide
    data["generation"] = {"context_slide": "forget"}
    manifest.write_text(json.dumps(data))
    with pytest.raises(BundleError, match="context_slide must be one of refill, evict"):
        AudioLMEngine.from_bundle(read_bundle(folder), device="cpu")


def test_cancel_keeps_the_partial_take(engine: AudioLMEngine) -> None:
    cancel = threading.Event()
    request = GenerationRequest(prompt=_prompt(), seconds=3.0, seed=0)
    got = 0

    def on_chunk(chunk: object) -> None:
        nonlocal got
        got += 1
        cancel.set()

    (take,) = collect(engine, request, cancel, on_chunk=on_chunk)
    assert got >= 1
    assert not take.complete
    assert 0 < take.generated.frames < 3 * 16000


@pytest.mark.parametrize(
    ("prompt", "message"),
    [
        (Clip(np.zeros((1, 8000), np.float32), 16000), "silent"),
        (synth.sine(330.0, 0.01, rate=16000), "too short"),
    ],
)
def test_bad_prompts_are_clear_errors(engine: AudioLMEngine, prompt: Clip, message: str) -> None:
    with pytest.raises(GenerationError, match=message):
        list(engine.stream(GenerationRequest(prompt=prompt, seconds=0.2)))


def test_other_rates_and_stereo_are_accepted(engine: AudioLMEngine) -> None:
    stereo = synth.sine(330.0, 0.5, rate=44100)
    stereo = Clip(np.vstack([stereo.samples, 0.5 * stereo.samples]), 44100)
    (take,) = collect(engine, GenerationRequest(prompt=stereo, seconds=0.2, seed=0))
    assert take.output.rate == 44100 and take.output.channels == 2
    assert take.generated.frames == pytest.approx(0.2 * 44100, abs=2)


def test_stage_temperatures_scale_each_stage(engine: AudioLMEngine) -> None:
    """Factors 0 on every stage sample like a greedy request; the bundle's defaults apply
    unless the request names its own; factors multiply the request's temperature."""
    greedy = GenerationRequest(prompt=_prompt(), seconds=0.3, seed=1, temperature=0.0)
    zeroed = GenerationRequest(
        prompt=_prompt(),
        seconds=0.3,
        seed=1,
        temperature=1.0,
        stage_temperatures={"semantic": 0, "coarse": 0, "fine": 0},
    )
    sampled = GenerationRequest(prompt=_prompt(), seconds=0.3, seed=1, temperature=1.0)
    (a,) = collect(engine, greedy)
    (b,) = collect(engine, zeroed)
    (c,) = collect(engine, sampled)
    np.testing.assert_array_equal(a.generated.samples, b.generated.samples)
    assert not np.array_equal(a.generated.samples, c.generated.samples)
    assert engine.stage_temperature(sampled, "fine") == 1.0
    old = engine.stage_temperatures
    try:
        engine.stage_temperatures = {"semantic": 0.0, "coarse": 0.0, "fine": 0.0}
        (d,) = collect(engine, sampled)
        np.testing.assert_array_equal(a.generated.samples, d.generated.samples)
        half = GenerationRequest(prompt=_prompt(), temperature=0.5)
        assert engine.stage_temperature(half, "coarse") == 0.0
        own = GenerationRequest(prompt=_prompt(), temperature=0.5, stage_temperatures={"fine": 3})
        assert engine.stage_temperature(own, "fine") == 1.5
        assert engine.stage_temperature(own, "coarse") == 0.5  # not named: factor 1
    finally:
        engine.stage_temperatures = old


@pytest.mark.parametrize(
    ("factors", "message"),
    [
        ({"fine": -0.5}, "stage temperature of fine must be >= 0"),
        ({"fine": float("nan")}, "must be >= 0"),
        ({"loud": 1.0}, "unknown stage 'loud'"),
        ({"coarse": "hot"}, "must be a number"),
    ],
)
def test_bad_stage_temperatures_are_clear_errors(factors: dict, message: str) -> None:
    with pytest.raises(GenerationError, match=message):
        GenerationRequest(prompt=_prompt(), stage_temperatures=factors)


def test_bundle_sampling_defaults_are_loaded_and_checked(tmp_path: Path) -> None:
    import json

    folder = random_audiolm_bundle(tmp_path / "b")
    manifest = folder / "bundle.json"
    data = json.loads(manifest.read_text())
    data["generation"] = {"stage_temperatures": {"fine": 0.25, "coarse": 0.5}}
    manifest.write_text(json.dumps(data))
    eng = AudioLMEngine.from_bundle(read_bundle(folder), device="cpu")
    assert eng.stage_temperatures == {"fine": 0.25, "coarse": 0.5}
    assert eng.stage_temperature(GenerationRequest(prompt=_prompt()), "fine") == 0.25
    data["generation"] = {"stage_temperatures": {"fine": -1}}
    manifest.write_text(json.dumps(data))
    with pytest.raises(BundleError, match="generation defaults"):
        AudioLMEngine.from_bundle(read_bundle(folder), device="cpu")


def test_vocoding_is_refused(engine: AudioLMEngine) -> None:
    with pytest.raises(GenerationError, match="vocod"):
        list(engine.stream(GenerationRequest(prompt=_prompt(), mode="vocode")))


def test_incomplete_or_mismatched_bundles_are_clear_errors(tmp_path: Path) -> None:
    folder = random_audiolm_bundle(tmp_path / "b")
    bundle = read_bundle(folder)
    (folder / "lm_fine.safetensors").unlink()
    with pytest.raises(BundleError, match="lm_fine"):
        AudioLMEngine.from_bundle(bundle, device="cpu")
    with pytest.raises(GenerationError, match="cannot vocode|wavenet-vocoder"):
        load_engine(str(folder), mode="vocode")


@pytest.mark.parametrize("name", ["tiny", "default", "large", "default-audiolm"])
def test_partial_encoding_and_priming_equal_the_whole_prompt(name: str) -> None:
    """The engine encodes only the prompt's tail and primes the decoder with PRIME_FRAMES; for
    every named codec config (and the shipped bundle's) that equals using the whole prompt."""
    import json

    from audiogen_studio.engine.audiolm_pipeline import ENCODE_MARGIN_FRAMES, PRIME_FRAMES
    from audiogen_studio.models.codec import NAMED_CODEC_CONFIGS, Codec, CodecConfig

    if name == "default-audiolm":
        path = Path(__file__).parents[2] / "scripts" / "default-audiolm-codec.json"
        config = CodecConfig.from_dict(json.loads(path.read_text(encoding="utf-8")))
    else:
        config = NAMED_CODEC_CONFIGS[name]
    torch.manual_seed(0)
    codec = Codec(config).eval()
    frames, used = 160, 20
    audio = 0.1 * torch.randn(1, 1, frames * config.hop)
    with torch.inference_mode():
        full = codec.encode(audio)
        start = frames - used - ENCODE_MARGIN_FRAMES
        tail = codec.encode(audio[:, :, start * config.hop :])
        assert torch.equal(tail[:, :, -used:], full[:, :, -used:])
        more = torch.randint(0, config.codebook_size, (1, config.n_q, 6))
        whole = codec.stream_decoder(1)
        whole.push(full)
        primed = codec.stream_decoder(1)
        primed.push(full[:, :, -PRIME_FRAMES:])
        torch.testing.assert_close(primed.push(more), whole.push(more), atol=1e-5, rtol=0)


def test_cli_stage_temperatures(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``continue --stage-temperatures`` reaches the engine: factors 0 sample like
    ``--temperature 0``; a bad factor is a usage error."""
    from audiogen_studio.audio import io
    from audiogen_studio.cli.main import main

    torch.set_num_threads(1)
    folder = random_audiolm_bundle(tmp_path / "b")
    prompt = io.save(_prompt(), tmp_path / "prompt.wav")
    common = ["continue", str(prompt), "--model", str(folder), "--seconds", "0.2", "--seed", "2"]
    common += ["--no-progress", "--no-library"]
    greedy, zeroed = tmp_path / "greedy.wav", tmp_path / "zeroed.wav"
    assert main([*common, "--temperature", "0", "-o", str(greedy)]) == 0
    factors = "semantic=0,coarse=0,fine=0"
    assert main([*common, "--stage-temperatures", factors, "-o", str(zeroed)]) == 0
    np.testing.assert_array_equal(io.load(greedy).samples, io.load(zeroed).samples)
    with pytest.raises(SystemExit):
        main([*common, "--stage-temperatures", "fine", "-o", str(tmp_path / "x.wav")])
    assert "expected STAGE=FACTOR" in capsys.readouterr().err


def test_decode_quantizers_skips_the_fine_lm_and_decodes_the_coarse_codes(
    tmp_path: Path,
) -> None:
    import json

    torch.set_num_threads(1)
    folder = random_audiolm_bundle(tmp_path / "b")
    full = AudioLMEngine.from_bundle(read_bundle(folder), device="cpu")
    qc = full.layout.coarse_quantizers
    # greedy fine codes draw no random numbers, so both runs sample the same coarse codes
    request = GenerationRequest(
        prompt=_prompt(), seconds=0.4, seed=3, stage_temperatures={"fine": 0.0}
    )
    all_codes = pushed_codes(full, request)
    assert all_codes.shape[1] == full.layout.quantizers
    manifest = folder / "bundle.json"
    data = json.loads(manifest.read_text())
    data["generation"] = {"decode_quantizers": qc}
    del data["components"]["lm_fine"]  # not needed when its codes are not decoded
    manifest.write_text(json.dumps(data))
    coarse_only = AudioLMEngine.from_bundle(read_bundle(folder), device="cpu")
    assert coarse_only.decode_quantizers == qc and "fine" not in coarse_only.stages
    codes = pushed_codes(coarse_only, request)
    assert codes.shape[1] == qc
    torch.testing.assert_close(codes, all_codes[:, :qc], rtol=0, atol=0)
    (take,) = collect(coarse_only, request)
    assert take.generated.frames == round(0.4 * take.generated.rate)
    assert np.isfinite(take.generated.samples).all()
    other = random_audiolm_bundle(tmp_path / "other")
    data = json.loads((other / "bundle.json").read_text())
    for bad, message in ((0, "within 1"), (99, "within 1"), ("3", "must be an integer")):
        data["generation"] = {"decode_quantizers": bad}
        (other / "bundle.json").write_text(json.dumps(data))
        with pytest.raises(BundleError, match=message):
            AudioLMEngine.from_bundle(read_bundle(other), device="cpu")


def test_a_long_prompt_is_continued_as_its_last_seconds_are(
    engine: AudioLMEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only TOKENIZER_CONTEXT_SECONDS (and the frames the streams start with) of a long prompt
    are tokenized, so a minutes-long prompt starts as fast as a short one, and its continuation
    is the continuation of that tail."""
    from audiogen_studio.engine.audiolm_pipeline import TOKENIZER_CONTEXT_SECONDS

    hop = engine.hop_s
    rng = np.random.default_rng(0)
    long = Clip(rng.uniform(-0.3, 0.3, (1, 14 * 16000 + 123)).astype(np.float32), 16000)
    heard: list[int] = []
    real = engine.tokenizer.tokens

    def spying(audio: torch.Tensor, **kwargs: object) -> torch.Tensor:
        heard.append(audio.shape[-1])
        return real(audio, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(engine.tokenizer, "tokens", spying)
    request = GenerationRequest(prompt=long, seconds=0.3, seed=6)
    (whole,) = collect(engine, request)
    assert heard[0] <= (TOKENIZER_CONTEXT_SECONDS + 1.0) * 16000  # not 14 s
    # its last 10 s (cut on a frame boundary): the same tokens, codes and continuation
    tail = Clip(long.samples[:, 4 * 16000 // hop * hop :].copy(), 16000)
    (cut,) = collect(engine, GenerationRequest(prompt=tail, seconds=0.3, seed=6))
    np.testing.assert_array_equal(cut.generated.samples, whole.generated.samples)
    # a prompt shorter than the context is tokenized whole
    heard.clear()
    collect(engine, GenerationRequest(prompt=_prompt(2.0), seconds=0.2, seed=1))
    assert heard[0] == (2 * 16000 - round(0.01 * 16000)) // hop * hop


def test_a_long_prompt_at_another_rate_is_resampled_only_where_it_is_heard(
    engine: AudioLMEngine, resampled_frames: list[int]
) -> None:
    rng = np.random.default_rng(1)
    long = Clip(rng.uniform(-0.3, 0.3, (2, 60 * 48000)).astype(np.float32), 48000)  # stereo
    request = GenerationRequest(prompt=long, seconds=0.2, seed=2)
    (take,) = collect(engine, request)
    heard = engine._heard_frames(engine.adaptation_for(request)) * engine.hop_s / 16000 + 1.0
    assert resampled_frames[0] <= (heard + 0.1) * 48000 < long.frames / 4
    kept = long.frames - 48000  # all but the last second (its end is crossfaded)
    assert take.complete and np.array_equal(take.output.samples[:, :kept], long.samples[:, :kept])


def test_a_greedy_stage_runs_in_one_fused_call_with_the_same_codes(
    engine: AudioLMEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stage at temperature 0 (the shipped bundles' fine stage) picks each frame's ids in one
    fused call where it can; the codes equal those of one call and one argmax per id, also
    across the caches' slides (where it falls back to that loop)."""
    request = GenerationRequest(
        prompt=_prompt(1.0),
        seconds=1.2,
        takes=2,
        seed=5,
        stage_temperatures={"semantic": 1.0, "coarse": 1.0, "fine": 0.0},
    )
    greedy = audiolm_pipeline._Stream.greedy
    runs = {"fused": 0, "declined": 0}

    def counting(self: audiolm_pipeline._Stream, count: int, spans: Any) -> torch.Tensor | None:
        ids = greedy(self, count, spans)
        runs["fused" if ids is not None else "declined"] += 1
        return ids

    monkeypatch.setattr(audiolm_pipeline._Stream, "greedy", counting)
    fused = pushed_codes(engine, request)
    assert runs["fused"] > 0 and runs["declined"] > 0  # the fine cache (8 frames) slides
    monkeypatch.setattr(audiolm_pipeline._Stream, "greedy", lambda *args: None)
    looped = pushed_codes(engine, request)
    assert torch.equal(fused, looped)


def test_the_context_slide_benchmark_runs_both_ways(tmp_path: Path) -> None:
    import sys

    from audiogen_studio.audio import io
    from audiogen_studio.models.lm import KVCache, TokenLM

    sys.path.insert(0, str(Path(__file__).parents[2] / "benchmarks"))
    from context_slide import compare

    folder = random_audiolm_bundle(tmp_path / "b")
    wav = tmp_path / "prompt.wav"
    io.save(_prompt(1.0), wav)
    reset, evict = KVCache.reset, TokenLM.evict
    result = compare(str(folder), str(wav), seconds=1.0, prompt_seconds=1.0, runs=2)
    assert set(result["rtf"]) == {"refill", "evict"} and result["evict_over_refill"] > 0
    assert all(len(v) == 2 for v in result["rtf_runs"].values())
    # the tiny LMs hold under a second: both ways slide, as often
    slides = result["slides_per_second"]
    assert slides["refill"] > 0 and slides["refill"] == slides["evict"]
    assert result["bundle_slide"] == "refill"
    assert (KVCache.reset, TokenLM.evict) == (reset, evict)  # the counters are gone
