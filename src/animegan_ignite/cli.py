"""What every command shares: the user-error base class, the one-line argparse errors, device
resolution, and the wrapper that turns a user error into one line on stderr and exit status 2.

Exit statuses of every command: 0 done, 2 user error (bad flag, path, data, checkpoint),
3 training diverged (a NaN or infinite loss), 4 a file could not be written (a full disk, a
read-only file system), 130 interrupted (Ctrl-C), 143 stopped by SIGTERM.
"""

from __future__ import annotations

import argparse
import errno
import multiprocessing
import os
import shutil
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import torch

EXIT_USER_ERROR, EXIT_DIVERGED, EXIT_WRITE_FAILED, EXIT_INTERRUPTED = 2, 3, 4, 130
EXIT_TERMINATED = 128 + signal.SIGTERM  # 143, what a shell reports for a process SIGTERM ended


class UserError(ValueError):
    """Something the user gave cannot be used; the message says what and how to fix it.
    Every command prints it as one line and exits with status 2."""


class Diverged(RuntimeError):
    """Training produced a NaN or infinite loss (exit status 3)."""


class Terminated(KeyboardInterrupt):
    """SIGTERM: what a cloud preemption, ``kill``, ``docker stop`` or a job scheduler's time
    limit sends. A KeyboardInterrupt, so it stops training exactly as Ctrl-C does (a checkpoint
    at the last finished iteration, then the plots), instead of the OS ending the process with
    up to an epoch unsaved."""


@contextmanager
def on_sigterm(handler: Callable[[int, object], None]) -> Iterator[None]:
    """``handler`` for SIGTERM inside the block, the previous one after it (a Python that called
    ``main()`` gets its own back). Signals reach only the main thread: elsewhere, nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def raise_terminated(signum: int, frame: object) -> None:
    """In a training process: SIGTERM raises :class:`Terminated`, once; a repeated SIGTERM
    (a scheduler's reminder, a parent stopping its other processes) waits for the checkpoint.
    A SIGTERM sent to the whole process group (``pkill``, systemd, a job scheduler) also ends
    the DataLoader workers, and torch's SIGCHLD handler would then raise in the middle of
    writing the checkpoint: the run is stopping, so their ends go unreported."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    raise Terminated


def forward_to_children(signum: int, frame: object) -> None:
    """In the process that started the training processes: pass SIGTERM on to them (they save
    and exit; this one waits for them) instead of dying and leaving them to be killed."""
    for child in multiprocessing.active_children():
        os.kill(child.pid, signal.SIGTERM)


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


# The image formats the project reads (data sets) and writes (grids): PIL handles them all.
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp")


def check_output_path(path: str | Path, flag: str, folder: bool = False,
                      extensions: tuple[str, ...] | None = None) -> Path:
    """A place a command may write: not under a file, in a writable folder, with a file name
    that says its format. Raises :class:`UserError` before anything is written."""
    path = Path(path)
    if extensions and path.suffix.lower() not in extensions:
        raise UserError(f"{flag} {path}: the file name must end in {' or '.join(extensions)}, "
                        "which says the format to write")
    if path.exists() and path.is_dir() != folder:
        raise UserError(f"{flag} {path}: is a {'file' if folder else 'folder'}, not a "
                        f"{'folder' if folder else 'file'}")
    for place in ([path] if folder else []) + list(path.absolute().parents):
        if place.exists():
            if not place.is_dir():
                raise UserError(f"{flag} {path}: {place} is a file, so nothing can be written "
                                "below it; choose another path")
            if not os.access(place, os.W_OK | os.X_OK):
                raise UserError(f"{flag} {path}: {place} is not writable (read-only or no "
                                "permission); choose another path")
            break
    return path


WRITE_ERRORS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EFBIG, errno.EIO}


def is_write_failure(e: BaseException) -> bool:
    """A file could not be written for a reason outside the program (disk full, read-only)."""
    return isinstance(e, OSError) and e.errno in WRITE_ERRORS and e.filename is not None


def write_failure_message(e: OSError, what_is_kept: str) -> str:
    free = free_bytes(Path(e.filename).parent)
    return (f"could not write {e.filename}: {e.strerror} ({_size(free)} free on its file system). "
            f"{what_is_kept}")


def free_bytes(path: str | Path) -> int:
    """Free bytes on the file system of ``path`` (or of its nearest existing parent)."""
    path = Path(path).absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return shutil.disk_usage(path).free


def _size(n: int) -> str:
    for unit in ("bytes", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"


def print_error(error: BaseException) -> None:
    print(f"error: {error}", file=sys.stderr)


def run_command(body: Callable[[], int | None]) -> int:
    """Run a command's body; a :class:`UserError` becomes one line and status 2, a file that
    could not be written one line and status 4, Ctrl-C status 130."""
    try:
        return body() or 0
    except UserError as e:
        print_error(e)
        return EXIT_USER_ERROR
    except OSError as e:
        if not is_write_failure(e):
            raise
        print_error(write_failure_message(e, "Files written before it are complete."))
        return EXIT_WRITE_FAILED
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
