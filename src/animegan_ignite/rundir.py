"""The run directory: where a run writes everything, and the checks that keep runs apart.

Layout (documented in the README)::

    RUN_DIR/
      config.json        the resolved settings
      fixed_noise.pt     the 64 latent vectors of the snapshots
      real_samples.png   64 held-out real faces (for the real-vs-fake figure)
      model_summary.txt  torchsummary's tables of G and D
      history.jsonl      per-iteration and per-epoch records (see history.py)
      train.log          the console log
      checkpoints/       checkpoint_<iteration>.pt (latest two), best_*.pt once FID is computed
      snapshots/         iter_<iteration>.png, 8x8 grids of G(fixed_noise)
      plots/             figures drawn from the history (see plots.py)
      tensorboard/       TensorBoard event files, with --tensorboard
"""

from __future__ import annotations

import json
import os
from datetime import datetime
from pathlib import Path
from typing import Any

from .checkpoint import CHECKPOINT_DIR, run_dir_of
from .history import HISTORY_FILE

CONFIG_FILE = "config.json"
NOISE_FILE = "fixed_noise.pt"
SUMMARY_FILE = "model_summary.txt"
RUN_MARKERS = (CONFIG_FILE, HISTORY_FILE, CHECKPOINT_DIR)


class RunDirError(ValueError):
    """The run directory cannot be used; the message says why and what to do."""


def is_run_dir(path: str | Path) -> bool:
    return any((Path(path) / m).exists() for m in RUN_MARKERS)


def new_run_dir(output_dir: str | None, check: bool = True) -> Path:
    """The folder for a new run: ``output_dir`` (which must not hold a run, unless ``check`` is
    False) or ``runs/<timestamp>``. Not created here, so bad input leaves nothing behind."""
    if output_dir is None:
        return Path("runs") / datetime.now().strftime("%Y%m%d-%H%M%S")
    path = Path(output_dir)
    if not check:
        return path
    if path.exists() and not path.is_dir():
        raise RunDirError(f"--output-dir {path}: is a file, not a folder")
    if is_run_dir(path):
        raise RunDirError(f"--output-dir {path} already holds a run; continue it with "
                          f"--resume {path}, or choose another --output-dir")
    return path


def write_json_atomic(path: Path, data: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, path)


def read_run_config(resume: str | Path) -> tuple[Path, dict[str, Any]]:
    """(run directory, its saved settings) for ``--resume RUN_DIR`` or a checkpoint file."""
    path = Path(resume)
    if not path.exists():
        raise RunDirError(f"--resume {path}: no such run directory or checkpoint file")
    run_dir = path if path.is_dir() else run_dir_of(path)
    cfg_file = run_dir / CONFIG_FILE
    if not cfg_file.is_file():
        raise RunDirError(f"--resume {path}: {run_dir} is not a run directory (no {CONFIG_FILE})")
    try:
        return run_dir, json.loads(cfg_file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise RunDirError(f"{cfg_file}: damaged ({e}); the run's checkpoints are intact") from e
