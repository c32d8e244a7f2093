"""Beam (M-L) search for residual-VQ codes: a better encoder for a fixed set of codebooks.

The greedy encoder of :class:`~audiogen_studio.models.quantize.ResidualVQ` picks, stage by
stage, the code nearest to what is left (SoundStream, Zeghidour et al. 2021, §3.3, Algorithm 1).
That is not the best sum of ``n_q`` code vectors: an early choice that leaves a residual the
later codebooks cover badly cannot be undone. The **M-L tree search** of multi-stage VQ
(LeBlanc, Bhattacharya, Mahmoud and Cuperman 1993, "Efficient search and design procedures for
robust multi-stage VQ of LPC parameters for 4 kb/s speech coding", IEEE Trans. Speech and
Audio Processing 1(4), §III) keeps the ``M`` best partial sums after each stage instead of one::

    beam_0 = {(codes = (), r = x, e = |x|^2)}
    stage i: for every path in beam_{i-1} and every code k of codebook i
                 e' = |r - c_i[k]|^2 = e - 2 r·c_i[k] + |c_i[k]|^2
             beam_i = the M extensions with the smallest e'
    codes = the path of beam_{n_q} with the smallest e

Only the encoder changes: the codes index the same codebooks, so any decoder trained on
greedy codes decodes them, and the bitrate is the same. ``width`` 1 is the greedy encoder; a
width of at least ``K^(n_q - 1)`` is exhaustive search. Work per frame is
``n_q · width · K · D`` multiply-adds (12 × 8 × 1024 × 80 ≈ 7.9 M for the default mel codec,
~0.4 G/s at 50 frames/s).

Shapes: frames ``x [N, D]`` → codes ``[N, n_q]`` (int64) and squared errors ``[N]``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

__all__ = ["beam_search_codes"]

_BLOCK_ELEMENTS = 1 << 24  # frames per block are chosen so one block's distances fit 64 MiB


def beam_search_codes(
    x: torch.Tensor, codebooks: Sequence[torch.Tensor], width: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Codes ``[N, n_q]`` (int64) of frames ``x [N, D]`` that approximately minimise
    ``|x - sum_i codebooks[i][codes[:, i]]|^2``, and those squared errors ``[N]`` (float32).

    Args:
        x: frames, one per row.
        codebooks: ``n_q`` tensors ``[K_i, D]``, in stage order.
        width: ``M``, partial paths kept after each stage (1: greedy).

    Raises:
        ValueError: ``width < 1``, no codebooks, or dimensions that disagree.
    """
    if width < 1:
        raise ValueError(f"the search width must be at least 1, got {width}")
    if not codebooks:
        raise ValueError("no codebooks to search")
    if x.ndim != 2:
        raise ValueError(f"expected frames [N, D], got {tuple(x.shape)}")
    dim = x.shape[1]
    for i, c in enumerate(codebooks):
        if c.ndim != 2 or c.shape[1] != dim:
            raise ValueError(f"codebook {i} has shape {tuple(c.shape)}; frames have {dim} dims")
    books = [c.float() for c in codebooks]
    widest = max(width * c.shape[0] for c in books)
    block = max(1, _BLOCK_ELEMENTS // widest)
    codes = torch.empty(x.shape[0], len(books), dtype=torch.long, device=x.device)
    errors = torch.empty(x.shape[0], dtype=torch.float32, device=x.device)
    for start in range(0, x.shape[0], block):
        rows = x[start : start + block].float()
        codes[start : start + block], errors[start : start + block] = _search_block(
            rows, books, width
        )
    return codes, errors


def _search_block(
    x: torch.Tensor, books: list[torch.Tensor], width: int
) -> tuple[torch.Tensor, torch.Tensor]:
    n, dim = x.shape
    residual = x[:, None, :]  # [N, M, D], M = 1 before the first stage
    error = residual.square().sum(-1)  # [N, M]
    paths = torch.zeros(n, 1, 0, dtype=torch.long, device=x.device)  # [N, M, stages so far]
    for book in books:
        k = book.shape[0]
        norms = book.square().sum(-1)  # [K]
        # e' = e - 2 r·c + |c|^2 for every (path, code): [N, M, K]
        cand = error[:, :, None] - 2.0 * torch.einsum("nmd,kd->nmk", residual, book) + norms
        keep = min(width, cand.shape[1] * k)
        best = torch.topk(cand.reshape(n, -1), keep, dim=1, largest=False, sorted=True)
        parent = torch.div(best.indices, k, rounding_mode="floor")  # [N, M']
        code = best.indices - parent * k  # [N, M']
        residual = torch.gather(residual, 1, parent[..., None].expand(-1, -1, dim)) - book[code]
        error = best.values
        paths = torch.cat(
            (
                torch.gather(paths, 1, parent[..., None].expand(-1, -1, paths.shape[2])),
                code[..., None],
            ),
            dim=2,
        )
    # the running errors drift by rounding over the stages; rank the survivors on their residual
    final = residual.square().sum(-1)  # [N, M]
    pick = final.argmin(1)  # [N]
    rows = torch.arange(n, device=x.device)
    return paths[rows, pick], final[rows, pick]
