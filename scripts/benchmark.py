"""Side-by-side speed of this trainer against the plain PyTorch DCGAN loop, in one run.

    python scripts/benchmark.py --data-dir ../shared/data/anime-faces-64 [--device cpu|cuda]

Measures, on the same machine, data and batch size (warm-up excluded; medians over repeats taken
in turns, so that a machine whose speed drifts during the run affects every row alike):

  (a) a plain PyTorch loop written like the official DCGAN tutorial (ImageFolder + DataLoader,
      the same models and step), the baseline;
  (b) this trainer (ignite Engine + its handlers) on its default data path, and its handlers'
      own cost per iteration, timed directly by ignite's BasicTimeProfiler;
  (c) this trainer with --cache (decoded uint8 images, batches gathered on the device);
  (d) (c) with the fastest of the precision / memory-format / compile options the device
      supports (bf16 where the GPU has it, else fp16 as on Kaggle's T4s);
  epoch: seconds of one whole epoch of --epoch-images images (default on a GPU: 63,565, the
      full Anime Face Dataset, the faces at hand repeated up to that count) with (d)'s settings;
  data path alone: batches/s of the DataLoader path vs the cache, and the seconds to build the
      cache with 0 and --workers decoding processes;
  evaluation: seconds of one per-epoch FID + IS of N generated images with this project's
      evaluator (one Inception pass per generated image, cached real statistics) vs ignite's
      FID + InceptionScore used as the seed notebook used them (real and fake through FID, fake
      again through IS: three passes), on the same backbone network.

Prints a table with ratios and writes it as JSON (--out).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch
from ignite.engine import Events
from ignite.handlers import BasicTimeProfiler
from torch import nn
from torchvision import datasets

from animegan_ignite.cache import CachedBatches, CachedImages, load_or_build
from animegan_ignite.config import Config
from animegan_ignite.data import default_transform, find_images, make_split, make_train_loader
from animegan_ignite.gan import Speed, build_gan
from animegan_ignite.handlers import setup_handlers
from animegan_ignite.inception import load_backbone
from animegan_ignite.models import Discriminator, Generator, dcgan_weights_init
from animegan_ignite.quality import Evaluator, eval_latents, to_uint8
from animegan_ignite.rundir import RunDir
from animegan_ignite.trainer import build_trainer

FULL_DATASET = 63_565  # images in Kaggle's splcher/animefacedataset


def plain_tutorial_loop(data_dir: str, batch: int, workers: int, device: torch.device,
                        warmup: int, iters: int) -> float:
    """(a): the PyTorch DCGAN tutorial's loop. Returns images/s after ``warmup`` iterations."""
    dataset = datasets.ImageFolder(root=data_dir, transform=default_transform(64))
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch, shuffle=True,
                                         num_workers=workers, drop_last=True)
    netG, netD = Generator().to(device), Discriminator().to(device)
    netG.apply(dcgan_weights_init)
    netD.apply(dcgan_weights_init)
    criterion = nn.BCEWithLogitsLoss()
    optD = torch.optim.Adam(netD.parameters(), lr=2e-4, betas=(0.5, 0.999))
    optG = torch.optim.Adam(netG.parameters(), lr=2e-4, betas=(0.5, 0.999))
    start = None
    for i, (real, _) in enumerate(loader):
        if i == warmup:
            _sync(device)
            start = time.perf_counter()
        if i == warmup + iters:
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
    return iters * batch / (time.perf_counter() - start)


def run_trainer(loader, device: torch.device, speed: Speed, max_epochs: int,
                epoch_length: int | None, marks, profiler: BasicTimeProfiler | None = None,
                width: int = 64) -> list[float]:
    """This project's Engine with every handler of a real run (history, snapshots every 500
    iterations, running averages, NaN guard, checkpoints at the epoch end; no evaluation) on
    ``loader``, optionally under ignite's ``profiler``, with networks of ``width`` (ngf = ndf).
    Returns the clock (after a device sync) at each of the ``marks`` events."""
    gan = build_gan(100, width, width, 2e-4, 0.5, device)
    if speed.channels_last:
        gan.netG.to(memory_format=torch.channels_last)
        gan.netD.to(memory_format=torch.channels_last)
    cfg = Config(precision=speed.precision, channels_last=speed.channels_last,
                 compile=speed.compile, eval_size=0, progress=False, ngf=width, ndf=width)
    times: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        trainer, ctx, _ = build_trainer(cfg, RunDir(tmp), gan)
        setup_handlers(trainer, ctx)

        @trainer.on(marks)
        def mark(_):
            _sync(device)
            times.append(time.perf_counter())

        if profiler is not None:
            profiler.attach(trainer)
        trainer.run(loader, max_epochs=max_epochs, epoch_length=epoch_length)
        ctx.history.close()
    return times


def trainer_throughput(loader, device: torch.device, batch: int, warmup: int, iters: int,
                       speed: Speed) -> float:
    """(b)-(d): images/s of the trainer between iterations ``warmup`` and ``warmup + iters``."""
    marks = Events.ITERATION_COMPLETED(event_filter=lambda _, i: i in (warmup, warmup + iters))
    start, end = run_trainer(loader, device, speed, 1, warmup + iters, marks)
    return iters * batch / (end - start)


def handler_overhead(loader, device: torch.device, iters: int) -> dict[str, float]:
    """The trainer's own cost measured directly, not as a difference of two noisy rates:
    ignite's BasicTimeProfiler times every per-iteration handler (history, running averages,
    NaN guard, the snapshot check) and the training step itself."""
    profiler = BasicTimeProfiler()
    run_trainer(loader, device, Speed(), 1, iters, Events.COMPLETED, profiler)
    results = profiler.get_results()
    per_iteration = ("ITERATION_STARTED", "ITERATION_COMPLETED", "GET_BATCH_STARTED",
                     "GET_BATCH_COMPLETED")
    handlers = sum(_total(results["event_handlers_stats"][e]) for e in per_iteration)
    step = _total(results["processing_stats"])
    return {"handlers_ms_per_iteration": 1000 * handlers / iters,
            "step_ms_per_iteration": 1000 * step / iters, "share_of_step": handlers / step}


def _total(stats: dict) -> float:
    return stats["total"] if isinstance(stats["total"], float) else 0.0  # else "not yet triggered"


def epoch_seconds(loader, device: torch.device, speed: Speed) -> float:
    """Wall seconds of one whole training epoch, every handler included: the second of two
    epochs (the first warms up cuDNN's autotuner and torch.compile)."""
    times = run_trainer(loader, device, speed, 2, None, Events.EPOCH_STARTED | Events.EPOCH_COMPLETED)
    return times[3] - times[2]


def speed_options(device: torch.device) -> list[Speed]:
    """The precision / memory-format / compile settings (d) chooses from on ``device``."""
    if device.type != "cuda":
        return [Speed("fp32", channels_last=True), Speed("bf16")]
    half = "bf16" if torch.cuda.is_bf16_supported(including_emulation=False) else "fp16"  # T4: fp16
    return [Speed("fp32", channels_last=True), Speed("fp16"), Speed(half, channels_last=True),
            Speed(half, channels_last=True, compile=True)]


def build_seconds(files, cache_dir: Path, workers: int) -> float:
    """Seconds to decode every file into a new decoded-image cache with ``workers`` processes
    (0: in this process)."""
    start = time.perf_counter()
    load_or_build(files, 64, cache_dir, num_workers=workers)
    return time.perf_counter() - start


def data_only(loader, batches: int) -> float:
    """Batches per second of a loader, without training (first batch excluded)."""
    batches = min(batches, len(loader) - 1)
    it = iter(loader)
    next(it)
    start = time.perf_counter()
    for _ in range(batches):
        next(it)
    return batches / (time.perf_counter() - start)


def eval_seconds(data_dir: str, n: int, device: torch.device, weights: str) -> dict:
    """One per-epoch evaluation, ours vs the seed's ignite FID + InceptionScore."""
    from ignite.engine import Engine
    from ignite.metrics import FID, InceptionScore

    choice = load_backbone(weights, device)
    split = make_split(data_dir, n, 1, 999)
    netG = Generator().to(device)
    netG.apply(dcgan_weights_init)
    latents = eval_latents(n, 100, 999)
    with tempfile.TemporaryDirectory() as cache:
        ours = Evaluator(choice, split.eval, latents, device, Path(cache))
        _ = ours.real  # the real statistics are computed once per data set, then cached
        start = time.perf_counter()
        ours(netG)
        ours_s = time.perf_counter() - start

    backbone = choice.backbone

    fid = FID(num_features=2048, feature_extractor=_Extractor(backbone, logits=False),
              device=device)
    # offline there are no logits: IS then runs on the same network's features, for cost only
    is_metric = InceptionScore(num_features=1008 if backbone.has_logits else 2048,
                               feature_extractor=_Extractor(backbone, logits=True),
                               output_transform=lambda o: o[0], device=device)

    def step(engine, i):
        with torch.no_grad():
            fake = (netG.eval()(latents[i:i + 100].to(device)) + 1) / 2
        real = torch.stack([(split.eval[j][0] + 1) / 2 for j in range(i, min(i + 100, n))])
        return fake, real.to(device)

    evaluator = Engine(step)
    fid.attach(evaluator, "fid")
    is_metric.attach(evaluator, "is")
    start = time.perf_counter()
    evaluator.run(range(0, n, 100), max_epochs=1)
    seed_s = time.perf_counter() - start
    return {"n": n, "backbone": backbone.name, "ours_s": ours_s, "seed_ignite_s": seed_s,
            "speedup": seed_s / ours_s}


class _Extractor(nn.Module):
    """The backbone as ignite's metrics call it: [0, 1] float images in, one tensor out."""

    def __init__(self, backbone, logits: bool) -> None:
        super().__init__()
        self.backbone, self.logits = backbone, logits

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features, logits = self.backbone.embed(to_uint8(x * 2 - 1))
        return logits if self.logits and logits is not None else features


def _label(speed: Speed) -> str:
    return speed.precision + ("_cl" if speed.channels_last else "") + ("_compile" if speed.compile else "")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def interleaved_medians(contenders: dict, repeats: int) -> dict[str, float]:
    """The median of ``repeats`` measurements of each contender, taken in turns (a, b, c, a,
    b, c, ...) so that a machine that slows down or speeds up midway affects all alike."""
    samples: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(repeats):
        for name, measure in contenders.items():
            samples[name].append(measure())
    return {name: statistics.median(values) for name, values in samples.items()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", required=True)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--iters", type=int, default=10)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--eval-size", type=int, default=200)
    p.add_argument("--inception-weights", default="auto")
    p.add_argument("--epoch-images", type=int, default=None,
                   help="also time one whole epoch of this many images with (d)'s settings "
                        "(default: 63565, the full Anime Face Dataset, on a GPU; 0 to skip)")
    p.add_argument("--out", default="benchmark.json")
    args = p.parse_args()
    device, b = torch.device(args.device), args.batch_size
    if args.epoch_images is None:
        args.epoch_images = FULL_DATASET if device.type == "cuda" else 0
    if device.type == "cuda":  # every row, (a) included: fixed shapes, cuDNN's fastest kernels
        torch.backends.cudnn.benchmark = True
    run = {"warmup": args.warmup, "iters": args.iters}

    with tempfile.TemporaryDirectory() as cache_dir:
        files = find_images(args.data_dir)
        build = {f"{w}_workers": build_seconds(files, Path(cache_dir) / str(w), w)
                 for w in sorted({0, args.workers})}
        images, good = load_or_build(files, 64, Path(cache_dir) / str(args.workers))
        cached = CachedImages(images, good)
        plain_split = make_split(args.data_dir, 0, b, 999)

        def default_loader():
            return make_train_loader(plain_split.train, b, args.workers, 999)

        candidates = {f"d_trainer_cache_{_label(s)}": s for s in speed_options(device)}

        def cached_loader():
            return CachedBatches(cached.images.to(device), range(len(cached)), b, 999)

        def ours(loader, speed):
            return lambda: trainer_throughput(loader(), device, b, speed=speed, **run)

        contenders = {
            "a_plain_pytorch": lambda: plain_tutorial_loop(args.data_dir, b, args.workers, device, **run),
            "b_trainer_default": ours(default_loader, Speed()),
            "c_trainer_cache": ours(cached_loader, Speed()),
            **{name: ours(cached_loader, speed) for name, speed in candidates.items()},
        }
        medians = interleaved_medians(contenders, args.repeats)
        best_d = max(candidates, key=medians.get)
        best = candidates[best_d]
        rows = {k: v for k, v in medians.items() if k not in candidates or k == best_d}
        overhead = handler_overhead(cached_loader(), device, args.warmup + args.iters)
        epoch = None
        if args.epoch_images:  # the cached faces repeated up to a full data set's count
            tiled = CachedBatches(cached.images.to(device), [i % len(cached) for i in
                                                             range(args.epoch_images)], b, 999)
            epoch = {"images": len(tiled) * b, "speed": _label(best),
                     "seconds": epoch_seconds(tiled, device, best)}
        data = interleaved_medians({"dataloader_batches_per_s": lambda: data_only(default_loader(), 20),
                                    "cache_batches_per_s": lambda: data_only(cached_loader(), 20)},
                                   args.repeats)
        data["cache_speedup"] = data["cache_batches_per_s"] / data["dataloader_batches_per_s"]
        data["cache_build_seconds"] = build
    evaluation = eval_seconds(args.data_dir, args.eval_size, device, args.inception_weights)

    base = rows["a_plain_pytorch"]
    print(f"device {device}, batch {b}, {args.iters} timed iterations after {args.warmup} "
          f"warm-up, median of {args.repeats}")
    print(f"{'path':32s} {'images/s':>10s} {'vs (a)':>8s}")
    for name, ips in rows.items():
        print(f"{name:32s} {ips:10.1f} {ips / base:8.3f}")
    print(f"the trainer's own handlers (ignite BasicTimeProfiler): "
          f"{overhead['handlers_ms_per_iteration']:.2f} ms per iteration, "
          f"{100 * overhead['share_of_step']:.2f}% of the step's {overhead['step_ms_per_iteration']:.0f} ms")
    print(f"data path alone: DataLoader {data['dataloader_batches_per_s']:.1f} batches/s, cache "
          f"{data['cache_batches_per_s']:.1f} batches/s ({data['cache_speedup']:.1f}x)")
    print(f"building the cache of {len(files)} images: " + ", ".join(
        f"{k.replace('_', ' ')} {v:.1f} s" for k, v in build.items()))
    if epoch:
        print(f"one epoch of {epoch['images']} images with {epoch['speed']}: "
              f"{epoch['seconds']:.1f} s (training only; every handler but the evaluation)")
    print(f"evaluation of {evaluation['n']} images: ours {evaluation['ours_s']:.1f} s, seed's "
          f"ignite FID+IS {evaluation['seed_ignite_s']:.1f} s ({evaluation['speedup']:.2f}x); "
          f"backbone {evaluation['backbone']}")
    result = {"device": str(device), "batch_size": b, **run, "repeats": args.repeats,
              "images_per_s": rows, "ratio_to_a": {k: v / base for k, v in rows.items()},
              "d_candidates_images_per_s": {k: medians[k] for k in candidates},
              "handler_overhead": overhead, "data_path": data, "epoch": epoch, "evaluation": evaluation}
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
