"""The DCGAN generator and discriminator (Radford et al., 2016) for 64x64 RGB images.

The discriminator returns *logits*: the final Sigmoid of the original design is folded into
``BCEWithLogitsLoss`` (the same function, numerically stabler, and the only form autocast
accepts). ``torch.sigmoid(D(x))`` gives the probabilities the DCGAN paper reports as D(x).
"""

from __future__ import annotations

import contextlib
import copy
import io
from collections.abc import Iterator

import torch
import torchsummary
from torch import nn
from torch.nn.utils import parametrize


class Generator(nn.Module):
    """Maps a latent ``(N, nz, 1, 1)`` to an image ``(N, nc, 64, 64)`` in [-1, 1]."""

    def __init__(self, nz: int = 100, ngf: int = 64, nc: int = 3) -> None:
        super().__init__()
        self.nz = nz
        self.main = nn.Sequential(
            nn.ConvTranspose2d(nz, ngf * 8, 4, 1, 0, bias=False),  # (N, 8 ngf, 4, 4)
            nn.BatchNorm2d(ngf * 8),
            nn.ReLU(True),
            _up(ngf * 8, ngf * 4),  # (N, 4 ngf, 8, 8)
            _up(ngf * 4, ngf * 2),  # (N, 2 ngf, 16, 16)
            _up(ngf * 2, ngf),  # (N, ngf, 32, 32)
            nn.ConvTranspose2d(ngf, nc, 4, 2, 1, bias=False),  # (N, nc, 64, 64)
            nn.Tanh(),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.main(z)


class Discriminator(nn.Module):
    """Maps an image ``(N, nc, 64, 64)`` to one real/fake logit per image, shape ``(N,)``.

    With ``spectral_norm`` every convolution's weight is divided by its largest singular value
    (Miyato et al., 2018, through PyTorch's parametrization API) and the BatchNorm layers are
    left out, as in that paper's DCGAN-style discriminator: spectral normalisation already
    bounds D's Lipschitz constant, and batch statistics would make each image's score depend on
    its batch-mates. ``batch_norm=False`` leaves them out without spectral normalisation: a D
    for gradient penalties, where batch statistics make each image's input gradient depend on
    its batch-mates too."""

    def __init__(self, ndf: int = 64, nc: int = 3, spectral_norm: bool = False,
                 batch_norm: bool = True) -> None:
        super().__init__()
        batch_norm = batch_norm and not spectral_norm
        self.main = nn.Sequential(
            nn.Conv2d(nc, ndf, 4, 2, 1, bias=False),  # (N, ndf, 32, 32)
            nn.LeakyReLU(0.2, inplace=True),
            _down(ndf, ndf * 2, batch_norm),  # (N, 2 ndf, 16, 16)
            _down(ndf * 2, ndf * 4, batch_norm),  # (N, 4 ndf, 8, 8)
            _down(ndf * 4, ndf * 8, batch_norm),  # (N, 8 ndf, 4, 4)
            nn.Conv2d(ndf * 8, 1, 4, 1, 0, bias=False),  # (N, 1, 1, 1)
        )
        if spectral_norm:
            for module in self.main.modules():
                if isinstance(module, nn.Conv2d):
                    nn.utils.parametrizations.spectral_norm(module)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.main(x).flatten()

    def blocks(self) -> list[nn.Module]:
        """D's blocks from the image on: the first convolution, the three downsampling blocks
        and the final convolution."""
        return [self.main[0], self.main[2], self.main[3], self.main[4], self.main[5]]

    def freeze(self, n: int) -> None:
        """Keep the first ``n`` blocks at their weights (FreezeD: the low-level features of a
        D trained on many faces stay; the final convolution always trains)."""
        if not 0 <= n < len(self.blocks()):
            raise ValueError(f"D has {len(self.blocks()) - 1} blocks that can be frozen, not {n}")
        for block in self.blocks()[:n]:
            block.requires_grad_(False)


def _up(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.ConvTranspose2d(cin, cout, 4, 2, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(True)
    )


def _down(cin: int, cout: int, batch_norm: bool = True) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 4, 2, 1, bias=False),
        nn.BatchNorm2d(cout) if batch_norm else nn.Identity(),
        nn.LeakyReLU(0.2, inplace=True),
    )


@torch.no_grad()
def dcgan_weights_init(module: nn.Module) -> None:
    """DCGAN init: conv weights ~ N(0, 0.02); BatchNorm weight ~ N(1, 0.02), bias 0.

    Use as ``model.apply(dcgan_weights_init)``.
    """
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
        weight = (module.parametrizations.weight.original
                  if parametrize.is_parametrized(module, "weight") else module.weight)
        nn.init.normal_(weight, 0.0, 0.02)
    elif isinstance(module, (nn.BatchNorm2d, nn.SyncBatchNorm)):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """The plain module (unwrapped from DDP) in eval mode under ``torch.no_grad()``, put back in
    its previous mode afterwards. For G, eval mode means BatchNorm's running statistics: each
    image depends only on its own latent, not on its batch-mates."""
    model = unwrap(model)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield model
    finally:
        model.train(was_training)


def sample(netG: nn.Module, z: torch.Tensor) -> torch.Tensor:
    """G(z) in eval mode, on the CPU, as float32 in [-1, 1]."""
    with eval_mode(netG) as g:
        return g(z.to(next(g.parameters()).device)).float().cpu()


def unwrap(model: nn.Module) -> nn.Module:
    """The plain module inside a DistributedDataParallel wrapper. Generation on one rank (or in
    unequal amounts per rank) must bypass DDP, whose forward takes part in collectives."""
    return getattr(model, "module", model)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def summarize(model: nn.Module, input_size: tuple[int, ...]) -> str:
    """torchsummary's layer table for ``model`` (unwrapped from DDP) as text. It runs on a CPU
    copy: torchsummary's forward pass in train mode would otherwise move the BatchNorm running
    statistics of the real model, and its random input must not move the training RNG."""
    model = copy.deepcopy(unwrap(model)).cpu()
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf), torch.random.fork_rng(devices=[]):
        torchsummary.summary(model, input_size, device="cpu")
    return buf.getvalue()
