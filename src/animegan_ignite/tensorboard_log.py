"""Optional TensorBoard logging (``--tensorboard``) through ignite's ``TensorboardLogger``:
losses and D outputs per iteration, FID/IS per epoch, fixed-noise snapshots as images."""

from __future__ import annotations

from pathlib import Path

import torch
from ignite.engine import Engine, Events
from torchvision.utils import make_grid

from .engine import OUTPUT_KEYS, generate

TB_DIR = "tensorboard"


def attach_tensorboard(trainer: Engine, run_dir: Path, netG: torch.nn.Module,
                       fixed_noise: torch.Tensor, snapshot_every: int):
    """Attach the logger (rank 0 only); returns it so the caller can close it."""
    from ignite.handlers import TensorboardLogger
    from ignite.handlers.tensorboard_logger import OutputHandler

    tb = TensorboardLogger(log_dir=str(run_dir / TB_DIR))
    tb.attach(trainer, OutputHandler(tag="train", output_transform=lambda out: {
        k: out[k] for k in OUTPUT_KEYS}), event_name=Events.ITERATION_COMPLETED)

    @trainer.on(Events.ITERATION_COMPLETED(every=snapshot_every))
    def log_snapshot(engine: Engine) -> None:
        grid = make_grid(generate(netG, fixed_noise), nrow=8, normalize=True, value_range=(-1, 1))
        tb.writer.add_image("fixed_noise", grid, engine.state.iteration)

    return tb


def log_epoch_metrics(tb, record: dict, iteration: int) -> None:
    """FID and IS of an evaluated epoch (what exists of them)."""
    for key in ("fid", "is_mean", "is_std", "train_seconds", "eval_seconds"):
        if record.get(key) is not None:
            tb.writer.add_scalar(f"eval/{key}", record[key], iteration)
