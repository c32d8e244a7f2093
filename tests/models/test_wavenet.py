"""WaveNet model: config, parameter layout, forward == prime + step, causality, receptive field,
mel alignment, checkpoints, devices."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from audiogen_studio.models.checkpoint import (
    CheckpointError,
    load_state,
    load_tree,
    save_module,
    save_tree,
)
from audiogen_studio.models.device import ComputeDeviceError, resolve_device
from audiogen_studio.models.wavenet import (
    NAMED_CONFIGS,
    WaveNet,
    WaveNetConfig,
    log_mel,
    named_config,
)

TINY = dict(layers=6, stacks=2, residual_channels=16, gate_channels=32, skip_channels=16)


@pytest.fixture(autouse=True)
def _one_torch_thread() -> Iterator[None]:
    """Tiny models gain nothing from intra-op threads, and on a shared 2-core machine two
    spinning OpenMP threads run 3-15x slower whenever another process is busy."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _model(seed: int = 0, **fields: object) -> WaveNet:
    torch.manual_seed(seed)
    config = WaveNetConfig(**{**TINY, **fields})  # type: ignore[arg-type]
    model = WaveNet(config).eval()
    # random (not default-initialised) biases and conditioning weights, so nothing is zero
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return model


# --- config ----------------------------------------------------------------------------------


def test_config_derived_values_and_json_round_trip() -> None:
    peer = NAMED_CONFIGS["peer"]
    assert peer.dilations == [1, 2, 4, 8, 16, 32, 64, 128, 256, 512] * 2
    assert peer.receptive_field == 2 * 2 * 1023 + 1 == 4093
    assert peer.classes == 256 and peer.half == 64
    tiny = NAMED_CONFIGS["tiny"]
    assert tiny.dilations == [1, 2, 4, 1, 2, 4] and tiny.receptive_field == 29
    for config in NAMED_CONFIGS.values():
        again = WaveNetConfig(**json.loads(config.to_json()))
        assert again == config
        assert WaveNetConfig.from_dict(config.to_dict()) == config
    assert NAMED_CONFIGS["vocoder"].mel_channels == 80
    assert named_config("tiny", mel=True) == NAMED_CONFIGS["tiny-vocoder"]
    assert named_config("default", mel=True) == NAMED_CONFIGS["vocoder"]
    assert named_config("peer", mel=True).mel_channels == 80


def test_config_rejects_bad_values_and_unknown_keys(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="multiple of"):
        WaveNetConfig(layers=5, stacks=2)
    with pytest.raises(ValueError, match="upsample_scales"):
        WaveNetConfig(mel_channels=10, hop_length=200, upsample_scales=(4, 4, 4))
    with pytest.raises(ValueError, match="even"):
        WaveNetConfig(gate_channels=33)
    with pytest.raises(ValueError, match="global_dim"):
        WaveNetConfig(global_classes=3)
    with pytest.raises(ValueError, match="unknown WaveNet config keys: dropout"):
        WaveNetConfig.from_dict({**TINY, "dropout": 0.1})
    with pytest.raises(ValueError, match="unknown WaveNet config"):
        named_config("huge")
    path = tmp_path / "mine.json"
    path.write_text(json.dumps({**TINY, "kernel_size": 2}))
    assert named_config(str(path)).receptive_field == 1 * (1 + 2 + 4) * 2 + 1


def test_parameter_layout_is_the_documented_one() -> None:
    model = _model(
        mel_channels=5, hop_length=8, upsample_scales=(2, 4), global_classes=3, global_dim=4
    )
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert shapes["embed.weight"] == (256, 16)
    assert shapes["global_embed.weight"] == (3, 4)
    assert shapes["upsample.layers.0.weight"] == (1, 1, 3, 2)
    assert shapes["upsample.layers.1.weight"] == (1, 1, 3, 4)
    for i in range(6):
        assert shapes[f"layers.{i}.conv.weight"] == (32, 16, 3)
        assert shapes[f"layers.{i}.conv.bias"] == (32,)
        assert shapes[f"layers.{i}.res.weight"] == (16, 16, 1)
        assert shapes[f"layers.{i}.res.bias"] == (16,)
        assert shapes[f"layers.{i}.skip.weight"] == (16, 16, 1)
        assert shapes[f"layers.{i}.skip.bias"] == (16,)
        assert shapes[f"layers.{i}.cond.weight"] == (32, 5, 1)
        assert shapes[f"layers.{i}.gcond.weight"] == (32, 4, 1)
    assert shapes["out1.weight"] == (16, 16, 1) and shapes["out2.weight"] == (256, 16, 1)
    assert len(shapes) == 2 + 2 + 6 * 8 + 4
    plain = WaveNet(NAMED_CONFIGS["tiny"]).state_dict()
    assert not any(".cond." in k or "gcond" in k or "upsample" in k for k in plain)


# --- forward == prime + step -------------------------------------------------------------------


def _conditioning(model: WaveNet, batch: int, length: int) -> tuple[object, object]:
    cfg = model.config
    c = None
    if cfg.mel_channels:
        frames = math.ceil(length / cfg.hop_length)
        c = torch.randn(batch, cfg.mel_channels, frames)
    g: object = None
    if cfg.global_classes:
        g = torch.arange(batch) % cfg.global_classes
    elif cfg.global_dim:
        g = torch.randn(batch, cfg.global_dim)
    return c, g


@pytest.mark.parametrize(
    "fields",
    [
        {},
        {"global_classes": 4, "global_dim": 6},
        {"global_dim": 5},
        {"mel_channels": 7, "hop_length": 16, "upsample_scales": (4, 4)},
        {"kernel_size": 2, "layers": 8, "stacks": 2},
    ],
    ids=["unconditional", "global-id", "global-vector", "mel", "kernel2"],
)
@pytest.mark.parametrize("prefix", [0, 5, 60])
def test_full_forward_equals_prime_plus_step(fields: dict[str, object], prefix: int) -> None:
    model = _model(**fields)
    batch, length = 3, 110
    generator = torch.Generator().manual_seed(1)
    x = torch.randint(0, 256, (batch, length), generator=generator)
    c, g = _conditioning(model, batch, length)
    with torch.no_grad():
        full = model(x, c, g)  # [B, classes, T]
    assert full.shape == (batch, 256, length)
    state = model.prime(x[:, :prefix], c, g)
    assert state.time == prefix
    if prefix:
        assert state.last_logits is not None
        torch.testing.assert_close(state.last_logits, full[:, :, prefix - 1], atol=1e-4, rtol=0)
    c_up = model.upsample_conditioning(c) if c is not None else None  # type: ignore[arg-type]
    steps = []
    for t in range(prefix, length):
        c_t = None if c_up is None else c_up[:, :, t]
        steps.append(model.step(x[:, t], state, c_t))
    stepped = torch.stack(steps, dim=-1)
    assert (stepped - full[:, :, prefix:]).abs().max().item() < 1e-4
    # the check can fail: the logits vary along time and across the batch
    assert full[:, :, prefix:].std(dim=-1).min() > 1e-3
    assert (full[0] - full[1]).abs().max() > 1e-3


def test_c_offset_selects_the_upsampled_features() -> None:
    model = _model(mel_channels=4, hop_length=8, upsample_scales=(8,))
    x = torch.randint(0, 256, (2, 40))
    c = torch.randn(2, 4, 10)  # 80 samples of conditioning
    with torch.no_grad():
        shifted = model(x[:, 16:40], c, c_offset=16)
        full = model(x, c)
        skipped = model(x, c, output_from=16)
    # causal: positions 16.. of the long pass equal a pass started at 16 only after the RF
    rf = model.receptive_field
    torch.testing.assert_close(shifted[:, :, rf:], full[:, :, 16 + rf :], atol=1e-5, rtol=0)
    torch.testing.assert_close(skipped, full[:, :, 16:], atol=1e-6, rtol=0)
    with pytest.raises(ValueError, match="conditioning"):
        model(x, c, c_offset=50)


def test_step_checks_its_conditioning() -> None:
    mel = _model(mel_channels=4, hop_length=8, upsample_scales=(8,))
    state = mel.incremental_state(2)
    with pytest.raises(ValueError, match="c_t"):
        mel.step(torch.zeros(2, dtype=torch.long), state)
    glob = _model(global_classes=3, global_dim=2)
    with pytest.raises(ValueError, match="global ids must be within"):
        glob.incremental_state(2, torch.tensor([0, 5]))
    state = glob.incremental_state(2, torch.tensor([0, 2]))
    state.global_bias = None
    with pytest.raises(ValueError, match="needs global"):
        glob.step(torch.zeros(2, dtype=torch.long), state)
    with pytest.raises(ValueError, match="global conditioning"):
        glob(torch.zeros(2, 5, dtype=torch.long))
    plain = _model()
    with pytest.raises(ValueError, match="no local"):
        plain(torch.zeros(1, 5, dtype=torch.long), torch.zeros(1, 80, 1))


# --- causality and receptive field ---------------------------------------------------------


@pytest.mark.parametrize("fields", [{}, {"kernel_size": 2}, {"layers": 9, "stacks": 3}])
def test_receptive_field_is_the_measured_dependency_span(fields: dict[str, object]) -> None:
    model = _model(**fields)
    rf = model.receptive_field
    length = rf + 40
    x = torch.randint(0, 256, (1, length))
    emb = model.embed(x).transpose(1, 2).detach().requires_grad_(True)  # [1, R, T]
    skips = model._trunk(emb, None, None)
    logits = model._head(skips)  # [1, classes, T]
    logits[0, :, length - 1].sum().backward()
    assert emb.grad is not None
    influence = emb.grad[0].abs().sum(dim=0)  # [T]
    nonzero = torch.nonzero(influence > 0).flatten()
    assert nonzero.max().item() == length - 1  # the current input matters
    assert length - nonzero.min().item() == rf  # and nothing older than the receptive field


def test_changing_an_input_never_changes_earlier_logits() -> None:
    model = _model(mel_channels=3, hop_length=4, upsample_scales=(4,))
    x = torch.randint(0, 256, (1, 80))
    c = torch.randn(1, 3, 20)
    with torch.no_grad():
        base = model(x, c)
        for t0 in (0, 17, 79):
            y = x.clone()
            y[0, t0] = (y[0, t0] + 101) % 256
            changed = model(y, c)
            assert torch.equal(changed[:, :, :t0], base[:, :, :t0])
            assert (changed[:, :, t0] - base[:, :, t0]).abs().max() > 1e-4
            later = min(t0 + model.receptive_field, 80)
            assert torch.equal(changed[:, :, later:], base[:, :, later:])


# --- local conditioning alignment ----------------------------------------------------------


def test_upsampled_feature_of_sample_t_depends_on_frame_t_div_hop_only() -> None:
    model = _model(mel_channels=6, hop_length=16, upsample_scales=(4, 4))
    c = torch.randn(1, 6, 5)
    with torch.no_grad():
        base = model.upsample_conditioning(c)
        assert base.shape == (1, 6, 80)
        for j in range(5):
            d = c.clone()
            d[0, :, j] += 3.0
            diff = (model.upsample_conditioning(d) - base).abs().amax(dim=1)[0]  # [80]
            moved = torch.nonzero(diff > 0).flatten()
            assert moved.min().item() == 16 * j and moved.max().item() == 16 * j + 15


def test_log_mel_frames_are_centred_on_their_sample_blocks() -> None:
    config = NAMED_CONFIGS["tiny-vocoder"]  # hop 64, n_fft 256, 20 bins
    hop, rate = config.hop_length, config.sample_rate
    length = 40 * hop + 17
    mel = log_mel(torch.zeros(length), config)
    assert mel.shape == (1, 20, math.ceil(length / hop))
    assert torch.allclose(mel, torch.full_like(mel, math.log(1e-5)))
    # a click in block j is loudest in frame j
    for j in (3, 20, 39):
        x = np.zeros((2, length), np.float32)
        x[:, j * hop + hop // 2] = 1.0
        energy = log_mel(x, config).exp().sum(dim=1)[0]  # [frames]
        assert int(energy.argmax()) == j
    # a tone that starts at block 10 shows in frames >= 10 (frame 9 sees half a window of it)
    t = np.arange(length) / rate
    tone = np.where(np.arange(length) >= 10 * hop, 0.5 * np.sin(2 * np.pi * 2000 * t), 0.0)
    energy = log_mel(tone.astype(np.float32), config).exp().sum(dim=1)[0]
    assert energy[:8].max() < 1e-3 < energy[11]
    with pytest.raises(ValueError, match="mel_channels"):
        log_mel(torch.zeros(100), NAMED_CONFIGS["tiny"])
    # read-only arrays (Clip samples) are copied, not wrapped with a torch warning
    frozen = np.zeros(300, np.float32)
    frozen.flags.writeable = False
    assert log_mel(frozen, config).shape == (1, 20, 5)


# --- checkpoints ----------------------------------------------------------------------------


def test_checkpoint_round_trip_rebuilds_the_model(tmp_path: Path) -> None:
    model = _model(mel_channels=5, hop_length=8, upsample_scales=(8,), global_dim=3)
    path = model.save_pretrained(tmp_path / "w.safetensors", extra={"step": 7})
    again = WaveNet.from_pretrained(path, expected_config=model.config.to_dict())
    assert again.config == model.config and not again.training
    x = torch.randint(0, 256, (2, 30))
    c, g = torch.randn(2, 5, 4), torch.randn(2, 3)
    with torch.no_grad():
        assert torch.equal(model(x, c, g), again(x, c, g))
    _, meta = load_state(path)
    assert meta["extra"] == {"step": 7} and meta["module"] == "WaveNet"
    assert meta["config"] == model.config.to_dict()


def test_mismatched_or_foreign_checkpoints_are_refused(tmp_path: Path) -> None:
    model = _model()
    # tensors of the tiny model under a config that says 32 residual channels
    wrong = tmp_path / "wrong.safetensors"
    save_module(model, wrong, {**model.config.to_dict(), "residual_channels": 32})
    with pytest.raises(CheckpointError, match=r"wrong\.safetensors: .*shape mismatch: embed"):
        WaveNet.from_pretrained(wrong)
    unknown = tmp_path / "unknown.safetensors"
    save_module(model, unknown, {**model.config.to_dict(), "attention": True})
    with pytest.raises(CheckpointError, match=r"unknown\.safetensors: unknown .* attention"):
        WaveNet.from_pretrained(unknown)
    bare = tmp_path / "bare.safetensors"
    save_file({"embed.weight": torch.zeros(256, 16)}, str(bare))
    with pytest.raises(CheckpointError, match="no WaveNet config"):
        WaveNet.from_pretrained(bare)
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"\x00\x01not a safetensors file" * 10)
    with pytest.raises(CheckpointError, match="garbage.safetensors: not a readable"):
        WaveNet.from_pretrained(garbage)
    with pytest.raises(CheckpointError, match="file not found"):
        WaveNet.from_pretrained(tmp_path / "missing.safetensors")
    good = model.save_pretrained(tmp_path / "good.safetensors")
    with pytest.raises(CheckpointError, match="differs from the expected"):
        WaveNet.from_pretrained(good, expected_config=NAMED_CONFIGS["peer"])
    assert isinstance(CheckpointError(good, "x"), ValueError)


def test_tree_round_trip_keeps_an_optimizer_state(tmp_path: Path) -> None:
    model = _model()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3, betas=(0.8, 0.99))
    for _ in range(2):
        loss = model(torch.randint(0, 256, (1, 20))).logsumexp(1).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    state = opt.state_dict()
    path = save_tree(state, tmp_path / "opt.safetensors")
    loaded = load_tree(path)
    assert loaded["param_groups"][0]["betas"] == (0.8, 0.99)
    assert set(loaded["state"]) == set(state["state"])  # int keys survive
    for key, value in state["state"].items():
        for name, tensor in value.items():
            assert torch.equal(loaded["state"][key][name], tensor)
    fresh = torch.optim.Adam(_model().parameters(), lr=1.0)
    fresh.load_state_dict(loaded)
    assert fresh.param_groups[0]["lr"] == 3e-3
    with pytest.raises(CheckpointError, match="not a checkpoint tree"):
        load_tree(model.save_pretrained(tmp_path / "m.safetensors"))


def test_resolve_device() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type in ("cpu", "cuda", "mps")
    with pytest.raises(ComputeDeviceError, match="unknown device"):
        resolve_device("tpu-please")
    if not torch.cuda.is_available():
        with pytest.raises(ComputeDeviceError, match="CUDA"):
            resolve_device("cuda")
