"""What ``animegan-evaluate`` computes: a checkpoint's scores as the trainer measured them, or
the scores between two sets of images (folders, statistics files, a generator)."""

from __future__ import annotations

import argparse
import dataclasses
import random
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..config import MIN_EVAL, Config
from ..data.loading import ImageFiles, default_transform, drop_unreadable, find_images, make_split
from ..device import resolve_device
from ..errors import UserError
from ..networks.faces import latents
from ..paths import cache_folder
from ..rundir import RunDir
from ..runs.checkpoints import (
    EXPORT_CONFIG,
    EXPORT_WEIGHTS,
    export_info,
    load_checkpoint,
    load_generator,
    resolve_checkpoint,
)
from .backbones import load_backbone
from .features import RealFeatures, embed_dataset, embed_generator
from .figures import draw_truncation_sweep
from .inception import BackboneChoice
from .quality import Evaluator, eval_latents
from .scores import (
    Inputs,
    collapse_warning,
    compute_all,
    copying_warning,
    headline_fields,
    score_line,
    table_cell,
)


def _run_config(path: Path, args: argparse.Namespace) -> Config:
    """The run's own settings (Config.from_run; the demo's where a checkpoint has no run
    folder), with the flags given here over them."""
    run = RunDir.of_checkpoint(path)
    if path.name == EXPORT_WEIGHTS:  # an exported model carries its run's settings
        settings = export_info(path)["settings"]
        cfg = Config.from_saved(settings, str(path.parent / EXPORT_CONFIG)) if settings else Config()
    else:
        cfg = Config.from_run(run.root) if run.config.is_file() else Config()
    given = {k: getattr(args, k) for k in args.from_the_run if getattr(args, k) is not None}
    cfg = dataclasses.replace(cfg, **given)
    if cfg.eval_size < MIN_EVAL:
        raise UserError(f"{path}: its run held out no images for evaluation (--eval-size "
                        f"{cfg.eval_size}); pass --eval-size N (N >= {MIN_EVAL})")
    return cfg


def score_checkpoint(args: argparse.Namespace) -> dict[str, Any]:
    """The checkpoint's generator on its run's fixed latents against its held-out faces."""
    return sweep(args, [args.truncation])[0]


def sweep(args: argparse.Namespace, truncations: list[float | None] | None = None
          ) -> list[dict[str, Any]]:
    """Every score of the checkpoint at each truncation (the same latents truncated), against
    the same held-out faces; with ``--truncation-sweep``, also drawn as a figure."""
    device = resolve_device(args.device)
    path = resolve_checkpoint(args.checkpoint)
    checkpoint = load_checkpoint(path)
    cfg = _run_config(path, args)
    split = make_split(cfg.data_dir, cfg.eval_size, 1, cfg.data_seed, cfg.synthetic_size)
    netG = load_generator(checkpoint, device, args.weights)
    cache = cache_folder(args.cache_dir)
    choice = load_backbone(args.inception_weights, device, args.eval_backend, cache)
    results, real = [], None
    for psi in truncations or args.sweep:
        z = eval_latents(cfg.eval_size, netG.nz, cfg.seed, psi)
        evaluator = Evaluator(choice, split.eval, z, device, cache, args.eval_batch_size,
                              progress=not args.json, real=real, train_set=split.train)
        results.append({"checkpoint": str(path), "truncation": psi, **evaluator(netG)})
        real = evaluator.real  # the real side once for all
    if truncations is None:
        figure = Path(args.plot) if args.plot else RunDir.of_checkpoint(path).plots / \
            "truncation_sweep.png"
        draw_truncation_sweep(results, figure)
        print(f"wrote {figure}", file=sys.stderr)
    return results


def describe_sweep(results: list[dict[str, Any]]) -> str:
    """The sweep as a table: one row per truncation, a column per headline score."""
    head = f"{results[0]['checkpoint']}: {results[0]['num_generated']} generated vs " \
           f"{results[0]['num_real']} real"
    columns = headline_fields()
    widths = [max(len(f.label), 8) for f in columns]
    rows = [f"{'psi':>6} " + " ".join(f"{f.label:>{w}}" for f, w in zip(columns, widths, strict=True))]
    for r in results:
        rows.append(f"{'none' if r['truncation'] is None else r['truncation']:>6} " + " ".join(
            f"{table_cell(f, r.get(f.key)):>{w}}" for f, w in zip(columns, widths, strict=True)))
    return "\n".join([head, *rows])


@dataclass
class Side:
    """One side of a comparison: its features (or only their statistics, from a file) and,
    where there are images and a classifier, their logits."""

    real: RealFeatures
    logits: torch.Tensor | None
    what: str


def compare(args: argparse.Namespace) -> dict[str, Any] | None:
    device = resolve_device(args.device)
    cache = cache_folder(args.cache_dir)
    choice = load_backbone(args.inception_weights, device, args.eval_backend, cache, args.image_size)
    real = _side(args.real, "real", args, choice, device, cache)
    if args.save_stats:
        real.real.save_stats(args.save_stats, choice.backbone.name)
        print(f"wrote {args.save_stats} (mu, sigma of {real.what})", file=sys.stderr)
    if not args.fake:
        return None
    fake = _side(args.fake, "fake", args, choice, device, cache)
    if fake.real.features is None:  # published statistics of generated images: FID only
        why = "the fake side is a statistics file (mu, sigma); give a folder or a generator"
        out = compute_all(Inputs(None, real.real, missing={"generated": why, "logits": why},
                                 generated_stats=(fake.real.mu, fake.real.sigma)))
    else:
        out = compute_all(Inputs(fake.real.features, real.real, fake.logits,
                                 missing={"logits": choice.is_unavailable or ""}))
    return {**out, "real": real.what, "fake": fake.what, "num_real": real.real.n,
            "num_fake": fake.real.n, "fid_backbone": choice.backbone.name,
            "eval_backend": choice.backbone.runtime}


def describe(result: dict[str, Any]) -> str:
    """The human-readable form of a result: what was compared, every score, what is missing
    and why, and a collapse warning when there is one."""
    network = f"{result['fid_backbone']}, on {result['eval_backend']}"
    if "checkpoint" in result:
        what = (f"{result['checkpoint']}: {result['num_generated']} generated vs "
                f"{result['num_real']} real ({network})")
    else:
        what = f"{result['fake']} vs {result['real']} ({network})"
    lines = [what, score_line(result)]
    lines += [why if why.startswith(f"{name.upper()} unavailable") else f"{name} unavailable: {why}"
              for name, why in result["unavailable"].items()]
    warnings = filter(None, (collapse_warning(result), copying_warning(result)))
    return "\n".join(lines + [f"warning: {w}" for w in warnings])


def _side(spec: str, role: str, args: argparse.Namespace, choice: BackboneChoice,
          device: torch.device, cache: Path) -> Side:
    path = Path(spec)
    if path.suffix == ".npz":
        return _stats_file(path, role)
    if role == "fake" and (path.suffix == ".pt" or RunDir(path).regular_checkpoints()):
        return _generator(path, args, choice, device)
    if not path.is_dir():
        raise UserError(f"--{role} {spec}: no such folder, .npz statistics file"
                        + (" or checkpoint" if role == "fake" else ""))
    return _folder(path, role, args, choice, device, cache)


def _stats_file(path: Path, role: str) -> Side:
    try:
        real = RealFeatures.from_stats_file(path)
    except (OSError, ValueError) as e:
        raise UserError(f"--{role} {path}: not a statistics file ({e})") from e
    return Side(real, None, f"statistics {path}")


def _folder(path: Path, role: str, args: argparse.Namespace, choice: BackboneChoice,
            device: torch.device, cache: Path) -> Side:
    files = drop_unreadable(find_images(path), progress=not args.json)
    if args.num is not None and args.num < len(files):
        files = sorted(random.Random(args.seed or 0).sample(files, args.num))
    if len(files) < 2:
        raise UserError(f"--{role} {path}: {len(files)} readable image(s); FID needs at least 2")
    images = ImageFiles(files, default_transform(args.image_size))
    what = f"{len(files)} images in {path}"
    if role == "real":  # cached, as the trainer's held-out features are
        return Side(RealFeatures.load_or_compute(images, choice.backbone, device, cache,
                                                 args.eval_batch_size, not args.json, args.image_size),
                    None, what)
    embedded = embed_dataset(images, choice.backbone, device, args.eval_batch_size,
                             progress=not args.json)
    return Side(RealFeatures(embedded["features"].cpu()), embedded["logits"], what)


def _generator(path: Path, args: argparse.Namespace, choice: BackboneChoice,
               device: torch.device) -> Side:
    checkpoint_path = resolve_checkpoint(path)
    netG = load_generator(load_checkpoint(checkpoint_path), device, args.weights)
    n, seed = args.num or 10_000, args.seed or 0
    embedded = embed_generator(netG, latents(n, netG.nz, seed, truncation=args.truncation),
                               choice.backbone, device, args.eval_batch_size, progress=not args.json)
    return Side(RealFeatures(embedded["features"].cpu()), embedded["logits"],
                f"{n} faces of seed {seed} from {checkpoint_path}")
