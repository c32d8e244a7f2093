"""Beam search over residual-VQ codes: width 1 is the greedy encoder, a full-width beam is the
exhaustive optimum, and wider beams lower the error with the same codebooks."""

from __future__ import annotations

import itertools

import pytest
import torch

from audiogen_studio.models import rvq_search
from audiogen_studio.models.quantize import ResidualVQ
from audiogen_studio.models.rvq_search import beam_search_codes


def _fitted_rvq(n_q: int = 4, k: int = 32, dim: int = 8, frames: int = 2000) -> ResidualVQ:
    torch.manual_seed(0)
    rvq = ResidualVQ(dim, n_q, k, quantizer_dropout=False)
    rvq.initialize(_frames(frames, dim, seed=1), iters=10)
    return rvq.eval()


def _frames(n: int, dim: int, *, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    # correlated, unevenly scaled dimensions, like normalised log-mel bands
    mix = torch.randn(dim, dim, generator=g) / dim**0.5 + torch.eye(dim)
    return torch.randn(n, dim, generator=g) @ mix * torch.linspace(2.0, 0.5, dim)


def _error(rvq: ResidualVQ, x: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
    """Squared error ``[N]`` of frames ``x [N, D]`` coded as ``codes [1, q, N]``."""
    return (x - rvq.decode(codes)[0].T).square().sum(-1)


def test_width_one_is_the_greedy_encoder() -> None:
    rvq = _fitted_rvq()
    x = _frames(500, 8, seed=2)
    greedy = rvq.encode(x.T[None])  # [1, n_q, N]
    codes, errors = beam_search_codes(x, [q.embed for q in rvq.codebooks], 1)
    assert torch.equal(codes.T[None], greedy)
    torch.testing.assert_close(errors, _error(rvq, x, greedy), rtol=1e-4, atol=1e-5)


def test_a_beam_as_wide_as_the_tree_finds_the_exhaustive_optimum() -> None:
    rvq = _fitted_rvq(n_q=3, k=4, dim=3, frames=300)
    books = [q.embed for q in rvq.codebooks]
    x = _frames(200, 3, seed=3)
    codes, errors = beam_search_codes(x, books, 16)  # keeps all 4 * 4 paths before stage 3
    every = torch.tensor(list(itertools.product(range(4), repeat=3)))  # [64, 3]
    sums = books[0][every[:, 0]] + books[1][every[:, 1]] + books[2][every[:, 2]]  # [64, D]
    best = (x[:, None, :] - sums[None]).square().sum(-1).min(1).values  # [N]
    torch.testing.assert_close(errors, best, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(_error(rvq, x, codes.T[None]), best, rtol=1e-4, atol=1e-5)
    greedy = _error(rvq, x, rvq.encode(x.T[None]))
    assert bool((greedy > best + 1e-4).any())  # greedy misses the optimum on some frames


def test_wider_beams_lower_the_error_on_held_out_frames() -> None:
    rvq = _fitted_rvq()
    x = _frames(1000, 8, seed=4)  # not the frames the codebooks were fitted on
    means = {w: float(_error(rvq, x, rvq.encode(x.T[None], beam=w)).mean()) for w in (1, 2, 4, 16)}
    assert means[16] <= means[4] <= means[2] < means[1]
    assert means[4] < 0.95 * means[1]


def test_blocks_do_not_change_the_codes(monkeypatch: pytest.MonkeyPatch) -> None:
    rvq = _fitted_rvq()
    books = [q.embed for q in rvq.codebooks]
    x = _frames(301, 8, seed=5)
    whole, whole_err = beam_search_codes(x, books, 4)
    monkeypatch.setattr(rvq_search, "_BLOCK_ELEMENTS", 4 * 32 * 7)  # 7 frames per block
    blocked, blocked_err = beam_search_codes(x, books, 4)
    assert torch.equal(whole, blocked)
    torch.testing.assert_close(whole_err, blocked_err)


def test_the_encoder_keeps_its_shapes_and_prefixes() -> None:
    rvq = _fitted_rvq()
    z = _frames(2 * 30, 8, seed=6).reshape(2, 30, 8).transpose(1, 2)  # [B, D, F]
    codes = rvq.encode(z, 2, beam=8)
    assert codes.shape == (2, 2, 30) and codes.dtype == torch.long
    assert int(codes.max()) < 32 and int(codes.min()) >= 0
    assert rvq.encode(z, 0, beam=8).shape == (2, 0, 30)
    frames = z.transpose(1, 2).reshape(-1, 8)
    searched, _ = beam_search_codes(frames, [q.embed for q in rvq.codebooks[:2]], 8)
    assert torch.equal(codes, searched.reshape(2, 30, 2).transpose(1, 2))


def test_bad_arguments_are_refused() -> None:
    rvq = _fitted_rvq()
    books = [q.embed for q in rvq.codebooks]
    x = _frames(10, 8, seed=7)
    with pytest.raises(ValueError, match="at least 1"):
        beam_search_codes(x, books, 0)
    with pytest.raises(ValueError, match="no codebooks"):
        beam_search_codes(x, [], 4)
    with pytest.raises(ValueError, match="dims"):
        beam_search_codes(x[:, :5], books, 4)
    with pytest.raises(ValueError, match=r"\[N, D\]"):
        beam_search_codes(x[None], books, 4)
    with pytest.raises(ValueError, match="beam"):
        rvq.encode(x.T[None], beam=0)
