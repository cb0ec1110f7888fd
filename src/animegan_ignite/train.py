"""``animegan-train`` (``python -m animegan_ignite.train``): train a DCGAN on anime faces, or
on the built-in synthetic demo when no ``--data-dir`` is given.

Every flag and config-file value is checked before torch is imported, so ``--help`` and a
mistake answer at once; everything else that can fail on bad input (data folder, run directory,
checkpoint) is checked before the first file is written. Exit statuses: see errors.py.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

from .config import make_config
from .errors import run_command
from .rundir import RunDir, check_unlocked


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit status. With ``--nproc-per-node N`` it starts
    N processes; under torchrun each process runs this."""
    logging.basicConfig(level=logging.INFO, format="%(message)s", force=True)
    logging.raiseExceptions = False  # a full disk must not turn each log line into a traceback
    return run_command(lambda: train(argv))


def train(argv: list[str] | None) -> None:
    cfg = make_config(argv)
    if cfg.resume and int(os.environ.get("RANK", "0")) == 0:  # refused before any slow work
        check_unlocked(RunDir(Path(cfg.output_dir)))
    from .training.trainer import launch  # imported here: --help and flag errors answer before torch loads

    launch(cfg)


if __name__ == "__main__":
    sys.exit(main())
