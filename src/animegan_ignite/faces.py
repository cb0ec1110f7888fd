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

MAX_FACES = 256  # in one grid picture
BLOCK = 1024  # latents are drawn in blocks, each from its own seed


def _block(nz: int, seed: int, k: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed((seed * 1_000_003 + k) % 2**63)  # any seed fits
    return torch.randn(BLOCK, nz, 1, 1, generator=gen)


def latents(n: int, nz: int, seed: int, start: int = 0) -> torch.Tensor:
    """Latent vectors ``start .. start + n - 1`` of ``seed``'s endless sequence. Vector ``i``
    depends only on (seed, i), never on the device or on how many are drawn at once, so any
    range can be drawn (or drawn again after an interruption) on its own."""
    if n <= 0:
        return torch.zeros(0, nz, 1, 1)
    first, last = start // BLOCK, (start + n - 1) // BLOCK
    blocks = torch.cat([_block(nz, seed, k) for k in range(first, last + 1)])
    return blocks[start - first * BLOCK:start - first * BLOCK + n]


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
