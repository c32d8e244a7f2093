"""Content-addressed FLAC blobs, the embedding and the peak envelope."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest
from library_support import RATE, noise, tone

from audiogen_studio.audio import io
from audiogen_studio.audio.clip import Clip
from audiogen_studio.library import embedding, peaks
from audiogen_studio.library.blobs import BlobError, BlobStore, audio_hash, quantize


def test_flac_round_trip_is_exact_and_decodes_to_its_hash(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    stereo = Clip(rng.uniform(-1.2, 1.2, (2, 4001)).astype(np.float32), 44100)
    store = BlobStore(tmp_path)
    blob = store.put(stereo)
    assert blob.created and blob.path.suffix == ".flac" and blob.hash == audio_hash(stereo)
    back = store.get(blob.hash)
    assert back.rate == 44100 and back.samples.shape == (2, 4001)
    # exactly the 24-bit quantization of the input (values beyond ±1 clipped)
    np.testing.assert_array_equal(quantize(back.samples), quantize(stereo.samples))
    assert np.abs(back.samples - np.clip(stereo.samples, -1, 1)).max() <= 2.0**-23 + 1e-9
    assert audio_hash(back) == blob.hash and store.verify(blob.hash)
    assert io.info(blob.path).subtype == "PCM_24"


def test_identical_audio_is_stored_once(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)
    a = store.put(tone(440))
    b = store.put(tone(440))  # a new clip object with the same samples
    c = store.put(tone(441))
    assert a.hash == b.hash and a.created and not b.created and a.path == b.path
    assert c.hash != a.hash
    assert sorted(store) == sorted({a.hash, c.hash})
    # the address depends on the rate and channel layout too, not only on the bytes
    x = tone(440).samples
    assert audio_hash(Clip(x, 22050)) != a.hash
    assert audio_hash(Clip(np.vstack([x[:, ::2], x[:, 1::2]]), RATE)) != a.hash


def test_verify_detects_damage_and_absence(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)
    blob = store.put(noise(1))
    data = bytearray(blob.path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    blob.path.write_bytes(bytes(data))
    assert not store.verify(blob.hash)
    blob.path.unlink()
    assert not store.verify(blob.hash) and not store.exists(blob.hash)
    with pytest.raises(BlobError):
        store.get(blob.hash)
    with pytest.raises(BlobError, match="not an audio hash"):
        store.path("../../etc/passwd")


def test_sweep_removes_only_old_partial_files(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)
    blob = store.put(noise(2))
    old = blob.path.parent / ".deadbeef.x.partial"
    young = blob.path.parent / ".cafebabe.y.partial"
    old.write_bytes(b"half a file")
    young.write_bytes(b"being written")
    past = time.time() - 7200
    os.utime(old, (past, past))
    assert store.sweep(older_than=3600) == 1
    assert not old.exists() and young.exists() and store.verify(blob.hash)


def test_embedding_is_normalised_and_groups_sounds() -> None:
    a = embedding.embed(tone(440, amp=0.5))
    b = embedding.embed(tone(445, amp=0.1, phase=1.0))  # near pitch, other level and phase
    c = embedding.embed(tone(3000))
    n1 = embedding.embed(noise(1))
    n2 = embedding.embed(noise(2, amp=0.05))
    assert a.shape == (embedding.DIM,) and a.dtype == np.float32
    assert np.linalg.norm(a) == pytest.approx(1.0, abs=1e-5)
    assert a @ b > 0.95 and n1 @ n2 > 0.95
    assert a @ b > a @ c + 0.3 and a @ b > a @ n1 + 0.3 and n1 @ n2 > n1 @ c + 0.3
    silent = embedding.embed(Clip(np.zeros((1, 800), np.float32), RATE))
    assert not silent.any()
    back = embedding.from_bytes(embedding.to_bytes(a))
    np.testing.assert_array_equal(back, a)


def test_embedding_does_not_depend_on_the_sample_rate() -> None:
    t16 = np.arange(RATE) / RATE
    t44 = np.arange(44100) / 44100
    a = embedding.embed_samples(0.3 * np.sin(2 * np.pi * 700 * t16), RATE)
    b = embedding.embed_samples(0.3 * np.sin(2 * np.pi * 700 * t44), 44100)
    other = embedding.embed_samples(0.3 * np.sin(2 * np.pi * 1400 * t44), 44100)
    assert a @ b > 0.95 and a @ b > a @ other + 0.2


def test_peak_envelope_follows_the_audio() -> None:
    x = np.zeros((2, 1000), np.float32)
    x[0, :500] = 0.5  # left channel loud in the first half
    x[1, 750:] = -1.0  # right channel negative in the last quarter
    env = peaks.decode(peaks.encode(x, buckets=4))
    np.testing.assert_allclose(env[1], [0.5, 0.5, 0.0, 0.0], atol=1 / 127)
    np.testing.assert_allclose(env[0], [0.0, 0.0, 0.0, -1.0], atol=1 / 127)
    short = peaks.decode(peaks.encode(np.array([0.25, -0.25], np.float32), buckets=8))
    assert short.shape == (2, 8) and short.max() == pytest.approx(0.25, abs=1 / 127)
    assert peaks.decode(None).shape == (2, 0)


def test_reusing_a_blob_refreshes_its_time(tmp_path: Path) -> None:
    """gc spares unreferenced blobs younger than its grace period; a take that is about to
    reference an old, unreferenced sound again must not lose it to a concurrent gc."""
    store = BlobStore(tmp_path)
    blob = store.put(tone(500))
    past = time.time() - 7200
    os.utime(blob.path, (past, past))
    again = store.put(tone(500))
    assert not again.created and time.time() - blob.path.stat().st_mtime < 60
