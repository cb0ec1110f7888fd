"""FID and IS of a generator against the held-out real images, at the lowest cost per epoch.

- One Inception pass per generated image gives both its pool3 features (FID) and its logits (IS).
- The real subset's mean and covariance are computed once and cached on disk, keyed by the
  subset's fingerprint, the backbone and the image size; every later epoch, resumed run and
  later run on the same data reuses them.
- The generated images come from a fixed set of ``eval_size`` latent vectors (drawn from the
  seed), so epoch-to-epoch changes in FID reflect the generator, not the sample. G runs in eval
  mode (BatchNorm running statistics): each image depends only on its own latent, so results do
  not depend on the evaluation batch size or on how images are spread over processes.
- With several processes, each generates and embeds a contiguous block of the latents; feature
  sums are all-reduced and logits all-gathered in rank order, on every rank, so the result
  equals the single-process one on the same images.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import ignite.distributed as idist
import numpy as np
import torch
from ignite.handlers import Timer
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset
from tqdm import tqdm

from .inception import NUM_CLASSES, NUM_FEATURES, Backbone, BackboneChoice
from .metrics import FeatureStats, fid_from_stats, inception_score
from .models import eval_mode
from .rundir import atomic_write

logger = logging.getLogger(__name__)
RESIZE_RULE = "tf1-bilinear-299"


@dataclass
class EvalResult:
    """One evaluation, as stored in the history's epoch record."""

    fid: float
    is_mean: float | None
    is_std: float | None
    num_generated: int
    num_real: int
    eval_seconds: float
    inception_images: int  # images this evaluation passed through Inception (all processes)
    fid_backbone: str
    is_backbone: str | None
    is_unavailable: str | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """[-1, 1] float images to uint8, as saving them to PNG would (reals round-trip exactly)."""
    return ((images.float() + 1) * 127.5).round_().clamp_(0, 255).to(torch.uint8)


def rank_block(n: int, rank: int, world: int) -> range:
    """The contiguous share of ``range(n)`` that process ``rank`` of ``world`` handles."""
    base, extra = divmod(n, world)
    start = rank * base + min(rank, extra)
    return range(start, start + base + (rank < extra))


def dataset_fingerprint(dataset: Dataset) -> str:
    """A description of exactly which images a (subset of a) data set holds: file paths,
    sizes and modification times, or the synthetic set's parameters."""
    indices: list[int] | None = None
    if isinstance(dataset, Subset):
        indices, dataset = list(dataset.indices), dataset.dataset
    if getattr(dataset, "files", None):  # a folder's images (the drawn demo faces have none)
        files = dataset.files if indices is None else [dataset.files[i] for i in indices]
        items = [(str(Path(f).resolve()), *_size_mtime(f)) for f in files]
        return _digest(["files", items])
    return _digest([type(dataset).__name__, getattr(dataset, "seed", None),
                    getattr(dataset, "size", len(dataset)), indices])


def _size_mtime(path: Path) -> tuple[int, int]:
    st = os.stat(path)
    return st.st_size, st.st_mtime_ns


def _digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:24]


def _all_reduce_stats(stats: FeatureStats) -> FeatureStats:
    if idist.get_world_size() == 1:
        return stats
    total, outer = idist.all_reduce(stats.total), idist.all_reduce(stats.outer)
    return FeatureStats(_sum_over_ranks(stats.n), total, outer)


def _sum_over_ranks(count: int) -> int:
    if idist.get_world_size() == 1:
        return count
    return int(idist.all_reduce(torch.tensor(float(count), dtype=torch.float64)).item())


def _all_gather_rows(x: torch.Tensor, counts: list[int]) -> torch.Tensor:
    """Concatenate every rank's rows in rank order (ranks may hold different row counts)."""
    if idist.get_world_size() == 1:
        return x
    pad = max(counts) - x.shape[0]
    padded = torch.cat([x, x.new_zeros(pad, *x.shape[1:])]) if pad else x
    gathered = idist.all_gather(padded.contiguous()).reshape(len(counts), max(counts), *x.shape[1:])
    return torch.cat([gathered[r, :c] for r, c in enumerate(counts)])


class RealStats:
    """Mean and covariance of the held-out real images' features, cached on disk."""

    def __init__(self, mu: np.ndarray, sigma: np.ndarray, n: int) -> None:
        self.mu, self.sigma, self.n = mu, sigma, n

    def save(self, path: str | Path, backbone: str) -> None:
        """As pytorch-fid writes statistics (``mu``, ``sigma``), plus ``n`` and the backbone."""
        atomic_write(path, lambda f: np.savez(f, mu=self.mu, sigma=self.sigma, n=self.n,
                                              backbone=backbone))

    @classmethod
    def from_file(cls, path: str | Path) -> RealStats:
        """Statistics in pytorch-fid's ``.npz`` format (``mu``, ``sigma``; ``n`` if present).
        Raises ValueError for a file that is not one."""
        with np.load(path) as z:
            if "mu" not in z or "sigma" not in z:
                raise ValueError(f"it holds {sorted(z.files)}, not mu and sigma")
            mu, sigma = z["mu"].astype(np.float64), z["sigma"].astype(np.float64)
            n = int(z["n"]) if "n" in z else 0
        if mu.shape != (NUM_FEATURES,) or sigma.shape != (NUM_FEATURES, NUM_FEATURES):
            raise ValueError(f"mu {mu.shape} / sigma {sigma.shape} are not 2048-d pool3 statistics")
        return cls(mu, sigma, n)

    @staticmethod
    def cache_key(dataset: Dataset, backbone: Backbone, image_size: int) -> str:
        return _digest([dataset_fingerprint(dataset), backbone.name, RESIZE_RULE, image_size])

    @classmethod
    def load_or_compute(cls, dataset: Dataset, backbone: Backbone, device: torch.device,
                        cache_dir: Path | None, image_size: int = 64, batch_size: int = 100,
                        progress: bool = False) -> RealStats:
        """From the cache when it holds this exact subset and backbone; else embed the images
        (each exactly once, spread over the processes) and write the cache (rank 0). Rank 0
        decides and the others follow, whether or not they see the same cache folder: ranks
        that decided differently would wait for each other for ever."""
        path = None
        if cache_dir is not None:
            path = Path(cache_dir) / "real_stats" / f"{cls.cache_key(dataset, backbone, image_size)}.npz"
        cached = cls._read(path) if path is not None and idist.get_rank() == 0 else None
        if idist.get_world_size() > 1:
            cached = _broadcast_stats(cached)
        if cached is not None:
            return cached
        stats = _embed_real(dataset, backbone, device, batch_size, progress)
        mu, sigma = stats.mean_cov()
        if path is not None and idist.get_rank() == 0:
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(path, lambda f: np.savez(f, mu=mu, sigma=sigma, n=stats.n))
        return cls(mu, sigma, stats.n)

    @classmethod
    def _read(cls, path: Path) -> RealStats | None:
        if not path.is_file():
            return None
        try:
            with np.load(path) as z:
                return cls(z["mu"], z["sigma"], int(z["n"]))
        except (OSError, ValueError, KeyError):
            logger.warning("ignoring a damaged real-statistics cache file %s", path)
            return None


def _broadcast_stats(stats: RealStats | None) -> RealStats | None:
    """Rank 0's statistics (or its "not cached") on every rank."""
    device = idist.device()
    found = int(idist.broadcast(torch.tensor(int(stats is not None), device=device), src=0))
    if not found:
        return None
    is_src = idist.get_rank() == 0

    def send(x: np.ndarray | float, shape: tuple[int, ...]) -> torch.Tensor:
        t = torch.as_tensor(x, dtype=torch.float64).to(device) if is_src else torch.empty(
            shape, dtype=torch.float64, device=device)
        return idist.broadcast(t, src=0).cpu()

    mu = send(stats.mu if is_src else 0.0, (NUM_FEATURES,))
    sigma = send(stats.sigma if is_src else 0.0, (NUM_FEATURES, NUM_FEATURES))
    n = send(float(stats.n) if is_src else 0.0, ())
    return RealStats(mu.numpy(), sigma.numpy(), int(n.item()))


def embed_dataset(dataset: Dataset, backbone: Backbone, device: torch.device, batch_size: int,
                  progress: bool = False, desc: str = "embedding images",
                  keep_logits: bool = False) -> tuple[FeatureStats, torch.Tensor | None]:
    """Every image of ``dataset`` (``(image in [-1, 1], label)`` pairs) through the backbone
    once, this process's contiguous share of them: running feature statistics (summed over the
    processes) and, with ``keep_logits``, this share's logits."""
    share = Subset(dataset, list(rank_block(len(dataset), idist.get_rank(), idist.get_world_size())))
    stats = FeatureStats.empty(NUM_FEATURES, device)
    logits = [torch.zeros(0, NUM_CLASSES, dtype=torch.float64, device=device)]
    # Its own generator: a DataLoader draws a seed when iterated, and drawing it from the global
    # RNG would make training depend on whether the real statistics came from the cache.
    loader = DataLoader(share, batch_size=batch_size, shuffle=False, num_workers=0,
                        generator=torch.Generator())
    show = progress and idist.get_rank() == 0
    for images, _ in tqdm(loader, desc=desc, disable=not show, leave=False):
        features, batch_logits = backbone.embed(to_uint8(images).to(device))
        stats.update(features)
        if keep_logits and batch_logits is not None:
            logits.append(batch_logits.double())
    return _all_reduce_stats(stats), torch.cat(logits) if keep_logits else None


def _embed_real(dataset: Dataset, backbone: Backbone, device: torch.device, batch_size: int,
                progress: bool) -> FeatureStats:
    return embed_dataset(dataset, backbone, device, batch_size, progress,
                         desc="embedding held-out real images (once)")[0]


class Evaluator:
    """FID and IS of a generator on fixed latents against the held-out real images, whose
    statistics are loaded from the cache or computed at the first call."""

    def __init__(self, choice: BackboneChoice, real_set: Dataset, latents: torch.Tensor,
                 device: torch.device, cache_dir: Path | None = None, image_size: int = 64,
                 batch_size: int = 100, splits: int = 10, progress: bool = False) -> None:
        self.backbone, self.is_unavailable = choice.backbone, choice.is_unavailable
        self.real_set, self.latents, self.device = real_set, latents, device
        self.cache_dir, self.image_size = cache_dir, image_size
        self.batch_size, self.splits, self.progress = batch_size, splits, progress
        self._real: RealStats | None = None

    @property
    def real(self) -> RealStats:
        if self._real is None:
            self._real = RealStats.load_or_compute(self.real_set, self.backbone, self.device,
                                                   self.cache_dir, self.image_size,
                                                   self.batch_size, self.progress)
        return self._real

    @torch.no_grad()
    def __call__(self, netG: nn.Module) -> EvalResult:
        timer, seen = Timer(), self.backbone.images_seen
        real = self.real
        n, world = self.latents.shape[0], idist.get_world_size()
        stats, logits = self._embed_generated(netG, rank_block(n, idist.get_rank(), world))
        mu, sigma = _all_reduce_stats(stats).mean_cov()
        is_mean = is_std = None
        if self.backbone.has_logits:
            counts = [len(rank_block(n, r, world)) for r in range(world)]
            is_mean, is_std = inception_score(_all_gather_rows(logits, counts).cpu(), self.splits)
        return EvalResult(
            fid=fid_from_stats(mu, sigma, real.mu, real.sigma), is_mean=is_mean, is_std=is_std,
            num_generated=n, num_real=real.n, eval_seconds=round(timer.value(), 3),
            inception_images=_sum_over_ranks(self.backbone.images_seen - seen),
            fid_backbone=self.backbone.name,
            is_backbone=self.backbone.name if self.backbone.has_logits else None,
            is_unavailable=self.is_unavailable)

    def _embed_generated(self, netG: nn.Module, block: range) -> tuple[FeatureStats, torch.Tensor]:
        return embed_generator(netG, self.latents[block.start:block.stop], self.backbone,
                               self.device, self.batch_size, self.progress)


def embed_generator(netG: nn.Module, latents: torch.Tensor, backbone: Backbone,
                    device: torch.device, batch_size: int, progress: bool = False
                    ) -> tuple[FeatureStats, torch.Tensor]:
    """G(latents) in batches (G in eval mode), each image embedded once: feature statistics of
    this process's images, and their logits for IS (an empty tensor without a classifier)."""
    stats = FeatureStats.empty(NUM_FEATURES, device)
    logits = [torch.zeros(0, NUM_CLASSES, dtype=torch.float64, device=device)]
    with eval_mode(netG) as g:
        for i in tqdm(range(0, latents.shape[0], batch_size), leave=False,
                      desc="evaluating FID/IS", disable=not (progress and idist.get_rank() == 0)):
            z = latents[i:i + batch_size].to(device)
            features, batch_logits = backbone.embed(to_uint8(g(z)))
            stats.update(features)
            if batch_logits is not None:
                logits.append(batch_logits.double())
    return stats, torch.cat(logits)


def eval_latents(n: int, nz: int, seed: int) -> torch.Tensor:
    """The fixed latents of the evaluation set (a stream separate from training's)."""
    return torch.randn(n, nz, 1, 1, generator=torch.Generator().manual_seed(seed + 1_000_003))
