"""Shared fixtures: real image folders and the real faces where they exist."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from helpers import SHARED_FACES, write_images

# Two xdist workers share the 2 cores: one thread per process (and per command it starts) keeps
# them from oversubscribing the cores. Set before torch is first imported, so torch obeys it.
os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture
def image_dir(tmp_path: Path) -> Path:
    """A folder of 120 small JPEG faces."""
    root = tmp_path / "data"
    write_images(root, 120)
    return root


@pytest.fixture(scope="session")
def shared_faces() -> Path:
    if not (SHARED_FACES / "images").is_dir():
        pytest.skip("needs ../shared/data/anime-faces-64 (the real faces)")
    return SHARED_FACES


@pytest.fixture
def big_dir(tmp_path: Path) -> Path:
    """320 images: 32-image eval set, 288 train = 9 iterations of 32 per epoch."""
    write_images(tmp_path / "data", 320)
    return tmp_path / "data"
