"""Fixtures for the take library tests: a fresh library per test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from audiogen_studio.library import TakeLibrary


@pytest.fixture
def library(tmp_path: Path) -> Iterator[TakeLibrary]:
    """An empty library in ``tmp_path/lib`` (audio not fsynced: tests need no power-cut
    durability, and fsync is slow on shared CI disks)."""
    lib = TakeLibrary(tmp_path / "lib", sync_audio=False)
    yield lib
    lib.close()
