"""Shared fixtures: real image folders and the real faces where they exist."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from helpers import SHARED_FACES, write_images

# Two xdist workers share the 2 cores: one thread per process (and per command it starts) keeps
# them from oversubscribing the cores. Set before torch is first imported, so torch obeys it.
os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture(scope="session", autouse=True)
def default_cache_dir(tmp_path_factory) -> Path:
    """Runs given no --cache-dir use $ANIMEGAN_CACHE: this test process's own folder, never the
    developer's ~/.cache/animegan-ignite (the commands it starts inherit the variable)."""
    folder = tmp_path_factory.mktemp("default_cache")
    os.environ["ANIMEGAN_CACHE"] = str(folder)
    return folder


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


@pytest.fixture(scope="session")
def big_dir(tmp_path_factory) -> Path:
    """320 images: 32-image eval set, 288 train = 9 iterations of 32 per epoch. One folder per
    test process, read only: runs on it share its Inception features through `feature_cache`."""
    root = tmp_path_factory.mktemp("big") / "data"
    write_images(root, 320)
    return root


@pytest.fixture(scope="session")
def feature_cache(tmp_path_factory) -> Path:
    """A --cache-dir shared by the runs of one test process whose subject is not the cache:
    a run evaluating on big_dir embeds all of its training faces (the memorisation score
    compares with the whole of a small set), ~150 s on one CPU thread, once instead of per test."""
    return tmp_path_factory.mktemp("feature_cache")
