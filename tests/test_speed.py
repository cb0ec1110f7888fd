"""The decoded-image cache and the precision / memory-format options of the training step."""

import math
import os

import pytest
import torch
from helpers import NO_EVAL, TINY, run_main, write_images
from ignite.engine import Engine, Events

from animegan_ignite.data.cache import CachedImages, load_or_build
from animegan_ignite.data.loading import (
    ImageFiles,
    default_transform,
    find_images,
    make_split,
    make_train_loader,
)
from animegan_ignite.networks.architecture import Architecture
from animegan_ignite.networks.gan import Speed, build_gan, frozen, make_training_step
from animegan_ignite.networks.models import Generator, dcgan_weights_init
from animegan_ignite.networks.objectives import penalties
from animegan_ignite.runs.history import read_history, split_history


def test_cached_pixels_equal_the_decode_path_exactly(tmp_path):
    write_images(tmp_path / "data", 6, size=80)  # not 64: Resize and CenterCrop do work
    write_images(tmp_path / "data" / "png", 3, size=50, ext=".png", seed=1)
    files = find_images(tmp_path / "data")
    images, good = load_or_build(files, 64, tmp_path / "cache")
    assert images.dtype == torch.uint8 and images.shape == (9, 3, 64, 64)
    cached, decoded = CachedImages(images, good), ImageFiles(files, default_transform(64))
    for i in range(len(files)):
        assert torch.equal(cached[i][0], decoded[i][0])


def test_cache_is_reused_and_rebuilt_when_the_folder_changes(tmp_path):
    paths = write_images(tmp_path / "data", 5)
    load_or_build(find_images(tmp_path / "data"), 64, tmp_path / "cache")
    cache_files = list((tmp_path / "cache" / "decoded").glob("*.pt"))
    assert len(cache_files) == 1
    mtime = cache_files[0].stat().st_mtime_ns
    load_or_build(find_images(tmp_path / "data"), 64, tmp_path / "cache")
    assert cache_files[0].stat().st_mtime_ns == mtime  # reused, not rewritten
    os.utime(paths[0], ns=(1, 1))  # a changed file
    images, _ = load_or_build(find_images(tmp_path / "data"), 64, tmp_path / "cache")
    assert len(list((tmp_path / "cache" / "decoded").glob("*.pt"))) == 2 and len(images) == 5


def test_cache_skips_corrupt_files_with_one_warning(tmp_path, caplog):
    write_images(tmp_path / "data", 4)
    (tmp_path / "data" / "faces" / "bad.jpg").write_bytes(b"nope")
    images, good = load_or_build(find_images(tmp_path / "data"), 64, tmp_path / "cache")
    assert len(images) == len(good) == 4
    assert sum("1 unreadable" in r.message for r in caplog.records) == 1


def test_worker_processes_build_the_same_cache_as_one_process(tmp_path):
    write_images(tmp_path / "data", 300, size=72)  # more than one batch of 256 files
    (tmp_path / "data" / "faces" / "bad.jpg").write_bytes(b"nope")
    files = find_images(tmp_path / "data")
    one, good_one = load_or_build(files, 64, tmp_path / "one")
    many, good_many = load_or_build(files, 64, tmp_path / "many", num_workers=2)
    assert good_one == good_many and len(good_one) == 300
    assert torch.equal(one, many)


def test_cached_batches_follow_the_same_epoch_order_as_the_dataloader(image_dir, tmp_path):
    plain = make_split(str(image_dir), 16, 8, seed=3)
    cached = make_split(str(image_dir), 16, 8, seed=3, cache_dir=tmp_path)
    a = make_train_loader(plain.train, 8, 0, seed=3)
    b = make_train_loader(cached.train, 8, 0, seed=3)
    assert len(a) == len(b) == 13
    for loader in (a, b):
        loader.sampler.set_epoch(2)
    for (x, _), y in zip(a, b, strict=True):
        assert torch.equal(x, y)


@pytest.mark.parametrize("speed", [Speed("bf16"), Speed("fp16"), Speed("fp32", channels_last=True)])
def test_mixed_precision_and_channels_last_steps_train_with_finite_losses(image_dir, speed):
    torch.manual_seed(0)
    gan = build_gan(Architecture(16, 8, 8), 2e-4, 0.5, torch.device("cpu"))
    batch = next(iter(make_train_loader(make_split(str(image_dir), 16, 8, 0).train, 8, 0, 0)))
    before = [p.clone() for p in gan.netG.parameters()]
    step = make_training_step(gan, speed)
    for _ in range(3):
        out = step(None, batch)
    assert all(math.isfinite(v) for v in out.values())
    assert any(not torch.equal(a, b) for a, b in zip(before, gan.netG.parameters(), strict=True))


def _three_steps(speed: Speed, loss: str = "bce", gamma: float = 0.0):
    torch.manual_seed(0)
    gan = build_gan(Architecture(16, 8, 8), 2e-4, 0.5, torch.device("cpu"))
    gan.netG.apply(dcgan_weights_init)
    gan.netD.apply(dcgan_weights_init)
    batch = torch.rand(8, 3, 64, 64) * 2 - 1
    engine = Engine(make_training_step(gan, speed, loss=loss,
                                       penalties=penalties(loss, 1, r1=gamma, r2=gamma)))
    outputs = []
    engine.add_event_handler(Events.ITERATION_COMPLETED, lambda e: outputs.append(e.state.output))
    torch.manual_seed(1)
    engine.run([batch] * 3)
    return outputs, gan


@pytest.mark.slow
@pytest.mark.parametrize("objective", [("bce", 0.0), ("rpgan", 0.5)])
def test_compiled_step_matches_the_eager_step_and_trains_the_plain_modules(objective):
    """Also with R1 and R2, whose double backward goes through the plain D."""
    eager, eager_gan = _three_steps(Speed(), *objective)
    compiled, compiled_gan = _three_steps(Speed(compile=True), *objective)  # ~30 s of compiling
    for a, b in zip(eager, compiled, strict=True):
        assert a == pytest.approx(b, rel=1e-5, abs=1e-6)
    # The checkpoint saves the original modules: their keys load into a plain Generator.
    state = compiled_gan.netG.state_dict()
    Generator(16, 8).load_state_dict(state, strict=True)
    for name, value in eager_gan.netG.state_dict().items():
        assert torch.allclose(value.float(), state[name].float(), rtol=1e-4, atol=1e-6), name


@pytest.mark.slow
def test_cli_trains_from_the_cache_in_fp16_and_resumes(image_dir, tmp_path):
    args = ["--data-dir", image_dir, "--output-dir", tmp_path / "run", "--eval-size", "16",
            "--cache", "--cache-dir", tmp_path / "cache", "--precision", "fp16", *TINY, *NO_EVAL]
    r = run_main("train", *args, "--epochs", "1")
    assert r.returncode == 0, r.stderr
    assert "decoded-image cache" in r.stderr
    assert "fp16 on the CPU is emulated" in r.stderr  # the user hears why it is slow
    r = run_main("train", "--resume", tmp_path / "run", "--epochs", "2")
    assert r.returncode == 0, r.stderr
    iters, _ = split_history(read_history(tmp_path / "run"))
    assert [x["iteration"] for x in iters] == list(range(1, 27))
    assert all(math.isfinite(x["loss_d"]) for x in iters)


@pytest.mark.slow
def test_the_benchmark_measures_every_section_and_its_ratios_follow_from_its_times(image_dir,
                                                                                   tmp_path):
    import json
    import re
    import subprocess
    import sys

    from helpers import REPO

    out = tmp_path / "bench.json"
    r = subprocess.run([sys.executable, str(REPO / "scripts" / "benchmark.py"), "--quick",
                        "--data-dir", str(image_dir), "--batch-size", "8", "--warmup", "1",
                        "--iters", "2", "--repeats", "1", "--eval-size", "10", "--demo-faces",
                        "200", "--workers", "0", "--no-compile", "--scores-at", "300", "--out",
                        str(out)],
                       capture_output=True, text=True, timeout=1200)
    assert r.returncode == 0, r.stderr[-3000:]
    result = json.loads(out.read_text())
    assert set(result) >= {"startup", "step", "augment", "objectives", "trainer", "data", "demo",
                           "backend", "evaluation"}
    assert result["augment"]["cost"] == pytest.approx(
        result["augment"]["adaptive_ms"] / result["augment"]["fixed_ms"])
    objectives = result["objectives"]
    assert objectives["bce (default)"]["cost"] == 1.0 and set(objectives) == {
        "bce (default)", "bce + R1", "rpgan + R1 + R2", "wgan-gp"}
    assert objectives["wgan-gp"]["cost"] == pytest.approx(
        objectives["wgan-gp"]["ms"] / objectives["bce (default)"]["ms"])
    # progress: each section, contender and repeat is announced as it starts
    assert "[trainer] (b) this trainer: repeat 1/1" in r.stderr
    assert "[evaluation] the seed's ignite FID + IS: repeat 1/1" in r.stderr
    startup = result["startup"]
    assert set(startup["commands_s"]) == {f"{c} {a}" for c in ("train", "evaluate", "generate",
                                                                "serve", "plot")
                                          for a in ("--help", "--bogus")}
    assert startup["slowest_share_of_torch_import"] == pytest.approx(
        max(startup["commands_s"].values()) / startup["import_torch_s"])
    trainer = result["trainer"]
    assert trainer["ratio_to_a"]["(a) plain PyTorch loop"] == 1.0
    for name, ips in trainer["images_per_s"].items():
        assert trainer["ratio_to_a"][name] == pytest.approx(
            ips / trainer["images_per_s"]["(a) plain PyTorch loop"])
    assert 0 < trainer["handler_share_of_step"] < 1
    step, demo, ev = result["step"], result["demo"], result["evaluation"]
    assert step["speedup"] == pytest.approx(step["trainable_ms"] / step["frozen_ms"])
    assert demo["speedup"] == pytest.approx(demo["drawn_every_epoch_s"] / demo["drawn_once_s"])
    assert ev["speedup"] == pytest.approx(ev["seed_ignite_s"] / ev["ours_s"]) and ev["n"] == 10
    assert ev["cost_with_all_scores"] == pytest.approx(
        ev["ours_s"] / (ev["ours_s"] - ev["extra_scores_s"]))
    at_size = ev["at_default_size"]
    assert at_size["cost"] == pytest.approx((at_size["fid_only_s"] + at_size["extra_s"])
                                            / at_size["fid_only_s"])
    backend = result["backend"]  # on the tests' tiny features, which run on torch either way
    assert backend["speedup"] == pytest.approx(backend["onnxruntime_images_per_s"]
                                               / backend["torch_images_per_s"])
    # the printed table says what the JSON holds
    printed = re.search(r"D frozen in G's step \(this trainer's\): +[\d.]+ ms \(([\d.]+)x", r.stdout)
    assert printed and float(printed[1]) == pytest.approx(step["speedup"], abs=0.006)


def test_frozen_d_passes_gradients_to_g_computes_none_of_its_own_and_trains_again_after():
    gan = build_gan(Architecture(16, 8, 8), 2e-4, 0.5, torch.device("cpu"))
    fake = gan.netG(torch.randn(4, 16, 1, 1))
    with frozen(gan.netD):
        gan.netD(fake).mean().backward()
    assert all(p.grad is None for p in gan.netD.parameters())
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in gan.netG.parameters())
    assert all(p.requires_grad for p in gan.netD.parameters())
    with pytest.raises(RuntimeError), frozen(gan.netD):  # a failing step unfreezes it too
        raise RuntimeError("out of memory")
    assert all(p.requires_grad for p in gan.netD.parameters())
