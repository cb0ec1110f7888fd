"""Optional TensorBoard logging (``--tensorboard``) through ignite's ``TensorboardLogger``:
losses and D outputs per iteration, FID/IS and timings per epoch, fixed-noise snapshots as images."""

from __future__ import annotations

from typing import Any

import torch
from ignite.engine import Engine, Events
from torchvision.utils import make_grid

from .engine import OUTPUT_KEYS
from .models import sample
from .rundir import RunDir

EPOCH_KEYS = ("fid", "is_mean", "is_std", "train_seconds", "eval_seconds", "loss_d", "loss_g")


class TensorboardRunLogger:
    """Writes ``RUN_DIR/tensorboard`` (rank 0 only)."""

    def __init__(self, run: RunDir, netG: torch.nn.Module, fixed_noise: torch.Tensor,
                 snapshot_every: int) -> None:
        from ignite.handlers import TensorboardLogger

        self.tb = TensorboardLogger(log_dir=str(run.tensorboard))
        self.netG, self.fixed_noise, self.snapshot_every = netG, fixed_noise, snapshot_every

    def attach(self, trainer: Engine) -> None:
        from ignite.handlers.tensorboard_logger import OutputHandler

        self.tb.attach(trainer, OutputHandler(tag="train", output_transform=lambda out: {
            k: out[k] for k in OUTPUT_KEYS}), event_name=Events.ITERATION_COMPLETED)
        trainer.add_event_handler(Events.ITERATION_COMPLETED(every=self.snapshot_every),
                                  self.log_snapshot)

    def log_snapshot(self, engine: Engine) -> None:
        grid = make_grid(sample(self.netG, self.fixed_noise), nrow=8, normalize=True,
                         value_range=(-1, 1))
        self.tb.writer.add_image("fixed_noise", grid, engine.state.iteration)

    def log_epoch(self, record: dict[str, Any]) -> None:
        for key in EPOCH_KEYS:
            if record.get(key) is not None:
                self.tb.writer.add_scalar(f"epoch/{key}", record[key], record["iteration"])

    def close(self) -> None:
        self.tb.close()
