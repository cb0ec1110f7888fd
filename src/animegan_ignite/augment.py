"""DiffAugment (Zhao et al., "Differentiable Augmentation for Data-Efficient GAN Training",
NeurIPS 2020): the same random, differentiable augmentation applied to real *and* generated
images before every call of D, in D's step and in G's. D never sees an un-augmented image, so
it cannot learn the augmentation as a tell, and G still gets gradients through it.

Policies, as in the paper's code, on images in [-1, 1], with one random draw per image:

- ``color``: brightness + U(-0.5, 0.5); saturation x U(0, 2) around the per-pixel channel mean;
  contrast x U(0.5, 1.5) around the image mean;
- ``translation``: a shift of up to 1/8 of the size in each direction, zero-filled;
- ``cutout``: a zeroed square of half the size, at a random position (partly outside allowed).

Every operation is a batched tensor expression on the images' device: no per-image Python loop.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .config import DIFFAUGMENT_POLICIES


def _uniform(x: torch.Tensor, lo: float, hi: float) -> torch.Tensor:
    """One draw per image, shaped to broadcast over (C, H, W)."""
    return torch.rand(x.shape[0], 1, 1, 1, dtype=x.dtype, device=x.device) * (hi - lo) + lo


def color(x: torch.Tensor) -> torch.Tensor:
    x = x + _uniform(x, -0.5, 0.5)
    mean = x.mean(dim=1, keepdim=True)
    x = (x - mean) * _uniform(x, 0.0, 2.0) + mean
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * _uniform(x, 0.5, 1.5) + mean


def translate(x: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor) -> torch.Tensor:
    """Image ``i`` moved down by ``dy[i]`` and right by ``dx[i]`` pixels, zeros shifted in:
    ``out[i, :, y, x] = x[i, :, y - dy[i], x - dx[i]]``."""
    b, _, h, w = x.shape
    ys = torch.arange(h, device=x.device).view(1, h, 1) - dy.view(b, 1, 1)
    xs = torch.arange(w, device=x.device).view(1, 1, w) - dx.view(b, 1, 1)
    # Index into a copy padded with one zero row/column on each side: out-of-range -> zero.
    ys, xs = ys.clamp(-1, h) + 1, xs.clamp(-1, w) + 1
    padded = F.pad(x, [1, 1, 1, 1]).permute(0, 2, 3, 1)
    batch = torch.arange(b, device=x.device).view(b, 1, 1)
    return padded[batch, ys, xs].permute(0, 3, 1, 2)


def translation(x: torch.Tensor, ratio: float = 0.125) -> torch.Tensor:
    b, _, h, w = x.shape
    sy, sx = int(h * ratio + 0.5), int(w * ratio + 0.5)
    dy = torch.randint(-sy, sy + 1, (b,), device=x.device)
    dx = torch.randint(-sx, sx + 1, (b,), device=x.device)
    return translate(x, dy, dx)


def cut(x: torch.Tensor, cy: torch.Tensor, cx: torch.Tensor, size: int) -> torch.Tensor:
    """Zero a ``size`` x ``size`` square centred at (``cy[i]``, ``cx[i]``) in image ``i``."""
    b, _, h, w = x.shape
    ys = torch.arange(h, device=x.device).view(1, h, 1)
    xs = torch.arange(w, device=x.device).view(1, 1, w)
    top, left = (cy - size // 2).view(b, 1, 1), (cx - size // 2).view(b, 1, 1)
    inside = (ys >= top) & (ys < top + size) & (xs >= left) & (xs < left + size)
    return x * (~inside).unsqueeze(1).to(x.dtype)


def cutout(x: torch.Tensor, ratio: float = 0.5) -> torch.Tensor:
    b, _, h, w = x.shape
    size = int(h * ratio + 0.5)
    cy = torch.randint(0, h + (1 - size % 2), (b,), device=x.device)
    cx = torch.randint(0, w + (1 - size % 2), (b,), device=x.device)
    return cut(x, cy, cx, size)


_OPS = {"color": color, "translation": translation, "cutout": cutout}


class DiffAugment:
    """The policy's operations in the paper's order (color, translation, cutout)."""

    def __init__(self, policy: tuple[str, ...] = ()) -> None:
        self.ops = [_OPS[name] for name in DIFFAUGMENT_POLICIES if name in policy]

    def __bool__(self) -> bool:
        return bool(self.ops)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        for op in self.ops:
            x = op(x)
        return x
