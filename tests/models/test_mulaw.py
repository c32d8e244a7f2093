"""μ-law companding: exact class round trip, bounded sample error, numpy and torch agree."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from audiogen_studio.models.mulaw import mulaw_decode, mulaw_encode, silence_class


@pytest.mark.parametrize("bits", [2, 8, 10, 16])
def test_classes_round_trip_exactly(bits: int) -> None:
    classes = np.arange(1 << bits, dtype=np.int64)
    decoded = mulaw_decode(classes, bits)
    assert decoded.dtype == np.float32
    assert decoded.min() == pytest.approx(-1.0) and decoded.max() == pytest.approx(1.0)
    assert np.all(np.diff(decoded) > 0), "decoding must be strictly increasing"
    np.testing.assert_array_equal(mulaw_encode(decoded, bits), classes)
    t = torch.from_numpy(classes)
    t_decoded = mulaw_decode(t, bits)
    assert t_decoded.dtype == torch.float32
    assert torch.equal(mulaw_encode(t_decoded, bits), t)


def test_known_values_8_bit() -> None:
    assert silence_class(8) == 128
    assert mulaw_encode(np.array([0.0]))[0] == 128
    assert mulaw_encode(np.array([-1.0, 1.0])).tolist() == [0, 255]
    # out-of-range input is clipped, never wraps
    assert mulaw_encode(np.array([-7.0, 3.0])).tolist() == [0, 255]
    assert mulaw_encode(torch.tensor([-7.0, 0.0, 3.0])).tolist() == [0, 128, 255]
    # small amplitudes get fine steps: 0.01 is many classes away from silence
    assert int(mulaw_encode(np.array([0.01]))[0]) - 128 >= 20


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(-1.0, 1.0, allow_nan=False, width=32), min_size=1, max_size=64))
def test_sample_error_is_half_a_companded_step(values: list[float]) -> None:
    x = np.asarray(values, dtype=np.float32)
    mu = 255
    y = np.sign(x) * np.log1p(mu * np.abs(x)) / math.log1p(mu)
    x_hat = mulaw_decode(mulaw_encode(x))
    y_hat = np.sign(x_hat) * np.log1p(mu * np.abs(x_hat)) / math.log1p(mu)
    assert np.all(np.abs(y - y_hat) <= 1.0 / mu + 1e-6)  # half of the step 2 / mu
    # torch gives the same classes as numpy
    assert mulaw_encode(torch.from_numpy(x)).tolist() == mulaw_encode(x).tolist()


def test_shapes_and_devices_are_kept() -> None:
    x = torch.linspace(-1, 1, 24).reshape(2, 3, 4)
    c = mulaw_encode(x)
    assert c.shape == (2, 3, 4) and c.dtype == torch.int64
    assert mulaw_decode(c).shape == (2, 3, 4)
    with pytest.raises(ValueError, match="bits"):
        mulaw_encode(x, bits=1)
