"""The run directory: every file name of a run, the one atomic-write helper that every writer
uses, and the checks that keep runs apart.

Layout (documented in the README)::

    RUN_DIR/
      config.json        the resolved settings
      fixed_noise.pt     the 64 latent vectors of the snapshots
      real_samples.png   64 held-out real faces (for the real-vs-fake figure)
      model_summary.txt  torchsummary's tables of G and D
      history.jsonl      per-iteration and per-epoch records (see history.py)
      train.log          the console log
      train.lock         held (an OS file lock) while a trainer writes the run; empty
      checkpoints/       checkpoint_<iteration>.pt (latest two), best_checkpoint_<iteration>.pt
        superseded/      checkpoints after the point a run was resumed from (kept, not used)
      snapshots/         iter_<iteration>.png, 8x8 grids of G(fixed_noise); final.png
      plots/             figures drawn from the history (see figures.py) and the scores' own
                         figures (nearest.png, see scores.py)
      tensorboard/       TensorBoard event files, with --logger tensorboard (also wandb/, mlruns/)
"""

from __future__ import annotations

import errno
import json
import logging
import os
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from filelock import FileLock, Timeout

from .errors import UserError, free_bytes
from .paths import check_output_path

CHECKPOINT_DIR = "checkpoints"
# Checkpoint file names, the one place they are spelt: ``checkpoint_<iteration>.pt`` and
# ``best_checkpoint_<iteration>.pt`` (checkpoints.py hands these patterns to ignite's Checkpoint).
REGULAR, BEST = "checkpoint", "best_checkpoint"
_REGULAR = re.compile(rf"{REGULAR}_(\d+)\.pt")
_BEST = re.compile(rf"{BEST}_(\d+)\.pt")
_SNAPSHOT = re.compile(r"iter_(\d+)\.png")
_TEMP = re.compile(r"\..+\.\d+\.tmp")
logger = logging.getLogger(__name__)


class RunDirError(UserError):
    """The run directory cannot be used; the message says why and what to do."""


def atomic_write(path: str | Path, write: Callable[[IO[bytes]], Any], durable: bool = True) -> None:
    """``write(file)`` into a temporary file beside ``path``, then renamed over ``path``:
    readers see the old file or the new one, never a partial one. On any failure (a full disk,
    Ctrl-C) the temporary file is removed and the old file is left as it was. ``durable``
    flushes the data to the disk before the rename (a power cut then cannot leave an empty
    file); thousands of small files a second skip it."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            write(f)
            if durable:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        error = _as_write_error(e, path, tmp)
        tmp.unlink(missing_ok=True)
        if error is e:
            raise
        raise error from e


def _as_write_error(e: BaseException, path: Path, tmp: Path) -> BaseException:
    """The failure as an OSError naming ``path`` (not the temporary file). Some writers report
    a full disk in their own words (torch.save: "unexpected pos"); a failed write with almost
    no space left is taken for what it is."""
    if isinstance(e, OSError):
        return OSError(e.errno, e.strerror, str(path))
    if isinstance(e, Exception) and tmp.exists() and free_bytes(tmp.parent) < 1 << 20:
        return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
    return e


def write_text_atomic(path: str | Path, text: str) -> None:
    atomic_write(path, lambda f: f.write(text.encode()))


def write_json_atomic(path: str | Path, data: Any) -> None:
    write_text_atomic(path, json.dumps(data, indent=2) + "\n")


def checkpoint_name(iteration: int, best: bool = False) -> str:
    return f"{BEST if best else REGULAR}_{iteration}.pt"


def checkpoint_pattern(best: bool = False) -> str:
    """The file name pattern of ignite's Checkpoint for :func:`checkpoint_name`."""
    return f"{BEST if best else REGULAR}_{{global_step}}.{{ext}}"


def iteration_of(checkpoint_name: str) -> int:
    """The iteration in a checkpoint's file name (``checkpoint_780.pt`` -> 780)."""
    return int(re.search(r"_(\d+)\.pt$", checkpoint_name).group(1))


def _numbered(folder: Path, pattern: re.Pattern) -> list[tuple[int, Path]]:
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := pattern.fullmatch(p.name))]
    return sorted(found)


class RunDir:
    """Every file name of one run, below ``root``."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.config = self.root / "config.json"
        self.noise = self.root / "fixed_noise.pt"
        self.history = self.root / "history.jsonl"
        self.log = self.root / "train.log"
        self.lock = self.root / "train.lock"
        self.summary = self.root / "model_summary.txt"
        self.real_samples = self.root / "real_samples.png"
        self.checkpoints = self.root / CHECKPOINT_DIR
        self.superseded = self.checkpoints / "superseded"
        self.snapshots = self.root / "snapshots"
        self.final_snapshot = self.snapshots / "final.png"
        self.plots = self.root / "plots"
        self.tensorboard = self.root / "tensorboard"

    def __str__(self) -> str:
        return str(self.root)

    @classmethod
    def of_checkpoint(cls, checkpoint: str | Path) -> RunDir:
        """The run a checkpoint file belongs to (its folder's parent for ``checkpoints/``)."""
        path = Path(checkpoint)
        return cls(path.parent.parent if path.parent.name == CHECKPOINT_DIR else path.parent)

    def is_run(self) -> bool:
        """A training run wrote here: its settings, its history or its checkpoint folder."""
        return self.config.is_file() or self.history.is_file() or self.checkpoints.is_dir()

    def snapshot(self, iteration: int) -> Path:
        return self.snapshots / f"iter_{iteration:07d}.png"

    def regular_checkpoints(self) -> list[tuple[int, Path]]:
        """``checkpoint_<iteration>.pt`` files as (iteration, path), oldest first."""
        return _numbered(self.checkpoints, _REGULAR)

    def best_checkpoints(self) -> list[tuple[int, Path]]:
        """``best_checkpoint_<iteration>.pt`` files as (iteration, path), oldest first."""
        return _numbered(self.checkpoints, _BEST)

    def checkpoint_files(self) -> list[Path]:
        """Every checkpoint of the run, regular and best."""
        return [p for _, p in [*self.regular_checkpoints(), *self.best_checkpoints()]]

    def snapshot_files(self) -> list[tuple[int, Path]]:
        """The fixed-noise snapshots as (iteration, file), in training order."""
        return _numbered(self.snapshots, _SNAPSHOT)

    def check_layout(self) -> None:
        """The run's folder names must be free for folders and its file names for files (a
        file named ``snapshots`` would stop the run at its first snapshot)."""
        for folder in (self.checkpoints, self.snapshots, self.plots, self.tensorboard):
            if folder.exists() and not folder.is_dir():
                raise RunDirError(f"{folder} is a file, but the run keeps a folder of that name "
                                  "there; move the file away or choose another --output-dir")
        for file in (self.config, self.history, self.noise, self.log, self.lock):
            if file.is_dir():
                raise RunDirError(f"{file} is a folder, but the run keeps a file of that name "
                                  "there; move the folder away or choose another --output-dir")

    def remove_stale_temp_files(self) -> list[Path]:
        """Temporary files of writes that a killed process never finished."""
        stale = [p for folder in (self.root, self.checkpoints, self.snapshots, self.plots)
                 if folder.is_dir() for p in folder.iterdir() if _TEMP.fullmatch(p.name)]
        for p in stale:
            p.unlink(missing_ok=True)
        return stale


def check_unlocked(run: RunDir) -> None:
    """Raise the error :func:`run_lock` would, without creating anything: a resume learns at
    once that another trainer writes the run, not after seconds of loading it."""
    if run.lock.is_file():
        with run_lock(run):
            pass


@contextmanager
def run_lock(run: RunDir) -> Iterator[None]:
    """Hold ``run``'s lock (creating its folder) for the ``with`` block: two trainers writing one
    run (a resume started twice, a notebook cell run again) would interleave their history and
    delete each other's half-written files. An OS lock, so a killed trainer leaves no stale lock
    behind; where the file system has no locks (some network mounts) the run goes on unguarded,
    with a warning."""
    run.root.mkdir(parents=True, exist_ok=True)
    lock = FileLock(run.lock)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        raise RunDirError(f"{run.root} is being written by another training process (it holds "
                          f"{run.lock.name}; `fuser {run.lock}` shows which); wait for it to end "
                          "or stop it, then --resume the run") from None
    except (NotImplementedError, OSError) as e:
        logger.warning("%s cannot be locked (%s); make sure no other trainer writes this run",
                       run.root, e)
        yield
        return
    try:
        yield
    finally:
        lock.release()


def new_run_dir(output_dir: str | None, check: bool = True, force: bool = False) -> Path:
    """The folder for a new run: ``output_dir`` or ``runs/<timestamp>``. It must be a place that
    can be written, must not hold a run, and must be empty unless ``force``. Not created here,
    so bad input leaves nothing behind. ``check`` False skips the checks (torchrun's other
    ranks, which may look after rank 0 has started writing)."""
    path = Path(output_dir) if output_dir else Path("runs") / datetime.now().strftime("%Y%m%d-%H%M%S")
    if not check:
        return path
    check_output_path(path, "--output-dir", folder=True)
    run = RunDir(path)
    run.check_layout()  # a file in the way is named as such, not taken for a run
    if run.is_run():
        raise RunDirError(f"--output-dir {path} already holds a run; continue it with "
                          f"--resume {path}, or choose another --output-dir")
    # A lock file alone is what a run that stopped before its first write leaves.
    others = sorted(p.name for p in path.iterdir() if p != run.lock) if path.is_dir() else []
    if others and not force:
        shown = ", ".join(others[:4]) + (", ..." if len(others) > 4 else "")
        raise RunDirError(f"--output-dir {path} is not empty ({shown}) and holds no run; choose "
                          "an empty or new folder, or pass --force to write the run among them")
    run.check_layout()
    return path
