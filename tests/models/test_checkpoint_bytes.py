"""Checkpoint files are byte-reproducible and still plain safetensors."""

from __future__ import annotations

import hashlib
import json
import struct
from pathlib import Path

import torch
from safetensors import safe_open
from torch import nn

from audiogen_studio.models.checkpoint import half_copy, load_state, save_module


def _digest(path: Path) -> str:
    return hashlib.sha1(path.read_bytes()).hexdigest()


def _module() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(5, 7), nn.ReLU(), nn.Linear(7, 3))


def test_the_same_module_always_gives_the_same_bytes(tmp_path: Path) -> None:
    module = _module()
    extra = {"step": 12, "name": "x", "kind": "demo", "notes": "ünïcode"}
    # the safetensors writer orders metadata by a random hash: several files would differ
    paths = [tmp_path / f"m{i}.safetensors" for i in range(6)]
    for p in paths:
        save_module(module, p, {"width": 7}, extra=extra)
    assert len({_digest(p) for p in paths}) == 1
    halves = [tmp_path / f"h{i}.safetensors" for i in range(6)]
    for p in halves:
        half_copy(paths[0], p)
    assert len({_digest(p) for p in halves}) == 1


def test_the_rewritten_header_is_sorted_padded_and_readable(tmp_path: Path) -> None:
    module = _module()
    path = save_module(module, tmp_path / "m.safetensors", {"width": 7}, extra={"step": 3})
    data = path.read_bytes()
    (length,) = struct.unpack("<Q", data[:8])
    assert length % 8 == 0
    header = json.loads(data[8 : 8 + length])
    assert list(header) == sorted(header)
    assert list(header["__metadata__"]) == sorted(header["__metadata__"])
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
        assert json.loads(meta["extra"]) == {"step": 3}
        assert meta["module"] == "Sequential"
    state, _ = load_state(path)
    for name, tensor in module.state_dict().items():
        assert torch.equal(state[name], tensor)
    half = half_copy(path, tmp_path / "h.safetensors")
    state16, _ = load_state(half)
    assert all(t.dtype == torch.float16 for t in state16.values())
    assert torch.allclose(state16["0.weight"].float(), module.state_dict()["0.weight"], atol=1e-3)


def test_float16_values_are_recognised_and_rounded_to(tmp_path: Path) -> None:
    from audiogen_studio.models.checkpoint import holds_float16_values, round_to_float16_

    torch.manual_seed(0)
    module = torch.nn.Linear(8, 4)
    assert not holds_float16_values(module.parameters())
    path = save_module(module, tmp_path / "m.safetensors", {"width": 8})
    loaded = torch.nn.Linear(8, 4)
    loaded.load_state_dict(load_state(half_copy(path, tmp_path / "h.safetensors"))[0])
    assert holds_float16_values(loaded.parameters())  # what a shipped half copy loads as
    round_to_float16_(module)
    assert holds_float16_values(module.parameters())
    assert module.weight.dtype == torch.float32
    torch.testing.assert_close(module.weight, loaded.weight, atol=0, rtol=0)
    assert holds_float16_values([torch.arange(4)])  # integer tensors do not count
    assert not holds_float16_values([torch.tensor([1e6])])  # beyond float16's range
    assert not holds_float16_values([torch.tensor([float("nan")])])
