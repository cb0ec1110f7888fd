"""The named choices that settings offer, declared here without torch: the recipes, the
objectives' names and words (objectives.py checks that they agree), augmentation policies,
ADA's targets and the trackers.
"""

from __future__ import annotations

from typing import Any

MIN_EVAL = 10  # images an evaluation needs: one per Inception Score split

SEED_MAX = 2**32 - 1  # numpy's seed range, which ignite's manual_seed also seeds

DIFFAUGMENT_POLICIES = ("color", "translation", "cutout")

# The entries of objectives.OBJECTIVES with --loss's words for each, declared here so that
# --help does not import torch (objectives.py checks that the two agree).
OBJECTIVE_HELP = {"bce": "DCGAN's", "hinge": "", "rpgan": "relativistic pairing, R3GAN's with "
                  "--r1-gamma and --r2-gamma", "wgan-gp": "with its own penalty; best with "
                  "--no-d-batchnorm"}

OBJECTIVE_NAMES = tuple(OBJECTIVE_HELP)

# Objectives whose losses see only differences of D's logits, so their level drifts freely.
SHIFT_FREE_OBJECTIVES = ("rpgan", "wgan-gp")

# What each ADA signal steers to: r_t's is ADA's; r_v's is chosen from its measured range
# (docs/recipes.md, "Long runs and adaptive augmentation").
ADA_TARGETS = {"rt": 0.6, "rv": 0.05}

# Each tracker's importable module(s) and the extra that installs it.
TRACKER_MODULES = {"tensorboard": ("tensorboard", "tensorboardX"), "wandb": ("wandb",),
                   "mlflow": ("mlflow",)}

# Named recipes: the values they give the recipe settings (those not named keep the seed
# design's). "dcgan" is the seed design exactly (Radford et al., 2016). The two defaults were
# chosen by measured ablations (docs/recipes.md): DiffAugment with Adam at 5e-4, held constant
# for the short demo, falling along a cosine over a run on real data. "r3gan" is the default
# with R3GAN's objective (Huang et al., 2024), measured against it in docs/recipes.md.
DIFFAUG = {"diffaugment": "color,translation"}

COSINE = {**DIFFAUG, "lr": 5e-4, "lr_decay": "cosine"}

RECIPES: dict[str, dict[str, Any]] = {
    "dcgan": {},
    "diffaug": DIFFAUG,
    "diffaug-fast": {**DIFFAUG, "lr": 5e-4},
    "diffaug-cosine": COSINE,
    "r3gan": {**COSINE, "loss": "rpgan", "r1_gamma": 0.1, "r2_gamma": 0.1, "beta1": 0.0,
              "beta2": 0.99},
}

RECIPE_HELP = {
    "dcgan": "the 2016 DCGAN: BCE, Adam 2e-4, no augmentation",
    "diffaug": "dcgan + DiffAugment color,translation",
    "diffaug-fast": "DiffAugment + Adam 5e-4 (the demo's default)",
    "diffaug-cosine": "DiffAugment + Adam 5e-4 falling along a cosine to 0 (the default)",
    "r3gan": "diffaug-cosine + relativistic pairing loss, R1 and R2 (gamma 0.1), Adam betas "
             "(0, 0.99)",
}

RENAMED_RECIPES = {"diffaug_lr5": "diffaug-fast", "diffaug_lr5_cos": "diffaug-cosine"}
