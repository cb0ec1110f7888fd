"""Every random stream of a run, named, derived from the run's ``--seed`` (or ``--split-seed``)
in one place. Each stream has its own seed so that none moves another: drawing the evaluation's
latents, say, never changes the training noise, and a resumed run draws what an uninterrupted
one draws. The numbers are those the project has always used (changing one changes every run's
results), kept distinct by large odd offsets and multipliers.

- process: ``seed + rank``: each training process's global torch/numpy/Python RNGs (training
  noise, DiffAugment, WGAN-GP's interpolation points, data-loader workers; trainer.build_run);
- weights: ``seed``: DCGAN init, the same on every rank (handlers.init_weights, forked RNG);
- fixed noise: ``seed``: the 64 snapshot latents (trainer.fixed_noise, own generator);
- evaluation latents: ``seed + 1,000,003``: the evaluated sample (quality.eval_latents);
- epoch end: ``seed + 2 x 1,000,003``: what the work between epochs draws (evaluation,
  figures, plots; handlers.EpochEnd, in resume.RunState.own_streams), the same on every rank;
- latent blocks: ``(seed x 1,000,003 + k) mod 2^63``: animegan-generate's faces, block k of
  1,024 (faces.latents);
- fresh stream: ``(seed x 1,000,003 + rank x 7,919 + iteration) mod 2^32``: a resumed rank whose
  checkpoint has no RNG state (resume.restore);
- split: ``--split-seed``, else ``seed``: the held-out split and the synthetic faces
  (Config.data_seed, data.split_indices);
- data order: ``seed``: each epoch's order by (seed, epoch) (data.make_train_loader's sampler);
- training sample: 20,200,527: the training faces the memorisation score compares with
  (quality.training_sample);
- KID subsets: 2,020: torch-fidelity's subset draws (metrics.kid);
- C_T cells: 0: the k-means seeding of the memorisation score's cells (metrics.kmeans).
"""

from __future__ import annotations

BIG = 1_000_003  # an odd prime that keeps the derived streams apart
TRAINING_SAMPLE = 20_200_527
KID_SUBSETS = 2020
CT_CELLS = 0


def process(seed: int, rank: int) -> int:
    return seed + rank


def weights(seed: int) -> int:
    return seed


def fixed_noise(seed: int) -> int:
    return seed


def eval_latents(seed: int) -> int:
    return seed + BIG


def epoch_end(seed: int) -> int:
    return seed + 2 * BIG


def latent_block(seed: int, k: int) -> int:
    return (seed * BIG + k) % 2**63  # any seed fits


def fresh_stream(seed: int, rank: int, iteration: int) -> int:
    return (seed * BIG + rank * 7919 + iteration) % 2**32
