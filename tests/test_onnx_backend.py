"""The feature network on ONNX Runtime (onnx_backend.py): the same features as torch for both
networks on real and generated faces, the export cached and rebuilt when it cannot be trusted,
one export for two processes, and the same scores from animegan-evaluate on either backend."""

import json
import logging
import subprocess
import sys

import pytest
import torch
from helpers import REPO, TINY, run_main, write_images

from animegan_ignite.data.loading import ImageFiles, default_transform, find_images
from animegan_ignite.evaluation.backbones import load_backbone
from animegan_ignite.evaluation.features import to_uint8
from animegan_ignite.evaluation.inception import POOL3_NAME
from animegan_ignite.evaluation.onnx_backend import OnnxBackbone, trusted
from animegan_ignite.networks.models import Generator, dcgan_weights_init

# Each export traces the whole Inception network (seconds).
pytestmark = [pytest.mark.slow, pytest.mark.inception]


def _faces(image_dir, n=6):
    """``n`` real faces from files and ``n`` of an untrained generator, as uint8 images."""
    real = ImageFiles(find_images(image_dir)[:n], default_transform(64))
    torch.manual_seed(0)
    netG = Generator(nz=16, ngf=8).apply(dcgan_weights_init).eval()
    with torch.no_grad():
        fake = netG(torch.randn(n, 16, 1, 1))
    return torch.stack([to_uint8(real[i][0]) for i in range(n)]), to_uint8(fake)


def _assert_same_features(torch_backbone, onnx_backbone, images):
    a, b = torch_backbone.embed(images), onnx_backbone.embed(images)
    for x, y in zip(a, b, strict=True):
        if x is None:
            assert y is None
            continue
        scale = x.abs().max().item()
        assert (x - y).abs().max().item() <= 1e-4 * max(scale, 1.0), (scale, (x - y).abs().max())


def test_pool3_on_onnx_runtime_gives_torchs_features_on_real_and_generated_faces(image_dir, tmp_path):
    on_torch = load_backbone("pool3", backend="torch").backbone
    on_onnx = load_backbone("pool3", backend="onnxruntime", cache_dir=tmp_path).backbone
    assert isinstance(on_onnx, OnnxBackbone) and on_onnx.name == POOL3_NAME
    assert on_onnx.runtime.startswith("onnxruntime") and on_torch.runtime.startswith("torch")
    for images in _faces(image_dir):
        _assert_same_features(on_torch, on_onnx, images)
    assert on_onnx.images_seen == 12


def test_the_standard_network_gives_features_and_logits_from_one_onnx_pass(image_dir, tmp_path,
                                                                           standard_weights_file):
    on_torch = load_backbone(str(standard_weights_file), backend="torch").backbone
    on_onnx = load_backbone(str(standard_weights_file), backend="onnxruntime",
                            cache_dir=tmp_path).backbone
    assert on_onnx.has_logits
    for images in _faces(image_dir):
        features, logits = on_onnx.embed(images)
        assert features.shape == (6, 2048) and logits.shape == (6, 1008)
        _assert_same_features(on_torch, on_onnx, images)


def test_a_damaged_export_is_rebuilt_with_one_log_line(tmp_path, caplog):
    load_backbone("pool3", backend="onnxruntime", cache_dir=tmp_path)
    (export,) = (tmp_path / "onnx").glob("*.onnx")
    assert trusted(export)
    data = bytearray(export.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte inside the weights: loadable, and wrong
    export.write_bytes(bytes(data))
    assert not trusted(export)
    with caplog.at_level(logging.INFO):
        images = torch.randint(0, 256, (2, 3, 64, 64), dtype=torch.uint8)
        rebuilt = load_backbone("pool3", backend="onnxruntime", cache_dir=tmp_path).backbone
    lines = [r.getMessage() for r in caplog.records if "ONNX export" in r.getMessage()]
    assert len(lines) == 1 and lines[0].startswith("rebuilding the ONNX export"), lines
    assert trusted(export)
    _assert_same_features(load_backbone("pool3", backend="torch").backbone, rebuilt, images)
    caplog.clear()
    with caplog.at_level(logging.INFO):  # trusted now: loaded, not exported again
        load_backbone("pool3", backend="onnxruntime", cache_dir=tmp_path)
    assert not [r for r in caplog.records if "ONNX" in r.getMessage()]


@pytest.mark.xdist_group("gloo")
def test_two_processes_export_once_and_both_run_it(tmp_path):
    script = f"""
import sys; sys.path.insert(0, {str(REPO / "tests")!r})
import ignite.distributed as idist
from dist_helpers import embed_on_onnx_runtime
with idist.Parallel(backend="gloo", nproc_per_node=2) as p:
    p.run(embed_on_onnx_runtime, sys.argv[1], sys.argv[2])
"""
    r = subprocess.run([sys.executable, "-c", script, str(tmp_path / "cache"), str(tmp_path / "f")],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    exports = [line for line in r.stderr.splitlines() if "exporting the feature network" in line]
    assert len(exports) == 1 and exports[0].startswith("rank0"), r.stderr[-2000:]
    assert len(list((tmp_path / "cache" / "onnx").glob("*.onnx"))) == 1
    assert torch.equal(torch.load(tmp_path / "f0.pt"), torch.load(tmp_path / "f1.pt"))


def test_evaluate_on_either_backend_gives_the_same_scores(tmp_path):
    # 40 faces: 20 held out, 20 trained on (all of them the memorisation score's sample)
    write_images(tmp_path / "data", 40)
    run = tmp_path / "run"
    r = run_main("train", "--data-dir", tmp_path / "data", "--epochs", "1", "--eval-size", "20",
                 "--eval-every", "0", "--output-dir", run, *TINY)
    assert r.returncode == 0, r.stderr

    def scores(backend):  # a cache folder each: the real side is embedded on this backend too
        r = run_main("evaluate", "--checkpoint", run, "--inception-weights", "pool3", "--json",
                     "--eval-backend", backend, "--cache-dir", tmp_path / backend)
        assert r.returncode == 0, r.stderr
        return json.loads(r.stdout)

    a, b = scores("torch"), scores("onnxruntime")
    assert a["eval_backend"].startswith("torch") and b["eval_backend"].startswith("onnxruntime")
    for key in ("fid", "kid", "precision", "recall", "diversity"):
        assert b[key] == pytest.approx(a[key], rel=1e-3, abs=1e-9), key
