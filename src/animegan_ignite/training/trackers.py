"""Experiment trackers (``--logger tensorboard,wandb,mlflow``) through ignite's own loggers and
their ``attach_output_handler``: the run's settings as parameters, the losses and D outputs every
iteration (``train/...``), each epoch record's numbers at its last iteration (``epoch/...``), the
fixed-noise grid as an image every ``--snapshot-every`` iterations, and at the end the latest
checkpoint and the summary figure as artifacts where the tracker keeps files. Only rank 0
creates one. Each tracker is an optional extra (config.TRACKER_MODULES).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from ignite.engine import Engine, Events
from ignite.handlers import global_step_from_engine
from torchvision.utils import make_grid

from ..evaluation.scores import tracked_keys
from ..networks.models import sample
from ..rundir import RunDir
from .handlers import RunEvents

# An epoch record's numbers that are not scores (the scores' come from the registry).
TRAINING_KEYS = ("loss_d", "loss_g", "augment_p", "r_t", "r_v", "train_seconds", "eval_seconds")
PROJECT = "animegan-ignite"


class Tracker:
    """What every tracker logs and when; subclasses say how (``logger`` is ignite's)."""

    logger: Any

    def __init__(self, run: RunDir, netG: torch.nn.Module, fixed_noise: torch.Tensor,
                 snapshot_every: int) -> None:
        self.run, self.netG, self.fixed_noise = run, netG, fixed_noise
        self.snapshot_every = snapshot_every

    def attach(self, trainer: Engine) -> None:
        self.logger.attach_output_handler(trainer, event_name=Events.ITERATION_COMPLETED,
                                          tag="train", output_transform=lambda out: out)
        self.logger.attach_output_handler(
            trainer, event_name=RunEvents.EPOCH_RECORDED, tag="epoch",
            output_transform=lambda _: epoch_numbers(trainer.state.epoch_record),
            global_step_transform=global_step_from_engine(trainer, Events.ITERATION_COMPLETED))
        trainer.add_event_handler(Events.ITERATION_COMPLETED(every=self.snapshot_every),
                                  self._log_snapshot)

    def _log_snapshot(self, engine: Engine) -> None:
        """ignite's loggers have no handler for an image of the model's samples: each says how."""
        grid = make_grid(sample(self.netG, self.fixed_noise), nrow=8, normalize=True,
                         value_range=(-1, 1))
        image = (grid.permute(1, 2, 0) * 255).round().byte().numpy()
        self.log_image("fixed_noise", image, engine.state.iteration)

    def close(self) -> None:
        """The run's results as artifacts, then the tracker's own end."""
        found = self.run.regular_checkpoints()
        files = [found[-1][1]] if found else []
        summary = self.run.plots / "summary.png"
        self.log_files([*files, *([summary] if summary.is_file() else [])])
        self.logger.close()

    def log_image(self, key: str, image: np.ndarray, step: int) -> None:
        raise NotImplementedError

    def log_files(self, paths: list[Path]) -> None:
        """Artifacts; trackers without them keep nothing."""


def epoch_numbers(record: dict[str, Any]) -> dict[str, float]:
    """What trackers log of an epoch record: every tracked score (scores.py) and the training
    numbers, where the record has them."""
    keys = (*tracked_keys(), *TRAINING_KEYS)
    return {k: record[k] for k in keys if record.get(k) is not None}


class TensorboardTracker(Tracker):
    """``RUN_DIR/tensorboard`` event files; the config as text (TensorBoard keeps no files)."""

    def __init__(self, config: dict[str, Any], *args: Any) -> None:
        super().__init__(*args)
        from ignite.handlers import TensorboardLogger

        self.logger = TensorboardLogger(log_dir=str(self.run.tensorboard))
        self.logger.writer.add_text("config", f"```\n{json.dumps(config, indent=2)}\n```")

    def log_image(self, key: str, image: np.ndarray, step: int) -> None:
        self.logger.writer.add_image(key, image, step, dataformats="HWC")


class WandbTracker(Tracker):
    """A W&B run in project ``$WANDB_PROJECT`` (default animegan-ignite), named after the run
    folder, its files under ``RUN_DIR/wandb`` (``WANDB_MODE=offline`` keeps them there until
    ``wandb sync``). Each start or resume of the run is one W&B run, grouped by the run folder."""

    def __init__(self, config: dict[str, Any], *args: Any) -> None:
        super().__init__(*args)
        from ignite.handlers import WandBLogger

        self.logger = WandBLogger(project=os.environ.get("WANDB_PROJECT", PROJECT),
                                  name=self.run.root.name, group=self.run.root.name,
                                  dir=str(self.run.root), config=config)

    def log_image(self, key: str, image: np.ndarray, step: int) -> None:
        self.logger.log({key: self.logger.Image(image)}, step=step)

    def log_files(self, paths: list[Path]) -> None:
        if paths:
            artifact = self.logger.Artifact(f"{self.run.root.name}-results", type="model")
            for path in paths:
                artifact.add_file(str(path))
            self.logger.log_artifact(artifact)


class MlflowTracker(Tracker):
    """An MLflow run in experiment animegan-ignite at ``$MLFLOW_TRACKING_URI``, or by default
    in a local file store ``RUN_DIR/mlruns`` (MLflow keeps file stores in maintenance mode;
    this opts in to one, as the run folder is where a run's files live). ignite's MLflow
    handler names metrics ``"train loss_d"``, ``"epoch fid"`` (its tag and name, space-joined)."""

    def __init__(self, config: dict[str, Any], *args: Any) -> None:
        super().__init__(*args)
        import mlflow
        from ignite.handlers import MLflowLogger

        uri = os.environ.get("MLFLOW_TRACKING_URI") or (self.run.root.resolve() / "mlruns").as_uri()
        if uri.startswith("file:"):
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        mlflow.set_tracking_uri(uri)
        mlflow.set_experiment(PROJECT)
        self.logger = MLflowLogger(tracking_uri=uri)
        self.logger.set_tag("mlflow.runName", self.run.root.name)
        self.logger.log_params({k: str(v) for k, v in config.items()})

    def log_image(self, key: str, image: np.ndarray, step: int) -> None:
        self.logger.log_image(image, key=key, step=step)

    def log_files(self, paths: list[Path]) -> None:
        for path in paths:
            self.logger.log_artifact(str(path))


TRACKERS = {"tensorboard": TensorboardTracker, "wandb": WandbTracker, "mlflow": MlflowTracker}


def make_trackers(names: tuple[str, ...], config: dict[str, Any], run: RunDir,
                  netG: torch.nn.Module, fixed_noise: torch.Tensor,
                  snapshot_every: int) -> list[Tracker]:
    return [TRACKERS[n](config, run, netG, fixed_noise, snapshot_every) for n in names]
