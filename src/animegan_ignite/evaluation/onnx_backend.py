"""Where the feature network runs (``--eval-backend``): torch, or the same network exported to
ONNX once and run by ONNX Runtime's CPU provider, which runs Inception 2-3x faster than torch's
CPU kernels with features equal to 1e-5 (docs/benchmarks.md). ``auto`` takes ONNX Runtime on a
CPU where it loads and torch on a GPU.

The export (the backbone's ``network``; its ``prepare``, the resize, stays in torch) is cached
under the cache folder's ``onnx/`` by a hash of what made it: the network's weights, its input
shape, torch's version and the exporter's. Beside it a sidecar holds the file's SHA-256, written
after the file is complete: a file whose hash differs (damaged, cut short, another export's) is
rebuilt with one log line, never trusted. With several processes rank 0 exports, the others wait
for it and then load it.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import warnings
from pathlib import Path

import ignite.distributed as idist
import numpy as np
import torch

from ..data.cache import file_digest, fingerprint
from ..errors import UserError
from ..rundir import atomic_write, write_json_atomic
from .inception import Backbone, split_outputs

logger = logging.getLogger(__name__)

BACKENDS = ("auto", "torch", "onnxruntime")
OPSET = 17
EXPORTER = "torch.onnx.export(dynamo=False)"  # the TorchScript exporter: it takes a ScriptModule


class BackendError(UserError):
    """``--eval-backend onnxruntime`` was asked for and cannot run."""


def onnxruntime_version() -> str | None:
    """ONNX Runtime's version where it imports, else None."""
    try:
        import onnxruntime
    except ImportError:
        return None
    return onnxruntime.__version__


def wanted(backend: str, device: torch.device, backbone: Backbone) -> bool:
    """Whether ``backend`` means ONNX Runtime for ``backbone`` on ``device``."""
    if backend == "torch" or not backbone.exportable:
        return False
    if backend == "onnxruntime":
        if onnxruntime_version() is None:
            raise BackendError("--eval-backend onnxruntime: onnxruntime is not installed "
                               "(pip install onnxruntime), or use --eval-backend torch")
        return True
    return device.type == "cpu" and onnxruntime_version() is not None


class OnnxBackbone(Backbone):
    """``source``'s network run by ONNX Runtime (CPU provider, torch's thread count); its
    ``prepare`` stays in torch. Same name, outputs and feature size as ``source``."""

    def __init__(self, source: Backbone, session, input_shape: tuple[int, ...]) -> None:
        super().__init__()
        self.source, self.session, self.input_shape = source, session, input_shape
        self.name, self.has_logits = source.name, source.has_logits
        self.num_features = source.num_features
        self.runtime = f"onnxruntime {onnxruntime_version()} (CPU)"
        self.outputs = [o.name for o in session.get_outputs()]

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        x = self.source.prepare(images)
        if tuple(x.shape[1:]) != self.input_shape:  # another image size than exported: torch
            return self.source.forward(images)
        out = self.session.run(self.outputs, {"x": np.ascontiguousarray(x.cpu().numpy())})
        return split_outputs(tuple(torch.from_numpy(o).to(images.device) for o in out)
                             if len(out) > 1 else torch.from_numpy(out[0]).to(images.device))


def onnx_backbone(source: Backbone, cache_dir: Path, image_size: int) -> OnnxBackbone:
    """``source`` on ONNX Runtime, from the cached export (made now if missing or not to be
    trusted; by rank 0, the other processes wait)."""
    example = source.prepare(torch.zeros(2, 3, image_size, image_size, dtype=torch.uint8))
    path = export_path(cache_dir, source, example)
    failure = None
    if idist.get_rank() == 0:
        try:
            ensure_export(source, example, path)
        except Exception as e:  # the others must hear of it, not wait for ever
            failure = e
    if idist.get_world_size() > 1:  # the others wait here for rank 0's export
        ok = idist.broadcast(torch.tensor(int(failure is None), device=idist.device()), src=0)
        if not ok.item() and failure is None:
            failure = RuntimeError("rank 0 could not export the feature network")
    if failure is not None:
        raise failure
    return OnnxBackbone(source, load_session(path), tuple(example.shape[1:]))


def export_path(cache_dir: Path, source: Backbone, example: torch.Tensor) -> Path:
    key = fingerprint("onnx", source.name, weights_digest(source.network), list(example.shape[1:]),
                      str(example.dtype), torch.__version__, OPSET, EXPORTER)
    return Path(cache_dir) / "onnx" / f"{key}.onnx"


def weights_digest(network: torch.nn.Module) -> str:
    """SHA-256 of every weight and buffer of ``network``, in order."""
    h = hashlib.sha256()
    for name, tensor in network.state_dict().items():
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def _sidecar(path: Path) -> Path:
    return path.with_suffix(".json")


def trusted(path: Path) -> bool:
    """The export is complete and unchanged: its SHA-256 is the one written beside it."""
    try:
        return json.loads(_sidecar(path).read_text())["sha256"] == file_digest(path)
    except (OSError, ValueError, KeyError, TypeError):
        return False


def ensure_export(source: Backbone, example: torch.Tensor, path: Path) -> None:
    """Export ``source.network`` to ``path`` unless a trusted export is there (a damaged or
    incomplete one is rebuilt, with one log line)."""
    if trusted(path):
        return
    if path.exists() or _sidecar(path).exists():
        logger.warning("rebuilding the ONNX export %s: it does not match its checksum (damaged "
                       "or incomplete)", path)
    else:
        logger.info("exporting the feature network to ONNX once (%s)", path)
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    outputs = ["features", "logits"] if source.has_logits else ["features"]
    with warnings.catch_warnings():  # the exporter's deprecation and tracing notices
        warnings.simplefilter("ignore")
        torch.onnx.export(source.network.cpu().eval(), (example.cpu(),), buffer, dynamo=False,
                          input_names=["x"], output_names=outputs, opset_version=OPSET,
                          dynamic_axes={name: {0: "n"} for name in ["x", *outputs]})
    data = buffer.getvalue()
    atomic_write(path, lambda f: f.write(data))
    write_json_atomic(_sidecar(path), {"sha256": hashlib.sha256(data).hexdigest(),
                                       "network": source.name, "torch": torch.__version__,
                                       "exporter": EXPORTER, "opset": OPSET})


def load_session(path: Path):
    """An ONNX Runtime session of ``path`` on the CPU, with torch's intra-op thread count."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    options.inter_op_num_threads = 1
    options.log_severity_level = 3  # errors only
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
