"""training/common's first steps of a run, shared by the codec, mel codec, semantic and WaveNet
trainers: option checks, opening the checkpoint folder, the stored config, the dataset on ranks
(rank 0 writes the cache before the others read it) and the AMP warning."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch

from audiogen_studio.models.codec import NAMED_CODEC_CONFIGS, CodecConfig
from audiogen_studio.training.audio_dataset import TrainingError
from audiogen_studio.training.common import (
    CheckpointDir,
    DistInfo,
    check_fields,
    check_valid_fraction,
    named_config_of,
    open_checkpoint,
    prepare_on_ranks,
    stored_config,
    training_amp_dtype,
)

torch.set_num_threads(1)
log = logging.getLogger("test_trainer_setup")


@dataclass
class _Options:
    steps: int = 1
    warmup: int = 0
    lr: float = 1e-3
    weight: float = 0.0
    threads: int | None = None


def _check(options: _Options) -> None:
    check_fields(
        options,
        at_least_one=("steps", "threads"),
        zero_or_more=("warmup",),
        positive=("lr",),
        non_negative=("weight",),
    )


def test_check_fields_messages_and_order() -> None:
    _check(_Options())  # threads None: not set, passes
    cases = [
        (_Options(steps=0), "steps must be at least 1, got 0"),
        (_Options(threads=0), "threads must be at least 1, got 0"),
        (_Options(warmup=-1), "warmup must be 0 or more, got -1"),
        (_Options(lr=0.0), "lr must be a positive number, got 0.0"),
        (_Options(lr=float("inf")), "lr must be a positive number, got inf"),
        (_Options(weight=-0.5), "weight must be 0 or more, got -0.5"),
        (_Options(weight=float("nan")), "weight must be 0 or more, got nan"),
        (_Options(steps=0, lr=0.0), "steps must be at least 1"),  # in the order of the kinds
    ]
    for options, message in cases:
        with pytest.raises(TrainingError, match=f"^{message}"):
            _check(options)
    check_valid_fraction(0.0)
    with pytest.raises(TrainingError, match=r"valid_fraction must be within \[0, 0.5\), got 0.5"):
        check_valid_fraction(0.5)


def test_open_checkpoint_creates_recovers_and_reads(tmp_path: Path) -> None:
    single = DistInfo(1, 0, 0, False)
    out = tmp_path / "bundle"
    ckpt = CheckpointDir(out / "checkpoint")
    assert open_checkpoint(out, ckpt, single) is None and out.is_dir()
    model = torch.nn.Linear(2, 2)
    ckpt.save({"m": model}, {}, {"step": 3, "config": {}}, {"m": {}})
    # a crash between the two renames of a save: only the previous checkpoint, as ".old"
    (out / "checkpoint").rename(out / ".checkpoint.old")
    state = open_checkpoint(out, ckpt, single)
    assert state is not None and state["step"] == 3 and (out / "checkpoint").is_dir()
    (tmp_path / "file").write_text("x")
    with pytest.raises(TrainingError, match="exists and is not a folder"):
        open_checkpoint(tmp_path / "file", ckpt, single)


def test_stored_config_and_its_name(tmp_path: Path) -> None:
    tiny = NAMED_CODEC_CONFIGS["tiny"]
    assert stored_config(None, CodecConfig.from_dict, tmp_path) is None
    resume = {"config": tiny.to_dict()}
    assert stored_config(resume, CodecConfig.from_dict, tmp_path) == tiny
    for bad in ({}, {"config": {"colour": 1}}):
        with pytest.raises(TrainingError, match=f"^{tmp_path}: bad codec config in trainer"):
            stored_config(bad, CodecConfig.from_dict, tmp_path, "codec config")
    assert named_config_of(tiny, NAMED_CODEC_CONFIGS, None) == "tiny"
    other = CodecConfig(channels=8)
    assert named_config_of(other, NAMED_CODEC_CONFIGS, None) == "custom"
    assert named_config_of(other, NAMED_CODEC_CONFIGS, {"config_name": "mine"}) == "mine"


@dataclass
class _Data:
    valid: object


@dataclass
class _Rank:
    """A stand-in for one rank of a DistInfo that records the order of events."""

    main: bool
    events: list[str] = field(default_factory=list)

    def barrier(self) -> None:
        self.events.append("barrier")


@pytest.mark.parametrize("main", [True, False])
def test_prepare_on_ranks_writes_on_rank_0_before_the_others_read(
    main: bool, caplog: pytest.LogCaptureFixture
) -> None:
    rank = _Rank(main)

    def prepare(write: bool) -> _Data:
        rank.events.append(f"prepare write={write}")
        return _Data(valid=None if main else "split")

    with caplog.at_level(logging.WARNING, logger=log.name):
        data = prepare_on_ranks(rank, prepare, log, "no validation audio")  # type: ignore[arg-type]
    expected = ["prepare write=True", "barrier"] if main else ["barrier", "prepare write=False"]
    assert rank.events == expected and isinstance(data, _Data)
    warned = [r.getMessage() for r in caplog.records if r.name == log.name]
    assert warned == (["no validation audio"] if main else [])


def test_training_amp_dtype_warns_off_cuda(caplog: pytest.LogCaptureFixture) -> None:
    cpu = torch.device("cpu")
    with caplog.at_level(logging.WARNING, logger=log.name):
        assert training_amp_dtype(cpu, False, log) is None
        assert not caplog.records
        assert training_amp_dtype(cpu, True, log) is None
    assert [r.getMessage() for r in caplog.records] == [
        "--amp needs a CUDA device; training in float32 on cpu"
    ]
