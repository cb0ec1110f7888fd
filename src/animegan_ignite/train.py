"""``python -m animegan_ignite.train``: train a DCGAN on anime faces (or the synthetic demo).

Everything that can fail on bad input (flags, data folder, run directory, checkpoint) is checked
before the first file is written; such errors print one line and exit with status 2.
"""

from __future__ import annotations

import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ignite.distributed as idist
import torch
from ignite.engine import Engine, Events
from ignite.handlers import Checkpoint
from ignite.utils import manual_seed
from torchvision.utils import save_image

from .checkpoint import (
    CheckpointError,
    RunState,
    checkpoint_iteration,
    load_checkpoint,
    make_best_checkpointer,
    make_checkpointer,
    restore,
)
from .config import Config, ConfigError, make_config
from .data import DataError, Split, iterations_per_epoch, make_split, make_train_loader
from .download import DownloadError, fetch
from .engine import (
    GAN,
    SNAPSHOT_DIR,
    Speed,
    attach_epoch_handlers,
    build_gan,
    create_trainer,
    make_scalers,
    save_snapshot,
)
from .evaluation import Evaluator, default_cache_dir, eval_latents
from .history import History
from .inception import BackboneError, load_backbone
from .models import summarize
from .plots import REAL_SAMPLES, export_plots
from .rundir import CONFIG_FILE, NOISE_FILE, SUMMARY_FILE, RunDirError, new_run_dir, write_json_atomic
from .tensorboard_log import attach_tensorboard, log_epoch_metrics

logger = logging.getLogger("animegan_ignite")
USER_ERRORS = (ConfigError, DataError, CheckpointError, RunDirError, BackboneError, DownloadError)
DEMO_NOTE = (
    "Training on the built-in SYNTHETIC demo: procedurally drawn cartoon faces at a CPU-sized "
    "schedule. For real anime faces, get the Anime Face Dataset (Kaggle: splcher/animefacedataset) "
    "and run: python -m animegan_ignite.train --data-dir PATH/TO/images")


@dataclass
class Plan:
    """Everything checked and loaded before training starts."""

    cfg: Config
    device: torch.device
    run_dir: Path
    split: Split
    checkpoint: dict[str, Any] | None


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda: PyTorch sees no CUDA GPU here; use --device cpu or auto")
    return torch.device(name)


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
    """Check the device, run directory, checkpoint and data set (raises a USER_ERRORS type).
    Under torchrun only rank 0 checks the output folder (the others may look after rank 0
    has started writing to it)."""
    device = resolve_device(cfg.device)
    check_precision(cfg.precision, device)
    checkpoint = None
    if cfg.resume:
        checkpoint = load_checkpoint(cfg.resume)
        run_dir = Path(cfg.output_dir)
        done, partial = divmod(checkpoint_iteration(checkpoint), checkpoint["trainer"]["epoch_length"])
        if done >= cfg.epochs and not partial:
            raise ConfigError(f"--resume {cfg.resume}: the run already finished {done} epochs; "
                              f"pass --epochs N with N > {done} to train longer")
    else:
        run_dir = new_run_dir(cfg.output_dir, check=check_output_dir)
    if cfg.download:
        cfg.data_dir = str(fetch(cfg.download, Path(cfg.cache_dir) if cfg.cache_dir else None))
        cfg.download = None  # saved config (and --resume) then use the downloaded folder
    cache = (Path(cfg.cache_dir) if cfg.cache_dir else default_cache_dir()) if cfg.cache else None
    split = make_split(cfg.data_dir, cfg.eval_size, cfg.batch_size, cfg.seed, cfg.synthetic_size,
                       cfg.image_size, progress=cfg.progress, cache_dir=cache,
                       num_workers=cfg.num_workers)
    if checkpoint is not None:
        _check_epoch_length(checkpoint, iterations_per_epoch(len(split.train), cfg.batch_size,
                                                             cfg.world_size))
    return Plan(cfg, device, run_dir, split, checkpoint)


def _check_epoch_length(checkpoint: dict[str, Any], epoch_length: int) -> None:
    saved = checkpoint["trainer"]["epoch_length"]
    if saved != epoch_length:
        raise ConfigError(f"the checkpoint's epochs have {saved} iterations but this data set and "
                          f"batch size give {epoch_length}; resume with the run's --data-dir and "
                          "--batch-size")


def _log_to_file(run_dir: Path) -> None:
    handler = logging.FileHandler(run_dir / "train.log")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    logging.getLogger().addHandler(handler)


def _fixed_noise(plan: Plan) -> torch.Tensor:
    """64 latent vectors drawn once per run from the seed, so snapshots are comparable."""
    gen = torch.Generator().manual_seed(plan.cfg.seed)
    return torch.randn(64, plan.cfg.nz, 1, 1, generator=gen).to(plan.device)


def _start_run_dir(plan: Plan) -> None:
    run_dir = plan.run_dir
    (run_dir / SNAPSHOT_DIR).mkdir(parents=True, exist_ok=True)
    _log_to_file(run_dir)
    write_json_atomic(run_dir / CONFIG_FILE, plan.cfg.to_dict())
    if not (run_dir / REAL_SAMPLES).exists():  # 64 held-out faces for the real-vs-fake figure
        source = plan.split.eval if len(plan.split.eval) else plan.split.train
        reals = torch.stack([source[i][0] for i in range(min(64, len(source)))])
        save_image(reals, run_dir / REAL_SAMPLES, nrow=8, normalize=True, value_range=(-1, 1))


def _log_model_summaries(gan: GAN, run_dir: Path, writer: bool) -> None:
    """torchsummary's tables for G and D: printed, and saved as RUN_DIR/model_summary.txt."""
    text = (f"Generator\n{summarize(gan.netG, (gan.nz, 1, 1))}\n"
            f"Discriminator\n{summarize(gan.netD, (3, 64, 64))}")
    logger.info("%s", text)
    if writer:
        (run_dir / SUMMARY_FILE).write_text(text)


def make_evaluator(plan: Plan) -> Evaluator | None:
    """The per-epoch FID/IS evaluator, or None with ``--eval-size 0``."""
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


class EpochEnd:
    """After each epoch's checkpoint: FID/IS when due, the best-FID checkpoint, the history
    record, the log line and the plots."""

    def __init__(self, cfg: Config, run_dir: Path, netG: torch.nn.Module, history: History | None,
                 evaluator: Evaluator | None, best: Checkpoint | None, tb=None) -> None:
        self.cfg, self.run_dir, self.netG, self.history = cfg, run_dir, netG, history
        self.evaluator, self.best, self.tb = evaluator, best, tb

    def __call__(self, engine: Engine) -> None:
        epoch, cfg = engine.state.epoch, self.cfg
        record = {"kind": "epoch", "epoch": epoch, "iteration": engine.state.iteration,
                  "train_seconds": round(engine.state.train_seconds, 3),
                  **{k: engine.state.metrics[k] for k in ("loss_d", "loss_g")}}
        line = f"epoch {epoch}/{cfg.epochs}: Loss_D {record['loss_d']:.4f}  Loss_G {record['loss_g']:.4f}"
        if self.evaluator is not None and (epoch % cfg.eval_every == 0 or epoch == cfg.epochs):
            result = self.evaluator(self.netG)  # every process takes part
            record.update(result.to_dict())
            engine.state.metrics["fid"] = result.fid
            if self.best is not None:
                self.best(engine)
            is_text = (f"{result.is_mean:.3f} ± {result.is_std:.3f}" if result.is_mean is not None
                       else "unavailable")
            line += f"  FID {result.fid:.2f}  IS {is_text}"
            timing = f"train {record['train_seconds']:.1f} s, eval {result.eval_seconds:.1f} s"
        else:
            timing = f"train {record['train_seconds']:.1f} s"
        if self.tb is not None:
            log_epoch_metrics(self.tb, record, engine.state.iteration)
        if self.history is not None:
            self.history.append(record)
            export_plots(self.run_dir)
        logger.info("%s  (%s)", line, timing)


def _build(plan: Plan, history: History | None, fixed_noise: torch.Tensor
           ) -> tuple[GAN, Engine, dict[str, Any]]:
    """The networks, the trainer with its per-iteration handlers, and what a checkpoint saves."""
    cfg = plan.cfg
    gan = build_gan(cfg.nz, cfg.ngf, cfg.ndf, cfg.lr, cfg.beta1, plan.device, cfg.sync_bn)
    _log_model_summaries(gan, plan.run_dir, history is not None)
    if cfg.channels_last:
        gan.netG.to(memory_format=torch.channels_last)
        gan.netD.to(memory_format=torch.channels_last)
    scaler_d, scaler_g = make_scalers(gan, cfg.precision)
    trainer = create_trainer(gan, fixed_noise, plan.run_dir, history, cfg.snapshot_every,
                             progress=cfg.progress, init_seed=cfg.seed,
                             speed=Speed(cfg.precision, cfg.channels_last, cfg.compile),
                             scalers=(scaler_d, scaler_g))
    model_config = {"nz": cfg.nz, "ngf": cfg.ngf, "ndf": cfg.ndf, "nc": 3}
    to_save = {"trainer": trainer, "netG": gan.netG, "netD": gan.netD, "optG": gan.optG,
               "optD": gan.optD, "scaler_d": scaler_d, "scaler_g": scaler_g,
               "run_state": RunState(fixed_noise, model_config)}
    return gan, trainer, to_save


def _restore(checkpoint: dict[str, Any], to_load: dict[str, Any], trainer: Engine,
             history: History | None) -> None:
    restore(to_load, checkpoint)
    logger.info("resumed at epoch %d, iteration %d", trainer.state.epoch, trainer.state.iteration)
    if history is not None:  # what the resumed run redoes is dropped: the history stays continuous
        history.truncate_after(trainer.state.iteration)


def train(plan: Plan) -> tuple[Engine, GAN]:
    """Build the trainer for ``plan``, run it to the end of its schedule, and return it with
    the trained networks."""
    cfg, run_dir, writer = plan.cfg, plan.run_dir, idist.get_rank() == 0
    manual_seed(cfg.seed + idist.get_rank())
    if writer:
        _start_run_dir(plan)
    if cfg.synthetic:
        logger.info(DEMO_NOTE)
    logger.info("data: %s", plan.split.description)
    logger.info("run directory: %s (device %s)", run_dir, plan.device)
    evaluator = make_evaluator(plan)

    fixed_noise = _fixed_noise(plan)
    history = History(run_dir) if writer else None
    gan, trainer, to_save = _build(plan, history, fixed_noise)
    best = make_best_checkpointer(run_dir, to_save) if writer else None
    checkpointer = make_checkpointer(run_dir, {**to_save, "best": best}) if writer else None
    if plan.checkpoint is not None:
        _restore(plan.checkpoint, {**to_save, "best": best} if best else to_save, trainer, history)
    elif writer:
        torch.save(fixed_noise.cpu(), run_dir / NOISE_FILE)

    tb = (attach_tensorboard(trainer, run_dir, gan.netG, fixed_noise, cfg.snapshot_every)
          if writer and cfg.tensorboard else None)
    epoch_end = EpochEnd(cfg, run_dir, gan.netG, history, evaluator, best, tb)
    attach_epoch_handlers(trainer, checkpointer, epoch_end,
                          on_interrupt=lambda engine: export_plots(run_dir) if writer else None)

    @trainer.on(Events.TERMINATE)
    def on_nan(engine: Engine) -> None:
        logger.error("training stopped at iteration %d: a loss is NaN or infinite. The last good "
                     "checkpoint is kept; resume from it with a lower --lr", engine.state.iteration)

    @trainer.on(Events.COMPLETED)
    def final_snapshot(engine: Engine) -> None:
        if writer:
            save_snapshot(gan.netG, fixed_noise, run_dir / SNAPSHOT_DIR / "final.png")

    world = idist.get_world_size()  # --batch-size is the global batch, split over processes
    loader = make_train_loader(plan.split.train, cfg.batch_size // world, cfg.num_workers, cfg.seed,
                               world, idist.get_rank(), pin_memory=plan.device.type == "cuda",
                               device=plan.device)
    try:
        trainer.run(loader, max_epochs=cfg.epochs)
    finally:
        if history is not None:
            history.close()
        if tb is not None:
            tb.close()
    return trainer, gan


def setup_process(plan: Plan) -> None:
    """Per-process setup inside ``idist.Parallel``: quiet logs off rank 0, this process's
    device, rank 0's run directory (torchrun ranks each made their own timestamp), and cuDNN's
    autotuner on a GPU (as pytorch/examples' DCGAN)."""
    rank = idist.get_rank()
    logging.basicConfig(level=logging.INFO if rank == 0 else logging.WARNING, format="%(message)s",
                        force=True)
    if idist.get_world_size() > 1:
        plan.device = idist.device()
        plan.run_dir = Path(idist.broadcast(str(plan.run_dir), src=0, safe_mode=True))
    if plan.device.type == "cuda":  # fixed 64x64 shapes: cuDNN times its kernels once, keeps the fastest
        torch.backends.cudnn.benchmark = True


def _worker(local_rank: int, plan: Plan) -> None:
    """One training process (the only one, or one of ``idist.Parallel``'s)."""
    setup_process(plan)
    try:
        trainer, _ = train(plan)
    except KeyboardInterrupt:
        if idist.get_rank() == 0:
            print(f"\ninterrupted; a checkpoint was saved. Continue with: "
                  f"python -m animegan_ignite.train --resume {plan.run_dir}", file=sys.stderr)
        raise
    logger.info("done: %d epochs, %d iterations; results in %s", trainer.state.epoch,
                trainer.state.iteration, plan.run_dir)


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit status. With ``--nproc-per-node N`` it starts
    N processes (``idist.Parallel``); under torchrun each process runs this."""
    logging.basicConfig(level=logging.INFO, format="%(message)s", force=True)
    try:
        cfg = make_config(argv)
        plan = make_plan(cfg, check_output_dir=int(os.environ.get("RANK", "0")) == 0)
    except USER_ERRORS as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    spawn = cfg.nproc_per_node if "WORLD_SIZE" not in os.environ and cfg.backend else None
    try:
        with idist.Parallel(backend=cfg.backend, nproc_per_node=spawn) as parallel:
            parallel.run(_worker, plan)
    except KeyboardInterrupt:
        return 130
    except USER_ERRORS as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
