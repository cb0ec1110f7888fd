"""Faces from a trained generator: reproducible latents, spherical interpolation, grids, GIFs,
folders of faces and exported networks. Used by ``animegan-generate`` and ``animegan-serve``."""

from __future__ import annotations

import io
import math
import warnings
from pathlib import Path

import torch
from PIL import Image
from torch import nn
from torchvision.utils import make_grid
from tqdm import tqdm

from .. import seeds
from ..errors import UserError
from ..rundir import atomic_write
from .models import sample

BLOCK = 1024  # latents are drawn in blocks, each from its own seed


def truncate(z: torch.Tensor, psi: float | None, generator: torch.Generator) -> torch.Tensor:
    """BigGAN's truncation trick: every entry of the normal latents ``z`` outside [-psi, psi]
    is drawn again (from ``generator``) until none is: a truncated normal. Smaller ``psi``
    trades variety for fidelity; None leaves ``z`` as it is."""
    if psi is None:
        return z
    if psi <= 0:
        raise ValueError(f"the truncation must be > 0, got {psi}")
    z = z.clone()
    while (outside := z.abs() > psi).any():
        z[outside] = torch.randn(int(outside.sum()), generator=generator, dtype=z.dtype)
    return z


def _block(nz: int, seed: int, k: int, psi: float | None) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seeds.latent_block(seed, k))
    return truncate(torch.randn(BLOCK, nz, 1, 1, generator=gen), psi, gen)


def latents(n: int, nz: int, seed: int, start: int = 0, truncation: float | None = None
            ) -> torch.Tensor:
    """Latent vectors ``start .. start + n - 1`` of ``seed``'s endless sequence, truncated at
    ``truncation`` (:func:`truncate`). Vector ``i`` depends only on (seed, i, truncation), never
    on the device or on how many are drawn at once, so any range can be drawn (or drawn again
    after an interruption) on its own."""
    if n <= 0:
        return torch.zeros(0, nz, 1, 1)
    first, last = start // BLOCK, (start + n - 1) // BLOCK
    blocks = torch.cat([_block(nz, seed, k, truncation) for k in range(first, last + 1)])
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


def walk(netG: nn.Module, seed_a: int, seed_b: int, steps: int, truncation: float | None = None
         ) -> list[Image.Image]:
    """``steps`` faces on the spherical path from ``seed_a``'s face to ``seed_b``'s."""
    nz = netG.nz
    a, b = latents(1, nz, seed_a, truncation=truncation), latents(1, nz, seed_b, truncation=truncation)
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


def save_gif(frames: list[Image.Image], path: str | Path, frame_ms: int = 100) -> None:
    """An endlessly looping GIF with one frame per image."""
    atomic_write(path, lambda f: frames[0].save(f, format="GIF", save_all=True,
                                                append_images=frames[1:], duration=frame_ms, loop=0))


def save_grid(netG: nn.Module, num: int, seed: int, path: Path, truncation: float | None = None
              ) -> None:
    """Faces 0 .. num-1 of ``seed`` as one picture; its format from the file name."""
    path.parent.mkdir(parents=True, exist_ok=True)
    picture = grid(render(netG, latents(num, netG.nz, seed, truncation=truncation)))
    fmt = {".jpg": "JPEG", ".jpeg": "JPEG"}.get(path.suffix.lower(), path.suffix[1:].upper())
    atomic_write(path, lambda f: picture.save(f, format=fmt))


def face_file(out: Path, seed: int, index: int) -> Path:
    return out / f"face_{seed}_{index:07d}.png"


def write_faces(netG: nn.Module, out: Path, num: int, seed: int, batch_size: int,
                truncation: float | None = None) -> None:
    """Faces 0 .. num-1 of ``seed`` as PNG files, those not already there, a batch at a time.
    Truncated faces are other faces: give them their own folder."""
    out.mkdir(parents=True, exist_ok=True)
    missing = [i for i in range(num) if not face_file(out, seed, i).exists()]
    with tqdm(total=num, initial=num - len(missing), desc="drawing faces", unit="face") as bar:
        for chunk in _runs(missing, batch_size):
            faces = render(netG, latents(len(chunk), netG.nz, seed, chunk[0], truncation))
            for i, face in zip(chunk, faces, strict=True):
                image = to_pil(face)
                atomic_write(face_file(out, seed, i), lambda f, im=image: im.save(f, format="PNG"),
                             durable=False)
            bar.update(len(chunk))
    print(f"{out}: faces 0..{num - 1} of seed {seed} ({len(missing)} drawn now, "
          f"{num - len(missing)} already there)")


def _runs(indices: list[int], size: int) -> list[list[int]]:
    """Consecutive indices in chunks of at most ``size`` (a chunk never spans a gap)."""
    chunks: list[list[int]] = []
    for i in indices:
        if chunks and chunks[-1][-1] == i - 1 and len(chunks[-1]) < size:
            chunks[-1].append(i)
        else:
            chunks.append([i])
    return chunks


def export(netG: nn.Module, kind: str, path: Path) -> None:
    """TorchScript (traced) or ONNX (needs the onnx package) of G: latent (N, nz, 1, 1) ->
    image (N, 3, 64, 64) in [-1, 1]."""
    netG = netG.cpu().eval()
    example = latents(2, netG.nz, 0)
    if kind == "torchscript":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # torch.jit's deprecation notice
            torch.jit.trace(netG, example).save(str(path))
        return
    try:
        import onnx  # noqa: F401  (torch.onnx needs it to write the file)
    except ImportError as e:
        raise UserError("--export onnx needs the onnx package: pip install onnx") from e
    with warnings.catch_warnings():
        # The TorchScript-based exporter is deprecated but needs no onnxscript; the model is a
        # plain conv stack, which it exports exactly.
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(netG, (example,), str(path), input_names=["z"], output_names=["image"],
                          dynamic_axes={"z": {0: "batch"}, "image": {0: "batch"}}, dynamo=False)
