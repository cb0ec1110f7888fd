"""The fault-injection check: stopped anywhere and resumed, a run ends where an uninterrupted
run ends.

    python scripts/chaos.py                    # 30 stops, seed 1
    python scripts/chaos.py --stops 60 --seed 7 --keep chaos/

A reference run (tiny networks on the synthetic faces, two epochs of 13 iterations, an
evaluation and plots at every epoch end, a checkpoint every 5 iterations, EMA and DiffAugment)
logs every point where a run can be stopped (animegan_ignite/faults.py: start-up, inside
iterations, during checkpoint writes, between evaluation batches, after an epoch's record,
during plot exports, at the end). Then runs are trained again from scratch, each stopped one to
three times by SIGINT, SIGTERM or SIGKILL at points drawn from that log, and resumed with
``--resume`` until they finish. Every finished run must equal the reference: G, D, EMA, both
optimizers and the GradScalers in the last checkpoint bit for bit, the same checkpoint files,
the same history records (each once; seconds and Inception counts aside), the final snapshot's
pixels and every plot.

It prints each stop (phase, pass, signal, the exit status it caused) and a summary; the seed
replays the same stops. Exit status 1 if any run differs.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import torch

from animegan_ignite.history import read_history

SETTINGS = ["--synthetic-size", "120", "--epochs", "2", "--batch-size", "8", "--ngf", "8",
            "--ndf", "8", "--nz", "16", "--eval-size", "10", "--eval-every", "1",
            "--snapshot-every", "4", "--checkpoint-every", "5", "--ema-halflife-kimg", "0.5",
            "--ema-rampup", "0.05", "--inception-weights", "pool3", "--num-workers", "0",
            "--no-progress"]
SIGNALS = ("SIGINT", "SIGTERM", "SIGKILL")
STATES = ("netG", "netD", "ema", "optG", "optD", "scaler_d", "scaler_g", "trainer")
# What an epoch record says about the work done, not its result: seconds, and the images that
# went through Inception (the reference embedded the real faces; later runs read them cached).
WORK = ("train_seconds", "eval_seconds", "inception_images")
Launcher = Callable[[list[str], dict[str, str]], int]


def subprocess_launcher(args: list[str], env: dict[str, str]) -> int:
    """``animegan-train ARGS`` as a fresh process; its exit status (-9 for SIGKILL)."""
    return subprocess.run([sys.executable, "-m", "animegan_ignite.train", *args],
                          env={**os.environ, **env}, capture_output=True, timeout=900).returncode


def reference(root: Path, launch: Launcher) -> tuple[Path, list[str]]:
    """The uninterrupted run and the log of every stop point it passed."""
    run, log = root / "reference", root / "points.log"
    status = launch([*SETTINGS, "--output-dir", str(run), "--cache-dir", str(root / "cache")],
                    {"ANIMEGAN_FAULT_LOG": str(log)})
    if status != 0:
        raise SystemExit(f"error: the reference run failed (status {status})")
    return run, log.read_text().split()


def stopped_run(run: Path, stops: list[tuple[str, int, str]], root: Path, launch: Launcher
                ) -> list[tuple[tuple[str, int, str], int]]:
    """Train ``run`` from scratch, stopping at each of ``stops`` in turn and resuming after each;
    the statuses the stops caused (0: the run finished before the point came)."""
    outcomes = []
    args = [*SETTINGS, "--output-dir", str(run), "--cache-dir", str(root / "cache")]
    for stop in stops:
        status = launch(args, {"ANIMEGAN_FAULT": ":".join(map(str, stop))})
        outcomes.append((stop, status))
        if status == 0:
            return outcomes
        if status not in (130, 143, -9):
            raise SystemExit(f"error: stop {stop} ended the run with status {status}")
        args = ["--resume", str(run), "--no-progress"]
    for _ in range(3):  # the last stop may leave a run stopped before its end: finish it
        status = launch(args, {})
        if status == 0:
            return outcomes
    raise SystemExit(f"error: {run} did not finish after its stops (status {status})")


def differences(run: Path, ref: Path) -> list[str]:
    """What differs between a finished run and the reference (empty: equal)."""
    found = []
    names = sorted(p.name for p in (ref / "checkpoints").glob("*.pt"))
    if sorted(p.name for p in (run / "checkpoints").glob("*.pt")) != names:
        found.append("checkpoint files")
    last = max((n for n in names if n.startswith("checkpoint_")), key=lambda n: int(n[11:-3]))
    a, b = (torch.load(r / "checkpoints" / last, weights_only=True) for r in (run, ref))
    for key in STATES:
        if not _equal(a.get(key), b.get(key)):
            found.append(f"{key} in {last}")
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
        return isinstance(b, dict) and a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return isinstance(b, (list, tuple)) and len(a) == len(b) and all(
            _equal(x, y) for x, y in zip(a, b, strict=True))
    return a == b


def draw_stops(points: list[str], first_phase: str, rng: random.Random
               ) -> list[tuple[str, int, str]]:
    """One to three stops: the first in ``first_phase`` (so every phase gets its turn), the
    others anywhere; each at a pass drawn uniformly from the reference's passes of its phase,
    by a random signal (SIGKILL at the end: a requested stop there lets the run finish)."""
    counts = Counter(points)

    def stop(phase: str) -> tuple[str, int, str]:
        sig = "SIGKILL" if phase == "end" else rng.choice(SIGNALS)
        return phase, rng.randint(1, counts[phase]), sig

    return [stop(first_phase)] + [stop(rng.choice(list(counts))) for _ in range(rng.randint(0, 2))]


def check(stops_wanted: int, seed: int, root: Path, launch: Launcher = subprocess_launcher
          ) -> bool:
    """Stop runs until ``stops_wanted`` stops have landed, in every phase (a SIGKILL during a
    checkpoint write among them); True when every run ended equal to the reference."""
    rng = random.Random(seed)
    print(f"chaos check, seed {seed}: the reference run", flush=True)
    ref, points = reference(root, launch)
    phases = list(Counter(points))
    print(f"  it passed {len(points)} stop points: " + ", ".join(
        f"{phase} {n}" for phase, n in Counter(points).items()), flush=True)
    landed: Counter[tuple[str, str]] = Counter()
    runs = equal = 0
    while (sum(landed.values()) < stops_wanted or {p for p, _ in landed} != set(phases)
           or not landed["checkpoint", "SIGKILL"]):
        runs += 1
        run = root / f"run{runs}"
        first = phases[(runs - 1) % len(phases)]
        stops = draw_stops(points, first, rng)
        if first == "checkpoint" and not landed["checkpoint", "SIGKILL"]:
            stops[0] = (first, stops[0][1], "SIGKILL")
        for (phase, n, sig), status in stopped_run(run, stops, root, launch):
            if status != 0:  # a stop whose point never came does not cover its phase
                landed[phase, sig] += 1
            print(f"  run {runs}: {sig} at {phase} pass {n} -> exit {status}", flush=True)
        diff = differences(run, ref)
        equal += not diff
        print(f"  run {runs}: {'equal to the reference' if not diff else 'DIFFERS: ' + ', '.join(diff)}",
              flush=True)
        if not diff:
            shutil.rmtree(run, ignore_errors=True)
    by_phase = Counter()
    for (phase, _), n in landed.items():
        by_phase[phase] += n
    print(f"{sum(landed.values())} stops landed ({', '.join(f'{p} {n}' for p, n in by_phase.items())}"
          f"; {sum(n for (_, s), n in landed.items() if s == 'SIGKILL')} by SIGKILL) in {runs} "
          f"runs; {equal} of {runs} ended equal to the reference (seed {seed})")
    return equal == runs


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--stops", type=int, default=30, help="stops that must land (default 30)")
    p.add_argument("--seed", type=int, default=1, help="draws the stops (default 1)")
    p.add_argument("--keep", type=Path, help="keep the runs in this folder (default: a temporary one)")
    args = p.parse_args()
    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=True)
        ok = check(args.stops, args.seed, args.keep)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            ok = check(args.stops, args.seed, Path(tmp))
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.default_int_handler)
    main()
