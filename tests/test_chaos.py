"""The fault-injection check (scripts/chaos.py) in the slow tier: at least 30 stops by SIGINT,
SIGTERM and SIGKILL over every phase of a run's life, each run resumed to the end and equal to
an uninterrupted one. The runs are processes of their own, forked from the warm parent of
helpers.run_cli so that each spares the seconds of importing torch."""

import sys

import pytest
from helpers import REPO, run_cli


@pytest.mark.slow
def test_stopped_anywhere_and_resumed_every_run_ends_equal_to_the_uninterrupted_one(tmp_path,
                                                                                      capsys):
    sys.path.insert(0, str(REPO / "scripts"))
    try:
        import chaos
    finally:
        sys.path.pop(0)

    def launch(args, env):
        return run_cli("train", *args, timeout=600, env=env).returncode

    ok = chaos.check(30, seed=1, root=tmp_path, launch=launch)
    out = capsys.readouterr().out
    assert ok, out
    landed = out.strip().splitlines()[-1]
    for phase in ("start", "iteration", "checkpoint", "evaluation", "record", "plots", "end"):
        assert f"{phase} " in landed, landed
