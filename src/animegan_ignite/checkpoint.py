"""Checkpoints: what a resumed run needs, written atomically, found again safely, and rotated
correctly across any number of resumes.

A checkpoint file holds the trainer's state (epoch, iteration), both models and optimizers, and
``run_state``: the fixed snapshot noise, the model shape (so a checkpoint alone can rebuild the
generator), every process's RNG states and the current epoch's training seconds. Regular files
are ``RUN_DIR/checkpoints/checkpoint_<iteration>.pt`` (the latest two), the lowest-FID one is
``best_checkpoint_<iteration>.pt``; both hold the same keys, so either can be resumed from.

Which files the checkpointers own is read back from the run directory on resume (not from the
checkpoint), so rotation stays right whatever file the run was resumed from.
"""

from __future__ import annotations

import copy
import random
from pathlib import Path
from typing import Any

import ignite.distributed as idist
import torch
from ignite.handlers import Checkpoint
from ignite.handlers.checkpoint import BaseSaveHandler

from .cli import UserError
from .models import Generator
from .rundir import RunDir, atomic_write

N_SAVED = 2


class CheckpointError(UserError):
    """A checkpoint cannot be used; the message says why and what to do."""


def capture_rng() -> dict[str, Any]:
    """This process's RNG states: torch's CPU generator, its current GPU's, Python's."""
    return {"torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state() if torch.cuda.is_available() else None,
            "python": random.getstate()}


def restore_rng(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if state.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])
    random.setstate(_as_tuple(state["python"]))


def _as_tuple(x: Any) -> Any:
    return tuple(_as_tuple(i) for i in x) if isinstance(x, (list, tuple)) else x


def gather_rng() -> list[dict[str, Any]]:
    """Every process's RNG states, in rank order (a collective: all processes call it)."""
    state = capture_rng()
    return [state] if idist.get_world_size() == 1 else list(idist.all_gather(state))


class RunState:
    """The parts of a run that are not a module or optimizer, as a state_dict object.

    ``rng_states`` (one entry per rank; None where a rank's state could not be collected) and
    ``epoch_seconds`` are set by the handlers just before each save. Loading restores this
    process's own RNG state (kept as ``loaded_rng``); ``rng_missing`` says when the checkpoint
    had none for this rank."""

    def __init__(self, fixed_noise: torch.Tensor, model_config: dict[str, Any]) -> None:
        self.fixed_noise = fixed_noise
        self.model_config = dict(model_config)
        self.rng_states: list[dict[str, Any] | None] = []
        self.epoch_seconds: float | None = None
        self.saved_world_size = 1
        self.rng_missing = False
        self.loaded_rng: dict[str, Any] | None = None

    def state_dict(self) -> dict[str, Any]:
        return {"fixed_noise": self.fixed_noise.cpu(), "model_config": self.model_config,
                "rng": self.rng_states, "epoch_train_seconds": self.epoch_seconds}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.fixed_noise.copy_(state["fixed_noise"])
        saved = {k: state["model_config"].get(k) for k in self.model_config}
        if saved != self.model_config:
            raise CheckpointError(
                f"the checkpoint's model {state['model_config']} differs from this run's "
                f"{self.model_config}; resume with the run's own settings")
        if "rng" in state:
            rng = list(state["rng"])
        else:  # written before per-rank states existed: rank 0's only
            rng = [{"torch": state["torch_rng"], "python": state["python_rng"],
                    "cuda": (state["cuda_rng"] or [None])[0]}]
        self.rng_states, self.saved_world_size = rng, len(rng)
        self.epoch_seconds = state.get("epoch_train_seconds")
        rank = idist.get_rank()
        self.rng_missing = rank >= len(rng) or rng[rank] is None
        if not self.rng_missing:
            self.loaded_rng = rng[rank]
            restore_rng(self.loaded_rng)


class AtomicSaver(BaseSaveHandler):
    """ignite's save handler for the run's checkpoint folder: rank 0 writes each file through
    :func:`~animegan_ignite.rundir.atomic_write` (a full disk leaves the previous files and no
    temporary file), and removing a file that is already gone is not an error."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)

    def __call__(self, checkpoint: Any, filename: str, metadata: Any = None) -> None:
        if idist.get_rank() != 0:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        atomic_write(self.folder / filename, lambda f: torch.save(checkpoint, f))

    def remove(self, filename: str) -> None:
        if idist.get_rank() == 0:
            (self.folder / filename).unlink(missing_ok=True)


def _iteration(engine, _event=None) -> int:
    return engine.state.iteration


def make_checkpointer(run: RunDir, to_save: dict[str, Any], n_saved: int = N_SAVED) -> Checkpoint:
    """``checkpoint_<iteration>.pt``, the latest ``n_saved`` kept. Call it on every process
    (the objects' state_dicts may gather from all ranks); only rank 0 writes."""
    return Checkpoint(to_save, AtomicSaver(run.checkpoints), n_saved=n_saved,
                      global_step_transform=_iteration)


def make_best_checkpointer(run: RunDir, to_save: dict[str, Any]) -> Checkpoint:
    """``best_checkpoint_<iteration>.pt``: the lowest FID so far (a GAN's losses say little about
    its images). Call it after ``engine.state.metrics["fid"]`` is set."""
    return Checkpoint(to_save, AtomicSaver(run.checkpoints), filename_prefix="best", n_saved=1,
                      score_function=lambda engine: -engine.state.metrics["fid"],
                      filename_pattern="{filename_prefix}_{name}_{global_step}.{ext}",
                      global_step_transform=_iteration)


def adopt_existing(run: RunDir, regular: Checkpoint, best: Checkpoint, iteration: int,
                   fids: dict[int, float]) -> list[Path]:
    """Hand the checkpointers the files a resumed run already has, so rotation continues: the
    latest ``n_saved`` regular files up to ``iteration`` (older extras removed) and the best
    file (scored by the history's ``fids``, iteration -> FID). Files after ``iteration`` belong
    to the part of the run that the resume abandons: they move to ``checkpoints/superseded/``
    (returned) instead of being resumed from later or rotated into the new ones."""
    moved = []
    for it, path in [*run.regular_checkpoints(), *run.best_checkpoints()]:
        if it > iteration:
            run.superseded.mkdir(parents=True, exist_ok=True)
            path.replace(run.superseded / path.name)
            moved.append(run.superseded / path.name)
    kept = run.regular_checkpoints()
    for _, path in kept[:-regular.n_saved]:
        path.unlink()
    regular.load_state_dict({"_saved": [(it, p.name) for it, p in kept[-regular.n_saved:]]})
    on_disk = {it: p.name for it, p in run.best_checkpoints() if it in fids}
    scored = {it: fid for it, fid in fids.items() if it <= iteration}
    if scored:  # the best so far, even if its file is gone, so a worse epoch never replaces it
        it = min(on_disk, key=fids.get) if on_disk else min(scored, key=scored.get)
        best.load_state_dict({"_saved": [(-fids[it], f"best_checkpoint_{it}.pt")]})
    return moved


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint file, or a run directory's latest regular checkpoint."""
    path = Path(path)
    if path.is_dir():
        run = RunDir(path)
        found = run.regular_checkpoints()
        if found:
            return found[-1][1]
        if run.config.is_file():
            raise CheckpointError(
                f"{path}: this run has no checkpoint yet (it stopped before its first epoch "
                f"ended), so there is nothing to continue; start it again with its settings: "
                f"python -m animegan_ignite.train --config {run.config} --output-dir NEW_DIR")
        raise CheckpointError(f"{path}: no checkpoints/checkpoint_<iteration>.pt in this folder; "
                              "give a run folder or a checkpoint file")
    if not path.exists():
        raise CheckpointError(f"{path}: no such checkpoint file or run directory")
    return path


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
    """Load every object of ``to_load`` from ``checkpoint`` (errors name the file's problem).

    The objects get private copies: an optimizer keeps the loaded state tensors themselves, and a
    checkpoint handed to spawned processes arrives in shared memory, so without the copy every
    rank's Adam would update the same moment buffers in place."""
    missing = sorted(set(to_load) - set(checkpoint))
    if missing:
        raise CheckpointError(f"checkpoint does not match this run: it has no {', '.join(missing)}")
    try:
        Checkpoint.load_objects(to_load, {k: copy.deepcopy(checkpoint[k]) for k in to_load})
    except (KeyError, RuntimeError, ValueError) as e:
        raise CheckpointError(f"checkpoint does not match this run: {str(e).splitlines()[0]}") from e


def checkpoint_iteration(checkpoint: dict[str, Any]) -> int:
    return int(checkpoint["trainer"]["iteration"]) if "trainer" in checkpoint else 0


def load_generator(checkpoint: dict[str, Any], device: torch.device | str = "cpu",
                   weights: str = "auto") -> Generator:
    """The checkpoint's generator, rebuilt from its saved shape, in eval mode: its EMA weights
    (``ema``), the trained ones (``raw``), or ``auto`` (EMA when the run kept one). Building it
    leaves the global RNG untouched (a trainer redrawing its plots must not move its noise)."""
    if weights == "ema" and "ema" not in checkpoint:
        raise CheckpointError("this checkpoint has no EMA generator (the run had no "
                              "--ema-halflife-kimg); use --weights raw")
    key = "ema" if weights in ("auto", "ema") and "ema" in checkpoint else "netG"
    shape = checkpoint["run_state"]["model_config"]
    with torch.random.fork_rng(devices=[]):
        netG = Generator(shape["nz"], shape["ngf"], shape["nc"])
    netG.load_state_dict(checkpoint[key])
    return netG.to(device).eval()
