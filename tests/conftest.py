"""Shared fixtures: real image folders and the real faces where they exist."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from helpers import SHARED_FACES, TINY_FEATURES, write_images

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


@pytest.fixture(scope="session", autouse=True)
def tiny_features() -> None:
    """Every run a test starts (in this process or as a process of its own, and in fixtures of
    any scope) embeds images with the tiny stand-in for Inception (inception.TinyFeatures):
    Inception costs seconds per image batch on a CPU, and most tests are about what happens
    around the scores. A test of the Inception networks themselves, or of scores on them, is
    marked ``inception`` (see ``real_inception``)."""
    os.environ[TINY_FEATURES] = "tiny"


@pytest.fixture(autouse=True)
def real_inception(request, monkeypatch) -> None:
    """The real networks for a test marked ``inception``."""
    if request.node.get_closest_marker("inception") is not None:
        monkeypatch.delenv(TINY_FEATURES)


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


@pytest.fixture(scope="session")
def standard_weights_file(tmp_path_factory):
    """A weights file in torch-fidelity's format with random values, so the real loading path
    runs offline (the real file is a 91 MB download). Only building the architecture skips the
    load; the code under test then loads this file strictly."""
    import torch
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3
    folder = tmp_path_factory.mktemp("weights")
    torch.save({}, folder / "empty.pth")
    original = FeatureExtractorInceptionV3.load_state_dict
    FeatureExtractorInceptionV3.load_state_dict = lambda self, *a, **k: None
    try:
        torch.manual_seed(0)
        net = FeatureExtractorInceptionV3("inception-v3-compat", ["2048"],
                                          feature_extractor_weights_path=str(folder / "empty.pth"))
    finally:
        FeatureExtractorInceptionV3.load_state_dict = original
    torch.save(net.state_dict(), folder / "weights.pth")
    return folder / "weights.pth"
