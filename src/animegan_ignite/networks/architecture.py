"""The networks' architecture record: every setting that decides the shapes and names of G's and
D's tensors, written into every checkpoint (and exported model) and read by every loader, so
that a checkpoint rebuilds its own networks whatever the reader's settings.

Checkpoints also carry a format number (:data:`FORMAT`) and the package version that wrote
them: format 1 (before this record) held ``model_config`` (nz, ngf, ndf, nc) alone, and D's
normalisation is then read from D's tensors; a format newer than this package's is one clear
error, not a half-loaded model.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from importlib import metadata
from typing import Any

from ..errors import UserError
from .models import Discriminator, Generator

FORMAT = 2


def package_version() -> str:
    try:
        return metadata.version("animegan-ignite")
    except metadata.PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown"


class ArchitectureError(UserError):
    """Two architectures differ, or a saved one cannot be read by this version."""


@dataclass(frozen=True)
class Architecture:
    """G: latent size ``nz`` and width ``ngf``; D: width ``ndf``, BatchNorm (``d_batchnorm``)
    and spectral normalisation, which leaves BatchNorm out (models.Discriminator); ``nc``
    colour channels. The field names are the settings' (config.Config) but ``nc``."""

    nz: int
    ngf: int
    ndf: int
    d_batchnorm: bool = True
    spectral_norm: bool = False
    nc: int = 3

    def __post_init__(self) -> None:  # spectral norm leaves D's BatchNorm out: say so here too
        if self.spectral_norm and self.d_batchnorm:
            object.__setattr__(self, "d_batchnorm", False)

    @classmethod
    def of(cls, settings: Any) -> Architecture:
        """The architecture a run's settings (a Config) build."""
        return cls(**{f.name: getattr(settings, f.name) for f in fields(cls) if f.name != "nc"})

    def generator(self) -> Generator:
        return Generator(self.nz, self.ngf, self.nc)

    def discriminator(self) -> Discriminator:
        return Discriminator(self.ndf, self.nc, self.spectral_norm, self.d_batchnorm)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Architecture:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})

    def differences(self, other: Architecture) -> list[str]:
        """The settings that differ, as ``--name theirs`` (the other's value) for a message."""
        return [f"{_flag(f.name, getattr(other, f.name))} there, "
                f"{_flag(f.name, getattr(self, f.name))} here"
                for f in fields(self) if getattr(self, f.name) != getattr(other, f.name)]


def _flag(name: str, value: Any) -> str:
    if isinstance(value, bool):
        return f"--{name.replace('_', '-')}" if value else f"--no-{name.replace('_', '-')}"
    return f"--{name} {value}" if name != "nc" else f"{value} colour channels"


def record(architecture: Architecture) -> dict[str, Any]:
    """What a checkpoint or export says of its networks and its writer."""
    return {"format": FORMAT, "package_version": package_version(),
            "architecture": architecture.as_dict()}


def of_saved(saved: dict[str, Any], netD: dict[str, Any] | None = None) -> Architecture:
    """The architecture of a checkpoint's ``run_state`` (or an export's config): its record, or
    for format 1 its ``model_config`` with D's normalisation read from D's tensors ``netD``."""
    check_format(saved)
    if "architecture" in saved:
        return Architecture.from_dict(saved["architecture"])
    shape = saved["model_config"]
    keys = list(netD or ())
    spectral = any(".parametrizations." in k for k in keys)
    batchnorm = any(k.endswith("running_mean") for k in keys) if keys else not spectral
    return Architecture(shape["nz"], shape["ngf"], shape["ndf"], batchnorm, spectral, shape["nc"])


def check_format(saved: dict[str, Any]) -> None:
    found = saved.get("format", 1)
    if not isinstance(found, int) or found > FORMAT:
        raise ArchitectureError(
            f"written by animegan-ignite {saved.get('package_version', '?')} in format {found}, "
            f"newer than this animegan-ignite ({package_version()}) reads (up to {FORMAT}); "
            "upgrade it: pip install -U animegan-ignite")
