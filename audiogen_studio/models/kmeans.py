"""k-means clustering in torch: k-means++ seeding and Lloyd iterations.

Used for the semantic tokens (k-means over self-supervised features, Borsos et al. 2022 §3.1;
Hsu et al. 2021 §2 for the MFCC / feature targets) and to initialise residual-VQ codebooks
(Zeghidour et al. 2021 §3.3). Everything runs on the device of the input, in float32.
"""

from __future__ import annotations

import torch

__all__ = ["assign", "kmeans", "squared_distances"]

_ASSIGN_BLOCK = 16_384  # rows per distance block: bounds memory at block × k floats


def squared_distances(x: torch.Tensor, centroids: torch.Tensor) -> torch.Tensor:
    """Squared L2 distances ``[N, k]`` between rows of ``x [N, D]`` and ``centroids [k, D]``."""
    x = x.float()
    c = centroids.float()
    d = x.pow(2).sum(1, keepdim=True) - 2.0 * (x @ c.T) + c.pow(2).sum(1)[None, :]
    return d.clamp_min_(0.0)


def assign(x: torch.Tensor, centroids: torch.Tensor) -> torch.Tensor:
    """Index of the nearest centroid for every vector of ``x [..., D]`` → int64 ``[...]``."""
    if x.shape[-1] != centroids.shape[-1]:
        raise ValueError(f"vectors have {x.shape[-1]} dimensions, centroids {centroids.shape[-1]}")
    flat = x.reshape(-1, x.shape[-1])
    out = torch.empty(flat.shape[0], dtype=torch.long, device=x.device)
    for i in range(0, flat.shape[0], _ASSIGN_BLOCK):
        out[i : i + _ASSIGN_BLOCK] = squared_distances(
            flat[i : i + _ASSIGN_BLOCK], centroids
        ).argmin(1)
    return out.reshape(x.shape[:-1])


def _plus_plus(x: torch.Tensor, k: int, generator: torch.Generator) -> torch.Tensor:
    """k-means++ seeding (Arthur & Vassilvitskii 2007): ``[k, D]`` rows of ``x``."""
    n = x.shape[0]
    norms = x.pow(2).sum(1)  # [N], once: ~10x faster than squared_distances per new centroid

    def to(c: torch.Tensor) -> torch.Tensor:
        """Squared distances ``[N]`` of every row to one centroid ``c [D]``."""
        return (norms - 2.0 * (x @ c) + c.dot(c)).clamp_min_(0.0)

    first = int(torch.randint(n, (1,), generator=generator, device="cpu"))
    centroids = [x[first]]
    closest = to(x[first])
    for _ in range(1, k):
        total = float(closest.sum())
        if total <= 0.0:  # every point already coincides with a centroid
            idx = int(torch.randint(n, (1,), generator=generator, device="cpu"))
        else:
            probs = (closest / total).cpu()
            idx = int(torch.multinomial(probs, 1, generator=generator))
        centroids.append(x[idx])
        closest = torch.minimum(closest, to(x[idx]))
    return torch.stack(centroids)


def kmeans(
    x: torch.Tensor,
    k: int,
    *,
    iters: int = 25,
    seed: int = 0,
    max_points: int | None = 200_000,
) -> torch.Tensor:
    """Cluster ``x [N, D]`` into ``k`` centroids ``[k, D]`` (float32, on ``x``'s device).

    k-means++ seeding, then Lloyd iterations until assignments stop changing or ``iters``.
    With more than ``max_points`` rows a seeded random subset is clustered. With fewer distinct
    points than ``k``, centroids are duplicated (empty clusters keep their previous centroid, or
    take the point farthest from its centroid).
    """
    if x.ndim != 2:
        raise ValueError(f"kmeans wants [N, D] vectors, got shape {tuple(x.shape)}")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if x.shape[0] == 0:
        raise ValueError("kmeans got no vectors")
    if not bool(torch.isfinite(x).all()):
        raise ValueError("kmeans got NaN or infinite values")
    generator = torch.Generator().manual_seed(seed)
    x = x.detach().float()
    if max_points is not None and x.shape[0] > max_points:
        pick = torch.randperm(x.shape[0], generator=generator)[:max_points].to(x.device)
        x = x[pick]
    if x.shape[0] < k:
        reps = -(-k // x.shape[0])
        return x.repeat(reps, 1)[:k].clone()
    centroids = _plus_plus(x, k, generator)
    labels = torch.full((x.shape[0],), -1, dtype=torch.long, device=x.device)
    for _ in range(iters):
        dist = squared_distances(x, centroids)
        new_labels = dist.argmin(1)
        if torch.equal(new_labels, labels):
            break
        labels = new_labels
        sums = torch.zeros_like(centroids).index_add_(0, labels, x)
        counts = torch.bincount(labels, minlength=k).float()
        empty = counts == 0
        centroids = torch.where(empty[:, None], centroids, sums / counts.clamp_min(1.0)[:, None])
        if bool(empty.any()):  # re-seed empty clusters at the worst-fitted points
            worst = dist.gather(1, labels[:, None])[:, 0].argsort(descending=True)
            slots = torch.nonzero(empty).flatten()
            centroids[slots] = x[worst[: slots.numel()]]
    return centroids
