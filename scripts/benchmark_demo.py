"""The synthetic demo's data path side by side, in one run: faces drawn again every epoch by
DataLoader workers (the path without ``--cache``) vs drawn once into memory (``--cache``, which
the demo turns on).

    python scripts/benchmark_demo.py [--repeats 3]

Each measurement is the wall time of one whole epoch of the demo's schedule (its 2,400 training
faces, batch 32, width-16 networks; every handler of a real run but the evaluation), the second
of two so that start-up is excluded; the two paths are measured in turns and the medians
compared. Also times drawing the faces once.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
from benchmark import interleaved_medians, run_trainer
from ignite.engine import Events

from animegan_ignite.config import make_config
from animegan_ignite.data import make_split, make_train_loader
from animegan_ignite.gan import Speed


def epoch_seconds(loader, width: int) -> float:
    times = run_trainer(loader, torch.device("cpu"), Speed(), 2, None,
                        Events.EPOCH_STARTED | Events.EPOCH_COMPLETED, width=width)
    return times[3] - times[2]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--faces", type=int, help="synthetic faces (default: the demo's)")
    args = p.parse_args()
    demo = make_config(["--synthetic-size", str(args.faces)] if args.faces else [])
    split_args = (None, demo.eval_size, demo.batch_size, demo.data_seed, demo.synthetic_size)
    drawn = make_split(*split_args)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as nothing_written:
        cached = make_split(*split_args, cache_dir=Path(nothing_written))
    draw_once = time.perf_counter() - start

    def loader(split):
        return make_train_loader(split.train, demo.batch_size, demo.num_workers, demo.seed)

    medians = interleaved_medians({
        "drawn_every_epoch": lambda: epoch_seconds(loader(drawn), demo.ngf),
        "drawn_once": lambda: epoch_seconds(loader(cached), demo.ngf)}, args.repeats)
    ratio = medians["drawn_every_epoch"] / medians["drawn_once"]
    print(f"demo epoch ({len(drawn.train)} faces, batch {demo.batch_size}, width {demo.ngf}, "
          f"{demo.num_workers} workers, {torch.get_num_threads()} threads), median of {args.repeats}:")
    print(f"  faces drawn every epoch by the workers: {medians['drawn_every_epoch']:.2f} s")
    print(f"  faces drawn once into memory (--cache): {medians['drawn_once']:.2f} s "
          f"({ratio:.2f}x faster; drawing them once took {draw_once:.1f} s)")


if __name__ == "__main__":
    main()
