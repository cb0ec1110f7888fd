"""Fault injection for the chaos check (``scripts/chaos.py``) and every test that stops a run:
with ``ANIMEGAN_FAULT`` set to ``PHASE:N:SIGNAL[:TARGET]`` (e.g. ``evaluation:3:SIGKILL``), the
training process sends SIGNAL (to itself, its process group or its parent, see :func:`parse`)
the N-th time it passes the point named PHASE, so a stop lands exactly there, whatever the
machine's speed, and can be replayed;
with ``ANIMEGAN_FAULT_LOG`` set to a file, each pass is appended to it as ``PHASE ITERATION``
(the training iterations finished by then: how the check learns where, and in which epoch, a
run can be stopped). Without them every point is a no-op. The points, in the order a run
passes them:

- ``start``: the run folder is made, nothing trained yet;
- ``iteration``: inside an iteration, after the step, before its handlers;
- ``checkpoint``: a checkpoint's temporary file is written, not yet renamed into place;
- ``evaluation``: between two batches of an epoch end's evaluation;
- ``record``: an epoch's record is in the history, its checkpoints not yet written;
- ``plots``: between two figures of a plot export;
- ``end``: the last epoch is done, the final snapshot and plots not yet drawn.
"""

from __future__ import annotations

import os
import signal
import time
from collections import Counter

from .signals import StopRequest

PHASES = ("start", "iteration", "checkpoint", "evaluation", "record", "plots", "end")


TARGETS = ("self", "group", "parent")


def parse(spec: str) -> tuple[str, int, int, str]:
    """``"PHASE:N:SIGNAL[:TARGET]"`` -> (phase, n, signal number, target): the signal goes to
    this process (``self``, the default), its whole process group (``group``: a terminal's
    Ctrl-C, pkill, a scheduler) or the process that started it (``parent``: the launcher of
    ``--nproc-per-node``)."""
    phase, n, name, *rest = spec.split(":")
    target = rest[0] if rest else "self"
    if phase not in PHASES or target not in TARGETS:
        raise ValueError(f"ANIMEGAN_FAULT {spec!r}: PHASE:N:SIGNAL[:TARGET], PHASE one of "
                         f"{PHASES}, TARGET one of {TARGETS}")
    return phase, int(n), int(getattr(signal, name)), target


_passed: Counter[str] = Counter()
_counting: list[str | None] = [None]  # the spec the counts are for
_iteration = [0]  # training iterations finished, as the last point that knew said


def point(phase: str, iteration: int | None = None) -> None:
    """Count a pass of ``phase`` (in the first training process, where several run); log it
    and send the configured signal on the configured pass. ``iteration``: the iterations
    finished, where the caller knows (the start, each iteration); the other points are logged
    with the last one given. The variables are read at each pass, not at import: a process
    forked from another sees its own."""
    spec, log = os.environ.get("ANIMEGAN_FAULT"), os.environ.get("ANIMEGAN_FAULT_LOG")
    if not (spec or log) or os.environ.get("RANK", "0") != "0":
        return
    if _counting[0] != (spec, log):  # another fault asked for (several runs in one process)
        _counting[0] = (spec, log)
        _passed.clear()
    _passed[phase] += 1
    if iteration is not None:
        _iteration[0] = iteration
    if log:
        with open(log, "a") as f:
            f.write(f"{phase} {_iteration[0]}\n")
    if spec and parse(spec)[:2] == (phase, _passed[phase]):
        _, _, signum, target = parse(spec)
        if target == "group":
            os.killpg(os.getpgid(0), signum)
        elif target == "parent":  # the launcher passes it on to every training process:
            os.kill(os.getppid(), signum)  # wait for this one's copy, so the stop lands here
            deadline = time.monotonic() + 30
            while not StopRequest.signum and time.monotonic() < deadline:
                time.sleep(0.01)
        else:
            os.kill(os.getpid(), signum)
