"""Every setting of a training run, declared once: type, default, rule, help text and group.

``Config`` is the one declaration. ``animegan-train``'s flags and ``--help`` are generated from
it, config files and a resumed run's ``config.json`` are checked against it, and a ``Config``
made in code resolves its defaults exactly as the command line does:

- a *recipe* (``--recipe``) sets how the networks are trained (loss, rates, augmentation, EMA);
  settings marked ``recipe=True`` take the recipe's value unless given;
- the *synthetic demo* (no ``--data-dir``) has a CPU-sized schedule: settings with a ``demo=``
  value take it when no data set is given.

Precedence, lowest first: those defaults, a ``--config`` file (YAML or JSON), the flags; a
resumed run starts from its own ``config.json``. No torch here: ``--help`` and every flag or
file error answer before torch is imported.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import importlib.util
import json
import logging
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar

import yaml

from .errors import OneLineErrorParser, UserError
from .rundir import CHECKPOINT_DIR, RunDir, RunDirError

logger = logging.getLogger(__name__)


class ConfigError(UserError):
    """A setting is invalid; the message says which and how to fix it."""


MIN_EVAL = 10  # images an evaluation needs: one per Inception Score split
SEED_MAX = 2**32 - 1  # numpy's seed range, which ignite's manual_seed also seeds
DIFFAUGMENT_POLICIES = ("color", "translation", "cutout")
# The entries of objectives.OBJECTIVES, named here so that --help does not import torch.
OBJECTIVE_NAMES = ("bce", "hinge", "rpgan", "wgan-gp")
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

GROUPS = {
    "data": "data",
    "model": "model (the seed design's DCGAN; 64x64 RGB)",
    "recipe": "recipe (--recipe sets these; a flag overrides its value)",
    "evaluation": "evaluation (FID/IS of held-out faces at epoch ends)",
    "run": "run and checkpoints",
    "speed": "speed",
    "distributed": "distributed (several processes or GPUs)",
    "logging": "logging",
}


class _Unset:
    """The default of a setting a recipe or the demo decides; replaced when a Config is made."""

    def __repr__(self) -> str:
        return "<from the recipe or the demo>"


UNSET: Any = _Unset()
NO_DEMO = object()


@dataclass(frozen=True)
class Rule:
    """What one setting accepts: a type, and a range, a set of choices or a minimum length."""

    kind: type
    lo: float | None = None
    hi: float | None = None
    choices: tuple[Any, ...] | None = None
    nullable: bool = False
    open_lo: bool = False  # lo itself excluded
    open_hi: bool = False  # hi itself excluded
    also: tuple[Callable[[Any], bool], str] | None = None  # a further test, and how it reads

    def ok(self, value: Any) -> bool:
        if value is None:
            return self.nullable
        if self.kind is float:
            fits = isinstance(value, (int, float)) and not isinstance(value, bool)
        else:
            fits = isinstance(value, self.kind) and not (self.kind is int and isinstance(value, bool))
        if not fits:
            return False
        if self.choices is not None:
            return value in self.choices
        size = len(value) if self.kind is str else value
        above = self.lo is None or (size > self.lo if self.open_lo else size >= self.lo)
        below = self.hi is None or (size < self.hi if self.open_hi else size <= self.hi)
        return above and below and (self.also is None or self.also[0](value))

    def describe(self) -> str:
        what = {int: "an integer", float: "a number", bool: "true or false", str: "text"}[self.kind]
        if self.choices is not None:
            what = "one of " + ", ".join(str(c) for c in self.choices)
        elif self.kind is str and self.lo:
            what = "non-empty text"
        elif self.lo is not None and self.hi is not None and self.kind is float:
            what += f" in {'(' if self.open_lo else '['}{_num(self.lo)}, {_num(self.hi)}" \
                    f"{')' if self.open_hi else ']'}"
        elif self.lo is not None and self.hi is not None:
            what += f" in {_num(self.lo)}..{_num(self.hi)}"
        elif self.lo is not None:
            what += f" >= {_num(self.lo)}"
        what += f": {self.also[1]}" if self.also is not None else ""
        return what + (" (or null)" if self.nullable else "")


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else repr(x)


def setting(default: Any, kind: type, group: str, help: str, *, demo: Any = NO_DEMO,
            recipe: bool = False, shown: str | None = None, **rule: Any) -> Any:
    """One setting: its default (the seed design's, or for ``recipe`` settings the value of a
    recipe that does not set it), what the demo uses instead (``demo``), its :class:`Rule`, its
    ``--help`` group and text, and ``shown``: how --help states a default that is not a value."""
    later = recipe or demo is not NO_DEMO
    return field(default=UNSET if later else default, metadata={
        "rule": Rule(kind, **rule), "group": group, "help": help, "default": default,
        "demo": demo, "recipe": recipe, "shown": shown})


def _path(group: str, help: str, shown: str | None = None) -> Any:
    return setting(None, str, group, help, shown=shown, lo=1, nullable=True)


RATE = {"lo": 0, "hi": 1, "open_lo": True, "open_hi": True}


@dataclass
class Config:
    """Every setting of a training run. Paths are strings so the config is JSON."""

    # data
    data_dir: str | None = _path("data", "folder of images (searched recursively; jpg, png, bmp, "
                                 "webp)", shown="none: the built-in synthetic demo")
    download: str | None = _path("data", "fetch the data set first: 'kaggle' (the Anime Face "
                                 "Dataset, needs kagglehub) or 'hf:NAME' (needs datasets)")
    synthetic_size: int = setting(2528, int, "data", "faces in the synthetic demo data set",
                                  lo=2, hi=10**7)
    synthetic_fresh: bool = setting(False, bool, "data", "the demo draws new faces every epoch: "
                                    "a data set that never repeats (for experiments; with "
                                    "--no-cache)")
    cache_dir: str | None = _path("data", "cached real-image features, decoded images and "
                                  "downloads", shown="$ANIMEGAN_CACHE or ~/.cache/animegan-ignite")
    mirror: bool = setting(False, bool, "data", "train on every face and its mirror image (an "
                           "x-flip, StyleGAN2-ADA's --mirror): twice the faces per epoch")
    # model
    nz: int = setting(100, int, "model", "latent size", lo=1, hi=100_000)
    ngf: int = setting(64, int, "model", "generator width", demo=16, lo=1, hi=4096)
    ndf: int = setting(64, int, "model", "discriminator width", demo=16, lo=1, hi=4096)
    # recipe
    recipe: str = setting("diffaug-cosine", str, "recipe", "training recipe: " + "; ".join(
        f"{k}: {v}" for k, v in RECIPE_HELP.items()), demo="diffaug-fast", choices=tuple(RECIPES))
    lr: float = setting(2e-4, float, "recipe", "Adam learning rate of both networks",
                        recipe=True, **RATE)
    lr_g: float | None = setting(None, float, "recipe", "G's own rate (TTUR)", shown="--lr",
                                 nullable=True, **RATE)
    lr_d: float | None = setting(None, float, "recipe", "D's own rate (TTUR)", shown="--lr",
                                 nullable=True, **RATE)
    beta1: float = setting(0.5, float, "recipe", "Adam beta1", recipe=True, lo=0, hi=1,
                           open_hi=True)
    beta2: float = setting(0.999, float, "recipe", "Adam beta2 (StyleGAN2 and R3GAN: 0.99)",
                           recipe=True, lo=0, hi=1, open_hi=True)
    lr_decay: str = setting("none", str, "recipe", "rate schedule: none (constant) or cosine (to "
                            "0 at the last iteration of --epochs)", recipe=True,
                            choices=("none", "cosine"))
    loss: str = setting("bce", str, "recipe", "the objective: bce (DCGAN's), hinge, rpgan "
                        "(relativistic pairing, R3GAN's with --r1-gamma and --r2-gamma) or "
                        "wgan-gp (with its own penalty; best with --no-d-batchnorm)",
                        recipe=True, choices=OBJECTIVE_NAMES)
    r1_gamma: float = setting(0.0, float, "recipe", "R1 penalty weight: gamma/2 E|grad D(real)|^2 "
                              "(0 = none)", recipe=True, lo=0, hi=10**6)
    r2_gamma: float = setting(0.0, float, "recipe", "R2 penalty weight, the same on generated "
                              "faces (0 = none)", recipe=True, lo=0, hi=10**6)
    reg_every: int = setting(4, int, "recipe", "take R1/R2 every K iterations, scaled by K "
                             "(StyleGAN2's lazy regularisation; 1 = every step)", recipe=True,
                             lo=1, hi=10**6)
    d_batchnorm: bool = setting(True, bool, "recipe", "BatchNorm in D (--no-d-batchnorm: none, so "
                                "a penalty's input gradients are each face's own)", recipe=True)
    spectral_norm: bool = setting(False, bool, "recipe", "spectral normalisation on D's "
                                  "convolutions (D then has no BatchNorm)", recipe=True)
    diffaugment: str | None = setting(None, str, "recipe", "DiffAugment policies before every D "
                                      "call, any of color,translation,cutout; 'none' for none",
                                      recipe=True, nullable=True)
    augment_p: str = setting("1", str, "recipe", "probability that each DiffAugment operation "
                             "applies to each image: a number in [0, 1], or auto (ADA: steered by "
                             "D's overfitting; with no --diffaugment, color,translation)",
                             recipe=True, lo=1)
    ada_signal: str = setting("rt", str, "recipe", "auto: D's overfitting signal that steers p: "
                              "rt (ADA's r_t = E[sign D(real)]) or rv (r_v: D on held-out faces "
                              "against training and generated ones; needs --eval-size; r_v is "
                              "then recorded with a fixed p too)", choices=tuple(ADA_TARGETS))
    ada_target: float | None = setting(None, float, "recipe", "auto: the value of the signal "
                                       "that p steers to", shown=", ".join(
                                           f"{v:g} for {k}" for k, v in ADA_TARGETS.items()),
                                       nullable=True, lo=0, hi=1, open_lo=True, open_hi=True)
    ada_kimg: float = setting(100.0, float, "recipe", "auto: thousands of images in which p can "
                              "move from 0 to 1", lo=0, hi=10**6, open_lo=True)
    ema_halflife_kimg: float = setting(0.0, float, "recipe", "EMA of G with this half-life in "
                                       "thousands of images; 0 = no EMA", recipe=True,
                                       lo=0, hi=10**6)
    ema_rampup: float = setting(0.0, float, "recipe", "EMA half-life at most this fraction of "
                                "the images seen so far (StyleGAN's 0.05); 0 = no ramp",
                                recipe=True, lo=0, hi=10**3)
    ema_buffers: str = setting("copy", str, "recipe", "BatchNorm statistics of the EMA "
                               "generator: copied from G, or averaged too", recipe=True,
                               choices=("copy", "update"))
    # evaluation
    eval_size: int = setting(3000, int, "evaluation", "held-out real images (never trained on) "
                             "and generated images for FID/IS; 0 = no evaluation", demo=128,
                             lo=0, hi=10**7, also=(lambda n: n == 0 or n >= MIN_EVAL, (
                                 f"0 (no evaluation) or at least {MIN_EVAL} (one image per IS "
                                 "split)")))
    eval_every: int = setting(1, int, "evaluation", "evaluate every N epochs and after the last; "
                              "0 = never", demo=12, lo=0)
    eval_every_kimg: float | None = setting(None, float, "evaluation", "instead of --eval-every: "
                                            "evaluate at the first epoch end after every N "
                                            "thousand images shown, and after the last",
                                            shown="none", nullable=True, lo=0, open_lo=True)
    eval_batch_size: int = setting(100, int, "evaluation", "images per Inception batch",
                                   lo=1, hi=65536)
    best_metric: str = setting("fid", str, "evaluation", "the score that marks the best checkpoint "
                               "(lower is better for both)", choices=("fid", "kid"))
    inception_weights: str = setting("auto", str, "evaluation", "auto (torch hub cache, else a "
                                     "download, else the offline FID-only network), pool3 "
                                     "(offline, no IS) or the standard weights file", lo=1)
    eval_backend: str = setting("auto", str, "evaluation", "where the Inception network runs: "
                                "auto (ONNX Runtime on a CPU, torch on a GPU), torch or "
                                "onnxruntime (same features, 2-3x faster on a CPU)",
                                choices=("auto", "torch", "onnxruntime"))
    # run and checkpoints
    output_dir: str | None = _path("run", "run directory", shown="runs/<timestamp>")
    resume: str | None = _path("run", "continue a run: its folder (latest checkpoint) or one "
                               "checkpoint file", shown="none")
    force: bool = setting(False, bool, "run", "write a new run into a folder that holds other "
                          "files (never into another run)")
    init_from: str | None = _path("run", "a new run whose G, D and EMA of G start from another "
                                  "run's weights (its optimisers, schedule and history start "
                                  "afresh): a run folder, a checkpoint file, an exported model "
                                  "folder or hf:OWNER/NAME", shown="none: DCGAN's random init")
    freeze_d: int = setting(0, int, "run", "D's first N of its 4 lower blocks keep their weights "
                            "(FreezeD: for fine-tuning with --init-from)", lo=0, hi=4)
    epochs: int = setting(50, int, "run", "epochs to train (on --resume: the new total)",
                          demo=12, lo=1, hi=10**6)
    kimg: float | None = setting(None, float, "run", "instead of --epochs: train on this many "
                                 "thousand images (StyleGAN's unit), rounded up to whole epochs "
                                 "(on --resume: the new total)", shown="none", nullable=True,
                                 lo=0, hi=10**7, open_lo=True)
    batch_size: int = setting(128, int, "run", "global batch size (split over processes)",
                              demo=32, lo=1, hi=65536)
    seed: int = setting(999, int, "run", "seed of everything: split, init, noise, data order",
                        lo=0, hi=SEED_MAX)
    split_seed: int | None = setting(None, int, "run", "seed of the held-out split alone (to "
                                     "compare training seeds on the same faces)",
                                     shown="--seed", lo=0, hi=SEED_MAX, nullable=True)
    snapshot_every: int = setting(500, int, "run", "save an 8x8 grid of G(fixed noise) every N "
                                  "iterations", demo=50, lo=1)
    checkpoint_every: int = setting(0, int, "run", "also checkpoint every N iterations inside "
                                    "an epoch (0: at epoch ends only)", lo=0)
    checkpoint_every_kimg: float | None = setting(None, float, "run", "checkpoint (and redraw "
                                                  "the plots) at the first epoch end after every "
                                                  "N thousand images instead of every epoch end",
                                                  shown="none", nullable=True, lo=0, open_lo=True)
    # speed
    device: str = setting("auto", str, "speed", "auto (a GPU when there is one), cpu or cuda",
                          choices=("auto", "cpu", "cuda"))
    cache: bool = setting(False, bool, "speed", "decode the images once into a uint8 tensor "
                          "cache and train from it (on a GPU it lives in GPU memory)", demo=True)
    precision: str = setting("fp32", str, "speed", "autocast precision; fp16 uses a GradScaler "
                             "(Kaggle's T4s have no bf16)", choices=("fp32", "bf16", "fp16"))
    channels_last: bool = setting(False, bool, "speed", "channels-last memory format")
    compile: bool = setting(False, bool, "speed", "torch.compile G and D")
    num_workers: int = setting(2, int, "speed", "DataLoader worker processes (also decode every "
                               "file once at start-up)", lo=0, hi=256)
    # distributed
    backend: str | None = setting(None, str, "distributed", "nccl (GPUs) or gloo (CPU)",
                                  shown="none: one process", choices=(None, "gloo", "nccl"),
                                  nullable=True)
    nproc_per_node: int = setting(1, int, "distributed", "processes to start on this machine",
                                  lo=1, hi=1024)
    sync_bn: bool = setting(False, bool, "distributed", "BatchNorm statistics synchronised "
                            "across processes")
    # logging
    logger: str | None = setting(None, str, "logging", "experiment trackers, any of "
                                 "tensorboard,wandb,mlflow", shown="none", nullable=True)
    progress: bool = setting(True, bool, "logging", "progress bars (--no-progress for log files)")

    def __post_init__(self) -> None:
        """Settings left to the demo or the recipe get their values (the recipe first, as the
        recipe settings depend on it)."""
        by_name = {f.name: f for f in fields(self)}
        self.recipe = RENAMED_RECIPES.get(self.recipe, self.recipe)
        for f in [by_name["recipe"], *by_name.values()]:
            if getattr(self, f.name) is UNSET:
                setattr(self, f.name, self._default(f))
        if isinstance(self.augment_p, (int, float)) and not isinstance(self.augment_p, bool):
            self.augment_p = f"{self.augment_p:g}"  # a config file's number
        if self.diffaugment == "none":  # as the flag says it
            self.diffaugment = None
        if self.augment_p == "auto" and self.diffaugment is None:
            self.diffaugment = DIFFAUG["diffaugment"]  # ADA adapts an augmentation

    def _default(self, f: dataclasses.Field) -> Any:
        meta = f.metadata
        if meta["recipe"]:
            return RECIPES.get(self.recipe, {}).get(f.name, meta["default"])
        return meta["demo"] if self.synthetic and meta["demo"] is not NO_DEMO else meta["default"]

    @property
    def synthetic(self) -> bool:
        """True when training on the built-in procedurally drawn faces."""
        return self.data_dir is None and self.download is None

    @property
    def world_size(self) -> int:
        """Processes in the run: torchrun's WORLD_SIZE, else --nproc-per-node."""
        if self.backend is None:
            return 1
        return int(os.environ.get("WORLD_SIZE", self.nproc_per_node))

    @property
    def data_seed(self) -> int:
        """Seed of the data set's train/held-out split (and of the synthetic faces)."""
        return self.seed if self.split_seed is None else self.split_seed

    @property
    def trackers(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(n.strip() for n in (self.logger or "").split(",") if n.strip()))

    @property
    def g_lr(self) -> float:
        return self.lr if self.lr_g is None else self.lr_g

    @property
    def d_lr(self) -> float:
        return self.lr if self.lr_d is None else self.lr_d

    @property
    def ema(self) -> bool:
        return self.ema_halflife_kimg > 0

    @property
    def adaptive(self) -> bool:
        return self.augment_p == "auto"

    @property
    def ada_goal(self) -> float:
        """The value of the ADA signal that p steers to: --ada-target, else the signal's own."""
        return ADA_TARGETS[self.ada_signal] if self.ada_target is None else self.ada_target

    @property
    def start_p(self) -> float:
        """The augmentation probability at the start: ADA starts at 0."""
        return 0.0 if self.adaptive else float(self.augment_p)

    # Names of the settings the user chose (flags, --config, the resumed run); a Config built
    # in code counts as chosen in full.
    given: ClassVar[frozenset[str] | None] = None

    def replace(self, **changes: Any) -> Config:
        """A copy with ``changes`` (validated as a new Config), keeping what the user chose."""
        copy = dataclasses.replace(self, **changes)
        copy.given = self.given
        return copy

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_run(cls, run: str | Path) -> Config:
        """The settings a run (folder or checkpoint file) was trained with, from its
        ``config.json`` (older runs' settings upgraded); raises ConfigError or RunDirError."""
        root, values = read_run_config(run)
        return cls.from_saved({**values, "output_dir": str(root)}, f"{root}/config.json")

    @classmethod
    def from_saved(cls, values: dict[str, Any], source: str) -> Config:
        """The settings a run saved (its config.json, or an exported model's copy)."""
        values = upgrade(values)
        values.pop("resume", None)  # where that run was resumed from, not one of its settings
        _check_names(values, source)
        problems = check_values(values, {k: f"{source}: " for k in values})
        if problems:
            raise ConfigError("; ".join(problems))
        return cls(**values)

    def validate(self) -> Config:
        """The checks that involve several settings or the machine; raises one
        :class:`ConfigError` listing every problem, or returns self."""
        problems = check_values(self.to_dict(), {})
        if self.inception_weights not in ("auto", "pool3") and not Path(
                self.inception_weights).is_file():
            problems.append(f"--inception-weights {self.inception_weights}: no such file "
                            "(give the weights file, 'auto' or 'pool3')")
        if self.nproc_per_node > 1 and self.backend is None:
            problems.append("--nproc-per-node > 1 needs --backend (nccl for GPUs, gloo for CPU)")
        elif self.batch_size % self.world_size:
            problems.append(f"--batch-size {self.batch_size} (the global batch) must divide "
                            f"evenly over {self.world_size} processes")
        problems += [p for name in self.trackers if (p := tracker_problem(name))]
        try:
            parse_policy(self.diffaugment)
        except ValueError as e:
            problems.append(f"--diffaugment: {e}")
        if self.synthetic_fresh and (not self.synthetic or self.cache or self.mirror):
            problems.append("--synthetic-fresh draws the demo's faces anew every epoch: it takes "
                            "no --data-dir, --no-cache and no --mirror")
        if not _is_probability_or_auto(self.augment_p):
            problems.append(f"--augment-p {self.augment_p}: must be auto or a number in [0, 1]")
        if self.adaptive and self.ada_signal == "rt" and self.loss in SHIFT_FREE_OBJECTIVES:
            problems.append(f"--augment-p auto steered by r_t reads the sign of D's logits, which "
                            f"--loss {self.loss} leaves free (only differences count); steer by "
                            "--ada-signal rv, or use a fixed --augment-p")
        if self.ada_signal == "rv" and self.eval_size == 0:
            problems.append("--ada-signal rv scores held-out faces: it needs --eval-size > 0")
        if problems:
            raise ConfigError("; ".join(dict.fromkeys(problems)))
        return self


def default_of(name: str) -> Any:
    """A setting's default for real data (what another command's flag of the same meaning uses)."""
    return next(f.metadata["default"] for f in fields(Config) if f.name == name)


def parse_policy(text: str | None) -> tuple[str, ...]:
    """``"color,translation"`` -> ("color", "translation"); None or "" -> no augmentation."""
    names = tuple(p.strip() for p in (text or "").split(",") if p.strip())
    unknown = [n for n in names if n not in DIFFAUGMENT_POLICIES]
    if unknown:
        raise ValueError(f"unknown DiffAugment policy {', '.join(unknown)} (choose from "
                         f"{', '.join(DIFFAUGMENT_POLICIES)})")
    return names


def _is_probability_or_auto(text: str) -> bool:
    if text == "auto":
        return True
    try:
        return 0.0 <= float(text) <= 1.0
    except ValueError:
        return False


def tracker_problem(name: str) -> str | None:
    """Why tracker ``name`` cannot be used here, or None."""
    if name not in TRACKER_MODULES:
        return f"--logger {name}: unknown tracker (choose from {', '.join(TRACKER_MODULES)})"
    if any(importlib.util.find_spec(m) is not None for m in TRACKER_MODULES[name]):
        return None
    return f'--logger {name} needs the {TRACKER_MODULES[name][0]} package: pip install -e ".[{name}]"'


def check_values(values: dict[str, Any], origin: dict[str, str]) -> list[str]:
    """One message per value that breaks its setting's rule, naming the setting, where the
    value came from, the value and what the setting accepts."""
    rules = {f.name: f.metadata["rule"] for f in fields(Config)}
    return [f"{origin.get(name, '')}{flag(name)} {value!r}: must be {rules[name].describe()}"
            for name, value in values.items() if value is not UNSET and not rules[name].ok(value)]


def flag(name: str) -> str:
    return name.replace("_", "-")


def shown_value(value: Any) -> str:
    """A setting's value as ``--help`` states it."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "on" if value else "off"
    return str(value)


def _default_text(f: dataclasses.Field, real: Config, demo: Config) -> str:
    meta = f.metadata
    if meta["shown"] is not None:
        return f"default: {meta['shown']}"
    text = f"default: {shown_value(getattr(real, f.name))}"
    if getattr(demo, f.name) != getattr(real, f.name):
        text += f"; demo: {shown_value(getattr(demo, f.name))}"
    if meta["recipe"]:
        text += "; set by --recipe"
    return text


def build_parser() -> argparse.ArgumentParser:
    """``animegan-train``'s command line, generated from :class:`Config`. Every default is
    ``SUPPRESS`` so that only flags the user typed override a file and the defaults."""
    p = OneLineErrorParser(
        prog="animegan-train", argument_default=argparse.SUPPRESS,
        description="Train a DCGAN on 64x64 anime faces with PyTorch-Ignite. With no "
        "--data-dir it trains the built-in synthetic demo on a CPU-sized schedule ('demo:' "
        "defaults below).")
    p.add_argument("--config", help="YAML or JSON file of settings (dashes or underscores); "
                   "flags given here override it")
    groups = {key: p.add_argument_group(title) for key, title in GROUPS.items()}
    real, demo = Config(data_dir="DIR"), Config()
    for f in fields(Config):
        meta = f.metadata
        text = f"{meta['help']} ({_default_text(f, real, demo)})".replace("%", "%%")
        if meta["rule"].kind is bool:
            groups[meta["group"]].add_argument(f"--{flag(f.name)}", help=text,
                                               action=argparse.BooleanOptionalAction)
        else:
            groups[meta["group"]].add_argument(f"--{flag(f.name)}", help=text, metavar=f.name.upper(),
                                               type=meta["rule"].kind)
    return p


def load_config_file(path: str) -> dict[str, Any]:
    """Read a YAML or JSON mapping of settings; keys may use dashes or underscores."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"--config {path}: no such file")
    try:
        data = yaml.safe_load(p.read_text()) if p.suffix in (".yaml", ".yml") else json.loads(
            p.read_text())
    except (yaml.YAMLError, json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"--config {path}: not valid YAML/JSON ({str(e).splitlines()[0]})") from e
    if not isinstance(data, dict):
        raise ConfigError(f"--config {path}: expected a mapping of setting: value")
    values = upgrade({k.replace("-", "_") if isinstance(k, str) else k: v for k, v in data.items()})
    # A run's config.json records where it was resumed from; as a settings file it starts anew.
    if values.pop("resume", None) is not None and not RunDir(p.parent).history.is_file():
        raise ConfigError(f"--config {path}: 'resume' is not a setting of a file (a run's "
                          "config.json records it); delete that line to start a new run from "
                          "these settings, or give --resume RUN_DIR on the command line")
    _check_names(values, path)
    return _numbers_from_text(values)


def _numbers_from_text(values: dict[str, Any]) -> dict[str, Any]:
    """YAML 1.1 (PyYAML) reads ``1e-3`` as text, though users mean the number."""
    kinds = {f.name: f.metadata["rule"].kind for f in fields(Config)}
    out = dict(values)
    if isinstance(values.get("augment_p"), (int, float)) and not isinstance(values["augment_p"], bool):
        out["augment_p"] = f"{values['augment_p']:g}"  # a probability or "auto"
    for name, value in values.items():
        if kinds[name] is float and isinstance(value, str):
            try:
                number = float(value)
            except ValueError:
                continue
            if math.isfinite(number):
                out[name] = number
    return out


def upgrade(values: dict[Any, Any]) -> dict[Any, Any]:
    """Settings written by earlier versions: renamed recipes, and the removed ``image_size``
    (always 64) and ``tensorboard`` (now ``--logger tensorboard``)."""
    values = dict(values)
    if values.get("recipe") in RENAMED_RECIPES:
        new = RENAMED_RECIPES[values["recipe"]]
        logger.warning("note: recipe %r is now called %r", values["recipe"], new)
        values["recipe"] = new
    values.pop("image_size", None)
    values.pop("init_source", None)  # where --init-from's weights came from: a record
    if values.pop("tensorboard", False):
        logger.warning("note: setting 'tensorboard' is now 'logger: tensorboard'; used as such")
        values["logger"] = ",".join(filter(None, [values.get("logger"), "tensorboard"]))
    return values


def make_config(argv: list[str] | None = None) -> Config:
    """Parse ``argv`` into a validated :class:`Config` (raises :class:`ConfigError`). Every
    value, from the flags, a ``--config`` file or the run being resumed, is checked against its
    setting's rule before anything is created."""
    args = upgrade(vars(build_parser().parse_args(argv)))
    config_file = args.pop("config", None)
    file_values = load_config_file(config_file) if config_file else {}
    run_values: dict[str, Any] = {}
    if "resume" in args and "init_from" in {**file_values, **args}:
        raise ConfigError("--init-from starts a new run from another run's weights and --resume "
                          "continues a run: give one of them (a fine-tune is resumed with "
                          "--resume alone)")
    if "resume" in args:  # a resumed run starts from its own saved settings
        run_dir, run_values = read_run_config(args["resume"])
        run_values.pop("resume", None)  # where that run was resumed from, not a setting of this one
        _check_names(run_values, f"{run_dir}/config.json")
        run_values = {**run_values, "output_dir": str(run_dir), "force": False}
    origin = {**{k: f"{run_values.get('output_dir')}/config.json: " for k in run_values},
              **{k: f"{config_file}: " for k in file_values}, **{k: "--" for k in args}}
    values = {**run_values, **file_values, **args}
    if run_values and values["output_dir"] != run_values["output_dir"]:
        _check_same_folder(values["output_dir"], run_values["output_dir"], origin["output_dir"])
    problems = check_values(values, origin) + _one_unit_each(values, {**file_values, **args})
    if problems:
        raise ConfigError("; ".join(problems))
    cfg = Config(**values).validate()
    cfg.given = frozenset(values)  # what the data-size rule (datasize.py) must leave alone
    return cfg


# A length or cadence in epochs and its counterpart in thousands of images: one decides.
IN_IMAGES = {"epochs": "kimg", "eval_every": "eval_every_kimg"}


def _one_unit_each(values: dict[str, Any], now: dict[str, Any]) -> list[str]:
    """Given now in both units is an error; given now in epochs, a resumed run's count in
    images no longer decides (and the other way round, by the count in images being set)."""
    problems = []
    for epochs, kimg in IN_IMAGES.items():
        if epochs in now and now.get(kimg) is not None:
            problems.append(f"--{flag(epochs)} and --{flag(kimg)} say the same thing in two units; "
                            "give one of them")
        elif epochs in now:
            values[kimg] = None
    return problems


def _check_same_folder(given: str | None, run_dir: str, origin: str) -> None:
    """A resumed run goes on in its own folder: its checkpoints and history are there."""
    if isinstance(given, str) and Path(given).resolve() != Path(run_dir).resolve():
        raise ConfigError(f"{origin}{flag('output_dir')} {given}: a resumed run continues in its "
                          f"own folder ({run_dir}); drop it, or start a new run from that run's "
                          f"settings with --config {run_dir}/config.json --output-dir {given}")


def _check_names(values: dict[Any, Any], source: str) -> None:
    """Setting names are text naming known settings (a typo gets a suggestion)."""
    known = [f.name for f in fields(Config) if f.name != "resume"]
    problems = []
    for key in values:
        if not isinstance(key, str):
            problems.append(f"{source}: setting names must be text, got {key!r}")
        elif key not in known:
            close = difflib.get_close_matches(key, known, n=1)
            hint = f" (did you mean {flag(close[0])}?)" if close else ""
            problems.append(f"{source}: unknown setting {key!r}{hint}")
    if problems:
        raise ConfigError("; ".join(problems))


def read_run_config(resume: str | Path) -> tuple[Path, dict[str, Any]]:
    """(run directory, its saved settings, upgraded) for ``--resume RUN_DIR`` or a checkpoint
    file: the one reader of a run's ``config.json`` (:meth:`Config.from_run` builds on it)."""
    path = Path(resume)
    if not path.exists():
        raise RunDirError(f"--resume {path}: no such run directory or checkpoint file")
    run = RunDir(path) if path.is_dir() else RunDir.of_checkpoint(path)
    if path.is_file() and path.parent.name != CHECKPOINT_DIR:
        raise RunDirError(f"--resume {path}: not a checkpoint of a run (they are "
                          "RUN/checkpoints/checkpoint_<iteration>.pt); give a run folder or one of "
                          "those files")
    if not run.config.is_file():
        raise RunDirError(f"--resume {path}: {run.root} is not a run directory (no "
                          f"{run.config.name}); give the folder a training run wrote, or start a "
                          "new run with --output-dir")
    try:
        values = json.loads(run.config.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise RunDirError(f"{run.config}: damaged ({e}); the run's checkpoints are intact") from e
    return run.root, upgrade(values)
