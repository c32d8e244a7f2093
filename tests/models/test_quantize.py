"""Residual VQ (SoundStream §3.3): round trip, bitrate scaling, k-means init, EMA, dead-code
restart, quantizer dropout, straight-through gradients."""

from __future__ import annotations

import itertools

import pytest
import torch

from audiogen_studio.models.quantize import QuantizedResult, ResidualVQ, VectorQuantizer

torch.set_num_threads(1)


def _frames(x: torch.Tensor, batch: int) -> torch.Tensor:
    """``[N, D]`` rows as frames ``[B, D, N / B]``."""
    n, d = x.shape
    return x.reshape(batch, n // batch, d).transpose(1, 2).contiguous()


def test_round_trip_of_vectors_near_codebook_entries() -> None:
    torch.manual_seed(0)
    rvq = ResidualVQ(8, n_q=3, codebook_size=16).eval()
    # codebook i has scale 4^-i, so stages are unambiguous; build x from known codes
    for i, q in enumerate(rvq.codebooks):
        q.embed.copy_(torch.randn(16, 8) * 4.0**-i)
    codes = torch.randint(0, 16, (2, 3, 10))
    x = rvq.decode(codes) + 1e-4 * torch.randn(2, 8, 10)
    got = rvq.encode(x)
    assert got.dtype == torch.int64 and got.shape == (2, 3, 10)
    assert torch.equal(got, codes)
    assert torch.allclose(rvq.decode(got), x, atol=1e-3)
    result = rvq(x)
    assert isinstance(result, QuantizedResult) and result.n_q == 3
    assert torch.equal(result.codes, codes)
    assert torch.allclose(result.quantized, x, atol=1e-3)
    # commitment: mean over stages of |stage input - its code|^2
    residual, expected = x, []
    for i, q in enumerate(rvq.codebooks):
        vec = q.embed[codes[:, i]].transpose(1, 2)  # [B, D, F]
        expected.append(float((residual - vec).pow(2).mean()))
        residual = residual - vec
    assert float(result.commit_loss) == pytest.approx(sum(expected) / 3, rel=1e-4)


def test_bitrate_scaling_error_falls_as_q_grows() -> None:
    torch.manual_seed(1)
    rvq = ResidualVQ(16, n_q=6, codebook_size=32, quantizer_dropout=False)
    x = torch.randn(4, 16, 64)
    rvq.initialize(x)
    rvq.eval()
    errors = []
    for q in range(1, 7):
        codes = rvq.encode(x, n_q=q)
        assert codes.shape == (4, q, 64)
        errors.append(float((rvq.decode(codes) - x).pow(2).mean()))
    assert all(b < a for a, b in itertools.pairwise(errors)), errors
    assert errors[-1] < 0.5 * errors[0]
    # decode of a prefix equals the prefix of a full encode
    full = rvq.encode(x)
    assert torch.equal(full[:, :2], rvq.encode(x, n_q=2))


def test_kmeans_init_fits_clustered_data() -> None:
    torch.manual_seed(2)
    centers = torch.randn(8, 4) * 5
    labels = torch.randint(0, 8, (2000,))
    x = centers[labels] + 0.05 * torch.randn(2000, 4)
    vq = VectorQuantizer(4, 8)
    assert not bool(vq.initialized)
    vq.init_from(x)
    assert bool(vq.initialized)
    # every true centre has a codebook entry within the noise
    d = torch.cdist(centers, vq.embed)
    assert float(d.min(1).values.max()) < 0.1
    assert float(vq.cluster_size.sum()) == pytest.approx(2000)


def test_first_training_batch_initialises_lazily_then_ema_tracks_data() -> None:
    torch.manual_seed(3)
    rvq = ResidualVQ(4, n_q=1, codebook_size=4, quantizer_dropout=False, decay=0.9)
    centers = torch.tensor([[1.0, 0, 0, 0], [0, 1.0, 0, 0], [0, 0, 1.0, 0], [0, 0, 0, 1.0]])
    rvq.train()
    x = _frames(centers.repeat(64, 1) + 0.01 * torch.randn(256, 4), batch=4)
    rvq(x)
    assert rvq.initialized
    embed = rvq.codebooks[0].embed
    assert float(torch.cdist(centers, embed).min(1).values.max()) < 0.05
    # the data moves: the EMA follows it
    shifted = x + 0.5
    for _ in range(60):
        rvq(shifted)
    assert float(torch.cdist(centers + 0.5, embed).min(1).values.max()) < 0.05


def test_dead_code_restart_revives_unused_codes() -> None:
    torch.manual_seed(4)
    vq = VectorQuantizer(2, 8, decay=0.8, dead_code_ratio=0.1)
    vq.init_from(torch.randn(512, 2))
    far = torch.randn(64, 2) * 0.1 + torch.tensor([50.0, 50.0])  # all data moves far away
    vq.embed[1:] = torch.tensor([-100.0, -100.0])  # codes 1..7 can never win now
    vq.embed_sum.copy_(vq.embed * vq.cluster_size[:, None])
    restarted = 0
    for _ in range(30):
        codes = vq.encode(far)
        restarted += vq.update(far, codes)
    assert restarted >= 7
    used = torch.unique(vq.encode(far))
    assert used.numel() >= 4, used  # the revived codes now share the data
    # the codes that had died now sit on the data
    assert float(torch.cdist(vq.embed[1:], far).min(1).values.max()) < 1.0


def test_no_restart_when_disabled() -> None:
    vq = VectorQuantizer(2, 8, dead_code_ratio=0.0)
    vq.init_from(torch.randn(64, 2))
    far = torch.full((16, 2), 50.0)
    assert sum(vq.update(far, vq.encode(far)) for _ in range(20)) == 0


def test_quantizer_dropout_draws_several_bitrates() -> None:
    torch.manual_seed(5)
    rvq = ResidualVQ(8, n_q=4, codebook_size=16)
    rvq.train()
    x = torch.randn(2, 8, 32)
    seen = {rvq(x).n_q for _ in range(40)}
    assert seen == {1, 2, 3, 4}
    assert rvq(x, n_q=2).codes.shape == (2, 2, 32)
    rvq.eval()
    assert {rvq(x).n_q for _ in range(5)} == {4}  # no dropout outside training


def test_straight_through_gradient_and_commitment() -> None:
    torch.manual_seed(6)
    rvq = ResidualVQ(8, n_q=2, codebook_size=16, quantizer_dropout=False)
    rvq.initialize(torch.randn(4, 8, 16))
    rvq.eval()  # no EMA update, so the codebooks after the call are those used
    x = torch.randn(2, 8, 16, requires_grad=True)
    result = rvq(x)
    # value is the quantized sum, gradient reaches x unchanged
    assert torch.allclose(result.quantized, rvq.decode(result.codes), atol=1e-5)
    result.quantized.sum().backward()
    assert x.grad is not None and torch.allclose(x.grad, torch.ones_like(x))
    x.grad = None
    rvq.train()
    result = rvq(x)
    result.commit_loss.backward()
    assert x.grad is not None and float(x.grad.abs().sum()) > 0
    assert not any(p.requires_grad for p in rvq.parameters())  # codebooks are buffers


def test_n_q_zero_passes_through_and_bad_inputs_raise() -> None:
    rvq = ResidualVQ(4, n_q=2, codebook_size=8)
    x = torch.randn(1, 4, 5)
    result = rvq(x, n_q=0)
    assert result.n_q == 0 and result.codes.shape == (1, 0, 5) and torch.equal(result.quantized, x)
    with pytest.raises(ValueError, match="n_q"):
        rvq(x, n_q=3)
    with pytest.raises(ValueError, match="frames"):
        rvq(torch.randn(1, 3, 5))
    with pytest.raises(ValueError, match="codebooks"):
        rvq.decode(torch.zeros(1, 3, 5, dtype=torch.long))
    with pytest.raises(ValueError, match="within"):
        rvq.decode(torch.full((1, 1, 5), 8, dtype=torch.long))


def test_state_dict_carries_codebooks() -> None:
    torch.manual_seed(7)
    a = ResidualVQ(4, n_q=2, codebook_size=8)
    a.initialize(torch.randn(2, 4, 40))
    b = ResidualVQ(4, n_q=2, codebook_size=8)
    b.load_state_dict(a.state_dict())
    x = torch.randn(1, 4, 9)
    assert b.initialized and torch.equal(a.encode(x), b.encode(x))


def test_plus_plus_seeding_matches_the_plain_distance_computation() -> None:
    """The seeding's cached norms give the same seeds as recomputing each distance."""
    from audiogen_studio.models.kmeans import _plus_plus, squared_distances

    x = torch.randn(2000, 8, generator=torch.Generator().manual_seed(1))

    def reference(k: int, generator: torch.Generator) -> torch.Tensor:
        first = int(torch.randint(x.shape[0], (1,), generator=generator))
        rows, closest = [first], squared_distances(x, x[first : first + 1])[:, 0]
        for _ in range(1, k):
            idx = int(torch.multinomial(closest / closest.sum(), 1, generator=generator))
            rows.append(idx)
            closest = torch.minimum(closest, squared_distances(x, x[idx : idx + 1])[:, 0])
        return x[rows]

    fast = _plus_plus(x, 32, torch.Generator().manual_seed(7))
    torch.testing.assert_close(fast, reference(32, torch.Generator().manual_seed(7)))
