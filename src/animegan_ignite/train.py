"""``python -m animegan_ignite.train``: train a DCGAN on anime faces (or the synthetic demo).

Everything that can fail on bad input (flags, data folder, run directory, checkpoint) is checked
before the first file is written; such errors print one line and exit with status 2. A run that
diverges (NaN loss) exits with status 3, an interrupted one (Ctrl-C) with 130, SIGTERM with 143.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ignite.distributed as idist
import torch
from ignite.engine import Engine
from ignite.utils import manual_seed
from torch.multiprocessing import ProcessExitedException
from torchvision.utils import save_image

from .augment import DiffAugment, parse_policy
from .cache import default_cache_dir
from .checkpoint import (
    RunState,
    adopt_existing,
    checkpoint_iteration,
    load_checkpoint,
    make_best_checkpointer,
    make_checkpointer,
    resolve_checkpoint,
    restore,
)
from .cli import (
    EXIT_DIVERGED,
    EXIT_INTERRUPTED,
    EXIT_TERMINATED,
    EXIT_USER_ERROR,
    EXIT_WRITE_FAILED,
    Diverged,
    Terminated,
    UserError,
    check_output_path,
    forward_to_children,
    is_write_failure,
    on_sigterm,
    print_error,
    raise_terminated,
    resolve_device,
    write_failure_message,
)
from .config import Config, ConfigError, make_config
from .data import Split, iterations_per_epoch, make_split, make_train_loader
from .download import fetch
from .engine import GAN, Speed, build_gan, make_scalers, make_training_step
from .evaluation import Evaluator, eval_latents
from .handlers import RunContext, make_ema, setup_handlers
from .history import History
from .inception import load_backbone
from .models import summarize
from .rundir import (
    RunDir,
    RunDirError,
    atomic_write,
    check_unlocked,
    new_run_dir,
    run_lock,
    write_json_atomic,
    write_text_atomic,
)
from .trackers import make_trackers

logger = logging.getLogger("animegan_ignite")
DEMO_NOTE = (
    "Training on the built-in SYNTHETIC demo: procedurally drawn cartoon faces at a CPU-sized "
    "schedule. For real anime faces, get the Anime Face Dataset (Kaggle: splcher/animefacedataset) "
    "and run: python -m animegan_ignite.train --data-dir PATH/TO/images")


@dataclass
class Plan:
    """Everything checked and loaded before training starts."""

    cfg: Config
    device: torch.device
    run: RunDir
    split: Split
    checkpoint: dict[str, Any] | None


def check_precision(precision: str, device: torch.device) -> None:
    """Refuse bf16 on a GPU without it (autocast would quietly fall back to fp32), and warn that
    fp16 on a CPU is emulated (measured 23x slower than fp32 on a 2-core EPYC)."""
    if device.type == "cuda" and precision == "bf16" and not torch.cuda.is_bf16_supported(
            including_emulation=False):
        raise ConfigError(f"--precision bf16: this GPU ({torch.cuda.get_device_name(device)}) has "
                          "no bfloat16 units; use --precision fp16 (as on Kaggle's T4s) or fp32")
    if device.type == "cpu" and precision == "fp16":
        logger.warning("--precision fp16 on the CPU is emulated and many times slower than fp32; "
                       "on a CPU use bf16 (fast where it has AVX512-BF16 or AMX) or fp32")


def make_plan(cfg: Config, check_output_dir: bool = True) -> Plan:
    """Check the device, run directory, checkpoint and data set (raises a UserError). Under
    torchrun only rank 0 checks the output folder (the others may look after rank 0 has
    started writing to it)."""
    device = resolve_device(cfg.device)
    check_precision(cfg.precision, device)
    checkpoint = None
    if cfg.resume:
        checkpoint = load_checkpoint(resolve_checkpoint(cfg.resume))
        run_dir = Path(cfg.output_dir)
        check_output_path(run_dir, "--resume", folder=True)
        RunDir(run_dir).check_layout()
        done, partial = divmod(checkpoint_iteration(checkpoint), checkpoint["trainer"]["epoch_length"])
        if done >= cfg.epochs and not partial:
            raise ConfigError(f"--resume {cfg.resume}: the run already finished {done} epochs; "
                              f"pass --epochs N with N > {done} to train longer")
    else:
        run_dir = new_run_dir(cfg.output_dir, check=check_output_dir, force=cfg.force)
    if cfg.download:
        cfg.data_dir = str(fetch(cfg.download, Path(cfg.cache_dir) if cfg.cache_dir else None))
        cfg.download = None  # saved config (and --resume) then use the downloaded folder
    cache = (Path(cfg.cache_dir) if cfg.cache_dir else default_cache_dir()) if cfg.cache else None
    split = make_split(cfg.data_dir, cfg.eval_size, cfg.batch_size, cfg.data_seed, cfg.synthetic_size,
                       cfg.image_size, progress=cfg.progress, cache_dir=cache,
                       num_workers=cfg.num_workers)
    if checkpoint is not None:
        _check_epoch_length(checkpoint, iterations_per_epoch(len(split.train), cfg.batch_size,
                                                             cfg.world_size))
    return Plan(cfg, device, RunDir(run_dir), split, checkpoint)


def _check_epoch_length(checkpoint: dict[str, Any], epoch_length: int) -> None:
    saved = checkpoint["trainer"]["epoch_length"]
    if saved != epoch_length:
        raise ConfigError(f"the checkpoint's epochs have {saved} iterations but this data set and "
                          f"batch size give {epoch_length}; resume with the run's --data-dir and "
                          "--batch-size")


def _start_run_dir(plan: Plan) -> None:
    """The run directory's fixed files (writer only)."""
    run = plan.run
    run.snapshots.mkdir(parents=True, exist_ok=True)
    for stale in run.remove_stale_temp_files():
        logger.info("removed %s, left by an interrupted write", stale)
    handler = logging.FileHandler(run.log)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    logging.getLogger().addHandler(handler)
    write_json_atomic(run.config, plan.cfg.to_dict())
    if not run.real_samples.exists():  # 64 held-out faces for the real-vs-fake figure
        source = plan.split.eval if len(plan.split.eval) else plan.split.train
        reals = torch.stack([source[i][0] for i in range(min(64, len(source)))])
        atomic_write(run.real_samples, lambda f: save_image(
            reals, f, format="png", nrow=8, normalize=True, value_range=(-1, 1)))


def _log_model_summaries(gan: GAN, run: RunDir, is_writer: bool) -> None:
    """torchsummary's tables for G and D: printed, and saved as RUN_DIR/model_summary.txt."""
    text = (f"Generator\n{summarize(gan.netG, (gan.nz, 1, 1))}\n"
            f"Discriminator\n{summarize(gan.netD, (3, 64, 64))}")
    logger.info("%s", text)
    if is_writer:
        write_text_atomic(run.summary, text)


def make_evaluator(plan: Plan) -> Evaluator | None:
    """The per-epoch FID/IS evaluator, or None with ``--eval-size 0`` / ``--eval-every 0``."""
    cfg = plan.cfg
    if cfg.eval_size == 0 or cfg.eval_every == 0:
        return None
    choice = load_backbone(cfg.inception_weights, plan.device)
    logger.info("FID/IS backbone: %s", choice.backbone.name)
    if choice.is_unavailable:
        logger.warning(choice.is_unavailable)
    cache = Path(cfg.cache_dir) if cfg.cache_dir else default_cache_dir()
    return Evaluator(choice, plan.split.eval, eval_latents(cfg.eval_size, cfg.nz, cfg.seed),
                     plan.device, cache, cfg.image_size, cfg.eval_batch_size,
                     progress=cfg.progress)


def fixed_noise(cfg: Config, device: torch.device) -> torch.Tensor:
    """64 latent vectors drawn once per run from the seed, so snapshots are comparable."""
    gen = torch.Generator().manual_seed(cfg.seed)
    return torch.randn(64, cfg.nz, 1, 1, generator=gen).to(device)


def build_trainer(cfg: Config, run: RunDir, gan: GAN, evaluator: Evaluator | None = None,
                  is_writer: bool = True) -> tuple[Engine, RunContext, dict[str, Any]]:
    """``Engine(training_step)`` for ``gan``, the handlers' context (history, checkpointers and
    loggers on the writer) and what a checkpoint saves; the handlers are not attached yet."""
    scaler_d, scaler_g = make_scalers(gan, cfg.precision)
    augment = DiffAugment(parse_policy(cfg.diffaugment))
    trainer = Engine(make_training_step(gan, Speed(cfg.precision, cfg.channels_last, cfg.compile),
                                        (scaler_d, scaler_g), cfg.loss, augment or None))
    noise = fixed_noise(cfg, gan.device)
    run_state = RunState(noise, {"nz": cfg.nz, "ngf": cfg.ngf, "ndf": cfg.ndf, "nc": 3})
    to_save = {"trainer": trainer, "netG": gan.netG, "netD": gan.netD, "optG": gan.optG,
               "optD": gan.optD, "scaler_d": scaler_d, "scaler_g": scaler_g, "run_state": run_state}
    ctx = RunContext(cfg, run, gan, noise, run_state, is_writer, evaluator)
    if cfg.ema:
        ctx.ema = make_ema(cfg, gan)
        to_save["ema"] = ctx.ema.ema_model
    if is_writer:
        ctx.history = History(run.root)
        ctx.regular = make_checkpointer(run, to_save)
        ctx.best = make_best_checkpointer(run, to_save)
        ctx.loggers = make_trackers(cfg.trackers, cfg.to_dict(), run, ctx.sampler_net, noise,
                                    cfg.snapshot_every)
    return trainer, ctx, to_save


def _build(plan: Plan, is_writer: bool) -> tuple[Engine, RunContext, dict[str, Any]]:
    """The networks (with their summaries) and :func:`build_trainer` around them."""
    cfg = plan.cfg
    gan = build_gan(cfg.nz, cfg.ngf, cfg.ndf, cfg.g_lr, cfg.beta1, plan.device, cfg.sync_bn,
                    lr_d=cfg.d_lr, spectral_norm=cfg.spectral_norm)
    _log_model_summaries(gan, plan.run, is_writer)
    if cfg.channels_last:
        gan.netG.to(memory_format=torch.channels_last)
        gan.netD.to(memory_format=torch.channels_last)
    return build_trainer(cfg, plan.run, gan, make_evaluator(plan), is_writer)


def _restore(plan: Plan, trainer: Engine, ctx: RunContext, to_save: dict[str, Any]) -> None:
    """Load the checkpoint into every object; on the writer, truncate the history after its
    iteration and hand the checkpointers the run's files (later ones move to superseded/)."""
    restore(to_save, plan.checkpoint)
    iteration = trainer.state.iteration
    if iteration % trainer.state.epoch_length:  # ignite's epoch counts finished epochs only
        logger.info("resumed inside epoch %d, at iteration %d", trainer.state.epoch + 1, iteration)
    else:
        logger.info("resumed at epoch %d, iteration %d", trainer.state.epoch, iteration)
    _check_rng(ctx.run_state, plan.cfg, iteration)
    if ctx.is_writer:  # what the resumed run redoes is dropped: the history stays continuous
        ctx.history.truncate_after(iteration)
        moved = adopt_existing(plan.run, ctx.regular, ctx.best, iteration, ctx.history.fids())
        if moved:
            logger.info("moved %d checkpoint(s) written after iteration %d to %s",
                        len(moved), iteration, plan.run.superseded)


def _check_rng(run_state: RunState, cfg: Config, iteration: int) -> None:
    """A rank without a saved RNG state (the checkpoint was written on an interruption, or by
    fewer processes) gets a fresh stream of its own, and the user is told."""
    world, rank = idist.get_world_size(), idist.get_rank()
    if run_state.saved_world_size != world and rank == 0:
        logger.warning("this checkpoint was written by %d process(es) and is resumed on %d: models, "
                       "optimizers and history continue exactly, but the data order and noise from "
                       "here on differ from an uninterrupted run", run_state.saved_world_size, world)
    if run_state.rng_missing:
        manual_seed((cfg.seed * 1_000_003 + rank * 7919 + iteration) % 2**32)
        if world == run_state.saved_world_size:
            logger.warning("rank %d: no saved RNG state in this checkpoint (written on an "
                           "interruption); it continues with a fresh noise stream", rank)


def train(plan: Plan) -> tuple[Engine, GAN]:
    """Build the trainer for ``plan``, run it to the end of its schedule, and return it with
    the trained networks."""
    cfg, is_writer = plan.cfg, idist.get_rank() == 0
    manual_seed(cfg.seed + idist.get_rank())
    if is_writer:
        _start_run_dir(plan)
    if cfg.synthetic:
        logger.info(DEMO_NOTE)
    logger.info("data: %s", plan.split.description)
    logger.info("run directory: %s (device %s)", plan.run, plan.device)
    trainer, ctx, to_save = _build(plan, is_writer)
    if plan.checkpoint is not None:
        _restore(plan, trainer, ctx, to_save)
    elif is_writer:
        atomic_write(plan.run.noise, lambda f: torch.save(ctx.fixed_noise.cpu(), f))
    setup_handlers(trainer, ctx)
    world = idist.get_world_size()  # --batch-size is the global batch, split over processes
    loader = make_train_loader(plan.split.train, cfg.batch_size // world, cfg.num_workers, cfg.seed,
                               world, idist.get_rank(), pin_memory=plan.device.type == "cuda",
                               device=plan.device)
    try:
        trainer.run(loader, max_epochs=cfg.epochs)
    finally:
        if ctx.history is not None:
            ctx.history.close()
        for run_logger in ctx.loggers:
            run_logger.close()
    return trainer, ctx.gan


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


def _worker(local_rank: int, plan: Plan) -> None:
    """One training process (the only one, or one of ``idist.Parallel``'s)."""
    setup_process(plan)
    try:
        with on_sigterm(raise_terminated):
            trainer, _ = train(plan)
    except KeyboardInterrupt as e:
        if idist.get_rank() == 0:
            how = "stopped by SIGTERM" if isinstance(e, Terminated) else "interrupted"
            print(f"\n{how}; a checkpoint was saved. Continue with: "
                  f"python -m animegan_ignite.train --resume {plan.run}", file=sys.stderr)
        if isinstance(e, Terminated):  # an exit status, also from spawned processes
            raise SystemExit(EXIT_TERMINATED) from None
        raise
    except Diverged as e:  # an exit status, not a traceback, also from spawned processes
        if idist.get_rank() == 0:
            print_error(e)
        raise SystemExit(EXIT_DIVERGED) from None
    except OSError as e:
        if not is_write_failure(e):
            raise
        if idist.get_rank() == 0:
            print_error(write_failure_message(
                e, f"The last complete checkpoint and history.jsonl are intact; make room, then "
                f"continue with: python -m animegan_ignite.train --resume {plan.run}"))
        raise SystemExit(EXIT_WRITE_FAILED) from None
    logger.info("done: %d epochs, %d iterations; results in %s", trainer.state.epoch,
                trainer.state.iteration, plan.run)


def rendezvous_port(spawn: int | None) -> int | None:
    """The port spawned processes meet on: MASTER_PORT when set, else one the OS says is free
    (ignite's fixed default, 2222, makes a second run on the same machine fail to start)."""
    if not spawn or spawn < 2 or "MASTER_PORT" in os.environ:
        return None
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _check_still_new(plan: Plan) -> None:
    """A new run's folder was checked before the data set was loaded; a trainer started at the
    same time with the same --output-dir may have filled it since."""
    if plan.checkpoint is None and plan.run.is_run():
        raise RunDirError(f"--output-dir {plan.run} already holds a run (another trainer started "
                          f"there meanwhile); continue it with --resume {plan.run}")


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit status. With ``--nproc-per-node N`` it starts
    N processes (``idist.Parallel``); under torchrun each process runs this."""
    logging.basicConfig(level=logging.INFO, format="%(message)s", force=True)
    logging.raiseExceptions = False  # a full disk must not turn each log line into a traceback
    try:
        # Held for the whole run (spawned processes run inside it): the writer's lock on the run
        # and, in a launching process, SIGTERM passed on to the training processes.
        with ExitStack() as held:
            cfg = make_config(argv)
            writer = int(os.environ.get("RANK", "0")) == 0
            if writer and cfg.resume:
                check_unlocked(RunDir(Path(cfg.output_dir)))
            plan = make_plan(cfg, check_output_dir=writer)
            if writer:  # locked once the checks pass: bad input leaves nothing behind
                held.enter_context(run_lock(plan.run))
                _check_still_new(plan)
            spawn = cfg.nproc_per_node if "WORLD_SIZE" not in os.environ and cfg.backend else None
            if spawn:
                held.enter_context(on_sigterm(forward_to_children))
            with idist.Parallel(backend=cfg.backend, nproc_per_node=spawn,
                                master_port=rendezvous_port(spawn)) as parallel:
                parallel.run(_worker, plan)
    except UserError as e:
        print_error(e)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except SystemExit as e:  # the status a worker chose (a divergence)
        return int(e.code or 0)
    except ProcessExitedException as e:  # a spawned worker's status
        return e.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
