"""One typed dataclass for every setting, and the command line that fills it.

Precedence, lowest first: the dataclass defaults (the seed design's values), the synthetic
demo's CPU-sized schedule (only when no ``--data-dir`` is given), a ``--config`` file (YAML or
JSON), then the command-line flags.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import json
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from .augment import parse_policy
from .cli import OneLineErrorParser, UserError
from .rundir import RunDir, read_run_config
from .trackers import MODULES as TRACKER_NAMES
from .trackers import missing_extra

DEVICES = ("auto", "cpu", "cuda")
BACKENDS = (None, "gloo", "nccl")


class ConfigError(UserError):
    """A setting is invalid; the message says which and how to fix it."""


SEED_MAX = 2**32 - 1  # numpy's seed range, which ignite's manual_seed also seeds


# Named training recipes: values for the recipe fields of Config, below a config file's and the
# command line's. "dcgan" is the seed design exactly (Radford et al., 2016); "diffaug" adds
# DiffAugment; "diffaug_lr5" adds Adam at 5e-4 for both networks, the demo's measured winner;
# "diffaug_lr5_cos" lets that rate fall along a cosine, the measured winner on the real faces on
# two seeds and so the default for real data (README, "Training recipes").
_DCGAN = {"loss": "bce", "spectral_norm": False, "lr_g": None, "lr_d": None, "diffaugment": None,
          "ema_halflife_kimg": 0.0, "ema_rampup": 0.0, "ema_buffers": "copy", "lr_decay": "none"}
RECIPES: dict[str, dict[str, Any]] = {
    "dcgan": _DCGAN,
    "diffaug": {**_DCGAN, "diffaugment": "color,translation"},
}
RECIPES["diffaug_lr5"] = {**RECIPES["diffaug"], "lr_g": 5e-4, "lr_d": 5e-4}
RECIPES["diffaug_lr5_cos"] = {**RECIPES["diffaug_lr5"], "lr_decay": "cosine"}
DEFAULT_RECIPE = "diffaug_lr5_cos"


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
        return above and below

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
        elif self.hi is not None:
            what += f" <= {_num(self.hi)}"
        return what + (" (or null)" if self.nullable else "")


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else repr(x)


def setting(default: Any, kind: type, **rule: Any) -> Any:
    """A Config field that carries its :class:`Rule`."""
    return field(default=default, metadata={"rule": Rule(kind, **rule)})


def _path(default: str | None = None) -> Any:
    return setting(default, str, lo=1, nullable=True)


@dataclass
class Config:
    """Every setting of a training run, each with the rule it is checked against. Paths are
    stored as strings so the config is JSON."""

    data_dir: str | None = _path()
    download: str | None = _path()
    output_dir: str | None = _path()
    resume: str | None = _path()
    force: bool = setting(False, bool)
    epochs: int = setting(50, int, lo=1, hi=10**6)
    batch_size: int = setting(128, int, lo=1, hi=65536)
    lr: float = setting(2e-4, float, lo=0, hi=1, open_lo=True, open_hi=True)
    beta1: float = setting(0.5, float, lo=0, hi=1, open_hi=True)
    nz: int = setting(100, int, lo=1, hi=100_000)
    ngf: int = setting(64, int, lo=1, hi=4096)
    ndf: int = setting(64, int, lo=1, hi=4096)
    image_size: int = setting(64, int, choices=(64,))
    eval_size: int = setting(3000, int, lo=0, hi=10**7)
    eval_every: int = setting(1, int, lo=0)
    snapshot_every: int = setting(500, int, lo=1)
    checkpoint_every: int = setting(0, int, lo=0)
    num_workers: int = setting(2, int, lo=0, hi=256)
    device: str = setting("auto", str, choices=DEVICES)
    seed: int = setting(999, int, lo=0, hi=SEED_MAX)
    split_seed: int | None = setting(None, int, lo=0, hi=SEED_MAX, nullable=True)
    synthetic_size: int = setting(4000, int, lo=2, hi=10**7)
    inception_weights: str = setting("auto", str, lo=1)
    cache_dir: str | None = _path()
    eval_batch_size: int = setting(100, int, lo=1, hi=65536)
    tensorboard: bool = setting(False, bool)
    logger: str | None = setting(None, str, nullable=True)
    cache: bool = setting(False, bool)
    precision: str = setting("fp32", str, choices=("fp32", "bf16", "fp16"))
    channels_last: bool = setting(False, bool)
    compile: bool = setting(False, bool)
    backend: str | None = setting(None, str, choices=BACKENDS, nullable=True)
    nproc_per_node: int = setting(1, int, lo=1, hi=1024)
    sync_bn: bool = setting(False, bool)
    progress: bool = setting(True, bool)
    # The training recipe around the DCGAN networks (see RECIPES); the defaults are the seed's.
    recipe: str = setting("dcgan", str, choices=tuple(RECIPES))
    loss: str = setting("bce", str, choices=("bce", "hinge"))
    spectral_norm: bool = setting(False, bool)
    lr_g: float | None = setting(None, float, lo=0, hi=1, open_lo=True, open_hi=True,
                                  nullable=True)
    lr_d: float | None = setting(None, float, lo=0, hi=1, open_lo=True, open_hi=True,
                                  nullable=True)
    diffaugment: str | None = setting(None, str, nullable=True)
    ema_halflife_kimg: float = setting(0.0, float, lo=0, hi=10**6)
    ema_rampup: float = setting(0.0, float, lo=0, hi=10**3)
    ema_buffers: str = setting("copy", str, choices=("copy", "update"))
    lr_decay: str = setting("none", str, choices=("none", "cosine"))

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
        """The checks that involve several settings or the machine; raises one
        :class:`ConfigError` listing every problem, or returns self."""
        problems = []
        if 0 < self.eval_size < 10:
            problems.append(f"--eval-size must be 0 (no evaluation) or >= 10 (one image per IS "
                            f"split), got {self.eval_size}")
        if self.inception_weights not in ("auto", "pool3") and not Path(
                self.inception_weights).is_file():
            problems.append(f"--inception-weights {self.inception_weights}: no such file "
                            "(give the weights file, 'auto' or 'pool3')")
        if self.nproc_per_node > 1 and self.backend is None:
            problems.append("--nproc-per-node > 1 needs --backend (nccl for GPUs, gloo for CPU)")
        elif self.batch_size % self.world_size:
            problems.append(f"--batch-size {self.batch_size} (the global batch) must divide "
                            f"evenly over {self.world_size} processes")
        for name in self.trackers:
            if name not in TRACKER_NAMES:
                problems.append(f"--logger {name}: unknown tracker (choose from "
                                f"{', '.join(TRACKER_NAMES)})")
            elif missing_extra(name):
                problems.append(missing_extra(name))
        try:
            parse_policy(self.diffaugment)
        except ValueError as e:
            problems.append(f"--diffaugment: {e}")
        if problems:
            raise ConfigError("; ".join(problems))
        return self


def check_values(values: dict[str, Any], origin: dict[str, str]) -> list[str]:
    """One message per value that breaks its setting's rule, naming the setting, where the
    value came from, the value and what the setting accepts."""
    rules = {f.name: f.metadata["rule"] for f in fields(Config)}
    problems = []
    for name, value in values.items():
        rule = rules[name]
        if not rule.ok(value):
            where = origin.get(name, "")
            problems.append(f"{where}{_flag(name)} {value!r}: must be {rule.describe()}")
    return problems




# The demo schedule: the no-argument command finishes on 2 CPU cores in ~3.5 minutes and the
# cartoon faces take shape. Only used without --data-dir. Measured (README, "Training recipes"):
# at this cost, width-16 networks trained for more steps draw better faces than width-32 ones
# for fewer; the recipe "diffaug_lr5" draws the faces where "dcgan" draws blobs; the faces are
# drawn once into memory (--cache) so that no worker redraws them each epoch; one evaluation at
# the end, because on 2 cores each costs as much as two or three epochs.
DEMO_OVERRIDES: dict[str, Any] = {
    "recipe": "diffaug_lr5",
    "epochs": 12,
    "batch_size": 32,
    "ngf": 16,
    "ndf": 16,
    "cache": True,
    "eval_size": 128,
    "eval_every": 12,
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
    p.add_argument("--force", action="store_true", help="write the run into a --output-dir that "
                   "already holds other files (never into another run)")
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
    p.add_argument("--checkpoint-every", type=int,
                   help="also checkpoint every N iterations inside an epoch, so a kill or power "
                   "loss costs at most N iterations (default 0: at epoch ends only)")
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
    p.add_argument("--lr-decay", help="learning-rate schedule of both networks: none (constant) "
                   "or cosine (from the rate down to 0 at the last iteration of --epochs)")
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
    values = {k.replace("-", "_") if isinstance(k, str) else k: v for k, v in data.items()}
    # A run's config.json records where it was resumed from; as a settings file it starts anew.
    if values.pop("resume", None) is not None and not RunDir(p.parent).history.is_file():
        raise ConfigError(f"--config {path}: 'resume' is not a setting of a file (a run's "
                          "config.json records it); delete that line to start a new run from "
                          "these settings, or give --resume RUN_DIR on the command line")
    _check_names(values, path)
    return values


def make_config(argv: list[str] | None = None) -> Config:
    """Parse ``argv`` into a validated :class:`Config` (raises :class:`ConfigError`). Every
    value, from the flags, a ``--config`` file or the run being resumed, is checked against its
    setting's rule before anything is created."""
    args = vars(build_parser().parse_args(argv))
    config_file = args.pop("config", None)
    file_values = load_config_file(config_file) if config_file else {}
    run_values: dict[str, Any] = {}
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
    if values.get("data_dir") is None and values.get("download") is None and not run_values:
        values = {**DEMO_OVERRIDES, **values}
    if not run_values:  # a resumed run keeps the recipe it was saved with
        values = _with_recipe(values, explicit={**file_values, **args})
    if values.get("diffaugment") == "none":
        values["diffaugment"] = None
    problems = check_values(values, origin)
    if problems:
        raise ConfigError("; ".join(problems))
    return Config(**values).validate()


def _check_same_folder(given: str | None, run_dir: str, origin: str) -> None:
    """A resumed run goes on in its own folder: its checkpoints and history are there."""
    if isinstance(given, str) and Path(given).resolve() != Path(run_dir).resolve():
        raise ConfigError(f"{origin}{_flag('output_dir')} {given}: a resumed run continues in its "
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
            hint = f" (did you mean {_flag(close[0])}?)" if close else ""
            problems.append(f"{source}: unknown setting {key!r}{hint}")
    if problems:
        raise ConfigError("; ".join(problems))


def _with_recipe(values: dict[str, Any], explicit: dict[str, Any]) -> dict[str, Any]:
    """The recipe's values under the ones given. ``--lr`` alone sets both networks' rates, so it
    also replaces a recipe's ``lr_g``/``lr_d``."""
    name = values.setdefault("recipe", DEFAULT_RECIPE)
    recipe = dict(RECIPES.get(name, {})) if isinstance(name, str) else {}
    if "lr" in explicit:
        recipe.pop("lr_g", None)
        recipe.pop("lr_d", None)
    return {**recipe, **values}
