"""Is a run's D memorising its training faces, or only telling real from generated?

``python scripts/overfitting.py RUN [--num 500]`` loads the run's latest checkpoint and passes
``--num`` training faces, as many held-out faces and as many generated faces through D (with
the run's augmentation at its last p, in batches of its batch size, as in training) and prints:

- D's mean sign on each set: on the training faces it is ADA's r_t;
- ADA's validation heuristic r_v = (E[D(train)] - E[D(held-out)]) / (E[D(train)] - E[D(fake)])
  (Karras et al., 2020, eq. 1) over D's logits: near 0 when D scores unseen real faces as it
  scores its training faces (no memorising), towards 1 when it scores them like fakes.

A high r_t with r_v near 0 means D wins by telling real faces from generated ones, not by
memorising: what docs/recipes.md measures on the data-rich regime. With ``--synthetic-fresh``
runs the training faces are those of the run's last epoch.
"""

import argparse
import sys
from pathlib import Path

import torch

from animegan_ignite.config import Config, parse_policy
from animegan_ignite.data.loading import make_split, stack_images
from animegan_ignite.networks.augment import DiffAugment
from animegan_ignite.networks.models import Discriminator
from animegan_ignite.runs.checkpoints import architecture_of, load_checkpoint, load_generator


def logits(netD: Discriminator, images: torch.Tensor, augment: DiffAugment, batch: int) -> torch.Tensor:
    """D's logits in training mode (batch statistics, as the run's steps saw them)."""
    with torch.no_grad():
        return torch.cat([netD(augment(images[i:i + batch])) for i in range(0, len(images), batch)])


def measure(run: Path, num: int) -> dict[str, float]:
    cfg = Config.from_run(run)
    ckpt = load_checkpoint(run)
    split = make_split(cfg.data_dir, cfg.eval_size, cfg.batch_size, cfg.data_seed,
                       cfg.synthetic_size, fresh=cfg.synthetic_fresh)
    n = min(num, len(split.train), len(split.eval))
    trainer = ckpt["trainer"]
    last_epoch = (trainer["iteration"] - 1) // trainer["epoch_length"]
    start = last_epoch * len(split.train) if cfg.synthetic_fresh else 0  # the last epoch's
    netD = architecture_of(ckpt).discriminator()  # the checkpoint's own D (BatchNorm or not)
    netD.load_state_dict(ckpt["netD"])
    netG = load_generator(ckpt, weights="raw")
    torch.manual_seed(0)
    fake = netG(torch.randn(n, netG.nz, 1, 1))
    augment = DiffAugment(parse_policy(cfg.diffaugment), ckpt["ada"]["p"] if "ada" in ckpt else 1.0)
    p = augment.p if augment else None
    out = {name: logits(netD.train(), x, augment, cfg.batch_size) for name, x in (
        ("train", stack_images(split.train, range(start, start + n))),
        ("held_out", stack_images(split.eval, range(n))), ("fake", fake))}
    means = {k: float(v.mean()) for k, v in out.items()}
    return {"images": n, "p": p, **{f"sign_{k}": float(v.sign().mean()) for k, v in out.items()},
            "r_v": (means["train"] - means["held_out"]) / (means["train"] - means["fake"])}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="run folders")
    parser.add_argument("--num", type=int, default=500, help="images of each set (default 500)")
    args = parser.parse_args(argv)
    print("| run | images | p | r_t (sign on training faces) | sign on held-out | sign on fakes | r_v |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for run in args.runs:
        r = measure(run, args.num)
        p = "–" if r["p"] is None else f"{r['p']:.2f}"
        print(f"| {run} | {r['images']} | {p} | {r['sign_train']:.2f} | "
              f"{r['sign_held_out']:.2f} | {r['sign_fake']:.2f} | {r['r_v']:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
