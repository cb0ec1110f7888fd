"""Image folders, formats, corrupt files, the held-out split, and the synthetic faces."""

import logging

import numpy as np
import pytest
import torch
from helpers import write_images
from PIL import Image

from animegan_ignite.data.cache import CachedBatches
from animegan_ignite.data.loading import (
    DataError,
    ImageFiles,
    default_transform,
    find_images,
    make_split,
    make_train_loader,
    split_indices,
)
from animegan_ignite.data.synthetic import SyntheticFaces
from animegan_ignite.evaluation.features import dataset_identity as dataset_fingerprint


def test_finds_images_recursively_in_sorted_order(tmp_path):
    write_images(tmp_path / "a", 3, ext=".png")
    write_images(tmp_path / "b" / "deeper", 2, ext=".jpg")
    (tmp_path / "notes.txt").write_text("not an image")
    files = find_images(tmp_path)
    assert len(files) == 5
    assert files == sorted(files)


@pytest.mark.parametrize("mode", ["L", "P", "RGBA", "CMYK", "RGB"])
def test_every_colour_mode_becomes_a_3_channel_tensor_in_minus1_1(tmp_path, mode):
    img = Image.fromarray(np.random.default_rng(0).integers(0, 255, (80, 100, 3), np.uint8))
    path = tmp_path / ("x.jpg" if mode in ("L", "CMYK", "RGB") else "x.png")
    img.convert(mode).save(path)
    x, _ = ImageFiles([path], default_transform(64))[0]
    assert x.shape == (3, 64, 64) and x.dtype == torch.float32
    assert x.min() >= -1 and x.max() <= 1


@pytest.mark.parametrize("ext", [".bmp", ".webp", ".jpeg"])
def test_other_formats_are_read(tmp_path, ext):
    write_images(tmp_path, 2, ext=ext)
    assert len(find_images(tmp_path)) == 2
    assert ImageFiles(find_images(tmp_path), default_transform(64))[0][0].shape == (3, 64, 64)


@pytest.mark.parametrize("workers", [0, 2])
def test_corrupt_and_truncated_files_are_skipped_with_one_counting_warning(tmp_path, caplog, workers):
    paths = write_images(tmp_path, 30)
    (tmp_path / "faces" / "garbage.jpg").write_bytes(b"this is not a jpeg")
    data = paths[0].read_bytes()
    (tmp_path / "faces" / "truncated.jpg").write_bytes(data[: len(data) // 2])
    with caplog.at_level(logging.WARNING):
        split = make_split(str(tmp_path), eval_size=4, batch_size=8, seed=1, num_workers=workers)
    warnings = [r.message for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "2 unreadable" in warnings[0] and "garbage.jpg" in warnings[0]
    assert len(split.train) + len(split.eval) == 30
    for i in range(len(split.train)):  # a full pass never meets a bad file
        assert split.train[i][0].shape == (3, 64, 64)


def test_bad_folders_give_clear_errors(tmp_path):
    with pytest.raises(DataError, match="no such folder"):
        find_images(tmp_path / "missing")
    (tmp_path / "file.jpg").write_bytes(b"x")
    with pytest.raises(DataError, match="is a file, not a folder"):
        find_images(tmp_path / "file.jpg")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no images"):
        find_images(tmp_path / "empty")


def test_too_few_images_for_eval_plus_one_batch_is_an_error(tmp_path):
    write_images(tmp_path, 20)
    with pytest.raises(DataError, match="20 usable images.*needs 24"):
        make_split(str(tmp_path), eval_size=16, batch_size=8, seed=0)


def test_held_out_split_is_disjoint_complete_and_deterministic():
    train, held = split_indices(1000, 300, seed=999)
    assert len(held) == 300 and len(train) == 700
    assert not set(train) & set(held)
    assert sorted(train + held) == list(range(1000))
    assert (train, held) == split_indices(1000, 300, seed=999)
    assert held != split_indices(1000, 300, seed=1)[1]


def test_held_out_files_are_never_in_the_training_set(image_dir):
    split = make_split(str(image_dir), eval_size=30, batch_size=8, seed=5)
    files = split.train.dataset.files
    train_files = {files[i] for i in split.train.indices}
    eval_files = {files[i] for i in split.eval.indices}
    assert len(eval_files) == 30 and not train_files & eval_files


def test_synthetic_faces_are_deterministic_and_varied():
    a, b = SyntheticFaces(8, seed=3), SyntheticFaces(8, seed=3)
    assert np.array_equal(np.asarray(a[5][0]), np.asarray(b[5][0]))
    assert not np.array_equal(np.asarray(a[5][0]), np.asarray(SyntheticFaces(8, seed=4)[5][0]))
    pixels = np.stack([np.asarray(a[i][0], dtype=float) for i in range(8)])
    assert pixels.std(axis=0).mean() > 20  # faces differ from each other
    assert a[0][0].size == (64, 64)
    with pytest.raises(IndexError):
        a[8]


def test_cached_demo_faces_are_the_drawn_faces_served_without_workers(tmp_path):
    """--cache on the synthetic demo draws each face once into memory: the same tensors as the
    on-the-fly path, batches gathered from memory, and a real-stats fingerprint of its own."""
    drawn = make_split(None, 16, 8, 5, synthetic_size=48)
    cached = make_split(None, 16, 8, 5, synthetic_size=48, cache_dir=tmp_path)
    assert "drawn once into memory" in cached.description and not any(tmp_path.iterdir())
    for a, b in ((drawn.train, cached.train), (drawn.eval, cached.eval)):
        assert list(a.indices) == list(b.indices)
        assert torch.equal(torch.stack([x for x, _ in a]), torch.stack([x for x, _ in b]))
    loader = make_train_loader(cached.train, 8, num_workers=2, seed=0)
    assert isinstance(loader, CachedBatches)
    first = next(iter(loader))
    assert first.shape == (8, 3, 64, 64) and -1 <= first.min() < first.max() <= 1
    assert dataset_fingerprint(cached.eval) != dataset_fingerprint(
        make_split(None, 16, 8, 6, synthetic_size=48, cache_dir=tmp_path).eval)
