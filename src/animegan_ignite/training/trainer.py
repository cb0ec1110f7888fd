"""Training: what ``animegan-train`` does once its settings are checked. :func:`training` holds
the whole wiring, as ignite's DCGAN example does: networks, step, evaluator, handlers, data, run.

:func:`launch` checks everything that can fail on bad input (device, run directory, checkpoint,
data set) before the first file is written, takes the run's lock and starts the training
processes (one, N with ``--nproc-per-node``, or one per torchrun rank).
"""

from __future__ import annotations

import json
import logging
import os
import socket
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ignite.distributed as idist
import torch
from ignite.engine import Engine
from ignite.utils import manual_seed
from torch.utils.data import Dataset
from torchvision.utils import save_image

from .. import seeds
from ..config import Config, ConfigError, parse_policy
from ..data.download import fetch
from ..data.loading import (
    Split,
    find_images,
    iterations_per_epoch,
    make_split,
    make_train_loader,
    stack_images,
)
from ..device import check_precision, resolve_device
from ..errors import Terminated, exit_status, print_error
from ..evaluation.backbones import load_backbone
from ..evaluation.quality import Evaluator, eval_latents
from ..evaluation.scores import ranking_fields
from ..networks.architecture import Architecture
from ..networks.augment import AdaptiveAugment, DiffAugment
from ..networks.gan import GAN, Speed, build_gan, make_held_out_probe, make_scalers, make_training_step
from ..networks.models import summarize
from ..networks.objectives import gammas_of, penalties
from ..paths import cache_folder, check_output_path
from ..rundir import (
    RunDir,
    RunDirError,
    atomic_write,
    new_run_dir,
    run_lock,
    write_json_atomic,
    write_text_atomic,
)
from ..runs import faults, resume
from ..runs.checkpoints import (
    adopt_existing,
    architecture_of,
    checkpoint_iteration,
    load_checkpoint,
    make_checkpointers,
    resolve_checkpoint,
)
from ..runs.history import History
from ..runs.signals import forward_to_children, on_sigterm, stops_deferred
from .datasize import epochs_for_kimg, fit_to_data
from .handlers import RunContext, best_score, finish, make_ema, setup_handlers
from .trackers import make_trackers
from .transfer import Source, check_fits, load_source

logger = logging.getLogger(__name__)
DEMO_NOTE = (
    "Training on the built-in SYNTHETIC demo: procedurally drawn cartoon faces at a CPU-sized "
    "schedule. For real anime faces, get the Anime Face Dataset (Kaggle: splcher/animefacedataset) "
    "and run: animegan-train --data-dir PATH/TO/images")


@dataclass
class Plan:
    """Everything checked and loaded before training starts."""

    cfg: Config
    device: torch.device
    run: RunDir
    split: Split
    checkpoint: dict[str, Any] | None
    init: Source | None = None  # --init-from's weights, when the run starts from its beginning


def launch(cfg: Config) -> None:
    """Check, lock and start the training processes (see the module docstring)."""
    writer = int(os.environ.get("RANK", "0")) == 0
    # Held for the whole run (spawned processes run inside it): the writer's lock on the run
    # and, in a launching process, SIGTERM passed on to the training processes.
    with ExitStack() as held:
        plan = make_plan(cfg, check_output_dir=writer)
        if writer:  # locked once the checks pass: bad input leaves nothing behind
            held.enter_context(run_lock(plan.run))
            _check_still_new(plan)
        spawn = cfg.nproc_per_node if "WORLD_SIZE" not in os.environ and cfg.backend else None
        if spawn:
            held.enter_context(on_sigterm(forward_to_children))
        with idist.Parallel(backend=cfg.backend, nproc_per_node=spawn,
                            master_port=rendezvous_port(spawn)) as parallel:
            parallel.run(training_process, plan)


def make_plan(cfg: Config, check_output_dir: bool = True) -> Plan:
    """Check the device, run directory, checkpoint and data set (raises a UserError), and
    settle what follows from the data (datasize.py: a small folder's settings, --kimg's
    epochs). Under torchrun only rank 0 checks the output folder (the others may look after
    rank 0 has started writing to it)."""
    device = resolve_device(cfg.device)
    check_precision(cfg.precision, device)
    if cfg.best_metric not in ranking_fields():  # the registry's, which config cannot import
        raise ConfigError(f"--best-metric {cfg.best_metric}: not a headline score with a "
                          f"direction; choose one of {', '.join(ranking_fields())}")
    checkpoint = None
    if cfg.resume:
        run_dir = Path(cfg.output_dir)
        check_output_path(run_dir, "--resume", folder=True)
        RunDir(run_dir).check_layout()
        checkpoint = _resume_point(cfg, RunDir(run_dir))
        if checkpoint is not None:
            _check_architecture(cfg, checkpoint)
            cfg = epochs_for_kimg(cfg, checkpoint["trainer"]["epoch_length"])
            _check_not_complete(cfg, RunDir(run_dir), checkpoint)
    else:
        run_dir = new_run_dir(cfg.output_dir, check=check_output_dir, force=cfg.force)
    if cfg.cache or cfg.download or cfg.init_from or (cfg.eval_size and cfg.eval_every):
        check_output_path(cache_folder(cfg.cache_dir), "--cache-dir", folder=True)  # written
    init = None
    if cfg.init_from and checkpoint is None:  # a resumed fine-tune has its weights already
        init = load_source(cfg.init_from, cache_folder(cfg.cache_dir))
        check_fits(init, Architecture.of(cfg), cfg.init_from)
    if cfg.download:  # the run's settings name the downloaded folder (what --resume reads)
        cfg = cfg.replace(data_dir=str(fetch(cfg.download, cache_folder(cfg.cache_dir))),
                          download=None)
    if not cfg.synthetic:
        cfg = fit_to_data(cfg, len(find_images(cfg.data_dir)))
    cache = cache_folder(cfg.cache_dir) if cfg.cache else None
    split = make_split(cfg.data_dir, cfg.eval_size, cfg.batch_size, cfg.data_seed, cfg.synthetic_size,
                       progress=cfg.progress, cache_dir=cache, num_workers=cfg.num_workers,
                       fresh=cfg.synthetic_fresh, mirror=cfg.mirror)
    epoch_length = iterations_per_epoch(len(split.train), cfg.batch_size, cfg.world_size)
    if checkpoint is not None:
        _check_epoch_length(checkpoint, epoch_length)
    else:
        cfg = epochs_for_kimg(cfg, epoch_length)
    return Plan(cfg, device, RunDir(run_dir), split, checkpoint, init)


def _check_architecture(cfg: Config, checkpoint: dict[str, Any]) -> None:
    differ = Architecture.of(cfg).differences(architecture_of(checkpoint))
    if differ:
        raise ConfigError(f"--resume {cfg.resume}: the checkpoint's networks differ from the "
                          f"run's settings ({'; '.join(differ)}); resume with the run's own")


def _resume_point(cfg: Config, run: RunDir) -> dict[str, Any] | None:
    """The checkpoint ``--resume`` continues from, or None for a run stopped before its first
    checkpoint (it starts again from the beginning, in its own folder, with its settings). A
    run whose last epoch is trained but whose end (the last evaluation, record, checkpoints,
    snapshot or plots) was cut short resumes to finish it; a complete run needs more --epochs."""
    if Path(cfg.resume).is_dir() and not run.regular_checkpoints():
        logger.info("%s has no checkpoint yet: training it from the beginning", run)
        return None
    return load_checkpoint(resolve_checkpoint(cfg.resume))


def _check_not_complete(cfg: Config, run: RunDir, checkpoint: dict[str, Any]) -> None:
    iteration = checkpoint_iteration(checkpoint)
    done, partial = divmod(iteration, checkpoint["trainer"]["epoch_length"])
    complete = done > cfg.epochs or (done == cfg.epochs and History(run.root).ended_at(iteration))
    if complete and not partial:
        more = (f"--kimg N with N > {cfg.kimg:g}" if cfg.kimg is not None
                else f"--epochs N with N > {done}")
        raise ConfigError(f"--resume {cfg.resume}: the run already finished {done} epochs; "
                          f"pass {more} to train longer")


def _check_epoch_length(checkpoint: dict[str, Any], epoch_length: int) -> None:
    saved = checkpoint["trainer"]["epoch_length"]
    if saved != epoch_length:
        raise ConfigError(f"the checkpoint's epochs have {saved} iterations but this data set and "
                          f"batch size give {epoch_length}; resume with the run's --data-dir and "
                          "--batch-size")


def _check_still_new(plan: Plan) -> None:
    """A new run's folder was checked before the data set was loaded; a trainer started at the
    same time with the same --output-dir may have filled it since."""
    if not plan.cfg.resume and plan.run.is_run():
        raise RunDirError(f"--output-dir {plan.run} already holds a run (another trainer started "
                          f"there meanwhile); continue it with --resume {plan.run}")


def rendezvous_port(spawn: int | None) -> int | None:
    """The port spawned processes meet on: MASTER_PORT when set, else one the OS says is free
    (ignite's fixed default makes a second run on the same machine fail to start)."""
    if not spawn or spawn < 2 or "MASTER_PORT" in os.environ:
        return None
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def training_process(local_rank: int, plan: Plan) -> None:
    """One training process (the only one, or one of ``idist.Parallel``'s): train, and turn a
    stop into its exit status (a SystemExit, which also leaves a spawned process)."""
    setup_process(plan)
    try:
        with stops_deferred():
            trainer, _ = training(plan)
    except BaseException as e:
        status, message = exit_status(e, "The last complete checkpoint and history.jsonl are "
                                      f"intact; make room, then continue with: animegan-train "
                                      f"--resume {plan.run}")
        if status == 1:
            raise
        if idist.get_rank() == 0:
            print_error(message) if message else print(f"\n{stop_message(e, plan.run)}",
                                                       file=sys.stderr)
        raise SystemExit(status) from None
    logger.info("done: %d epochs, %d iterations; results in %s", trainer.state.epoch,
                trainer.state.iteration, plan.run)


def stop_message(e: BaseException, run: RunDir) -> str:
    """What an interrupted run says: what is on disk, the command that goes on from it, and
    where the stop was acted on (resume.stop_point)."""
    how = "stopped by SIGTERM" if isinstance(e, Terminated) else "interrupted"
    found = run.regular_checkpoints()
    where = f"\nstopped at: {e.where}" if getattr(e, "where", None) else ""
    if found:
        return (f"{how}; {found[-1][1].name} was saved. Continue with: animegan-train --resume "
                f"{run}{where}")
    if run.config.is_file():
        return (f"{how} before the first checkpoint. Continue with: animegan-train --resume {run} "
                f"(it trains from the beginning, with the run's settings){where}")
    return f"{how} before the run started; nothing was written"


def setup_process(plan: Plan) -> None:
    """Per-process setup inside ``idist.Parallel``: quiet logs off rank 0, this process's
    device, rank 0's run directory (torchrun ranks each made their own timestamp), and cuDNN's
    autotuner on a GPU (as pytorch/examples' DCGAN)."""
    rank = idist.get_rank()
    logging.basicConfig(level=logging.INFO if rank == 0 else logging.WARNING, format="%(message)s",
                        force=True)
    if idist.get_world_size() > 1:
        plan.device = idist.device()
        plan.run = RunDir(idist.broadcast(str(plan.run), src=0, safe_mode=True))
    if plan.device.type == "cuda":  # fixed 64x64 shapes: cuDNN times its kernels once, keeps the fastest
        torch.backends.cudnn.benchmark = True


def training(plan: Plan) -> tuple[Engine, GAN]:
    """Build the trainer for ``plan`` (:func:`build_run`), run it to the end of its schedule,
    and return it with the trained networks."""
    cfg, rank = plan.cfg, idist.get_rank()
    with ExitStack() as cleanup:
        if rank == 0:
            cleanup.enter_context(log_to_file(plan.run))
        run = build_run(plan)
        cleanup.callback(run.ctx.close)
        faults.point("start", run.engine.state.iteration)
        if plan.checkpoint and run.engine.state.iteration == cfg.epochs * run.engine.state.epoch_length:
            finish(run.engine, run.ctx)  # resumed after its last iteration: its end only
            return run.engine, run.gan
        run.engine.run(run.loader, max_epochs=cfg.epochs)
    return run.engine, run.gan


@dataclass
class Run:
    """A trainer ready to run: the Engine with every handler attached, the networks, the
    handlers' context (close it at the end) and the training data loader."""

    engine: Engine
    gan: GAN
    ctx: RunContext
    loader: Any


def build_run(plan: Plan) -> Run:
    """The trainer ``animegan-train`` runs for ``plan``: the run folder's fixed files (on the
    writer), seeded networks, the step, the evaluator, the checkpoint restored (or a new run's
    history and noise), every handler, and the data loader. Scripts that measure the trainer
    (ablate.py, benchmark.py) build it here."""
    cfg, rank = plan.cfg, idist.get_rank()
    if rank == 0:
        start_run_dir(plan)
    logger.info("data: %s", plan.split.description)
    logger.info("run directory: %s (device %s)", plan.run, plan.device)
    manual_seed(seeds.process(cfg.seed, rank))
    gan = build_gan(Architecture.of(cfg), cfg.g_lr, cfg.beta1, plan.device, cfg.sync_bn,
                    lr_d=cfg.d_lr, channels_last=cfg.channels_last, beta2=cfg.beta2,
                    freeze_d=cfg.freeze_d)
    log_model_summaries(gan, plan.run, rank == 0)
    trainer, ctx, to_save = build_trainer(cfg, plan.run, gan, make_evaluator(plan), rank == 0,
                                          plan.split.eval)
    ctx.init = plan.init
    if plan.checkpoint is not None:
        restore(plan, trainer, ctx, to_save)
    elif rank == 0:  # a new run, or one stopped before its first checkpoint, from the start
        ctx.history.truncate_after(0)
        atomic_write(plan.run.noise, lambda f: torch.save(ctx.fixed_noise.cpu(), f))
    setup_handlers(trainer, ctx)
    world = idist.get_world_size()  # --batch-size is the global batch, split over processes
    loader = make_train_loader(plan.split.train, cfg.batch_size // world, cfg.num_workers,
                               cfg.seed, world, rank, pin_memory=plan.device.type == "cuda",
                               device=plan.device)
    return Run(trainer, gan, ctx, loader)


@contextmanager
def log_to_file(run: RunDir) -> Iterator[None]:
    """The console log also goes to ``RUN_DIR/train.log`` while the run trains."""
    run.root.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(run.log)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    logging.getLogger().addHandler(handler)
    try:
        yield
    finally:
        logging.getLogger().removeHandler(handler)
        handler.close()


def build_trainer(cfg: Config, run: RunDir, gan: GAN, evaluator: Evaluator | None = None,
                  is_writer: bool = True, held_out: Dataset | None = None
                  ) -> tuple[Engine, RunContext, dict[str, Any]]:
    """``Engine(training_step)`` for ``gan``, the handlers' context (history, checkpointers and
    trackers on the writer) and what a checkpoint saves; the handlers are not attached yet.
    ``held_out`` (the faces never trained on) feeds ADA's r_v with ``--ada-signal rv``."""
    scaler_d, scaler_g = make_scalers(gan, cfg.precision)
    augment = DiffAugment(parse_policy(cfg.diffaugment), cfg.start_p)
    trainer = Engine(make_training_step(gan, Speed(cfg.precision, cfg.channels_last, cfg.compile),
                                        (scaler_d, scaler_g), cfg.loss, augment or None,
                                        penalties(cfg.loss, cfg.reg_every, **gammas_of(cfg))))
    run_state = resume.RunState(fixed_noise(cfg, gan.device), Architecture.of(cfg))
    probe = None
    if cfg.ada_signal == "rv":
        if held_out is None:
            raise ValueError("--ada-signal rv needs the held-out faces")
        faces = stack_images(held_out, range(min(HELD_OUT_PROBE_IMAGES, len(held_out))))
        probe = make_held_out_probe(gan, faces, cfg.batch_size // idist.get_world_size(),
                                    augment or None, cfg.precision)
    ada = AdaptiveAugment(augment, cfg.adaptive, cfg.ada_goal, cfg.ada_kimg, cfg.batch_size,
                          probe=probe)
    to_save = {"trainer": trainer, "netG": gan.netG, "netD": gan.netD, "optG": gan.optG,
               "optD": gan.optD, "scaler_d": scaler_d, "scaler_g": scaler_g, "run_state": run_state,
               "ada": ada}
    ctx = RunContext(cfg, run, gan, run_state, is_writer, evaluator, ada=ada)
    if cfg.ema:
        ctx.ema = make_ema(cfg, gan)
        to_save["ema"] = ctx.ema.ema_model
    if is_writer:
        ctx.history = History(run.root)
        ctx.regular, ctx.best = make_checkpointers(run, to_save)
        ctx.trackers = make_trackers(cfg.trackers, cfg.to_dict(), run, ctx.sampler_net,
                                     ctx.fixed_noise, cfg.snapshot_every)
    return trainer, ctx, to_save


# r_v's held-out faces, kept in memory (25 MB): at batch 32, 16 batches that D sees in turn.
HELD_OUT_PROBE_IMAGES = 512


def fixed_noise(cfg: Config, device: torch.device) -> torch.Tensor:
    """64 latent vectors drawn once per run from the seed, so snapshots are comparable."""
    gen = torch.Generator().manual_seed(seeds.fixed_noise(cfg.seed))
    return torch.randn(64, cfg.nz, 1, 1, generator=gen).to(device)


def make_evaluator(plan: Plan) -> Evaluator | None:
    """The per-epoch FID/IS evaluator, or None with ``--eval-size 0`` / ``--eval-every 0``."""
    cfg = plan.cfg
    if cfg.eval_size == 0 or cfg.eval_every == 0:
        return None
    cache = cache_folder(cfg.cache_dir)
    choice = load_backbone(cfg.inception_weights, plan.device, cfg.eval_backend, cache)
    logger.info("FID/IS backbone: %s, on %s", choice.backbone.name, choice.backbone.runtime)
    if choice.is_unavailable:
        logger.warning(choice.is_unavailable)
    return Evaluator(choice, plan.split.eval, eval_latents(cfg.eval_size, cfg.nz, cfg.seed),
                     plan.device, cache, cfg.eval_batch_size, progress=cfg.progress,
                     train_set=plan.split.faces)


def restore(plan: Plan, trainer: Engine, ctx: RunContext, to_save: dict[str, Any]) -> None:
    """Load the checkpoint into every object; on the writer, truncate the history after its
    iteration and hand the checkpointers the run's files (later ones move to superseded/)."""
    iteration = resume.restore(to_save, plan.checkpoint, ctx.run_state, plan.cfg.seed)
    if iteration % trainer.state.epoch_length:  # ignite's epoch counts finished epochs only
        logger.info("resumed inside epoch %d, at iteration %d", trainer.state.epoch + 1, iteration)
    else:
        logger.info("resumed at epoch %d, iteration %d", trainer.state.epoch, iteration)
    if ctx.is_writer:  # what the resumed run redoes is dropped: the history stays continuous
        ctx.history.truncate_after(iteration)
        scores = {r["iteration"]: best_score(r, plan.cfg.best_metric)
                  for r in ctx.history.evaluated()}
        moved = adopt_existing(plan.run, ctx.regular, ctx.best, iteration, scores)
        if moved:
            logger.info("moved %d checkpoint(s) written after iteration %d to %s",
                        len(moved), iteration, plan.run.superseded)


def start_run_dir(plan: Plan) -> None:
    """The run directory's fixed files (writer only)."""
    run = plan.run
    run.snapshots.mkdir(parents=True, exist_ok=True)
    for stale in run.remove_stale_temp_files():
        logger.info("removed %s, left by an interrupted write", stale)
    if plan.cfg.synthetic:
        logger.info(DEMO_NOTE)
    source = plan.init.provenance if plan.init else _saved_init_source(run)
    if plan.init:
        logger.info("starting from the weights of %s (iteration %d of %s, sha256 %s)",
                    source["given"], source["iteration"], source["file"], source["sha256"][:16])
    write_json_atomic(run.config, {**plan.cfg.to_dict(),
                                   **({"init_source": source} if source else {})})
    if not run.real_samples.exists():  # 64 held-out faces for the real-vs-fake figure
        source = plan.split.eval if len(plan.split.eval) else plan.split.train
        reals = torch.stack([source[i][0] for i in range(min(64, len(source)))])
        atomic_write(run.real_samples, lambda f: save_image(
            reals, f, format="png", nrow=8, normalize=True, value_range=(-1, 1)))


def _saved_init_source(run: RunDir) -> dict[str, Any] | None:
    """Where a resumed fine-tune's weights first came from (its config.json keeps it)."""
    if not run.config.is_file():
        return None
    try:
        return json.loads(run.config.read_text()).get("init_source")
    except (ValueError, AttributeError):
        return None  # read_run_config has already said what is wrong with the file


def log_model_summaries(gan: GAN, run: RunDir, is_writer: bool) -> None:
    """torchsummary's tables for G and D: printed, and saved as RUN_DIR/model_summary.txt."""
    text = (f"Generator\n{summarize(gan.netG, (gan.nz, 1, 1))}\n"
            f"Discriminator\n{summarize(gan.netD, (3, 64, 64))}")
    logger.info("%s", text)
    if is_writer:
        write_text_atomic(run.summary, text)
