"""Checkpoints: written durably, rotated across any number of resumes, found and read safely.

A checkpoint file holds the trainer's state (epoch, iteration), both models and optimizers, the
GradScalers, the EMA generator when there is one, and ``run_state`` (see resume.py). Regular
files are ``RUN_DIR/checkpoints/checkpoint_<iteration>.pt`` (the latest two), the best one by
FID is ``best_checkpoint_<iteration>.pt``; both hold the same keys, so either can be resumed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import ignite.distributed as idist
import torch
from ignite.engine import Engine
from ignite.handlers import Checkpoint, DiskSaver

from ..errors import UserError
from ..networks.architecture import Architecture, ArchitectureError, check_format, of_saved
from ..networks.models import Generator
from ..rundir import RunDir, atomic_write, checkpoint_name, checkpoint_pattern
from . import faults

N_SAVED = 2


class CheckpointError(UserError):
    """A checkpoint cannot be used; the message says why and what to do."""


class DurableSaver(DiskSaver):
    """ignite's DiskSaver, writing through :func:`~animegan_ignite.rundir.atomic_write`: the file
    is flushed to the disk before its rename (DiskSaver's atomic mode does not fsync, so a power
    cut could leave an empty checkpoint) and a failed write names the checkpoint. A rotated-out
    file is deleted only after the next checkpoint is complete (ignite deletes it first, so a
    write that fails on a full disk would leave one checkpoint fewer)."""

    def __init__(self, folder: Path) -> None:
        super().__init__(folder, require_empty=False)
        self._doomed: list[str] = []

    def __call__(self, checkpoint: Any, filename: str, metadata: Any = None) -> None:
        if idist.get_rank() != self.save_on_rank:
            return
        self.dirname.mkdir(parents=True, exist_ok=True)

        def write(f: Any) -> None:
            torch.save(checkpoint, f)
            faults.point("checkpoint")  # written, not yet renamed into place

        atomic_write(self.dirname / filename, write)
        for name in self._doomed:
            if name != filename:
                (self.dirname / name).unlink(missing_ok=True)
        self._doomed.clear()

    def remove(self, filename: str) -> None:
        self._doomed.append(filename)


def _iteration(engine: Engine, _event: Any = None) -> int:
    return engine.state.iteration


def make_checkpointers(run: RunDir, to_save: dict[str, Any]) -> tuple[Checkpoint, Checkpoint]:
    """``checkpoint_<iteration>.pt`` (the latest two) and ``best_checkpoint_<iteration>.pt``
    (the best score so far, ``engine.state.metrics["best_score"]``, set by the epoch end; a
    GAN's losses say little about its images). Made on every process (the objects'
    state_dicts may gather from all ranks); only rank 0 writes."""
    regular = Checkpoint(to_save, DurableSaver(run.checkpoints), n_saved=N_SAVED,
                         filename_pattern=checkpoint_pattern(), global_step_transform=_iteration)
    best = Checkpoint(to_save, DurableSaver(run.checkpoints), n_saved=1,
                      score_function=lambda engine: engine.state.metrics["best_score"],
                      filename_pattern=checkpoint_pattern(best=True),
                      global_step_transform=_iteration)
    return regular, best


def adopt_existing(run: RunDir, regular: Checkpoint, best: Checkpoint, iteration: int,
                   scores: dict[int, float]) -> list[Path]:
    """Hand the checkpointers the files a resumed run already has, so rotation continues: the
    latest regular files up to ``iteration`` (older extras removed) and the best file (scored
    by ``scores``, iteration -> best_score, from the history): ignite's Checkpoint knows only
    the files it saved itself (:func:`_hand_over`). Files after ``iteration`` belong to the
    part of the run that the resume abandons: they move to ``checkpoints/superseded/``
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
    _hand_over(regular, [(it, p.name) for it, p in kept[-regular.n_saved:]])
    on_disk = {it: p.name for it, p in run.best_checkpoints() if it in scores}
    scored = {it: s for it, s in scores.items() if it <= iteration}
    if scored:  # the best so far, even if its file is gone, so a worse epoch never replaces it
        it = max(on_disk, key=scores.get) if on_disk else max(scored, key=scored.get)
        _hand_over(best, [(scores[it], checkpoint_name(it, best=True))])
    return moved


def _hand_over(checkpointer: Checkpoint, saved: list[tuple[float, str]]) -> None:
    """Tell ``checkpointer`` which files it owns, as (priority, file name) pairs, through its
    ``load_state_dict`` in the format of its own ``state_dict()`` (one key: those pairs)."""
    (key,) = checkpointer.state_dict()
    checkpointer.load_state_dict({key: saved})


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint file, a run directory's latest regular checkpoint, or an exported model
    folder's weights file."""
    path = Path(path)
    if (path / EXPORT_WEIGHTS).is_file():
        return path / EXPORT_WEIGHTS
    if path.is_dir():
        run = RunDir(path)
        found = run.regular_checkpoints()
        if found:
            return found[-1][1]
        if run.config.is_file():
            raise CheckpointError(
                f"{path}: this run has no checkpoint yet (it stopped before its first one); "
                f"train it with: animegan-train --resume {path}")
        raise CheckpointError(f"{path}: no checkpoints/checkpoint_<iteration>.pt in this folder; "
                              "give a run folder or a checkpoint file")
    if not path.exists():
        raise CheckpointError(f"{path}: no such checkpoint file or run directory")
    return path


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint file (or an exported model, as a checkpoint of its networks alone); a
    truncated or foreign file raises :class:`CheckpointError`."""
    path = resolve_checkpoint(path)
    if path.name == EXPORT_WEIGHTS:
        return _load_export(path, map_location)
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # torch raises many types for a damaged or empty file
        raise CheckpointError(
            f"{path}: cannot be read as a checkpoint ({type(e).__name__}: "
            f"{(str(e).splitlines() or [''])[0][:120]}); pass an earlier checkpoint file") from e
    missing = {"netG", "run_state"} - set(ckpt) if isinstance(ckpt, dict) else {"netG"}
    if missing:
        raise CheckpointError(f"{path}: not an animegan-ignite checkpoint (missing {missing})")
    try:
        check_format(ckpt["run_state"])
    except ArchitectureError as e:
        raise CheckpointError(f"{path}: {e}") from None
    return ckpt


def architecture_of(checkpoint: dict[str, Any]) -> Architecture:
    """The architecture a checkpoint's networks were built with."""
    return of_saved(checkpoint["run_state"], checkpoint.get("netD"))


# An exported model (export.py): a Hugging Face-style folder of safetensors weights, keyed
# "netG.*", "ema.*" and "netD.*", and a config.json of their architecture and their run.
EXPORT_WEIGHTS, EXPORT_CONFIG = "model.safetensors", "config.json"
EXPORTED = ("netG", "ema", "netD")


def export_info(weights_file: Path) -> dict[str, Any]:
    """An exported model's config.json (format checked)."""
    path = weights_file.parent / EXPORT_CONFIG
    try:
        info = json.loads(path.read_text())
        check_format(info)
    except (OSError, ValueError) as e:
        raise CheckpointError(f"{path}: cannot be read as an exported model's config ({e})") from None
    except ArchitectureError as e:
        raise CheckpointError(f"{path}: {e}") from None
    return info


def _load_export(path: Path, map_location: str | torch.device) -> dict[str, Any]:
    """An exported model as a checkpoint: its networks, architecture and iteration."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    info = export_info(path)
    try:
        tensors = load_file(path, device=str(map_location))
    except (OSError, SafetensorError) as e:
        raise CheckpointError(f"{path}: cannot be read as safetensors ({e}); export it again") from None
    checkpoint: dict[str, Any] = {
        "run_state": {k: info[k] for k in ("format", "package_version", "architecture")},
        "trainer": {"iteration": info["iteration"]}}
    for net in EXPORTED:
        prefix = net + "."
        found = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
        if found:
            checkpoint[net] = found
    if "netG" not in checkpoint:
        raise CheckpointError(f"{path}: holds no generator (no netG.* tensors); export it again")
    return checkpoint


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
    with torch.random.fork_rng(devices=[]):
        netG = architecture_of(checkpoint).generator()
    netG.load_state_dict(checkpoint[key])
    return netG.to(device).eval()
