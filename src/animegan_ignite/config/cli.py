"""``animegan-train``'s command line and ``--config`` files, generated from :class:`Config`,
and the training settings other commands offer (:func:`add_setting`).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
from dataclasses import fields
from pathlib import Path
from typing import Any

import yaml

from ..errors import OneLineErrorParser
from ..rundir import RunDir
from .rules import ConfigError, flag, shown_value
from .saved import read_run_config, upgrade
from .settings import GROUPS, Config, check_names, check_values, saved_settings


def field_of(name: str) -> dataclasses.Field:
    return next(f for f in fields(Config) if f.name == name)


def add_setting(parser: argparse.ArgumentParser, name: str, option: str | None = None,
                help: str | None = None, default: Any = None) -> None:
    """A training setting offered by another command (``animegan-evaluate``), from its one
    declaration: type, choices and help (``help`` where the command means it otherwise), under
    ``option`` (default its own flag); check the values with :func:`check_settings`."""
    meta = field_of(name).metadata
    rule = meta["rule"]
    parser.add_argument(option or f"--{flag(name)}", dest=name, type=rule.kind,
                        choices=rule.choices, default=default, metavar=name.upper(),
                        help=(help or meta["help"]) + (
                            f" (default: {shown_value(default)})" if default is not None else ""))


def check_settings(values: dict[str, Any], options: dict[str, str] | None = None) -> None:
    """The settings' own rules on ``values`` (None: not given); one ConfigError naming each
    value's option (``options``: name -> the command's option where it differs)."""
    given = {name: value for name, value in values.items() if value is not None}
    problems = check_values(given, {})
    for name, option in (options or {}).items():
        problems = [p.replace(f"{flag(name)} ", f"{option.lstrip('-')} ", 1) for p in problems]
    if problems:
        raise ConfigError("; ".join(f"--{p}" for p in problems))


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
    check_names(values, path)
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
        run_values = {**saved_settings(run_values, f"{run_dir}/config.json"),
                      "output_dir": str(run_dir), "force": False}
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
