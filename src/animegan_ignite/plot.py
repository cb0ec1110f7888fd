"""``animegan-plot RUN_DIR [--out DIR]`` (``python -m animegan_ignite.plot``): redraw every
figure of a run from its saved files (figures.py); the trainer draws the same at epoch ends."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from .errors import OneLineErrorParser, UserError, run_command
from .paths import check_output_path
from .rundir import RunDir


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s", force=True)
    return run_command(lambda: plot(argv))


def plot(argv: list[str] | None) -> None:
    p = OneLineErrorParser(prog="animegan-plot",
                           description="Redraw every plot of a run from its saved files.")
    p.add_argument("run_dir", help="a run directory (holds config.json / history.jsonl)")
    p.add_argument("--out", help="output folder (default RUN_DIR/plots)")
    args = p.parse_args(argv)
    if not Path(args.run_dir).is_dir() or not RunDir(args.run_dir).is_run():
        raise UserError(f"{args.run_dir} is not a run directory (no config.json, history.jsonl "
                        "or checkpoints/)")
    check_output_path(args.out or RunDir(args.run_dir).plots, "--out", folder=True)
    from .evaluation.figures import export_plots  # imported here: --help and flag errors answer at once

    report = export_plots(args.run_dir, args.out)
    for path in report.written:
        print(f"wrote {path}")
    for what in report.missing:
        print(f"missing {what}")


if __name__ == "__main__":
    sys.exit(main())
