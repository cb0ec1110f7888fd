"""``--init-from``: a new run whose networks start from another run's trained weights (transfer
learning, as StyleGAN2-ADA's ``--resume`` of a trained network: G, D and the EMA of G come
along; the optimisers, schedule, step counter, augmentation state and history start afresh).

The weights come from a run folder (its latest checkpoint), a checkpoint file, an exported
model folder (export.py) or ``hf:OWNER/NAME``, an exported folder on the Hugging Face Hub.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..data.cache import file_digest
from ..errors import UserError
from ..networks.architecture import Architecture
from ..networks.models import unwrap
from ..runs.checkpoints import (
    CheckpointError,
    architecture_of,
    checkpoint_iteration,
    load_checkpoint,
    resolve_checkpoint,
)

HUB_PREFIX = "hf:"


@dataclass
class Source:
    """Trained weights to start from: ``netG``, ``netD`` and, where the source kept one, ``ema``
    (state dicts), their architecture, and where they came from (``provenance``: what was
    given, the file read, its iteration and SHA-256)."""

    weights: dict[str, dict[str, torch.Tensor]]
    architecture: Architecture
    provenance: dict[str, Any]

    def load_into(self, netG: nn.Module, netD: nn.Module, ema: nn.Module | None) -> None:
        """G and D get the source's; the EMA of G the source's EMA, or its G if it kept none
        (the average starts where G starts)."""
        unwrap(netG).load_state_dict(self.weights["netG"])
        unwrap(netD).load_state_dict(self.weights["netD"])
        if ema is not None:
            ema.load_state_dict(self.weights.get("ema", self.weights["netG"]))


def load_source(spec: str, cache_dir: Path) -> Source:
    """The weights ``--init-from spec`` names (raises a UserError saying what is wrong)."""
    path = _download(spec[len(HUB_PREFIX):], cache_dir) if spec.startswith(HUB_PREFIX) else Path(spec)
    try:
        file = resolve_checkpoint(path)
        checkpoint = load_checkpoint(file)
    except CheckpointError as e:
        raise UserError(f"--init-from {spec}: {e}") from None
    missing = {"netG", "netD"} - set(checkpoint)
    if missing:
        raise UserError(f"--init-from {spec}: it has no {', '.join(sorted(missing))} (an export "
                        "without D cannot be fine-tuned; export it from its run again)")
    return Source({k: checkpoint[k] for k in ("netG", "netD", "ema") if k in checkpoint},
                  architecture_of(checkpoint),
                  {"given": spec, "file": str(file.resolve()),
                   "iteration": checkpoint_iteration(checkpoint), "sha256": file_digest(file)})


def check_fits(source: Source, here: Architecture, spec: str) -> None:
    """The source's networks have this run's shapes, or one line naming the settings."""
    differ = here.differences(source.architecture)
    if differ:
        raise UserError(f"--init-from {spec}: its networks differ from this run's ("
                        f"{'; '.join(differ)}); give this run the source's settings")


def _download(repo_id: str, cache_dir: Path) -> Path:
    """The Hub repository's files, downloaded once into the cache (huggingface_hub's own)."""
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        raise UserError(f"--init-from {HUB_PREFIX}{repo_id}: needs huggingface_hub "
                        "(pip install huggingface_hub)") from None
    try:
        return Path(snapshot_download(repo_id, cache_dir=cache_dir / "hub"))
    except Exception as e:  # offline, unknown repository, no access: the Hub's own message
        first = (str(e).splitlines() or [type(e).__name__])[0][:200]
        raise UserError(f"--init-from {HUB_PREFIX}{repo_id}: could not download it ({first}); "
                        "connect to the network, or download the folder elsewhere and give its "
                        "path") from None
