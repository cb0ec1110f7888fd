"""The :class:`Config`: every setting of a training run, declared once, resolved from a recipe
and the demo's schedule, checked alone and together, and read back from a run.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib.util
import os
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, ClassVar

from .choices import (
    ADA_TARGETS,
    DIFFAUG,
    DIFFAUGMENT_POLICIES,
    MIN_EVAL,
    OBJECTIVE_HELP,
    OBJECTIVE_NAMES,
    RECIPE_HELP,
    RECIPES,
    RENAMED_RECIPES,
    SEED_MAX,
    SHIFT_FREE_OBJECTIVES,
    TRACKER_MODULES,
)
from .rules import NO_DEMO, RATE, UNSET, ConfigError, flag, path_setting, setting
from .saved import read_run_config, upgrade

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


@dataclass
class Config:
    """Every setting of a training run. Paths are strings so the config is JSON."""

    # data
    data_dir: str | None = path_setting("data", "folder of images (searched recursively; jpg, png, bmp, "
                                 "webp)", shown="none: the built-in synthetic demo")
    download: str | None = path_setting("data", "fetch the data set first: 'kaggle' (the Anime Face "
                                 "Dataset, needs kagglehub) or 'hf:NAME' (needs datasets)")
    synthetic_size: int = setting(2528, int, "data", "faces in the synthetic demo data set",
                                  lo=2, hi=10**7)
    synthetic_fresh: bool = setting(False, bool, "data", "the demo draws new faces every epoch: "
                                    "a data set that never repeats (for experiments; with "
                                    "--no-cache)")
    cache_dir: str | None = path_setting("data", "cached real-image features, decoded images and "
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
    loss: str = setting("bce", str, "recipe", "the objective: " + ", ".join(
        f"{name} ({words})" if words else name for name, words in OBJECTIVE_HELP.items()),
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
    best_metric: str = setting("fid", str, "evaluation", "the score that marks the best checkpoint: "
                               "any headline score with a direction (fid, kid, precision, ...: "
                               "a wrong name lists them), best as the score registry says")
    inception_weights: str = setting("auto", str, "evaluation", "auto (torch hub cache, else a "
                                     "download, else the offline FID-only network), pool3 "
                                     "(offline, no IS) or the standard weights file", lo=1)
    eval_backend: str = setting("auto", str, "evaluation", "where the Inception network runs: "
                                "auto (ONNX Runtime on a CPU, torch on a GPU), torch or "
                                "onnxruntime (same features, 2-3x faster on a CPU)",
                                choices=("auto", "torch", "onnxruntime"))
    # run and checkpoints
    output_dir: str | None = path_setting("run", "run directory", shown="runs/<timestamp>")
    resume: str | None = path_setting("run", "continue a run: its folder (latest checkpoint) or one "
                               "checkpoint file", shown="none")
    force: bool = setting(False, bool, "run", "write a new run into a folder that holds other "
                          "files (never into another run)")
    init_from: str | None = path_setting("run", "a new run whose G, D and EMA of G start from another "
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
        values = saved_settings(values, source)
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


def check_names(values: dict[Any, Any], source: str) -> None:
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


def saved_settings(values: dict[str, Any], source: str) -> dict[str, Any]:
    """A run's saved settings as settings: upgraded, without the record of where that run was
    resumed from, every name known (the one path for --resume, Config.from_run and exports)."""
    values = upgrade(values)
    values.pop("resume", None)
    check_names(values, source)
    return values
