"""``animegan-export RUN DIR``: a trained run as a model others can use, a Hugging Face-style
folder (upload it with ``huggingface-cli upload OWNER/NAME DIR``):

- ``model.safetensors``: G, the EMA of G and D (for fine-tuning), keyed ``netG.*``, ``ema.*``,
  ``netD.*``;
- ``config.json``: the architecture record and checkpoint format (architecture.py), the
  iteration, where the weights came from (run, checkpoint, SHA-256) and the run's settings;
- ``README.md``: a model card (the Hub's YAML header; data, length, final scores with their
  backbone, a sample grid, the commands to generate from it and to fine-tune it);
- ``sample.png``: 64 faces of the run's fixed noise.

``animegan-generate``, ``-serve``, ``-evaluate`` and ``animegan-train --init-from`` read the
folder as they read a checkpoint (checkpoints.load_checkpoint).
"""

from __future__ import annotations

import logging
import sys

from .errors import OneLineErrorParser, UserError, run_command
from .paths import check_output_path


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s", force=True)
    return run_command(lambda: export_command(argv))


def export_command(argv: list[str] | None) -> None:
    p = OneLineErrorParser(prog="animegan-export", description="Write a trained run as a "
                           "Hugging Face-style model folder (safetensors weights, model card).")
    p.add_argument("run", help="a run folder (its latest checkpoint) or a checkpoint file")
    p.add_argument("out", help="the model folder to write (new, empty, or an earlier export)")
    args = p.parse_args(argv)
    out = check_output_path(args.out, "DIR", folder=True)
    if out.is_dir() and any(out.iterdir()) and not (out / "model.safetensors").is_file():
        raise UserError(f"{out}: holds other files; give a new or empty folder (or an earlier "
                        "export, which is replaced)")
    from .use.model_folder import export  # imported here: --help and flag errors answer at once

    for path in export(args.run, out):
        print(f"wrote {path}")



if __name__ == "__main__":
    sys.exit(main())
