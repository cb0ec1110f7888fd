"""One typed dataclass for every setting, and the command line that fills it.

Precedence, lowest first: the dataclass defaults (the seed design's values), the synthetic
demo's CPU-sized schedule (only when no ``--data-dir`` is given), a ``--config`` file (YAML or
JSON), then the command-line flags.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import yaml

from .augment import parse_policy
from .cli import OneLineErrorParser, UserError
from .rundir import read_run_config
from .trackers import MODULES as TRACKER_NAMES
from .trackers import missing_extra

DEVICES = ("auto", "cpu", "cuda")
BACKENDS = (None, "gloo", "nccl")


class ConfigError(UserError):
    """A setting is invalid; the message says which and how to fix it."""


@dataclass
class Config:
    """Every setting of a training run. Paths are stored as strings so the config is JSON."""

    data_dir: str | None = None
    download: str | None = None
    output_dir: str | None = None
    resume: str | None = None
    epochs: int = 50
    batch_size: int = 128
    lr: float = 2e-4
    beta1: float = 0.5
    nz: int = 100
    ngf: int = 64
    ndf: int = 64
    image_size: int = 64
    eval_size: int = 3000
    eval_every: int = 1
    snapshot_every: int = 500
    num_workers: int = 2
    device: str = "auto"
    seed: int = 999
    split_seed: int | None = None
    synthetic_size: int = 4000
    inception_weights: str = "auto"
    cache_dir: str | None = None
    eval_batch_size: int = 100
    tensorboard: bool = False
    logger: str | None = None
    cache: bool = False
    precision: str = "fp32"
    channels_last: bool = False
    compile: bool = False
    backend: str | None = None
    nproc_per_node: int = 1
    sync_bn: bool = False
    progress: bool = True
    # The training recipe around the DCGAN networks (see RECIPES); the defaults are the seed's.
    recipe: str = "dcgan"
    loss: str = "bce"
    spectral_norm: bool = False
    lr_g: float | None = None
    lr_d: float | None = None
    diffaugment: str | None = None
    ema_halflife_kimg: float = 0.0
    ema_rampup: float = 0.0
    ema_buffers: str = "copy"

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
        """The experiment trackers to log to: ``--logger`` plus ``--tensorboard``."""
        names = [n.strip() for n in (self.logger or "").split(",") if n.strip()]
        if self.tensorboard:
            names.append("tensorboard")
        return tuple(dict.fromkeys(names))

    @property
    def g_lr(self) -> float:
        return self.lr if self.lr_g is None else self.lr_g

    @property
    def d_lr(self) -> float:
        return self.lr if self.lr_d is None else self.lr_d

    @property
    def ema(self) -> bool:
        return self.ema_halflife_kimg > 0

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def validate(self) -> Config:
        """Raise :class:`ConfigError` on the first invalid value; return self otherwise."""
        positive = ("epochs", "batch_size", "nz", "ngf", "ndf", "snapshot_every", "eval_batch_size")
        for name in positive:
            if getattr(self, name) < 1:
                raise ConfigError(f"--{_flag(name)} must be a positive integer, got {getattr(self, name)}")
        for name in ("eval_size", "eval_every", "num_workers"):
            if getattr(self, name) < 0:
                raise ConfigError(f"--{_flag(name)} must be >= 0, got {getattr(self, name)}")
        if not 0 < self.lr < 1:
            raise ConfigError(f"--lr must be in (0, 1), got {self.lr}")
        if not 0 <= self.beta1 < 1:
            raise ConfigError(f"--beta1 must be in [0, 1), got {self.beta1}")
        if self.device not in DEVICES:
            raise ConfigError(f"--device must be one of {', '.join(DEVICES)}, got {self.device!r}")
        if 0 < self.eval_size < 10:
            raise ConfigError(f"--eval-size must be 0 (no evaluation) or >= 10 (one image per IS "
                              f"split), got {self.eval_size}")
        if self.inception_weights not in ("auto", "pool3") and not Path(
                self.inception_weights).is_file():
            raise ConfigError(f"--inception-weights {self.inception_weights}: no such file "
                              "(give the weights file, 'auto' or 'pool3')")
        if self.backend not in BACKENDS:
            raise ConfigError(f"--backend must be gloo or nccl, got {self.backend!r}")
        if self.nproc_per_node < 1:
            raise ConfigError(f"--nproc-per-node must be >= 1, got {self.nproc_per_node}")
        if self.nproc_per_node > 1 and self.backend is None:
            raise ConfigError("--nproc-per-node > 1 needs --backend (nccl for GPUs, gloo for CPU)")
        if self.batch_size % self.world_size:
            raise ConfigError(f"--batch-size {self.batch_size} (the global batch) must divide "
                              f"evenly over {self.world_size} processes")
        if self.precision not in ("fp32", "bf16", "fp16"):
            raise ConfigError(f"--precision must be fp32, bf16 or fp16, got {self.precision!r}")
        for name in self.trackers:
            if name not in TRACKER_NAMES:
                raise ConfigError(f"--logger {name}: unknown tracker (choose from "
                                  f"{', '.join(TRACKER_NAMES)})")
            if missing_extra(name):
                raise ConfigError(missing_extra(name))
        if self.image_size != 64:
            raise ConfigError("--image-size: the DCGAN architecture here draws 64x64 images only")
        self._validate_recipe()
        if self.synthetic and self.synthetic_size < 2:
            raise ConfigError(f"--synthetic-size must be >= 2, got {self.synthetic_size}")
        return self


    def _validate_recipe(self) -> None:
        if self.recipe not in RECIPES:
            raise ConfigError(f"--recipe must be one of {', '.join(RECIPES)}, got {self.recipe!r}")
        if self.loss not in ("bce", "hinge"):
            raise ConfigError(f"--loss must be bce or hinge, got {self.loss!r}")
        for name in ("lr_g", "lr_d"):
            if getattr(self, name) is not None and not 0 < getattr(self, name) < 1:
                raise ConfigError(f"--{_flag(name)} must be in (0, 1), got {getattr(self, name)}")
        try:
            parse_policy(self.diffaugment)
        except ValueError as e:
            raise ConfigError(f"--diffaugment: {e}") from e
        if self.ema_halflife_kimg < 0 or self.ema_rampup < 0:
            raise ConfigError("--ema-halflife-kimg and --ema-rampup must be >= 0")
        if self.ema_buffers not in ("copy", "update"):
            raise ConfigError(f"--ema-buffers must be copy or update, got {self.ema_buffers!r}")


# Named training recipes: values for the recipe fields of Config, below a config file's and the
# command line's. "dcgan" is the seed design exactly (Radford et al., 2016).
RECIPES: dict[str, dict[str, Any]] = {
    "dcgan": {"loss": "bce", "spectral_norm": False, "lr_g": None, "lr_d": None,
              "diffaugment": None, "ema_halflife_kimg": 0.0, "ema_rampup": 0.0,
              "ema_buffers": "copy"},
}
DEFAULT_RECIPE = "dcgan"


# The demo schedule: small enough that the no-argument command finishes on 2 CPU cores within
# minutes, large enough that the faces visibly take shape. Only used without --data-dir.
DEMO_OVERRIDES: dict[str, Any] = {
    "epochs": 6,
    "batch_size": 32,
    "ngf": 32,
    "ndf": 32,
    "eval_size": 128,
    "eval_every": 2,
    "snapshot_every": 50,
    "synthetic_size": 2528,
}


def _flag(name: str) -> str:
    return name.replace("_", "-")


def build_parser() -> argparse.ArgumentParser:
    """The ``python -m animegan_ignite.train`` command line. Every default is ``SUPPRESS`` so
    that only flags the user typed override the file and the dataclass."""
    p = OneLineErrorParser(
        prog="python -m animegan_ignite.train",
        description="Train a DCGAN on 64x64 anime faces with PyTorch-Ignite.",
        argument_default=argparse.SUPPRESS,
    )
    d = Config()
    p.add_argument("--config", help="YAML or JSON file of settings; flags given here override it")
    p.add_argument("--data-dir", help="image folder (ImageFolder root or any folder of images); "
                   "omit for the built-in synthetic demo")
    p.add_argument("--download", help="fetch the data set first: 'kaggle' (Anime Face Dataset, "
                   "needs kagglehub) or 'hf:NAME' (a Hugging Face image data set, needs datasets)")
    p.add_argument("--output-dir", help="run directory (default: runs/<timestamp>)")
    p.add_argument("--resume", help="run directory or checkpoint file to continue from")
    p.add_argument("--epochs", type=int, help=f"epochs to train (default {d.epochs})")
    p.add_argument("--batch-size", type=int, help=f"batch size (default {d.batch_size})")
    p.add_argument("--lr", type=float, help=f"Adam learning rate (default {d.lr})")
    p.add_argument("--beta1", type=float, help=f"Adam beta1 (default {d.beta1})")
    p.add_argument("--nz", type=int, help=f"latent size (default {d.nz})")
    p.add_argument("--ngf", type=int, help=f"generator width (default {d.ngf})")
    p.add_argument("--ndf", type=int, help=f"discriminator width (default {d.ndf})")
    p.add_argument("--eval-size", type=int,
                   help=f"held-out real images for FID/IS, excluded from training; 0 = no "
                   f"evaluation (default {d.eval_size})")
    p.add_argument("--eval-every", type=int, help="evaluate FID/IS every N epochs and after the last; "
                   "0 = never (default 1)")
    p.add_argument("--eval-batch-size", type=int, help="images per Inception batch (default 100)")
    p.add_argument("--inception-weights",
                   help="standard TF-Inception weights file for FID+IS; 'auto' (default: torch hub "
                   "cache, else download, else offline FID-only network) or 'pool3' (offline, no IS)")
    p.add_argument("--cache-dir", help="where cached real-image statistics, decoded images "
                   "and downloads live (default $ANIMEGAN_CACHE or ~/.cache/animegan-ignite)")
    p.add_argument("--snapshot-every", type=int,
                   help=f"save a fixed-noise grid every N iterations (default {d.snapshot_every})")
    p.add_argument("--num-workers", type=int, help=f"DataLoader workers (default {d.num_workers})")
    p.add_argument("--device", help="auto, cpu or cuda (default auto)")
    p.add_argument("--seed", type=int, help=f"random seed (default {d.seed})")
    p.add_argument("--split-seed", type=int, help="seed of the held-out split alone (default: "
                   "--seed), to compare training seeds on the same held-out images")
    p.add_argument("--synthetic-size", type=int, help="images in the synthetic demo data set")
    p.add_argument("--backend", help="distributed backend: nccl (GPUs) or gloo (CPU); with "
                   "torchrun, the process count comes from torchrun")
    p.add_argument("--nproc-per-node", type=int,
                   help="processes to start on this machine (default 1), each with its own GPU")
    p.add_argument("--sync-bn", action="store_true",
                   help="convert BatchNorm to SyncBatchNorm across processes")
    p.add_argument("--cache", action="store_true",
                   help="decode the data set once into a uint8 tensor cache (in --cache-dir) and "
                   "train from it; on a GPU the images live in GPU memory")
    p.add_argument("--precision", help="fp32 (default), bf16 or fp16 (autocast; fp16 with "
                   "GradScaler, the T4 path: T4s have no bf16)")
    p.add_argument("--channels-last", action="store_true", help="channels-last memory format")
    p.add_argument("--compile", action="store_true", help="torch.compile G and D")
    p.add_argument("--logger", help="experiment trackers, any of tensorboard,wandb,mlflow "
                   "(comma-separated; each an optional extra: pip install -e '.[wandb]')")
    p.add_argument("--tensorboard", action="store_true",
                   help="also log to TensorBoard (the same as --logger tensorboard)")
    p.add_argument("--no-progress", dest="progress", action="store_false",
                   help="no progress bars (for logs)")
    p.add_argument("--recipe", help=f"training recipe: {', '.join(RECIPES)} (default "
                   f"{DEFAULT_RECIPE}; 'dcgan' is the seed design); the flags below override it")
    p.add_argument("--loss", help="bce (DCGAN) or hinge")
    p.add_argument("--spectral-norm", action="store_true",
                   help="spectral normalisation on D's convolutions (D then has no BatchNorm)")
    p.add_argument("--no-spectral-norm", dest="spectral_norm", action="store_false",
                   help="turn off a recipe's spectral normalisation")
    p.add_argument("--lr-g", type=float, help="G's learning rate (default --lr)")
    p.add_argument("--lr-d", type=float, help="D's learning rate (default --lr)")
    p.add_argument("--diffaugment", help="DiffAugment policies before every D call, e.g. "
                   "color,translation,cutout; 'none' for none")
    p.add_argument("--ema-halflife-kimg", type=float,
                   help="EMA of G with this half-life in thousands of images; 0 = no EMA")
    p.add_argument("--ema-rampup", type=float, help="EMA half-life ramp: at most this fraction "
                   "of the images seen so far (StyleGAN's 0.05); 0 = no ramp")
    p.add_argument("--ema-buffers", help="BatchNorm statistics of the EMA generator: copy (G's "
                   "own) or update (averaged like the weights)")
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
    return {k.replace("-", "_"): v for k, v in data.items()}


def make_config(argv: list[str] | None = None) -> Config:
    """Parse ``argv`` into a validated :class:`Config` (raises :class:`ConfigError`)."""
    args = vars(build_parser().parse_args(argv))
    file_values = load_config_file(args.pop("config")) if "config" in args else {}
    run_values: dict[str, Any] = {}
    if "resume" in args:  # a resumed run starts from its own saved settings
        run_dir, run_values = read_run_config(args["resume"])
        run_values = {**run_values, "output_dir": str(run_dir)}
    values = {**run_values, **file_values, **args}
    known = {f.name for f in fields(Config)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"unknown setting(s) in --config: {', '.join(unknown)}")
    if values.get("data_dir") is None and values.get("download") is None and not run_values:
        values = {**DEMO_OVERRIDES, **values}
    if not run_values:  # a resumed run keeps the recipe it was saved with
        values = _with_recipe(values, explicit={**file_values, **args})
    if values.get("diffaugment") == "none":
        values["diffaugment"] = None
    try:
        cfg = Config(**values)
    except TypeError as e:
        raise ConfigError(str(e)) from e
    _check_types(cfg)
    return cfg.validate()


def _with_recipe(values: dict[str, Any], explicit: dict[str, Any]) -> dict[str, Any]:
    """The recipe's values under the ones given. ``--lr`` alone sets both networks' rates, so it
    also replaces a recipe's ``lr_g``/``lr_d``."""
    name = values.setdefault("recipe", DEFAULT_RECIPE)
    recipe = dict(RECIPES.get(name, {}))
    if "lr" in explicit:
        recipe.pop("lr_g", None)
        recipe.pop("lr_d", None)
    return {**recipe, **values}


def _check_types(cfg: Config) -> None:
    """Config files can hold any JSON type; reject the wrong ones with the setting's name."""
    for f in fields(Config):
        value = getattr(cfg, f.name)
        expected = {"int": int, "float": (int, float), "bool": bool}.get(str(f.type))
        if expected and (not isinstance(value, expected) or (
                expected is int and isinstance(value, bool))):
            raise ConfigError(f"{_flag(f.name)} must be {f.type}, got {value!r}")
