"""What ``animegan-evaluate`` computes: a checkpoint's scores as the trainer measured them, or
the scores between two sets of images (folders, statistics files, a generator)."""

from __future__ import annotations

import argparse
import json
import random
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .checkpoints import load_checkpoint, load_generator, resolve_checkpoint
from .data import ImageFiles, default_transform, drop_unreadable, find_images, make_split
from .device import resolve_device
from .errors import UserError
from .faces import latents
from .figures import draw_truncation_sweep
from .inception import BackboneChoice, load_backbone
from .metrics import fid_from_stats, inception_score
from .paths import cache_folder
from .quality import (
    IS_SPLITS,
    SCORE_KEYS,
    Evaluator,
    RealFeatures,
    collapse_warning,
    embed_dataset,
    embed_generator,
    eval_latents,
    score_line,
    scores,
)
from .rundir import RunDir


def _run_settings(path: Path, args: argparse.Namespace) -> dict[str, Any]:
    """The run's own settings (if its config.json is there), overridden by the flags given."""
    cfg_file = RunDir.of_checkpoint(path).config
    run = json.loads(cfg_file.read_text()) if cfg_file.is_file() else {}
    settings = {"data_dir": run.get("data_dir"), "eval_size": run.get("eval_size", 3000),
                "seed": run.get("seed", 999), "synthetic_size": run.get("synthetic_size", 2528),
                "split_seed": run.get("split_seed")}
    settings.update({k: v for k, v in vars(args).items() if k in settings and v is not None})
    if settings["split_seed"] is None:
        settings["split_seed"] = settings["seed"]
    if settings["eval_size"] < 10:
        raise UserError(f"{path}: its run held out no images for evaluation (--eval-size "
                        f"{settings['eval_size']}); pass --eval-size N (N >= 10)")
    return settings


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
    s = _run_settings(path, args)
    split = make_split(s["data_dir"], s["eval_size"], 1, s["split_seed"], s["synthetic_size"])
    netG = load_generator(checkpoint, device, args.weights)
    choice = load_backbone(args.inception_weights, device)
    cache = cache_folder(args.cache_dir)
    results, real = [], None
    for psi in truncations or args.sweep:
        z = eval_latents(s["eval_size"], netG.nz, s["seed"], psi)
        evaluator = Evaluator(choice, split.eval, z, device, cache, args.batch_size,
                              progress=not args.json, real=real)  # the real side once for all
        results.append({"checkpoint": str(path), "truncation": psi, **evaluator(netG).to_dict()})
        real = evaluator.real
    if truncations is None:
        figure = Path(args.plot) if args.plot else RunDir.of_checkpoint(path).plots / \
            "truncation_sweep.png"
        draw_truncation_sweep(results, figure)
        print(f"wrote {figure}", file=sys.stderr)
    return results


def describe_sweep(results: list[dict[str, Any]]) -> str:
    """The sweep as a table: one row per truncation."""
    head = f"{results[0]['checkpoint']}: {results[0]['num_generated']} generated vs " \
           f"{results[0]['num_real']} real"
    rows = [f"{'psi':>6} {'FID':>8} {'KID':>8} {'precision':>9} {'recall':>7} {'diversity':>9}"]
    for r in results:
        cells = [r["fid"], r["kid"], r["precision"], r["recall"], r["diversity"]]
        rows.append(f"{'none' if r['truncation'] is None else r['truncation']:>6} " + " ".join(
            f"{'-' if v is None else f'{v:.{p}f}':>{w}}"
            for v, p, w in zip(cells, (2, 4, 3, 3, 2), (8, 8, 9, 7, 9), strict=True)))
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
    choice = load_backbone(args.inception_weights, device)
    cache = cache_folder(args.cache_dir)
    real = _side(args.real, "real", args, choice, device, cache)
    if args.save_stats:
        real.real.save_stats(args.save_stats, choice.backbone.name)
        print(f"wrote {args.save_stats} (mu, sigma of {real.what})", file=sys.stderr)
    if not args.fake:
        return None
    fake = _side(args.fake, "fake", args, choice, device, cache)
    if fake.real.features is None:  # published statistics of generated images: FID only
        out = {"fid": fid_from_stats(fake.real.mu, fake.real.sigma, real.real.mu, real.real.sigma),
               **dict.fromkeys(SCORE_KEYS[1:]),
               "unavailable": {"kid, precision/recall, diversity": "the fake side is a "
                               "statistics file (mu, sigma); give a folder or a generator"}}
    else:
        out = scores(fake.real.features, real.real)
    is_mean = is_std = None
    if fake.logits is not None and fake.logits.shape[0] >= IS_SPLITS:
        is_mean, is_std = inception_score(fake.logits.cpu(), IS_SPLITS)
    return {**out, "is_mean": is_mean, "is_std": is_std, "real": real.what, "fake": fake.what,
            "num_real": real.real.n, "num_fake": fake.real.n, "fid_backbone": choice.backbone.name,
            "is_unavailable": None if is_mean is not None else (
                choice.is_unavailable or "IS: the fake side is a statistics file")}


def describe(result: dict[str, Any]) -> str:
    """The human-readable form of a result: what was compared, every score, what is missing
    and why, and a collapse warning when there is one."""
    if "checkpoint" in result:
        what = (f"{result['checkpoint']}: {result['num_generated']} generated vs "
                f"{result['num_real']} real ({result['fid_backbone']})")
    else:
        what = f"{result['fake']} vs {result['real']} ({result['fid_backbone']})"
    lines = [what, score_line(result)]
    lines += [f"{name} unavailable: {why}" for name, why in result["unavailable"].items()]
    if result["is_mean"] is None:
        lines.append(result["is_unavailable"])
    warning = collapse_warning(result)
    return "\n".join(lines + ([f"warning: {warning}"] if warning else []))


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
                                                 args.batch_size, not args.json, args.image_size),
                    None, what)
    embedded = embed_dataset(images, choice.backbone, device, args.batch_size,
                             progress=not args.json)
    return Side(RealFeatures(embedded["features"].cpu()), embedded["logits"], what)


def _generator(path: Path, args: argparse.Namespace, choice: BackboneChoice,
               device: torch.device) -> Side:
    checkpoint_path = resolve_checkpoint(path)
    netG = load_generator(load_checkpoint(checkpoint_path), device, args.weights)
    n, seed = args.num or 10_000, args.seed or 0
    embedded = embed_generator(netG, latents(n, netG.nz, seed, truncation=args.truncation),
                               choice.backbone, device, args.batch_size, progress=not args.json)
    return Side(RealFeatures(embedded["features"].cpu()), embedded["logits"],
                f"{n} faces of seed {seed} from {checkpoint_path}")
