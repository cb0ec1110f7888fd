"""The run's machine-readable history: ``history.jsonl``, one JSON object per line.

Three kinds of record (docs/runs.md has every field):

- ``{"kind": "iteration", "iteration": i, "epoch": e, "loss_d": ..., "loss_g": ..., "d_x": ...,
  "d_g_z1": ..., "d_g_z2": ...}`` after every training iteration;
- ``{"kind": "epoch", "epoch": e, "iteration": i, "train_seconds": ..., ...}`` after every epoch,
  with the evaluation's metrics once they are computed;
- ``{"kind": "end", "iteration": i, "epoch": e}`` once the run is complete.

Appending one line at a time keeps the file valid after a crash: at worst the last line is cut
short, and :func:`read_history` skips it.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..rundir import RunDir, write_text_atomic


def read_history(run_dir: str | Path) -> list[dict[str, Any]]:
    """All complete records of a run's history, in order (an absent file gives [])."""
    path = RunDir(run_dir).history
    if not path.exists():
        return []
    records = []
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut short by a crash
        if isinstance(record, dict):  # anything else was not written by a run
            records.append(record)
    return records


# What a record must hold to be drawn (an older run's epoch record may lack the scores); a
# required number that is NaN or infinite is left out like any other, so figures draw each
# series from the records that hold it.
REQUIRED = {"iteration": ("iteration", "epoch", "loss_d", "loss_g", "d_x", "d_g_z1", "d_g_z2"),
            "epoch": ("epoch", "iteration")}
PLACES = ("iteration", "epoch")  # where a record is: without them finite it cannot be placed


@dataclass
class Drawable:
    """What the figures can use of a history: its records with every number finite, each
    record they cannot use (a damaged or hand-edited history: a record without its numbers) by
    its place, and the fields whose NaN or infinite values were left out (a diverged run)."""

    records: list[dict[str, Any]]
    skipped: list[str]
    not_finite: dict[str, int]


def drawable(records: list[dict[str, Any]]) -> Drawable:
    kept, skipped, not_finite = [], [], Counter()
    for i, r in enumerate(records, 1):
        need = REQUIRED.get(r.get("kind"), ())
        missing = [k for k in need if not _is_number(r.get(k))
                   or (k in PLACES and not math.isfinite(r[k]))]
        if missing:
            skipped.append(f"record {i} ({r.get('kind')}, no {', '.join(missing)})")
            continue
        bad = [k for k, v in r.items() if _is_number(v) and not math.isfinite(v)]
        not_finite.update(bad)
        kept.append({k: v for k, v in r.items() if k not in bad})
    return Drawable(kept, skipped, dict(not_finite))


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def split_history(records: list[dict[str, Any]]) -> tuple[list[dict], list[dict]]:
    """(iteration records, epoch records)."""
    return ([r for r in records if r.get("kind") == "iteration"],
            [r for r in records if r.get("kind") == "epoch"])



def has_ended(records: list[dict[str, Any]], iteration: int | None = None) -> bool:
    """The run is finished: its ``end`` record (the whole schedule trained, then the last
    evaluation, checkpoints, snapshot and plots written) is there, at ``iteration`` if given.
    The trainer, ablate.py and the studies mean this by a finished run."""
    return any(r.get("kind") == "end" and iteration in (None, r.get("iteration"))
               for r in records)


def is_evaluated(record: dict[str, Any]) -> bool:
    """An epoch record that holds an evaluation, whatever its scores are (a diverged run's may
    be NaN, any may be unavailable): every evaluation writes its ``eval_seconds``."""
    return record.get("kind", "epoch") == "epoch" and "eval_seconds" in record

class History:
    """Appends records to ``RUN_DIR/history.jsonl``. Only the writing process creates one."""

    def __init__(self, run_dir: str | Path) -> None:
        self.run_dir = Path(run_dir)
        self.path = RunDir(run_dir).history
        self._file = None

    def records(self) -> list[dict[str, Any]]:
        return read_history(self.run_dir)

    def ended_at(self, iteration: int) -> bool:
        """The run ended (final snapshot and plots drawn) at ``iteration``."""
        return has_ended(self.records(), iteration)

    def epochs_recorded(self) -> set[int]:
        return {r["epoch"] for r in self.records() if r.get("kind") == "epoch"}

    def epoch_losses(self, epoch: int) -> dict[str, float]:
        """Mean loss_d and loss_g over the epoch's iteration records (the whole epoch, also
        when it was resumed partway)."""
        iters = [r for r in self.records() if r.get("kind") == "iteration" and r["epoch"] == epoch]
        return {k: sum(r[k] for r in iters) / max(len(iters), 1) for k in ("loss_d", "loss_g")}

    def evaluated(self) -> list[dict[str, Any]]:
        """The records of the evaluated epochs."""
        return [r for r in self.records() if is_evaluated(r)]

    def truncate_after(self, iteration: int) -> None:
        """Keep only records up to ``iteration``: what a resumed run will redo is dropped, so
        the history stays continuous; an ``end`` record too (a resumed run has not ended).
        Rewritten atomically."""
        kept = [r for r in self.records()
                if r.get("iteration", 0) <= iteration and r.get("kind") != "end"]
        write_text_atomic(self.path, "".join(json.dumps(r) + "\n" for r in kept))

    def append(self, record: dict[str, Any]) -> None:
        """One line, flushed. A failed write (a full disk) is cut back off, so the file keeps
        only whole records and a later append does not continue a broken line."""
        if self._file is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = self.path.open("ab", buffering=0)  # nothing left in a buffer on failure
        end = self._file.tell()
        data = (json.dumps(record) + "\n").encode()
        try:
            while data:
                data = data[self._file.write(data):]
        except OSError as e:
            self._file.close()
            self._file = None
            with open(self.path, "r+b") as f:
                f.truncate(end)
            raise OSError(e.errno, e.strerror, str(self.path)) from e

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
