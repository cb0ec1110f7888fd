"""Decoding image files: one file to RGB or to a uint8 tensor, and every file of a list at once
in DataLoader worker processes, with unreadable files skipped and counted."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset
from torchvision import transforms
from tqdm import tqdm

logger = logging.getLogger(__name__)


# Far more than any face photo or drawing; larger files (or decompression bombs, whose header
# promises a giant image) are refused from their header, before any pixel is decoded.
MAX_PIXELS = 50_000_000


def load_rgb(path: Path) -> Image.Image:
    """Open and fully decode an image as RGB (grayscale, palette, RGBA and CMYK converted).

    Raises ``OSError`` (or a subclass) for a missing, truncated or undecodable file, and
    ``ValueError`` for one of more than ``MAX_PIXELS`` pixels (judged from its header).
    """
    with Image.open(path) as im:
        if im.width * im.height > MAX_PIXELS:
            raise ValueError(f"{path}: {im.width}x{im.height} pixels, more than {MAX_PIXELS:,}")
        im.load()
        if im.mode == "P" and "transparency" in im.info:
            im = im.convert("RGBA")  # palette transparency must go through RGBA first
        return im.convert("RGB")


def decode_uint8(path: Path, image_size: int) -> torch.Tensor:
    """One image as the decode path sees it, before ToTensor: (3, S, S) uint8."""
    tf = transforms.Compose([transforms.Resize(image_size), transforms.CenterCrop(image_size)])
    img: Image.Image = tf(load_rgb(path))
    return torch.from_numpy(np.array(img, dtype=np.uint8)).permute(2, 0, 1).contiguous()


UNREADABLE = (OSError, SyntaxError, ValueError, Image.DecompressionBombError)


class _DecodeEach(Dataset):
    """``decode(file)`` of each file as ``(tensor, True)``, or ``(placeholder, False)`` when the
    file cannot be read, so that one bad file never stops a DataLoader worker."""

    def __init__(self, files: Sequence[Path], decode: Callable[[Path], torch.Tensor],
                 placeholder: torch.Tensor) -> None:
        self.files, self.decode, self.placeholder = files, decode, placeholder

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, bool]:
        try:
            return self.decode(self.files[index]), True
        except UNREADABLE:
            return self.placeholder, False


def decode_all(files: Sequence[Path], decode: Callable[[Path], torch.Tensor],
               placeholder: torch.Tensor, num_workers: int = 0, progress: bool = False,
               desc: str = "decoding images") -> tuple[torch.Tensor, list[Path]]:
    """``decode`` every file, in ``num_workers`` DataLoader worker processes (decoding is
    CPU-bound Python, so threads do not help; batches of 256 come back as one tensor each).
    Returns the stacked results of the readable files and those files; the unreadable ones are
    skipped with one warning. ``decode`` must be picklable (a module-level function or a
    ``functools.partial`` of one) for platforms that spawn workers."""
    loader = torch.utils.data.DataLoader(_DecodeEach(files, decode, placeholder), batch_size=256,
                                         num_workers=num_workers)
    chunks, ok = [], []
    with tqdm(total=len(files), desc=desc, disable=not progress, leave=False) as bar:
        for values, readable in loader:
            chunks.append(values[readable])
            ok += readable.tolist()
            bar.update(len(readable))
    good = [f for f, keep in zip(files, ok, strict=True) if keep]
    bad = [f for f, keep in zip(files, ok, strict=True) if not keep]
    if bad:
        names = ", ".join(p.name for p in bad[:5]) + (", ..." if len(bad) > 5 else "")
        logger.warning("skipping %d unreadable image file(s) of %d: %s", len(bad), len(files),
                       names)
    return torch.cat(chunks) if chunks else placeholder[None][:0], good
