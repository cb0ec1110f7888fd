"""The Ignite ``Engine`` around one DCGAN ``training_step``, and the handlers that make it a
trainer: weight init, loss history, fixed-noise snapshots, progress bar, NaN guard,
checkpoints, and a last checkpoint plus plots when the run is interrupted."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ignite.distributed as idist
import torch
from ignite.engine import Engine, Events
from ignite.handlers import Checkpoint, ProgressBar, TerminateOnNan
from ignite.metrics import RunningAverage
from torch import nn
from torchvision.utils import save_image

from .checkpoint import saved_iteration
from .history import History
from .models import Discriminator, Generator, dcgan_weights_init, unwrap

logger = logging.getLogger(__name__)
OUTPUT_KEYS = ("loss_d", "loss_g", "d_x", "d_g_z1", "d_g_z2")
SNAPSHOT_DIR = "snapshots"


@dataclass
class GAN:
    """The two networks, their optimizers, and where they live."""

    netG: nn.Module
    netD: nn.Module
    optG: torch.optim.Optimizer
    optD: torch.optim.Optimizer
    device: torch.device
    nz: int


def build_gan(nz: int, ngf: int, ndf: int, lr: float, beta1: float, device: torch.device,
              sync_bn: bool = False) -> GAN:
    """G and D with Adam(lr, betas=(beta1, 0.999)). With several processes the models go
    through ``idist.auto_model`` (DistributedDataParallel, optionally SyncBatchNorm); with one,
    they stay plain modules on ``device`` (auto_model would also move them to the GPU when the
    user asked for the CPU, and wrap them in DataParallel on a multi-GPU machine)."""
    netG, netD = Generator(nz, ngf).to(device), Discriminator(ndf).to(device)
    if idist.get_world_size() > 1:
        netG, netD = idist.auto_model(netG, sync_bn=sync_bn), idist.auto_model(netD, sync_bn=sync_bn)
    optG = idist.auto_optim(torch.optim.Adam(netG.parameters(), lr=lr, betas=(beta1, 0.999)))
    optD = idist.auto_optim(torch.optim.Adam(netD.parameters(), lr=lr, betas=(beta1, 0.999)))
    return GAN(netG, netD, optG, optD, device, nz)


PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass
class Speed:
    """How the step runs: autocast precision, memory format, torch.compile."""

    precision: str = "fp32"
    channels_last: bool = False
    compile: bool = False


def make_scalers(gan: GAN, precision: str) -> tuple[torch.amp.GradScaler, torch.amp.GradScaler]:
    """One GradScaler per optimizer (enabled for fp16 only): each network's loss scale adapts
    to its own gradients, and each ``step`` is followed by its own ``update``."""
    enabled = precision == "fp16"
    return (torch.amp.GradScaler(gan.device.type, enabled=enabled),
            torch.amp.GradScaler(gan.device.type, enabled=enabled))


def make_training_step(gan: GAN, speed: Speed | None = None,
                       scalers: tuple[torch.amp.GradScaler, torch.amp.GradScaler] | None = None
                       ) -> Callable[[Engine, Any], dict[str, float]]:
    """One DCGAN iteration: D on a real batch (target 1) and a fake batch (target 0), the two
    BCE losses summed; then G on the same fake batch with target 1. Fresh noise every step.
    BCE is taken on D's logits (BCEWithLogitsLoss), the only form autocast accepts."""
    speed = speed or Speed()
    criterion = nn.BCEWithLogitsLoss()
    optG, optD = gan.optG, gan.optD
    netG = torch.compile(gan.netG) if speed.compile else gan.netG  # the originals are saved
    netD = torch.compile(gan.netD) if speed.compile else gan.netD
    dtype = PRECISIONS[speed.precision]
    scaler_d, scaler_g = scalers or make_scalers(gan, speed.precision)
    fmt = torch.channels_last if speed.channels_last else torch.contiguous_format

    def autocast():
        return torch.autocast(gan.device.type, dtype=dtype, enabled=dtype is not None)

    def training_step(engine: Engine, batch: Any) -> dict[str, float]:
        real = (batch[0] if isinstance(batch, (list, tuple)) else batch).to(
            gan.device, non_blocking=True).contiguous(memory_format=fmt)
        b = real.size(0)
        ones = torch.ones(b, device=gan.device)
        zeros = torch.zeros(b, device=gan.device)
        gan.netG.train()
        gan.netD.train()

        optD.zero_grad(set_to_none=True)
        with autocast():
            logits_real = netD(real)
            fake = netG(torch.randn(b, gan.nz, 1, 1, device=gan.device))
            logits_fake = netD(fake.detach())
            loss_d = criterion(logits_real.float(), ones) + criterion(logits_fake.float(), zeros)
        scaler_d.scale(loss_d).backward()
        scaler_d.step(optD)
        scaler_d.update()

        optG.zero_grad(set_to_none=True)
        with autocast():
            logits_g = netD(fake)
            loss_g = criterion(logits_g.float(), ones)
        scaler_g.scale(loss_g).backward()
        scaler_g.step(optG)
        scaler_g.update()

        # One device sync for all five numbers instead of five .item() calls.
        values = torch.stack([
            loss_d.detach(), loss_g.detach(), torch.sigmoid(logits_real.detach().float()).mean(),
            torch.sigmoid(logits_fake.detach().float()).mean(),
            torch.sigmoid(logits_g.detach().float()).mean(),
        ]).tolist()
        return dict(zip(OUTPUT_KEYS, values, strict=True))

    return training_step


@torch.no_grad()
def generate(netG: nn.Module, noise: torch.Tensor) -> torch.Tensor:
    """G(noise) in eval mode (BatchNorm running statistics: each image depends only on its own
    latent, not on its batch-mates), on the CPU, in [-1, 1]."""
    netG = unwrap(netG)
    was_training = netG.training
    netG.eval()
    try:
        return netG(noise).float().cpu()
    finally:
        netG.train(was_training)


def save_snapshot(netG: nn.Module, fixed_noise: torch.Tensor, path: Path) -> None:
    """The 8x8 grid of G(fixed_noise) as a PNG."""
    path.parent.mkdir(parents=True, exist_ok=True)
    images = generate(netG, fixed_noise)
    save_image(images, path, nrow=8, normalize=True, value_range=(-1, 1), padding=2)


def create_trainer(gan: GAN, fixed_noise: torch.Tensor, run_dir: Path, history: History | None,
                   snapshot_every: int, progress: bool = True, init_seed: int = 0,
                   speed: Speed | None = None, scalers=None) -> Engine:
    """``Engine(training_step)`` with the per-iteration handlers. ``history`` is given on the
    process that writes files (rank 0) and None elsewhere; the epoch-level handlers come from
    :func:`attach_epoch_handlers` once the checkpointer (which saves the trainer) exists."""
    trainer = Engine(make_training_step(gan, speed, scalers))

    @trainer.on(Events.STARTED)
    def init_weights(engine: Engine) -> None:
        if engine.state.iteration == 0:  # a resumed run keeps the weights it loaded
            # Same seed on every process: DDP synchronised the weights when it wrapped the
            # models, before this init, so each rank must draw the same ones.
            cuda = [gan.device.index or 0] if gan.device.type == "cuda" else []
            with torch.random.fork_rng(devices=cuda):  # training's noise stream is untouched
                torch.manual_seed(init_seed)
                gan.netG.apply(dcgan_weights_init)
                gan.netD.apply(dcgan_weights_init)

    @trainer.on(Events.EPOCH_STARTED)
    def start_epoch(engine: Engine) -> None:
        sampler = getattr(engine.state.dataloader, "sampler", None)
        if hasattr(sampler, "set_epoch"):
            sampler.set_epoch(engine.state.epoch - 1)  # order depends on (seed, epoch) only
        engine.state.epoch_started_at = time.perf_counter()

    trainer.add_event_handler(Events.ITERATION_COMPLETED, TerminateOnNan())
    for key in ("loss_d", "loss_g"):
        RunningAverage(output_transform=lambda out, k=key: out[k]).attach(trainer, key)
    if history is not None:
        if progress:
            ProgressBar(persist=True).attach(trainer, metric_names=["loss_d", "loss_g"])

        @trainer.on(Events.ITERATION_COMPLETED)
        def store_losses(engine: Engine) -> None:
            history.append({"kind": "iteration", "iteration": engine.state.iteration,
                            "epoch": engine.state.epoch, **engine.state.output})

    @trainer.on(Events.STARTED)
    @trainer.on(Events.ITERATION_COMPLETED)  # after store_losses: handlers run in order
    def mark_completed(engine: Engine) -> None:
        engine.state.completed_iteration = engine.state.iteration

    if history is None:
        return trainer

    @trainer.on(Events.ITERATION_COMPLETED(every=snapshot_every))
    def snapshot(engine: Engine) -> None:
        save_snapshot(gan.netG, fixed_noise,
                      run_dir / SNAPSHOT_DIR / f"iter_{engine.state.iteration:07d}.png")

    return trainer


def attach_epoch_handlers(trainer: Engine, checkpointer: Checkpoint | None,
                          on_epoch_end: Callable[[Engine], None],
                          on_interrupt: Callable[[Engine], None]) -> None:
    """At each epoch end: the epoch's training time, a checkpoint, then ``on_epoch_end``
    (evaluation, history record, plots). On an exception or Ctrl-C: a last checkpoint and
    ``on_interrupt`` (plots), then the exception goes on up."""

    @trainer.on(Events.EPOCH_COMPLETED)
    def end_epoch(engine: Engine) -> None:
        engine.state.train_seconds = time.perf_counter() - engine.state.epoch_started_at
        if checkpointer is not None:
            checkpointer(engine)
        on_epoch_end(engine)

    @trainer.on(Events.EXCEPTION_RAISED)
    def save_before_exit(engine: Engine, e: BaseException) -> None:
        # ignite calls this handler instead of raising: save what there is, then re-raise.
        # Interrupted inside an iteration, state.iteration is one ahead of the last finished
        # (and recorded) one: label the checkpoint with the finished one, so that the resumed
        # run redoes the unfinished iteration and the history stays continuous.
        engine.state.iteration = getattr(engine.state, "completed_iteration", engine.state.iteration)
        if checkpointer is not None and engine.state.iteration > saved_iteration(checkpointer):
            checkpointer(engine)
        on_interrupt(engine)
        raise e

