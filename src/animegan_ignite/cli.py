"""What every command shares: the user-error base class, the one-line argparse errors, device
resolution, and the wrapper that turns a user error into one line on stderr and exit status 2.

Exit statuses of every command: 0 done, 2 user error (bad flag, path, data, checkpoint),
3 training diverged (a NaN or infinite loss), 130 interrupted (Ctrl-C).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

import torch

EXIT_USER_ERROR, EXIT_DIVERGED, EXIT_INTERRUPTED = 2, 3, 130


class UserError(ValueError):
    """Something the user gave cannot be used; the message says what and how to fix it.
    Every command prints it as one line and exits with status 2."""


class Diverged(RuntimeError):
    """Training produced a NaN or infinite loss (exit status 3)."""


class OneLineErrorParser(argparse.ArgumentParser):
    """argparse, but a bad flag is one line on stderr and exit status 2 (no usage dump)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_USER_ERROR, f"error: {message} (see --help)\n")


def resolve_device(name: str) -> torch.device:
    """``auto`` (a GPU when PyTorch sees one), ``cpu`` or ``cuda``."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name not in ("cpu", "cuda"):
        raise UserError(f"--device must be auto, cpu or cuda, got {name!r}")
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda: PyTorch sees no CUDA GPU here; use --device cpu or auto")
    return torch.device(name)


def print_error(error: BaseException) -> None:
    print(f"error: {error}", file=sys.stderr)


def run_command(body: Callable[[], int | None]) -> int:
    """Run a command's body; a :class:`UserError` becomes one line and status 2."""
    try:
        return body() or 0
    except UserError as e:
        print_error(e)
        return EXIT_USER_ERROR
