"""The fast WaveNet generator against the torch model: logits, sampling, batching, streaming."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import numpy as np
import pytest
import torch

from audiogen_studio.engine.wavenet_fast import (
    FastWaveNet,
    _exp_array,
    fast_sigmoid,
    fast_tanh,
)
from audiogen_studio.models.mulaw import silence_class
from audiogen_studio.models.wavenet import WaveNet, WaveNetConfig


@pytest.fixture(autouse=True)
def _one_torch_thread() -> Iterator[None]:
    """Tiny per-sample torch ops: one intra-op thread (two threads on a busy 2-core machine
    spin against other processes and run ~100x slower)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _model(seed: int = 0, **kw: object) -> WaveNet:
    """A tiny real WaveNet (RF 29) with livelier than default random weights."""
    cfg: dict[str, object] = {
        "layers": 6,
        "stacks": 2,
        "residual_channels": 8,
        "gate_channels": 16,
        "skip_channels": 8,
        "bits": 5,
        "hop_length": 4,
        "upsample_scales": (4,),
    }
    cfg.update(kw)
    torch.manual_seed(seed)
    model = WaveNet(WaveNetConfig(**cfg)).eval()  # type: ignore[arg-type]
    with torch.no_grad():
        for name, p in model.named_parameters():
            if not name.startswith("upsample"):
                p.mul_(2.0)
    return model


def _fp16_rounded(model: WaveNet) -> WaveNet:
    import copy

    ref = copy.deepcopy(model)
    with torch.no_grad():
        for p in ref.parameters():
            p.copy_(p.half().float())
    return ref


def _classes(rng: np.random.Generator, shape: tuple[int, ...], n: int) -> np.ndarray:
    return rng.integers(0, n, size=shape).astype(np.int64)


# ---------------------------------------------------------------------------------------------


def test_rational_tanh_and_sigmoid_match_libm() -> None:
    x = np.linspace(-20, 20, 200_001, dtype=np.float32)
    assert np.abs(fast_tanh(x) - np.tanh(x.astype(np.float64))).max() < 1e-6
    sig = 1 / (1 + np.exp(-x.astype(np.float64)))
    assert np.abs(fast_sigmoid(x) - sig).max() < 1e-6
    # the sampler's exp (arguments <= 0): relative error below 1e-6 down to exp(-87)
    neg = -np.linspace(0, 87, 100_001, dtype=np.float32)
    got = np.empty_like(neg)
    _exp_array(neg, got)
    want = np.exp(neg.astype(np.float64))
    assert np.abs(got / want - 1).max() < 1e-6


@pytest.mark.parametrize("kind", ["plain", "global_id", "global_vec", "mel"])
def test_fast_path_torch_step_and_full_forward_agree(kind: str) -> None:
    kw = {
        "plain": {},
        "global_id": {"global_classes": 3, "global_dim": 4},
        "global_vec": {"global_dim": 5},
        "mel": {"mel_channels": 6},
    }[kind]
    model = _model(**kw)
    cfg = model.config
    rng = np.random.default_rng(1)
    B, T0, n = 2, cfg.receptive_field + 5, 40
    x = torch.as_tensor(_classes(rng, (B, T0 + n), cfg.classes))
    frames = c_up = None
    if cfg.mel_channels:  # the model takes mel frames; the fast path per-sample features
        frames = torch.randn(B, cfg.mel_channels, (T0 + n) // cfg.hop_length + 1)
        with torch.no_grad():
            c_up = model.upsample_conditioning(frames)
    g = None
    if cfg.global_classes:
        g = torch.tensor([2, 0])
    elif cfg.global_dim:
        g = torch.randn(B, cfg.global_dim)
    with torch.no_grad():
        full = model(x, frames, g).transpose(1, 2).numpy()  # [B, T, C]
        # torch incremental: prime on x[:, :T0-1], then step x[:, T0-1 + j]
        state = model.prime(x[:, : T0 - 1], frames, g)
        inc = np.stack(
            [
                model.step(x[:, t], state, None if c_up is None else c_up[:, :, t]).numpy()
                for t in range(T0 - 1, T0 - 1 + n)
            ],
            axis=1,
        )
    want = full[:, T0 - 1 : T0 - 1 + n]
    assert np.abs(want).max() > 0.5  # the comparison is not between near-zero logits
    assert np.abs(inc - want).max() < 1e-4
    for backend in ("numba", "torch"):
        fast = FastWaveNet.from_model(model, backend=backend)
        fast.prime(x[:, :T0], None if c_up is None else c_up[:, :, :T0], g)
        # the conditioning goes with the INPUT of each step: x[:, T0 - 1 + j] at step j
        cond = None if c_up is None else c_up[:, :, T0 - 1 : T0 - 1 + n]
        got = fast.logits_teacher_forced(x[:, T0 : T0 + n], cond=cond)
        assert got.shape == (B, n, cfg.classes)
        err = np.abs(got - want).max()
        assert err < 1e-4, (backend, err)


def test_fp16_weight_storage_matches_fp16_rounded_reference() -> None:
    model = _model(mel_channels=3)
    ref = _fp16_rounded(model)
    cfg = model.config
    rng = np.random.default_rng(2)
    T0, n = cfg.receptive_field + 3, 30
    x = torch.as_tensor(_classes(rng, (3, T0 + n), cfg.classes))
    frames = torch.randn(3, 3, (T0 + n) // cfg.hop_length + 1)
    with torch.no_grad():
        want = ref(x, frames).transpose(1, 2).numpy()[:, T0 - 1 : T0 - 1 + n]
        plain = model(x, frames).transpose(1, 2).numpy()[:, T0 - 1 : T0 - 1 + n]
        c = ref.upsample_conditioning(frames)  # the rounded upsampler: same features as `ref`
    fast = FastWaveNet.from_model(model, weight_dtype=np.float16)
    assert fast.weight_bytes * 2 == FastWaveNet.from_model(model).weight_bytes
    fast.prime(x[:, :T0], c[:, :, :T0])
    got = fast.logits_teacher_forced(x[:, T0:], cond=c[:, :, T0 - 1 : T0 - 1 + n])
    assert np.abs(got - want).max() < 1e-4
    # and the rounding itself is visible, so the comparison above is against the right model
    assert np.abs(plain - want).max() > 1e-4


def test_same_seed_same_take_other_seed_other_take() -> None:
    model = _model()
    fast = FastWaveNet.from_model(model)
    prompt = _classes(np.random.default_rng(3), (1, 50), model.config.classes)

    def take(seed: int) -> np.ndarray:
        fast.prime(prompt)
        return fast.generate(300, temperature=1.0, uniforms=np.random.default_rng(seed))

    a, b, c = take(7), take(7), take(8)
    np.testing.assert_array_equal(a, b)
    assert (a != c).mean() > 0.3
    assert len(np.unique(a)) > 5  # actually sampling, not stuck on one class


def test_batched_takes_equal_takes_run_alone_and_chunking_does_not_matter() -> None:
    model = _model(global_classes=2, global_dim=3)
    fast = FastWaveNet.from_model(model)
    C = model.config.classes
    rng = np.random.default_rng(4)
    prompts = _classes(rng, (5, 40), C)  # 5 takes: exercises the 4-, and 1-take matvec paths
    g = np.array([0, 1, 1, 0, 1])
    batched = np.concatenate(
        list(
            fast.stream(
                prompts, 250, 64, 0.9, [np.random.default_rng([11, i]) for i in range(5)], g=g
            )
        ),
        axis=1,
    )
    assert batched.shape == (5, 250)
    for i in range(5):
        fast.prime(prompts[i : i + 1], g=g[i : i + 1])
        alone = fast.generate(250, temperature=0.9, uniforms=[np.random.default_rng([11, i])])
        np.testing.assert_array_equal(alone[0], batched[i])
    # torch backend from the same uniforms gives the same classes
    slow = FastWaveNet.from_model(model, backend="torch")
    torch_takes = np.concatenate(
        list(
            slow.stream(
                prompts[:2],
                60,
                25,
                0.9,
                [np.random.default_rng([11, i]) for i in range(2)],
                g=g[:2],
            )
        ),
        axis=1,
    )
    np.testing.assert_array_equal(torch_takes, batched[:2, :60])


def test_temperature_zero_is_argmax_of_logits() -> None:
    model = _model()
    fast = FastWaveNet.from_model(model)
    prompt = _classes(np.random.default_rng(5), (2, 30), model.config.classes)
    fast.prime(prompt)
    greedy = fast.generate(80, temperature=0.0, uniforms=np.random.default_rng(0))
    fast.prime(prompt)
    logits = fast.logits_teacher_forced(greedy)
    np.testing.assert_array_equal(logits.argmax(axis=2), greedy)
    # a very low temperature samples the argmax too; a high one does not
    fast.prime(prompt)
    cold = fast.generate(80, temperature=1e-4, uniforms=np.random.default_rng(1))
    np.testing.assert_array_equal(cold, greedy)


def test_sampling_follows_the_softmax() -> None:
    model = _model(layers=2, stacks=1)
    fast = FastWaveNet.from_model(model)
    C = model.config.classes
    prompt = np.full((4000, 3), 5, np.int64)
    fast.prime(prompt)
    first = fast.generate(1, temperature=1.5, uniforms=np.random.default_rng(9))[:, 0]
    fast.prime(prompt)
    logits = fast.logits_teacher_forced(np.zeros((4000, 1), np.int64))[0, 0]
    p = np.exp((logits - logits.max()) / 1.5)
    p /= p.sum()
    freq = np.bincount(first, minlength=C) / first.size
    assert np.abs(freq - p).sum() < 0.12  # total variation over 4000 draws


def test_top_k_and_top_p_truncate() -> None:
    model = _model()
    fast = FastWaveNet.from_model(model)
    prompt = np.full((1, 20), 3, np.int64)
    fast.prime(prompt)
    got = fast.generate(1, temperature=1.0, uniforms=np.array([[0.999]]), top_k=1)
    fast.prime(prompt)
    greedy = fast.generate(1, temperature=0.0, uniforms=np.array([[0.5]]))
    assert got[0, 0] == greedy[0, 0]
    for backend in ("numba", "torch"):
        f = FastWaveNet.from_model(model, backend=backend)
        f.prime(np.repeat(prompt, 300, axis=0))
        draws = f.generate(1, temperature=1.0, uniforms=np.random.default_rng(0), top_k=3)
        f.prime(prompt)
        top3 = np.argsort(-f.logits_teacher_forced(np.zeros((1, 1), np.int64))[0, 0])[:3]
        assert set(np.unique(draws)) <= set(top3.tolist())
        assert len(np.unique(draws)) == 3
    # top-p: the smallest set of most likely classes holding >= p of the mass; both backends
    # draw the same classes from the same uniforms
    logits = FastWaveNet.from_model(model)
    logits.prime(prompt)
    p = np.exp(logits.logits_teacher_forced(np.zeros((1, 1), np.int64))[0, 0].astype(np.float64))
    p /= p.sum()
    order = np.argsort(-p)
    nucleus = set(order[: int(np.searchsorted(np.cumsum(p[order]), 0.6)) + 1].tolist())
    takes = {}
    for backend in ("numba", "torch"):
        f = FastWaveNet.from_model(model, backend=backend)
        f.prime(np.repeat(prompt, 400, axis=0))
        takes[backend] = f.generate(1, uniforms=np.random.default_rng(1), top_p=0.6)[:, 0]
    np.testing.assert_array_equal(takes["numba"], takes["torch"])
    assert set(np.unique(takes["numba"]).tolist()) == nucleus
    assert 1 < len(nucleus) < model.config.classes // 2


def test_vocoder_stream_follows_the_models_own_step_by_step_decoding() -> None:
    """Output-aligned vocoding: input silence then each sample, features of the sample made."""
    model = _model(mel_channels=6, seed=3)
    cfg = model.config
    frames = torch.randn(1, 6, 30)
    with torch.no_grad():
        c_up = model.upsample_conditioning(frames)  # [1, 6, 120]
        state = model.incremental_state(1)
        x = torch.tensor([silence_class(cfg.bits)])
        uniforms = np.random.default_rng(5).random(c_up.shape[2])
        want = []
        for t in range(c_up.shape[2]):  # inverse-CDF sampling from the same uniforms
            cdf = torch.softmax(model.step(x, state, c_up[:, :, t]).double(), dim=1).cumsum(1)
            x = torch.searchsorted(cdf, uniforms[t] * cdf[:, -1:], right=True)[:, 0]
            want.append(int(x))
    fast = FastWaveNet.from_model(model)
    chunks = list(
        fast.stream(
            np.full((1, 1), silence_class(cfg.bits)),
            c_up.shape[2],
            25,
            1.0,
            [np.random.default_rng(5)],
            cond_fn=lambda start, n: c_up[:, :, start : start + n],
            pad="zeros",
        )
    )
    assert [c.shape[1] for c in chunks] == [25, 25, 25, 25, 20]
    got = np.concatenate(chunks, axis=1)[0]
    np.testing.assert_array_equal(got, want)
    assert len(set(want)) > 3


def test_cancel_mid_stream_stops_within_one_chunk() -> None:
    model = _model()
    fast = FastWaveNet.from_model(model)
    cancel = threading.Event()
    got = []
    t0 = time.perf_counter()
    for i, chunk in enumerate(
        fast.stream(np.zeros((2, 10), np.int64), 10**7, 100, 1.0, np.random.default_rng(0), cancel)
    ):
        assert chunk.shape == (2, 100)
        got.append(chunk)
        if i == 2:
            cancel.set()
    assert len(got) == 3
    assert time.perf_counter() - t0 < 10


def test_generation_releases_the_gil() -> None:
    """A GUI or audio thread keeps running while a chunk is being generated."""
    fast = FastWaveNet.from_model(_model())
    fast.prime(np.zeros((1, 5), np.int64))
    fast.generate(10)
    done = threading.Event()
    span: list[float] = []

    def work() -> None:
        t0 = time.perf_counter()
        fast.generate(800_000, uniforms=np.random.default_rng(0))
        span.append(time.perf_counter() - t0)
        done.set()

    worker = threading.Thread(target=work)
    ticks = [time.perf_counter()]
    worker.start()
    while not done.is_set():
        time.sleep(0.005)
        ticks.append(time.perf_counter())
    worker.join()
    assert span[0] > 0.3  # long enough to tell a held GIL from a released one
    assert len(ticks) > 10
    assert np.diff(ticks).max() < 0.5 * span[0]


def test_short_prompt_is_padded_with_silence() -> None:
    model = _model()
    cfg = model.config
    fast = FastWaveNet.from_model(model)
    prompt = _classes(np.random.default_rng(6), (1, 7), cfg.classes)
    silence = silence_class(cfg.bits)
    assert silence == 16  # 5-bit mu-law: the class of 0.0 sits in the middle
    nxt = _classes(np.random.default_rng(7), (1, 12), cfg.classes)
    padded = np.concatenate([np.full((1, cfg.receptive_field), silence), prompt, nxt], axis=1)
    with torch.no_grad():
        full = model(torch.as_tensor(padded)).transpose(1, 2).numpy()
    start = cfg.receptive_field + prompt.shape[1] - 1
    fast.prime(prompt)
    got = fast.logits_teacher_forced(nxt)
    np.testing.assert_allclose(got, full[:, start : start + 12], atol=1e-4)
    # pad="zeros" matches the zero-padded parallel forward over the short prompt instead
    fast.prime(prompt, pad="zeros")
    got0 = fast.logits_teacher_forced(nxt)
    with torch.no_grad():
        full0 = model(torch.as_tensor(np.concatenate([prompt, nxt], 1))).transpose(1, 2).numpy()
    np.testing.assert_allclose(got0, full0[:, 6:18], atol=1e-4)
    assert np.abs(got0 - got).max() > 1e-3


def test_bad_arguments_are_clear_errors() -> None:
    model = _model(mel_channels=2)
    fast = FastWaveNet.from_model(model)
    with pytest.raises(ValueError, match="mel-conditioned"):
        fast.prime(np.zeros((1, 5), np.int64))
    fast.prime(np.zeros((1, 5), np.int64), torch.zeros(1, 2, 5))
    with pytest.raises(ValueError, match="mel-conditioned"):
        fast.generate(3)
    with pytest.raises(ValueError, match="uniforms"):
        fast.generate(3, uniforms=np.full((1, 3), 1.5), cond=np.zeros((1, 2, 3), np.float32))
    with pytest.raises(ValueError, match="classes"):
        fast.prime(np.full((1, 5), 99), torch.zeros(1, 2, 5))
    with pytest.raises(RuntimeError, match="prime"):
        FastWaveNet.from_model(_model()).generate(3)
