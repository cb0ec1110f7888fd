"""What a run saved, read back: the one reader of a run's ``config.json`` and the upgrade of
settings written by earlier versions.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from ..rundir import CHECKPOINT_DIR, RunDir, RunDirError
from .choices import RENAMED_RECIPES

logger = logging.getLogger(__name__)


def upgrade(values: dict[Any, Any]) -> dict[Any, Any]:
    """Settings written by earlier versions: renamed recipes, and the removed ``image_size``
    (always 64) and ``tensorboard`` (now ``--logger tensorboard``)."""
    values = dict(values)
    if values.get("recipe") in RENAMED_RECIPES:
        new = RENAMED_RECIPES[values["recipe"]]
        logger.warning("note: recipe %r is now called %r", values["recipe"], new)
        values["recipe"] = new
    values.pop("image_size", None)
    values.pop("init_source", None)  # where --init-from's weights came from: a record
    if values.pop("tensorboard", False):
        logger.warning("note: setting 'tensorboard' is now 'logger: tensorboard'; used as such")
        values["logger"] = ",".join(filter(None, [values.get("logger"), "tensorboard"]))
    return values


def read_run_config(resume: str | Path) -> tuple[Path, dict[str, Any]]:
    """(run directory, its saved settings, upgraded) for ``--resume RUN_DIR`` or a checkpoint
    file: the one reader of a run's ``config.json`` (:meth:`Config.from_run` builds on it)."""
    path = Path(resume)
    if not path.exists():
        raise RunDirError(f"--resume {path}: no such run directory or checkpoint file")
    run = RunDir(path) if path.is_dir() else RunDir.of_checkpoint(path)
    if path.is_file() and path.parent.name != CHECKPOINT_DIR:
        raise RunDirError(f"--resume {path}: not a checkpoint of a run (they are "
                          "RUN/checkpoints/checkpoint_<iteration>.pt); give a run folder or one of "
                          "those files")
    if not run.config.is_file():
        raise RunDirError(f"--resume {path}: {run.root} is not a run directory (no "
                          f"{run.config.name}); give the folder a training run wrote, or start a "
                          "new run with --output-dir")
    try:
        values = json.loads(run.config.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise RunDirError(f"{run.config}: damaged ({e}); the run's checkpoints are intact") from e
    return run.root, upgrade(values)
