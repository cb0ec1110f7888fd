"""Exact resume: a run stopped anywhere and resumed ends where an uninterrupted run ends.

What a checkpoint needs beyond the models, optimizers, GradScalers and EMA (which are
``state_dict`` objects of their own) is here, with the handlers that keep it:

- :class:`RunState`: the fixed snapshot noise, the model shape, every process's RNG states
  and the current epoch's training seconds, as a ``state_dict`` object in every checkpoint;
- the data order: :class:`EpochSampler` orders each epoch by (seed, epoch) only and starts a
  resumed epoch at the first batch the stopped run had not trained on;
- :func:`attach`: the handlers that record the last finished iteration and its RNG states, set
  each epoch's data order, and set the restored RNG state again at the first iteration;
- :func:`stop_point`: where a requested stop (signals.py) is acted on, so the state saved then
  is whole;
- :func:`restore`: loads a checkpoint into every object and tells a rank that has no saved
  RNG state (a second Ctrl-C's checkpoint of a multi-process run) that its noise stream is new;
- :meth:`RunState.own_streams`: the work between epochs (evaluation, figures, plots) on random
  streams of its own, so that whether it ran, ran twice or was cut short never moves training's.
"""

from __future__ import annotations

import copy
import logging
import random
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import ignite.distributed as idist
import numpy as np
import torch
from ignite.engine import Engine, Events
from ignite.handlers import Checkpoint
from ignite.utils import manual_seed
from torch.utils.data import DataLoader

from .. import seeds
from ..data.sampler import EpochSampler
from ..networks.architecture import Architecture, record
from .checkpoints import CheckpointError
from .signals import StopRequest

logger = logging.getLogger(__name__)

def capture_rng() -> dict[str, Any]:
    """This process's RNG states: torch's CPU generator, its current GPU's, Python's."""
    return {"torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state() if torch.cuda.is_available() else None,
            "python": random.getstate()}


def restore_rng(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if state.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])
    random.setstate(_as_tuple(state["python"]))


def _as_tuple(x: Any) -> Any:
    return tuple(_as_tuple(i) for i in x) if isinstance(x, (list, tuple)) else x


def gather_rng(state: dict[str, Any]) -> list[dict[str, Any]]:
    """Every process's ``state``, in rank order (a collective: all processes call it)."""
    return [state] if idist.get_world_size() == 1 else list(idist.all_gather(state))


class RunState:
    """The parts of a run that are not a module or optimizer, as a state_dict object.

    ``rng_states`` (one entry per rank; None where a rank's state could not be collected) and
    ``epoch_seconds`` are set just before each save (:meth:`before_save`): training's streams,
    also when the save happens inside :meth:`own_streams`. Loading restores this process's own
    RNG state (kept as ``loaded_rng``); ``rng_missing`` says when the checkpoint had none for
    this rank."""

    def __init__(self, fixed_noise: torch.Tensor, architecture: Architecture) -> None:
        self.fixed_noise = fixed_noise
        self.architecture = architecture
        self.rng_states: list[dict[str, Any] | None] = []
        self.epoch_seconds: float | None = None
        self.saved_world_size = 1
        self.rng_missing = False
        self.loaded_rng: dict[str, Any] | None = None
        self.training_rng: dict[str, Any] | None = None  # set inside own_streams

    @contextmanager
    def own_streams(self, seed: int) -> Iterator[None]:
        """Run the block on torch's, Python's and NumPy's random streams seeded by ``seed``
        (seeds.epoch_end), then put training's back, however the block ends (a stop raised
        inside it included). What it draws (a DataLoader's worker seed, a library's sampling)
        is then a function of ``seed`` alone, and training after it continues exactly as if
        the block had not run: an epoch end evaluated once, or cut short and done again by the
        resumed run, leaves the next epoch the same streams."""
        saved, saved_numpy = capture_rng(), np.random.get_state()
        self.training_rng = saved
        manual_seed(seed)
        try:
            yield
        finally:
            self.training_rng = None
            restore_rng(saved)
            np.random.set_state(saved_numpy)

    def before_save(self, engine: Engine, seconds: float, every_rank: bool) -> None:
        """The RNG states and epoch seconds the next checkpoint holds. ``every_rank``: all
        processes are here (a collective gathers theirs); else (an interruption, when the
        others may be inside a collective) rank 0's state at its last finished iteration."""
        if every_rank:
            self.rng_states = gather_rng(self.training_rng or capture_rng())
        else:
            rng = self.training_rng or getattr(engine.state, "completed_rng", None) or capture_rng()
            self.rng_states = [rng] + [None] * (idist.get_world_size() - 1)
        self.epoch_seconds = seconds

    def state_dict(self) -> dict[str, Any]:
        return {"fixed_noise": self.fixed_noise.cpu(), **record(self.architecture),
                "rng": self.rng_states, "epoch_train_seconds": self.epoch_seconds}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.fixed_noise.copy_(state["fixed_noise"])  # the architecture: checked by the plan
        if "rng" in state:
            rng = list(state["rng"])
        else:  # written before per-rank states existed: rank 0's only
            rng = [{"torch": state["torch_rng"], "python": state["python_rng"],
                    "cuda": (state["cuda_rng"] or [None])[0]}]
        self.rng_states, self.saved_world_size = rng, len(rng)
        self.epoch_seconds = state.get("epoch_train_seconds")
        rank = idist.get_rank()
        self.rng_missing = rank >= len(rng) or rng[rank] is None
        if not self.rng_missing:
            self.loaded_rng = rng[rank]
            restore_rng(self.loaded_rng)


def attach(trainer: Engine, state: RunState) -> None:
    """The handlers of exact resume, first among each event's handlers."""
    trainer.add_event_handler(Events.STARTED, _set_rng_at_the_first_iteration, state)
    trainer.add_event_handler(Events.EPOCH_STARTED, _set_data_order)
    trainer.add_event_handler(Events.ITERATION_COMPLETED, _mark_completed)
    trainer.add_event_handler(Events.GET_BATCH_STARTED, _waiting_for_data, True)
    trainer.add_event_handler(Events.GET_BATCH_COMPLETED, _waiting_for_data, False)


def _waiting_for_data(engine: Engine, waiting: bool) -> None:
    """Between iterations, a requested stop need not wait: the state is whole, and the data
    loader's workers may already be gone (a signal sent to the whole process group). With
    several processes the ranks must stop together, at a stop point."""
    StopRequest.now = waiting and idist.get_world_size() == 1


def _set_rng_at_the_first_iteration(engine: Engine, state: RunState) -> None:
    """A resumed run makes its data iterator after the checkpoint's RNG state was restored, and
    a DataLoader's new iterator draws from that RNG (to seed its workers). The stopped run drew
    there too only at an epoch end, and only if its loader makes a new iterator every epoch
    (no persistent workers); otherwise the state is set again just before the first iteration,
    so the resumed run draws the noise an uninterrupted one does."""
    loader = engine.state.dataloader
    new_iterator_each_epoch = isinstance(loader, DataLoader) and not loader.persistent_workers
    at_epoch_end = engine.state.iteration % engine.state.epoch_length == 0
    if state.loaded_rng and not (at_epoch_end and new_iterator_each_epoch):
        engine.add_event_handler(Events.ITERATION_STARTED(once=engine.state.iteration + 1),
                                 lambda _: restore_rng(state.loaded_rng))


def _set_data_order(engine: Engine) -> None:
    """Each epoch's order depends on (seed, epoch) only, so a resumed epoch replays exactly; a
    run resumed inside an epoch starts at the first batch it had not trained on."""
    loader = engine.state.dataloader
    sampler = getattr(loader, "sampler", None)
    if isinstance(sampler, EpochSampler):
        done = engine.state.iteration % engine.state.epoch_length
        sampler.set_epoch(engine.state.epoch - 1, skip=done * loader.batch_size)


def _mark_completed(engine: Engine) -> None:
    """The last finished iteration and the RNG states a resumed run continues with from there
    (an interruption inside the next iteration is labelled with this one)."""
    engine.state.completed_iteration = engine.state.iteration
    engine.state.completed_rng = capture_rng()


def stop_point(engine: Engine, phase: str) -> None:
    """Where a requested stop (Ctrl-C, SIGTERM) is acted on: the run's state is whole here
    (``phase``: "start", "iteration" (its handlers done), "evaluation" (between its batches),
    "epoch end"), so the checkpoint then written is what an uninterrupted run had. Every rank
    stops at the same point (the request is all-reduced), so all can hand over their RNG
    states. The stop says where it was acted on (``phase``, ``where``): the stop message
    prints it, and tests assert it."""
    signum = StopRequest.signum
    if idist.get_world_size() > 1:
        signum = int(idist.all_reduce(torch.tensor(signum, device=idist.device()), op="MAX").item())
    if signum:
        stop = StopRequest.exception(signum)
        stop.agreed = True  # every rank is here: on_exception may gather from all
        stop.phase = phase
        done = "batches" if phase == "evaluation" else "iterations"
        stop.where = f"{phase}, {engine.state.iteration} {done} done"
        raise stop


def restore(to_load: dict[str, Any], checkpoint: dict[str, Any], state: RunState, seed: int) -> int:
    """Load every object of ``to_load`` from ``checkpoint`` (errors name the file's problem) and
    return the iteration it continues from.

    The objects get private copies: an optimizer keeps the loaded state tensors themselves, and a
    checkpoint handed to spawned processes arrives in shared memory, so without the copy every
    rank's Adam would update the same moment buffers in place."""
    if "ada" not in checkpoint:  # written before adaptive augmentation: it starts afresh
        to_load = {k: v for k, v in to_load.items() if k != "ada"}
    missing = sorted(set(to_load) - set(checkpoint))
    if missing:
        raise CheckpointError(f"checkpoint does not match this run: it has no {', '.join(missing)}")
    try:
        Checkpoint.load_objects(to_load, {k: copy.deepcopy(checkpoint[k]) for k in to_load})
    except (KeyError, RuntimeError, ValueError) as e:
        raise CheckpointError(f"checkpoint does not match this run: {str(e).splitlines()[0]}") from e
    iteration = to_load["trainer"].state.iteration
    _fresh_stream_where_missing(state, seed, iteration)
    return iteration


def _fresh_stream_where_missing(state: RunState, seed: int, iteration: int) -> None:
    """A rank without a saved RNG state (the checkpoint was written on an interruption, or by
    fewer processes) gets a fresh stream of its own, and the user is told."""
    world, rank = idist.get_world_size(), idist.get_rank()
    if state.saved_world_size != world and rank == 0:
        logger.warning("this checkpoint was written by %d process(es) and is resumed on %d: models, "
                       "optimizers and history continue exactly, but the data order and noise from "
                       "here on differ from an uninterrupted run", state.saved_world_size, world)
    if state.rng_missing:
        manual_seed(seeds.fresh_stream(seed, rank, iteration))
        if world == state.saved_world_size:
            logger.warning("rank %d: no saved RNG state in this checkpoint (written on an "
                           "interruption); it continues with a fresh noise stream", rank)
