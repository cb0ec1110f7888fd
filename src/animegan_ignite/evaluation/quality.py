"""The evaluator: how good the faces are, fidelity and diversity apart, every score of the
registry (scores.py) from one Inception pass per generated image.

:class:`Evaluator` is an ignite ``Engine`` over batches of fixed latents: its step draws G(z) (G in
eval mode: each image depends only on its own latent) and embeds them; an ``Embeddings`` metric
(features.py) keeps every image's features and logits, and a ``MetricsLambda`` computes every
registered score from them against the held-out real faces' features and, for the scores that
need it, a sample of the training faces' features (both embedded once and cached on disk).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import ignite.distributed as idist
import torch
from ignite.engine import Events
from ignite.handlers import Timer
from ignite.metrics import MetricsLambda
from torch import nn
from torch.utils.data import Dataset, Subset

from .. import seeds
from ..data.loading import stack_images
from ..networks.faces import truncate
from ..networks.models import eval_mode, sample
from ..runs import faults
from ..runs.resume import stop_point
from .features import RealFeatures, embedding_engine, latent_batches
from .inception import BackboneChoice
from .scores import SCORES, Images, Inputs, compute_all, draw_figures

logger = logging.getLogger(__name__)


WHOLE_TRAINING_SET = 1000  # training sets this small are compared with in full


def sample_size(n_train: int, n_held_out: int) -> int:
    """Training faces the memorisation score compares with: as many as the held-out faces, or
    every one of a small set (a copy of a face left out of the sample would go unseen)."""
    return n_train if n_train <= WHOLE_TRAINING_SET else min(n_train, n_held_out)


def training_sample(train_set: Dataset, n: int) -> Subset:
    """``n`` of the training faces (all of them when there are fewer), the same ones in every
    run on the same data (seeds.TRAINING_SAMPLE): what the memorisation score compares with."""
    order = torch.randperm(len(train_set), generator=torch.Generator().manual_seed(
        seeds.TRAINING_SAMPLE))
    return Subset(train_set, sorted(order[:n].tolist()))


class Evaluator:
    """The per-epoch evaluator: an Engine over the fixed latents' batches whose metric
    ``"scores"`` is every registered score (scores.SCORES) of the generated sample. The
    held-out real features and the training-face sample's are loaded from the cache or embedded
    at the first call; ``train_set`` None leaves the scores that need training faces
    unavailable."""

    def __init__(self, choice: BackboneChoice, real_set: Dataset, latents: torch.Tensor,
                 device: torch.device, cache_dir: Path | None = None, batch_size: int = 100,
                 progress: bool = False, real: RealFeatures | None = None,
                 train_set: Dataset | None = None) -> None:
        self.backbone, self.is_unavailable = choice.backbone, choice.is_unavailable
        self.real_set, self.latents, self.device = real_set, latents, device
        self.cache_dir, self.batch_size, self.progress = cache_dir, batch_size, progress
        self.train_sample = (training_sample(train_set, sample_size(len(train_set), len(real_set)))
                             if train_set is not None
                             and any("training" in s.needs for s in SCORES.values()) else None)
        self._real, self._training = real, None
        self._netG: nn.Module | None = None
        self.last_inputs: Inputs | None = None
        self.engine, embeddings = embedding_engine(
            self.backbone, lambda z: self._netG(z.to(device)), device, progress, "evaluating")
        MetricsLambda(lambda e: compute_all(self._inputs(e)), embeddings).attach(self.engine,
                                                                               "scores")
        # An epoch end's evaluation takes minutes on a CPU: a requested stop is acted on
        # between its batches (the resumed run evaluates that epoch again).
        self.engine.add_event_handler(Events.ITERATION_COMPLETED, lambda _: faults.point(
            "evaluation"))
        self.engine.add_event_handler(Events.ITERATION_COMPLETED, stop_point, "evaluation")

    @property
    def real(self) -> RealFeatures:
        if self._real is None:
            self._real = self._load(self.real_set, "embedding held-out real images (once)")
        return self._real

    @property
    def training(self) -> RealFeatures | None:
        if self._training is None and self.train_sample is not None:
            self._training = self._load(self.train_sample, "embedding a sample of the training "
                                        "images (once)")
        return self._training

    def _load(self, dataset: Dataset, desc: str) -> RealFeatures:
        return RealFeatures.load_or_compute(dataset, self.backbone, self.device, self.cache_dir,
                                            self.batch_size, self.progress, desc=desc)

    def _inputs(self, embedded: dict[str, Any]) -> Inputs:
        netG = self._netG
        training = None if self.train_sample is None else lambda i: stack_images(
            self.train_sample, i)
        self.last_inputs = Inputs(
            embedded["features"], self.real, embedded["logits"], self.training,
            missing={"logits": self.is_unavailable or "", "training": "no training faces given"},
            images=Images(lambda i: sample(netG, self.latents[i]), training))
        return self.last_inputs

    def __call__(self, netG: nn.Module) -> dict[str, Any]:
        """Every score of ``netG`` on the fixed latents, with what was compared."""
        timer, seen = Timer(), self.backbone.images_seen
        real, _ = self.real, self.training
        with eval_mode(netG) as g:
            self._netG = g
            scores = self.engine.run(latent_batches(self.latents, self.batch_size),
                                     max_epochs=1).metrics["scores"]
        return {**scores, "num_generated": self.latents.shape[0], "num_real": real.n,
                "eval_seconds": round(timer.value(), 3),
                # images this evaluation passed through Inception (all processes)
                "inception_images": int(idist.all_reduce(self.backbone.images_seen - seen)),
                "fid_backbone": self.backbone.name, "eval_backend": self.backbone.runtime,
                "is_backbone": self.backbone.name if self.backbone.has_logits else None}

    def draw_figures(self, folder: Path) -> list[Path]:
        """The registered scores' figures of the last evaluation (on the writer)."""
        return draw_figures(self.last_inputs, folder) if self.last_inputs is not None else []


def eval_latents(n: int, nz: int, seed: int, truncation: float | None = None) -> torch.Tensor:
    """The fixed latents of the evaluation set (a stream separate from training's), optionally
    truncated (faces.truncate)."""
    gen = torch.Generator().manual_seed(seeds.eval_latents(seed))
    return truncate(torch.randn(n, nz, 1, 1, generator=gen), truncation, gen)
