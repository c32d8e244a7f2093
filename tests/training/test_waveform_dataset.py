"""WaveformDataset: load, hold out, cache, crop; and the shared k-means."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from audiogen_studio.audio import io, synth
from audiogen_studio.models.kmeans import assign, kmeans
from audiogen_studio.training.audio_dataset import TrainingError
from audiogen_studio.training.waveform_dataset import WaveformDataset


def _write(folder: Path, name: str, seconds: float, freq: float, rate: int = 22050) -> Path:
    clip = synth.sine(freq, seconds, rate=rate, amp=0.5)
    return io.save(clip, folder / name)


def test_prepare_resamples_holds_out_and_caches(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    _write(data, "a.wav", 2.0, 440.0)
    _write(data, "b.wav", 1.0, 660.0)
    ds = WaveformDataset.prepare(data, sample_rate=16000, cache_dir=tmp_path / "cache")
    assert ds.valid is not None
    total = ds.train.samples.shape[0] + ds.valid.samples.shape[0]
    assert total == pytest.approx(3.0 * 16000, abs=4)
    assert ds.train_hours * 3600 == pytest.approx(2.7, abs=0.01)
    files = list(ds.files("train"))
    assert len(files) == 2 and files[0].dtype == np.float32
    # a second prepare reads the memory-mapped cache
    again = WaveformDataset.prepare(data, sample_rate=16000, cache_dir=tmp_path / "cache")
    assert isinstance(again.train.samples, np.memmap)
    np.testing.assert_array_equal(np.asarray(again.train.samples), np.asarray(ds.train.samples))
    crops = ds.sample("train", np.random.default_rng(0), 4, 8000)
    assert crops.shape == (4, 8000) and crops.dtype == torch.float32
    assert float(crops.abs().max()) == pytest.approx(0.5, abs=0.02)
    # deterministic for a seeded generator
    again_crops = again.sample("train", np.random.default_rng(0), 4, 8000)
    assert torch.equal(crops, again_crops)


def test_short_files_are_padded_and_missing_data_is_an_error(tmp_path: Path) -> None:
    path = _write(tmp_path, "short.wav", 0.1, 440.0, rate=16000)
    ds = WaveformDataset.prepare(path, sample_rate=16000)
    crops = ds.sample("train", np.random.default_rng(1), 2, 4000)
    assert float(crops[:, 1600:].abs().max()) == 0.0
    with pytest.raises(TrainingError):
        ds.sample("valid", np.random.default_rng(1), 1, 100)
    with pytest.raises(TrainingError):
        WaveformDataset.prepare(tmp_path / "nothing", sample_rate=16000)


def test_kmeans_finds_separated_clusters() -> None:
    g = torch.Generator().manual_seed(0)
    centres = torch.tensor([[0.0, 0.0], [5.0, 5.0], [-5.0, 5.0]])
    x = torch.cat([c + 0.1 * torch.randn(200, 2, generator=g) for c in centres])
    found = kmeans(x, 3, seed=1)
    ids = assign(x, found)
    # every true cluster maps to one found cluster
    for i in range(3):
        assert ids[i * 200 : (i + 1) * 200].unique().numel() == 1
    assert ids.unique().numel() == 3
    # fewer points than k: duplicates instead of failing
    assert kmeans(x[:2], 5).shape == (5, 2)
    with pytest.raises(ValueError):
        kmeans(torch.full((4, 2), float("nan")), 2)
