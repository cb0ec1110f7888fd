"""Test helpers: real image files on disk, tiny settings, and the CLI as a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
SHARED_FACES = REPO.parent / "shared" / "data" / "anime-faces-64"

# Tiny networks and batches: the tests check behaviour, not image quality.
TINY = ["--ngf", "8", "--ndf", "8", "--batch-size", "8", "--num-workers", "0", "--no-progress"]
# For tests of training itself: no FID/IS (Inception on 2 CPU cores costs seconds per image batch).
NO_EVAL = ["--eval-every", "0"]


def write_images(folder: Path, n: int, size: int = 64, seed: int = 0, ext: str = ".jpg") -> list[Path]:
    """``n`` real image files of random blobs, in an ImageFolder layout (folder/faces/*)."""
    rng = np.random.default_rng(seed)
    out = folder / "faces"
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        base = rng.integers(0, 255, size=(1, 1, 3))
        noise = rng.integers(-40, 40, size=(size, size, 3))
        arr = np.clip(base + noise, 0, 255).astype(np.uint8)
        path = out / f"img_{i:04d}{ext}"
        Image.fromarray(arr).save(path)
        paths.append(path)
    return paths


def run_cli(module: str, *args: str, timeout: float = 600, cwd: Path | None = None
            ) -> subprocess.CompletedProcess:
    """``python -m animegan_ignite.<module> args`` as a real subprocess."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run([sys.executable, "-m", f"animegan_ignite.{module}", *map(str, args)],
                          capture_output=True, text=True, timeout=timeout, env=env, cwd=cwd)
