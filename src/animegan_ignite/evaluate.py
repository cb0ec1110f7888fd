"""``animegan-evaluate`` (``python -m animegan_ignite.evaluate``): FID and IS of a saved
generator, or between any two sets of images.

    animegan-evaluate --checkpoint RUN_DIR                      # as the trainer evaluated it
    animegan-evaluate --real DIR --fake DIR                     # two image folders
    animegan-evaluate --real DIR --fake RUN_DIR --num 10000     # a folder and a generator
    animegan-evaluate --real DIR --save-stats real.npz          # statistics for later (or others)
    animegan-evaluate --real real.npz --fake faces/             # pytorch-fid's .npz format
    animegan-evaluate --checkpoint RUN_DIR --truncation-sweep 0.5,0.7,1.0   # the trade-off curve

With ``--checkpoint`` the held-out real subset is the one the run used (same data, seed and eval
size, read from the run's config.json next to the checkpoint) unless flags say otherwise, and the
generated images come from the same fixed latents as the per-epoch evaluation, so the numbers
match the history.

With ``--real``/``--fake`` each side is an image folder, a statistics file (``.npz`` with ``mu``
and ``sigma``, as pytorch-fid writes) or, for ``--fake``, a generator (checkpoint file or run
directory). Folder images go through the trainer's own path: decoded to RGB, Resize + CenterCrop
to ``--image-size``, quantised to uint8, then the same Inception backbone, resize and float64
math. A real folder's features are cached as for training. IS is reported for the fake side when
the backbone has its classifier.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys

from .config import MIN_EVAL, add_setting, check_settings, default_of
from .config.rules import TRUNCATION, Rule, check_flag
from .errors import OneLineErrorParser, UserError, run_command
from .paths import check_output_path

# The training settings this command shares: those a checkpoint's run decides unless given
# here (its split and latents), and this command's own choices.
FROM_THE_RUN = ("data_dir", "eval_size", "seed")
SHARED = (*FROM_THE_RUN, "inception_weights", "eval_backend", "device", "cache_dir",
          "eval_batch_size")


def build_parser() -> argparse.ArgumentParser:
    p = OneLineErrorParser(prog="animegan-evaluate", description="FID and Inception Score of a "
                           "checkpoint's generator, or between two image folders, statistics "
                           "files or a generator.")
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
    # the training settings this command shares, from their one declaration (config/settings.py)
    add_setting(p, "data_dir", help="real images (default: the run's; none = synthetic demo)")
    add_setting(p, "eval_size", help="held-out images and generated images (default: the run's)")
    add_setting(p, "seed", help="seed of the split and latents (default: the run's; 0 for "
                "--real/--fake)")
    for name in ("inception_weights", "eval_backend", "device"):
        add_setting(p, name, default=default_of(name))
    add_setting(p, "cache_dir")
    add_setting(p, "eval_batch_size", "--batch-size", default=default_of("eval_batch_size"))
    p.set_defaults(from_the_run=FROM_THE_RUN)  # what scoring takes over the run's settings
    p.add_argument("--weights", choices=["auto", "ema", "raw"], default="auto",
                   help="the generator's EMA weights or its trained (raw) ones; auto = EMA when "
                   "the run kept one (default)")
    p.add_argument("--truncation", type=float, metavar="PSI", help="latents from a normal "
                   "truncated at PSI (a generator's side only; default: none)")
    p.add_argument("--truncation-sweep", metavar="PSI,PSI,...", help="with --checkpoint: every "
                   "score at each truncation (none: the plain normal), printed and plotted")
    p.add_argument("--plot", help="where --truncation-sweep draws its figure (default "
                   "RUN_DIR/plots/truncation_sweep.png)")
    p.add_argument("--json", action="store_true", help="print the result as JSON only")
    return p


def check(args: argparse.Namespace) -> None:
    """Every flag, before anything is loaded."""
    check_settings({name: getattr(args, name) for name in SHARED}, {"eval_batch_size": "--batch-size"})
    check_flag("--image-size", args.image_size, Rule(int, lo=1, hi=2**31))
    if args.eval_size is not None and args.eval_size < MIN_EVAL:  # 0 (no evaluation) is training's
        raise UserError(f"--eval-size must be at least {MIN_EVAL} here, got {args.eval_size}")
    if args.checkpoint and (args.real or args.fake):
        raise UserError("give either --checkpoint or --real/--fake, not both")
    check_flag("--truncation", args.truncation, TRUNCATION)
    args.sweep = parse_sweep(args.truncation_sweep) if args.truncation_sweep else None
    if args.sweep and not args.checkpoint:
        raise UserError("--truncation-sweep needs --checkpoint RUN_DIR")
    if args.plot:
        check_output_path(args.plot, "--plot", extensions=(".png",))
    if args.checkpoint:
        return
    if not args.real or not (args.fake or args.save_stats):
        raise UserError("give --checkpoint PATH, or --real and --fake (or --real with --save-stats)")
    if args.num is not None and args.num < 2:
        raise UserError(f"--num must be at least 2 (a covariance needs two images), got {args.num}")
    if args.save_stats:
        check_output_path(args.save_stats, "--save-stats", extensions=(".npz",))


def parse_sweep(text: str) -> list[float | None]:
    """``"0.5,0.7,none"`` -> [0.5, 0.7, None], each checked."""
    values: list[float | None] = []
    for part in text.split(","):
        try:
            psi = None if part.strip().lower() == "none" else float(part)
        except ValueError:
            raise UserError(f"--truncation-sweep {text}: {part!r} is not a number or 'none'") from None
        check_flag("--truncation-sweep", psi, TRUNCATION)
        values.append(psi)
    return values


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s", force=True)
    return run_command(lambda: evaluate(argv))


def evaluate(argv: list[str] | None) -> None:
    args = build_parser().parse_args(argv)
    check(args)
    from .evaluation import scoring  # imported here: --help and flag errors answer before torch loads

    if args.sweep:
        results = scoring.sweep(args)
        print(json.dumps(results) if args.json else scoring.describe_sweep(results))
        return
    result = scoring.score_checkpoint(args) if args.checkpoint else scoring.compare(args)
    if result is None:
        return
    if args.json:
        print(json.dumps(result))
        return
    print(scoring.describe(result))


if __name__ == "__main__":
    sys.exit(main())
