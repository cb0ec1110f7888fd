"""Faces from a trained generator: reproducible latents, spherical interpolation, image output.
Shared by the ``generate`` command and the ``serve`` web app."""

from __future__ import annotations

import io
import math

import torch
from PIL import Image
from torch import nn
from torchvision.utils import make_grid

from .models import sample

MAX_FACES = 256


def latents(n: int, nz: int, seed: int) -> torch.Tensor:
    """``n`` latent vectors that depend only on ``seed`` (and not on the device)."""
    return torch.randn(n, nz, 1, 1, generator=torch.Generator().manual_seed(seed))


def slerp(a: torch.Tensor, b: torch.Tensor, t: float) -> torch.Tensor:
    """Spherical interpolation between latents ``a`` and ``b`` (t in [0, 1]): the path stays
    at the norm Gaussian latents have, where a straight line would pass through unlikely,
    low-norm latents in the middle."""
    a_flat, b_flat = a.flatten(), b.flatten()
    cos = torch.dot(a_flat / a_flat.norm(), b_flat / b_flat.norm()).clamp(-1, 1)
    omega = torch.arccos(cos)
    if omega.abs() < 1e-6:
        return (1 - t) * a + t * b
    return (torch.sin((1 - t) * omega) * a + torch.sin(t * omega) * b) / torch.sin(omega)


def walk(netG: nn.Module, seed_a: int, seed_b: int, steps: int) -> list[Image.Image]:
    """``steps`` faces on the spherical path from ``seed_a``'s face to ``seed_b``'s."""
    nz = netG.nz
    a, b = latents(1, nz, seed_a), latents(1, nz, seed_b)
    ts = [i / (steps - 1) for i in range(steps)] if steps > 1 else [0.0]
    z = torch.cat([slerp(a, b, t) for t in ts])
    return [to_pil(x) for x in render(netG, z)]


def render(netG: nn.Module, z: torch.Tensor) -> torch.Tensor:
    """G(z) in eval mode (each face depends only on its latent), on the CPU, in [0, 1]."""
    return ((sample(netG, z) + 1) / 2).clamp(0, 1)


def to_pil(image: torch.Tensor) -> Image.Image:
    return Image.fromarray((image * 255).round().byte().permute(1, 2, 0).numpy())


def grid(images: torch.Tensor, padding: int = 2) -> Image.Image:
    """A near-square grid of ``images`` (N, 3, H, W) in [0, 1]."""
    nrow = math.ceil(math.sqrt(images.shape[0]))
    return to_pil(make_grid(images, nrow=nrow, padding=padding, pad_value=1.0))


def png_bytes(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def save_gif(frames: list[Image.Image], path, frame_ms: int = 100) -> None:
    """An endlessly looping GIF with one frame per image."""
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=frame_ms, loop=0)
