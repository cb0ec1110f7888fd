"""Inception features of images, each image embedded once: the input of every score.

- :class:`Embeddings`, an ignite ``Metric``, keeps every image's pool3 features (and, with a
  classifier, its logits), gathered in rank order on every rank; :func:`embedding_engine` is the
  ``Engine`` that draws a batch of images and embeds it.
- :class:`RealFeatures` holds a set of real faces' features (held-out or training faces) with
  what the scores keep of them; :meth:`RealFeatures.load_or_compute` embeds them once and caches
  them on disk, keyed by exactly which files they are, the backbone and the resize rule. Rank 0
  decides whether the cache holds them and the others follow (ranks that decided differently
  would wait for each other for ever).
- With several processes each embeds a contiguous block of the images; the result equals the
  single-process one on the same images.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import ignite.distributed as idist
import numpy as np
import torch
from ignite.engine import Engine
from ignite.handlers import ProgressBar
from ignite.metrics import Metric
from ignite.metrics.metric import reinit__is_reduced
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset

from ..data.cache import files_identity, fingerprint
from ..networks.models import eval_mode
from ..rundir import atomic_write
from .inception import NUM_FEATURES, Backbone
from .metrics import FeatureStats, kid_real_kernel, knn_radii, vendi

logger = logging.getLogger(__name__)
RESIZE_RULE = "tf1-bilinear-299"


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """[-1, 1] float images to uint8, as saving them to PNG would (reals round-trip exactly)."""
    return ((images.float() + 1) * 127.5).round_().clamp_(0, 255).to(torch.uint8)


def rank_block(n: int, rank: int, world: int) -> range:
    """The contiguous share of ``range(n)`` that process ``rank`` of ``world`` handles."""
    base, extra = divmod(n, world)
    start = rank * base + min(rank, extra)
    return range(start, start + base + (rank < extra))


class Embeddings(Metric):
    """Every image's pool3 features (float32) and, with a classifier, logits (float64), in the
    order of the images, on every rank: the input of every score. Computed once per run of
    the engine, however many scores read it."""

    def __init__(self, device: torch.device, num_features: int = NUM_FEATURES) -> None:
        self._cached: dict[str, torch.Tensor | None] | None = None
        self.num_features = num_features
        super().__init__(output_transform=lambda out: out, device=device)

    @reinit__is_reduced
    def reset(self) -> None:
        self._features: list[torch.Tensor] = []
        self._logits: list[torch.Tensor] = []
        self._cached = None

    @reinit__is_reduced
    def update(self, output: tuple[torch.Tensor, torch.Tensor | None]) -> None:
        features, logits = output
        self._features.append(features.float())
        if logits is not None:
            self._logits.append(logits.double())

    def compute(self) -> dict[str, torch.Tensor | None]:
        if self._cached is None:
            features = _gather_rows(torch.cat(self._features) if self._features else
                                    torch.zeros(0, self.num_features, device=self._device))
            logits = _gather_rows(torch.cat(self._logits)) if self._logits else None
            self._cached = {"features": features, "logits": logits}
        return self._cached


def _gather_rows(x: torch.Tensor) -> torch.Tensor:
    """Every rank's rows in rank order (ranks may hold different row counts)."""
    if idist.get_world_size() == 1:
        return x
    counts = idist.all_gather(torch.tensor([x.shape[0]], device=x.device)).tolist()
    shapes = [[c, *x.shape[1:]] for c in counts]
    return torch.cat(idist.all_gather_tensors_with_shapes(x.contiguous(), shapes))


class RealFeatures:
    """The held-out real images' features and their mean and covariance. From a pytorch-fid
    statistics file only ``mu``/``sigma``/``n`` are known (``features`` is None)."""

    def __init__(self, features: torch.Tensor | None, mu: np.ndarray | None = None,
                 sigma: np.ndarray | None = None, n: int | None = None) -> None:
        self.features = features
        if mu is None:
            mu, sigma = FeatureStats.of(features).mean_cov()
        self.mu, self.sigma = mu, sigma
        self.n = features.shape[0] if n is None else n
        self._kid_kernel: torch.Tensor | None = None
        self._radii: torch.Tensor | None = None
        self._vendi: dict[int, float] = {}

    def kid_kernel(self) -> torch.Tensor:
        """KID's kernel matrix of these features (kept: the real side never changes)."""
        if self._kid_kernel is None:
            self._kid_kernel = kid_real_kernel(self.features)
        return self._kid_kernel

    def radii(self) -> torch.Tensor:
        """Each real feature vector's k-NN radius (kept, as the kernel)."""
        if self._radii is None:
            self._radii = knn_radii(self.features)
        return self._radii

    def vendi_of(self, n: int) -> float:
        """The Vendi score of the first ``n`` real faces (a generated sample's yardstick)."""
        if n not in self._vendi:
            self._vendi[n] = vendi(self.features[:n])
        return self._vendi[n]

    def save_stats(self, path: str | Path, backbone: str) -> None:
        """As pytorch-fid writes statistics (``mu``, ``sigma``), plus ``n`` and the backbone."""
        atomic_write(path, lambda f: np.savez(f, mu=self.mu, sigma=self.sigma, n=self.n,
                                              backbone=backbone))

    @classmethod
    def from_stats_file(cls, path: str | Path) -> RealFeatures:
        """Statistics in pytorch-fid's ``.npz`` format (``mu``, ``sigma``; ``n`` if present).
        Raises ValueError for a file that is not one."""
        with np.load(path) as z:
            if "mu" not in z or "sigma" not in z:
                raise ValueError(f"it holds {sorted(z.files)}, not mu and sigma")
            mu, sigma = z["mu"].astype(np.float64), z["sigma"].astype(np.float64)
            n = int(z["n"]) if "n" in z else 0
        if mu.shape != (NUM_FEATURES,) or sigma.shape != (NUM_FEATURES, NUM_FEATURES):
            raise ValueError(f"mu {mu.shape} / sigma {sigma.shape} are not 2048-d pool3 statistics")
        return cls(None, mu, sigma, n)

    @staticmethod
    def cache_path(cache_dir: Path, dataset: Dataset, backbone: Backbone, image_size: int) -> Path:
        key = fingerprint(dataset_identity(dataset), backbone.name, RESIZE_RULE, image_size)
        return Path(cache_dir) / "real_features" / f"{key}.pt"

    @classmethod
    def load_or_compute(cls, dataset: Dataset, backbone: Backbone, device: torch.device,
                        cache_dir: Path | None, batch_size: int = 100,
                        progress: bool = False, image_size: int = 64,
                        desc: str = "embedding held-out real images (once)") -> RealFeatures:
        """From the cache when it holds this exact subset and backbone; else embed the images
        (each exactly once, spread over the processes) and write the cache (rank 0)."""
        path = cls.cache_path(cache_dir, dataset, backbone, image_size) if cache_dir else None
        features = _read_cache(path) if path is not None and idist.get_rank() == 0 else None
        if idist.get_world_size() > 1 and idist.broadcast(int(features is not None), src=0):
            features = idist.broadcast(None if features is None else features.to(idist.device()),
                                       src=0, safe_mode=True)
        if features is None:
            features = embed_dataset(dataset, backbone, device, batch_size, progress,
                                     desc)["features"].cpu()
            if path is not None and idist.get_rank() == 0:
                path.parent.mkdir(parents=True, exist_ok=True)
                atomic_write(path, lambda f: torch.save(features, f))
        return cls(features.cpu())


def _read_cache(path: Path) -> torch.Tensor | None:
    if not path.is_file():
        return None
    try:
        return torch.load(path, weights_only=True)
    except Exception:  # a damaged cache file is recomputed, never trusted
        logger.warning("ignoring a damaged real-features cache file %s", path)
        return None


def dataset_identity(dataset: Dataset) -> Any:
    """Exactly which images a (subset of a) data set holds: its files (cache.files_identity),
    or the synthetic set's parameters."""
    indices: list[int] | None = None
    while isinstance(dataset, Subset):  # a subset of a subset: the indices into the whole
        inner = list(dataset.indices)
        indices, dataset = inner if indices is None else [inner[i] for i in indices], dataset.dataset
    if getattr(dataset, "files", None):  # a folder's images (the drawn demo faces have none)
        files = dataset.files if indices is None else [dataset.files[i] for i in indices]
        return ["files", files_identity(files)]
    return [type(dataset).__name__, getattr(dataset, "seed", None),
            getattr(dataset, "size", len(dataset)), indices]


def embedding_engine(backbone: Backbone, draw: Callable[[Any], torch.Tensor],
                     device: torch.device, progress: bool = False, desc: str = ""
                     ) -> tuple[Engine, Embeddings]:
    """An Engine whose step draws a batch of images in [-1, 1] (``draw``) and embeds them
    once, and the :class:`Embeddings` metric attached to it."""

    def step(engine: Engine, batch: Any) -> tuple[torch.Tensor, torch.Tensor | None]:
        return backbone.embed(to_uint8(draw(batch)).to(device))

    engine = Engine(step)
    engine.logger.setLevel(logging.WARNING)  # ignite's per-run INFO lines are noise here
    embeddings = Embeddings(device, backbone.num_features)
    embeddings.attach(engine, "embeddings")
    if progress and idist.get_rank() == 0:
        ProgressBar(desc=desc, persist=False).attach(engine)
    return engine, embeddings


def embed_dataset(dataset: Dataset, backbone: Backbone, device: torch.device, batch_size: int,
                  progress: bool = False, desc: str = "embedding images") -> dict[str, Any]:
    """Every image of ``dataset`` (``(image in [-1, 1], label)`` pairs) embedded once, this
    process's contiguous share of them; features and logits of all of them, in order."""
    share = Subset(dataset, list(rank_block(len(dataset), idist.get_rank(), idist.get_world_size())))
    # Its own generator: a DataLoader draws a seed when iterated, and drawing it from the global
    # RNG would make training depend on whether the real features came from the cache.
    loader = DataLoader(share, batch_size=batch_size, shuffle=False, num_workers=0,
                        generator=torch.Generator())
    engine, _ = embedding_engine(backbone, lambda batch: batch[0], device, progress, desc)
    return engine.run(loader, max_epochs=1).metrics["embeddings"]


def latent_batches(latents: torch.Tensor, batch_size: int) -> list[torch.Tensor]:
    """This process's contiguous block of ``latents``, in batches."""
    block = rank_block(latents.shape[0], idist.get_rank(), idist.get_world_size())
    return [latents[i:min(i + batch_size, block.stop)] for i in range(block.start, block.stop,
                                                                       batch_size)]


def embed_generator(netG: nn.Module, latents: torch.Tensor, backbone: Backbone,
                    device: torch.device, batch_size: int, progress: bool = False,
                    desc: str = "embedding generated images") -> dict[str, Any]:
    """G(latents) in batches, G in eval mode, each image embedded once: features and logits
    of all of them, in order (this process draws its contiguous block of the latents)."""
    with eval_mode(netG) as g:
        engine, _ = embedding_engine(backbone, lambda z: g(z.to(device)), device, progress, desc)
        return engine.run(latent_batches(latents, batch_size), max_epochs=1).metrics["embeddings"]

