"""Stopping a run cleanly: Ctrl-C (SIGINT) and SIGTERM (a preemption, ``kill``, ``docker stop``,
a scheduler's time limit) are *requests* that a training process acts on at the next point where
its state is whole (the end of an iteration, between evaluation batches, the end of an epoch),
so the checkpoint it then writes is exactly what an uninterrupted run had there. A second Ctrl-C
stops at once (the checkpoint is then the last finished iteration's); a second SIGTERM is
ignored while the checkpoint is written. A launching process passes SIGTERM on to its training
processes. No torch here.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from ..errors import Terminated


class StopRequest:
    """The signal a training process was asked to stop by (0: none yet); ``now``: the process
    is between iterations (waiting for data), where a stop can be acted on at once."""

    signum = 0
    now = False

    @classmethod
    def exception(cls, signum: int | None = None) -> KeyboardInterrupt:
        """What a stop raises: Terminated for SIGTERM, KeyboardInterrupt for Ctrl-C."""
        return Terminated() if (signum or cls.signum) == signal.SIGTERM else KeyboardInterrupt()


def _request(signum: int, frame: object) -> None:
    if signum == signal.SIGINT and StopRequest.signum == signal.SIGINT:
        raise KeyboardInterrupt  # a second Ctrl-C: at once
    if StopRequest.signum:
        return  # a repeated SIGTERM (a scheduler's reminder) waits for the checkpoint
    StopRequest.signum = signum
    # Signals sent to the whole process group end the DataLoader workers too, and torch's
    # SIGCHLD handler would then raise in the middle of the iteration or checkpoint: the run
    # is stopping, so their ends go unreported.
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    if StopRequest.now:  # waiting for the next batch, whose workers may be gone
        stop = StopRequest.exception(signum)
        stop.agreed, stop.phase, stop.where = False, "waiting for data", "waiting for the next batch"
        raise stop


@contextmanager
def stops_deferred() -> Iterator[None]:
    """SIGINT and SIGTERM become stop requests inside the block (see the module docstring);
    the previous handlers come back after it. Signals reach only the main thread."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    StopRequest.signum, StopRequest.now = 0, False
    previous = {s: signal.signal(s, _request) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


@contextmanager
def on_sigterm(handler: Callable[[int, object], None]) -> Iterator[None]:
    """``handler`` for SIGTERM inside the block, the previous one after it."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def forward_to_children(signum: int, frame: object) -> None:
    """In the process that started the training processes: pass SIGTERM on to them (they save
    and exit; this one waits for them) instead of dying and leaving them to be killed."""
    for child in multiprocessing.active_children():
        os.kill(child.pid, signal.SIGTERM)
