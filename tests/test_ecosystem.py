"""Fitting the tools people use: experiment trackers (W&B offline, MLflow file store), the
console commands, FID between folders or statistics files, and generating any number of faces."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import TINY, run_main, write_images

from animegan_ignite.data.loading import ImageFiles, default_transform, find_images
from animegan_ignite.evaluation.backbones import load_backbone
from animegan_ignite.evaluation.features import to_uint8
from animegan_ignite.runs.history import read_history, split_history

# its module fixtures (a trained run) are built once, on one worker; the installed console
# commands run as real processes (the slow tier)
pytestmark = pytest.mark.xdist_group("ecosystem")

COMMANDS = ("animegan-train", "animegan-evaluate", "animegan-generate", "animegan-serve",
            "animegan-plot")


def command(name, *args, env=None, timeout=600):
    """An installed console command as a real subprocess."""
    exe = shutil.which(name)
    assert exe, f"{name} is not installed (pip install -e .)"
    return subprocess.run([exe, *map(str, args)], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


@pytest.fixture(scope="module")
def tracked_run(tmp_path_factory):
    """Two epochs with FID each epoch, logged to W&B (offline) and MLflow (its default file
    store in the run folder), through the installed console command."""
    root = tmp_path_factory.mktemp("tracked")
    write_images(root / "data", 120)
    run = root / "run"
    env = {"WANDB_MODE": "offline", "WANDB_SILENT": "true", "MLFLOW_TRACKING_URI": "",
           "WANDB_DIR": "", "WANDB_PROJECT": "animegan-test"}
    r = command("animegan-train", "--data-dir", root / "data", "--output-dir", run, "--epochs", "2",
                "--eval-size", "16", "--inception-weights", "pool3", "--cache-dir", root / "cache",
                "--snapshot-every", "6", "--logger", "wandb,mlflow", *TINY, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    return run


@pytest.mark.slow
def test_mlflow_run_holds_the_historys_numbers_params_images_and_artifacts(tracked_run):
    from mlflow.tracking import MlflowClient

    os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    client = MlflowClient((tracked_run / "mlruns").resolve().as_uri())
    (experiment,) = [e for e in client.search_experiments() if e.name == "animegan-ignite"]
    (mlrun,) = client.search_runs([experiment.experiment_id])
    iters, epochs = split_history(read_history(tracked_run))
    for key in ("loss_d", "loss_g", "d_x", "d_g_z1", "d_g_z2"):
        logged = {m.step: m.value for m in client.get_metric_history(mlrun.info.run_id, f"train {key}")}
        assert logged == {r["iteration"]: r[key] for r in iters}, key
    for key in ("fid", "loss_d", "train_seconds", "eval_seconds"):
        logged = {m.step: m.value for m in client.get_metric_history(mlrun.info.run_id, f"epoch {key}")}
        assert logged == {e["iteration"]: e[key] for e in epochs}, key
    params = mlrun.data.params
    assert params["epochs"] == "2" and params["eval_size"] == "16" and params["recipe"]
    artifacts = {a.path for a in client.list_artifacts(mlrun.info.run_id)}
    assert {"checkpoint_26.pt", "summary.png"} <= artifacts
    assert any(a.path.startswith("images/fixed_noise") for a in client.list_artifacts(
        mlrun.info.run_id, "images"))


def _wandb_records(path: Path):
    """The records of an offline W&B run file (its LevelDB-style log of protobuf records)."""
    from wandb.proto import wandb_internal_pb2

    data, pos, buf = path.read_bytes(), 7, b""
    assert data[:4] == b":W&B"
    while pos + 7 <= len(data):
        if 32768 - pos % 32768 < 7:  # a block's tail too short for a header is padding
            pos += 32768 - pos % 32768
            continue
        length, kind = int.from_bytes(data[pos + 4:pos + 6], "little"), data[pos + 6]
        payload, pos = data[pos + 7:pos + 7 + length], pos + 7 + length
        if kind == 0:
            break
        buf = payload if kind in (1, 2) else buf + payload
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(buf)
            yield record


@pytest.mark.slow
def test_offline_wandb_run_holds_the_same_keys_and_values(tracked_run):
    (run_file,) = (tracked_run / "wandb").glob("offline-run-*/run-*.wandb")
    steps: dict[int, dict] = {}
    config = {}
    for record in _wandb_records(run_file):
        kind = record.WhichOneof("record_type")
        if kind == "history":
            items = {i.key or "/".join(i.nested_key): json.loads(i.value_json)
                     for i in record.history.item}
            steps.setdefault(items["_step"], {}).update(items)
        elif kind == "run":
            config = {u.key: json.loads(u.value_json) for u in record.run.config.update}
    iters, epochs = split_history(read_history(tracked_run))
    for r in iters:
        assert {f"train/{k}": steps[r["iteration"]][f"train/{k}"] for k in ("loss_d", "loss_g")} == {
            "train/loss_d": pytest.approx(r["loss_d"]), "train/loss_g": pytest.approx(r["loss_g"])}
    for e in epochs:
        assert steps[e["iteration"]]["epoch/fid"] == pytest.approx(e["fid"])
    assert any(k.startswith("fixed_noise") for s in steps.values() for k in s)
    assert config["epochs"] == 2


def test_a_missing_tracker_extra_is_one_line_exit_2_and_nothing_written(tmp_path, monkeypatch):
    for name in ("wandb", "mlflow"):
        monkeypatch.setitem(sys.modules, name, None)  # as if the extra were not installed
        r = run_main("train", "--logger", name, "--output-dir", tmp_path / "run")
        assert r.returncode == 2, r.stderr
        assert r.stderr.strip() == (f'error: --logger {name} needs the {name} package: '
                                    f'pip install -e ".[{name}]"')
        assert not (tmp_path / "run").exists()


@pytest.mark.slow
@pytest.mark.parametrize("name", COMMANDS)
def test_every_console_command_is_installed_and_answers_help(name):
    r = command(name, "--help", timeout=120)
    assert r.returncode == 0 and "usage:" in r.stdout


@pytest.mark.slow
def test_console_commands_generate_evaluate_plot_and_serve_a_run(tracked_run, tmp_path):
    r = command("animegan-generate", "--checkpoint", tracked_run, "--grid", tmp_path / "g.png",
                "--num", "4")
    assert r.returncode == 0 and (tmp_path / "g.png").exists(), r.stderr
    r = command("animegan-evaluate", "--checkpoint", tracked_run, "--inception-weights", "pool3",
                "--json", "--cache-dir", tracked_run.parent / "cache")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["fid"] == pytest.approx(
        split_history(read_history(tracked_run))[1][-1]["fid"], rel=1e-9)
    r = command("animegan-plot", tracked_run, "--out", tmp_path / "plots")
    assert r.returncode == 0 and (tmp_path / "plots" / "summary.png").exists(), r.stderr
    proc = subprocess.Popen([shutil.which("animegan-serve"), "--checkpoint", str(tracked_run),
                             "--port", "0"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    try:
        assert "serving" in proc.stdout.readline()
    finally:
        proc.terminate()
        proc.wait(timeout=30)


# --- FID between folders ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def two_folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("folders")
    write_images(root / "real", 40, seed=1, ext=".png")
    write_images(root / "fake", 30, seed=2, ext=".png")
    return root / "real", root / "fake"


@pytest.mark.slow
def test_folder_fid_equals_torchmetrics_on_the_same_images(two_folders, tmp_path):
    from torchmetrics.image.fid import FrechetInceptionDistance

    real, fake = two_folders
    r = command("animegan-evaluate", "--real", real, "--fake", fake, "--inception-weights", "pool3",
                "--cache-dir", tmp_path / "cache", "--json")
    assert r.returncode == 0, r.stderr
    ours = json.loads(r.stdout)
    assert (ours["num_real"], ours["num_fake"]) == (40, 30)

    backbone = load_backbone("pool3").backbone

    class Pool3(torch.nn.Module):  # the same network as torchmetrics' feature extractor
        def forward(self, x):
            return backbone.embed(x)[0]

    metric = FrechetInceptionDistance(feature=Pool3())
    for folder, is_real in ((real, True), (fake, False)):
        files = ImageFiles(find_images(folder), default_transform(64))
        images = torch.stack([files[i][0] for i in range(len(files))])
        metric.update(to_uint8(images), real=is_real)
    assert ours["fid"] == pytest.approx(metric.compute().item(), rel=1e-3)


@pytest.mark.slow
@pytest.mark.inception  # the statistics file is pytorch-fid's: 2048-d pool3 statistics
def test_saved_statistics_used_as_real_give_the_same_fid(two_folders, tmp_path):
    real, fake = two_folders  # in this process: the console scripts are the test above's
    base = ["--inception-weights", "pool3", "--cache-dir", tmp_path / "cache", "--json"]
    r = run_main("evaluate", "--real", real, "--save-stats", tmp_path / "real.npz", *base)
    assert r.returncode == 0, r.stderr
    with np.load(tmp_path / "real.npz") as z:
        assert z["mu"].shape == (2048,) and z["sigma"].shape == (2048, 2048)  # pytorch-fid's keys
    direct = json.loads(run_main("evaluate", "--real", real, "--fake", fake, *base).stdout)
    saved = run_main("evaluate", "--real", tmp_path / "real.npz", "--fake", fake, *base)
    assert saved.returncode == 0, saved.stderr
    assert json.loads(saved.stdout)["fid"] == pytest.approx(direct["fid"], rel=1e-9)
    # statistics on the generated side too: the registry's FID of the two Gaussians (0 for the
    # same file), every other score None with the reason; no image is embedded
    both = json.loads(run_main("evaluate", "--real", tmp_path / "real.npz", "--fake",
                               tmp_path / "real.npz", *base).stdout)
    assert both["fid"] == pytest.approx(0.0, abs=1e-6) and both["kid"] is None
    assert "statistics file" in both["unavailable"]["kid"] and "fid" not in both["unavailable"]
    bad = tmp_path / "bad.npz"
    np.savez(bad, weights=np.zeros(3))
    r = run_main("evaluate", "--real", bad, "--fake", fake, "--inception-weights", "pool3")
    assert r.returncode == 2 and "not a statistics file" in r.stderr


# --- any number of faces -----------------------------------------------------------------------


def _peak_rss_kb(args):
    """Peak resident memory of a generate process, read by a parent that runs only it."""
    code = ("import resource, subprocess, sys\n"
            "r = subprocess.run(sys.argv[1:], capture_output=True)\n"
            "assert r.returncode == 0, r.stderr.decode()[-2000:]\n"
            "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
    out = subprocess.run([sys.executable, "-c", code, shutil.which("animegan-generate"),
                          *map(str, args)], capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr
    return int(out.stdout.strip())


@pytest.mark.slow
def test_generate_writes_ten_times_the_faces_in_flat_memory_resumably_and_evaluate_reads_them(
        tracked_run, two_folders, tmp_path):
    small = _peak_rss_kb(["--checkpoint", tracked_run, "--out-dir", tmp_path / "k1", "--num", "500"])
    big = _peak_rss_kb(["--checkpoint", tracked_run, "--out-dir", tmp_path / "k10", "--num", "5000"])
    print(f"peak RSS: --num 500 {small} KB, --num 5000 {big} KB ({big / small:.2f}x)")
    assert big <= 1.5 * small
    files = sorted((tmp_path / "k10").glob("face_0_*.png"))
    assert len(files) == 5000 and files[-1].name == "face_0_0004999.png"
    assert files[123].read_bytes() == (tmp_path / "k1" / files[123].name).read_bytes()  # by seed
    kept, lost = files[10].stat().st_mtime_ns, files[2500].read_bytes()
    for f in files[2490:2510]:
        f.unlink()
    r = command("animegan-generate", "--checkpoint", tracked_run, "--out-dir", tmp_path / "k10",
                "--num", "5000")
    assert r.returncode == 0 and "20 drawn now, 4980 already there" in r.stdout, r.stdout
    assert files[10].stat().st_mtime_ns == kept and files[2500].read_bytes() == lost
    r = command("animegan-evaluate", "--real", two_folders[0], "--fake", tmp_path / "k10", "--num",
                "24", "--inception-weights", "pool3", "--cache-dir", tmp_path / "cache", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["num_fake"] == 24
    r = command("animegan-generate", "--checkpoint", tracked_run, "--grid", tmp_path / "x.png",
                "--num", "1000")
    assert r.returncode == 2 and "draw more with --out-dir" in r.stderr
