"""Next-token sampling: greedy, top-k, nucleus, allowed ids, seeds, the sampled distribution."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import torch

from audiogen_studio.models.sampling import filter_logits, sample_next


@pytest.fixture(autouse=True)
def _one_torch_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _logits(b: int = 4, v: int = 50, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return 2.0 * torch.randn(b, v, generator=g)


def test_temperature_zero_is_argmax_and_draws_nothing() -> None:
    logits = _logits()
    g = torch.Generator().manual_seed(1)
    state = g.get_state()
    ids = sample_next(logits, temperature=0.0, generator=g, top_k=5, top_p=0.5)
    assert torch.equal(ids, logits.argmax(-1))
    assert torch.equal(g.get_state(), state)  # greedy consumes no randomness
    # greedy inside an allowed range: the best id of that range
    ids = sample_next(logits, temperature=0.0, allowed=(10, 20))
    assert torch.equal(ids, logits[:, 10:20].argmax(-1) + 10)


def test_top_k_never_leaves_the_k_best() -> None:
    logits = _logits(b=3, v=40)
    best = torch.topk(logits, 5, dim=-1).indices
    g = torch.Generator().manual_seed(0)
    seen: list[set[int]] = [set() for _ in range(3)]
    for _ in range(400):
        ids = sample_next(logits, temperature=2.0, top_k=5, generator=g)
        for row in range(3):
            assert int(ids[row]) in set(best[row].tolist())
            seen[row].add(int(ids[row]))
    # at temperature 2 every one of the 5 is drawn at least once in 400 draws
    assert all(len(s) == 5 for s in seen)


def test_top_p_keeps_the_smallest_prefix_reaching_p() -> None:
    logits = torch.log(torch.tensor([[0.5, 0.25, 0.15, 0.06, 0.04]]))
    kept = torch.isfinite(filter_logits(logits, top_p=0.7)[0])
    assert kept.tolist() == [True, True, False, False, False]  # 0.5 < 0.7 <= 0.75
    kept = torch.isfinite(filter_logits(logits, top_p=0.75)[0])
    assert kept.tolist() == [True, True, False, False, False]
    kept = torch.isfinite(filter_logits(logits, top_p=0.76)[0])
    assert kept.tolist() == [True, True, True, False, False]
    kept = torch.isfinite(filter_logits(logits, top_p=0.1)[0])
    assert kept.tolist() == [True, False, False, False, False]  # the best is always kept
    g = torch.Generator().manual_seed(0)
    draws = torch.stack([sample_next(logits, top_p=0.7, generator=g) for _ in range(300)])
    assert set(draws.flatten().tolist()) == {0, 1}
    # renormalised over the nucleus: 0.5 / 0.75 = 2/3 of the draws are id 0
    assert abs(float((draws == 0).float().mean()) - 2 / 3) < 0.1


def test_sampled_frequencies_follow_the_tempered_softmax() -> None:
    logits = torch.tensor([[1.0, 0.0, -1.0, 2.0]])
    g = torch.Generator().manual_seed(3)
    n = 4000
    draws = torch.stack([sample_next(logits, temperature=0.5, generator=g) for _ in range(n)])
    freq = torch.bincount(draws.flatten(), minlength=4).float() / n
    expected = torch.softmax(logits[0] / 0.5, -1)
    assert torch.allclose(freq, expected, atol=0.025), (freq, expected)
    filtered = filter_logits(logits, temperature=0.5)
    assert torch.allclose(torch.softmax(filtered, -1), expected[None])


def test_filter_logits_matches_what_is_sampled() -> None:
    logits = _logits(b=2, v=30, seed=5)
    out = filter_logits(logits, temperature=0.7, top_k=8, top_p=0.9, allowed=(4, 24))
    g = torch.Generator().manual_seed(0)
    for _ in range(200):
        ids = sample_next(logits, temperature=0.7, top_k=8, top_p=0.9, allowed=(4, 24), generator=g)
        assert torch.isfinite(out.gather(1, ids[:, None])).all()
    assert (torch.isfinite(out).sum(-1) <= 8).all()
    assert not torch.isfinite(out[:, :4]).any() and not torch.isfinite(out[:, 24:]).any()


def test_allowed_range_and_mask_are_respected() -> None:
    logits = _logits(b=4, v=64)
    logits[:, 0] = 50.0  # a dominant id outside the allowed set
    g = torch.Generator().manual_seed(0)
    for _ in range(100):
        ids = sample_next(logits, generator=g, allowed=(16, 32))
        assert ((ids >= 16) & (ids < 32)).all()
    mask = torch.zeros(64, dtype=torch.bool)
    mask[[3, 40, 41]] = True
    for _ in range(100):
        ids = sample_next(logits, generator=g, allowed=mask, top_k=2)
        assert set(ids.tolist()) <= {3, 40, 41}
    rows = torch.zeros(4, 64, dtype=torch.bool)
    for r in range(4):
        rows[r, 10 * r] = True
    ids = sample_next(logits, generator=g, allowed=rows)
    assert ids.tolist() == [0, 10, 20, 30]


def test_seeded_draws_repeat_and_per_row_generators_match_alone() -> None:
    logits = _logits(b=3, v=100)

    def run(seed: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(seed)
        return torch.stack([sample_next(logits, generator=g, top_p=0.95) for _ in range(20)])

    assert torch.equal(run(7), run(7))
    assert not torch.equal(run(7), run(8))
    gens = [torch.Generator().manual_seed(100 + r) for r in range(3)]
    batched = torch.stack([sample_next(logits, generator=gens, top_k=20) for _ in range(20)])
    for r in range(3):
        g = torch.Generator().manual_seed(100 + r)
        alone = torch.stack(
            [sample_next(logits[r : r + 1], generator=g, top_k=20) for _ in range(20)]
        )
        assert torch.equal(alone[:, 0], batched[:, r])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"temperature": -1.0}, "temperature"),
        ({"temperature": float("nan")}, "temperature"),
        ({"top_k": 0}, "top_k"),
        ({"top_p": 0.0}, "top_p"),
        ({"top_p": 1.5}, "top_p"),
        ({"allowed": (5, 5)}, "allowed"),
        ({"allowed": (0, 51)}, "allowed"),
        ({"allowed": torch.ones(49, dtype=torch.bool)}, "mask"),
        ({"allowed": torch.ones(50)}, "mask"),
        ({"allowed": torch.zeros(50, dtype=torch.bool)}, "finite"),
    ],
)
def test_bad_parameters_are_clear_errors(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        sample_next(_logits(b=2, v=50), **kwargs)


def test_wrong_number_of_generators_and_shapes() -> None:
    with pytest.raises(ValueError, match="generators"):
        sample_next(_logits(b=2), generator=[torch.Generator()])
    with pytest.raises(ValueError, match=r"\[B, V\]"):
        sample_next(torch.zeros(5))
