"""``animegan-evaluate`` (``python -m animegan_ignite.evaluate``): FID and IS of a saved
generator, or between any two sets of images.

    animegan-evaluate --checkpoint RUN_DIR                      # as the trainer evaluated it
    animegan-evaluate --real DIR --fake DIR                     # two image folders
    animegan-evaluate --real DIR --fake RUN_DIR --num 10000     # a folder and a generator
    animegan-evaluate --real DIR --save-stats real.npz          # statistics for later (or others)
    animegan-evaluate --real real.npz --fake faces/             # pytorch-fid's .npz format

With ``--checkpoint`` the held-out real subset is the one the run used (same data, seed and eval
size, read from the run's config.json next to the checkpoint) unless flags say otherwise, and the
generated images come from the same fixed latents as the per-epoch evaluation, so the numbers
match the history.

With ``--real``/``--fake`` each side is an image folder, a statistics file (``.npz`` with ``mu``
and ``sigma``, as pytorch-fid writes) or, for ``--fake``, a generator (checkpoint file or run
directory). Folder images go through the trainer's own path: decoded to RGB, Resize + CenterCrop
to ``--image-size``, quantised to uint8, then the same Inception backbone, resize and float64
math. A real folder's statistics are cached as for training (keyed by its files, sizes and
modification times, the backbone and the image size). IS is reported for the fake side when the
backbone has its classifier.
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import sys
from dataclasses import dataclass
from pathlib import Path

import torch

from .cache import default_cache_dir
from .checkpoint import load_checkpoint, load_generator, resolve_checkpoint
from .cli import OneLineErrorParser, UserError, check_output_path, resolve_device, run_command
from .data import ImageFiles, default_transform, drop_unreadable, find_images, make_split
from .evaluation import (
    Evaluator,
    RealStats,
    embed_dataset,
    embed_generator,
    eval_latents,
)
from .faces import latents
from .inception import BackboneChoice, load_backbone
from .metrics import fid_from_stats, inception_score
from .rundir import RunDir


def build_parser() -> argparse.ArgumentParser:
    p = OneLineErrorParser(description="FID and Inception Score of a checkpoint's generator, or "
                           "between two image folders, statistics files or a generator.")
    p.add_argument("--checkpoint", help="checkpoint file or run directory (latest), evaluated "
                   "against its run's held-out images")
    p.add_argument("--real", help="reference images: a folder or a .npz statistics file")
    p.add_argument("--fake", help="images to score: a folder, a .npz statistics file, or a "
                   "generator (checkpoint file or run directory)")
    p.add_argument("--num", type=int, help="images per side: a seeded random subset of a folder "
                   "(default all), or faces drawn from a generator (default 10000)")
    p.add_argument("--save-stats", help="write --real's statistics to this .npz file "
                   "(pytorch-fid's format: mu, sigma)")
    p.add_argument("--image-size", type=int, default=64, help="folder images are resized and "
                   "centre-cropped to this, as for training (default 64)")
    p.add_argument("--data-dir", help="real images (default: the run's; none = synthetic demo)")
    p.add_argument("--eval-size", type=int, help="held-out images and generated images")
    p.add_argument("--seed", type=int, help="seed of the split and latents (default: the run's; "
                   "0 for --real/--fake)")
    p.add_argument("--inception-weights", default="auto", help="auto, pool3 or a weights file")
    p.add_argument("--cache-dir", help="real-statistics cache folder")
    p.add_argument("--batch-size", type=int, default=100, help="images per Inception batch")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--weights", choices=["auto", "ema", "raw"], default="auto",
                   help="the generator's EMA weights or its trained (raw) ones; auto = EMA when "
                   "the run kept one (default)")
    p.add_argument("--json", action="store_true", help="print the result as JSON only")
    return p


def _run_settings(path: Path, args: argparse.Namespace) -> dict:
    """The run's own settings (if its config.json is there), overridden by the flags given."""
    cfg_file = RunDir.of_checkpoint(path).config
    run = json.loads(cfg_file.read_text()) if cfg_file.is_file() else {}
    settings = {"data_dir": run.get("data_dir"), "eval_size": run.get("eval_size", 3000),
                "seed": run.get("seed", 999), "synthetic_size": run.get("synthetic_size", 4000),
                "split_seed": run.get("split_seed")}
    settings.update({k: v for k, v in vars(args).items() if k in settings and v is not None})
    if settings["split_seed"] is None:
        settings["split_seed"] = settings["seed"]
    if settings["eval_size"] < 10:
        raise UserError(f"--eval-size must be >= 10, got {settings['eval_size']}")
    return settings


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s", force=True)
    args = build_parser().parse_args(argv)
    return run_command(lambda: evaluate(args))


def evaluate(args: argparse.Namespace) -> None:
    for flag, value, lo in (("--batch-size", args.batch_size, 1), ("--image-size", args.image_size, 1),
                            ("--seed", args.seed, 0), ("--eval-size", args.eval_size, 10)):
        if value is not None and not lo <= value <= 2**31:
            raise UserError(f"{flag} must be in {lo}..{2**31}, got {value}")
    if args.checkpoint and (args.real or args.fake):
        raise UserError("give either --checkpoint or --real/--fake, not both")
    if args.checkpoint:
        return evaluate_checkpoint(args)
    if not args.real or not (args.fake or args.save_stats):
        raise UserError("give --checkpoint PATH, or --real and --fake (or --real with --save-stats)")
    if args.num is not None and args.num < 2:
        raise UserError(f"--num must be at least 2 (a covariance needs two images), got {args.num}")
    if args.save_stats:
        check_output_path(args.save_stats, "--save-stats", extensions=(".npz",))
    return compare(args)


def evaluate_checkpoint(args: argparse.Namespace) -> None:
    device = resolve_device(args.device)
    path = resolve_checkpoint(args.checkpoint)
    checkpoint = load_checkpoint(path)
    s = _run_settings(path, args)
    split = make_split(s["data_dir"], s["eval_size"], 1, s["split_seed"], s["synthetic_size"])
    netG = load_generator(checkpoint, device, args.weights)
    choice = load_backbone(args.inception_weights, device)
    cache = Path(args.cache_dir) if args.cache_dir else default_cache_dir()
    z = eval_latents(s["eval_size"], netG.nz, s["seed"])
    result = Evaluator(choice, split.eval, z, device, cache, batch_size=args.batch_size,
                       progress=not args.json)(netG)
    out = {"checkpoint": str(path), **result.to_dict()}
    if args.json:
        print(json.dumps(out))
    else:
        is_text = (f"{result.is_mean:.3f} ± {result.is_std:.3f}" if result.is_mean is not None
                   else result.is_unavailable)
        print(f"{path}: FID {result.fid:.3f} ({result.num_generated} generated vs "
              f"{result.num_real} real; {result.fid_backbone})\nIS {is_text}")


@dataclass
class Side:
    """One side of a comparison: feature statistics and, where there are images and a
    classifier, their logits."""

    stats: RealStats
    logits: torch.Tensor | None
    what: str


def compare(args: argparse.Namespace) -> None:
    device = resolve_device(args.device)
    choice = load_backbone(args.inception_weights, device)
    cache = Path(args.cache_dir) if args.cache_dir else default_cache_dir()
    real = _side(args.real, "real", args, choice, device, cache)
    if args.save_stats:
        real.stats.save(args.save_stats, choice.backbone.name)
        print(f"wrote {args.save_stats} (mu, sigma of {real.what})", file=sys.stderr)
    if not args.fake:
        return
    fake = _side(args.fake, "fake", args, choice, device, cache)
    fid = fid_from_stats(fake.stats.mu, fake.stats.sigma, real.stats.mu, real.stats.sigma)
    is_mean = is_std = None
    if fake.logits is not None and fake.logits.shape[0] >= 10:
        is_mean, is_std = inception_score(fake.logits.cpu())
    out = {"fid": fid, "is_mean": is_mean, "is_std": is_std, "real": real.what, "fake": fake.what,
           "num_real": real.stats.n, "num_fake": fake.stats.n, "backbone": choice.backbone.name,
           "is_unavailable": None if is_mean is not None else (
               choice.is_unavailable or "IS: the fake side is a statistics file")}
    if args.json:
        print(json.dumps(out))
        return
    is_text = f"{is_mean:.3f} ± {is_std:.3f}" if is_mean is not None else out["is_unavailable"]
    print(f"FID {fid:.3f} ({fake.what} vs {real.what}; {choice.backbone.name})\nIS {is_text}")


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
        stats = RealStats.from_file(path)
    except (OSError, ValueError) as e:
        raise UserError(f"--{role} {path}: not a statistics file ({e})") from e
    return Side(stats, None, f"statistics {path}")


def _folder(path: Path, role: str, args: argparse.Namespace, choice: BackboneChoice,
            device: torch.device, cache: Path) -> Side:
    files = drop_unreadable(find_images(path), progress=not args.json)
    if args.num is not None and args.num < len(files):
        files = sorted(random.Random(args.seed or 0).sample(files, args.num))
    if len(files) < 2:
        raise UserError(f"--{role} {path}: {len(files)} readable image(s); FID needs at least 2")
    images = ImageFiles(files, default_transform(args.image_size))
    what = f"{len(files)} images in {path}"
    if role == "real":  # cached, as the trainer's held-out statistics are
        stats = RealStats.load_or_compute(images, choice.backbone, device, cache, args.image_size,
                                          args.batch_size, progress=not args.json)
        return Side(stats, None, what)
    stats, logits = embed_dataset(images, choice.backbone, device, args.batch_size,
                                  progress=not args.json, keep_logits=True)
    return Side(RealStats(*stats.mean_cov(), stats.n), logits, what)


def _generator(path: Path, args: argparse.Namespace, choice: BackboneChoice,
               device: torch.device) -> Side:
    checkpoint_path = resolve_checkpoint(path)
    netG = load_generator(load_checkpoint(checkpoint_path), device, args.weights)
    n, seed = args.num or 10_000, args.seed or 0
    stats, logits = embed_generator(netG, latents(n, netG.nz, seed), choice.backbone, device,
                                    args.batch_size, progress=not args.json)
    return Side(RealStats(*stats.mean_cov(), stats.n), logits,
                f"{n} faces of seed {seed} from {checkpoint_path}")


if __name__ == "__main__":
    sys.exit(main())
