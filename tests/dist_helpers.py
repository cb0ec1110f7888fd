"""Functions run inside ``idist.Parallel`` worker processes (importable by spawned children)."""

from __future__ import annotations

import json
from pathlib import Path

import ignite.distributed as idist
import torch

from animegan_ignite.data.loading import ImageFiles, default_transform, find_images
from animegan_ignite.evaluation.backbones import load_backbone
from animegan_ignite.evaluation.quality import Evaluator, eval_latents
from animegan_ignite.networks.models import Generator, dcgan_weights_init


def evaluate_fixed_generator(local_rank: int, data_dir: str, out_file: str, batch: int) -> None:
    """Scores of a seeded generator on 24 fixed latents against 30 real images (unequal, so
    KID's subsets vary and it has a spread), and memorisation against 50 other images as the
    training faces (all of them: a set this small is compared with in full); rank 0 writes them."""
    torch.manual_seed(0)
    netG = Generator(nz=16, ngf=8)
    netG.apply(dcgan_weights_init)
    files = find_images(data_dir)
    real = ImageFiles(files[:30], default_transform(64))
    evaluator = Evaluator(load_backbone("pool3"), real, eval_latents(24, 16, seed=0),
                          torch.device("cpu"), cache_dir=None, batch_size=batch,
                          train_set=ImageFiles(files[30:80], default_transform(64)))
    result = evaluator(netG)
    if idist.get_rank() == 0:
        Path(out_file).write_text(json.dumps({**result,
                                              "world": idist.get_world_size()}))


def train_and_dump(local_rank: int, plan, dump_dir: str) -> None:
    """The trainer's own per-process setup and training, then this rank's final weights."""
    from animegan_ignite.networks.models import unwrap
    from animegan_ignite.training.trainer import setup_process
    from animegan_ignite.training.trainer import training as train

    setup_process(plan)
    trainer, gan = train(plan)
    for name, net in (("G", gan.netG), ("D", gan.netD)):
        torch.save({k: v.cpu() for k, v in unwrap(net).state_dict().items()},
                   Path(dump_dir) / f"{name}_rank{idist.get_rank()}.pt")
    torch.save(dict(trainer.state.output), Path(dump_dir) / f"output_rank{idist.get_rank()}.pt")


def evaluate_with_own_cache(local_rank: int, data_dir: str, out_file: str, cache_root: str) -> None:
    """The same evaluation with a real-statistics cache folder per rank (as on nodes that do
    not share a file system); rank 0 writes the result."""
    torch.manual_seed(0)
    netG = Generator(nz=16, ngf=8)
    netG.apply(dcgan_weights_init)
    real = ImageFiles(find_images(data_dir)[:30], default_transform(64))
    cache = Path(cache_root) / f"rank{idist.get_rank()}"
    result = Evaluator(load_backbone("pool3"), real, eval_latents(24, 16, seed=0),
                       torch.device("cpu"), cache_dir=cache, batch_size=12)(netG)
    if idist.get_rank() == 0:
        Path(out_file).write_text(json.dumps(result))


def train_and_dump_rng(local_rank: int, plan, dump_dir: str) -> None:
    """Train, then save this rank's final weights and the RNG state it would draw from next."""
    train_and_dump(local_rank, plan, dump_dir)
    torch.save(torch.get_rng_state(), Path(dump_dir) / f"rng_rank{idist.get_rank()}.pt")


def embed_on_onnx_runtime(local_rank: int, cache_dir: str, out_prefix: str) -> None:
    """The pool3 network on ONNX Runtime from ``cache_dir`` (rank 0 exports it, the other waits),
    then two seeded images' features, saved per rank."""
    import logging

    logging.basicConfig(level=logging.INFO, format=f"rank{idist.get_rank()} %(message)s")
    backbone = load_backbone("pool3", backend="onnxruntime", cache_dir=Path(cache_dir)).backbone
    torch.manual_seed(0)
    features, _ = backbone.embed(torch.randint(0, 256, (2, 3, 64, 64), dtype=torch.uint8))
    torch.save(features, f"{out_prefix}{idist.get_rank()}.pt")
