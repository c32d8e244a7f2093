"""Keep a token model's continuation at its prompt's level (the seam's loudness, issue 6 item 4).

An AudioLM continuation's level is whatever the LMs' tokens and the codec's decoder make of it,
and that need not be the prompt's: measured on 32 validation prompts of the 200-min music corpus
(``music`` 0.6.0, 4 s each), the takes came out 3.2 dB below their prompts on average (the real
continuations: 0.3 dB below), 1.7 dB of it the decoder's (it renders the prompts' own last second
1.9 dB softer), and the level jumped by 4.7 dB across the seam (the loudest 100 ms steps of the
prompts themselves: their 82nd percentile).

:class:`LevelFollower` scales each generated window of a take so that the continuation's level
so far (its mean power since the seam) equals the prompt's over its last ``reference_seconds``:
the window's gain is ``L_prompt − L_so_far`` dB, kept within ``±max_db`` and lowered where it
would lift the window's peak above :data:`PEAK_CEILING`. Within a window the gain moves linearly
from the previous window's, so it never steps; where a window is too loud for the previous
window's gain, the gain glides down to what the window allows over its first
:data:`GLIDE_SECONDS`, and a peak within them that the gain would lift past the ceiling is
soft-limited, so the matching never takes a sample to full scale. The first window (with
the lead-in that the take is crossfaded through, the decoder's rendering of the prompt's last
milliseconds) takes its gain whole. As the continuation grows its level estimate settles,
and the gain with it: a long take keeps its own dynamics under a near-constant gain. A
continuation that is still silent (below :data:`QUIET_DB`) is not lifted, and a silent prompt
turns the matching off.

It is automatic gain control with a single, slow-settling target, the same idea as a DAW's
"match loudness", done causally so the audio can stream.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from audiogen_studio.engine.api import GenerationError, read_switch

#: a window's gain never lifts its peak above this (full scale is 1; the headroom above it is
#: where the peaks of a glide are soft-limited)
PEAK_CEILING = 0.9
#: how fast the gain may fall where a window is too loud for the last window's gain
GLIDE_SECONDS = 0.01
#: a continuation quieter than this (dB FS, mean power so far) is not lifted: nothing to match yet
QUIET_DB = -70.0
#: a prompt whose reference level is below this (dB FS) leaves the continuation as it is
SILENT_PROMPT_DB = -80.0
_TINY = 1e-12


@dataclass(frozen=True, slots=True)
class LevelMatchSettings:
    """How a bundle's continuations are matched to their prompt's level.

    Attributes:
        enabled: match at all (off: the audio is the decoder's, unscaled).
        reference_seconds: the prompt's last seconds whose level is the target.
        max_db: the gain stays within ``±max_db`` dB.

    In ``bundle.json`` it is ``generation.level_match``: ``true``/``false``, or an object with
    these keys (``enabled`` defaults to true there).
    """

    enabled: bool = False
    reference_seconds: float = 2.0
    max_db: float = 9.0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.reference_seconds) and 0.1 <= self.reference_seconds <= 60.0):
            raise GenerationError(
                f"level_match.reference_seconds must be 0.1–60, got {self.reference_seconds!r}"
            )
        if not (math.isfinite(self.max_db) and 0.0 < self.max_db <= 40.0):
            raise GenerationError(f"level_match.max_db must be in (0, 40], got {self.max_db!r}")

    @classmethod
    def from_generation(cls, generation: Mapping[str, Any]) -> LevelMatchSettings:
        """The settings of a bundle's ``generation`` block (absent: off).

        Raises:
            GenerationError: a value of the wrong type or out of range, or an unknown key.
        """
        enabled, numbers = read_switch(generation, "level_match", ("reference_seconds", "max_db"))
        return cls(enabled=enabled, **numbers)

    def to_dict(self) -> dict[str, Any]:
        """The ``generation.level_match`` object these settings read back from."""
        return asdict(self)


def _db(power: npt.NDArray[np.float64] | float) -> npt.NDArray[np.float64]:
    return np.asarray(10.0 * np.log10(np.maximum(power, _TINY)), dtype=np.float64)


class LevelFollower:
    """The gain of ``rows`` continuations of one prompt, window by window (module doc).

    Args:
        prompt: the prompt ``[T]`` at the model's rate (mono).
        rows: continuations generated together (takes × candidates).
        rate: sample rate.
        settings: the matching (must be enabled).
    """

    def __init__(
        self,
        prompt: npt.NDArray[np.floating[Any]],
        rows: int,
        rate: int,
        settings: LevelMatchSettings,
    ) -> None:
        tail = np.asarray(prompt, dtype=np.float64).reshape(-1)
        tail = tail[-max(1, round(settings.reference_seconds * rate)) :]
        self.target_db = float(_db(float(np.mean(tail * tail)) if tail.size else 0.0))
        self.active = self.target_db > SILENT_PROMPT_DB
        self.max_db = float(settings.max_db)
        self.rate = int(rate)
        self._energy = np.zeros(rows, dtype=np.float64)  # sum of squares so far, per row
        self._count = 0  # samples so far (the same for every row)
        self._gain: npt.NDArray[np.float64] | None = None  # linear gain at the last sample

    @property
    def gain_db(self) -> npt.NDArray[np.float64] | None:
        """Each row's gain (dB) at the end of the last window, ``[R]`` (``None`` before one)."""
        return None if self._gain is None else 20.0 * np.log10(self._gain)

    def apply(
        self, wave: npt.NDArray[np.float32], lead_in: npt.NDArray[np.float32] | None = None
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32] | None]:
        """Scale the next window ``wave [R, n]`` (and, on the first window, the ``lead_in
        [R, m]`` before it); returns both, scaled (new arrays)."""
        if not self.active or wave.shape[1] == 0:
            return wave, lead_in
        w = wave.astype(np.float64)
        self._energy += np.sum(w * w, axis=1)
        self._count += w.shape[1]
        so_far = _db(self._energy / self._count)
        gain_db = np.clip(self.target_db - so_far, -self.max_db, self.max_db)
        gain_db = np.where(so_far < QUIET_DB, np.minimum(gain_db, 0.0), gain_db)
        gain = 10.0 ** (gain_db / 20.0)
        peak = np.max(np.abs(w), axis=1)
        if lead_in is not None and lead_in.shape[1]:
            peak = np.maximum(peak, np.max(np.abs(lead_in), axis=1))
        # the most this window may be lifted: up to the ceiling, and never lowered by it
        lift = np.maximum(1.0, PEAK_CEILING / np.maximum(peak, _TINY))[:, None]
        gain = np.minimum(gain, lift[:, 0])
        if self._gain is None:
            curve = np.repeat(gain[:, None], w.shape[1], axis=1)
            if lead_in is not None:
                lead_in = (lead_in.astype(np.float64) * gain[:, None]).astype(np.float32)
        else:  # from the last gain to this one over the window, reaching it at its last sample
            t = np.arange(1, w.shape[1] + 1, dtype=np.float64) / w.shape[1]
            curve = self._gain[:, None] + (gain - self._gain)[:, None] * t[None, :]
            # a window too loud for the last gain: glide down to what it allows, not in a step
            glide = max(1, min(w.shape[1], round(GLIDE_SECONDS * self.rate)))
            fade = np.zeros(w.shape[1])
            fade[:glide] = np.linspace(1.0, 0.0, glide, endpoint=False)
            ceiling = lift + np.maximum(self._gain[:, None] - lift, 0.0) * fade[None, :]
            curve = np.minimum(curve, ceiling)
        self._gain = gain
        y = w * curve
        # a peak within a glide that the gain would lift past the ceiling is soft-limited:
        # what the matching adds never takes a sample to full scale
        over = (np.abs(y) > PEAK_CEILING) & (curve > 1.0)
        if over.any():
            knee = 1.0 - PEAK_CEILING
            soft = PEAK_CEILING + knee * np.tanh((np.abs(y[over]) - PEAK_CEILING) / knee)
            soft = np.minimum(soft, 0.999)  # tanh rounds to 1 far above the knee
            y[over] = np.sign(y[over]) * np.maximum(np.abs(w[over]), soft)
        return y.astype(np.float32), lead_in

    def keep(self, rows: npt.NDArray[np.int64]) -> None:
        """Go on with ``rows`` only (the kept candidates, in order)."""
        self._energy = self._energy[rows]
        if self._gain is not None:
            self._gain = self._gain[rows]
