"""Figures from a real short training run's files; the plot command on good and bad folders."""

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
from helpers import REPO, TINY, run_main
from PIL import Image

from animegan_ignite.evaluation.figures import export_plots
from animegan_ignite.runs.history import read_history, split_history

# its module fixtures (a trained run) are built once, on one worker
pytestmark = pytest.mark.xdist_group("plots")

FIGURES = ["losses.png", "d_outputs.png", "augment.png", "metrics.png", "nearest.png", "real_vs_fake.png",
           "summary.png"]


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """2 epochs on 120 real image files, FID each epoch, a snapshot every 5 iterations."""
    root = tmp_path_factory.mktemp("plots")
    from helpers import write_images
    write_images(root / "data", 120)
    run = root / "run"
    r = run_main("train", "--data-dir", root / "data", "--output-dir", run, "--epochs", "2",
                 "--eval-size", "10", "--snapshot-every", "5", "--inception-weights", "pool3",
                 "--cache-dir", root / "cache", *TINY)
    assert r.returncode == 0, r.stderr
    return run


def plot_script(*args):
    return subprocess.run([sys.executable, str(REPO / "scripts" / "plot_metrics.py"), *map(str, args)],
                          capture_output=True, text=True, timeout=300)


def plot(*args):
    return run_main("plot", *args)


def test_trainer_draws_every_figure_as_valid_images(finished_run):
    plots = finished_run / "plots"
    for name in FIGURES:
        with Image.open(plots / name) as im:
            assert im.format == "PNG" and im.width >= 600 and im.height >= 300, name
    with Image.open(plots / "training.gif") as gif:
        assert gif.format == "GIF" and gif.n_frames == 5  # snapshots at 5, 10, ..., 25 of 27
        assert gif.width >= 500
        gif.seek(gif.n_frames - 1)  # the last frame is the last snapshot, below its label
        frame = np.asarray(gif.convert("RGB"), dtype=float)[22:]
    with Image.open(finished_run / "snapshots" / "iter_0000025.png") as im:
        snapshot = np.asarray(im.convert("RGB"), dtype=float)
    assert frame.shape == snapshot.shape
    # 256 colours: ~6 grey levels off on average on the demo faces (PIL's slower median cut: ~5)
    assert np.abs(frame - snapshot).mean() < 8


def test_plot_redraws_into_another_folder(finished_run, tmp_path):
    r = plot(finished_run, "--out", tmp_path / "figs")
    assert r.returncode == 0, r.stderr
    written = sorted(p.name for p in (tmp_path / "figs").iterdir())
    # nearest.png is drawn by the evaluation (it needs the generator and the training faces)
    assert written == sorted([*(f for f in FIGURES if f != "nearest.png"), "training.gif"])
    assert "missing" not in r.stdout


def test_a_run_with_no_metrics_still_gets_its_loss_plots(finished_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    records = [r for r in read_history(run) if r["kind"] == "iteration"]  # as if mid-epoch 1
    (run / "history.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    shutil.rmtree(run / "plots")
    report = export_plots(run)
    names = {p.name for p in report.written}
    assert {"losses.png", "d_outputs.png", "summary.png"} <= names and "metrics.png" not in names
    assert any("scores" in m for m in report.missing)
    r = plot(run)
    assert r.returncode == 0 and "missing scores" in r.stdout


def test_plot_on_a_folder_that_is_not_a_run_exits_2(tmp_path):
    r = plot(tmp_path)
    assert r.returncode == 2
    assert r.stderr.strip().startswith("error:") and len(r.stderr.strip().splitlines()) == 1
    assert plot(tmp_path / "missing").returncode == 2


@pytest.mark.slow
def test_the_plot_script_is_the_plot_command(finished_run, tmp_path):
    r = plot_script(finished_run, "--out", tmp_path / "figs")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "figs" / "summary.png").exists()
    assert plot_script(tmp_path / "nothing").returncode == 2


def test_a_history_with_foreign_lines_still_plots(finished_run, tmp_path):
    """Valid JSON that is not a record (a list, a number) is skipped like a cut-off line."""
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    with (run / "history.jsonl").open("a") as f:
        f.write("[1, 2]\n42\n{\"kind\": \"iteration\"\n")
    r = plot(run, "--out", tmp_path / "figs")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "figs" / "losses.png").exists()


def test_a_damaged_history_plots_what_it_allows_and_names_the_records_it_skipped(finished_run,
                                                                                tmp_path):
    """Records without their numbers (a hand-edited or damaged history): one warning, no traceback."""
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    lines = (run / "history.jsonl").read_text().splitlines()
    lines[3] = '{"kind": "iteration"}'
    lines.append('{"kind": "epoch", "epoch": "three"}')
    (run / "history.jsonl").write_text("\n".join(lines) + "\n")
    r = plot(run, "--out", tmp_path / "figs")  # the script is this command (test above)
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr[-2000:]
    warning = [line for line in r.stderr.splitlines() if "damaged record" in line]
    assert len(warning) == 1 and "skipped 2 damaged record(s)" in warning[0]
    assert "record 4 (iteration, no iteration, epoch, loss_d" in warning[0]
    assert (tmp_path / "figs" / "losses.png").exists() and (tmp_path / "figs" / "metrics.png").exists()


def test_a_diverged_history_of_nan_and_infinity_draws_every_figure_and_says_what_it_left_out(
        finished_run, tmp_path):
    """NaN and +-Infinity in losses, D outputs and scores (a diverged run, the one a user most
    wants to look at): every figure is drawn from the finite values, and one line says what was
    left out (the losses of the last records, the first epoch's scores)."""
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    records = read_history(run)
    bad = {"loss_d": float("nan"), "loss_g": float("inf"), "d_x": float("-inf"),
           "fid": float("nan"), "kid": float("inf"), "precision": float("nan")}
    for n, r in enumerate(records):
        for key, value in bad.items():
            if key in r and (r["epoch"] == 1 if r["kind"] == "epoch" else n % 3 == 0 or n > 20):
                r[key] = value
    (run / "history.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    for name in FIGURES:
        if name != "nearest.png":  # drawn by the trainer, not from the history
            (run / "plots" / name).unlink()
    r = plot(run)
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr[-2000:]
    warning = [line for line in r.stderr.splitlines() if "NaN or infinite" in line]
    assert len(warning) == 1, r.stderr
    for key in bad:
        assert f"{key} in " in warning[0]
    for name in FIGURES:
        with Image.open(run / "plots" / name) as im:
            assert im.format == "PNG" and im.width >= 600, name


def test_model_summaries_are_saved_with_the_models_parameter_counts(finished_run):
    text = (finished_run / "model_summary.txt").read_text()
    from animegan_ignite.networks.models import Discriminator, Generator, count_parameters
    assert f"Total params: {count_parameters(Generator(100, 8)):,}" in text
    assert f"Total params: {count_parameters(Discriminator(8)):,}" in text
    assert "Total params:" in (finished_run / "train.log").read_text()


def test_a_single_evaluation_is_plotted_on_whole_epochs():
    from matplotlib.figure import Figure

    from animegan_ignite.evaluation.figures import draw_panel
    from animegan_ignite.evaluation.scores import panels

    epochs = [{"epoch": 12, "iteration": 900, "fid": 327.4, "num_generated": 128, "eval_seconds": 9.0,
               "is_mean": 2.5, "is_std": 0.1}]
    for title in ("FID", "Inception Score"):
        ax = Figure().subplots()
        draw_panel(ax, epochs, title, panels()[title])
        ticks = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
        assert 12 in ticks and all(float(t).is_integer() for t in ticks), (title, ticks)


def test_a_run_written_before_the_new_scores_still_plots_and_resumes(finished_run, tmp_path):
    """Its epoch records have FID only, its iteration records no p or r_t, its checkpoints no
    augmentation state."""
    import torch

    run = tmp_path / "old"
    shutil.copytree(finished_run, run)
    new = {"kid", "kid_std", "precision", "recall", "density", "coverage", "vendi", "vendi_real",
           "diversity", "unavailable", "augment_p", "r_t"}
    old = [{k: v for k, v in r.items() if k not in new} for r in read_history(run)
           if r["kind"] != "end"]
    (run / "history.jsonl").write_text("".join(json.dumps(r) + "\n" for r in old))
    for path in (run / "checkpoints").glob("*.pt"):
        checkpoint = torch.load(path, weights_only=True)
        checkpoint.pop("ada")
        torch.save(checkpoint, path)
    r = plot(run, "--out", tmp_path / "figs")
    assert r.returncode == 0 and (tmp_path / "figs" / "metrics.png").exists(), r.stderr
    # the finished run's cache: its faces' features are not what this test is about
    r = run_main("train", "--resume", run, "--epochs", "3", "--cache-dir",
                 finished_run.parent / "cache")
    assert r.returncode == 0, r.stderr[-2000:]
    epochs = split_history(read_history(run))[1]
    assert [e["epoch"] for e in epochs] == [1, 2, 3] and epochs[-1]["kid"] is not None


def test_overfitting_script_reports_d_on_training_held_out_and_generated_faces(finished_run, capsys):
    import importlib.util

    spec = importlib.util.spec_from_file_location("overfitting", REPO / "scripts" / "overfitting.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    r = script.measure(finished_run, 8)
    assert r["images"] == 8 and r["p"] is not None  # TINY trains the default recipe
    assert all(-1 <= r[f"sign_{s}"] <= 1 for s in ("train", "held_out", "fake"))
    assert np.isfinite(r["r_v"])
    assert script.main([str(finished_run), "--num", "8"]) == 0
    row = capsys.readouterr().out.splitlines()[2]
    assert row.startswith(f"| {finished_run} | 8 | ") and row.endswith(f"{r['r_v']:.2f} |")
