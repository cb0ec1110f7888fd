"""The feature network a command scores with: its weights (inception.py: the standard
TF-Inception, the offline pool3 network, or the tests' tiny stand-in) on its runtime
(onnx_backend.py: torch, or ONNX Runtime on a CPU; ``--eval-backend``)."""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from ..paths import cache_folder
from . import onnx_backend
from .inception import BackboneChoice, load_torch_backbone

logger = logging.getLogger(__name__)


def load_backbone(weights: str = "auto", device: torch.device | str = "cpu", backend: str = "torch",
                  cache_dir: Path | None = None, image_size: int = 64) -> BackboneChoice:
    """Load the Inception backbone, on ``backend`` (onnx_backend.py: ``torch``, ``onnxruntime``
    or ``auto``; the ONNX export for ``image_size`` images is cached in ``cache_dir``).

    ``weights``: a file path (standard weights; errors are :class:`BackboneError`), ``"pool3"``
    (the offline TorchScript network, FID only, no download attempt), or ``"auto"``: the torch
    hub cache, else a download, else the offline network with IS unavailable.
    """
    choice = load_torch_backbone(weights, torch.device(device))
    if not onnx_backend.wanted(backend, torch.device(device), choice.backbone):
        return choice
    try:
        source = choice.backbone.cpu()  # ONNX Runtime runs on the CPU
        runner = onnx_backend.onnx_backbone(source, cache_folder(cache_dir), image_size)
    except Exception as e:
        if backend == "onnxruntime":
            raise onnx_backend.BackendError(f"--eval-backend onnxruntime: the feature network "
                                            f"could not run on ONNX Runtime ({type(e).__name__}: "
                                            f"{str(e).splitlines()[0][:200]}); use --eval-backend "
                                            "torch") from e
        logger.warning("ONNX Runtime could not run the feature network (%s); torch runs it",
                       type(e).__name__)
        return BackboneChoice(choice.backbone.to(device), choice.is_unavailable)
    return BackboneChoice(runner, choice.is_unavailable)
