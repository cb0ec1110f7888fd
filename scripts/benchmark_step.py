"""The training step with D frozen in G's step (the product's) against the same step with D's
weights left trainable there (the PyTorch DCGAN tutorial's), side by side in one run.

    python scripts/benchmark_step.py [--width 64] [--batch-size 128] [--device cpu|cuda]

Both steps start from the same weights and seed; their losses over ``--check`` steps must be
identical (G's gradient does not depend on D's weight gradients), then each is timed over
``--iters`` steps after a warm-up, in turns, ``--repeats`` times; the medians are compared.
"""

from __future__ import annotations

import argparse
import contextlib
import time

import torch
from benchmark import _sync, interleaved_medians

from animegan_ignite import gan as engine
from animegan_ignite.augment import DiffAugment
from animegan_ignite.config import parse_policy
from animegan_ignite.models import dcgan_weights_init


def make_step(frozen_d: bool, args, device: torch.device):
    """A fresh GAN (seed 0) and its training step; without ``frozen_d``, engine.frozen is a no-op
    while the step is built and run (the step looks it up at every call)."""
    torch.manual_seed(0)
    gan = engine.build_gan(100, args.width, args.width, 2e-4, 0.5, device)
    gan.netG.apply(dcgan_weights_init)
    gan.netD.apply(dcgan_weights_init)
    step = engine.make_training_step(gan, augment=DiffAugment(parse_policy(args.diffaugment)))
    real = torch.rand(args.batch_size, 3, 64, 64, device=device) * 2 - 1

    def run(n: int) -> list[dict[str, float]]:
        saved = engine.frozen
        if not frozen_d:
            engine.frozen = lambda net: contextlib.nullcontext()
        try:
            return [step(None, real) for _ in range(n)]
        finally:
            engine.frozen = saved
    return run


def seconds_per_step(frozen_d: bool, args, device: torch.device) -> float:
    run = make_step(frozen_d, args, device)
    run(args.warmup)
    _sync(device)
    start = time.perf_counter()
    run(args.iters)
    _sync(device)
    return (time.perf_counter() - start) / args.iters


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--width", type=int, default=64, help="ngf = ndf")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--diffaugment", default="color,translation", help="policy, or none")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--iters", type=int, default=10)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--check", type=int, default=3, help="steps whose losses must match")
    args = p.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(1)
    frozen_losses = make_step(True, args, device)(args.check)
    torch.manual_seed(1)
    plain_losses = make_step(False, args, device)(args.check)
    if frozen_losses != plain_losses:
        raise SystemExit(f"the two steps differ: {frozen_losses} vs {plain_losses}")
    medians = interleaved_medians({
        "trainable": lambda: seconds_per_step(False, args, device),
        "frozen": lambda: seconds_per_step(True, args, device)}, args.repeats)
    print(f"training step, width {args.width}, batch {args.batch_size}, DiffAugment "
          f"{args.diffaugment}, {args.device} ({torch.get_num_threads()} threads), median of "
          f"{args.repeats} x {args.iters} steps; losses of {args.check} steps identical:")
    print(f"  D trainable in G's step (the tutorial's): {medians['trainable'] * 1000:.1f} ms")
    print(f"  D frozen in G's step (this trainer's): {medians['frozen'] * 1000:.1f} ms "
          f"({medians['trainable'] / medians['frozen']:.2f}x faster)")


if __name__ == "__main__":
    main()
