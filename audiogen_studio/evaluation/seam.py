"""The seam between a prompt and its continuation: clicks and loudness jumps (issue 6 item 4).

A take is the prompt followed by the continuation; the junction is at the prompt's end. Two
local figures are measured at the junction and, for reference, at random points inside the
prompt, so that the junction is judged against the prompt's *own* natural range (speech has
fricatives and onsets that are as bright and abrupt as a small click):

- **click energy**: mean power (dB re full scale) of the signal high-passed above 4 kHz
  (4th-order Butterworth, zero-phase) within ±10 ms of the point. A discontinuity puts
  broadband energy exactly there. Values are floored at the prompt's RMS level − 60 dB, so that
  material with nothing above 4 kHz (a low tone) ranks a junction among ties (50th percentile)
  instead of by inaudible rounding noise.
- **loudness jump**: ``|L_after − L_before|`` (dB), ``L`` the RMS level of the 100 ms after and
  before the point.

Each is reported with its percentile rank among the prompt's points (100: louder than every
point in the prompt). Target: the junction stays within the prompt's natural range (a
percentile ≤ 95, i.e. not above the prompt's own 95th percentile).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from audiogen_studio.evaluation.common import (
    EvaluationError,
    as_mono,
    percentile_of,
    require,
)

CUTOFF_HZ = 4_000.0
CLICK_WINDOW_S = 0.010
LOUDNESS_WINDOW_S = 0.100
POINTS = 500
FLOOR_DB = -120.0
RELATIVE_FLOOR_DB = -60.0  # click energies below the prompt's level + this are all "silent"


@functools.lru_cache(maxsize=8)
def _highpass_sos(rate: int, cutoff: float) -> npt.NDArray[np.float64]:
    signal = require("scipy.signal", "scipy")
    return np.asarray(signal.butter(4, cutoff, "highpass", fs=rate, output="sos"))


def highpass(audio: npt.ArrayLike, rate: int, cutoff: float = CUTOFF_HZ) -> npt.NDArray[np.float64]:
    """Zero-phase 4th-order Butterworth high-pass of ``audio [T]`` above ``cutoff`` Hz."""
    if cutoff >= 0.45 * rate:
        raise EvaluationError(
            f"a {rate} Hz signal has no band above {cutoff:g} Hz to look for clicks in"
        )
    signal = require("scipy.signal", "scipy")
    x = as_mono(audio).astype(np.float64)
    return np.asarray(signal.sosfiltfilt(_highpass_sos(rate, cutoff), x))


def _window_db(
    power_cumsum: npt.NDArray[np.float64], start: npt.NDArray[np.int64], length: int
) -> npt.NDArray[np.float64]:
    """Mean power in dB of ``[start, start + length)`` from a cumulative sum with a leading 0."""
    energy = power_cumsum[start + length] - power_cumsum[start]
    return 10.0 * np.log10(np.maximum(energy / length, 10 ** (FLOOR_DB / 10)))


def _cumsum(x: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    return np.concatenate(([0.0], np.cumsum(x * x)))


def click_energy_db(
    audio: npt.ArrayLike,
    rate: int,
    at: npt.ArrayLike,
    *,
    window: float = CLICK_WINDOW_S,
    cutoff: float = CUTOFF_HZ,
) -> npt.NDArray[np.float64]:
    """High-passed (> ``cutoff``) power in dB within ±``window`` s of each sample index ``at``
    (``[N]`` → ``[N]``; windows are clipped to the signal)."""
    hp = highpass(audio, rate, cutoff)
    w = max(1, round(window * rate))
    points = np.atleast_1d(np.asarray(at, dtype=np.int64))
    start = np.clip(points - w, 0, hp.shape[0] - 1)
    stop = np.clip(points + w, start + 1, hp.shape[0])
    c = _cumsum(hp)
    energy = (c[stop] - c[start]) / (stop - start)
    return 10.0 * np.log10(np.maximum(energy, 10 ** (FLOOR_DB / 10)))


def loudness_jump_db(
    audio: npt.ArrayLike, rate: int, at: npt.ArrayLike, *, window: float = LOUDNESS_WINDOW_S
) -> npt.NDArray[np.float64]:
    """``|L(after) − L(before)|`` in dB at each sample index ``at`` (``[N]`` → ``[N]``), ``L``
    the RMS level over ``window`` s; every point needs a whole window on both sides."""
    x = as_mono(audio).astype(np.float64)
    w = max(1, round(window * rate))
    points = np.atleast_1d(np.asarray(at, dtype=np.int64))
    if np.any(points < w) or np.any(points + w > x.shape[0]):
        raise EvaluationError(f"loudness needs {window * 1000:g} ms on both sides of each point")
    c = _cumsum(x)
    return np.abs(_window_db(c, points, w) - _window_db(c, points - w, w))


@dataclass(frozen=True, slots=True)
class SeamScores:
    """The junction against the prompt's own distribution.

    Attributes:
        junction_seconds: where the continuation starts.
        click_db: high-band power at the junction (dB FS).
        click_percentile: its rank (0–100) among the prompt's points.
        click_prompt_p50_db, click_prompt_p95_db: the prompt's median and 95th percentile.
        loudness_jump_db: level change across the junction.
        loudness_percentile: its rank among the prompt's points.
        loudness_prompt_p50_db, loudness_prompt_p95_db: the prompt's median and 95th percentile.
        points: prompt points sampled for each distribution.
    """

    junction_seconds: float
    click_db: float
    click_percentile: float
    click_prompt_p50_db: float
    click_prompt_p95_db: float
    loudness_jump_db: float
    loudness_percentile: float
    loudness_prompt_p50_db: float
    loudness_prompt_p95_db: float
    points: int


def score_seam(
    take: npt.ArrayLike,
    rate: int,
    junction: int,
    *,
    points: int = POINTS,
    seed: int = 0,
) -> SeamScores:
    """Click energy and loudness jump at sample ``junction`` of ``take [T]`` (prompt followed by
    continuation), ranked among ``points`` random points inside the prompt (seeded).

    Raises:
        EvaluationError: the junction is not inside the take, the prompt is too short to sample
            (it needs 0.6 s), or the rate has no band above 4 kHz.
    """
    x = as_mono(take)
    loud_w = round(LOUDNESS_WINDOW_S * rate)
    click_w = round(CLICK_WINDOW_S * rate)
    if not loud_w <= junction <= x.shape[0] - loud_w:
        raise EvaluationError(
            f"the junction at {junction / rate:.3f} s needs {LOUDNESS_WINDOW_S * 1000:g} ms of "
            f"audio on both sides (take of {x.shape[0] / rate:.3f} s)"
        )
    # prompt points whose windows stay inside the prompt and clear of the junction's window
    lo, hi = loud_w, junction - loud_w - click_w
    if hi - lo < round(0.4 * rate):
        raise EvaluationError(
            f"a prompt of {junction / rate:.2f} s is too short to sample its natural range "
            "(at least 0.6 s)"
        )
    rng = np.random.default_rng(seed)
    at = rng.integers(lo, hi, size=points)
    clicks = click_energy_db(x, rate, np.concatenate((at, [junction])))
    prompt_level = 10.0 * np.log10(
        max(float(np.mean(np.square(x[:junction], dtype=np.float64))), 1e-12)
    )
    clicks = np.maximum(clicks, prompt_level + RELATIVE_FLOOR_DB)
    jumps = loudness_jump_db(x, rate, np.concatenate((at, [junction])))
    click_prompt, click_j = clicks[:-1], float(clicks[-1])
    jump_prompt, jump_j = jumps[:-1], float(jumps[-1])
    return SeamScores(
        junction_seconds=junction / rate,
        click_db=click_j,
        click_percentile=percentile_of(click_j, click_prompt),
        click_prompt_p50_db=float(np.percentile(click_prompt, 50)),
        click_prompt_p95_db=float(np.percentile(click_prompt, 95)),
        loudness_jump_db=jump_j,
        loudness_percentile=percentile_of(jump_j, jump_prompt),
        loudness_prompt_p50_db=float(np.percentile(jump_prompt, 50)),
        loudness_prompt_p95_db=float(np.percentile(jump_prompt, 95)),
        points=points,
    )
