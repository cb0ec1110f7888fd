"""The fault-injection check: stopped anywhere and resumed, a run ends where an uninterrupted
run ends.

    python scripts/chaos.py                          # 30 stops, seed 1: every phase x signal
    python scripts/chaos.py --stops 7 --cover phases # a stop in each phase (CI's sample)
    python scripts/chaos.py --stops 60 --seed 7 --keep chaos/

A reference run (tiny networks on the synthetic faces, three epochs of 13 iterations, an
evaluation and plots at every epoch end, a checkpoint every 5 iterations, and every part that
carries state: the EMA of G, ADA's adaptive DiffAugment and the R1 penalty) is trained, then
resumed with ``--epochs 4`` to train one epoch more, so every phase of the first three epochs,
the run's end included, has training after it: a state restored wrongly at a stop shows in the
iterations that follow. It logs every point where a run can be stopped, with the iteration it
was passed at (animegan_ignite/faults.py: start-up, inside iterations, during checkpoint writes,
between evaluation batches, after an epoch's record, during plot exports, at the end). Then runs
are trained again the same way, each stopped one to three times by SIGINT, SIGTERM or SIGKILL
and resumed with ``--resume`` until both stages finish. Every finished run must equal the
reference: every state of every checkpoint file (G, D, EMA, both optimizers, the GradScalers,
ADA's controller, the trainer, the RNG states) bit for bit, the same checkpoint files, every
history record (each once; seconds and Inception counts aside), the final snapshot's pixels
and every plot.

A stop's kind is (phase, signal, epoch). Each run's first stop is drawn among the kinds not yet
exercised with training after them (the first three epochs), the others anywhere. The check
runs until ``--stops`` stops have landed, every phase x signal (``--cover phases``: every
phase) has landed in an epoch with training after it and every epoch has had a stop; it prints
each stop, the kinds that were exercised and those that were not (uncovered), and exits with
status 1 if any run differs.
"""

from __future__ import annotations

import argparse
import itertools
import math
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from animegan_ignite.rundir import RunDir
from animegan_ignite.runs.faults import PHASES
from animegan_ignite.runs.history import read_history

EPOCHS, EPOCH_LENGTH = 3, 13  # 120 faces - 10 held out = 110 = 13 batches of 8
SETTINGS = ["--synthetic-size", "120", "--epochs", str(EPOCHS), "--batch-size", "8", "--ngf", "8",
            "--ndf", "8", "--nz", "16", "--eval-size", "10", "--eval-every", "1",
            "--snapshot-every", "4", "--checkpoint-every", "5", "--ema-halflife-kimg", "0.5",
            "--ema-rampup", "0.05", "--augment-p", "auto", "--ada-kimg", "0.5", "--r1-gamma", "0.1",
            "--inception-weights", "pool3", "--num-workers", "0", "--no-progress"]
LONGER = ["--epochs", str(EPOCHS + 1)]  # the second stage: the finished run trained one epoch more
SIGNALS = ("SIGINT", "SIGTERM", "SIGKILL")
# What a record or a checkpoint says about the work done, not its result: seconds, and the
# images that went through Inception (the reference embedded the real faces; later runs read
# them cached).
WORK = ("train_seconds", "eval_seconds", "inception_images", "epoch_train_seconds")
Launcher = Callable[[list[str], dict[str, str]], int]
Kind = tuple[str, str, int]  # phase, signal, epoch


def subprocess_launcher(args: list[str], env: dict[str, str]) -> int:
    """``animegan-train ARGS`` as a fresh process; its exit status (-9 for SIGKILL)."""
    return subprocess.run([sys.executable, "-m", "animegan_ignite.train", *args],
                          env={**os.environ, **env}, capture_output=True, timeout=900).returncode


@dataclass(frozen=True)
class Point:
    """One pass of a fault point: its phase and the training iterations finished by then."""

    phase: str
    iteration: int

    @property
    def epoch(self) -> int:
        """The epoch it belongs to: an iteration's own; any other point's, the epoch of the last
        finished iteration (an epoch end's evaluation, record and plots belong to that epoch)."""
        return max(1, math.ceil(self.iteration / EPOCH_LENGTH))


def read_points(log: Path) -> list[Point]:
    if not log.is_file():
        return []
    return [Point(phase, int(it)) for phase, it in (line.split() for line in log.read_text().splitlines())]


def reference(root: Path, launch: Launcher) -> tuple[Path, list[Point]]:
    """The uninterrupted run, trained and then trained longer, and the points its first stage
    passed (the stops' candidates: each has training after it)."""
    run, log = root / "reference", root / "points.log"
    stages = [[*SETTINGS, "--output-dir", str(run), "--cache-dir", str(root / "cache")],
              ["--resume", str(run), *LONGER, "--no-progress"]]
    for i, args in enumerate(stages):
        status = launch(args, {"ANIMEGAN_FAULT_LOG": str(log)} if i == 0 else {})
        if status != 0:
            raise SystemExit(f"error: the reference run failed (stage {i + 1}, status {status})")
    return run, read_points(log)


def landed_at(log: Path, phase: str, n: int) -> Point | None:
    """Where a launch's stop ``phase`` pass ``n`` landed, or None if the launch never got there."""
    passes = [p for p in read_points(log) if p.phase == phase]
    return passes[n - 1] if len(passes) >= n else None


def stopped_run(run: Path, stops: list[tuple[str, int, str]], root: Path, launch: Launcher
                ) -> list[tuple[tuple[str, int, str], int, Point | None]]:
    """Train ``run`` as the reference was trained (both stages), stopping at each of ``stops``
    in turn, one per launch, and resuming after each; each stop with the exit status it caused
    and where it landed (None: its point never came)."""
    cache = ["--cache-dir", str(root / "cache")]
    stages = [([*SETTINGS, "--output-dir", str(run), *cache], ["--resume", str(run), "--no-progress"]),
              (["--resume", str(run), *LONGER, "--no-progress"], ["--resume", str(run), *LONGER,
                                                                  "--no-progress"])]
    outcomes, pending, stage = [], list(stops), 0
    args = stages[0][0]
    for launch_no in itertools.count(1):
        stop = pending.pop(0) if pending else None
        log = run.parent / f"{run.name}.launch{launch_no}.log"
        env = {"ANIMEGAN_FAULT_LOG": str(log)}
        if stop:
            env["ANIMEGAN_FAULT"] = ":".join(map(str, stop))
        status = launch(args, env)
        if stop:
            outcomes.append((stop, status, landed_at(log, stop[0], stop[1])))
        if status == 0:
            stage += 1
            if stage == len(stages):
                return outcomes
            args = stages[stage][0]
        elif status in (130, 143, -9):
            args = stages[stage][1]
        else:
            raise SystemExit(f"error: {run} launch {launch_no} ({stop}) ended with status {status}")
        if launch_no > len(stops) + 6:
            raise SystemExit(f"error: {run} did not finish after its stops (status {status})")
    raise AssertionError("unreachable")


def differences(run: Path, ref: Path) -> list[str]:
    """What differs between a finished run and the reference (empty: equal)."""
    found = []
    names = sorted(p.name for p in RunDir(ref).checkpoint_files())
    if sorted(p.name for p in RunDir(run).checkpoint_files()) != names:
        found.append("checkpoint files")
    for name in names:
        path = run / "checkpoints" / name
        if not path.is_file():
            continue
        a, b = (torch.load(r / "checkpoints" / name, weights_only=True) for r in (run, ref))
        found += [f"{key} in {name}" for key in sorted(set(a) | set(b))
                  if not _equal(a.get(key), b.get(key))]
    if _records(run) != _records(ref):
        found.append("history records")
    if (run / "snapshots" / "final.png").read_bytes() != (ref / "snapshots" / "final.png").read_bytes():
        found.append("final snapshot")
    plots = sorted(p.name for p in (ref / "plots").iterdir())
    if sorted(p.name for p in (run / "plots").iterdir()) != plots:
        found.append("plots")
    return found


def _records(run: Path) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in WORK} for r in read_history(run)]


def _equal(a, b) -> bool:
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, dict):
        return (isinstance(b, dict) and a.keys() == b.keys()
                and all(_equal(a[k], b[k]) for k in a if k not in WORK))
    if isinstance(a, (list, tuple)):
        return isinstance(b, (list, tuple)) and len(a) == len(b) and all(
            _equal(x, y) for x, y in zip(a, b, strict=True))
    return a == b


def all_kinds(points: list[Point]) -> list[Kind]:
    """Every (phase, signal, epoch) the reference's first stage offers, in the order of its life."""
    seen = dict.fromkeys((p.phase, p.epoch) for p in points)
    return [(phase, sig, epoch) for phase, epoch in seen for sig in SIGNALS]


def draw_stops(points: list[Point], first: Kind, rng: random.Random) -> list[tuple[str, int, str]]:
    """One to three stops: the first of kind ``first``, at one of its phase's passes in its epoch
    (the first launch trains from scratch, so its passes are the reference's); the others at
    any phase and pass, landing wherever the resumed launches' counts take them."""
    phase, sig, epoch = first
    passes = [n for n, p in enumerate((p for p in points if p.phase == phase), 1) if p.epoch == epoch]
    counts = Counter(p.phase for p in points)
    others = [(ph, rng.randint(1, counts[ph]), rng.choice(SIGNALS))
              for ph in rng.choices(list(counts), k=rng.randint(0, 2))]
    return [(phase, rng.choice(passes), sig), *others]


def check(stops_wanted: int, seed: int, root: Path, launch: Launcher = subprocess_launcher,
          cover: str = "pairs") -> bool:
    """Stop runs until ``stops_wanted`` stops have landed, every phase x signal (``cover``
    "phases": every phase) among them in an epoch with training after it, and every epoch
    stopped in; True when every run ended equal to the reference."""
    rng = random.Random(seed)
    print(f"chaos check, seed {seed}: the reference run", flush=True)
    ref, points = reference(root, launch)
    kinds = all_kinds(points)
    print(f"  its first {EPOCHS} epochs passed {len(points)} stop points: " + ", ".join(
        f"{phase} {n}" for phase, n in Counter(p.phase for p in points).items())
        + f"; then one epoch more ({' '.join(LONGER)})", flush=True)
    landed: Counter[Kind] = Counter()
    runs = equal = 0

    def pairs_left() -> set[tuple[str, ...]]:
        """What must still land with training after it: (phase, signal) pairs, or phases."""
        def key(kind: Kind) -> tuple[str, ...]:
            return kind[:2] if cover == "pairs" else kind[:1]
        return {key(k) for k in kinds} - {key(k) for k in landed if k[2] <= EPOCHS}

    def epochs_left() -> set[int]:
        return set(range(1, EPOCHS + 1)) - {e for *_, e in landed}

    while sum(landed.values()) < stops_wanted or pairs_left() or epochs_left():
        runs += 1
        run = root / f"run{runs}"
        first = next_kind(kinds, landed, pairs_left(), epochs_left(), rng)
        for (phase, n, sig), status, where in stopped_run(run, draw_stops(points, first, rng), root,
                                                          launch):
            if where is not None:  # a stop whose point never came covers nothing
                landed[phase, sig, where.epoch] += 1
            place = f"epoch {where.epoch}, iteration {where.iteration}" if where else "never reached"
            print(f"  run {runs}: {sig} at {phase} pass {n} ({place}) -> exit {status}", flush=True)
        diff = differences(run, ref)
        equal += not diff
        print(f"  run {runs}: {'equal to the reference' if not diff else 'DIFFERS: ' + ', '.join(diff)}",
              flush=True)
        if not diff:
            shutil.rmtree(run, ignore_errors=True)
    report(kinds, landed, runs, equal, seed)
    return equal == runs


def next_kind(kinds: list[Kind], landed: Counter, pairs_left: set, epochs_left: set,
              rng: random.Random) -> Kind:
    """A kind of stop not yet exercised: one that covers a phase x signal or an epoch still
    missing if there is one, else any kind not yet landed, else any kind."""
    wanted = [k for k in kinds if k[:2] in pairs_left or k[:1] in pairs_left or k[2] in epochs_left]
    fresh = [k for k in kinds if k not in landed]
    return rng.choice(wanted or fresh or kinds)


def report(kinds: list[Kind], landed: Counter, runs: int, equal: int, seed: int) -> None:
    """The stops that landed by phase, the kinds exercised and the kinds left uncovered."""
    by_phase = Counter()
    for (phase, _, _), n in landed.items():
        by_phase[phase] += n
    print(f"{sum(landed.values())} stops landed ("
          + ", ".join(f"{p} {by_phase[p]}" for p in PHASES if by_phase[p])
          + f"; {sum(n for (_, s, _), n in landed.items() if s == 'SIGKILL')} by SIGKILL) in "
          f"{runs} runs; {equal} of {runs} ended equal to the reference (seed {seed})")
    covered = [k for k in kinds if landed[k]]
    print(f"kinds (phase x signal x epoch, the first {EPOCHS} epochs: training after each): "
          f"{len(covered)} of {len(kinds)} exercised")
    uncovered = [k for k in kinds if not landed[k]]
    if uncovered:
        print("uncovered: " + ", ".join(f"{ph}/{sig}/epoch {e}" for ph, sig, e in uncovered))
    pairs = {(ph, sig) for ph, sig, _ in kinds} - {(ph, sig) for ph, sig, e in landed if e <= EPOCHS}
    print("every phase x signal landed with training after it" if not pairs else
          "phase x signal never landed with training after it: "
          + ", ".join(f"{ph}/{sig}" for ph, sig in sorted(pairs)))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--stops", type=int, default=30, help="stops that must land (default 30)")
    p.add_argument("--seed", type=int, default=1, help="draws the stops (default 1)")
    p.add_argument("--cover", choices=("pairs", "phases"), default="pairs",
                   help="what must land with training after it besides --stops: every phase x "
                   "signal (default), or every phase (a quick sample)")
    p.add_argument("--keep", type=Path, help="keep the runs in this folder (default: a temporary one)")
    args = p.parse_args()
    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=True)
        ok = check(args.stops, args.seed, args.keep, cover=args.cover)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            ok = check(args.stops, args.seed, Path(tmp), cover=args.cover)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.default_int_handler)
    main()
