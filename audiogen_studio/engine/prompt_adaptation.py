"""Prompt adaptation: a few gradient steps of a token LM on the prompt's own tokens before it
continues them.

Test-time training (Sun et al. 2020, "Test-Time Training with Self-Supervision for
Generalization under Distribution Shifts", §2): the prompt is the one example there is of what
the continuation must sound like, so the stage's own training loss on it -- for the coarse LM
the next-token loss of the prompt's interleaved ``[semantic, coarse codes]`` sequence (AudioLM
§4.2; :meth:`~audiogen_studio.models.audiolm_layout.TokenLayout.stage_sequence`) -- adapts a copy
of the LM to the prompt's voice or instrument. It is the whole-model fine-tuning of few-shot
speaker adaptation (Arik et al. 2018, "Neural Voice Cloning with a Few Samples", §3.1) with the
prompt as the samples. The small CPU-trained LMs shipped here do not carry an unseen voice in
context (the speech coarse LM's loss is 3.29 nats on its training voices, 4.76 on held-out
ones); a few steps on the prompt do (figures in ``models/speech/README.md``).

Only the coarse LM is adapted by default: it turns semantic tokens into the codec's codes, so
it holds how the speaker or instrument sounds, while the semantic LM, left alone, keeps
inventing the content instead of repeating the prompt's. The adapted copy never replaces the
loaded model; :class:`AdaptationCache` keeps the last few copies, so more takes of the same
prompt do not pay for the steps again.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F  # noqa: N812

from audiogen_studio.engine.adaptation_settings import AdaptationSettings
from audiogen_studio.engine.api import GenerationError
from audiogen_studio.models.lm import TokenLM

__all__ = [
    "AdaptationCache",
    "AdaptationCancelledError",
    "AdaptationSettings",
    "adapt_copy",
    "last_windows",
]

#: Adapted copies an engine keeps (one per prompt and stage).
CACHE_SIZE = 4


class AdaptationCancelledError(Exception):
    """``should_stop`` said to stop before the last step."""


def last_windows(
    sequence: torch.Tensor, mask: torch.Tensor, *, capacity: int, group: int, windows: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Up to ``windows`` training windows from the end of ``sequence [1, L]`` (mask ``[L]``).

    A window holds ``capacity`` ids rounded down to whole groups (all of a shorter sequence)
    and starts on a group boundary, as the LM's training windows did. The last window ends at the
    sequence's end; the others are spread evenly over the rest (overlapping when the sequence is
    shorter than ``windows`` whole windows). Returns ``[n, W]`` and the ``[W]`` mask (the same
    for every window, since each starts on a group boundary).
    """
    if sequence.ndim != 2 or sequence.shape[0] != 1 or mask.shape != sequence.shape[1:]:
        raise ValueError("expected a sequence [1, L] and its mask [L]")
    length = sequence.shape[1]
    width = min(length, capacity) // group * group
    if width < 2 * group:
        raise GenerationError("the prompt is too short to adapt to (fewer than two frames)")
    last = (length - width) // group * group
    count = min(windows, last // group + 1)
    starts = sorted({round(last * i / max(1, count - 1)) // group * group for i in range(count)})
    if count == 1:
        starts = [last]
    batch = torch.cat([sequence[:, a : a + width] for a in starts], dim=0)
    return batch, mask[:width]


def _span_loss(
    model: TokenLM,
    features: torch.Tensor,
    targets: torch.Tensor,
    spans: dict[tuple[int, int], torch.Tensor],
) -> torch.Tensor:
    """Mean cross-entropy of ``targets [B, L - 1]`` given the LM's ``features [B, L - 1, D]``
    (:meth:`~audiogen_studio.models.lm.TokenLM.features`), where each position's softmax runs
    over its span ``[lo, hi)`` of the vocabulary only (``spans``: span -> its positions
    ``[n]``), as generation samples it; only those positions are projected onto the vocabulary.
    """
    weight = model.output_weight  # [V, D]
    total = features.new_zeros(())
    count = 0
    for (lo, hi), positions in spans.items():
        logits = features[:, positions] @ weight[lo:hi].T  # [B, n, hi - lo]
        wanted = targets[:, positions] - lo  # [B, n]
        total = total + F.cross_entropy(
            logits.float().flatten(0, 1), wanted.flatten(), reduction="sum"
        )
        count += wanted.numel()
    return total / max(1, count)


class _Adam:
    """Adam (Kingma & Ba 2015, Algorithm 1; ``torch.optim.Adam``'s defaults: β = (0.9, 0.999),
    ε = 1e-8, no weight decay), written out because constructing a ``torch.optim`` optimizer
    imports ``torch._dynamo`` (~1.4 s on a 2-core CPU), which every first adapting generation
    of a process would wait for. Equal to ``torch.optim.Adam`` (tested)."""

    def __init__(
        self, params: list[torch.nn.Parameter], lr: float, betas: tuple[float, float] = (0.9, 0.999)
    ) -> None:
        self.params = params
        self.lr = lr
        self.beta1, self.beta2 = betas
        self.eps = 1e-8
        self.steps = 0
        self.m = [torch.zeros_like(p) for p in params]
        self.v = [torch.zeros_like(p) for p in params]

    @torch.no_grad()
    def step(self) -> None:
        """One update of every parameter that has a gradient."""
        self.steps += 1
        correction1 = 1 - self.beta1**self.steps
        correction2 = 1 - self.beta2**self.steps
        for p, m, v in zip(self.params, self.m, self.v, strict=True):
            if p.grad is None:
                continue
            m.lerp_(p.grad, 1 - self.beta1)
            v.mul_(self.beta2).addcmul_(p.grad, p.grad, value=1 - self.beta2)
            denominator = (v / correction2).sqrt_().add_(self.eps)
            p.addcdiv_(m, denominator, value=-self.lr / correction1)

    def zero_grad(self) -> None:
        """Drop the gradients."""
        for p in self.params:
            p.grad = None


def adapt_copy(
    model: TokenLM,
    sequences: torch.Tensor,
    mask: torch.Tensor,
    *,
    steps: int,
    lr: float,
    spans: Sequence[tuple[int, int] | None] | None = None,
    dropout: bool = False,
    mix: float = 1.0,
    blocks: int | None = None,
    seed: int = 0,
    should_stop: Callable[[], bool] | None = None,
) -> TokenLM:
    """A copy of ``model`` after ``steps`` Adam steps of its next-token loss on
    ``sequences [B, L]`` at the positions ``mask [L]`` marks (the ids it learns to predict).

    Args:
        spans: per position of the sequence, the ``[lo, hi)`` id range generation samples it
            from (``None`` or a ``None`` entry: the whole vocabulary); with spans the softmax of
            each position runs over its range only, which is what generation draws from and
            skips most of the output projection.
        dropout: train with the LM's dropout (off by default: adaptation takes a handful of
            steps on one window, and attention without dropout runs a fused kernel).
        mix: the copy's weights end at ``θ0 + mix·(θ − θ0)`` between the model's ``θ0`` and
            the adapted ``θ`` (WiSE-FT's weight-space ensemble; 1: ``θ``).
        blocks: train only the top ``blocks`` blocks and the final norm (``None``: every
            weight); the lower blocks' output ``[B, L - 1, D]`` is computed once.
        seed: seeds the dropout masks on a forked RNG, so the result depends only on the
            arguments.

    ``model`` itself is not touched; the copy comes back in eval mode without gradients.

    Raises:
        AdaptationCancelledError: ``should_stop()`` returned true before a step.
    """
    length = sequences.shape[1]
    predicted = [i for i in range(1, length) if bool(mask[i])]
    if not predicted:
        raise GenerationError("nothing to adapt to: no position of the prompt is predicted")
    device = next(model.parameters()).device
    devices = [device] if device.type == "cuda" else []
    # callers may sit in inference mode (the engine does): the copy must be an ordinary module
    with torch.inference_mode(False), torch.enable_grad(), torch.random.fork_rng(devices):
        copy = TokenLM(model.config)
        copy.load_state_dict(model.state_dict())
        copy.to(device)
        inputs = sequences.clone().to(device)
        # position i of the LM's output predicts id i + 1
        groups: dict[tuple[int, int], list[int]] = {}
        for i in predicted:
            span = None if spans is None else spans[i]
            groups.setdefault(span or (0, model.config.vocab_size), []).append(i - 1)
        by_span = {k: torch.tensor(v, device=device) for k, v in groups.items()}
        targets = inputs[:, 1:]
        copy.train(dropout)
        torch.manual_seed(seed)
        start = 0 if blocks is None else max(0, model.config.depth - blocks)
        if blocks is None:
            trained = list(copy.parameters())
            lower = None
        else:
            trained = [p for b in copy.block_list[start:] for p in b.parameters()]
            trained += list(copy.norm_f.parameters())
            copy.requires_grad_(False)
            for p in trained:
                p.requires_grad_(True)
            with torch.no_grad():  # the frozen part runs once: [B, L - 1, D]
                lower = copy.residual(inputs[:, :-1], upto=start)
        optimizer = _Adam(trained, lr=lr)
        for _ in range(steps):
            if should_stop is not None and should_stop():
                raise AdaptationCancelledError
            if lower is None:
                features = copy.features(inputs[:, :-1])
            else:
                features = copy.features_from(lower, start)
            loss = _span_loss(copy, features, targets, by_span)
            optimizer.zero_grad()
            loss.backward()  # type: ignore[no-untyped-call]
            optimizer.step()
        if mix != 1.0:
            with torch.no_grad():
                for adapted, original in zip(copy.parameters(), model.parameters(), strict=True):
                    adapted.lerp_(original.to(adapted.device), 1.0 - mix)
    copy.eval()
    copy.requires_grad_(False)
    return copy


class AdaptationCache:
    """The last :data:`CACHE_SIZE` adapted LMs, keyed by stage, settings and the exact
    training windows (so the same prompt with the same settings is adapted once)."""

    def __init__(self, size: int = CACHE_SIZE) -> None:
        self.size = size
        self._items: OrderedDict[str, TokenLM] = OrderedDict()

    @staticmethod
    def key(stage: str, settings: AdaptationSettings, sequences: torch.Tensor) -> str:
        """A digest of what decides the adapted weights."""
        digest = hashlib.sha256()
        decisive = (stage, settings.steps, settings.lr, settings.mix, settings.blocks)
        digest.update(repr(decisive).encode())
        digest.update(repr(tuple(sequences.shape)).encode())
        digest.update(sequences.detach().to("cpu", torch.int64).numpy().tobytes())
        return digest.hexdigest()

    def get(self, key: str) -> TokenLM | None:
        """The cached model (now the most recent), or ``None``."""
        model = self._items.get(key)
        if model is not None:
            self._items.move_to_end(key)
        return model

    def put(self, key: str, model: TokenLM) -> None:
        """Keep ``model``, dropping the oldest beyond the size."""
        self._items[key] = model
        self._items.move_to_end(key)
        while len(self._items) > self.size:
            self._items.popitem(last=False)

    def __len__(self) -> int:
        return len(self._items)

    def clear(self) -> None:
        """Forget every adapted model."""
        self._items.clear()
