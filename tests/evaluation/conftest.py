"""Fixtures of the evaluation tests.

Every metric test needs the optional ``[eval]`` extra; each test module skips itself with
``pytest.importorskip`` when a package of the extra is absent (CI installs it). Speech comes
from espeak-ng (installed by scripts/setup.sh); without it the speech tests skip.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator

import numpy as np
import numpy.typing as npt
import pytest
import torch
from eval_signals import espeak


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def say() -> Callable[..., npt.NDArray[np.float32]]:
    """``say(text, voice="en-us+m3", pitch=50, speed=160)`` → float32 ``[T]`` at 16 kHz."""
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed (scripts/setup.sh installs it)")
    return espeak
