"""WaveNet training: data sources and crops, learning a two-tone signal, resume, stop, the mel
vocoder variant, the CLI, torchrun (DDP on CPU, 2 processes) and bad data."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from trainer_runs import torchrun

from audiogen_studio.audio import io
from audiogen_studio.audio.clip import Clip
from audiogen_studio.cli.main import main
from audiogen_studio.engine.bundles import read_bundle
from audiogen_studio.models.checkpoint import load_state, save_module
from audiogen_studio.models.mulaw import mulaw_decode, silence_class
from audiogen_studio.models.wavenet import NAMED_CONFIGS, WaveNet
from audiogen_studio.training.audio_dataset import AudioDataset, TrainingError, find_audio_sources
from audiogen_studio.training.wavenet_trainer import (
    StepReport,
    TrainOptions,
    read_trainer_state,
    train_wavenet,
)

RATE = 16_000
TONES = (440.0, 660.0)


@pytest.fixture(autouse=True)
def _one_torch_thread() -> Iterator[None]:
    """Tiny models gain nothing from intra-op threads, and on a shared 2-core machine two
    spinning OpenMP threads run 3-15x slower whenever another process is busy."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _two_tone(seconds: float, phase: float = 0.0) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    x = sum(0.3 * np.sin(2 * np.pi * f * t + phase * (i + 1)) for i, f in enumerate(TONES))
    return np.asarray(x, dtype=np.float32)


def _save(path: Path, samples: np.ndarray, rate: int = RATE) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    io.save(Clip(samples[None], rate), path)
    return path


@pytest.fixture(scope="module")
def tones_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("tones")
    _save(folder / "tones.wav", _two_tone(2.0))
    return folder


def _opts(data: Path, out: Path, **kw: object) -> TrainOptions:
    base: dict[str, object] = dict(
        data=data,
        out=out,
        config="tiny",
        steps=20,
        batch=4,
        crop=300,
        lr=1e-2,
        device="cpu",
        val_every=10,
        save_every=10,
        progress=False,
        val_crops=4,
    )
    base.update(kw)
    return TrainOptions(**base)  # type: ignore[arg-type]


# --- data -------------------------------------------------------------------------------------


def _corpus(folder: Path) -> Path:
    lines = []
    for i, split in enumerate(["train", "train", "valid", "test"]):
        rel = f"audio/{split}{i}.flac"
        _save(folder / rel, _two_tone(0.5, phase=i))
        lines.append(
            {
                "id": f"s{i:06d}",
                "path": rel,
                "duration": 0.5,
                "frames": 8000,
                "rate": RATE,
                "source": "espeak-ng",
                "licence": "GPL-3.0",
                "voice": f"v{i}",
                "speaker_id": f"v{i}",
                "split": split,
                "seed": i,
                "params": {},
            }
        )
    (folder / "manifest.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    return folder


def test_sources_from_corpus_manifest_folder_and_file(tmp_path: Path) -> None:
    corpus = _corpus(tmp_path / "corpus")
    sources = find_audio_sources(corpus)
    assert [p.name for p in sources.train] == ["train0.flac", "train1.flac"]
    assert [p.name for p in sources.valid] == ["valid2.flac"]  # test items are never used
    assert find_audio_sources(corpus / "manifest.jsonl").train == sources.train
    other = tmp_path / "list.jsonl"
    other.write_text(json.dumps({"path": str(corpus / "audio/test3.flac")}) + "\n")
    assert find_audio_sources(other).train == (corpus / "audio/test3.flac",)
    plain = find_audio_sources(corpus / "audio")
    assert len(plain.train) == 4 and plain.valid == ()
    assert find_audio_sources(corpus / "audio/train0.flac").train == (corpus / "audio/train0.flac",)


def test_a_plain_copy_of_a_corpus_tree_keeps_its_held_out_folders(tmp_path: Path) -> None:
    # a corpus's audio/train|valid|test/ tree copied without its manifest (a subset carried to
    # another machine, say) must not train on the held-out voices
    corpus = _corpus(tmp_path / "corpus")
    copy = tmp_path / "copy"
    for i, split in enumerate(["train", "train", "valid", "test"]):
        name = f"{split}{i}.flac"
        (copy / "audio" / split / "voice").mkdir(parents=True, exist_ok=True)
        (copy / "audio" / split / "voice" / name).write_bytes(
            (corpus / "audio" / name).read_bytes()
        )
    sources = find_audio_sources(copy)
    assert [p.name for p in sources.train] == ["train0.flac", "train1.flac"]
    assert [p.name for p in sources.valid] == ["valid2.flac"]
    # folders above the data folder do not count: naming a held-out folder uses it
    assert [p.name for p in find_audio_sources(copy / "audio" / "test").train] == ["test3.flac"]
    shutil.rmtree(copy / "audio" / "train")
    with pytest.raises(TrainingError, match="below 'valid' or 'test' folders"):
        find_audio_sources(copy)


def test_crops_are_teacher_forced_and_valid_is_held_out(tones_dir: Path, tmp_path: Path) -> None:
    config = NAMED_CONFIGS["tiny"]
    ds = AudioDataset.prepare(tones_dir, config, crop=100, cache_dir=tmp_path / "cache")
    assert ds.window == config.receptive_field - 1 + 100
    # no valid split given: the last 10 % of the file is held out, not trained on
    assert ds.train.seconds == pytest.approx(1.8) and ds.valid is not None
    assert ds.valid.seconds == pytest.approx(0.2)
    batch = ds.sample("train", np.random.default_rng(0), 5)
    assert batch.inputs.shape == batch.targets.shape == (5, ds.window)
    assert torch.equal(batch.inputs[:, 1:], batch.targets[:, :-1])
    # the targets are the tones (decoded within μ-law error), not silence or noise
    decoded = mulaw_decode(batch.targets)
    assert 0.25 < float(decoded.pow(2).mean().sqrt()) < 0.35
    # a second prepare reuses the memory-mapped cache
    again = AudioDataset.prepare(tones_dir, config, crop=100, cache_dir=tmp_path / "cache")
    assert isinstance(again.train.classes, np.memmap)
    assert np.array_equal(np.asarray(again.train.classes), np.asarray(ds.train.classes))


def test_mel_crops_carry_the_frames_of_their_targets(tmp_path: Path) -> None:
    """Frame j of a crop is the log-mel of the block of targets [j*hop, (j+1)*hop)."""
    config = NAMED_CONFIGS["tiny-vocoder"]  # hop 64
    hop = config.hop_length
    segment = 8 * hop
    freqs = [500.0, 3000.0, 1200.0, 6000.0] * 3
    t = np.arange(segment) / RATE
    audio = np.concatenate([0.5 * np.sin(2 * np.pi * f * t) for f in freqs]).astype(np.float32)
    _save(tmp_path / "data" / "steps.wav", audio)
    ds = AudioDataset.prepare(tmp_path / "data", config, crop=5 * hop, valid_fraction=0)
    assert ds.window % hop == 0
    batch = ds.sample("train", np.random.default_rng(3), 16)
    assert batch.mel is not None and batch.mel.shape == (16, 20, ds.window // hop)
    lead = int(ds.train.segments[0, 1]) - audio.shape[0]  # silence padded before the file
    starts = ds.random_starts("train", np.random.default_rng(3), 16)
    assert np.all(starts % hop == 0)
    checked = 0
    for b, start in enumerate(starts):
        # the inputs hold the audio one sample earlier than the targets
        first = int(start) - lead
        expect = audio[first : first + 50]
        got = mulaw_decode(batch.targets[b, :50]).numpy()
        assert np.abs(got - expect).max() < 0.02
        for j in range(ds.window // hop):
            sample = first + j * hop
            seg, off = divmod(sample, segment)
            if sample < 0 or not 2 * hop <= off <= segment - 3 * hop:
                continue  # the 4-hop window straddles two tones
            band = int(batch.mel[b, :, j].argmax())
            again = ds.batch("train", np.array([start]))
            assert again.mel is not None and int(again.mel[0, :, j].argmax()) == band
            expected = _mel_band(config, freqs[seg])
            assert band == expected, (b, j, freqs[seg])
            checked += 1
    assert checked > 20


def _mel_band(config: object, freq: float) -> int:
    from audiogen_studio.models.wavenet import log_mel

    t = np.arange(4096) / RATE
    tone = (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)
    return int(log_mel(tone, config)[0, :, 20:40].mean(dim=1).argmax())  # type: ignore[arg-type]


@pytest.mark.parametrize("case", ["missing", "empty", "not-audio", "corrupt", "no-train"])
def test_bad_data_is_a_clear_error(tmp_path: Path, case: str) -> None:
    data = tmp_path / "data"
    if case != "missing":
        data.mkdir()
    if case == "not-audio":
        (data / "notes.txt").write_text("hello")
    if case == "corrupt":
        (data / "broken.wav").write_bytes(b"RIFF\x10\x00\x00\x00WAVEjunk" * 4)
    if case == "no-train":
        (data / "manifest.jsonl").write_text(json.dumps({"path": "a.wav", "split": "test"}))
    expected = {
        "missing": "no such file or folder",
        "empty": "no audio files",
        "not-audio": "no audio files",
        "corrupt": "no training audio could be loaded: .*broken.wav",
        "no-train": "no 'train' files",
    }[case]
    with pytest.raises(TrainingError, match=expected):
        train_wavenet(_opts(data, tmp_path / "out"))
    err = tmp_path / "err.txt"
    code = _cli(["--data", str(data), "--out", str(tmp_path / "out2"), "--config", "tiny"], err)
    assert code == 2
    lines = err.read_text().strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("audiogen-studio: error: ")


def _cli(args: list[str], err_file: Path) -> int:
    import contextlib

    with err_file.open("w") as f, contextlib.redirect_stderr(f):
        return main(["train", "wavenet", "--device", "cpu", "--no-progress", *args])


# --- learning ---------------------------------------------------------------------------------


def test_tiny_wavenet_learns_two_tones_and_writes_a_bundle(tones_dir: Path, tmp_path: Path) -> None:
    reports: list[StepReport] = []
    out = tmp_path / "tones-bundle"
    result = train_wavenet(
        _opts(tones_dir, out, steps=60, batch=8, crop=500, val_every=20, save_every=0),
        on_step=reports.append,
    )
    assert result.completed and result.step == 60 and result.start_step == 0
    first = float(np.mean([r.loss for r in reports[:3]]))
    assert first > 5.0  # ~ln(256) at the start
    assert result.train_loss is not None and result.train_loss < 1.5 < first
    assert result.val_loss is not None and result.val_loss < 1.5  # held-out tail of the file
    assert [r.step for r in reports if r.val_loss is not None] == [20, 40]
    info = read_bundle(out)
    assert info.kind == "wavenet" and info.sample_rate == RATE and info.name == "tones-bundle"
    assert info.training["steps"] == 60 and info.training["device"] == "cpu"
    assert info.training["final_val_loss"] == pytest.approx(result.val_loss)
    assert info.training["hours"] == pytest.approx(1.8 / 3600, rel=1e-3)
    model = WaveNet.from_pretrained(
        info.component_path("wavenet"), expected_config=info.components["wavenet"]["config"]
    )
    # the bundled model predicts the held-out tail of the file (never trained on) well
    valid = AudioDataset.prepare(tones_dir, model.config, crop=50).valid
    assert valid is not None
    x = torch.from_numpy(np.asarray(valid.classes[:400], dtype=np.int64))[None]  # [1, 400]
    rf = model.receptive_field
    with torch.no_grad():
        logits = model(x, output_from=rf - 1)[0]  # [classes, 400 - rf + 1]
    nll = torch.nn.functional.cross_entropy(logits.T[:-1], x[0, rf:])
    assert float(nll) < 1.5
    assert int(x[0].min()) < silence_class() - 30 < silence_class() + 30 < int(x[0].max())


def test_resume_continues_exactly_like_an_uninterrupted_run(
    tones_dir: Path, tmp_path: Path
) -> None:
    straight = train_wavenet(_opts(tones_dir, tmp_path / "straight", steps=24))
    out = tmp_path / "resumed"
    first = train_wavenet(_opts(tones_dir, out, steps=12))
    assert first.step == 12 and read_trainer_state(out)["step"] == 12  # type: ignore[index]
    losses: list[float] = []
    second = train_wavenet(
        _opts(tones_dir, out, steps=24, config=None), on_step=lambda r: losses.append(r.loss)
    )
    assert second.start_step == 12 and second.step == 24 and len(losses) == 12
    a, _ = load_state(tmp_path / "straight" / "wavenet.safetensors")
    b, _ = load_state(out / "wavenet.safetensors")
    for name in a:
        torch.testing.assert_close(a[name], b[name], atol=1e-6, rtol=1e-5)
    assert second.train_loss == pytest.approx(straight.train_loss, rel=1e-4)
    assert read_trainer_state(out)["step"] == 24  # type: ignore[index]
    # nothing left to do: same step, bundle rewritten, no error
    third = train_wavenet(_opts(tones_dir, out, steps=24, config=None))
    assert third.step == 24 and third.start_step == 24
    # another config into the same folder is refused
    with pytest.raises(TrainingError, match="another config"):
        train_wavenet(_opts(tones_dir, out, steps=30, config="peer"))


def test_stop_event_checkpoints_and_writes_a_bundle(tones_dir: Path, tmp_path: Path) -> None:
    stop = threading.Event()
    out = tmp_path / "stopped"

    def on_step(report: StepReport) -> None:
        if report.step == 7:
            stop.set()

    result = train_wavenet(_opts(tones_dir, out, steps=50), on_step=on_step, stop=stop)
    assert result.step == 7 and not result.completed
    assert read_trainer_state(out)["step"] == 7  # type: ignore[index]
    info = read_bundle(out)
    assert info.training["steps"] == 7 and info.training["completed"] is False
    resumed = train_wavenet(_opts(tones_dir, out, steps=10, config=None))
    assert resumed.start_step == 7 and resumed.step == 10 and resumed.completed


def test_a_killed_run_resumes_from_its_last_checkpoint(tones_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "killed"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [
            sys.executable, "-m", "audiogen_studio", "train", "wavenet", "--data", str(tones_dir),
            "--out", str(out), "--config", "tiny", "--steps", "100000", "--batch", "2",
            "--crop", "100", "--device", "cpu", "--no-progress", "--val-every", "0",
            "--save-every", "3", "--threads", "1",
        ],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        state = None
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                state = read_trainer_state(out)
            except TrainingError:  # a file vanished between the check and the read: retry
                state = None
            if state is not None and state["step"] >= 6:
                break
            time.sleep(0.05)
        assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
        assert state is not None and state["step"] >= 6, "no checkpoint within 60 s"
    finally:
        proc.kill()  # SIGKILL: no chance to clean up
        proc.wait()
        if proc.stderr is not None:
            proc.stderr.close()
    saved = read_trainer_state(out)
    assert saved is not None and saved["step"] % 3 == 0
    assert not (out / "bundle.json").exists()  # killed runs write no bundle
    result = train_wavenet(
        _opts(tones_dir, out, config=None, steps=saved["step"] + 3, batch=2, crop=100)
    )
    assert result.start_step == saved["step"] and result.step == saved["step"] + 3
    assert read_bundle(out).training["steps"] == saved["step"] + 3


def test_mel_vocoder_trains_into_a_vocoder_bundle(tones_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "voc"
    reports: list[StepReport] = []
    result = train_wavenet(
        _opts(tones_dir, out, mel=True, steps=30, crop=256, val_every=0), on_step=reports.append
    )
    assert result.config == NAMED_CONFIGS["tiny-vocoder"]
    assert reports[-1].loss < reports[0].loss - 1.0
    info = read_bundle(out)
    assert info.kind == "wavenet-vocoder"
    assert info.components["wavenet"]["config"]["mel_channels"] == 20
    model = WaveNet.from_pretrained(info.component_path("wavenet"))
    assert model.upsample is not None


def test_init_from_fine_tunes_another_bundles_wavenet(tones_dir: Path, tmp_path: Path) -> None:
    source = tmp_path / "source"
    train_wavenet(_opts(tones_dir, source, steps=20, val_every=0, save_every=0))
    # shipped bundles hold float16 weights (models pack --half): the run starts from those
    packed = tmp_path / "packed.safetensors"
    original = WaveNet.from_pretrained(read_bundle(source).component_path("wavenet"))
    save_module(original.half(), packed, original.config)
    start = WaveNet.from_pretrained(packed)
    tuned = tmp_path / "tuned"
    reports: list[StepReport] = []
    result = train_wavenet(
        _opts(tones_dir, tuned, config=None, steps=3, val_every=0, save_every=0, init_from=packed),
        on_step=reports.append,
    )
    assert result.start_step == 0 and result.config == start.config
    # it starts where the source ended: its first loss is far below a fresh run's on the
    # same crops (~ln 256)
    fresh: list[StepReport] = []
    train_wavenet(
        _opts(tones_dir, tmp_path / "fresh", steps=1, val_every=0, save_every=0),
        on_step=fresh.append,
    )
    assert reports[0].loss < fresh[0].loss - 1.0
    info = read_bundle(tuned)
    assert info.training["init_from"] == str(packed)
    # a bundle folder works too; a resume ignores --init-from (the checkpoint wins)
    again = train_wavenet(
        _opts(tones_dir, tuned, config=None, steps=4, val_every=0, init_from=tmp_path / "none")
    )
    assert again.start_step == 3 and read_bundle(tuned).training["init_from"] == str(packed)
    from_folder = train_wavenet(
        _opts(tones_dir, tmp_path / "f", config=None, steps=1, val_every=0, init_from=source)
    )
    assert from_folder.config == start.config
    # refused: another asked config, --mel on an unconditional WaveNet, a missing source
    with pytest.raises(TrainingError, match="another WaveNet config"):
        train_wavenet(_opts(tones_dir, tmp_path / "x", config="default", init_from=source))
    with pytest.raises(TrainingError, match="not mel-conditioned"):
        train_wavenet(_opts(tones_dir, tmp_path / "y", config=None, mel=True, init_from=source))
    with pytest.raises(TrainingError, match="init-from"):
        train_wavenet(_opts(tones_dir, tmp_path / "z", config=None, init_from=tmp_path / "none"))


# --- command line and torchrun -----------------------------------------------------------------


def test_cli_trains_and_prints_json(
    tones_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "cli-bundle"
    code = main(
        [
            "train", "wavenet", "--data", str(tones_dir), "--out", str(out), "--config", "tiny",
            "--steps", "3", "--batch", "2", "--crop", "100", "--device", "cpu", "--no-progress",
            "--val-every", "0", "--json",
        ]
    )  # fmt: skip
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert report["step"] == 3 and report["completed"] is True
    assert report["config"]["layers"] == 6 and Path(report["bundle"]) == out
    assert read_bundle(out).kind == "wavenet"


@pytest.mark.slow
def test_torchrun_trains_with_two_cpu_processes(tones_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "ddp"
    proc = torchrun(
        [
            "-m", "audiogen_studio", "train", "wavenet", "--data", str(tones_dir), "--out",
            str(out), "--config", "tiny", "--steps", "6", "--batch", "2", "--crop", "200",
            "--device", "cpu", "--no-progress", "--val-every", "3", "--save-every", "3", "--json",
        ],
        tmp_path,
        timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout[proc.stdout.index("{") :])  # only rank 0 prints
    assert report["world_size"] == 2 and report["step"] == 6
    info = read_bundle(out)
    assert info.training["world_size"] == 2 and info.training["steps"] == 6
    assert read_trainer_state(out)["step"] == 6  # type: ignore[index]
    WaveNet.from_pretrained(info.component_path("wavenet"))
