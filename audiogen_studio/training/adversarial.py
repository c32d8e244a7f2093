"""The adversarial half of a codec step, shared by the codec and mel codec trainers.

SoundStream §3.4 / EnCodec §3.4: a multi-scale STFT discriminator
(:class:`~audiogen_studio.models.discriminator.MultiScaleSTFTDiscriminator`) learns with the hinge
loss to tell real audio from decoded audio; the decoder then gets the generator hinge loss and
the feature-matching loss through the *updated* discriminator. :class:`Adversary` holds the
discriminator, its optimizer and loss scaler, and does both halves in
:meth:`Adversary.generator_losses`; :func:`resolve_discriminator` turns ``--discriminator``
into a config and checks it against a checkpoint's.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from audiogen_studio.models.discriminator import (
    DiscriminatorConfig,
    MultiScaleSTFTDiscriminator,
    discriminator_hinge_loss,
    feature_matching_loss,
    generator_hinge_loss,
)
from audiogen_studio.training.audio_dataset import TrainingError
from audiogen_studio.training.common import autocast

__all__ = [
    "NAMED_DISCRIMINATORS",
    "AdversarialLosses",
    "Adversary",
    "named_discriminator",
    "optional_adversary",
    "resolve_discriminator",
]

#: Named discriminator sizes (``--discriminator``); ``none`` trains without adversarial losses.
NAMED_DISCRIMINATORS: dict[str, DiscriminatorConfig | None] = {
    "default": DiscriminatorConfig(),
    "small": DiscriminatorConfig(n_ffts=(1024, 512, 256), filters=16),
    "tiny": DiscriminatorConfig(n_ffts=(512, 256), filters=4, dilations=(1, 2)),
    "none": None,
}


def named_discriminator(choice: str | DiscriminatorConfig | None) -> DiscriminatorConfig | None:
    """The config ``choice`` names (``None`` and ``"none"``: no discriminator).

    Raises:
        TrainingError: an unknown name.
    """
    if choice is None or isinstance(choice, DiscriminatorConfig):
        return choice
    if choice not in NAMED_DISCRIMINATORS:
        names = ", ".join(NAMED_DISCRIMINATORS)
        raise TrainingError(f"unknown discriminator {choice!r} (use {names})")
    return NAMED_DISCRIMINATORS[choice]


def resolve_discriminator(
    choice: str | DiscriminatorConfig | None,
    stored: Mapping[str, Any] | None,
    *,
    resuming: bool,
    what: str,
    may_join: bool = False,
) -> DiscriminatorConfig | None:
    """The discriminator a run trains with, checked against the checkpoint's (``stored``).

    A resumed run must ask for the checkpoint's discriminator; with ``may_join`` a checkpoint
    trained without one may also take one on now (a GAN phase after reconstruction training).

    Raises:
        TrainingError: an unknown name, or another discriminator than the checkpoint's.
    """
    config = named_discriminator(choice)
    if not resuming:
        return config
    before = None if stored is None else DiscriminatorConfig.from_dict(stored)
    if before == config or (may_join and before is None):
        return config
    raise TrainingError(
        f"{what} was trained with another discriminator ({before}); pass the same "
        "--discriminator or use another --out"
    )


@dataclass(frozen=True)
class AdversarialLosses:
    """The generator's terms (tensors with gradients) and the discriminator's loss value."""

    adv: torch.Tensor
    feat: torch.Tensor
    disc: float


class Adversary:
    """A discriminator with its optimizer: updates itself, then scores the generator.

    Args:
        disc: the discriminator module (its parameters are clipped and frozen around the
            generator's pass).
        train_disc: what is called (``disc`` or its ``DistributedDataParallel`` wrapper).
        opt: the discriminator's optimizer.
        grad_clip: gradient-norm clipping (0 disables).
        device, amp_dtype: autocast of the forward passes (float16 also gets a loss scaler).
    """

    def __init__(
        self,
        *,
        disc: MultiScaleSTFTDiscriminator,
        train_disc: nn.Module,
        opt: torch.optim.Optimizer,
        grad_clip: float,
        device: torch.device,
        amp_dtype: torch.dtype | None,
    ) -> None:
        self.disc = disc
        self.train_disc = train_disc
        self.opt = opt
        self.grad_clip = grad_clip
        self.device = device
        self.amp_dtype = amp_dtype
        self.scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16)

    def generator_losses(self, real: torch.Tensor, fake: torch.Tensor) -> AdversarialLosses:
        """Update the discriminator on ``real`` vs ``fake.detach()`` (both ``[B, 1, T]``), then
        return the generator hinge and feature-matching losses of ``fake`` through it."""
        with autocast(self.device, self.amp_dtype):
            both = self.train_disc(torch.cat((real, fake.detach().to(real.dtype))))
        batch = real.shape[0]
        d_loss = discriminator_hinge_loss(
            [o[:batch] for o in both.logits], [o[batch:] for o in both.logits]
        )
        self.opt.zero_grad(set_to_none=True)
        self.scaler.scale(d_loss).backward()  # type: ignore[no-untyped-call]
        if self.grad_clip > 0:
            self.scaler.unscale_(self.opt)
            nn.utils.clip_grad_norm_(self.disc.parameters(), self.grad_clip)
        self.scaler.step(self.opt)
        self.scaler.update()
        self.disc.requires_grad_(False)
        try:
            with autocast(self.device, self.amp_dtype):
                scored = self.disc(fake)
                with torch.no_grad():
                    reference = self.disc(real)
            adv = generator_hinge_loss(scored.logits)
            feat = feature_matching_loss(reference.features, scored.features)
        finally:
            self.disc.requires_grad_(True)
        return AdversarialLosses(adv=adv, feat=feat, disc=float(d_loss.detach()))


def optional_adversary(
    disc: MultiScaleSTFTDiscriminator | None,
    train_disc: nn.Module | None,
    opt: torch.optim.Optimizer | None,
    *,
    grad_clip: float,
    device: torch.device,
    amp_dtype: torch.dtype | None,
) -> Adversary | None:
    """An :class:`Adversary` when a discriminator trains (all three given), else ``None``."""
    if disc is None or train_disc is None or opt is None:
        return None
    return Adversary(
        disc=disc,
        train_disc=train_disc,
        opt=opt,
        grad_clip=grad_clip,
        device=device,
        amp_dtype=amp_dtype,
    )
