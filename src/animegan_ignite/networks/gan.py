"""The networks, their optimizers and the one DCGAN ``training_step`` that the Ignite ``Engine``
runs (the handlers that make it a trainer are in handlers.py)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import ignite.distributed as idist
import torch
from ignite.engine import Engine
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from .architecture import Architecture
from .objectives import OBJECTIVES, Penalty

OUTPUT_KEYS = ("loss_d", "loss_g", "d_x", "d_g_z1", "d_g_z2")
ADA_KEYS = ("d_real_sign", "d_real_logit", "d_fake_logit")  # AdaptiveAugment takes them out


@dataclass
class GAN:
    """The two networks, their optimizers, and where they live."""

    netG: nn.Module
    netD: nn.Module
    optG: torch.optim.Optimizer
    optD: torch.optim.Optimizer
    device: torch.device
    nz: int


def build_gan(arch: Architecture, lr: float, beta1: float, device: torch.device,
              sync_bn: bool = False, lr_d: float | None = None, channels_last: bool = False,
              beta2: float = 0.999, freeze_d: int = 0) -> GAN:
    """G and D of ``arch`` with Adam(betas=(beta1, beta2)): G at ``lr``, D at ``lr_d`` (default
    ``lr``; two rates are the TTUR of Heusel et al., 2017); D's first ``freeze_d`` blocks keep
    their weights (FreezeD, Mo et al., 2020: fine-tuning from a trained D). With several
    processes the models go through
    ``idist.auto_model`` (DistributedDataParallel, optionally SyncBatchNorm); with one, they stay
    plain modules on ``device`` (auto_model would also move them to the GPU when the user asked
    for the CPU, and wrap them in DataParallel on a multi-GPU machine)."""
    fmt = torch.channels_last if channels_last else torch.preserve_format
    netG = arch.generator().to(device, memory_format=fmt)
    netD = arch.discriminator().to(device, memory_format=fmt)
    netD.freeze(freeze_d)  # before DDP, which registers the parameters it all-reduces
    if idist.get_world_size() > 1:
        netG, netD = idist.auto_model(netG, sync_bn=sync_bn), idist.auto_model(netD, sync_bn=sync_bn)
    betas = (beta1, beta2)
    optG = idist.auto_optim(torch.optim.Adam(netG.parameters(), lr=lr, betas=betas))
    optD = idist.auto_optim(torch.optim.Adam(netD.parameters(), lr=lr if lr_d is None else lr_d,
                                             betas=betas))
    return GAN(netG, netD, optG, optD, device, arch.nz)


PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass
class Speed:
    """How the step runs: autocast precision, memory format, torch.compile."""

    precision: str = "fp32"
    channels_last: bool = False
    compile: bool = False


def make_scalers(gan: GAN, precision: str) -> tuple[torch.amp.GradScaler, torch.amp.GradScaler]:
    """One GradScaler per optimizer (enabled for fp16 only): each network's loss scale adapts
    to its own gradients, and each ``step`` is followed by its own ``update``."""
    enabled = precision == "fp16"
    return (torch.amp.GradScaler(gan.device.type, enabled=enabled),
            torch.amp.GradScaler(gan.device.type, enabled=enabled))


@contextlib.contextmanager
def frozen(net: nn.Module) -> Iterator[None]:
    """D as G's step uses it: gradients flow through it to G, but none are computed for its own
    weights (D's next step would zero them unused) and, under DDP, none are all-reduced. As in
    StyleGAN2-ADA. Bit-identical losses, fewer operations (``scripts/benchmark.py`` measures
    it against the trainable-D step)."""
    params = [p for p in net.parameters() if p.requires_grad]
    for p in params:
        p.requires_grad_(False)
    try:
        with net.no_sync() if isinstance(net, DistributedDataParallel) else contextlib.nullcontext():
            yield
    finally:
        for p in params:
            p.requires_grad_(True)


def make_training_step(gan: GAN, speed: Speed | None = None,
                       scalers: tuple[torch.amp.GradScaler, torch.amp.GradScaler] | None = None,
                       loss: str = "bce", augment: Callable[[torch.Tensor], torch.Tensor] | None = None,
                       penalties: Sequence[Penalty] = ()
                       ) -> Callable[[Engine, Any], dict[str, float]]:
    """One GAN iteration: D on a real batch and a fake batch (the objective ``loss``'s D loss,
    plus each of ``penalties`` due at this iteration), then G on the same fake batch (its G
    loss, through a :func:`frozen` D). Fresh noise every step. ``augment`` (DiffAugment)
    transforms every batch just before D sees it, real and fake, in both steps. Losses are
    taken on D's logits, the only form autocast accepts for BCE. The outputs report
    ``sigmoid(D(x))``: D's probabilities under BCE, a monotone score otherwise, and each
    penalty taken, as E[|grad|^2] under its name."""
    speed = speed or Speed()
    objective = OBJECTIVES[loss]
    augment = augment or (lambda x: x)
    optG, optD = gan.optG, gan.optD
    netG = torch.compile(gan.netG) if speed.compile else gan.netG  # the originals are saved
    netD = torch.compile(gan.netD) if speed.compile else gan.netD
    dtype = PRECISIONS[speed.precision]
    scaler_d, scaler_g = scalers or make_scalers(gan, speed.precision)
    fmt = torch.channels_last if speed.channels_last else torch.contiguous_format

    def autocast():
        return torch.autocast(gan.device.type, dtype=dtype, enabled=dtype is not None)

    def training_step(engine: Engine, batch: Any) -> dict[str, float]:
        real = (batch[0] if isinstance(batch, (list, tuple)) else batch).to(
            gan.device, non_blocking=True).contiguous(memory_format=fmt)
        gan.netG.train()
        gan.netD.train()

        optD.zero_grad(set_to_none=True)
        with autocast():
            logits_real = netD(augment(real))
            fake = netG(torch.randn(real.size(0), gan.nz, 1, 1, device=gan.device))
            logits_fake = netD(augment(fake.detach()))
            loss_d = objective.d_loss(logits_real.float(), logits_fake.float())
        total, taken = loss_d, {}
        for penalty in penalties:  # double backward: through the plain D, never a compiled one
            if penalty.due(engine.state.iteration):
                term, taken[penalty.name] = penalty(gan.netD, real, fake, augment)
                total = total + term
        scaler_d.scale(total).backward()
        scaler_d.step(optD)
        scaler_d.update()

        optG.zero_grad(set_to_none=True)
        with frozen(gan.netD):
            with autocast():
                logits_g = netD(augment(fake))
                paired = None
                if objective.pairs:
                    with torch.no_grad():
                        paired = netD(augment(real)).float()
                loss_g = objective.g_loss(logits_g.float(), paired)
            scaler_g.scale(loss_g).backward()
        scaler_g.step(optG)
        scaler_g.update()

        # One device sync for all the numbers instead of one .item() call each.
        values = torch.stack([
            loss_d.detach(), loss_g.detach(), torch.sigmoid(logits_real.detach().float()).mean(),
            torch.sigmoid(logits_fake.detach().float()).mean(),
            torch.sigmoid(logits_g.detach().float()).mean(),
            # ADA's overfitting signals: r_t's sign, and r_v's training and generated terms
            torch.sign(logits_real.detach().float()).mean(), logits_real.detach().float().mean(),
            logits_fake.detach().float().mean(), *taken.values(),
        ]).tolist()
        return dict(zip((*OUTPUT_KEYS, *ADA_KEYS, *taken), values, strict=True))

    return training_step


def make_held_out_probe(gan: GAN, images: torch.Tensor, batch: int,
                        augment: Callable[[torch.Tensor], torch.Tensor] | None,
                        precision: str = "fp32") -> Callable[[int], float]:
    """D's mean logit on the ``k``-th batch of ``images`` (held-out faces, cycled; each rank
    takes its own batch), augmented as the training step augments and in the same precision,
    without gradients: the held-out term of ADA's r_v. D runs in training mode, as in its
    steps (batch statistics); its BatchNorm running statistics, which nothing reads, move too."""
    images = images.to(gan.device)
    batches = max(len(images) // batch, 1)
    rank, world = idist.get_rank(), idist.get_world_size()
    dtype = PRECISIONS[precision]
    augment = augment or (lambda x: x)

    def probe(k: int) -> float:
        start = (k * world + rank) % batches * batch
        with torch.no_grad(), torch.autocast(gan.device.type, dtype=dtype, enabled=dtype is not None):
            return float(gan.netD(augment(images[start:start + batch])).float().mean())

    return probe
