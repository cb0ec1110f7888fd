"""Starting from a trained generator: ``--init-from`` a run, a checkpoint, an exported model
folder or the Hub; ``animegan-export`` and what reads its folder; ``--freeze-d``, ``--mirror``;
checkpoints and exports of earlier formats that must keep loading (tests/data/)."""

from __future__ import annotations

import json
import shutil
import sys
import urllib.request

import pytest
import torch
from helpers import REPO, TINY_FEATURES, run_cli, run_main, start_serve, write_images
from PIL import Image

from animegan_ignite.config import make_config
from animegan_ignite.data.cache import file_digest
from animegan_ignite.data.loading import make_split, make_train_loader
from animegan_ignite.networks.architecture import FORMAT, Architecture
from animegan_ignite.networks.models import sample
from animegan_ignite.runs.checkpoints import architecture_of, load_checkpoint, load_generator
from animegan_ignite.training.handlers import init_weights
from animegan_ignite.training.trainer import build_run, make_plan

# its tests share the module's trained run and its export (built once, on one worker)
pytestmark = pytest.mark.xdist_group("transfer")
# A tiny source run on the demo's faces: 15 iterations, the EMA of G, ADA, one evaluation.
ARGS = ["--synthetic-size", "140", "--epochs", "1", "--batch-size", "8", "--ngf", "8", "--ndf", "8",
        "--nz", "16", "--eval-size", "20", "--ema-halflife-kimg", "0.5", "--augment-p", "auto",
        "--ada-kimg", "0.5", "--inception-weights", "pool3", "--num-workers", "0", "--no-progress"]
DATA = REPO / "tests" / "data"


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """The trained run ``base`` and its export ``model``."""
    root = tmp_path_factory.mktemp("transfer")
    r = run_main("train", *ARGS, "--output-dir", root / "base")
    assert r.returncode == 0, r.stderr[-2000:]
    r = run_main("export", root / "base", root / "model")
    assert r.returncode == 0, r.stderr[-2000:]
    return root


def _latest(run):
    return sorted((run / "checkpoints").glob("checkpoint_*.pt"))[-1]


@pytest.mark.parametrize("kind", ["run", "checkpoint", "export"])
def test_a_run_started_from_trained_weights_holds_them_with_fresh_optimisers_and_counters(
        source, tmp_path, kind):
    spec = {"run": source / "base", "checkpoint": _latest(source / "base"),
            "export": source / "model"}[kind]
    cfg = make_config([*ARGS, "--init-from", str(spec), "--output-dir", str(tmp_path / "ft")])
    run = build_run(make_plan(cfg))
    try:
        init_weights(run.engine, run.ctx)  # what the run's STARTED does first
        trained = load_checkpoint(source / "base")
        for name, net in (("netG", run.gan.netG), ("netD", run.gan.netD),
                          ("ema", run.ctx.ema.ema_model)):
            state = net.state_dict()
            assert state.keys() == trained[name].keys()
            assert all(torch.equal(state[k], trained[name][k]) for k in state), name
        assert run.engine.state.iteration == 0 and not run.gan.optG.state and not run.gan.optD.state
        assert trained["ada"]["p"] > 0 and run.ctx.ada.augment.p == cfg.start_p == 0
    finally:
        run.ctx.close()


def test_a_fine_tune_records_its_source_keeps_frozen_blocks_and_sees_mirrored_faces(source,
                                                                                    tmp_path):
    run = tmp_path / "ft"
    r = run_main("train", *ARGS, "--init-from", source / "base", "--freeze-d", "2", "--mirror",
                 "--eval-every", "0", "--output-dir", run)
    assert r.returncode == 0, r.stderr[-2000:]
    saved = json.loads((run / "config.json").read_text())
    file = _latest(source / "base")
    assert saved["init_from"] == str(source / "base") and saved["freeze_d"] == 2 and saved["mirror"]
    assert saved["init_source"]["sha256"] == file_digest(file)
    assert saved["init_source"]["iteration"] == 15
    assert saved["init_source"]["file"] == str(file.resolve())
    assert f"starting from the weights of {source / 'base'} (iteration 15" in r.stderr
    assert "(and their mirror images)" in r.stderr
    before, after = load_checkpoint(file)["netD"], load_checkpoint(run)["netD"]
    weights = [k for k in before if k.endswith(("weight", "bias"))]  # not BatchNorm's statistics
    frozen = [k for k in weights if k.startswith(("main.0.", "main.2."))]
    trained = [k for k in weights if k.startswith("main.3.")]
    assert frozen and all(torch.equal(before[k], after[k]) for k in frozen)
    assert trained and not any(torch.equal(before[k], after[k]) for k in trained)
    # twice the faces an epoch: 120 training faces and their flips in batches of 8
    assert load_checkpoint(run)["trainer"]["epoch_length"] == 30


@pytest.mark.parametrize("cached", [False, True])
def test_mirror_shows_every_training_face_and_its_flip_once_an_epoch(tmp_path, cached):
    write_images(tmp_path / "data", 20)
    split = make_split(str(tmp_path / "data"), 8, 4, 0, cache_dir=tmp_path / "c" if cached else None,
                       mirror=True)
    loader = make_train_loader(split.train, 4, 0, seed=1)
    loader.sampler.set_epoch(0)
    seen = torch.cat([b[0] if isinstance(b, list) else b for b in loader])
    faces = torch.stack([split.faces[i][0] for i in range(len(split.faces))])
    assert len(seen) == 2 * len(faces) == 24

    def count(image):
        return sum(torch.allclose(image, s, atol=1e-6) for s in seen)

    assert all(count(f) == 1 and count(f.flip(-1)) == 1 for f in faces)


def test_a_mismatched_source_or_a_resume_with_it_is_one_line_and_writes_nothing(source, tmp_path):
    r = run_main("train", *ARGS, "--ngf", "16", "--init-from", source / "model", "--output-dir",
                 tmp_path / "a")
    assert r.returncode == 2 and not (tmp_path / "a").exists(), r.stderr
    (line,) = r.stderr.strip().splitlines()[-1:]
    assert line.startswith("error: --init-from") and "--ngf 8 there, --ngf 16 here" in line
    r = run_main("train", "--resume", source / "base", "--init-from", source / "model")
    assert r.returncode == 2 and r.stderr.count("error:") == 1
    assert "give one of them" in r.stderr


def test_hub_sources_come_through_huggingface_hub_and_offline_is_one_line(source, tmp_path,
                                                                         monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)  # the Hub's cache only, no network
    cache = tmp_path / "cache"
    r = run_main("train", *ARGS, "--init-from", "hf:someone/anime-dcgan", "--cache-dir", cache,
                 "--output-dir", tmp_path / "a")
    assert r.returncode == 2 and r.stderr.count("error:") == 1
    assert "hf:someone/anime-dcgan: could not download it" in r.stderr
    # a folder the Hub's client downloaded earlier (its cache layout) is used offline
    repo = cache / "hub" / "models--someone--anime-dcgan"
    shutil.copytree(source / "model", repo / "snapshots" / ("0" * 40))
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0" * 40)
    r = run_main("train", *ARGS, "--init-from", "hf:someone/anime-dcgan", "--cache-dir", cache,
                 "--eval-every", "0", "--output-dir", tmp_path / "b")
    assert r.returncode == 0, r.stderr[-2000:]
    source_info = json.loads((tmp_path / "b" / "config.json").read_text())["init_source"]
    assert source_info["sha256"] == file_digest(source / "model" / "model.safetensors")


def test_the_export_is_a_model_card_and_weights_that_generate_and_evaluate_as_the_run(source,
                                                                                  tmp_path):
    model = source / "model"
    card = (model / "README.md").read_text()
    header = card.split("---")[1]
    assert "pipeline_tag: unconditional-image-generation" in header and "- dcgan" in header
    record = [json.loads(line) for line in (source / "base" / "history.jsonl").read_text().splitlines()]
    fid = [r for r in record if r.get("kind") == "epoch"][-1]["fid"]
    assert f"{fid:.1f}" in card and "--init-from model" in card and "huggingface-cli upload" in card
    info = json.loads((model / "config.json").read_text())
    assert info["format"] == FORMAT and info["weights"] == ["netG", "ema", "netD"]
    assert Architecture.from_dict(info["architecture"]) == Architecture(16, 8, 8)
    with Image.open(model / "sample.png") as im:
        assert im.size == (8 * 66 + 2, 8 * 66 + 2)
    # generate: the same pixels as from the run
    for origin, out in ((source / "base", tmp_path / "run.png"), (model, tmp_path / "model.png")):
        r = run_main("generate", "--checkpoint", origin, "--grid", out, "--num", "16", "--seed", "3")
        assert r.returncode == 0, r.stderr
    assert Image.open(tmp_path / "run.png").tobytes() == Image.open(tmp_path / "model.png").tobytes()
    # evaluate: the run's numbers from the folder alone (its settings travel in config.json)
    scores = []
    for origin in (source / "base", model):
        r = run_main("evaluate", "--checkpoint", origin, "--inception-weights", "pool3", "--json")
        assert r.returncode == 0, r.stderr[-2000:]
        scores.append(json.loads(r.stdout.strip().splitlines()[-1]))
    assert scores[0]["fid"] == pytest.approx(scores[1]["fid"], rel=1e-9)


@pytest.mark.slow
def test_the_server_serves_an_exported_model(source):
    proc, base = start_serve(source / "model")
    try:
        info = json.loads(urllib.request.urlopen(base + "/api/info", timeout=30).read())
        assert info["ngf"] == 8 and info["iteration"] == 15 and info["weights"] == "ema"
    finally:
        proc.terminate()
        proc.wait(30)


def test_checkpoints_and_exports_of_earlier_versions_keep_loading():
    """Written by earlier versions and committed (tests/data/README.md says how): format 1 (no
    architecture record) of a D without BatchNorm, and format 2's checkpoint and export."""
    old = load_checkpoint(DATA / "format1_no_d_batchnorm.pt")
    assert architecture_of(old) == Architecture(8, 4, 4, d_batchnorm=False)
    architecture_of(old).discriminator().load_state_dict(old["netD"])  # overfitting.py's D
    ckpt, export = load_checkpoint(DATA / "format2.pt"), load_checkpoint(DATA / "format2_export")
    assert architecture_of(ckpt) == architecture_of(export) == Architecture(8, 4, 4)
    for checkpoint in (old, ckpt, export):
        architecture_of(checkpoint).discriminator().load_state_dict(checkpoint["netD"])
    z = torch.randn(4, 8, 1, 1, generator=torch.Generator().manual_seed(0))
    assert torch.equal(sample(load_generator(ckpt), z), sample(load_generator(export), z))


def test_a_checkpoint_of_a_newer_format_is_one_line(tmp_path):
    ckpt = load_checkpoint(DATA / "format2.pt")
    ckpt["run_state"]["format"] = FORMAT + 1
    torch.save(ckpt, tmp_path / "checkpoint_5.pt")
    r = run_main("generate", "--checkpoint", tmp_path / "checkpoint_5.pt", "--grid", tmp_path / "g.png")
    assert r.returncode == 2 and r.stderr.count("error:") == 1
    assert f"in format {FORMAT + 1}, newer than this animegan-ignite" in r.stderr
    assert "pip install -U animegan-ignite" in r.stderr


@pytest.mark.slow
def test_a_fine_tune_killed_and_resumed_ends_as_the_uninterrupted_one(source, tmp_path):
    sys.path.insert(0, str(REPO / "scripts"))
    try:
        from chaos import differences
    finally:
        sys.path.pop(0)
    args = [*ARGS, "--epochs", "2", "--init-from", source / "model", "--freeze-d", "1",
            "--checkpoint-every", "4"]
    env = {TINY_FEATURES: "tiny"}
    assert run_cli("train", *args, "--output-dir", tmp_path / "ref", env=env).returncode == 0
    killed = run_cli("train", *args, "--output-dir", tmp_path / "cut",
                     env={**env, "ANIMEGAN_FAULT": "iteration:22:SIGKILL"})
    assert killed.returncode == -9
    r = run_cli("train", "--resume", tmp_path / "cut", "--no-progress", env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    assert differences(tmp_path / "cut", tmp_path / "ref") == []
