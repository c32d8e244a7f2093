"""Token layouts of AudioLM's three stages (Borsos et al. 2022, §4.2 and Fig. 2).

Semantic tokens ``s`` (``K_s`` ids at ``semantic_rate`` Hz), and acoustic tokens of a codec with
``Q = Q_c + Q_f`` quantizers of ``K_c`` codes at ``acoustic_rate`` Hz (an integer multiple
``ratio`` of the semantic rate). Each stage is a decoder-only LM over one flat vocabulary:

- **semantic** ``p(s_t | s_<t)``: ids ``0 .. K_s - 1``.
- **coarse** ``p(c_t | s_≤t, c_<t)``: groups of ``1 + ratio·Q_c`` ids, one per semantic token
  ``t``: the semantic id, then the first ``Q_c`` quantizers of its ``ratio`` codec frames
  (frame ``f``, quantizer ``q``, code ``k`` is ``K_s + 1 + q·K_c + k``). Vocabulary
  ``K_s + 1 + Q_c·K_c`` (id ``K_s`` is a reserved separator).
- **fine** ``p(f_t | c_≤t, f_<t)``: groups of ``Q`` ids, one per codec frame: its coarse codes
  (``q·K_c + k``), then its fine codes (``Q_c·K_c + 1 + q·K_c + k``). Vocabulary
  ``(Q_c + Q_f)·K_c + 1`` (id ``Q_c·K_c`` is reserved).

The paper puts a whole window of conditioning tokens before the tokens it conditions. We
interleave them per frame instead, because with the small CPU-trained LMs here the windowed
layout let the acoustic LMs drift away from their conditioning: free-running coarse accuracy
fell to 8 % at note onsets although teacher-forced accuracy was 98 % (a four-note riff, tiny
LMs, 400 steps; see tests/engine/test_audiolm_end_to_end.py). Interleaving puts each frame's
conditioning right before it, needs no alignment across a variable-length prefix, and lets
every stage run one frame behind the one before it, which is what streaming wants. It gives up
the coarse stage's look-ahead over future semantic tokens.

Generation restricts every sampled position to its quantizer's id range
(:meth:`TokenLayout.coarse_range`, :meth:`TokenLayout.fine_range`), so sampled ids always decode.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch

__all__ = ["TokenLayout"]


@dataclass(frozen=True)
class TokenLayout:
    """Vocabulary arithmetic shared by the LM trainer and the continuation engine."""

    semantic_vocab: int
    codebook_size: int
    coarse_quantizers: int
    fine_quantizers: int
    semantic_rate: float
    acoustic_rate: float

    def __post_init__(self) -> None:
        if self.semantic_vocab < 1 or self.codebook_size < 1:
            raise ValueError("vocabulary sizes must be positive")
        if self.coarse_quantizers < 1 or self.fine_quantizers < 0:
            raise ValueError("need at least one coarse quantizer and no negative fine count")
        ratio = self.acoustic_rate / self.semantic_rate
        if abs(ratio - round(ratio)) > 1e-6 or round(ratio) < 1:
            raise ValueError(
                f"the codec frame rate ({self.acoustic_rate} Hz) must be an integer multiple "
                f"of the semantic token rate ({self.semantic_rate} Hz)"
            )

    # --- sizes -------------------------------------------------------------------------------

    @property
    def ratio(self) -> int:
        """Codec frames per semantic token."""
        return round(self.acoustic_rate / self.semantic_rate)

    @property
    def quantizers(self) -> int:
        """All codec quantizers used (coarse + fine)."""
        return self.coarse_quantizers + self.fine_quantizers

    @property
    def coarse_sep(self) -> int:
        """Separator between semantic and coarse ids in the coarse LM."""
        return self.semantic_vocab

    @property
    def coarse_vocab(self) -> int:
        """Vocabulary of the coarse LM."""
        return self.semantic_vocab + 1 + self.coarse_quantizers * self.codebook_size

    @property
    def fine_sep(self) -> int:
        """Separator between coarse and fine ids in the fine LM."""
        return self.coarse_quantizers * self.codebook_size

    @property
    def fine_vocab(self) -> int:
        """Vocabulary of the fine LM."""
        return self.quantizers * self.codebook_size + 1

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TokenLayout:
        """Rebuild from :meth:`to_dict` output."""
        return cls(
            semantic_vocab=int(data["semantic_vocab"]),
            codebook_size=int(data["codebook_size"]),
            coarse_quantizers=int(data["coarse_quantizers"]),
            fine_quantizers=int(data["fine_quantizers"]),
            semantic_rate=float(data["semantic_rate"]),
            acoustic_rate=float(data["acoustic_rate"]),
        )

    # --- id ranges ---------------------------------------------------------------------------

    def coarse_range(self, q: int) -> tuple[int, int]:
        """``[lo, hi)`` of coarse-LM ids of quantizer ``q`` (``0 <= q < Q_c``)."""
        lo = self.semantic_vocab + 1 + q * self.codebook_size
        return lo, lo + self.codebook_size

    def fine_range(self, q: int) -> tuple[int, int]:
        """``[lo, hi)`` of fine-LM ids of fine quantizer ``q`` (``0 <= q < Q_f``)."""
        lo = self.fine_sep + 1 + q * self.codebook_size
        return lo, lo + self.codebook_size

    # --- flattening ---------------------------------------------------------------------------

    def _flatten(self, codes: torch.Tensor, offset: int) -> torch.Tensor:
        """``codes [B, q, F]`` → ids ``[B, F·q]`` frame-major, quantizer ``j`` offset by
        ``offset + j·K_c``."""
        b, q, f = codes.shape
        shift = offset + torch.arange(q, device=codes.device) * self.codebook_size
        return (codes.long() + shift[None, :, None]).transpose(1, 2).reshape(b, f * q)

    def _unflatten(self, ids: torch.Tensor, q: int, offset: int) -> torch.Tensor:
        """Inverse of :meth:`_flatten`: ids ``[B, F·q]`` → codes ``[B, q, F]``."""
        b, n = ids.shape
        if n % q:
            raise ValueError(f"{n} ids are not whole frames of {q} quantizers")
        shift = offset + torch.arange(q, device=ids.device) * self.codebook_size
        codes = ids.long().reshape(b, n // q, q) - shift[None, None, :]
        if bool((codes < 0).any()) or bool((codes >= self.codebook_size).any()):
            raise ValueError("ids outside their quantizer's range")
        return codes.transpose(1, 2)

    def coarse_ids(self, coarse: torch.Tensor) -> torch.Tensor:
        """Coarse codes ``[B, Q_c, F]`` → coarse-LM ids ``[B, F·Q_c]``."""
        return self._flatten(coarse, self.semantic_vocab + 1)

    def coarse_codes(self, ids: torch.Tensor) -> torch.Tensor:
        """Coarse-LM ids ``[B, F·Q_c]`` → codes ``[B, Q_c, F]``."""
        return self._unflatten(ids, self.coarse_quantizers, self.semantic_vocab + 1)

    def fine_context_ids(self, coarse: torch.Tensor) -> torch.Tensor:
        """Coarse codes ``[B, Q_c, F]`` as the fine LM's conditioning ids ``[B, F·Q_c]``."""
        return self._flatten(coarse, 0)

    def fine_ids(self, fine: torch.Tensor) -> torch.Tensor:
        """Fine codes ``[B, Q_f, F]`` → fine-LM ids ``[B, F·Q_f]``."""
        return self._flatten(fine, self.fine_sep + 1)

    def fine_codes(self, ids: torch.Tensor) -> torch.Tensor:
        """Fine-LM ids ``[B, F·Q_f]`` → codes ``[B, Q_f, F]``."""
        return self._unflatten(ids, self.fine_quantizers, self.fine_sep + 1)

    # --- group sizes ---------------------------------------------------------------------------

    @property
    def coarse_group(self) -> int:
        """Ids per semantic token in the coarse sequence: ``1 + ratio·Q_c``."""
        return 1 + self.ratio * self.coarse_quantizers

    @property
    def fine_group(self) -> int:
        """Ids per codec frame in the fine sequence: ``Q_c + Q_f``."""
        return self.quantizers

    # --- whole training sequences ---------------------------------------------------------------

    def coarse_sequence(
        self, semantic: torch.Tensor, coarse: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Interleaved ``[s_0, c(0..r-1), s_1, ...]`` ids ``[B, S·(1 + r·Q_c)]`` for aligned
        ``semantic [B, S]`` and ``coarse [B, Q_c, S·r]``, and a bool ``[S·(1 + r·Q_c)]`` mask
        of the positions that are coarse (the ones the LM is trained to predict)."""
        b, n = semantic.shape
        ids = self.coarse_ids(coarse).reshape(b, n, -1)  # [B, S, r·Q_c]
        seq = torch.cat([semantic.long()[:, :, None], ids], dim=2).reshape(b, -1)
        mask = torch.ones(n, self.coarse_group, dtype=torch.bool, device=semantic.device)
        mask[:, 0] = False
        return seq, mask.reshape(-1)

    def fine_sequence(
        self, coarse: torch.Tensor, fine: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Interleaved ``[coarse(f), fine(f)]`` per frame ``[B, F·Q]`` for ``coarse [B, Q_c, F]``
        and ``fine [B, Q_f, F]``, and the ``[F·Q]`` mask of the fine positions."""
        b, _, f = coarse.shape
        c = self.fine_context_ids(coarse).reshape(b, f, -1)  # [B, F, Q_c]
        x = self.fine_ids(fine).reshape(b, f, -1)  # [B, F, Q_f]
        seq = torch.cat([c, x], dim=2).reshape(b, -1)
        mask = torch.zeros(f, self.fine_group, dtype=torch.bool, device=coarse.device)
        mask[:, self.coarse_quantizers :] = True
        return seq, mask.reshape(-1)

    def stage_sequence(
        self, stage: str, semantic: torch.Tensor, acoustic: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The sequence ``[B, L]`` stage ``stage`` (``semantic`` / ``coarse`` / ``fine``) is
        trained on for aligned ``semantic [B, S]`` and ``acoustic [B, Q, S·ratio]`` (at least
        the stage's quantizers), and the bool ``[L]`` mask of the positions it predicts (every
        one for semantic; the coarse / fine ids of the others)."""
        if stage == "semantic":
            return semantic.long(), torch.ones(
                semantic.shape[1], dtype=torch.bool, device=semantic.device
            )
        qc, qf = self.coarse_quantizers, self.fine_quantizers
        if stage == "coarse":
            return self.coarse_sequence(semantic, acoustic[:, :qc])
        if stage == "fine":
            return self.fine_sequence(acoustic[:, :qc], acoustic[:, qc : qc + qf])
        raise ValueError(f"unknown stage {stage!r}: use semantic, coarse or fine")

    def stage_spans(self, stage: str, length: int) -> list[tuple[int, int] | None]:
        """Per position of a ``stage`` sequence of ``length`` ids that starts on a group
        boundary, the ``[lo, hi)`` ids generation samples there (its quantizer's range), or
        ``None`` where ids are given, not sampled, or drawn from the whole vocabulary."""
        if stage == "semantic":
            return [None] * length
        if stage == "coarse":
            group, qc = self.coarse_group, self.coarse_quantizers
            return [
                None if i % group == 0 else self.coarse_range((i % group - 1) % qc)
                for i in range(length)
            ]
        if stage == "fine":
            group, qc = self.fine_group, self.coarse_quantizers
            return [
                None if i % group < qc else self.fine_range(i % group - qc) for i in range(length)
            ]
        raise ValueError(f"unknown stage {stage!r}: use semantic, coarse or fine")
