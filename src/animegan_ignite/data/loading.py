"""Image folders, the held-out evaluation split, and the training DataLoader.

``--data-dir`` may be an ImageFolder root (``root/class/img.jpg``) or any folder of images,
searched recursively. Every file is decoded once at start-up so that corrupt or unreadable
files are known (and reported in one warning) before training, instead of crashing an epoch.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import Dataset
from torchvision import transforms

from ..errors import UserError
from ..paths import IMAGE_EXTENSIONS
from .cache import CachedBatches, CachedImages, load_or_build
from .images import decode_all, load_rgb
from .sampler import EpochSampler
from .synthetic import DrawnFaces, FreshFaces, SyntheticFaces

logger = logging.getLogger(__name__)


class DataError(UserError):
    """The data set cannot be used; the message says why and how to fix it."""


def default_transform(image_size: int = 64) -> Callable:
    """The seed's preprocessing: Resize -> CenterCrop -> ToTensor -> Normalize to [-1, 1]."""
    return transforms.Compose([
        transforms.Resize(image_size),
        transforms.CenterCrop(image_size),
        transforms.ToTensor(),
        transforms.Normalize((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
    ])


def find_images(root: str | Path) -> list[Path]:
    """All image files below ``root``, sorted by path so every machine sees the same order.

    An image is a file whose extension is one of ``IMAGE_EXTENSIONS`` in any case (``.JPG``
    too), in ``root`` or any folder below it, with any name (non-ASCII included). Hidden files
    and folders (names starting with ".", such as macOS's ``._face.jpg`` copies or
    ``.ipynb_checkpoints``) are not images of the data set."""
    root = Path(root)
    if not root.exists():
        raise DataError(f"--data-dir {root}: no such folder (give the folder of the face images)")
    if not root.is_dir():
        raise DataError(f"--data-dir {root}: is a file, not a folder of images")
    files = sorted(p for p in root.rglob("*")
                   if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file()
                   and not any(part.startswith(".") for part in p.relative_to(root).parts))
    if not files:
        raise DataError(f"--data-dir {root}: no images ({', '.join(IMAGE_EXTENSIONS)}) found "
                        "in it or its subfolders")
    return files


def _check_readable(path: Path) -> torch.Tensor:
    load_rgb(path)
    return torch.zeros(0)


def drop_unreadable(files: Sequence[Path], progress: bool = False, num_workers: int = 0
                    ) -> list[Path]:
    """Decode every file once; keep the readable ones and warn once about the rest."""
    return decode_all(files, _check_readable, torch.zeros(0), num_workers, progress,
                      desc="checking images")[1]


class ImageFiles(Dataset):
    """A list of image files as ``(image, 0)`` pairs, like ImageFolder without classes."""

    def __init__(self, files: Sequence[Path], transform: Callable | None = None) -> None:
        self.files, self.transform = list(files), transform

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int):
        img = load_rgb(self.files[index])
        return (self.transform(img) if self.transform else img), 0


@dataclass
class Split:
    """The training set and the held-out evaluation set, disjoint by construction."""

    train: Dataset
    eval: Dataset
    description: str

    @property
    def faces(self) -> Dataset:
        """The training faces as the folder holds them (without --mirror's flips): what the
        memorisation score compares generated faces with."""
        return self.train.faces if isinstance(self.train, Mirrored) else self.train


def split_indices(n: int, eval_size: int, seed: int) -> tuple[list[int], list[int]]:
    """A deterministic (train, eval) partition of ``range(n)``, both sorted."""
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
    return sorted(perm[eval_size:]), sorted(perm[:eval_size])


def make_split(data_dir: str | None, eval_size: int, batch_size: int, seed: int,
               synthetic_size: int = 0, image_size: int = 64, progress: bool = False,
               cache_dir: Path | None = None, num_workers: int = 0, fresh: bool = False,
               mirror: bool = False) -> Split:
    """Build the train/eval split of an image folder, or of the synthetic faces when
    ``data_dir`` is None. With ``cache_dir``, a folder's images come from the decoded-image
    cache (see cache.py). Every file is decoded once up front, by ``num_workers`` processes.
    The synthetic faces with ``cache_dir`` are drawn once into memory instead (nothing is
    written). With ``mirror``, the training faces are each also seen x-flipped (:class:`Mirrored`;
    the held-out faces stay as they are). Raises :class:`DataError` when there are too few
    images."""
    tf = default_transform(image_size)
    if data_dir is None and cache_dir is not None:
        full = DrawnFaces(synthetic_size, seed=seed, image_size=image_size, progress=progress)
        source = f"synthetic demo faces ({synthetic_size}, drawn once into memory)"
    elif data_dir is None:
        full = SyntheticFaces(synthetic_size, seed=seed, image_size=image_size, transform=tf)
        source = f"synthetic demo faces ({synthetic_size})"
    elif cache_dir is not None:
        full = CachedImages(*load_or_build(find_images(data_dir), image_size, cache_dir, progress,
                                           num_workers))
        source = f"{data_dir} ({len(full)} images, decoded-image cache)"
    else:
        full = ImageFiles(drop_unreadable(find_images(data_dir), progress, num_workers), tf)
        source = f"{data_dir} ({len(full)} images)"
    needed = eval_size + batch_size
    if len(full) < needed:
        raise DataError(
            f"{source}: {len(full)} usable images, but --eval-size {eval_size} plus one batch of "
            f"--batch-size {batch_size} needs {needed}; lower them or add images")
    train_idx, eval_idx = split_indices(len(full), eval_size, seed)
    if fresh:  # new faces every epoch, past the held-out ones
        return Split(FreshFaces(len(train_idx), synthetic_size, seed, image_size, tf),
                     torch.utils.data.Subset(full, eval_idx),
                     f"{source}: new faces every epoch ({len(train_idx)} per epoch), "
                     f"{len(eval_idx)} held out for evaluation")
    train = torch.utils.data.Subset(full, train_idx)
    return Split(
        train=Mirrored(train) if mirror else train,
        eval=torch.utils.data.Subset(full, eval_idx),
        description=f"{source}: {len(train_idx)} train" + (" (and their mirror images)" if mirror
                                                           else "")
        + f", {len(eval_idx)} held out for evaluation",
    )


class Mirrored(Dataset):
    """Every face of ``faces`` and, after them, each one x-flipped (StyleGAN2-ADA's ``--mirror``):
    twice the faces per epoch, each flip a face the set could have held."""

    def __init__(self, faces: Dataset) -> None:
        self.faces = faces

    def __len__(self) -> int:
        return 2 * len(self.faces)

    def __getitem__(self, index: int):
        n = len(self.faces)
        image, label = self.faces[index % n]
        return (image.flip(-1) if index >= n else image), label


def make_train_loader(dataset: Dataset, batch_size: int, num_workers: int, seed: int,
                      world_size: int = 1, rank: int = 0, pin_memory: bool = False,
                      device: torch.device | None = None):
    """A shuffling loader whose order depends only on (seed, epoch): call
    ``loader.sampler.set_epoch(e, skip)`` at each epoch start. ``batch_size`` is per process.
    A subset of cached images gets batches gathered on ``device`` instead of a DataLoader."""
    faces, mirror = (dataset.faces, True) if isinstance(dataset, Mirrored) else (dataset, False)
    if isinstance(faces, torch.utils.data.Subset) and isinstance(faces.dataset, CachedImages):
        images = faces.dataset.images.to(device or "cpu")
        return CachedBatches(images, faces.indices, batch_size, seed, world_size, rank, mirror)
    sampler = EpochSampler(dataset, num_replicas=world_size, rank=rank, shuffle=True, seed=seed,
                           drop_last=True, fresh=isinstance(dataset, FreshFaces))
    return torch.utils.data.DataLoader(
        dataset, batch_size=batch_size, sampler=sampler, num_workers=num_workers,
        drop_last=True, pin_memory=pin_memory, persistent_workers=num_workers > 0)


def stack_images(dataset: Dataset, indices: Sequence[int]) -> torch.Tensor:
    """The images at ``indices`` of ``dataset`` as one tensor (labels, if any, dropped)."""
    loader = torch.utils.data.DataLoader(torch.utils.data.Subset(dataset, indices), batch_size=128)
    return torch.cat([b[0] if isinstance(b, (list, tuple)) else b for b in loader])


def iterations_per_epoch(n_train: int, global_batch: int, world_size: int = 1) -> int:
    """Iterations in one epoch: each of ``world_size`` processes takes an equal shard (extra
    images dropped) in batches of ``global_batch // world_size``."""
    return (n_train // world_size) // (global_batch // world_size)
