"""The fault-injection check (scripts/chaos.py) in the slow tier, as a seeded sample: a stop in
each of the seven phases of a run's life, each with training after it (the check's runs train
three epochs, then one more), by SIGINT, SIGTERM or SIGKILL, every run resumed to the end and
equal to an uninterrupted one in every state and record. The full 30-stop check, every phase x
signal, is `python scripts/chaos.py` (docs/runs.md). The runs are processes of their own, forked
from the warm parent of helpers.run_cli, on the tests' tiny features (Inception is not what is
tested)."""

import sys

import pytest
from helpers import REPO, run_cli

from animegan_ignite.runs.faults import PHASES


@pytest.mark.slow
def test_stopped_in_every_phase_and_resumed_every_run_ends_equal_to_the_uninterrupted_one(
        tmp_path, capsys):
    sys.path.insert(0, str(REPO / "scripts"))
    try:
        import chaos
    finally:
        sys.path.pop(0)

    def launch(args, env):
        return run_cli("train", *args, timeout=600,
                       env={**env, "ANIMEGAN_TEST_FEATURES": "tiny"}).returncode

    ok = chaos.check(len(PHASES), seed=1, root=tmp_path, launch=launch, cover="phases")
    out = capsys.readouterr().out
    assert ok, out
    landed = next(line for line in out.splitlines() if "stops landed" in line)
    for phase in PHASES:
        assert f"{phase} " in landed, landed
    assert "of 51 exercised" in out and "uncovered: " in out  # a sample: the rest is reported
