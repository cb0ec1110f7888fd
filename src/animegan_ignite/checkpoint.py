"""Checkpoints: what a resumed run needs, written atomically, and found again safely.

A checkpoint file holds the trainer's state (epoch, iteration), both models and optimizers, and
``run_state``: the fixed snapshot noise, the RNG states and the model shape (so a checkpoint
alone can rebuild the generator). Files are ``RUN_DIR/checkpoints/checkpoint_<iteration>.pt``,
written by ignite's ``DiskSaver`` to a temporary file then renamed, so no half-written file is
ever the latest.
"""

from __future__ import annotations

import random
import re
from pathlib import Path
from typing import Any

import torch
from ignite.handlers import Checkpoint, DiskSaver

from .models import Generator

CHECKPOINT_DIR = "checkpoints"
_PATTERN = re.compile(r"checkpoint_(\d+)\.pt")


class CheckpointError(ValueError):
    """A checkpoint cannot be used; the message says why and what to do."""


class RunState:
    """The parts of a run that are not a module or optimizer, as a state_dict object."""

    def __init__(self, fixed_noise: torch.Tensor, model_config: dict[str, int]) -> None:
        self.fixed_noise = fixed_noise
        self.model_config = dict(model_config)

    def state_dict(self) -> dict[str, Any]:
        return {
            "fixed_noise": self.fixed_noise.cpu(),
            "model_config": self.model_config,
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "python_rng": random.getstate(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.fixed_noise.copy_(state["fixed_noise"])
        if state["model_config"] != self.model_config:
            raise CheckpointError(
                f"the checkpoint's model {state['model_config']} differs from this run's "
                f"{self.model_config}; resume with the same --nz/--ngf/--ndf")
        torch.set_rng_state(state["torch_rng"])
        if state["cuda_rng"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda_rng"])
        random.setstate(_as_tuple(state["python_rng"]))


def _as_tuple(x: Any) -> Any:
    return tuple(_as_tuple(i) for i in x) if isinstance(x, (list, tuple)) else x


def make_checkpointer(run_dir: str | Path, to_save: dict[str, Any], n_saved: int = 2
                      ) -> Checkpoint:
    """An ignite ``Checkpoint`` writing ``checkpoint_<iteration>.pt`` atomically (rank 0 only)."""
    saver = DiskSaver(Path(run_dir) / CHECKPOINT_DIR, require_empty=False, atomic=True)
    return Checkpoint(to_save, saver, n_saved=n_saved,
                      global_step_transform=lambda engine, _: engine.state.iteration)


def make_best_checkpointer(run_dir: str | Path, to_save: dict[str, Any]) -> Checkpoint:
    """Keeps ``best_checkpoint_<iteration>.pt``: the one with the lowest FID so far (a GAN's
    losses say little about its images). Call it after ``engine.state.metrics["fid"]`` is set."""
    saver = DiskSaver(Path(run_dir) / CHECKPOINT_DIR, require_empty=False, atomic=True)
    return Checkpoint(to_save, saver, filename_prefix="best", n_saved=1,
                      score_function=lambda engine: -engine.state.metrics["fid"],
                      filename_pattern="{filename_prefix}_{name}_{global_step}.{ext}",
                      global_step_transform=lambda engine, _: engine.state.iteration)


def list_checkpoints(run_dir: str | Path) -> list[Path]:
    """A run's checkpoint files, oldest (lowest iteration) first."""
    folder = Path(run_dir) / CHECKPOINT_DIR
    found = [(int(m.group(1)), p) for p in folder.glob("checkpoint_*.pt")
             if (m := _PATTERN.fullmatch(p.name))]
    return [p for _, p in sorted(found)]


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint file, or a run directory's latest checkpoint."""
    path = Path(path)
    if path.is_dir():
        found = list_checkpoints(path)
        if not found:
            raise CheckpointError(f"{path}: no checkpoints/checkpoint_<iteration>.pt in this folder")
        return found[-1]
    if not path.exists():
        raise CheckpointError(f"{path}: no such checkpoint file or run directory")
    return path


def run_dir_of(checkpoint: Path) -> Path:
    """The run directory a checkpoint file belongs to."""
    return checkpoint.parent.parent if checkpoint.parent.name == CHECKPOINT_DIR else checkpoint.parent


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint file; a truncated or foreign file raises :class:`CheckpointError`."""
    path = resolve_checkpoint(path)
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # torch raises many types for a damaged file
        raise CheckpointError(
            f"{path}: cannot be read as a checkpoint ({type(e).__name__}: "
            f"{str(e).splitlines()[0][:120]}); pass an earlier checkpoint file to --resume") from e
    missing = {"netG", "run_state"} - set(ckpt) if isinstance(ckpt, dict) else {"netG"}
    if missing:
        raise CheckpointError(f"{path}: not an animegan-ignite checkpoint (missing {missing})")
    return ckpt


def restore(to_load: dict[str, Any], checkpoint: dict[str, Any]) -> None:
    """Load every object of ``to_load`` from ``checkpoint`` (errors name the file's problem)."""
    try:
        Checkpoint.load_objects(to_load, {k: checkpoint[k] for k in to_load})
    except (KeyError, RuntimeError) as e:
        raise CheckpointError(f"checkpoint does not match this run: {str(e).splitlines()[0]}") from e


def checkpoint_iteration(checkpoint: dict[str, Any]) -> int:
    return int(checkpoint["trainer"]["iteration"]) if "trainer" in checkpoint else 0


def load_generator(checkpoint: dict[str, Any], device: torch.device | str = "cpu") -> Generator:
    """The checkpoint's generator, rebuilt from its saved shape, in eval mode."""
    shape = checkpoint["run_state"]["model_config"]
    netG = Generator(shape["nz"], shape["ngf"], shape["nc"])
    netG.load_state_dict(checkpoint["netG"])
    return netG.to(device).eval()


def saved_iteration(checkpointer: Checkpoint) -> int:
    """Iteration of the checkpointer's latest file, 0 if none (saving one iteration twice would
    register the same file twice in ignite's rotation)."""
    last = checkpointer.last_checkpoint
    m = _PATTERN.fullmatch(Path(last).name) if last else None
    return int(m.group(1)) if m else 0
