"""Checkpoint files: rotation through ignite's Checkpoint and the durable saver, what a resumed
run adopts of the files already there, and damaged or foreign files."""

import pytest
import torch
from ignite.engine import Engine

from animegan_ignite.rundir import RunDir
from animegan_ignite.runs.checkpoints import (
    CheckpointError,
    adopt_existing,
    load_checkpoint,
    make_checkpointers,
    resolve_checkpoint,
)


class Counter:
    """A state_dict object whose value says which save wrote a file."""

    def __init__(self) -> None:
        self.value = 0

    def state_dict(self):
        return {"value": self.value}

    def load_state_dict(self, state):
        self.value = state["value"]


def _engine_at(iteration: int) -> Engine:
    engine = Engine(lambda e, b: None)
    engine.state.iteration = iteration
    return engine


def _names(run: RunDir) -> list[str]:
    return [p.name for _, p in [*run.regular_checkpoints(), *run.best_checkpoints()]]


def test_a_resumed_run_adopts_its_files_and_rotation_goes_on(tmp_path):
    run, counter = RunDir(tmp_path), Counter()
    regular, best = make_checkpointers(run, {"counter": counter, "other": Counter()})
    scores = {9: -300.0, 18: -250.0, 27: -280.0}  # the best is iteration 18
    for it in (9, 18, 27):
        engine = _engine_at(it)
        engine.state.metrics["best_score"] = scores[it]
        counter.value = it
        best(engine)
        regular(engine)
    assert _names(run) == ["checkpoint_18.pt", "checkpoint_27.pt", "best_checkpoint_18.pt"]

    # resumed from iteration 18 by a new process: 27 is the abandoned future
    regular, best = make_checkpointers(run, {"counter": counter, "other": Counter()})
    moved = adopt_existing(run, regular, best, 18, {9: -300.0, 18: -250.0})
    assert [p.name for p in moved] == ["checkpoint_27.pt"] and moved[0].parent == run.superseded
    engine = _engine_at(27)
    engine.state.metrics["best_score"] = -260.0  # worse than 18's: the best file stays
    best(engine)
    regular(engine)
    engine, counter.value = _engine_at(36), 36
    engine.state.metrics["best_score"] = -200.0  # better: it replaces 18
    best(engine)
    regular(engine)
    assert _names(run) == ["checkpoint_27.pt", "checkpoint_36.pt", "best_checkpoint_36.pt"]
    assert torch.load(run.checkpoints / "checkpoint_36.pt")["counter"]["value"] == 36


def test_a_checkpoint_saved_again_at_its_iteration_is_replaced_never_missing(tmp_path):
    """Finishing an interrupted epoch end writes the file of that iteration again."""
    run, counter = RunDir(tmp_path), Counter()
    regular, _ = make_checkpointers(run, {"counter": counter, "other": Counter()})
    counter.value = 1
    regular(_engine_at(9))
    saver = regular.save_handler
    seen = []
    original = type(saver).__call__

    def watch(self, checkpoint, filename, metadata=None):
        seen.append((run.checkpoints / filename).exists())  # still there while rewritten
        original(self, checkpoint, filename, metadata)

    type(saver).__call__ = watch
    try:
        counter.value = 2
        regular(_engine_at(9))
    finally:
        type(saver).__call__ = original
    assert seen == [True] and _names(run) == ["checkpoint_9.pt"]
    assert torch.load(run.checkpoints / "checkpoint_9.pt")["counter"]["value"] == 2


@pytest.mark.parametrize("content, fragment", [
    (b"", "cannot be read as a checkpoint"),
    (b"\x80\x02garbage", "cannot be read as a checkpoint"),
])
def test_damaged_checkpoint_files_are_one_clear_error(tmp_path, content, fragment):
    path = tmp_path / "checkpoints" / "checkpoint_5.pt"
    path.parent.mkdir()
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=fragment):
        load_checkpoint(path)
    torch.save({"weights": torch.zeros(2)}, path)
    with pytest.raises(CheckpointError, match="not an animegan-ignite checkpoint"):
        load_checkpoint(path)
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        resolve_checkpoint(tmp_path / "missing")
