"""The handlers that make the Engine a trainer, attached by :func:`setup_handlers` in the order
they fire (ignite runs the handlers of one event in the order they were added):

- ``STARTED``: exact resume (resume.py); DCGAN weight init (fresh runs only); a run resumed at
  an epoch end whose record was never written finishes that epoch end first; stop point.
- ``EPOCH_STARTED``: the epoch's data order (resume.py); the epoch timer starts.
- ``ITERATION_STARTED``: the iteration's learning rates (``--lr-decay cosine`` only).
- ``ITERATION_COMPLETED``: last finished iteration (resume.py) -> NaN guard -> augmentation
  strength (ADA, augment.py) -> EMA of G ->
  running averages -> loss history -> mid-epoch checkpoint (``--checkpoint-every``) ->
  fixed-noise snapshot -> progress bar -> trackers -> stop point.
- ``EPOCH_COMPLETED``: :class:`EpochEnd`: evaluate (stop points between its batches) ->
  history record -> best checkpoint -> regular checkpoint -> ``EPOCH_RECORDED`` (trackers) ->
  plots and log line -> stop point. The regular checkpoint comes after the record and the best
  one, so it holds both: killed anywhere before it, the run redoes the epoch end.
- ``EXCEPTION_RAISED``: a stop, a second Ctrl-C or a crash: a checkpoint at the last finished
  iteration and the plots; a divergence (NaN) saves nothing.
- ``COMPLETED``: :func:`end_of_run`: the final snapshot, the plots and the history's ``end``
  record, which says the run needs nothing more (:func:`finish` does what a run stopped before
  it lacks).

A stop requested by Ctrl-C or SIGTERM (signals.py) is acted on only at a stop point
(resume.stop_point), where the state is whole, so the resumed run ends exactly as an
uninterrupted one.

Only the writer (rank 0, ``is_writer``) writes files; every rank takes part in evaluation and
in gathering the RNG states that the checkpoints hold.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import ignite.distributed as idist
import torch
from ignite.engine import Engine, EventEnum, Events
from ignite.handlers import Checkpoint, EMAHandler, ProgressBar, Timer
from ignite.metrics import RunningAverage
from torch import nn
from torchvision.utils import save_image

from .. import seeds
from ..config import Config
from ..errors import Diverged, is_write_failure
from ..evaluation.figures import export_plots
from ..evaluation.quality import Evaluator
from ..evaluation.scores import collapse_warning, copying_warning, ranking_fields, score_line
from ..networks.augment import AdaptiveAugment
from ..networks.gan import GAN
from ..networks.models import dcgan_weights_init, sample, unwrap
from ..rundir import RunDir, atomic_write, iteration_of
from ..runs import faults, resume
from ..runs.history import History, is_evaluated
from ..runs.signals import StopRequest

if TYPE_CHECKING:  # a type only: the weights are loaded by trainer.make_plan
    from .transfer import Source

logger = logging.getLogger(__name__)


class RunEvents(EventEnum):
    """Fired by :class:`EpochEnd` once an epoch's record is in the history (trackers log it)."""

    EPOCH_RECORDED = "epoch_recorded"


@dataclass
class RunContext:
    """What the handlers work on. ``history``, ``regular`` and ``best`` exist on the writer."""

    cfg: Config
    run: RunDir
    gan: GAN
    run_state: resume.RunState
    is_writer: bool
    evaluator: Evaluator | None = None
    ada: AdaptiveAugment | None = None
    history: History | None = None
    regular: Checkpoint | None = None
    best: Checkpoint | None = None
    ema: EMAHandler | None = None
    trackers: list[Any] = field(default_factory=list)
    init: Source | None = None  # --init-from's weights, for a run's first start
    clock: Callable[[], float] = time.monotonic  # what the plots' time share is measured with

    @property
    def fixed_noise(self) -> torch.Tensor:
        return self.run_state.fixed_noise

    @property
    def sampler_net(self) -> nn.Module:
        """The generator that draws snapshots and is evaluated: the EMA one when there is one."""
        return self.ema.ema_model if self.ema is not None else self.gan.netG

    def close(self) -> None:
        """The history file and the trackers, at the end of a run however it ends."""
        if self.history is not None:
            self.history.close()
        for tracker in self.trackers:
            tracker.close()


def setup_handlers(trainer: Engine, ctx: RunContext) -> None:
    """Attach every handler of the run, in firing order (see the module docstring)."""
    trainer.register_events(*RunEvents, event_to_attr={RunEvents.EPOCH_RECORDED: "epoch"})
    resume.attach(trainer, ctx.run_state)
    trainer.add_event_handler(Events.STARTED, init_weights, ctx)
    timer = Timer(average=False)
    timer.attach(trainer, start=Events.EPOCH_STARTED, pause=Events.EPOCH_COMPLETED)
    epoch_end = EpochEnd(ctx, timer)
    trainer.add_event_handler(Events.STARTED, finish_interrupted_epoch_end, ctx, epoch_end)
    trainer.add_event_handler(Events.STARTED, resume.stop_point, "start")

    if ctx.cfg.lr_decay == "cosine":
        trainer.add_event_handler(Events.ITERATION_STARTED, decay_lr, ctx)
    trainer.add_event_handler(Events.ITERATION_COMPLETED,
                              lambda e: faults.point("iteration", e.state.iteration))
    trainer.add_event_handler(Events.ITERATION_COMPLETED, stop_on_nan)
    if ctx.ada is not None:
        trainer.add_event_handler(Events.ITERATION_COMPLETED, ctx.ada)
    if ctx.ema is not None:
        trainer.add_event_handler(Events.ITERATION_COMPLETED, set_ema_momentum, ctx.cfg)
        ctx.ema.attach(trainer, name="ema_momentum", warn_if_exists=False)
    for key in ("loss_d", "loss_g"):
        RunningAverage(output_transform=lambda out, k=key: out[k]).attach(trainer, key)
    if ctx.is_writer:
        trainer.add_event_handler(Events.ITERATION_COMPLETED, store_losses, ctx.history)
    if ctx.cfg.checkpoint_every:
        trainer.add_event_handler(Events.ITERATION_COMPLETED(every=ctx.cfg.checkpoint_every),
                                  mid_epoch_checkpoint, ctx, timer)
    if ctx.is_writer:
        trainer.add_event_handler(Events.ITERATION_COMPLETED(every=ctx.cfg.snapshot_every),
                                  snapshot, ctx)
        if ctx.cfg.progress:
            ProgressBar(persist=True).attach(trainer, metric_names=["loss_d", "loss_g"])
        for tracker in ctx.trackers:
            tracker.attach(trainer)
    trainer.add_event_handler(Events.ITERATION_COMPLETED, resume.stop_point, "iteration")

    trainer.add_event_handler(Events.EPOCH_COMPLETED, epoch_end)
    trainer.add_event_handler(Events.EPOCH_COMPLETED, resume.stop_point, "epoch end")
    trainer.add_event_handler(Events.EXCEPTION_RAISED, on_exception, ctx, timer)
    trainer.add_event_handler(Events.COMPLETED, end_of_run, ctx)


def init_weights(engine: Engine, ctx: RunContext) -> None:
    """At the start of a fresh run, --init-from's weights or else DCGAN's init; a resumed run
    keeps the weights it loaded."""
    if engine.state.iteration:
        return
    if ctx.init is not None:  # the same file on every process: the same weights
        ctx.init.load_into(ctx.gan.netG, ctx.gan.netD, ctx.ema.ema_model if ctx.ema else None)
        return
    # Same seed on every process: DDP synchronised the weights when it wrapped the models, before
    # this init, so each rank must draw the same ones.
    device = ctx.gan.device
    with torch.random.fork_rng(devices=[device.index or 0] if device.type == "cuda" else []):
        torch.manual_seed(seeds.weights(ctx.cfg.seed))  # training's noise stream is untouched
        ctx.gan.netG.apply(dcgan_weights_init)
        ctx.gan.netD.apply(dcgan_weights_init)
    if ctx.ema is not None:  # the average starts from the initialised weights
        ctx.ema.ema_model.load_state_dict(unwrap(ctx.gan.netG).state_dict())


def ema_momentum(cfg: Config, iteration: int) -> float:
    """ignite's EMA momentum (1 - decay) after ``iteration`` steps: StyleGAN's half-life rule.
    The average's half-life is ``ema_halflife_kimg`` thousand images, ramped up to at most
    ``ema_rampup`` times the images seen so far, so a short run averages over its recent
    steps instead of being dominated by its untrained start."""
    half_life = cfg.ema_halflife_kimg * 1000
    if cfg.ema_rampup > 0:
        half_life = min(half_life, iteration * cfg.batch_size * cfg.ema_rampup)
    return 1 - 0.5 ** (cfg.batch_size / max(half_life, 1e-8))


def make_ema(cfg: Config, gan: GAN) -> EMAHandler:
    """ignite's EMAHandler of G (the plain module inside DDP), its BatchNorm statistics copied
    from G or averaged too (``ema_buffers``)."""
    final = min(ema_momentum(cfg, 2**62), 0.999999)  # EMAHandler accepts (0, 1) only
    return EMAHandler(gan.netG, momentum=final, handle_buffers=cfg.ema_buffers)


def set_ema_momentum(engine: Engine, cfg: Config) -> None:
    engine.state.ema_momentum = ema_momentum(cfg, engine.state.iteration)


def cosine_factor(step: int, total: int) -> float:
    """The fraction of the base rate at 0-based ``step`` of ``total``: 1 at the first step,
    falling along half a cosine to 0 after the last."""
    return 0.5 * (1 + math.cos(math.pi * min(step, total) / total))


def decay_lr(engine: Engine, ctx: RunContext) -> None:
    """Set both optimizers' rates for this iteration. A function of the iteration count alone
    (unlike ignite's CosineAnnealingScheduler, whose own counter would have to be checkpointed
    and which starts a new cycle past its end): a resumed run continues the same curve, and a
    run resumed with more ``--epochs`` stretches it to the new end."""
    total = engine.state.max_epochs * engine.state.epoch_length
    factor = cosine_factor(engine.state.iteration - 1, total)
    for opt, base in ((ctx.gan.optG, ctx.cfg.g_lr), (ctx.gan.optD, ctx.cfg.d_lr)):
        for group in opt.param_groups:
            group["lr"] = base * factor


def stop_on_nan(engine: Engine) -> None:
    """Stop at the first NaN or infinite loss, before anything of the iteration is recorded or
    drawn. Not ignite's TerminateOnNan: it stops only the rank that saw the NaN (the others
    would wait in the next all-reduce for ever) and then fires COMPLETED, which would draw the
    final snapshot from the broken generator; here all ranks decide together and raise."""
    bad = not all(math.isfinite(v) for v in engine.state.output.values())
    if idist.get_world_size() > 1:
        bad = bool(idist.all_reduce(torch.tensor(float(bad), device=idist.device())).item())
    if bad:
        raise Diverged(
            f"training diverged at iteration {engine.state.iteration}: a loss is NaN or infinite "
            f"({', '.join(f'{k}={v:.4g}' for k, v in engine.state.output.items())}). The last good "
            "checkpoint is kept; resume from it with a lower --lr, or start again with another --seed")


def store_losses(engine: Engine, history: History) -> None:
    history.append({"kind": "iteration", "iteration": engine.state.iteration,
                    "epoch": engine.state.epoch, **engine.state.output})


def mid_epoch_checkpoint(engine: Engine, ctx: RunContext, timer: Timer) -> None:
    """``--checkpoint-every``: the state Ctrl-C would save, inside an epoch, so a SIGKILL or a
    power loss costs at most that many iterations instead of the epoch. An epoch's last
    iteration is left to the epoch end's checkpoint, which also holds the epoch's record."""
    if engine.state.iteration % engine.state.epoch_length == 0:
        return
    ctx.run_state.before_save(engine, timer.value(), every_rank=True)
    if ctx.is_writer:
        ctx.regular(engine)


def save_grid(netG: nn.Module, noise: torch.Tensor, path: Path) -> None:
    """The 8x8 grid of G(noise), G in eval mode, as a PNG written atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    images = sample(netG, noise)
    atomic_write(path, lambda f: save_image(images, f, format="png", nrow=8, normalize=True,
                                            value_range=(-1, 1), padding=2))


def snapshot(engine: Engine, ctx: RunContext) -> None:
    save_grid(ctx.sampler_net, ctx.fixed_noise, ctx.run.snapshot(engine.state.iteration))


def end_of_run(engine: Engine, ctx: RunContext) -> None:
    """The final snapshot and plots, then the history's ``end`` record: the run is complete."""
    if not ctx.is_writer:
        return
    faults.point("end")
    save_grid(ctx.sampler_net, ctx.fixed_noise, ctx.run.final_snapshot)
    export_plots(ctx.run.root)
    ctx.history.append({"kind": "end", "iteration": engine.state.iteration,
                        "epoch": engine.state.epoch})


def finish(engine: Engine, ctx: RunContext) -> None:
    """A run resumed at its last iteration does what it had not finished there: the last
    epoch's end (if its record is missing), then the run's end. (ignite's run() would start a
    finished state anew, so these handlers are called here.)"""
    timer = Timer()
    try:
        finish_interrupted_epoch_end(engine, ctx, EpochEnd(ctx, timer))
        end_of_run(engine, ctx)
    except BaseException as e:
        on_exception(engine, e, ctx, timer)


def saved_iteration(checkpointer: Checkpoint) -> int:
    """The iteration of the checkpointer's latest file (0 before the first)."""
    last = checkpointer.last_checkpoint
    return iteration_of(Path(last).name) if last is not None else 0


class PlotExport:
    """Redraws the run's plots at epoch ends, spending at most ``share`` of the run's time on them.

    A redraw costs seconds (matplotlib, the GIF of every snapshot), a large part of a short
    CPU epoch, so after each redraw the next one waits until ``(1 - share) / share`` times its
    cost has passed; the first waits as long from the run's start, its cost taken as
    ``first_cost`` until one is timed (a run of a few seconds is drawn once, at its end).
    Epochs longer than that (real data sets) are all drawn. An epoch with a new FID/IS point
    is always drawn, the last epoch by the run's end (:func:`end_of_run`), and ``animegan-plot
    RUN`` redraws a run at any time."""

    def __init__(self, run_root: Path, share: float = 0.05,
                 clock: Callable[[], float] = time.monotonic, first_cost: float = 1.0) -> None:
        self.run_root, self.share, self.clock = run_root, share, clock
        self.next_due = clock() + first_cost * (1 - share) / share

    def __call__(self, force: bool = False) -> bool:
        """Redraw if due (or ``force``); returns whether it did."""
        start = self.clock()
        if not force and start < self.next_due:
            return False
        export_plots(self.run_root)
        end = self.clock()
        self.next_due = end + (end - start) * (1 - self.share) / self.share
        return True


class EpochEnd:
    """evaluate -> history record -> best checkpoint -> regular checkpoint -> EPOCH_RECORDED ->
    plots, log line."""

    def __init__(self, ctx: RunContext, timer: Timer) -> None:
        self.ctx, self.timer = ctx, timer
        self.plots = PlotExport(ctx.run.root, clock=ctx.clock)

    def due(self, engine: Engine) -> bool:
        """An evaluation: every --eval-every epochs, or at the first epoch end after each
        --eval-every-kimg thousand images; and after the last epoch."""
        cfg, epoch = self.ctx.cfg, engine.state.epoch
        if self.ctx.evaluator is None:
            return False
        if cfg.eval_every_kimg is not None:
            return epoch == cfg.epochs or crossed(engine, cfg.batch_size, cfg.eval_every_kimg)
        return epoch % cfg.eval_every == 0 or epoch == cfg.epochs

    def checkpoint_due(self, engine: Engine) -> bool:
        """The regular checkpoint (and plots): every epoch end, or with --checkpoint-every-kimg
        at the first after each that many thousand images; and after the last epoch."""
        cfg = self.ctx.cfg
        return (cfg.checkpoint_every_kimg is None or engine.state.epoch == cfg.epochs
                or crossed(engine, cfg.batch_size, cfg.checkpoint_every_kimg))

    def __call__(self, engine: Engine, train_seconds: float | None = None) -> None:
        seconds = self.timer.value() if train_seconds is None else train_seconds
        # Streams of its own: done once, or cut short and done again on resume, the epoch end
        # leaves the next epoch the same random streams (its checkpoints hold training's).
        with self.ctx.run_state.own_streams(seeds.epoch_end(self.ctx.cfg.seed)):
            self.run(engine, seconds)

    def run(self, engine: Engine, seconds: float) -> None:
        ctx, epoch = self.ctx, engine.state.epoch
        result = ctx.evaluator(ctx.sampler_net) if self.due(engine) else None  # every rank
        ctx.run_state.before_save(engine, seconds, every_rank=True)
        if not ctx.is_writer:
            return
        record = self.record(engine, seconds, result)
        ctx.history.append(record)
        faults.point("record")
        if result is not None:
            engine.state.metrics["best_score"] = best_score(record, ctx.cfg.best_metric)
            ctx.best(engine)
        tick = self.checkpoint_due(engine)
        if tick:
            ctx.regular(engine)
        engine.state.epoch_record = record
        engine.fire_event(RunEvents.EPOCH_RECORDED)
        if (tick or result is not None) and epoch < ctx.cfg.epochs:  # the last: the run's end draws
            self.plots(force=result is not None)
        if result is not None:
            ctx.evaluator.draw_figures(ctx.run.plots)  # the scores' own figures (nearest.png)
        if tick or result is not None:  # counted in images, an epoch can be a few iterations
            logger.info("%s", epoch_line(record, ctx.cfg.epochs, ctx.cfg.kimg))
        warnings = [collapse_warning(record, ctx.history.evaluated()),
                    copying_warning(record)] if result else []
        for warning in filter(None, warnings):
            logger.warning("%s", warning)

    def record(self, engine: Engine, seconds: float, result: dict[str, Any] | None
               ) -> dict[str, Any]:
        epoch = engine.state.epoch
        return {"kind": "epoch", "epoch": epoch, "iteration": engine.state.iteration,
                "kimg": engine.state.iteration * self.ctx.cfg.batch_size / 1000,
                "train_seconds": round(seconds, 3), **self.ctx.history.epoch_losses(epoch),
                **(self.ctx.ada.summary() if self.ctx.ada is not None else {}),
                **(result or {})}


def crossed(engine: Engine, batch_size: int, kimg: float) -> bool:
    """This epoch end is the first after a multiple of ``kimg`` thousand images shown."""
    step = max(1, round(kimg * 1000))
    shown = engine.state.epoch * engine.state.epoch_length * batch_size
    return shown // step > (shown - engine.state.epoch_length * batch_size) // step


def best_score(record: dict[str, Any], metric: str) -> float:
    """What marks the best checkpoint (``--best-metric``): higher is better for ignite's
    Checkpoint, so a lower-is-better score negated; an evaluation without it (or NaN) never
    is the best."""
    value = record.get(metric)
    if value is None or math.isnan(value):
        return -math.inf
    return -value if ranking_fields()[metric].better == "lower" else value


def epoch_line(record: dict[str, Any], epochs: int, kimg: float | None = None) -> str:
    shown = f" ({record['kimg']:g}/{kimg:g} kimg)" if kimg is not None else ""
    line = (f"epoch {record['epoch']}/{epochs}{shown}: Loss_D {record['loss_d']:.4f}  "
            f"Loss_G {record['loss_g']:.4f}")
    timing = f"train {record['train_seconds']:.1f} s"
    if record.get("augment_p") is not None:
        line += f"  augment p {record['augment_p']:.3f}"
    for key in ("r_t", "r_v"):
        if record.get(key) is not None:
            line += f"  {key} {record[key]:.2f}"
    if is_evaluated(record):
        line += f"  {score_line(record)}"
        timing += f", eval {record['eval_seconds']:.1f} s"
    return f"{line}  ({timing})"


def finish_interrupted_epoch_end(engine: Engine, ctx: RunContext, epoch_end: EpochEnd) -> None:
    """Resumed exactly at an epoch end whose record the history lacks (the run was stopped
    during that epoch's evaluation): evaluate and record it now, so no epoch is ever missing.
    Rank 0 decides (only it reads the history) and the others follow."""
    length = engine.state.epoch_length
    if not engine.state.iteration or engine.state.iteration % length:
        return
    missing = ctx.is_writer and engine.state.epoch not in ctx.history.epochs_recorded()
    if idist.get_world_size() > 1:
        missing = bool(idist.broadcast(torch.tensor(int(missing), device=idist.device()), src=0))
    if missing:
        logger.info("finishing epoch %d's end (evaluation and record) before going on",
                    engine.state.epoch)
        epoch_end(engine, train_seconds=ctx.run_state.epoch_seconds or 0.0)


def on_exception(engine: Engine, e: BaseException, ctx: RunContext, timer: Timer) -> None:
    """ignite calls this instead of raising. On a stop, a second Ctrl-C or a crash: save what
    there is, then re-raise. A stop acted on at a stop point (``e.agreed``) has every rank here,
    so the checkpoint holds every rank's RNG state; otherwise (a second Ctrl-C, a crash) rank
    0's, and, interrupted inside an iteration, the checkpoint is labelled with the last finished
    one, with the RNG states of that moment, so the resumed run redoes the unfinished iteration
    and the history stays continuous. A divergence saves nothing (the weights are broken), nor
    does a write that failed (a full disk would fail again; the last complete checkpoint stays)."""
    if is_write_failure(e):
        raise e
    if StopRequest.signum and not isinstance(e, (KeyboardInterrupt, Diverged)):
        e = StopRequest.exception()  # the stop's signal broke something first (a worker's pipe)
    agreed = getattr(e, "agreed", False)
    if not isinstance(e, Diverged):
        engine.state.iteration = getattr(engine.state, "completed_iteration", engine.state.iteration)
        if agreed:
            ctx.run_state.before_save(engine, timer.value(), every_rank=True)
        if ctx.is_writer and engine.state.iteration > saved_iteration(ctx.regular):
            if not agreed:
                ctx.run_state.before_save(engine, timer.value(), every_rank=False)
            ctx.regular(engine)
    if ctx.is_writer:
        export_plots(ctx.run.root)
    raise e
