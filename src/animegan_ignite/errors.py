"""What can go wrong, and the one map from an exception to a command's exit status.

Every command (train, evaluate, generate, serve, plot) runs its body through
:func:`run_command`, so a mistake is one ``error:`` line on stderr and one status a script can
test, never a traceback:

====== =====================================================================================
status meaning
====== =====================================================================================
0      done
2      user error: a bad flag, config value, path, data set or checkpoint (:class:`UserError`)
3      training diverged: a NaN or infinite loss (:class:`Diverged`)
4      a file could not be written: disk full, quota, read-only (:func:`is_write_failure`)
130    interrupted (Ctrl-C)
143    stopped by SIGTERM (:class:`Terminated`)
1      a bug: anything else, with its traceback
====== =====================================================================================

No torch here: ``--help`` and flag errors must answer before torch is imported.
"""

from __future__ import annotations

import argparse
import errno
import shutil
import signal
import sys
from collections.abc import Callable
from pathlib import Path

EXIT_USER_ERROR, EXIT_DIVERGED, EXIT_WRITE_FAILED, EXIT_INTERRUPTED = 2, 3, 4, 130
EXIT_TERMINATED = 128 + signal.SIGTERM  # 143, what a shell reports for a process SIGTERM ended


class UserError(ValueError):
    """Something the user gave cannot be used; the message says what and how to fix it."""


class Diverged(RuntimeError):
    """Training produced a NaN or infinite loss."""


class Terminated(KeyboardInterrupt):
    """SIGTERM (a cloud preemption, ``kill``, ``docker stop``, a scheduler's time limit). A
    KeyboardInterrupt, so training stops exactly as on Ctrl-C: a checkpoint, then the plots."""


WRITE_ERRORS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EFBIG, errno.EIO}


def is_write_failure(e: BaseException) -> bool:
    """A file could not be written for a reason outside the program (disk full, read-only)."""
    return isinstance(e, OSError) and e.errno in WRITE_ERRORS and e.filename is not None


def write_failure_message(e: OSError, what_is_kept: str) -> str:
    free = free_bytes(Path(e.filename).parent)
    return f"could not write {e.filename}: {e.strerror} ({format_bytes(free)} free on its file " \
           f"system). {what_is_kept}"


def free_bytes(path: str | Path) -> int:
    """Free bytes on the file system of ``path`` (or of its nearest existing parent)."""
    path = Path(path).absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return shutil.disk_usage(path).free


def format_bytes(n: float) -> str:
    for unit in ("bytes", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"


def exit_status(e: BaseException, kept: str = "Files written before it are complete."
                ) -> tuple[int, str | None]:
    """The exit status for ``e`` and the ``error:`` line to print (None: nothing to print, or
    a bug, whose status is 1 and whose traceback must be shown)."""
    if isinstance(e, SystemExit):  # a status already chosen (argparse, a spawned process)
        return (e.code if isinstance(e.code, int) else (0 if e.code is None else 1)), None
    if isinstance(getattr(e, "exit_code", None), int):  # torch's ProcessExitedException
        return e.exit_code, None
    if isinstance(e, UserError):
        return EXIT_USER_ERROR, str(e)
    if isinstance(e, Diverged):
        return EXIT_DIVERGED, str(e)
    if is_write_failure(e):
        return EXIT_WRITE_FAILED, write_failure_message(e, kept)
    if isinstance(e, Terminated):
        return EXIT_TERMINATED, None
    if isinstance(e, KeyboardInterrupt):
        return EXIT_INTERRUPTED, None
    return 1, None


def run_command(body: Callable[[], object], kept: str = "Files written before it are complete."
                ) -> int:
    """Run a command's body and return its exit status (see the module's table)."""
    try:
        body()
        return 0
    except BaseException as e:
        status, message = exit_status(e, kept)
        if status == 1:
            raise
        if message:
            print_error(message)
        return status


def print_error(message: object) -> None:
    print(f"error: {message}", file=sys.stderr)


class OneLineErrorParser(argparse.ArgumentParser):
    """argparse, but a bad flag is one ``error:`` line and status 2 (no usage dump)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_USER_ERROR, f"error: {message} (see --help)\n")
