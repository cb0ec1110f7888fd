"""SIGTERM, which cloud preemptions, ``kill``, ``docker stop`` and job schedulers send: a
training process stops as on Ctrl-C (a checkpoint, then the plots) instead of the OS ending it
with up to an epoch unsaved; a launching process passes it on to its training processes."""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from .errors import Terminated


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
