"""The start-up warm-up: it loads exactly the kernels a first generation needs, in GIL-friendly
pieces, once per process (the app's generation thread and the CLI run it; the app's order of
warm-up, device probe and preloads is tested in ``tests/app/test_generation_warmup.py``)."""

from __future__ import annotations

import gc
import subprocess
import sys
import threading

import numpy as np
import pytest
import torch

from audiogen_studio.engine import warmup


def test_pieces_run_once_in_order_and_stop_between_pieces() -> None:
    ran: list[str] = []
    steps = tuple((f"test-{name}", lambda n=name: ran.append(n)) for name in "abc")
    stop = threading.Event()
    first = warmup.warm_up(stop, pause=0, steps=steps[:1])
    assert ran == ["a"] and first.complete and [n for n, _ in first.steps] == ["test-a"]
    stop.set()
    stopped = warmup.warm_up(stop, pause=0, steps=steps)
    assert not stopped.complete and ran == ["a"] and not warmup.is_warm(steps)
    report = warmup.warm_up(pause=0, steps=steps)
    assert ran == ["a", "b", "c"] and [n for n, _ in report.steps] == ["test-b", "test-c"]
    assert warmup.is_warm(steps) and warmup.warm_up(pause=0, steps=steps).steps == []

    def broken() -> None:
        raise RuntimeError("no")

    failed = warmup.warm_up(pause=0, steps=(("test-broken", broken),))
    assert not failed.complete and failed.errors == [("test-broken", "RuntimeError: no")]
    assert warmup.warm_up(pause=0, steps=(("test-broken", broken),)).errors == []  # not retried


def test_frozen_allocations_leave_nothing_for_the_collector() -> None:
    frozen = gc.get_freeze_count()
    with warmup.frozen_allocations():
        assert not gc.isenabled()
        made = [[i] for i in range(5000)]  # container objects: tracked by the collector
    assert gc.isenabled()
    assert gc.get_freeze_count() >= frozen + len(made)
    assert gc.get_count()[0] < 700  # nothing pending: resuming starts no collection of them


def test_the_warm_up_loads_the_kernels_a_first_generation_uses() -> None:
    """After the warm-up, generating with a WaveNet and decoding with an LM of other sizes and
    options loads no further numba specialisation: nothing is left to compile or load."""
    from audiogen_studio.engine import lm_fast, wavenet_fast
    from audiogen_studio.engine.api import GenerationRequest
    from audiogen_studio.engine.wavenet_pipeline import WaveNetEngine
    from audiogen_studio.models.checkpoint import round_to_float16_
    from audiogen_studio.models.lm import LMConfig, TokenLM
    from audiogen_studio.models.wavenet import WaveNet, WaveNetConfig

    torch.set_num_threads(1)
    report = warmup.warm_up(pause=0)
    assert report.errors == [] and warmup.is_warm()
    kernels = (wavenet_fast._run_kernel, lm_fast._decode, lm_fast._sync_keys)
    before = [list(k.signatures) for k in kernels]
    assert all(before), "the warm-up did not load every kernel"

    torch.manual_seed(1)
    config = WaveNetConfig(layers=4, stacks=2, residual_channels=32, gate_channels=64,
                           skip_channels=32)  # fmt: skip
    engine = WaveNetEngine(WaveNet(config), device="auto")
    t = np.arange(4000) / 16000
    prompt = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    from audiogen_studio.audio.clip import Clip

    request = GenerationRequest(prompt=Clip(prompt, 16000), seconds=0.01, takes=2, seed=3)
    assert sum(c.frames for c in engine.stream(request, threading.Event())) == 2 * 160
    shipped = WaveNet(config)
    round_to_float16_(shipped)  # as a bundle stored as float16 loads: float16 weight storage
    engine = WaveNetEngine(shipped, device="auto")
    assert engine.fast_single is not None and engine.fast_single.fp16
    one = GenerationRequest(prompt=Clip(prompt, 16000), seconds=0.01, takes=1, seed=3)
    assert sum(c.frames for c in engine.stream(one, threading.Event())) == 160
    lm = TokenLM(LMConfig(vocab_size=40, dim=64, depth=2, heads=4, max_seq_len=64,
                          positions="alibi", norm="layer", mlp="gelu")).eval()  # fmt: skip
    lm_fast.accelerate(lm)
    for _ in range(2):  # float32, then float16 weight storage
        with torch.inference_mode():
            cache = lm.new_cache(2, 32)
            lm.forward_cached(torch.zeros((2, 3), dtype=torch.int64), cache)
            for _ in range(3):
                lm.forward_cached(torch.ones((2, 1), dtype=torch.int64), cache, rows=(4, 20))
        round_to_float16_(lm)
    assert [list(k.signatures) for k in kernels] == before


def test_torch_libraries_load_without_the_import() -> None:
    """In a fresh process: the libraries are mapped, torch is not imported, and importing it
    afterwards works (a ctypes call: the GIL is free while the libraries initialise)."""
    code = (
        "import sys\n"
        "from audiogen_studio.engine import warmup\n"
        "loaded = warmup.preload_torch_libraries()\n"
        "maps = open('/proc/self/maps').read()\n"
        "assert 'torch' not in sys.modules\n"
        "assert 'libtorch.so' in loaded and 'libtorch_cpu.so' in maps, (loaded,)\n"
        "import torch\n"
        "assert float(torch.ones(3).sum()) == 3.0\n"
        "assert warmup.preload_torch_libraries() == []  # torch imported: nothing to do\n"
    )
    if not sys.platform.startswith("linux"):
        pytest.skip("the preload is Linux only")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
