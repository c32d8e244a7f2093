"""Pitch transposition of chroma semantic tokens: a data augmentation for the semantic LM.

A music bundle's semantic tokens (``train semantic --encoder chroma``) are the k-means centroids
of 12 pitch classes, log energy and onset (:mod:`~audiogen_studio.models.chroma_encoder`).
Playing the same music k semitones higher rolls the 12 pitch classes by k and leaves the rest.
In token space that is approximated by a table: each centroid, its pitch classes rolled by k,
mapped to the nearest centroid under the normalised distance the tokenizer itself quantises
with. On held-out music the table's token agrees with re-quantising the rolled frames about a
third of the time, and their pitch classes agree closely (cosine ~0.97): centroids that share a
chord differ mostly in energy and onset.

Training windows shifted by a random interval show the semantic LM every piece in every key, as
symbolic music models augment their data with transpositions (Music Transformer, Huang et al.
2019; here every interval, since chroma folds octaves). The LM then has to read the key from its
context instead of favouring the corpus's common keys, which is what continuing a prompt in its
own key asks of it.
"""

from __future__ import annotations

import numpy as np
import torch

from audiogen_studio.models.semantic import SemanticTokenizer
from audiogen_studio.training.audio_dataset import TrainingError

__all__ = ["PITCH_CLASSES", "transpose_windows", "transposition_table"]

PITCH_CLASSES = 12


@torch.no_grad()
def transposition_table(tokenizer: SemanticTokenizer) -> torch.Tensor:
    """``[12, K]`` int64: row ``k`` maps each token to its transposition up ``k`` semitones.

    Row 0 is the identity (every centroid is its own nearest).

    Raises:
        TrainingError: the tokenizer's features are not chroma ones.
    """
    if tokenizer.encoder.kind != "chroma" or tokenizer.dim < PITCH_CLASSES:
        raise TrainingError(
            f"transposition needs pitch-class semantic tokens (train semantic --encoder chroma); "
            f"this bundle's tokenizer reads {tokenizer.encoder.kind!r} features"
        )
    centroids = tokenizer.centroids.float()  # [K, D], normalised
    mean, std = tokenizer.feature_mean.float(), tokenizer.feature_std.float()
    raw = centroids * std + mean  # [K, D]: the features the centroids stand for
    rows = []
    for k in range(PITCH_CLASSES):
        rolled = raw.clone()
        rolled[:, :PITCH_CLASSES] = torch.roll(raw[:, :PITCH_CLASSES], k, dims=1)
        rows.append(torch.cdist((rolled - mean) / std, centroids).argmin(dim=1))
    table = torch.stack(rows)  # [12, K]
    table[0] = torch.arange(centroids.shape[0])  # exact, whatever ties cdist breaks
    return table


def transpose_windows(
    semantic: torch.Tensor, table: torch.Tensor, p: float, rng: np.random.Generator
) -> torch.Tensor:
    """``semantic [B, S]`` ids with each row, with probability ``p``, transposed by a random
    1–11 semitones through ``table [12, K]`` (:func:`transposition_table`)."""
    if p <= 0:
        return semantic
    chosen = rng.random(semantic.shape[0]) < p
    shifts = np.where(chosen, rng.integers(1, PITCH_CLASSES, size=semantic.shape[0]), 0)
    if not chosen.any():
        return semantic
    rows = torch.from_numpy(shifts).to(semantic.device)[:, None].expand_as(semantic)
    return table.to(semantic.device)[rows, semantic]
