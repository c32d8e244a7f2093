"""RingBuffer: unit tests, a hypothesis state machine against a deque model, two-thread stress.

None of these need an audio device (or sounddevice).
"""

from __future__ import annotations

import random
import sys
import threading
import time
from collections import deque

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from audiogen_studio.audio.ringbuffer import RingBuffer, RingBufferClosedError


def ramp(start: int, n: int, channels: int) -> np.ndarray:
    """Frames [n, C] whose values identify them: frame i, channel c holds i + c / 8."""
    base = np.arange(start, start + n, dtype=np.float32)[:, None]
    return base + (np.arange(channels, dtype=np.float32) / 8)[None, :]


# -- construction and validation -----------------------------------------------------------------


def test_storage_is_preallocated_frames_major() -> None:
    ring = RingBuffer(100, 3)
    assert ring.capacity == 100 and ring.channels == 3
    assert ring._buf.shape == (100, 3) and ring._buf.dtype == np.float32
    assert (ring.write_pos, ring.read_pos, ring.available(), ring.space()) == (0, 0, 0, 100)


@pytest.mark.parametrize(
    ("capacity", "channels", "error", "match"),
    [
        (0, 1, ValueError, "capacity"),
        (-5, 1, ValueError, "capacity"),
        (10, 0, ValueError, "channels"),
        (10, 65, ValueError, "channels"),
        (1.5, 1, TypeError, "capacity"),
        (True, 1, TypeError, "capacity"),
        (10, "2", TypeError, "channels"),
    ],
)
def test_constructor_rejects_bad_arguments(
    capacity: object, channels: object, error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        RingBuffer(capacity, channels)  # type: ignore[arg-type]


def test_for_duration() -> None:
    assert RingBuffer.for_duration(0.5, 48_000, 2).capacity == 24_000
    assert RingBuffer.for_duration(1e-9, 8_000, 1).capacity == 1
    with pytest.raises(ValueError, match="seconds"):
        RingBuffer.for_duration(0, 48_000, 2)


def test_write_rejects_wrong_shapes_and_dtypes() -> None:
    ring = RingBuffer(16, 2)
    with pytest.raises(ValueError, match="write_clip_samples"):
        ring.write(np.zeros((2, 5), np.float32))  # a [C, T] clip passed to write()
    with pytest.raises(ValueError, match="mono"):
        ring.write(np.zeros(5, np.float32))
    with pytest.raises(ValueError, match="shape"):
        ring.write(np.zeros((1, 5, 2), np.float32))
    with pytest.raises(TypeError, match="float"):
        ring.write(np.zeros((5, 2), np.int16))
    with pytest.raises(ValueError, match="channels"):
        ring.write_clip_samples(np.zeros((3, 5), np.float32))
    assert ring.write_pos == 0  # nothing was written by the failed calls


def test_read_into_rejects_wrong_buffers() -> None:
    ring = RingBuffer(16, 2)
    with pytest.raises(TypeError, match="float32"):
        ring.read_into(np.zeros((4, 2), np.float64))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"\[frames, 2\]"):
        ring.read_into(np.zeros((4, 3), np.float32))
    with pytest.raises(ValueError, match=r"\[frames, 2\]"):
        ring.read_into(np.zeros(4, np.float32))


# -- behaviour ----------------------------------------------------------------------------------


def test_write_never_overwrites_unread_data() -> None:
    ring = RingBuffer(10, 2)
    assert ring.write(ramp(0, 7, 2)) == 7
    assert ring.write(ramp(7, 7, 2)) == 3  # only 3 fit
    assert ring.write(ramp(10, 4, 2)) == 0  # full
    assert (ring.available(), ring.space(), ring.write_pos) == (10, 0, 10)
    out = np.empty((10, 2), np.float32)
    assert ring.read_into(out) == 10
    np.testing.assert_array_equal(out, ramp(0, 10, 2))


def test_wrap_around_keeps_order_and_absolute_positions() -> None:
    ring = RingBuffer(8, 1)
    out = np.empty((5, 1), np.float32)
    pos = 0
    for _ in range(20):  # 100 frames through an 8-frame ring
        assert ring.write(ramp(pos, 5, 1)) == 5
        assert ring.read_into(out) == 5
        np.testing.assert_array_equal(out, ramp(pos, 5, 1))
        pos += 5
    assert ring.write_pos == ring.read_pos == 100
    assert ring.underruns == 0


def test_mono_ring_accepts_1d_arrays_and_converts_float64() -> None:
    ring = RingBuffer(8, 1)
    assert ring.write(np.array([0.5, -0.25, 1.0 / 3.0])) == 3  # float64 in
    out = np.empty((3, 1), np.float32)
    ring.read_into(out)
    np.testing.assert_array_equal(out[:, 0], np.array([0.5, -0.25, 1 / 3], np.float32))


def test_write_clip_samples_takes_channels_first() -> None:
    ring = RingBuffer(32, 2)
    clip = ramp(0, 20, 2).T.copy()  # [C, T]
    assert ring.write_clip_samples(clip) == 20
    np.testing.assert_array_equal(ring.read(), ramp(0, 20, 2))


def test_short_read_zero_fills_and_counts_an_underrun() -> None:
    ring = RingBuffer(16, 2)
    ring.write(ramp(0, 3, 2))
    out = np.full((8, 2), 7.0, np.float32)
    assert ring.read_into(out) == 3
    np.testing.assert_array_equal(out[:3], ramp(0, 3, 2))
    assert not out[3:].any()
    assert (ring.underruns, ring.underrun_frames, ring.read_pos) == (1, 5, 3)
    assert ring.read_into(out) == 0  # empty: a second underrun, all zeros
    assert not out.any()
    assert (ring.underruns, ring.underrun_frames) == (2, 13)


def test_reading_past_the_end_after_close_is_not_an_underrun() -> None:
    ring = RingBuffer(16, 1)
    ring.write(ramp(0, 5, 1))
    ring.close()
    assert ring.closed and ring.finished and not ring.drained
    out = np.full((8, 1), 9.0, np.float32)
    assert ring.read_into(out) == 5
    assert not out[5:].any()
    assert ring.drained
    assert ring.read_into(out) == 0
    assert (ring.underruns, ring.underrun_frames) == (0, 0)
    with pytest.raises(RingBufferClosedError):
        ring.write(ramp(5, 1, 1))


def test_read_takes_what_is_available_without_counting_underruns() -> None:
    ring = RingBuffer(8, 2)
    ring.write(ramp(0, 6, 2))
    np.testing.assert_array_equal(ring.read(4), ramp(0, 4, 2))
    np.testing.assert_array_equal(ring.read(), ramp(4, 2, 2))
    assert ring.read().shape == (0, 2)
    assert ring.underruns == 0
    with pytest.raises(ValueError):
        ring.read(-1)


def test_reset_empties_the_ring_and_counters() -> None:
    ring = RingBuffer(8, 1)
    ring.write(ramp(0, 4, 1))
    ring.read_into(np.empty((6, 1), np.float32))
    ring.close()
    ring.reset()
    assert (ring.write_pos, ring.read_pos, ring.underruns, ring.underrun_frames) == (0, 0, 0, 0)
    assert not ring.closed and ring.space() == 8
    assert ring.write(ramp(100, 8, 1)) == 8
    np.testing.assert_array_equal(ring.read(), ramp(100, 8, 1))


def test_read_into_allocates_no_array_data() -> None:
    ring = RingBuffer(64, 2)
    out = np.empty((48, 2), np.float32)
    ring.write(ramp(0, 40, 2))
    ring.read_into(out)  # warm up
    ring.write(ramp(40, 60, 2))  # wraps
    before = sys.getallocatedblocks()
    for _ in range(200):
        ring.read_into(out)
    # No per-call leak or growing allocation (an array copy per call would be 200 blocks+).
    assert sys.getallocatedblocks() - before < 50


def test_blocking_write_waits_for_the_consumer() -> None:
    ring = RingBuffer(100, 1)
    data = ramp(0, 1000, 1)
    got: list[np.ndarray] = []

    def consume() -> None:
        out = np.empty((37, 1), np.float32)
        while not ring.drained:
            k = ring.read_into(out)
            got.append(out[:k].copy())
            time.sleep(0.0005)

    t = threading.Thread(target=consume)
    t.start()
    assert ring.write(data, block=True, timeout=10) == 1000
    ring.close()
    t.join(10)
    np.testing.assert_array_equal(np.concatenate(got), data)


def test_blocking_write_times_out_with_a_partial_count() -> None:
    ring = RingBuffer(10, 1)
    t0 = time.monotonic()
    assert ring.write(ramp(0, 25, 1), block=True, timeout=0.05) == 10
    assert 0.04 <= time.monotonic() - t0 < 1.0


# -- property tests -----------------------------------------------------------------------------


class RingMachine(RuleBasedStateMachine):
    """Random writes/reads of random sizes behave like an unbounded-but-capped deque."""

    def __init__(self) -> None:
        super().__init__()
        self.ring: RingBuffer | None = None
        self.model: deque[tuple[float, ...]] = deque()
        self.next_frame = 0
        self.capacity = 0
        self.channels = 0
        self.underruns = 0
        self.underrun_frames = 0
        self.written = 0
        self.read = 0
        self.closed = False

    @precondition(lambda self: self.ring is None)
    @rule(capacity=st.integers(1, 40), channels=st.integers(1, 3))
    def create(self, capacity: int, channels: int) -> None:
        self.ring = RingBuffer(capacity, channels)
        self.capacity, self.channels = capacity, channels

    @precondition(lambda self: self.ring is not None and not self.closed)
    @rule(n=st.integers(0, 60), clip_layout=st.booleans())
    def write(self, n: int, clip_layout: bool) -> None:
        assert self.ring is not None
        frames = ramp(self.next_frame, n, self.channels)
        k = self.ring.write_clip_samples(frames.T) if clip_layout else self.ring.write(frames)
        expected = min(n, self.capacity - len(self.model))
        assert k == expected
        for row in frames[:k]:
            self.model.append(tuple(row))
        self.next_frame += k  # unwritten frames are offered again next time
        self.written += k

    @precondition(lambda self: self.ring is not None)
    @rule(n=st.integers(0, 60))
    def read_into(self, n: int) -> None:
        assert self.ring is not None
        out = np.full((n, self.channels), np.nan, np.float32)
        k = self.ring.read_into(out)
        expected = [self.model.popleft() for _ in range(min(n, len(self.model)))]
        assert k == len(expected)
        assert [tuple(r) for r in out[:k]] == expected
        assert not out[k:].any()  # zero fill (NaN would fail too)
        if k < n and not self.closed:
            self.underruns += 1
            self.underrun_frames += n - k
        self.read += k

    @precondition(lambda self: self.ring is not None)
    @rule(n=st.integers(0, 60))
    def read(self, n: int) -> None:
        assert self.ring is not None
        got = self.ring.read(n)
        expected = [self.model.popleft() for _ in range(min(n, len(self.model)))]
        assert [tuple(r) for r in got] == expected
        self.read += len(expected)

    @precondition(lambda self: self.ring is not None and not self.closed)
    @rule()
    def close(self) -> None:
        assert self.ring is not None
        self.ring.close()
        self.closed = True

    @invariant()
    def counters_agree(self) -> None:
        ring = self.ring
        if ring is None:
            return
        assert ring.write_pos == self.written
        assert ring.read_pos == self.read
        assert ring.available() == len(self.model) == ring.write_pos - ring.read_pos
        assert ring.space() == self.capacity - len(self.model)
        assert 0 <= ring.available() <= ring.capacity
        assert (ring.underruns, ring.underrun_frames) == (self.underruns, self.underrun_frames)
        assert ring.drained == (self.closed and not self.model)


RingMachine.TestCase.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)
TestRingMachine = RingMachine.TestCase


@settings(max_examples=100, deadline=None)
@given(
    capacity=st.integers(1, 64),
    chunks=st.lists(st.tuples(st.integers(0, 80), st.integers(0, 80)), max_size=40),
)
def test_data_is_never_lost_or_duplicated(capacity: int, chunks: list[tuple[int, int]]) -> None:
    """Whatever the write/read sizes, the frames read are exactly the frames written, in order."""
    ring = RingBuffer(capacity, 2)
    pos = 0
    got = []
    for w, r in chunks:
        pos += ring.write(ramp(pos, w, 2))
        out = np.empty((r, 2), np.float32)
        k = ring.read_into(out)
        got.append(out[:k].copy())
    ring.close()
    got.append(ring.read())
    result = np.concatenate(got) if got else np.zeros((0, 2), np.float32)
    np.testing.assert_array_equal(result, ramp(0, pos, 2))
    assert ring.write_pos == ring.read_pos == pos


# -- two threads ---------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [1, 2])
def test_two_thread_stress(seed: int) -> None:
    """A producer writes a ramp in random chunks, a consumer reads in random sizes.

    The real frames read, concatenated, equal the ramp exactly; the zero-filled gaps are exactly
    the counted underruns (up to the one read that may straddle close()).
    """
    total, capacity, channels = 120_000, 1_000, 2
    ring = RingBuffer(capacity, channels)
    data = ramp(0, total, channels)
    data[:, 1] *= -1  # channels must not get swapped
    errors: list[BaseException] = []

    def produce() -> None:
        try:
            rng = random.Random(seed)
            pos = 0
            while pos < total:
                n = rng.randint(1, 700)
                pos += ring.write(data[pos : pos + n])
                if rng.random() < 0.05:
                    time.sleep(0.001)  # let the consumer run dry now and then
            ring.close()
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    rng = random.Random(seed + 100)
    buffers = {n: np.empty((n, channels), np.float32) for n in range(1, 513)}
    real: list[np.ndarray] = []
    definite_underruns = ambiguous = definite_gap = ambiguous_gap = 0
    reads = 0
    producer = threading.Thread(target=produce)
    producer.start()
    deadline = time.monotonic() + 30
    while not ring.drained and time.monotonic() < deadline:
        out = buffers[rng.randint(1, 512)]
        out.fill(np.nan)
        closed_before = ring.closed
        k = ring.read_into(out)
        closed_after = ring.closed
        reads += 1
        real.append(out[:k].copy())
        assert not out[k:].any(), "the missing tail must be zeros"
        if k < len(out) and not closed_before:
            if closed_after:  # close() may have landed before or after the snapshot
                ambiguous += 1
                ambiguous_gap += len(out) - k
            else:
                definite_underruns += 1
                definite_gap += len(out) - k
        if rng.random() < 0.05:
            time.sleep(0.0005)
    producer.join(10)
    assert not errors
    assert ring.drained, "consumer did not finish in time"
    np.testing.assert_array_equal(np.concatenate(real), data)
    assert ring.write_pos == ring.read_pos == total
    assert ambiguous <= 1
    assert definite_underruns <= ring.underruns <= definite_underruns + ambiguous
    assert definite_gap <= ring.underrun_frames <= definite_gap + ambiguous_gap
    assert ring.underruns > 0, "the test should have exercised underruns"
    assert reads > total // 512
