"""Residual vector quantization with EMA codebooks (SoundStream, Zeghidour et al. 2021, §3.3).

A :class:`ResidualVQ` holds ``n_q`` codebooks of ``K`` vectors of ``D`` dimensions. Each frame
``x [D]`` is quantized in stages: stage 1 picks the nearest vector of codebook 1, stage 2 the
nearest vector of codebook 2 to what is left, and so on (Algorithm 1 of the paper)::

    r_0 = x
    for i in 1..n_q':  k_i = argmin_k |r_{i-1} - e_i[k]|^2,   r_i = r_{i-1} - e_i[k_i]
    x_hat = sum_i e_i[k_i]

so the codes ``[n_q', F]`` of any prefix ``n_q' <= n_q`` describe the frame, the more of them
the finer: one model serves several bitrates (``n_q' * log2(K) * frame_rate`` bits/s).

Training (``module.train()``), as in the paper and EnCodec/audiocraft:

- **k-means initialisation**: the codebooks start as k-means centroids of the first batch's
  residuals (:meth:`ResidualVQ.initialize` may be called with more frames first);
- **EMA updates** (van den Oord et al. 2017, appendix): per codebook an exponential moving
  average (``decay`` ~0.99) of the assignment counts ``N_k`` and of the sums ``m_k`` of the
  vectors assigned; ``e_k = m_k / N_k`` with Laplace smoothing of the counts. Codebooks are
  buffers, not parameters: no gradient reaches them;
- **dead-code restart**: after each update, codes whose EMA count fell below
  ``dead_code_ratio`` times the mean count are replaced by random current inputs of their stage;
- **quantizer dropout** (§3.3): ``forward(x, n_q=None)`` in training quantizes with a random
  ``n_q'`` in ``1..n_q`` per batch (pass ``n_q`` to choose it, e.g. the same on every rank);
- **straight-through estimator**: the output's value is the quantized sum, its gradient passes
  to ``x`` unchanged (``x + (x_hat - x).detach()``, applied to the whole sum as audiocraft does);
- **commitment loss**: ``mean_i |r_{i-1} - sg(e_i[k_i])|^2`` pulls the encoder towards its codes.

Under ``torch.distributed`` (training mode only) the EMA statistics are summed over ranks and
the k-means initialisation and restarted codes come from rank 0, so every rank keeps identical
codebooks. Quantization math runs in float32 whatever the autocast dtype.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn.functional as F  # noqa: N812
from torch import nn

from audiogen_studio.models.kmeans import assign, kmeans
from audiogen_studio.models.rvq_search import beam_search_codes

__all__ = ["QuantizedResult", "ResidualVQ", "VectorQuantizer"]


@dataclass
class QuantizedResult:
    """What :meth:`ResidualVQ.forward` returns.

    Attributes:
        quantized: ``[B, D, F]`` the quantized frames (straight-through in training).
        codes: ``[B, n_q, F]`` int64 indices of each stage (``n_q`` = 0: an empty tensor).
        commit_loss: scalar, mean squared distance between each stage's input and its code.
        n_q: number of codebooks used for this batch.
    """

    quantized: torch.Tensor
    codes: torch.Tensor
    commit_loss: torch.Tensor
    n_q: int


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


class VectorQuantizer(nn.Module):
    """One EMA codebook of ``codebook_size`` vectors of ``dim`` dimensions (one RVQ stage).

    Buffers (saved with the model): ``embed [K, D]``, ``cluster_size [K]`` (EMA counts),
    ``embed_sum [K, D]`` (EMA sums), ``initialized`` (bool scalar).
    """

    embed: torch.Tensor
    cluster_size: torch.Tensor
    embed_sum: torch.Tensor
    initialized: torch.Tensor

    def __init__(
        self,
        dim: int,
        codebook_size: int,
        *,
        decay: float = 0.99,
        epsilon: float = 1e-5,
        dead_code_ratio: float = 0.1,
    ) -> None:
        super().__init__()
        if dim < 1 or codebook_size < 1:
            raise ValueError(f"bad codebook shape {codebook_size} x {dim}")
        if not 0.0 < decay < 1.0:
            raise ValueError(f"decay must be within (0, 1), got {decay}")
        self.dim = dim
        self.codebook_size = codebook_size
        self.decay = decay
        self.epsilon = epsilon
        self.dead_code_ratio = dead_code_ratio
        embed = torch.randn(codebook_size, dim)
        self.register_buffer("embed", embed)
        self.register_buffer("cluster_size", torch.ones(codebook_size))
        self.register_buffer("embed_sum", embed.clone())
        self.register_buffer("initialized", torch.tensor(False))

    # --- inference ------------------------------------------------------------------------------

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Nearest code of each row of ``x [N, D]`` → int64 ``[N]``."""
        return assign(x.float(), self.embed)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """Code vectors ``[..., D]`` of ``codes [...]``."""
        return F.embedding(codes, self.embed)

    # --- training -------------------------------------------------------------------------------

    @torch.no_grad()
    def init_from(self, x: torch.Tensor, *, seed: int = 0, iters: int = 25) -> torch.Tensor:
        """Set the codebook to k-means centroids of ``x [N, D]``; returns the codes of ``x``.

        EMA statistics restart from the assignment counts of ``x``. Under torch.distributed
        every rank must call this; rank 0's result is broadcast.
        """
        x = x.detach().float()
        centroids = kmeans(x, self.codebook_size, iters=iters, seed=seed)
        if _distributed():
            dist.broadcast(centroids, 0)
        codes = assign(x, centroids)
        counts = torch.bincount(codes, minlength=self.codebook_size).float()
        if _distributed():  # every rank's x was assigned to rank 0's centroids
            dist.all_reduce(counts)
        self.embed.copy_(centroids)
        self.cluster_size.copy_(counts)
        self.embed_sum.copy_(centroids * counts[:, None])
        self.initialized.fill_(True)
        return codes

    @torch.no_grad()
    def update(self, x: torch.Tensor, codes: torch.Tensor) -> int:
        """One EMA step from ``x [N, D]`` assigned to ``codes [N]``, then dead-code restart.

        Returns:
            The number of codes restarted.
        """
        x = x.detach().float()
        counts = torch.bincount(codes, minlength=self.codebook_size).float()
        sums = torch.zeros_like(self.embed_sum).index_add_(0, codes, x)
        if _distributed():
            dist.all_reduce(counts)
            dist.all_reduce(sums)
        self.cluster_size.mul_(self.decay).add_(counts, alpha=1.0 - self.decay)
        self.embed_sum.mul_(self.decay).add_(sums, alpha=1.0 - self.decay)
        total = self.cluster_size.sum()
        smoothed = (
            (self.cluster_size + self.epsilon) / (total + self.codebook_size * self.epsilon) * total
        )
        self.embed.copy_(self.embed_sum / smoothed[:, None])
        return self._restart_dead(x)

    def _restart_dead(self, x: torch.Tensor) -> int:
        if self.dead_code_ratio <= 0 or x.shape[0] == 0:
            return 0
        mean = self.cluster_size.mean()
        dead = torch.nonzero(self.cluster_size < self.dead_code_ratio * mean).flatten()
        n = int(dead.numel())
        if n == 0:
            return 0
        pick = torch.randint(x.shape[0], (n,), device=x.device)
        fresh = x[pick].contiguous()
        if _distributed():  # the dead set is the same on every rank (reduced statistics)
            dist.broadcast(fresh, 0)
        self.embed[dead] = fresh
        self.cluster_size[dead] = mean
        self.embed_sum[dead] = fresh * mean
        return n


class ResidualVQ(nn.Module):
    """``n_q`` residual EMA codebooks over ``[B, D, F]`` frames (SoundStream §3.3).

    Args:
        dim: ``D``, dimensions of a frame.
        n_q: number of codebooks (stages).
        codebook_size: ``K`` vectors per codebook.
        decay: EMA decay of the codebook statistics.
        epsilon: Laplace smoothing of the EMA counts.
        dead_code_ratio: a code whose EMA count is below this times the mean count is replaced
            by a random current input (0 disables restarts).
        quantizer_dropout: in training with ``n_q=None``, use a random ``1..n_q`` per batch.
    """

    def __init__(
        self,
        dim: int,
        n_q: int,
        codebook_size: int,
        *,
        decay: float = 0.99,
        epsilon: float = 1e-5,
        dead_code_ratio: float = 0.1,
        quantizer_dropout: bool = True,
    ) -> None:
        super().__init__()
        if n_q < 1:
            raise ValueError(f"n_q must be at least 1, got {n_q}")
        self.dim = dim
        self.n_q = n_q
        self.codebook_size = codebook_size
        self.quantizer_dropout = quantizer_dropout
        self.layers = nn.ModuleList(
            VectorQuantizer(
                dim,
                codebook_size,
                decay=decay,
                epsilon=epsilon,
                dead_code_ratio=dead_code_ratio,
            )
            for _ in range(n_q)
        )
        self.restarts = 0  # codes restarted since construction (training diagnostics)

    @property
    def codebooks(self) -> list[VectorQuantizer]:
        """The stages, in order."""
        return list(self.layers)  # type: ignore[arg-type]

    @property
    def initialized(self) -> bool:
        """Whether every codebook holds k-means (or trained) vectors."""
        return all(bool(q.initialized) for q in self.codebooks)

    def _check(self, x: torch.Tensor) -> None:
        if x.ndim != 3 or x.shape[1] != self.dim:
            raise ValueError(f"expected frames [B, {self.dim}, F], got {tuple(x.shape)}")

    def _n_q(self, n_q: int | None) -> int:
        if n_q is None:
            return self.n_q
        if not 0 <= n_q <= self.n_q:
            raise ValueError(f"n_q must be within 0..{self.n_q}, got {n_q}")
        return int(n_q)

    @torch.no_grad()
    def initialize(self, x: torch.Tensor, *, seed: int = 0, iters: int = 25) -> None:
        """k-means initialisation of every stage from frames ``x [B, D, F]`` or ``[N, D]``.

        Stage ``i`` clusters the residuals left by stages ``< i``. Under torch.distributed all
        ranks must call it (rank 0's centroids are used).
        """
        flat = x.detach().float()
        if flat.ndim == 3:
            self._check(flat)
            flat = flat.transpose(1, 2).reshape(-1, self.dim)  # [B*F, D]
        residual = flat
        for i, q in enumerate(self.codebooks):
            codes = q.init_from(residual, seed=seed + i, iters=iters)
            residual = residual - q.decode(codes)

    def forward(self, x: torch.Tensor, n_q: int | None = None) -> QuantizedResult:
        """Quantize ``x [B, D, F]`` with the first ``n_q`` codebooks.

        ``n_q=None`` means all of them, or in training with quantizer dropout a random number
        in ``1..n_q``; ``n_q=0`` passes ``x`` through (an unquantized autoencoder warm-up).
        In training the codebooks are k-means initialised on first use and EMA-updated.
        """
        self._check(x)
        if n_q is None and self.training and self.quantizer_dropout:
            n_q = int(torch.randint(1, self.n_q + 1, (1,)))
        used = self._n_q(n_q)
        batch, dim, frames = x.shape
        if used == 0:
            empty = torch.zeros(batch, 0, frames, dtype=torch.long, device=x.device)
            return QuantizedResult(x, empty, x.new_zeros((), dtype=torch.float32), 0)
        flat = x.float().transpose(1, 2).reshape(-1, dim)  # [B*F, D]
        if self.training and not self.initialized:
            self.initialize(flat)
        residual = flat
        quantized = torch.zeros_like(flat)
        codes: list[torch.Tensor] = []
        losses: list[torch.Tensor] = []
        for q in self.codebooks[:used]:
            idx = q.encode(residual.detach())  # [B*F]
            vec = q.decode(idx)  # [B*F, D]
            losses.append(F.mse_loss(residual, vec.detach()))
            if self.training:
                self.restarts += q.update(residual, idx)
            residual = residual - vec.detach()
            quantized = quantized + vec.detach()
            codes.append(idx)
        if self.training or flat.requires_grad:
            quantized = flat + (quantized - flat).detach()  # straight-through
        out = quantized.reshape(batch, frames, dim).transpose(1, 2).to(x.dtype)  # [B, D, F]
        code_tensor = torch.stack(codes, 1).reshape(batch, frames, used).transpose(1, 2)
        return QuantizedResult(out, code_tensor.contiguous(), torch.stack(losses).mean(), used)

    @torch.no_grad()
    def encode(self, x: torch.Tensor, n_q: int | None = None, *, beam: int = 1) -> torch.Tensor:
        """Codes ``[B, n_q, F]`` (int64) of frames ``x [B, D, F]``; no codebook update.

        ``beam`` 1 is the greedy stage-by-stage encoder; a wider beam keeps that many partial
        sums per stage (:func:`~audiogen_studio.models.rvq_search.beam_search_codes`), which
        lowers the quantization error with the same codebooks and bitrate.
        """
        self._check(x)
        used = self._n_q(n_q)
        if beam < 1:
            raise ValueError(f"beam must be at least 1, got {beam}")
        batch, dim, frames = x.shape
        residual = x.float().transpose(1, 2).reshape(-1, dim)
        if beam > 1 and used > 0:
            books = [q.embed for q in self.codebooks[:used]]
            found, _ = beam_search_codes(residual, books, beam)  # [B*F, used]
            return found.reshape(batch, frames, used).transpose(1, 2).contiguous()
        codes = []
        for q in self.codebooks[:used]:
            idx = q.encode(residual)
            residual = residual - q.decode(idx)
            codes.append(idx)
        if not codes:
            return torch.zeros(batch, 0, frames, dtype=torch.long, device=x.device)
        return torch.stack(codes, 1).reshape(batch, frames, used).transpose(1, 2).contiguous()

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """Frames ``[B, D, F]`` from codes ``[B, q, F]`` of the first ``q <= n_q`` codebooks."""
        if codes.ndim != 3:
            raise ValueError(f"expected codes [B, q, F], got {tuple(codes.shape)}")
        q = codes.shape[1]
        if not 1 <= q <= self.n_q:
            raise ValueError(f"codes have {q} codebooks; this quantizer has 1..{self.n_q}")
        if codes.dtype not in (torch.int64, torch.int32):
            codes = codes.long()
        if bool((codes < 0).any()) or bool((codes >= self.codebook_size).any()):
            raise ValueError(f"codes must be within 0..{self.codebook_size - 1}")
        out = self.codebooks[0].decode(codes[:, 0])  # [B, F, D]
        for i in range(1, q):
            out = out + self.codebooks[i].decode(codes[:, i])
        return out.transpose(1, 2)  # [B, D, F]
