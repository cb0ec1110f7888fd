"""The decoded-image cache (``--cache``): decode and preprocess the data set once into a uint8
tensor (N x 3 x 64 x 64; 63k faces are about 780 MB), reuse it in later runs, rebuild it when the
folder changes. Training then samples batches straight from the tensor and normalises them on
the device; on a GPU the whole tensor lives in device memory, so an epoch costs what its
arithmetic costs instead of 63k JPEG decodes.

The cache holds exactly the pixels of the decode path: Resize -> CenterCrop -> uint8, and
``normalize`` repeats ToTensor's ``/ 255`` and Normalize's ``(x - 0.5) / 0.5`` on the same
values (a test compares them).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Iterator, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import BatchSampler, Dataset

from ..rundir import atomic_write, write_json_atomic
from .images import decode_all, decode_uint8
from .sampler import EpochSampler

logger = logging.getLogger(__name__)
CACHE_VERSION = 1


def fingerprint(*parts: Any) -> str:
    """The key of every cache (decoded images, real features): a hash of what made the cached
    thing, so any change to it (files, sizes, settings, versions) is a new key."""
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def file_digest(path: Path) -> str:
    """SHA-256 of a file's bytes (an ONNX export's checksum, an --init-from source's hash)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def files_identity(files: Sequence[Path]) -> list[tuple[str, int, int]]:
    """Exactly which files these are: resolved paths, sizes and modification times."""
    return [(str(Path(f).resolve()), (st := os.stat(f)).st_size, st.st_mtime_ns) for f in files]


def normalize(batch: torch.Tensor) -> torch.Tensor:
    """uint8 images to the trainer's [-1, 1] floats, with the same operations as
    ToTensor + Normalize(0.5, 0.5) (so the values are bit-identical)."""
    return batch.float().div(255).sub(0.5).div(0.5)


def load_or_build(files: Sequence[Path], image_size: int, cache_dir: Path,
                  progress: bool = False, num_workers: int = 0) -> tuple[torch.Tensor, list[Path]]:
    """The (images, readable files) of ``files``: from the cache when its fingerprint matches,
    else decoded now by ``num_workers`` processes (unreadable files skipped with one warning)
    and saved atomically."""
    key = fingerprint("decoded", CACHE_VERSION, image_size, files_identity(files))
    path = Path(cache_dir) / "decoded" / f"{key}.pt"
    if path.is_file():
        try:
            saved = torch.load(path, weights_only=True)
            return saved["images"], [Path(f) for f in saved["files"]]
        except Exception:  # a damaged cache file is rebuilt, never trusted
            logger.warning("rebuilding the damaged image cache %s", path)
    placeholder = torch.zeros(3, image_size, image_size, dtype=torch.uint8)
    images, good = decode_all(files, partial(decode_uint8, image_size=image_size), placeholder,
                              num_workers, progress, desc="decoding images into the cache (once)")
    path.parent.mkdir(parents=True, exist_ok=True)
    # Temporary names are per process: torchrun's ranks may all build the cache at once.
    atomic_write(path, lambda f: torch.save({"images": images, "files": [str(f) for f in good]}, f))
    write_json_atomic(path.parent / f"{key}.json",
                      {"images": len(good), "skipped": len(files) - len(good)})
    return images, good


class CachedImages(Dataset):
    """The cached images as a Dataset of ``(normalised image, 0)``, like ImageFiles."""

    def __init__(self, images: torch.Tensor, files: Sequence[Path]) -> None:
        self.images, self.files = images, list(files)

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, index: int):
        return normalize(self.images[index]), 0


class CachedBatches:
    """Training batches gathered from a uint8 tensor already on the device: the same
    shuffling (a DistributedSampler's ``set_epoch`` order) as the DataLoader path, no workers,
    no decoding. Iterating yields normalised ``(B, 3, S, S)`` float batches. With ``mirror``,
    the order covers each image and then each one x-flipped, as data.Mirrored does."""

    def __init__(self, images: torch.Tensor, indices: Sequence[int], batch_size: int, seed: int,
                 world_size: int = 1, rank: int = 0, mirror: bool = False) -> None:
        self.images = images
        self.indices = torch.as_tensor(list(indices), dtype=torch.long).repeat(2 if mirror else 1)
        self.flipped = torch.arange(len(self.indices)) >= len(indices)
        self.sampler = EpochSampler(range(len(self.indices)), num_replicas=world_size, rank=rank,
                                    shuffle=True, seed=seed, drop_last=True)
        self.batches = BatchSampler(self.sampler, batch_size, drop_last=True)

    @property
    def batch_size(self) -> int:
        return self.batches.batch_size

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self) -> Iterator[torch.Tensor]:
        for batch in self.batches:
            idx = self.indices[batch].to(self.images.device, non_blocking=True)
            images = normalize(self.images.index_select(0, idx))
            flip = self.flipped[batch]
            if flip.any():
                flip = flip.to(images.device).view(-1, 1, 1, 1)
                images = torch.where(flip, images.flip(-1), images)
            yield images
