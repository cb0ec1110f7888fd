"""``animegan-generate`` (``python -m animegan_ignite.generate``): faces from a trained generator.

    animegan-generate --checkpoint RUN_DIR --grid faces.png --num 64 --seed 7
    animegan-generate --checkpoint RUN_DIR --out-dir faces/ --num 50000
    animegan-generate --checkpoint RUN_DIR --interpolate 30 --gif walk.gif
    animegan-generate --checkpoint RUN_DIR --export torchscript --output G.pt

The same checkpoint and seed give the same pixels on the same device. ``--out-dir`` writes any
number of faces, batch by batch as they are drawn (memory does not grow with the count), as
``face_<seed>_<index>.png``; face ``i`` depends only on the seed and ``i``, so an interrupted
call run again keeps the files already written and draws only the missing ones.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .config.rules import TRUNCATION, Rule, check_flag
from .errors import OneLineErrorParser, UserError, run_command
from .paths import IMAGE_EXTENSIONS, check_output_path

MAX_GRID = 256  # faces in one grid picture
MAX_FILES = 10_000_000
MAX_SEED = 2**63 - 1
EXPORT_FILES = {"torchscript": (".pt", ".pth", ".ts"), "onnx": (".onnx",)}


def build_parser() -> argparse.ArgumentParser:
    p = OneLineErrorParser(prog="animegan-generate", description="Draw faces with a trained "
                           "generator.")
    p.add_argument("--checkpoint", required=True, help="checkpoint file or run directory (latest)")
    p.add_argument("--grid", help="write one PNG grid of the faces here")
    p.add_argument("--out-dir", help="write each face as its own PNG into this folder")
    p.add_argument("--num", type=int, default=64, help=f"faces to draw (default 64; a grid holds "
                   f"at most {MAX_GRID}, --out-dir any number up to {MAX_FILES:,})")
    p.add_argument("--batch-size", type=int, default=256, help="faces per forward pass (default 256)")
    p.add_argument("--seed", type=int, default=0, help="seed of the latents (default 0)")
    p.add_argument("--truncation", type=float, metavar="PSI", help="draw z from a normal "
                   "truncated at PSI (BigGAN's trick: smaller is more faithful, less varied; "
                   "default: none, the plain normal)")
    p.add_argument("--interpolate", type=int, metavar="STEPS",
                   help="walk from --seed's face to --seed+1's in STEPS frames (with --gif)")
    p.add_argument("--gif", help="where --interpolate writes its animation")
    p.add_argument("--export", choices=["torchscript", "onnx"], help="export the generator")
    p.add_argument("--output", help="file for --export")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--weights", choices=["auto", "ema", "raw"], default="auto",
                   help="the generator's EMA weights or its trained (raw) ones; auto = EMA when "
                   "the run kept one (default)")
    return p


def check(args: argparse.Namespace) -> None:
    """Every count and output path, before the checkpoint is even read."""
    if not (args.grid or args.out_dir or args.interpolate or args.export):
        raise UserError("nothing to do: give --grid, --out-dir, --interpolate or --export")
    if args.grid:
        check_flag("--num", args.num, Rule(int, lo=1, hi=MAX_GRID), " for --grid (draw more "
                   "with --out-dir)")
    check_flag("--num", args.num, Rule(int, lo=1, hi=MAX_FILES))
    check_flag("--batch-size", args.batch_size, Rule(int, lo=1, hi=2**31))
    check_flag("--seed", args.seed, Rule(int, lo=0, hi=MAX_SEED))
    check_flag("--truncation", args.truncation, TRUNCATION)
    if args.interpolate is not None and (not 2 <= args.interpolate <= 10_000 or not args.gif):
        raise UserError("--interpolate STEPS needs 2 <= STEPS <= 10000 and --gif OUT.gif")
    if args.export and not args.output:
        raise UserError("--export needs --output FILE")
    if args.grid:
        check_output_path(args.grid, "--grid", extensions=IMAGE_EXTENSIONS)
    if args.out_dir:
        check_output_path(args.out_dir, "--out-dir", folder=True)
    if args.gif:
        check_output_path(args.gif, "--gif", extensions=(".gif",))
    if args.export:
        check_output_path(args.output, "--output", extensions=EXPORT_FILES[args.export])


def main(argv: list[str] | None = None) -> int:
    return run_command(lambda: generate(argv))


def generate(argv: list[str] | None) -> None:
    args = build_parser().parse_args(argv)
    check(args)
    # imported here: --help and flag errors answer before torch loads
    from .device import resolve_device
    from .networks import faces
    from .runs.checkpoints import load_checkpoint, load_generator

    netG = load_generator(load_checkpoint(args.checkpoint), resolve_device(args.device),
                          args.weights)
    if args.grid:
        faces.save_grid(netG, args.num, args.seed, Path(args.grid), args.truncation)
        print(f"wrote {args.grid} ({args.num} faces, seed {args.seed})")
    if args.out_dir:
        faces.write_faces(netG, Path(args.out_dir), args.num, args.seed, args.batch_size,
                          args.truncation)
    if args.interpolate:
        faces.save_gif(faces.walk(netG, args.seed, args.seed + 1, args.interpolate,
                                  args.truncation), args.gif)
        print(f"wrote {args.gif} ({args.interpolate} frames, seed {args.seed} -> {args.seed + 1})")
    if args.export:
        faces.export(netG, args.export, Path(args.output))
        print(f"wrote {args.output} ({args.export})")


if __name__ == "__main__":
    sys.exit(main())
