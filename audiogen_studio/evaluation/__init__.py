"""Quality evaluation (issue 6 item 4): ``audiogen-studio eval`` and ``benchmarks/quality.py``.

- :mod:`.codec_quality`: PESQ-wb, ESTOI, ViSQOL and log-mel L1 of a codec against the input,
  side by side with Opus at the same and at double the bitrate;
- :mod:`.speech_quality`: speaker similarity (resemblyzer), DNSMOS (speechmos), median pitch;
- :mod:`.music_quality`: key agreement (Krumhansl–Schmuckler + ``mir_eval``), tempo ratio,
  chroma correlation;
- :mod:`.seam`: click energy and loudness jump at the junction, ranked among the prompt's own;
- :mod:`.continuation`: one take scored; :mod:`.held_out`: a bundle on a corpus' test split;
- :mod:`.report`: results → JSON, the issue's targets.

The metric packages are the optional ``[eval]`` extra; they are imported only when a metric
runs, and a missing one is a :class:`MissingExtraError` naming the extra. No Qt.
"""

from __future__ import annotations

from audiogen_studio.evaluation.common import EvaluationError, MissingExtraError

__all__ = ["EvaluationError", "MissingExtraError"]
