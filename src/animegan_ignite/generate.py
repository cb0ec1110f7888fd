"""``python -m animegan_ignite.generate``: faces from a trained generator.

    python -m animegan_ignite.generate --checkpoint RUN_DIR --grid faces.png --num 64 --seed 7
    python -m animegan_ignite.generate --checkpoint RUN_DIR --out-dir faces/ --num 100
    python -m animegan_ignite.generate --checkpoint RUN_DIR --interpolate 30 --gif walk.gif
    python -m animegan_ignite.generate --checkpoint RUN_DIR --export torchscript --output G.pt

The same checkpoint and seed give the same pixels on the same device.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import torch

from .checkpoint import load_checkpoint, load_generator
from .cli import OneLineErrorParser, UserError, resolve_device, run_command
from .faces import MAX_FACES, grid, latents, render, save_gif, to_pil, walk


def build_parser() -> argparse.ArgumentParser:
    p = OneLineErrorParser(prog="python -m animegan_ignite.generate",
                description="Draw faces with a trained generator.")
    p.add_argument("--checkpoint", required=True, help="checkpoint file or run directory (latest)")
    p.add_argument("--grid", help="write one PNG grid of the faces here")
    p.add_argument("--out-dir", help="write each face as its own PNG into this folder")
    p.add_argument("--num", type=int, default=64, help=f"faces to draw, 1..{MAX_FACES} (default 64)")
    p.add_argument("--seed", type=int, default=0, help="seed of the latents (default 0)")
    p.add_argument("--interpolate", type=int, metavar="STEPS",
                   help="walk from --seed's face to --seed+1's in STEPS frames (with --gif)")
    p.add_argument("--gif", help="where --interpolate writes its animation")
    p.add_argument("--export", choices=["torchscript", "onnx"], help="export the generator")
    p.add_argument("--output", help="file for --export")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--weights", choices=["auto", "ema", "raw"], default="auto",
                   help="the generator's EMA weights or its trained (raw) ones; auto = EMA when "
                   "the run kept one (default)")
    return p


def _check(args: argparse.Namespace) -> None:
    if not (args.grid or args.out_dir or args.interpolate or args.export):
        raise UserError("nothing to do: give --grid, --out-dir, --interpolate or --export")
    if not 1 <= args.num <= MAX_FACES:
        raise UserError(f"--num must be in 1..{MAX_FACES}, got {args.num}")
    if args.interpolate is not None and (args.interpolate < 2 or not args.gif):
        raise UserError("--interpolate STEPS needs STEPS >= 2 and --gif OUT.gif")
    if args.export and not args.output:
        raise UserError("--export needs --output FILE")


def export(netG: torch.nn.Module, kind: str, path: Path) -> None:
    """TorchScript (traced) or ONNX (needs the onnx package) of G: latent (N, nz, 1, 1) ->
    image (N, 3, 64, 64) in [-1, 1]."""
    netG = netG.cpu().eval()
    example = latents(2, netG.nz, 0)
    if kind == "torchscript":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # torch.jit's deprecation notice
            torch.jit.trace(netG, example).save(str(path))
        return
    try:
        import onnx  # noqa: F401  (torch.onnx needs it to write the file)
    except ImportError as e:
        raise UserError("--export onnx needs the onnx package: pip install onnx") from e
    with warnings.catch_warnings():
        # The TorchScript-based exporter is deprecated but needs no onnxscript; the model is a
        # plain conv stack, which it exports exactly.
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(netG, (example,), str(path), input_names=["z"], output_names=["image"],
                          dynamic_axes={"z": {0: "batch"}, "image": {0: "batch"}}, dynamo=False)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_command(lambda: generate(args))


def generate(args: argparse.Namespace) -> None:
    _check(args)
    device = resolve_device(args.device)
    netG = load_generator(load_checkpoint(args.checkpoint), device, args.weights)
    if args.grid or args.out_dir:
        faces = render(netG, latents(args.num, netG.nz, args.seed))
        if args.grid:
            Path(args.grid).parent.mkdir(parents=True, exist_ok=True)
            grid(faces).save(args.grid)
            print(f"wrote {args.grid} ({args.num} faces, seed {args.seed})")
        if args.out_dir:
            out = Path(args.out_dir)
            out.mkdir(parents=True, exist_ok=True)
            for i, face in enumerate(faces):
                to_pil(face).save(out / f"face_{args.seed}_{i:04d}.png")
            print(f"wrote {args.num} faces to {out}")
    if args.interpolate:
        save_gif(walk(netG, args.seed, args.seed + 1, args.interpolate), args.gif)
        print(f"wrote {args.gif} ({args.interpolate} frames, seed {args.seed} -> {args.seed + 1})")
    if args.export:
        export(netG, args.export, Path(args.output))
        print(f"wrote {args.output} ({args.export})")


if __name__ == "__main__":
    sys.exit(main())
