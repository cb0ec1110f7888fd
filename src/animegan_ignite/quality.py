"""How good the faces are, fidelity and diversity apart: FID, KID, precision/recall/density/
coverage, the Vendi diversity of the sample beside that of as many real faces, and IS, all from
one Inception pass per generated image against held-out real faces.

- The evaluator is an ignite ``Engine`` over batches of fixed latents: its step draws G(z) (G
  in eval mode: each image depends only on its own latent) and embeds them; an
  :class:`Embeddings` metric keeps every image's features and logits (gathered in rank order on
  every rank), and a ``MetricsLambda`` computes every score from them (:func:`scores`).
- The held-out real faces' features are embedded once and cached on disk, keyed by exactly
  which files they are, the backbone and the resize rule; every later epoch, resumed run and
  later run on the same data reuses them. Rank 0 decides whether the cache holds them and the
  others follow (ranks that decided differently would wait for each other for ever).
- With several processes each embeds a contiguous block of the images; the result equals the
  single-process one on the same images.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import ignite.distributed as idist
import numpy as np
import torch
from ignite.engine import Engine, Events
from ignite.handlers import ProgressBar, Timer
from ignite.metrics import Metric, MetricsLambda
from ignite.metrics.metric import reinit__is_reduced
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset

from . import faults
from .faces import truncate
from .inception import NUM_FEATURES, Backbone, BackboneChoice
from .metrics import (
    KID_SUBSET_SIZE,
    FeatureStats,
    fid_from_features,
    inception_score,
    kid,
    kid_real_kernel,
    knn_radii,
    prdc,
    vendi,
)
from .models import eval_mode
from .resume import stop_point
from .rundir import atomic_write

logger = logging.getLogger("animegan_ignite")
RESIZE_RULE = "tf1-bilinear-299"
IS_SPLITS = 10


@dataclass
class EvalResult:
    """One evaluation, as stored in the history's epoch record. A score that the sample
    sizes (or a statistics file) do not allow is None, with the reason in ``unavailable``."""

    fid: float
    kid: float | None
    kid_std: float | None
    precision: float | None
    recall: float | None
    density: float | None
    coverage: float | None
    vendi: float | None
    vendi_real: float | None
    diversity: float | None  # vendi / vendi_real: 1 is as varied as real faces
    is_mean: float | None
    is_std: float | None
    num_generated: int
    num_real: int
    eval_seconds: float
    inception_images: int  # images this evaluation passed through Inception (all processes)
    fid_backbone: str
    is_backbone: str | None
    is_unavailable: str | None
    unavailable: dict[str, str]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


SCORE_KEYS = ("fid", "kid", "kid_std", "precision", "recall", "density", "coverage", "vendi",
              "vendi_real", "diversity")


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

    def __init__(self, device: torch.device) -> None:
        self._cached: dict[str, torch.Tensor | None] | None = None
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
                                    torch.zeros(0, NUM_FEATURES, device=self._device))
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
        key = _digest([dataset_fingerprint(dataset), backbone.name, RESIZE_RULE, image_size])
        return Path(cache_dir) / "real_features" / f"{key}.pt"

    @classmethod
    def load_or_compute(cls, dataset: Dataset, backbone: Backbone, device: torch.device,
                        cache_dir: Path | None, batch_size: int = 100,
                        progress: bool = False, image_size: int = 64) -> RealFeatures:
        """From the cache when it holds this exact subset and backbone; else embed the images
        (each exactly once, spread over the processes) and write the cache (rank 0)."""
        path = cls.cache_path(cache_dir, dataset, backbone, image_size) if cache_dir else None
        features = _read_cache(path) if path is not None and idist.get_rank() == 0 else None
        if idist.get_world_size() > 1 and idist.broadcast(int(features is not None), src=0):
            features = idist.broadcast(None if features is None else features.to(idist.device()),
                                       src=0, safe_mode=True)
        if features is None:
            features = embed_dataset(dataset, backbone, device, batch_size, progress,
                                     "embedding held-out real images (once)")["features"].cpu()
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


def embedding_engine(backbone: Backbone, draw: Callable[[Any], torch.Tensor],
                     device: torch.device, progress: bool = False, desc: str = ""
                     ) -> tuple[Engine, Embeddings]:
    """An Engine whose step draws a batch of images in [-1, 1] (``draw``) and embeds them
    once, and the :class:`Embeddings` metric attached to it."""

    def step(engine: Engine, batch: Any) -> tuple[torch.Tensor, torch.Tensor | None]:
        return backbone.embed(to_uint8(draw(batch)).to(device))

    engine = Engine(step)
    engine.logger.setLevel(logging.WARNING)  # ignite's per-run INFO lines are noise here
    embeddings = Embeddings(device)
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


def scores(features: torch.Tensor, real: RealFeatures) -> dict[str, Any]:
    """Every score of generated ``features`` against ``real``: FID, KID (mean, std),
    precision, recall, density, coverage, the Vendi score of the sample and of as many real
    faces, and their ratio (``diversity``). Scores the sizes do not allow are None, with the
    reason in ``unavailable``."""
    out: dict[str, Any] = {"fid": fid_from_features(features, real.mu, real.sigma), "unavailable": {}}
    if real.features is None:
        reason = "the real side is a statistics file (mu, sigma); give a folder of images"
        out.update(dict.fromkeys(SCORE_KEYS[1:]))
        out["unavailable"] = {"kid, precision/recall, diversity": reason}
        return out
    real_features = real.features.to(features.device)
    tries = {"kid": lambda: _kid(features, real_features, real),
             "precision/recall": lambda: prdc(real_features, features, real_radii=real.radii()),
             "diversity": lambda: _diversity(features, real)}
    for name, compute in tries.items():
        try:
            out.update(compute())
        except ValueError as e:  # too few images for this score
            out["unavailable"][name] = str(e)
    if out.get("kid") is not None and out["kid_std"] is None:
        out["unavailable"]["kid spread"] = (
            f"every KID subset is the whole sample ({len(features)} images a side), so the "
            f"spread would be 0 by construction; it needs --eval-size above {KID_SUBSET_SIZE}")
    for key in SCORE_KEYS:
        out.setdefault(key, None)
    return out


def _kid(features: torch.Tensor, real_features: torch.Tensor, real: RealFeatures
         ) -> dict[str, float | None]:
    mean, std = kid(features, real_features, real.kid_kernel())
    whole = len(features) == len(real_features) <= KID_SUBSET_SIZE  # every subset the same
    return {"kid": mean, "kid_std": None if whole else std}


def _diversity(features: torch.Tensor, real: RealFeatures) -> dict[str, float]:
    ours, theirs = vendi(features), real.vendi_of(features.shape[0])
    return {"vendi": ours, "vendi_real": theirs, "diversity": ours / theirs}


class Evaluator:
    """The per-epoch evaluator: an Engine over the fixed latents' batches whose metrics are
    every score of :func:`scores` against the held-out real features (loaded from the cache or
    embedded at the first call) and, where the backbone has its classifier, IS."""

    def __init__(self, choice: BackboneChoice, real_set: Dataset, latents: torch.Tensor,
                 device: torch.device, cache_dir: Path | None = None, batch_size: int = 100,
                 progress: bool = False, real: RealFeatures | None = None) -> None:
        self.backbone, self.is_unavailable = choice.backbone, choice.is_unavailable
        self.real_set, self.latents, self.device = real_set, latents, device
        self.cache_dir, self.batch_size, self.progress = cache_dir, batch_size, progress
        self._real = real
        self._netG: nn.Module | None = None
        self.engine, embeddings = embedding_engine(
            self.backbone, lambda z: self._netG(z.to(device)), device, progress,
            "evaluating")
        MetricsLambda(lambda e: scores(e["features"], self.real), embeddings).attach(
            self.engine, "scores")
        # An epoch end's evaluation takes minutes on a CPU: a requested stop is acted on
        # between its batches (the resumed run evaluates that epoch again).
        self.engine.add_event_handler(Events.ITERATION_COMPLETED, lambda _: faults.point(
            "evaluation"))
        self.engine.add_event_handler(Events.ITERATION_COMPLETED, stop_point)
        if self.backbone.has_logits:
            MetricsLambda(lambda e: inception_score(e["logits"].cpu(), IS_SPLITS),
                          embeddings).attach(self.engine, "is")

    @property
    def real(self) -> RealFeatures:
        if self._real is None:
            self._real = RealFeatures.load_or_compute(self.real_set, self.backbone, self.device,
                                                      self.cache_dir, self.batch_size,
                                                      self.progress)
        return self._real

    def __call__(self, netG: nn.Module) -> EvalResult:
        timer, seen = Timer(), self.backbone.images_seen
        real = self.real
        with eval_mode(netG) as g:
            self._netG = g
            metrics = self.engine.run(latent_batches(self.latents, self.batch_size),
                                      max_epochs=1).metrics
        is_mean, is_std = metrics.get("is", (None, None))
        return EvalResult(
            **{k: metrics[k] for k in (*SCORE_KEYS, "unavailable")}, is_mean=is_mean,
            is_std=is_std, num_generated=self.latents.shape[0], num_real=real.n,
            eval_seconds=round(timer.value(), 3),
            inception_images=int(idist.all_reduce(self.backbone.images_seen - seen)),
            fid_backbone=self.backbone.name,
            is_backbone=self.backbone.name if self.backbone.has_logits else None,
            is_unavailable=self.is_unavailable)


# Under half the Vendi score of as many real faces, a sample is as varied as a handful of real
# faces repeated (docs/evaluation.md, "Diversity"): collapsed runs measured fall far below,
# healthy ones stay above.
COLLAPSE_RATIO = 0.5


def score_line(r: dict[str, Any]) -> str:
    """One line of an evaluation's scores, as the console and ``animegan-evaluate`` print them."""
    parts = [f"FID {r['fid']:.2f}"]
    if r.get("kid") is not None:
        spread = "" if r.get("kid_std") is None else f" ± {r['kid_std']:.4f}"
        parts.append(f"KID {r['kid']:.4f}{spread}")
    if r.get("precision") is not None:
        parts.append(f"precision {r['precision']:.3f}  recall {r['recall']:.3f}")
    if r.get("diversity") is not None:
        parts.append(f"diversity {r['diversity']:.2f} (Vendi {r['vendi']:.2f} / real "
                     f"{r['vendi_real']:.2f})")
    if r.get("is_mean") is not None:
        parts.append(f"IS {r['is_mean']:.3f} ± {r['is_std']:.3f}")
    elif "is_mean" in r:
        parts.append("IS unavailable")
    return "  ".join(parts)


def collapse_warning(record: dict[str, Any], earlier: list[dict[str, Any]] = ()) -> str | None:
    """A warning when the sample's diversity (its Vendi score over that of as many real faces)
    is under :data:`COLLAPSE_RATIO`, or under half the best of the ``earlier`` evaluations
    (recall too, once precision says the fakes lie among the real faces); else None."""
    ratio = record.get("diversity")
    if ratio is None:
        return None
    best = max((r["diversity"] for r in earlier if r.get("diversity") is not None), default=0.0)
    recalls = [r["recall"] for r in earlier if r.get("recall") is not None and r["precision"] >= 0.5]
    reasons = []
    if ratio < COLLAPSE_RATIO:
        reasons.append(f"its diversity is {ratio:.2f} of real faces' (under {COLLAPSE_RATIO})")
    elif ratio < 0.5 * best:
        reasons.append(f"its diversity fell to {ratio:.2f} from the run's best {best:.2f}")
    if recalls and record.get("precision", 0) >= 0.5 and record["recall"] < 0.5 * max(recalls):
        reasons.append(f"recall fell to {record['recall']:.2f} from the run's best {max(recalls):.2f}")
    if not reasons:
        return None
    where = f" at epoch {record['epoch']}" if "epoch" in record else ""
    # A training run's record has augment_p when it already uses DiffAugment.
    other = "" if "augment_p" in record else "DiffAugment (--recipe diffaug-cosine) or "
    return (f"possible mode collapse{where}: {'; '.join(reasons)}; the generator draws few "
            "distinct faces. Look at the snapshots; resume from the best checkpoint with a lower "
            f"--lr, or try {other}another --seed")


def eval_latents(n: int, nz: int, seed: int, truncation: float | None = None) -> torch.Tensor:
    """The fixed latents of the evaluation set (a stream separate from training's), optionally
    truncated (faces.truncate)."""
    gen = torch.Generator().manual_seed(seed + 1_000_003)
    return truncate(torch.randn(n, nz, 1, 1, generator=gen), truncation, gen)
