"""``animegan-generate`` (``python -m animegan_ignite.generate``): faces from a trained generator.

    python -m animegan_ignite.generate --checkpoint RUN_DIR --grid faces.png --num 64 --seed 7
    python -m animegan_ignite.generate --checkpoint RUN_DIR --out-dir faces/ --num 50000
    python -m animegan_ignite.generate --checkpoint RUN_DIR --interpolate 30 --gif walk.gif
    python -m animegan_ignite.generate --checkpoint RUN_DIR --export torchscript --output G.pt

The same checkpoint and seed give the same pixels on the same device. ``--out-dir`` writes any
number of faces, batch by batch as they are drawn (memory does not grow with the count), as
``face_<seed>_<index>.png``; face ``i`` depends only on the seed and ``i``, so an interrupted
call run again keeps the files already written and draws only the missing ones.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import torch
from tqdm import tqdm

from .checkpoint import load_checkpoint, load_generator
from .cli import (
    IMAGE_EXTENSIONS,
    OneLineErrorParser,
    UserError,
    check_output_path,
    resolve_device,
    run_command,
)
from .faces import MAX_FACES, grid, latents, render, save_gif, to_pil, walk
from .rundir import atomic_write

MAX_FILES = 10_000_000


def build_parser() -> argparse.ArgumentParser:
    p = OneLineErrorParser(prog="python -m animegan_ignite.generate",
                description="Draw faces with a trained generator.")
    p.add_argument("--checkpoint", required=True, help="checkpoint file or run directory (latest)")
    p.add_argument("--grid", help="write one PNG grid of the faces here")
    p.add_argument("--out-dir", help="write each face as its own PNG into this folder")
    p.add_argument("--num", type=int, default=64, help=f"faces to draw (default 64; a grid holds "
                   f"at most {MAX_FACES}, --out-dir any number up to {MAX_FILES:,})")
    p.add_argument("--batch-size", type=int, default=256, help="faces per forward pass (default 256)")
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


EXPORT_FILES = {"torchscript": (".pt", ".pth", ".ts"), "onnx": (".onnx",)}
MAX_SEED = 2**63 - 1


def _check(args: argparse.Namespace) -> None:
    """Every count and output path, before the checkpoint is even read."""
    if not (args.grid or args.out_dir or args.interpolate or args.export):
        raise UserError("nothing to do: give --grid, --out-dir, --interpolate or --export")
    if not 1 <= args.num <= (MAX_FILES if args.out_dir and not args.grid else MAX_FACES):
        limit = (f"1..{MAX_FACES} for --grid (draw more with --out-dir)" if args.grid
                 else f"1..{MAX_FILES}")
        raise UserError(f"--num must be in {limit}, got {args.num}")
    if args.batch_size < 1:
        raise UserError(f"--batch-size must be >= 1, got {args.batch_size}")
    if not 0 <= args.seed <= MAX_SEED:
        raise UserError(f"--seed must be in 0..{MAX_SEED}, got {args.seed}")
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
    if args.grid:
        Path(args.grid).parent.mkdir(parents=True, exist_ok=True)
        picture = grid(render(netG, latents(args.num, netG.nz, args.seed)))
        fmt = {".jpg": "JPEG", ".jpeg": "JPEG"}.get(Path(args.grid).suffix.lower())
        atomic_write(args.grid, lambda f: picture.save(f, format=fmt or Path(args.grid).suffix[1:]))
        print(f"wrote {args.grid} ({args.num} faces, seed {args.seed})")
    if args.out_dir:
        write_faces(netG, Path(args.out_dir), args.num, args.seed, args.batch_size)
    if args.interpolate:
        save_gif(walk(netG, args.seed, args.seed + 1, args.interpolate), args.gif)
        print(f"wrote {args.gif} ({args.interpolate} frames, seed {args.seed} -> {args.seed + 1})")
    if args.export:
        export(netG, args.export, Path(args.output))
        print(f"wrote {args.output} ({args.export})")


def face_file(out: Path, seed: int, index: int) -> Path:
    return out / f"face_{seed}_{index:07d}.png"


def write_faces(netG: torch.nn.Module, out: Path, num: int, seed: int, batch_size: int) -> None:
    """Faces 0 .. num-1 of ``seed`` as PNG files, those not already there, a batch at a time."""
    out.mkdir(parents=True, exist_ok=True)
    missing = [i for i in range(num) if not face_file(out, seed, i).exists()]
    with tqdm(total=num, initial=num - len(missing), desc="drawing faces", unit="face") as bar:
        for chunk in _runs(missing, batch_size):
            faces = render(netG, latents(len(chunk), netG.nz, seed, start=chunk[0]))
            for i, face in zip(chunk, faces, strict=True):
                image = to_pil(face)
                atomic_write(face_file(out, seed, i), lambda f, im=image: im.save(f, format="PNG"),
                             durable=False)
            bar.update(len(chunk))
    print(f"{out}: faces 0..{num - 1} of seed {seed} ({len(missing)} drawn now, "
          f"{num - len(missing)} already there)")


def _runs(indices: list[int], size: int) -> list[list[int]]:
    """Consecutive indices in chunks of at most ``size`` (a chunk never spans a gap)."""
    chunks: list[list[int]] = []
    for i in indices:
        if chunks and chunks[-1][-1] == i - 1 and len(chunks[-1]) < size:
            chunks[-1].append(i)
        else:
            chunks.append([i])
    return chunks


if __name__ == "__main__":
    sys.exit(main())
