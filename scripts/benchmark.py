"""Every speed figure the README and docs/benchmarks.md quote, measured side by side in one run.

    python scripts/benchmark.py --quick                      # every ratio in under 10 min on 2 cores
    python scripts/benchmark.py --data-dir DIR --device cuda # the full measurement, on a GPU

Sections (``--only`` picks some), each contender measured in turns (a, b, a, b, ...) so that a
machine that speeds up or slows down midway affects all alike, medians reported as ratios:

  startup     ``--help`` and a bad flag of each command vs ``python -c "import torch"``;
  step        the training step with D frozen in G's step (this trainer) vs trainable (the
              PyTorch tutorial's), after checking both give identical losses;
  augment     the step with DiffAugment at a fixed p = 1 vs adaptive (--augment-p auto, p
              mid-way: every operation masked per image), the demo's width-16 networks;
  objectives  the same step under each objective with its penalties (bce; bce + lazy R1;
              rpgan + lazy R1 + R2; wgan-gp), as ratios to the default's;
  trainer     (a) a plain PyTorch loop written like the DCGAN tutorial (ImageFolder +
              DataLoader), (b) this trainer (ignite Engine and every handler of a real run but
              the evaluation), (c) (b) with --cache, (d) (c) with the fastest precision /
              memory-format / compile option of the device; and the handlers' own cost per
              iteration, timed by ignite's BasicTimeProfiler;
  data        batches/s of the DataLoader path vs the cache; decoding every file once with 0
              vs --workers processes;
  demo        one synthetic-demo epoch with the faces drawn every epoch by the workers vs drawn
              once into memory (what --cache does on the demo);
  backend     the feature network (--inception-weights) on torch vs on ONNX Runtime
              (--eval-backend), the same images: images/s and the largest feature difference;
  evaluation  one epoch-end evaluation of --eval-size images with this project's evaluator
              (cached real features, one Inception pass per generated image) vs ignite's FID +
              InceptionScore as the seed notebook used them, on the same backbone (up to 1,000
              images); and what KID, precision/recall and diversity add to FID alone.

Without --data-dir the synthetic demo's faces are written to a temporary folder as JPEG files.
Progress (which section, contender and repeat) goes to stderr; the table to stdout; --out FILE
writes it as JSON.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
from ignite.engine import Events
from ignite.handlers import BasicTimeProfiler
from torch import nn
from torchvision import datasets

from animegan_ignite.config import Config, default_of, make_config, parse_policy
from animegan_ignite.data.cache import CachedBatches, load_or_build
from animegan_ignite.data.loading import default_transform, find_images, make_split, make_train_loader
from animegan_ignite.data.synthetic import SyntheticFaces
from animegan_ignite.device import cpu_has_bf16
from animegan_ignite.evaluation.backbones import load_backbone
from animegan_ignite.evaluation.features import RealFeatures, to_uint8
from animegan_ignite.evaluation.metrics import fid_from_features
from animegan_ignite.evaluation.quality import Evaluator, eval_latents
from animegan_ignite.evaluation.scores import of_features as scores
from animegan_ignite.networks import gan as gan_module
from animegan_ignite.networks.architecture import Architecture
from animegan_ignite.networks.augment import DiffAugment
from animegan_ignite.networks.gan import Speed, build_gan
from animegan_ignite.networks.models import Discriminator, Generator, dcgan_weights_init
from animegan_ignite.training.trainer import build_run, make_plan

COMMANDS = ("train", "evaluate", "generate", "serve", "plot")
SECTIONS = ("startup", "step", "augment", "objectives", "trainer", "data", "demo", "backend",
            "evaluation")
SEED_EVALUATION_MAX = 1000
QUICK = {"batch_size": 32, "warmup": 2, "iters": 5, "repeats": 3, "eval_size": 100,
         "demo_faces": 800, "faces": 1500, "backend_images": 100}
FULL = {"batch_size": 128, "warmup": 3, "iters": 20, "repeats": 5, "eval_size": 500,
        "demo_faces": 2528, "faces": 6000, "backend_images": 500}

STARTED = time.perf_counter()


def say(message: str) -> None:
    print(f"{time.perf_counter() - STARTED:6.0f} s  {message}", file=sys.stderr, flush=True)


def interleaved_medians(section: str, contenders: dict[str, Callable[[], float]],
                        repeats: int) -> dict[str, float]:
    """The median of ``repeats`` measurements of each contender, taken in turns."""
    samples: dict[str, list[float]] = {name: [] for name in contenders}
    for r in range(repeats):
        for name, measure in contenders.items():
            say(f"[{section}] {name}: repeat {r + 1}/{repeats}")
            samples[name].append(measure())
    return {name: statistics.median(values) for name, values in samples.items()}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


# --- startup ------------------------------------------------------------------------------------


def _wall(argv: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, capture_output=True, timeout=300)
    return time.perf_counter() - start


def startup(args: argparse.Namespace) -> dict:
    contenders = {"import torch": lambda: _wall([sys.executable, "-c", "import torch"])}
    for command in COMMANDS:
        module = [sys.executable, "-m", f"animegan_ignite.{command}"]
        contenders[f"{command} --help"] = lambda m=module: _wall([*m, "--help"])
        contenders[f"{command} --bogus"] = lambda m=module: _wall([*m, "--bogus"])
    medians = interleaved_medians("startup", contenders, args.repeats)
    torch_s = medians.pop("import torch")
    print(f"\nstartup, median of {args.repeats} (wall seconds of a fresh process):")
    print(f"  python -c 'import torch': {torch_s:.2f} s")
    for name, seconds in medians.items():
        print(f"  {name:22s} {seconds:.2f} s ({seconds / torch_s:.2f}x the torch import)")
    return {"import_torch_s": torch_s, "commands_s": medians,
            "slowest_share_of_torch_import": max(medians.values()) / torch_s}


# --- the training step --------------------------------------------------------------------------


def _step_runner(frozen_d: bool, width: int, batch: int, device: torch.device):
    """A fresh GAN (seed 0) and its step with DiffAugment; without ``frozen_d``, gan.frozen is a
    no-op while the step runs (the step looks it up at every call)."""
    torch.manual_seed(0)
    gan = build_gan(Architecture(100, width, width), 2e-4, 0.5, device)
    gan.netG.apply(dcgan_weights_init)
    gan.netD.apply(dcgan_weights_init)
    step = gan_module.make_training_step(gan, augment=DiffAugment(parse_policy("color,translation")))
    real = torch.rand(batch, 3, 64, 64, device=device) * 2 - 1

    def run(n: int) -> list[dict[str, float]]:
        saved = gan_module.frozen
        if not frozen_d:
            gan_module.frozen = lambda net: contextlib.nullcontext()
        try:
            return [step(None, real) for _ in range(n)]
        finally:
            gan_module.frozen = saved
    return run


def _seconds_per_step(frozen_d: bool, args: argparse.Namespace) -> float:
    run = _step_runner(frozen_d, 64, args.batch_size, args.device)
    run(args.warmup)
    _sync(args.device)
    start = time.perf_counter()
    run(args.iters)
    _sync(args.device)
    return (time.perf_counter() - start) / args.iters


def step(args: argparse.Namespace) -> dict:
    torch.manual_seed(1)
    frozen = _step_runner(True, 64, args.batch_size, args.device)(3)
    torch.manual_seed(1)
    trainable = _step_runner(False, 64, args.batch_size, args.device)(3)
    if frozen != trainable:
        raise SystemExit(f"the two steps differ: {frozen} vs {trainable}")
    medians = interleaved_medians("step", {
        "D trainable in G's step": lambda: _seconds_per_step(False, args),
        "D frozen in G's step": lambda: _seconds_per_step(True, args)}, args.repeats)
    plain, ours = medians.values()
    print(f"\ntraining step, full size, batch {args.batch_size}, DiffAugment, median of "
          f"{args.repeats} x {args.iters} steps (losses of 3 steps identical):")
    print(f"  D trainable in G's step (the tutorial's): {plain * 1000:.1f} ms")
    print(f"  D frozen in G's step (this trainer's):    {ours * 1000:.1f} ms ({plain / ours:.2f}x faster)")
    return {"trainable_ms": plain * 1000, "frozen_ms": ours * 1000, "speedup": plain / ours}


# --- adaptive augmentation ----------------------------------------------------------------------


def _augment_step_seconds(p: float | None, args: argparse.Namespace, held_out: bool = False
                          ) -> float:
    """Seconds per step of the demo-sized networks with DiffAugment at a fixed p = 1 (None) or
    an adaptive controller's p; the controller's handler runs after each step as in training,
    with ``held_out`` D's pass over a held-out batch every 4 steps (--ada-signal rv)."""
    from ignite.engine import Engine

    from animegan_ignite.networks.augment import AdaptiveAugment

    torch.manual_seed(0)
    gan = build_gan(Architecture(100, 16, 16), 5e-4, 0.5, args.device)
    augment = DiffAugment(parse_policy("color,translation"), 1.0 if p is None else p)
    real = torch.rand(args.batch_size, 3, 64, 64, device=args.device) * 2 - 1
    probe = gan_module.make_held_out_probe(gan, torch.rand(512, 3, 64, 64) * 2 - 1, args.batch_size,
                                           augment) if held_out else None
    ada = AdaptiveAugment(augment, p is not None, 0.6, 100, args.batch_size, probe=probe)
    step = gan_module.make_training_step(gan, augment=augment)
    engine = Engine(lambda e, b: None)

    def run(n: int) -> None:
        for _ in range(n):
            engine.state.iteration += 1
            engine.state.output = step(engine, real)
            ada(engine)
            if p is not None:
                augment.p = p  # hold it mid-way: every operation masked

    run(args.warmup)
    _sync(args.device)
    start = time.perf_counter()
    run(args.iters * 4)
    _sync(args.device)
    return (time.perf_counter() - start) / (args.iters * 4)


def augment(args: argparse.Namespace) -> dict:
    medians = interleaved_medians("augment", {
        "fixed p = 1": lambda: _augment_step_seconds(None, args),
        "adaptive (p = 0.5)": lambda: _augment_step_seconds(0.5, args),
        "adaptive by r_v": lambda: _augment_step_seconds(0.5, args, held_out=True)}, args.repeats)
    fixed, adaptive, by_rv = medians.values()
    print(f"\nDiffAugment, the demo's width-16 networks, batch {args.batch_size}, median of "
          f"{args.repeats} x {args.iters * 4} steps:")
    print(f"  fixed p = 1: {fixed * 1000:.1f} ms per step; adaptive (r_t): {adaptive * 1000:.1f} ms "
          f"({adaptive / fixed:.3f}x); adaptive (r_v, D on held-out faces every 4 steps): "
          f"{by_rv * 1000:.1f} ms ({by_rv / fixed:.3f}x)")
    return {"fixed_ms": fixed * 1000, "adaptive_ms": adaptive * 1000, "cost": adaptive / fixed,
            "rv_ms": by_rv * 1000, "rv_cost": by_rv / fixed}


# Each objective with its penalties as the candidates of docs/recipes.md run them (the flags of
# scripts/ablate.py's variants): (--loss, --r1-gamma, --r2-gamma), R1/R2 every 4 steps.
OBJECTIVE_CONTENDERS = {"bce (default)": ("bce", 0.0, 0.0), "bce + R1": ("bce", 0.1, 0.0),
                        "rpgan + R1 + R2": ("rpgan", 0.1, 0.1), "wgan-gp": ("wgan-gp", 0.0, 0.0)}


def _objective_step_seconds(loss: str, r1: float, r2: float, args: argparse.Namespace) -> float:
    """Seconds per step of the width-16 networks with DiffAugment under one objective, in an
    Engine (the penalties are due by its iteration), over a multiple of the lazy interval."""
    from ignite.engine import Engine

    from animegan_ignite.networks.objectives import penalties

    torch.manual_seed(0)
    gan = build_gan(Architecture(100, 16, 16), 5e-4, 0.5, args.device)
    step = gan_module.make_training_step(gan, loss=loss, augment=DiffAugment(parse_policy(
        "color,translation")), penalties=penalties(loss, 4, r1=r1, r2=r2))
    real = torch.rand(args.batch_size, 3, 64, 64, device=args.device) * 2 - 1
    engine = Engine(step)
    engine.run([real] * 4)  # warm-up
    _sync(args.device)
    start = time.perf_counter()
    engine.run([real] * (args.iters * 4))
    _sync(args.device)
    return (time.perf_counter() - start) / (args.iters * 4)


def objectives(args: argparse.Namespace) -> dict:
    medians = interleaved_medians("objectives", {
        name: (lambda c=c: _objective_step_seconds(*c, args))
        for name, c in OBJECTIVE_CONTENDERS.items()}, args.repeats)
    base = medians["bce (default)"]
    print(f"\nObjectives, width-16 networks with DiffAugment, batch {args.batch_size}, median of "
          f"{args.repeats} x {args.iters * 4} steps (R1/R2 every 4 steps, wgan-gp's every step):")
    for name, seconds in medians.items():
        print(f"  {name}: {seconds * 1000:.1f} ms per step ({seconds / base:.2f}x)")
    return {name: {"ms": seconds * 1000, "cost": seconds / base} for name, seconds in medians.items()}


# --- the trainer against a plain loop -----------------------------------------------------------


def plain_tutorial_loop(data_dir: str, args: argparse.Namespace) -> float:
    """(a): the PyTorch DCGAN tutorial's loop. Returns images/s after the warm-up."""
    device, batch = args.device, args.batch_size
    dataset = datasets.ImageFolder(root=data_dir, transform=default_transform(64))
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch, shuffle=True,
                                         num_workers=args.workers, drop_last=True)
    netG, netD = Generator().to(device), Discriminator().to(device)
    netG.apply(dcgan_weights_init)
    netD.apply(dcgan_weights_init)
    criterion = nn.BCEWithLogitsLoss()
    optD = torch.optim.Adam(netD.parameters(), lr=2e-4, betas=(0.5, 0.999))
    optG = torch.optim.Adam(netG.parameters(), lr=2e-4, betas=(0.5, 0.999))
    start = None
    for i, (real, _) in enumerate(loader):
        if i == args.warmup:
            _sync(device)
            start = time.perf_counter()
        if i == args.warmup + args.iters:
            break
        real = real.to(device)
        b = real.size(0)
        netD.zero_grad()
        label = torch.full((b,), 1.0, device=device)
        errD_real = criterion(netD(real), label)
        errD_real.backward()
        fake = netG(torch.randn(b, 100, 1, 1, device=device))
        label.fill_(0.0)
        errD_fake = criterion(netD(fake.detach()), label)
        errD_fake.backward()
        optD.step()
        netG.zero_grad()
        label.fill_(1.0)
        errG = criterion(netD(fake), label)
        errG.backward()
        optG.step()
        _ = (errD_real + errD_fake).item(), errG.item()  # the tutorial logs these every step
    _sync(device)
    return args.iters * batch / (time.perf_counter() - start)


def run_trainer(flags: list[str], args: argparse.Namespace, max_epochs: int,
                epoch_length: int | None, marks, profiler: BasicTimeProfiler | None = None
                ) -> list[float]:
    """The trainer ``animegan-train`` builds for ``flags`` (trainer.build_run: every handler of
    a real run; the seed's recipe, no evaluation) in a temporary run folder. Returns the clock
    (after a device sync) at each of the ``marks`` events."""
    times: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        cfg = make_config(["--recipe", "dcgan", "--eval-size", "0", "--no-progress", "--device",
                           args.device.type, "--cache-dir", str(args.cache_dir), *flags,
                           "--output-dir", str(Path(tmp) / "run")])
        run = build_run(make_plan(cfg))

        @run.engine.on(marks)
        def mark(_):
            _sync(args.device)
            times.append(time.perf_counter())

        if profiler is not None:
            profiler.attach(run.engine)
        run.engine.run(run.loader, max_epochs=max_epochs, epoch_length=epoch_length)
        run.ctx.close()
    return times


def _throughput(flags: list[str], args: argparse.Namespace) -> float:
    w, n = args.warmup, args.iters
    marks = Events.ITERATION_COMPLETED(event_filter=lambda _, i: i in (w, w + n))
    start, end = run_trainer(flags, args, 1, w + n, marks)
    return n * args.batch_size / (end - start)


def speed_options(device: torch.device, compile_too: bool = True) -> list[Speed]:
    """The precision / memory-format / compile settings (d) chooses from on ``device``
    (``compile_too``: with torch.compile, whose compilation takes a minute or more on a CPU)."""
    if device.type != "cuda":
        if not cpu_has_bf16():
            say("[trainer] bf16 left out of (d): this CPU has no bfloat16 units (emulated: many "
                "times slower than fp32, docs/benchmarks.md)")
        return [Speed("fp32", channels_last=True), *([Speed("bf16")] if cpu_has_bf16() else []),
                *([Speed("fp32", channels_last=True, compile=True)] if compile_too else [])]
    half = "bf16" if torch.cuda.is_bf16_supported(including_emulation=False) else "fp16"  # T4: fp16
    return [Speed("fp32", channels_last=True), Speed("fp16"), Speed(half, channels_last=True),
            Speed(half, channels_last=True, compile=True)]


def _flags(speed: Speed) -> list[str]:
    return ["--precision", speed.precision, *(["--channels-last"] if speed.channels_last else []),
            *(["--compile"] if speed.compile else [])]


def _label(speed: Speed) -> str:
    return speed.precision + ("+channels-last" if speed.channels_last else "") + (
        "+compile" if speed.compile else "")


def trainer(args: argparse.Namespace) -> dict:
    b, device = args.batch_size, args.device
    data = ["--data-dir", args.data_dir, "--batch-size", str(b), "--num-workers", str(args.workers)]
    cached = [*data, "--cache"]
    options = {f"(d) cache + {_label(s)}": s for s in speed_options(device, not args.no_compile)}
    medians = interleaved_medians("trainer", {
        "(a) plain PyTorch loop": lambda: plain_tutorial_loop(args.data_dir, args),
        "(b) this trainer": lambda: _throughput(data, args),
        "(c) this trainer, --cache": lambda: _throughput(cached, args),
        **{name: (lambda s=s: _throughput([*cached, *_flags(s)], args))
           for name, s in options.items()},
    }, args.repeats)
    best = max(options, key=medians.get)
    rows = {k: v for k, v in medians.items() if k not in options or k == best}
    say("[trainer] the handlers' own cost (BasicTimeProfiler)")
    profiler = BasicTimeProfiler()
    run_trainer(cached, args, 1, args.warmup + args.iters, Events.COMPLETED, profiler)
    results = profiler.get_results()
    handlers = sum(_total(results["event_handlers_stats"][e]) for e in (
        "ITERATION_STARTED", "ITERATION_COMPLETED", "GET_BATCH_STARTED", "GET_BATCH_COMPLETED"))
    share = handlers / _total(results["processing_stats"])
    base = rows["(a) plain PyTorch loop"]
    print(f"\ntrainer, full size, batch {b}, {device}, {args.iters} timed iterations after "
          f"{args.warmup}, median of {args.repeats}:")
    for name, ips in rows.items():
        print(f"  {name:40s} {ips:8.1f} images/s  {ips / base:.3f}x (a)")
    print(f"  the trainer's handlers: {1000 * handlers / (args.warmup + args.iters):.2f} ms per "
          f"iteration, {100 * share:.2f}% of the step")
    return {"images_per_s": rows, "ratio_to_a": {k: v / base for k, v in rows.items()},
            "d_options_images_per_s": {k: medians[k] for k in options},
            "handler_share_of_step": share}


def _total(stats: dict) -> float:
    return stats["total"] if isinstance(stats["total"], float) else 0.0  # else "not yet triggered"


# --- the data path ------------------------------------------------------------------------------


def _batches_per_s(loader, batches: int) -> float:
    batches = min(batches, len(loader) - 1)
    it = iter(loader)
    next(it)
    start = time.perf_counter()
    for _ in range(batches):
        next(it)
    return batches / (time.perf_counter() - start)


def _decode_seconds(files, workers: int) -> float:
    with tempfile.TemporaryDirectory() as cache_dir:
        start = time.perf_counter()
        load_or_build(files, 64, Path(cache_dir), num_workers=workers)
        return time.perf_counter() - start


def data(args: argparse.Namespace) -> dict:
    b, files = args.batch_size, find_images(args.data_dir)
    split = make_split(args.data_dir, 0, b, 999)
    with tempfile.TemporaryDirectory() as cache_dir:
        images, _ = load_or_build(files, 64, Path(cache_dir))
    loaders = interleaved_medians("data", {
        "DataLoader": lambda: _batches_per_s(make_train_loader(split.train, b, args.workers, 999), 20),
        "cache": lambda: _batches_per_s(CachedBatches(images, range(len(images)), b, 999), 20),
        f"decode, 0 workers ({len(files)} files)": lambda: _decode_seconds(files, 0),
        f"decode, {args.workers} workers": lambda: _decode_seconds(files, args.workers),
    }, args.repeats)
    dl, cache, one, many = loaders.values()
    print(f"\ndata path, batch {b}, median of {args.repeats}:")
    print(f"  DataLoader {dl:.1f} batches/s, cache {cache:.1f} batches/s ({cache / dl:.1f}x)")
    print(f"  decoding {len(files)} files once: {one:.2f} s in one process, {many:.2f} s with "
          f"{args.workers} workers ({one / many:.2f}x)")
    return {"dataloader_batches_per_s": dl, "cache_batches_per_s": cache, "cache_speedup": cache / dl,
            "decode_s": {"0": one, str(args.workers): many}, "decode_speedup": one / many}


# --- the demo's data path -----------------------------------------------------------------------


def _epoch_seconds(flags: list[str], args: argparse.Namespace) -> float:
    times = run_trainer(flags, args, 2, None, Events.EPOCH_STARTED | Events.EPOCH_COMPLETED)
    return times[3] - times[2]  # the second epoch: start-up excluded


def demo(args: argparse.Namespace) -> dict:
    cfg = Config(synthetic_size=args.demo_faces)
    demo_flags = ["--synthetic-size", str(args.demo_faces)]
    medians = interleaved_medians("demo", {
        "drawn every epoch": lambda: _epoch_seconds([*demo_flags, "--no-cache"], args),
        "drawn once (--cache)": lambda: _epoch_seconds([*demo_flags, "--cache"], args)},
        args.repeats)
    every, cached = medians.values()
    n_train = cfg.synthetic_size - cfg.eval_size
    print(f"\ndemo epoch ({n_train} faces, batch {cfg.batch_size}, width {cfg.ngf}, "
          f"{cfg.num_workers} workers), median of {args.repeats}:")
    print(f"  faces drawn every epoch by the workers: {every:.2f} s")
    print(f"  faces drawn once into memory (--cache): {cached:.2f} s ({every / cached:.2f}x faster)")
    return {"drawn_every_epoch_s": every, "drawn_once_s": cached, "speedup": every / cached}


# --- where the feature network runs -------------------------------------------------------------


def backend(args: argparse.Namespace) -> dict:
    """The feature network on torch and on ONNX Runtime (its export made first, and timed):
    images/s on the same real faces in the evaluator's batches of 100, and how far apart the
    two sets of features (and logits) are."""
    from animegan_ignite.evaluation.onnx_backend import onnxruntime_version

    split = make_split(args.data_dir, 0, 1, 999)
    images = torch.stack([to_uint8(split.train[i][0]) for i in range(args.backend_images)])
    on_torch = load_backbone(args.inception_weights, "cpu", "torch").backbone
    started = time.perf_counter()
    on_onnx = load_backbone(args.inception_weights, "cpu", "onnxruntime", args.cache_dir).backbone
    export_s = time.perf_counter() - started

    outputs = {}  # each backend's outputs of its last timed pass, compared below

    def rate(backbone) -> float:
        start = time.perf_counter()
        outputs[backbone] = [backbone.embed(batch) for batch in images.split(100)]
        return len(images) / (time.perf_counter() - start)

    rate(on_onnx)  # ONNX Runtime's first run allocates its buffers
    medians = interleaved_medians("backend", {"torch": lambda: rate(on_torch),
                                              "onnxruntime": lambda: rate(on_onnx)}, args.repeats)
    gaps = [max((a - b).abs().max().item() for a, b in zip(t, o, strict=True) if a is not None)
            for t, o in zip(outputs[on_torch], outputs[on_onnx], strict=True)]
    t, o = medians["torch"], medians["onnxruntime"]
    print(f"\nthe feature network ({on_torch.name}), {len(images)} real faces in batches of 100, "
          f"{torch.get_num_threads()} threads, median of {args.repeats}:")
    print(f"  torch {torch.__version__}: {t:.1f} images/s; onnxruntime {onnxruntime_version()}: "
          f"{o:.1f} images/s ({o / t:.2f}x); largest feature difference {max(gaps):.2e}; "
          f"the export took {export_s:.1f} s (once, then cached)")
    return {"network": on_torch.name, "torch_images_per_s": t, "onnxruntime_images_per_s": o,
            "speedup": o / t, "max_abs_difference": max(gaps), "export_s": export_s}


# --- the evaluation -----------------------------------------------------------------------------


class _Extractor(nn.Module):
    """The backbone as ignite's metrics call it: [0, 1] float images in, one tensor out."""

    def __init__(self, backbone, logits: bool) -> None:
        super().__init__()
        self.backbone, self.logits = backbone, logits

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features, logits = self.backbone.embed(to_uint8(x * 2 - 1))
        return logits if self.logits and logits is not None else features


def _seed_ignite_seconds(netG, latents, split, backbone, args) -> float:
    """ignite's FID and InceptionScore as the seed notebook used them: reals and fakes through
    FID, fakes again through IS (offline, IS runs on the same network's features: the cost is
    the same, the value is not an IS)."""
    from ignite.engine import Engine
    from ignite.metrics import FID, InceptionScore

    n, device = latents.shape[0], args.device
    fid = FID(num_features=backbone.num_features, feature_extractor=_Extractor(backbone, False),
              device=device)
    is_metric = InceptionScore(num_features=1008 if backbone.has_logits else backbone.num_features,
                               feature_extractor=_Extractor(backbone, True),
                               output_transform=lambda o: o[0], device=device)

    def eval_step(engine, i):
        with torch.no_grad():
            fake = (netG.eval()(latents[i:i + 100].to(device)) + 1) / 2
        real = torch.stack([(split.eval[j][0] + 1) / 2 for j in range(i, min(i + 100, n))])
        return fake, real.to(device)

    evaluator = Engine(eval_step)
    fid.attach(evaluator, "fid")
    is_metric.attach(evaluator, "is")
    start = time.perf_counter()
    evaluator.run(range(0, n, 100), max_epochs=1)
    return time.perf_counter() - start


def evaluation(args: argparse.Namespace) -> dict:
    n, device = args.eval_size, args.device
    # where a user's evaluation runs (ONNX Runtime on a CPU), for both contenders
    choice = load_backbone(args.inception_weights, device, "auto", args.cache_dir)
    split = make_split(args.data_dir, n, 1, 999)
    netG = Generator().to(device)
    netG.apply(dcgan_weights_init)
    latents = eval_latents(n, 100, 999)
    with tempfile.TemporaryDirectory() as cache:
        ours = Evaluator(choice, split.eval, latents, device, Path(cache))
        say("[evaluation] embedding the real faces once (then cached)")
        _ = ours.real

        def ours_seconds() -> float:
            start = time.perf_counter()
            ours(netG)
            return time.perf_counter() - start

        medians = interleaved_medians("evaluation", {"this project's evaluator": ours_seconds},
                                      args.repeats)
        # --quick times the seed's evaluator once: it embeds three times as many images, a gap
        # no repeat's noise closes (docs/benchmarks.md), and each repeat is its slowest step
        seed_repeats = 1 if args.quick else args.repeats
        if n <= SEED_EVALUATION_MAX:  # minutes more per repeat above it
            medians.update(interleaved_medians("evaluation", {
                "the seed's ignite FID + IS": lambda: _seed_ignite_seconds(
                    netG, latents, split, choice.backbone, args)}, seed_repeats))
        extra = _extra_scores_cost(ours, args.repeats)
    mine, seed = medians["this project's evaluator"], medians.get("the seed's ignite FID + IS")
    with_all = mine / (mine - extra)
    print(f"\none evaluation of {n} generated images ({choice.backbone.name} on "
          f"{choice.backbone.runtime}), median of {args.repeats} (the seed's: of {seed_repeats}):")
    print(f"  this project's evaluator: {mine:.1f} s; the seed's ignite FID + IS: " + (
        f"{seed:.1f} s ({seed / mine:.2f}x)" if seed else f"not timed above {SEED_EVALUATION_MAX} images"))
    print(f"  of which KID, precision/recall/density/coverage and diversity: {extra:.2f} s "
          f"(the evaluation costs {with_all:.3f}x one with FID alone)")
    size = args.scores_at
    at_default = _at_default_size(mine - extra, n, size, args.repeats)
    print(f"  at --eval-size {size}: the scores beyond FID take {at_default['extra_s']:.1f} s "
          f"on {size} x 2048 features; with {size} Inception passes at the rate "
          f"measured above, the evaluation costs {at_default['cost']:.3f}x one with FID alone")
    return {"n": n, "backbone": choice.backbone.name, "ours_s": mine, "seed_ignite_s": seed,
            "speedup": seed / mine if seed else None, "extra_scores_s": extra,
            "cost_with_all_scores": with_all, "at_default_size": at_default}


def _at_default_size(fid_only_s: float, n: int, size: int, repeats: int) -> dict:
    """The scores beyond FID at ``--eval-size size`` (the trainer's default unless told), timed on
    feature matrices of that size (their cost depends on the shapes only), against an evaluation
    whose Inception passes cost what the ``n``-image one measured per image."""
    g = torch.Generator().manual_seed(0)
    fake, real = (torch.rand(size, 2048, generator=g) for _ in range(2))
    real_side = RealFeatures(real)
    scores(fake, real_side)  # the per-run parts: the real kernel, radii, Vendi score

    def seconds(compute) -> float:
        start = time.perf_counter()
        compute()
        return time.perf_counter() - start

    medians = interleaved_medians("evaluation", {
        f"every score at {size}": lambda: seconds(lambda: scores(fake, real_side)),
        f"FID alone at {size}": lambda: seconds(
            lambda: fid_from_features(fake, real_side.mu, real_side.sigma))}, repeats)
    fid_s = medians[f"FID alone at {size}"]
    extra = medians[f"every score at {size}"] - fid_s
    base = fid_only_s / n * size + fid_s  # Inception passes scale with the images
    return {"extra_s": extra, "fid_only_s": base, "cost": (base + extra) / base}


def _extra_scores_cost(evaluator: Evaluator, repeats: int) -> float:
    """Seconds the scores beyond FID add to one evaluation: all scores minus FID alone, on the
    last evaluation's features (the real side's kernel, radii and Vendi score are computed once
    per run, as in training)."""
    features = evaluator.engine.state.metrics["embeddings"]["features"]
    real = evaluator.real
    scores(features, real)  # the per-run parts

    def seconds(compute) -> float:
        start = time.perf_counter()
        compute()
        return time.perf_counter() - start

    medians = interleaved_medians("evaluation", {
        "every score": lambda: seconds(lambda: scores(features, real)),
        "FID alone": lambda: seconds(lambda: fid_from_features(features, real.mu, real.sigma))},
        repeats)
    return medians["every score"] - medians["FID alone"]


# --- main ---------------------------------------------------------------------------------------


def write_demo_faces(folder: Path, n: int) -> None:
    """``n`` synthetic demo faces as JPEG files in an ImageFolder layout."""
    out = folder / "faces"
    out.mkdir(parents=True)
    for i, (image, _) in enumerate(SyntheticFaces(n, seed=1)):
        image.save(out / f"{i:05d}.jpg", quality=95)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help=f"small counts: {QUICK}")
    p.add_argument("--data-dir", help="a folder holding a folder of face images, as the seed's "
                   "tutorial reads it (torchvision's ImageFolder: DIR/images/*.jpg; default: "
                   "demo faces written as JPEG files)")
    p.add_argument("--only", default=",".join(SECTIONS), help="comma-separated sections")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--warmup", type=int)
    p.add_argument("--iters", type=int)
    p.add_argument("--repeats", type=int)
    p.add_argument("--eval-size", type=int)
    p.add_argument("--demo-faces", type=int, help="synthetic faces in the demo section")
    p.add_argument("--faces", type=int, help="faces written when there is no --data-dir")
    p.add_argument("--backend-images", type=int, help="faces in the backend section")
    p.add_argument("--scores-at", type=int, default=default_of("eval_size"), help="the "
                   "evaluation section's scores timed at this --eval-size too (default: the "
                   "trainer's)")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--no-compile", action="store_true", help="leave torch.compile out of (d)'s "
                   "contenders (on a CPU its compilation takes a minute or more)")
    p.add_argument("--inception-weights", default="pool3")
    p.add_argument("--out", help="write the results as JSON here")
    args = p.parse_args()
    if args.data_dir and not any(d.is_dir() for d in Path(args.data_dir).iterdir()):
        p.error(f"--data-dir {args.data_dir}: no folder of images inside; the plain loop reads it "
                "as torchvision's ImageFolder does: give the folder above the images")
    for key, value in (QUICK if args.quick else FULL).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    args.device = torch.device(args.device)
    if args.device.type == "cuda":  # every contender: fixed shapes, cuDNN's fastest kernels
        torch.backends.cudnn.benchmark = True
    sections = args.only.split(",")
    unknown = set(sections) - set(SECTIONS)
    if unknown:
        raise SystemExit(f"error: unknown section(s) {', '.join(sorted(unknown))}; choose from "
                         f"{', '.join(SECTIONS)}")
    results = {"device": str(args.device), "threads": torch.get_num_threads(),
               "settings": {k: getattr(args, k) for k in (*QUICK, "workers")}}
    with tempfile.TemporaryDirectory() as tmp:
        args.cache_dir = Path(tmp) / "cache"  # the trainer's decoded images, once per benchmark
        if args.data_dir is None and {"trainer", "data", "backend", "evaluation"} & set(sections):
            say(f"[setup] writing {args.faces} synthetic faces as JPEG files")
            write_demo_faces(Path(tmp), args.faces)
            args.data_dir = tmp
        for name in sections:
            started = time.perf_counter()
            results[name] = globals()[name](args)
            say(f"[{name}] done in {time.perf_counter() - started:.0f} s")
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2, default=str))
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
