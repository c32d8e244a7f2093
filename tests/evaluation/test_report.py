"""Results to JSON: nested dataclasses, numpy values, NaN; targets met or not."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from audiogen_studio.evaluation import report


@dataclass
class _Inner:
    x: object
    arr: np.ndarray


@dataclass
class _Outer:
    name: str
    inner: _Inner
    items: list[_Inner]
    extra: dict[str, object]


def test_to_jsonable_handles_dataclasses_numpy_and_nan(tmp_path: Path) -> None:
    obj = _Outer(
        "a",
        _Inner(np.float32(0.123456789), np.array([1.0, math.nan])),
        [_Inner(math.inf, np.arange(2))],
        {"n": np.int64(3), "ok": np.bool_(True), "p": tmp_path, "none": None},
    )
    data = report.to_jsonable(obj)
    assert data == {
        "name": "a",
        "inner": {"x": 0.1235, "arr": [1.0, None]},
        "items": [{"x": None, "arr": [0, 1]}],
        "extra": {"n": 3, "ok": True, "p": str(tmp_path), "none": None},
    }
    out = tmp_path / "r.json"
    report.write(obj, out)
    assert json.loads(out.read_text()) == data
    assert not list(tmp_path.glob(".*partial"))


def test_write_to_stdout(capsys: pytest.CaptureFixture[str]) -> None:
    report.write({"v": float("nan")})
    assert json.loads(capsys.readouterr().out) == {"v": None}


def test_targets() -> None:
    t = report.TARGETS
    assert t["speaker_cosine"].met(0.81) and not t["speaker_cosine"].met(0.79)
    assert t["tempo_ratio"].met(1.04) and not t["tempo_ratio"].met(1.06)
    assert not t["tempo_ratio"].met(0.94)
    assert t["rtf"].met(0.5) and not t["rtf"].met(0.51)
    assert t["dnsmos_ovrl"].met(None) is None
    assert t["tempo_ratio"].describe() == "0.95..1.05"
    codec = report.codec_targets(1.7, 2.9)
    assert codec["pesq_wb"].met(1.71) and not codec["pesq_wb"].met(1.7)
    assert not codec["pesq_wb_moonshot"].met(2.0)
    fig = report.figure(0.9, t["speaker_cosine"])
    assert fig["value"] == 0.9 and fig["met"] is True and fig["target"] == ">= 0.8"
    assert report.figure(math.nan) == {"value": None}
