"""What the two networks are trained to do: an *objective* is D's loss, G's loss and the
penalties on D's input gradients, all given D's logits or D itself. The training step
(gan.py) asks an :class:`Objective` for its losses and never names one.

Adding an objective is one entry in ``OBJECTIVES`` (its losses on logits, its plot label, and
a penalty it cannot do without), its name and words in ``config.OBJECTIVE_HELP`` (which ``--loss``
offers without importing torch; in ``SHIFT_FREE_OBJECTIVES`` too if its losses see only
differences of D's logits, which ADA's r_t then cannot read) and its test.

Penalties are zero-centred gradient penalties on D's input (Mescheder et al., 2018): R1 on
real faces, R2 on generated ones, ``gamma / 2 * E[|grad_x D(x)|^2]``; WGAN-GP's is one-centred
on points between the two (Gulrajani et al., 2017). R1 and R2 can be lazy (StyleGAN2): taken
every ``every`` steps and scaled by ``every``, so their average weight is the same.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..config import OBJECTIVE_NAMES

Augment = Callable[[Tensor], Tensor]


def _bce_d(real: Tensor, fake: Tensor) -> Tensor:
    return (F.binary_cross_entropy_with_logits(real, torch.ones_like(real))
            + F.binary_cross_entropy_with_logits(fake, torch.zeros_like(fake)))


def _bce_g(fake: Tensor, real: Tensor | None) -> Tensor:
    return F.binary_cross_entropy_with_logits(fake, torch.ones_like(fake))


def _hinge_d(real: Tensor, fake: Tensor) -> Tensor:
    return F.relu(1 - real).mean() + F.relu(1 + fake).mean()


def _hinge_g(fake: Tensor, real: Tensor | None) -> Tensor:
    return -fake.mean()


def _rpgan_d(real: Tensor, fake: Tensor) -> Tensor:
    return F.softplus(fake - real).mean()  # each real face paired with one generated face


def _rpgan_g(fake: Tensor, real: Tensor | None) -> Tensor:
    return F.softplus(real - fake).mean()


def _wgan_d(real: Tensor, fake: Tensor) -> Tensor:
    return fake.mean() - real.mean()


@dataclass(frozen=True)
class Penalty:
    """A gradient penalty on D's input at ``points(real, fake)``: ``weight * scale *
    E[(|grad| - centre)^2]``, taken every ``every`` steps (and multiplied by ``every``)."""

    name: str
    weight: float
    points: Callable[[Tensor, Tensor], Tensor]
    centre: float = 0.0
    scale: float = 0.5  # R1/R2's gamma / 2; WGAN-GP's lambda stands alone
    every: int = 1

    def due(self, iteration: int) -> bool:
        return iteration % self.every == 0

    def __call__(self, netD: nn.Module, real: Tensor, fake: Tensor, augment: Augment
                 ) -> tuple[Tensor, Tensor]:
        """(the term added to D's loss, E[|grad|^2] for the record). In fp32 whatever the
        step's autocast: the squared gradients of a half-precision D underflow."""
        x = self.points(real.detach().float(), fake.detach().float()).requires_grad_(True)
        with torch.autocast(x.device.type, enabled=False):
            logits = netD(augment(x)).float()
        (grad,) = torch.autograd.grad(logits.sum(), x, create_graph=True)
        norms2 = grad.square().flatten(1).sum(1)
        gap = norms2 if self.centre == 0 else (norms2.add(1e-12).sqrt() - self.centre).square()
        return self.weight * self.scale * self.every * gap.mean(), norms2.mean().detach()


def _on_real(real: Tensor, fake: Tensor) -> Tensor:
    return real


def _on_fake(real: Tensor, fake: Tensor) -> Tensor:
    return fake


def _between(real: Tensor, fake: Tensor) -> Tensor:
    t = torch.rand(real.size(0), 1, 1, 1, device=real.device)
    return torch.lerp(fake, real, t)


@dataclass(frozen=True)
class Objective:
    """D's loss on (real logits, fake logits), G's on (fake logits, real logits), how plots
    name them, and a penalty that belongs to the objective itself. ``pairs`` says that G's
    loss reads D's logits on the real batch too (a relativistic loss), which then costs one
    more D forward pass in G's step."""

    d_loss: Callable[[Tensor, Tensor], Tensor]
    g_loss: Callable[[Tensor, Tensor | None], Tensor]
    label: str
    pairs: bool = False
    penalty: Penalty | None = None


OBJECTIVES: dict[str, Objective] = {
    # The DCGAN paper's (with the non-saturating G loss).
    "bce": Objective(_bce_d, _bce_g, "BCE loss"),
    # SNGAN's, BigGAN's and DiffAugment's.
    "hinge": Objective(_hinge_d, _hinge_g, "hinge loss"),
    # Relativistic pairing (Jolicoeur-Martineau, 2019) in R3GAN's softplus form (Huang et al.,
    # 2024), which with R1 and R2 is locally convergent and resists mode dropping.
    "rpgan": Objective(_rpgan_d, _rpgan_g, "relativistic pairing loss", pairs=True),
    # Gulrajani et al., 2017: the critic's loss with its one-centred penalty, lambda 10.
    "wgan-gp": Objective(_wgan_d, _hinge_g, "Wasserstein loss (critic)",
                         penalty=Penalty("gp", 10.0, _between, centre=1.0, scale=1.0)),
}


if tuple(OBJECTIVES) != OBJECTIVE_NAMES:
    raise ImportError("config.OBJECTIVE_HELP must name objectives.OBJECTIVES' entries in order")


# The penalties any objective can add, by name: where each is taken. Each one's weight is the
# setting --NAME-gamma (config/settings.py); a step records E|grad|^2 under its name.
OPTIONAL_PENALTIES: dict[str, Callable[[Tensor, Tensor], Tensor]] = {"r1": _on_real, "r2": _on_fake}


def penalty_keys() -> list[str]:
    """The record keys of every penalty a step can take (the loss figure draws each found)."""
    return [*OPTIONAL_PENALTIES, *(o.penalty.name for o in OBJECTIVES.values() if o.penalty)]


def penalties(objective: str, every: int, **gammas: float) -> list[Penalty]:
    """The objective's own penalty and each optional one whose gamma (by name) is above 0."""
    own = OBJECTIVES[objective].penalty
    return [*([own] if own is not None else []),
            *(Penalty(name, gammas[name], points, every=every)
              for name, points in OPTIONAL_PENALTIES.items() if gammas.get(name, 0) > 0)]


def gammas_of(settings: Any) -> dict[str, float]:
    """Each optional penalty's weight from the settings (``--r1-gamma``, ...)."""
    return {name: getattr(settings, f"{name}_gamma") for name in OPTIONAL_PENALTIES}
