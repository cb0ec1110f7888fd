"""Where a command runs: the device a user asked for, and whether its precision works there."""

from __future__ import annotations

import logging

import torch

from .config import ConfigError
from .errors import UserError

logger = logging.getLogger(__name__)


def resolve_device(name: str) -> torch.device:
    """``auto`` (a GPU when PyTorch sees one), ``cpu`` or ``cuda``."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name not in ("cpu", "cuda"):
        raise UserError(f"--device must be auto, cpu or cuda, got {name!r}")
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda: PyTorch sees no CUDA GPU here; use --device cpu or auto")
    return torch.device(name)


def cpu_has_bf16() -> bool:
    """Whether this CPU has bfloat16 units (AVX512-BF16 or AMX); without them bf16 is emulated."""
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")  # torch.cpu's own probes
    return any(getattr(torch.cpu, name, lambda: False)() for name in probes)


def check_precision(precision: str, device: torch.device) -> None:
    """Refuse bf16 on a GPU without it (autocast would quietly fall back to fp32), and warn that
    fp16 on a CPU, or bf16 on one without bf16 units, is emulated (many times slower than fp32:
    docs/benchmarks.md)."""
    if device.type == "cuda" and precision == "bf16" and not torch.cuda.is_bf16_supported(
            including_emulation=False):
        raise ConfigError(f"--precision bf16: this GPU ({torch.cuda.get_device_name(device)}) has "
                          "no bfloat16 units; use --precision fp16 (as on Kaggle's T4s) or fp32")
    if device.type == "cpu" and precision == "fp16":
        logger.warning("--precision fp16 on the CPU is emulated and many times slower than fp32; "
                       "on a CPU use bf16 (fast where it has AVX512-BF16 or AMX) or fp32")
    if device.type == "cpu" and precision == "bf16" and not cpu_has_bf16():
        logger.warning("--precision bf16: this CPU has no bfloat16 units (AVX512-BF16 or AMX), "
                       "so bf16 is emulated and many times slower than fp32; use --precision fp32")
