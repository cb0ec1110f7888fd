"""A run stopped by SIGINT or SIGKILL at each fault point (faults.PHASES) of a non-final epoch (and
by SIGTERM at one: see CASES), then resumed, ends with every state of every checkpoint file and
every history record of the uninterrupted run, and the epochs trained after the stop are where a
difference would show. The stop at the run's end has training after it too: both runs are then
trained one epoch more (``--resume RUN --epochs 4``). The runs are processes of their own (forked
from the tests' warm parent), each stopped by its own signal at an exact point (faults.py); the
features are the tests' tiny stand-in for Inception, which is not what is tested here."""

from __future__ import annotations

import shutil
import sys

import pytest
from helpers import REPO, run_cli

from animegan_ignite.runs.faults import PHASES
from animegan_ignite.runs.history import read_history

sys.path.insert(0, str(REPO / "scripts"))
try:
    from chaos import differences, landed_at, read_points
finally:
    sys.path.pop(0)

# The reproduction of the exact-resume bug of an interrupted epoch end: 220 training faces in
# batches of 16, 13 iterations an epoch; an evaluation, a record and plots at every epoch end.
ARGS = ["--synthetic-size", "240", "--epochs", "3", "--batch-size", "16", "--ngf", "8", "--ndf",
        "8", "--nz", "16", "--eval-size", "20", "--eval-every", "1", "--snapshot-every", "4",
        "--checkpoint-every", "5", "--ema-halflife-kimg", "0.5", "--inception-weights", "pool3",
        "--num-workers", "0", "--no-progress"]
LONGER = ["--epochs", "4"]
STATUS = {"SIGINT": 130, "SIGTERM": 143, "SIGKILL": -9}
TINY_FEATURES = {"ANIMEGAN_TEST_FEATURES": "tiny"}


def _train(*args, env=None):
    return run_cli("train", *map(str, args), env={**TINY_FEATURES, **(env or {})}, timeout=300)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The uninterrupted run (``ref``), the same trained one epoch more (``longer``), the fault
    points the run passed, and the feature cache the stopped runs share."""
    root = tmp_path_factory.mktemp("stops")
    cache, log = root / "cache", root / "points.log"
    r = _train(*ARGS, "--output-dir", root / "ref", "--cache-dir", cache,
               env={"ANIMEGAN_FAULT_LOG": str(log)})
    assert r.returncode == 0, r.stderr[-2000:]
    shutil.copytree(root / "ref", root / "longer")
    r = _train("--resume", root / "longer", *LONGER, "--no-progress", "--cache-dir", cache)
    assert r.returncode == 0, r.stderr[-2000:]
    return root, read_points(log)


def _pass_in_epoch_2(points, phase: str) -> int:
    """The pass of ``phase`` to stop at: its last in epoch 2 (an iteration: epoch 2's middle);
    the start and the end, which a run passes once, at their only pass."""
    passes = [p for p in points if p.phase == phase]
    if phase in ("start", "end"):
        assert len(passes) == 1
        return 1
    in_2 = [n for n, p in enumerate(passes, 1) if 13 < p.iteration <= 26]
    return in_2[len(in_2) // 2] if phase == "iteration" else in_2[-1]


# SIGTERM raises Terminated, a KeyboardInterrupt, from the same handler as SIGINT (runs/signals.py):
# every phase after it is SIGINT's path, so it is stopped once, where a stop is cut shortest
# (its own exit status and line: tests/test_train_cli.py's Ctrl-C-or-SIGTERM test).
CASES = [(phase, signal) for phase in PHASES for signal in ("SIGINT", "SIGKILL")]
CASES.insert(CASES.index(("evaluation", "SIGKILL")), ("evaluation", "SIGTERM"))


@pytest.mark.slow
@pytest.mark.parametrize("phase, signal", CASES)
def test_stopped_at_a_point_of_a_non_final_epoch_the_resumed_run_ends_as_the_uninterrupted_one(
        reference, tmp_path, phase, signal):
    root, points = reference
    cache, run, log = root / "cache", tmp_path / "run", tmp_path / "faults.log"
    n = _pass_in_epoch_2(points, phase)
    stopped = _train(*ARGS, "--output-dir", run, "--cache-dir", cache,
                     env={"ANIMEGAN_FAULT": f"{phase}:{n}:{signal}", "ANIMEGAN_FAULT_LOG": str(log)})
    where = landed_at(log, phase, n)
    assert where is not None and where.iteration == [p for p in points if p.phase == phase][n - 1].iteration
    # A requested stop at the end has nothing left to stop: the run finishes its end.
    assert stopped.returncode == (0 if phase == "end" and signal != "SIGKILL" else STATUS[signal]), \
        stopped.stderr[-2000:]
    cut_short = phase == "evaluation"  # epoch 2's end, before its record
    if cut_short:
        assert 2 not in [r["epoch"] for r in read_history(run) if r["kind"] == "epoch"]
        if signal != "SIGKILL":  # acted on between the evaluation's batches
            assert "stopped at: evaluation, 1 batches done" in stopped.stderr

    if stopped.returncode:
        resumed = _train("--resume", run, "--no-progress", "--cache-dir", cache)
        assert resumed.returncode == 0, resumed.stderr[-2000:]
        if cut_short and signal != "SIGKILL":  # resumed at epoch 2's end: it finishes it first
            assert "finishing epoch 2's end (evaluation and record)" in resumed.stderr
    ref = root / "ref"
    if phase == "end":  # what follows the end: one epoch more, as the reference was trained
        resumed = _train("--resume", run, *LONGER, "--no-progress", "--cache-dir", cache)
        assert resumed.returncode == 0, resumed.stderr[-2000:]
        ref = root / "longer"
    assert differences(run, ref) == []
