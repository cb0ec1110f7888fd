"""``python -m animegan_ignite.evaluate --checkpoint PATH``: FID and IS of a saved generator.

The held-out real subset is the one the run used (same data, seed and eval size, read from the
run's config.json next to the checkpoint) unless flags say otherwise, and the generated images
come from the same fixed latents as the per-epoch evaluation, so the numbers match the history.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from .cache import default_cache_dir
from .checkpoint import load_checkpoint, load_generator, resolve_checkpoint
from .cli import OneLineErrorParser, UserError, resolve_device, run_command
from .data import make_split
from .evaluation import Evaluator, eval_latents
from .inception import load_backbone
from .rundir import RunDir


def build_parser() -> argparse.ArgumentParser:
    p = OneLineErrorParser(prog="python -m animegan_ignite.evaluate",
                description="FID and Inception Score of a checkpoint's generator.")
    p.add_argument("--checkpoint", required=True, help="checkpoint file or run directory (latest)")
    p.add_argument("--data-dir", help="real images (default: the run's; none = synthetic demo)")
    p.add_argument("--eval-size", type=int, help="held-out images and generated images")
    p.add_argument("--seed", type=int, help="seed of the split and latents (default: the run's)")
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
    device = resolve_device(args.device)
    path = resolve_checkpoint(args.checkpoint)
    checkpoint = load_checkpoint(path)
    s = _run_settings(path, args)
    split = make_split(s["data_dir"], s["eval_size"], 1, s["split_seed"], s["synthetic_size"])
    netG = load_generator(checkpoint, device, args.weights)
    choice = load_backbone(args.inception_weights, device)
    cache = Path(args.cache_dir) if args.cache_dir else default_cache_dir()
    latents = eval_latents(s["eval_size"], netG.nz, s["seed"])
    result = Evaluator(choice, split.eval, latents, device, cache, batch_size=args.batch_size,
                       progress=not args.json)(netG)
    out = {"checkpoint": str(path), **result.to_dict()}
    if args.json:
        print(json.dumps(out))
    else:
        is_text = (f"{result.is_mean:.3f} ± {result.is_std:.3f}" if result.is_mean is not None
                   else result.is_unavailable)
        print(f"{path}: FID {result.fid:.3f} ({result.num_generated} generated vs "
              f"{result.num_real} real; {result.fid_backbone})\nIS {is_text}")


if __name__ == "__main__":
    sys.exit(main())
