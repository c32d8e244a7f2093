"""Mel codec training: the tiny recipe learns; train_mel_codec fits, trains, resumes exactly and
writes a ``kind: mel`` codec component; a discriminator joins a resumed run (GAN phase); the
CLI trains it and round-trips audio through it aligned; the AudioLM engine streams with it, its
output aligned with the codec's decode."""

from __future__ import annotations

import json
import sys
import threading
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
import torch
from riff_signal import RATE, four_note_riff
from safetensors.torch import load_file
from trainer_runs import run_two_ranks, write_riff_folder

from audiogen_studio.audio import io, synth
from audiogen_studio.cli.main import main
from audiogen_studio.engine.api import GenerationRequest
from audiogen_studio.engine.audiolm_pipeline import AudioLMEngine
from audiogen_studio.engine.bundles import read_bundle, write_component
from audiogen_studio.engine.loader import load_engine
from audiogen_studio.engine.takes import collect
from audiogen_studio.models.acoustic_codec import load_acoustic_codec
from audiogen_studio.models.codec import NAMED_CODEC_CONFIGS, Codec
from audiogen_studio.models.mel_codec import NAMED_MEL_CODEC_CONFIGS, MelCodec
from audiogen_studio.training.adversarial import NAMED_DISCRIMINATORS
from audiogen_studio.training.audio_dataset import TrainingError
from audiogen_studio.training.codec_trainer import ReconstructionLoss
from audiogen_studio.training.mel_codec_trainer import (
    MelCodecStepReport,
    MelCodecTrainOptions,
    _n_q_per_crop,
    checkpoint_dir,
    fit_tiny_mel_codec,
    train_mel_codec,
)

sys.path.insert(0, str(Path(__file__).parents[1] / "engine"))
from audiolm_stack import random_audiolm_bundle

torch.set_num_threads(1)
TINY = NAMED_MEL_CODEC_CONFIGS["tiny"]


def _round_trip(codec: MelCodec, x: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    with torch.inference_mode():
        codes = codec.encode(torch.from_numpy(x)[None, None])
        return codec.decode_aligned(codes, len(x))[0, 0].numpy()


def _envelope_lag(x: npt.NDArray[np.float32], y: npt.NDArray[np.float32]) -> int:
    """Samples by which ``y``'s 10 ms RMS envelope lags ``x``'s (cross-correlation peak)."""

    def env(v: npt.NDArray[np.float32]) -> npt.NDArray[np.float64]:
        e = np.sqrt(np.convolve(v.astype(np.float64) ** 2, np.ones(160) / 160, mode="same"))
        return e - e.mean()

    ex, ey = env(x), env(y)
    lags = list(range(-800, 801, 8))
    scores = [float(np.dot(ex[800:-800], np.roll(ey, -lag)[800:-800])) for lag in lags]
    return lags[int(np.argmax(scores))]


@pytest.mark.slow
def test_tiny_recipe_learns_to_decode_its_codes() -> None:
    x = four_note_riff(repeats=2)
    losses: list[float] = []
    codec = fit_tiny_mel_codec(x, RATE, steps=150, on_step=lambda s, v: losses.append(v["loss"]))
    assert not codec.training and codec.fitted
    assert np.mean(losses[-10:]) < 0.75 * np.mean(losses[:10]), (losses[:10], losses[-10:])
    # against the same codes through the untrained decoder
    untrained = MelCodec(TINY).eval()
    untrained.load_state_dict(
        {k: v for k, v in codec.state_dict().items() if not k.startswith("decoder.")},
        strict=False,
    )
    loss = ReconstructionLoss(RATE)
    target = torch.from_numpy(x)[None, None]
    y = _round_trip(codec, x)
    y0 = _round_trip(untrained, x)
    trained_mel = float(loss(torch.from_numpy(y)[None, None], target)["mel"])
    untrained_mel = float(loss(torch.from_numpy(y0)[None, None], target)["mel"])
    assert trained_mel < 0.7 * untrained_mel, (trained_mel, untrained_mel)
    # decode_aligned really is aligned: the notes' envelopes line up within half the latency
    # (a missing latency compensation shows up as a lag of the whole latency, 320 samples)
    lag = _envelope_lag(x, y)
    assert abs(lag) < TINY.latency // 2, lag
    assert abs(_envelope_lag(x, np.roll(y, TINY.latency))) > TINY.latency // 2  # can fail


# --- train_mel_codec ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def riff_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_riff_folder(tmp_path_factory.mktemp("riff"))


def _options(data: Path, out: Path, **changes: object) -> MelCodecTrainOptions:
    base: dict[str, object] = {
        "data": data,
        "out": out,
        "config": "tiny",
        "steps": 4,
        "batch": 2,
        "segment": 0.2,
        "lr": 1e-3,
        "warmup": 2,
        "kmeans_iters": 3,
        "val_every": 0,
        "save_every": 0,
        "val_crops": 2,
        "progress": False,
        "threads": 1,
        "seed": 3,
    }
    base.update(changes)
    return MelCodecTrainOptions(**base)  # type: ignore[arg-type]


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in MelCodec.from_pretrained(path).state_dict().items()}


def test_train_mel_codec_writes_a_bundle_and_resumes_exactly(
    riff_folder: Path, tmp_path: Path
) -> None:
    out = tmp_path / "resumed"
    stop = threading.Event()
    reports: list[MelCodecStepReport] = []

    def on_step(report: MelCodecStepReport) -> None:
        reports.append(report)
        if report.step == 2:
            stop.set()

    first = train_mel_codec(_options(riff_folder, out), on_step=on_step, stop=stop)
    assert first.step == 2 and not first.completed and first.start_step == 0
    assert [r.step for r in reports] == [1, 2]
    assert reports[0].lr == pytest.approx(5e-4)  # warm-up
    state = checkpoint_dir(out).read_state()
    assert state is not None and state["step"] == 2 and state["stage1"]["frames"] > 0
    second = train_mel_codec(_options(riff_folder, out))
    assert second.start_step == 2 and second.step == 4 and second.completed
    # against one uninterrupted run (validation and checkpoints along the way change nothing)
    straight = train_mel_codec(
        _options(riff_folder, tmp_path / "straight", val_every=1, save_every=1)
    )
    assert straight.step == 4
    a = _weights(out / "codec.safetensors")
    b = _weights(tmp_path / "straight" / "codec.safetensors")
    assert a.keys() == b.keys()
    for key in a:
        assert torch.allclose(a[key], b[key], atol=1e-5), key
    # the bundle: a codec component of kind mel with its config, metrics and provenance
    manifest = json.loads((out / "bundle.json").read_text())
    entry = manifest["components"]["codec"]
    assert entry["kind"] == "mel" and entry["file"] == "codec.safetensors"
    assert entry["config"] == TINY.to_dict() and manifest["kind"] == "audiolm"
    metrics = manifest["metrics"]["codec"]
    assert isinstance(metrics["val_mel_l1"], float) and isinstance(metrics["val_stft"], float)
    assert metrics["latency_samples"] == TINY.latency and "rel_err_q4" in metrics["kmeans_rel_err"]
    assert manifest["training"]["codec"]["steps"] == 4
    codec = load_acoustic_codec(out)
    assert isinstance(codec, MelCodec) and codec.config == TINY and codec.fitted
    # the codebooks are stage 1's: training the decoder leaves them alone
    stage1 = load_file(out / "codec.safetensors")
    torch.testing.assert_close(stage1["quantizer.layers.0.embed"], a["quantizer.layers.0.embed"])
    again = train_mel_codec(_options(riff_folder, out))
    assert again.start_step == 4 and again.step == 4


def test_init_decoder_fine_tunes_from_another_bundle(riff_folder: Path, tmp_path: Path) -> None:
    source = tmp_path / "source"
    train_mel_codec(_options(riff_folder, source, steps=3))
    tuned = tmp_path / "tuned"
    # lr ~ 0: after one step the decoder is still the source's (its input conv rescaled)
    train_mel_codec(_options(riff_folder, tuned, steps=1, lr=1e-12, init_decoder=source))
    before = _weights(source / "codec.safetensors")
    after = _weights(tuned / "codec.safetensors")
    head = "decoder.head.weight"
    torch.testing.assert_close(after[head], before[head], rtol=0, atol=1e-6)
    train_mel_codec(_options(riff_folder, tmp_path / "fresh", steps=1))
    fresh = _weights(tmp_path / "fresh" / "codec.safetensors")
    assert not torch.allclose(fresh[head], before[head])
    info = read_bundle(tuned)
    assert info.training["codec"]["init_decoder"] == str(source)
    # applied before the first decoder step only: a resumed run keeps its own decoder
    train_mel_codec(_options(riff_folder, tuned, steps=3, init_decoder=source))
    assert read_bundle(tuned).training["codec"]["init_decoder"] == str(source)
    with pytest.raises(TrainingError, match="init-decoder"):
        train_mel_codec(_options(riff_folder, tmp_path / "x", init_decoder=tmp_path / "none"))


def test_init_codec_keeps_the_tokens_and_fine_tunes_the_decoder(
    riff_folder: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    source = tmp_path / "source"
    train_mel_codec(_options(riff_folder, source, steps=2))
    tuned = tmp_path / "tuned"
    # no --config: the adopted codec's; nq_choices: the dropped crops use 1 codebook
    with caplog.at_level("INFO", logger="audiogen_studio.training.mel_codec_trainer"):
        result = train_mel_codec(
            _options(
                riff_folder,
                tuned,
                config=None,
                steps=3,
                val_every=2,
                init_codec=source,
                nq_dropout=1.0,
                nq_choices=(1,),
            )
        )
    assert result.step == 3
    # the log line of a validation also names the codebook counts it trains for
    assert "mel-codec step 2/3: train loss" in caplog.text and "(q1 " in caplog.text
    before = _weights(source / "codec.safetensors")
    after = _weights(tuned / "codec.safetensors")
    assert before.keys() == after.keys()
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    # the normalisation and the codebooks are the source's, bit for bit: the same tokens
    assert changed and all(k.startswith("decoder.") for k in changed), changed
    audio = torch.as_tensor(four_note_riff(1))[None]
    codecs = [MelCodec.from_pretrained(b / "codec.safetensors").eval() for b in (source, tuned)]
    with torch.no_grad():
        codes = [c.encode(audio) for c in codecs]
    assert torch.equal(codes[0], codes[1])
    info = read_bundle(tuned)
    assert info.training["codec"]["init_codec"] == str(source)
    # the codebooks are the source's, so is the record of their fit (and its error)
    fitted = read_bundle(source).training["codec"]["stage1"]
    assert info.training["codec"]["stage1"] == {**fitted, "adopted_from": str(source)}
    assert info.training["codec"]["nq_choices"] == [1]
    # validation measures the counts it trains for
    metrics = info.metrics["codec"]
    assert {"val_mel_l1", "val_mel_l1_q1"} <= metrics.keys()
    assert metrics["kmeans_rel_err"] == read_bundle(source).metrics["codec"]["kmeans_rel_err"]
    # from a bare weights file only its name is known
    bare = tmp_path / "bare"
    train_mel_codec(
        _options(riff_folder, bare, config=None, steps=1, init_codec=source / "codec.safetensors")
    )
    bare_info = read_bundle(bare)
    assert bare_info.training["codec"]["stage1"] == {
        "adopted_from": str(source / "codec.safetensors")
    }
    assert "kmeans_rel_err" not in bare_info.metrics["codec"]
    # bad combinations are refused before training
    with pytest.raises(TrainingError, match="init-codec or --init-decoder"):
        _options(riff_folder, tmp_path / "x", init_codec=source, init_decoder=source).check()
    with pytest.raises(TrainingError, match="another config"):
        train_mel_codec(_options(riff_folder, tmp_path / "y", config="default", init_codec=source))
    with pytest.raises(TrainingError, match="codebooks"):
        train_mel_codec(_options(riff_folder, tmp_path / "z", nq_choices=(99,)))
    with pytest.raises(TrainingError, match="init-codec"):
        train_mel_codec(_options(riff_folder, tmp_path / "w", init_codec=tmp_path / "none"))


def test_nq_choices_draw_only_those_counts() -> None:
    rng = np.random.default_rng(0)
    n_q = _n_q_per_crop(TINY, 400, rng, 0.5, 1, (2, 3))
    assert set(n_q.tolist()) == {2, 3, TINY.n_q}
    assert 150 < int((n_q == TINY.n_q).sum()) < 250


def test_refuses_another_config_or_another_codec(riff_folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "b"
    train_mel_codec(_options(riff_folder, out, steps=1))
    with pytest.raises(TrainingError, match="another config"):
        train_mel_codec(_options(riff_folder, out, steps=2, config="default"))
    with pytest.raises(TrainingError, match="unknown mel codec config"):
        train_mel_codec(_options(riff_folder, tmp_path / "x", config="huge"))
    with pytest.raises(TrainingError, match="nq_dropout"):
        train_mel_codec(_options(riff_folder, tmp_path / "x", nq_dropout=2.0))
    # a bundle whose codec is a SoundStream one (its LMs would not fit mel tokens)
    other = tmp_path / "soundstream"
    codec = Codec(NAMED_CODEC_CONFIGS["tiny"])
    codec.save_pretrained(other / "codec.safetensors")
    write_component(
        other, "codec", file="codec.safetensors", config=codec.config.to_dict(), sample_rate=RATE
    )
    with pytest.raises(TrainingError, match="already holds a soundstream codec"):
        train_mel_codec(_options(riff_folder, other, steps=1))
    # a bundle of another kind is refused before any training
    wavenet = tmp_path / "wavenet"
    write_component(
        wavenet, "wavenet", file="w.safetensors", config={}, sample_rate=RATE, kind="wavenet"
    )
    with pytest.raises(TrainingError, match="wavenet bundle"):
        train_mel_codec(_options(riff_folder, wavenet, steps=1))
    assert not (wavenet / "checkpoint").exists()


def test_a_discriminator_joins_a_resumed_run_and_resumes_exactly(
    riff_folder: Path, tmp_path: Path
) -> None:
    """The GAN phase: a run of reconstruction training takes a discriminator on when resumed
    with one; its losses reach the decoder; its weights and optimizer resume exactly."""
    plain, straight, resumed = (tmp_path / n for n in ("plain", "straight", "resumed"))
    for out in (plain, straight, resumed):
        train_mel_codec(_options(riff_folder, out, steps=2))
    train_mel_codec(_options(riff_folder, plain, steps=4))
    reports: list[MelCodecStepReport] = []
    train_mel_codec(
        _options(riff_folder, straight, discriminator="tiny", val_every=1, save_every=1),
        on_step=reports.append,
    )
    assert [r.step for r in reports] == [3, 4]
    assert all(r.disc is not None and np.isfinite(r.disc) for r in reports)
    state = checkpoint_dir(straight).read_state()
    assert state is not None and state["adversarial_from"] == 2
    assert state["discriminator"] == NAMED_DISCRIMINATORS["tiny"].to_dict()  # type: ignore[union-attr]
    assert (checkpoint_dir(straight).folder / "discriminator.safetensors").is_file()
    training = read_bundle(straight).training["codec"]
    assert training["adversarial_from"] == 2 and training["discriminator"] == state["discriminator"]
    # stopped after one GAN step, then resumed without naming it: the checkpoint's discriminator
    stop = threading.Event()
    train_mel_codec(
        _options(riff_folder, resumed, discriminator="tiny"),
        on_step=lambda r: stop.set(),
        stop=stop,
    )
    again = train_mel_codec(_options(riff_folder, resumed))
    assert again.start_step == 3 and again.step == 4
    a = _weights(straight / "codec.safetensors")
    b = _weights(resumed / "codec.safetensors")
    for key in a:
        assert torch.allclose(a[key], b[key], atol=1e-5), key
    head = "decoder.head.weight"
    assert not torch.allclose(a[head], _weights(plain / "codec.safetensors")[head], atol=1e-5)
    # the same two steps with the adversarial weights at 0: the reconstruction run's decoder
    zero = tmp_path / "zero"
    train_mel_codec(_options(riff_folder, zero, steps=2))
    train_mel_codec(
        _options(riff_folder, zero, discriminator="tiny", adv_weight=0.0, feat_weight=0.0)
    )
    torch.testing.assert_close(
        _weights(zero / "codec.safetensors")[head], _weights(plain / "codec.safetensors")[head]
    )
    # another discriminator, or none, is refused once one has trained
    for other in ("small", "none"):
        with pytest.raises(TrainingError, match="another discriminator"):
            train_mel_codec(_options(riff_folder, straight, steps=5, discriminator=other))
    with pytest.raises(TrainingError, match="unknown discriminator"):
        train_mel_codec(_options(riff_folder, tmp_path / "x", discriminator="huge"))


def test_cli_trains_and_round_trips_audio_aligned(
    riff_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bundle = tmp_path / "cli"
    args = ["train", "mel-codec", "--data", str(riff_folder), "--bundle", str(bundle)]
    args += ["--config", "tiny", "--steps", "2", "--batch", "2", "--segment", "0.2"]
    args += ["--threads", "1", "--no-progress", "--json", "--save-every", "0", "--val-every", "0"]
    assert main(args) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["step"] == 2 and summary["metrics"]["n_q"] == TINY.n_q
    # resumed with a discriminator (the GAN phase's flags)
    gan = [*args, "--discriminator", "tiny", "--disc-lr", "1e-4", "--adv-weight", "0.5"]
    gan[gan.index("--steps") + 1] = "3"
    assert main([*gan, "--feat-weight", "1"]) == 0
    assert json.loads(capsys.readouterr().out)["step"] == 3
    assert read_bundle(bundle).training["codec"]["adversarial_from"] == 2
    # codec encode | decode: same length, and exactly the codec's aligned decode
    wav = riff_folder / "riff.wav"
    tokens = tmp_path / "riff.safetensors"
    decoded = tmp_path / "riff-decoded.wav"
    assert main(["codec", "encode", str(wav), "--model", str(bundle), "-o", str(tokens)]) == 0
    assert main(["codec", "decode", str(tokens), "-o", str(decoded)]) == 0
    original = io.load(wav)
    out = io.load(decoded)
    assert out.frames == original.frames and out.rate == original.rate
    codec = load_acoustic_codec(bundle)
    assert isinstance(codec, MelCodec)
    x = torch.from_numpy(original.samples[0].copy())
    with torch.inference_mode():
        codes = codec.encode(torch.nn.functional.pad(x, (0, codec.latency))[None, None])
        expected = codec.decode_aligned(codes, x.shape[0])[0, 0].numpy()
    np.testing.assert_allclose(out.samples[0], expected, atol=1e-4)  # 16-bit file: ~3e-5


# --- the AudioLM engine with a mel codec ----------------------------------------------------------


class _RecordingDecoder:
    """Wraps a codec's decoder stream and keeps every pushed code tensor."""

    def __init__(self, stream: Any, log: list[torch.Tensor]) -> None:
        self.stream = stream
        self.log = log

    def push(self, codes: torch.Tensor) -> torch.Tensor:
        self.log.append(codes.clone())
        return self.stream.push(codes)  # type: ignore[no-any-return]


@pytest.mark.parametrize("kind", ["mel", "soundstream"])
def test_audiolm_engine_streams_with_the_codec_aligned_to_its_decode(
    kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The engine's lead-in and continuation are exactly the codec's decode of the prompt's
    codes followed by the generated ones, read ``latency`` samples later (the mel codec's
    overlap-add lags; the SoundStream codec does not)."""
    torch.manual_seed(0)
    codec: Codec | MelCodec = (
        MelCodec(TINY).eval() if kind == "mel" else Codec(NAMED_CODEC_CONFIGS["tiny"]).eval()
    )
    folder = random_audiolm_bundle(tmp_path / "bundle", codec=codec)
    engine = load_engine(str(folder), engine="audiolm", device="cpu")
    assert isinstance(engine, AudioLMEngine)
    assert isinstance(engine.codec, MelCodec if kind == "mel" else Codec)
    latency = TINY.latency if kind == "mel" else 0
    assert engine.latency == latency
    pushed: list[torch.Tensor] = []
    original = engine.codec.stream_decoder
    monkeypatch.setattr(
        engine.codec, "stream_decoder", lambda batch=1: _RecordingDecoder(original(batch), pushed)
    )
    prompt = synth.sine(330.0, 0.53, rate=RATE, amp=0.4)
    request = GenerationRequest(prompt=prompt, seconds=0.4, takes=2, seed=5)
    takes = collect(engine, request)
    total = prompt.frames
    wanted = engine.expected_frames(request)
    for b, take in enumerate(takes):
        assert take.complete and take.generated.frames == wanted
        assert take.lead_in is not None
        lead = take.lead_in.frames
        assert 160 <= lead <= 160 + engine.hop_s
        start = total - lead  # the prompt's whole semantic frames end here
        with torch.inference_mode():
            head = engine.codec.encode(torch.from_numpy(prompt.samples[:, :start].copy())[None])
            codes = torch.cat([head[:1], *(p[b : b + 1] for p in pushed[1:])], dim=-1)
            full = engine.codec.decode(codes)[0, 0].numpy()
        np.testing.assert_allclose(
            take.lead_in.samples[0], full[start + latency : total + latency], atol=1e-4
        )
        np.testing.assert_allclose(
            take.generated.samples[0],
            full[total + latency : total + latency + wanted],
            atol=1e-4,
        )


# --- torchrun -------------------------------------------------------------------------------------

_DDP_SCRIPT = """
import sys, torch
torch.set_num_threads(1)
from audiogen_studio.training.mel_codec_trainer import MelCodecTrainOptions, train_mel_codec
import audiogen_studio.training.mel_codec_trainer as mt
seen = []
original = mt._MelStepper.step
def step(self, crops, n_q):
    out = original(self, crops, n_q)
    params = [*self.model.parameters(), *self.adversary.disc.parameters()]
    seen.append(torch.cat([p.detach().flatten() for p in params]))
    return out
mt._MelStepper.step = step
data, out, dump = sys.argv[1:4]
result = train_mel_codec(MelCodecTrainOptions(
    data=data, out=out, config="tiny", steps=2, batch=2, segment=0.2, kmeans_iters=2,
    val_every=0, save_every=0, val_crops=2, progress=False, threads=1, device="cpu",
    discriminator="tiny"))
from safetensors.torch import save_file
save_file({"params": torch.stack(seen)}, f"{dump}/rank{result.rank}.safetensors")
"""


@pytest.mark.slow
def test_two_torchrun_ranks_train_one_decoder(riff_folder: Path, tmp_path: Path) -> None:
    proc = run_two_ranks(_DDP_SCRIPT, riff_folder, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rank0 = load_file(tmp_path / "rank0.safetensors")["params"]
    rank1 = load_file(tmp_path / "rank1.safetensors")["params"]
    # one decoder and one discriminator (GAN phase from step 0), different crops
    assert rank0.shape[0] == 2 and torch.equal(rank0, rank1)
    manifest = json.loads((tmp_path / "bundle" / "bundle.json").read_text())
    assert manifest["training"]["codec"]["world_size"] == 2
    assert manifest["training"]["codec"]["adversarial_from"] == 0
    assert manifest["components"]["codec"]["kind"] == "mel"
