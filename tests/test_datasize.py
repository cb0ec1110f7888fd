"""Lengths and cadences in images (--kimg, --eval-every-kimg, --checkpoint-every-kimg) and the
data-size rule (datasize.py) on real folders of faces, through the real trainer."""

import json

import pytest
import torch
from helpers import NO_EVAL, REPO, TINY, phases_passed, run_cli, run_main, start_cli, write_images
from ignite.engine import Engine

from animegan_ignite.config import ConfigError, make_config
from animegan_ignite.evaluation.quality import sample_size
from animegan_ignite.runs.history import read_history, split_history
from animegan_ignite.training.datasize import small_data_choices
from animegan_ignite.training.handlers import crossed
from animegan_ignite.training.trainer import make_plan


def test_the_rule_for_64_1000_and_6000_faces():
    assert small_data_choices(64) == {"eval_size": 20, "batch_size": 16, "kimg": 160.0,
                                      "eval_every_kimg": 40.0, "checkpoint_every_kimg": 8.0,
                                      "cache": True}
    assert small_data_choices(1000) == {"eval_size": 200, "batch_size": 32, "kimg": 160.0,
                                        "eval_every_kimg": 40.0, "checkpoint_every_kimg": 8.0,
                                        "cache": True}
    assert small_data_choices(6000) == {}  # the defaults fit: 3,000 held out and a batch of 128
    # the memorisation score compares with every face of a small training set
    assert sample_size(44, 20) == 44 and sample_size(5000, 500) == 500


def test_a_small_folder_gets_the_rule_but_never_over_a_chosen_setting(tmp_path, caplog):
    write_images(tmp_path / "faces", 64)
    cfg = make_config(["--data-dir", str(tmp_path / "faces"), "--batch-size", "8", "--no-cache",
                       "--output-dir", str(tmp_path / "run")])
    with caplog.at_level("INFO"):
        plan = make_plan(cfg)
    chosen = plan.cfg
    assert (chosen.batch_size, chosen.eval_size, chosen.kimg, chosen.eval_every_kimg) == (
        8, 20, 160.0, 40.0)
    assert len(plan.split.eval) == 20 and len(plan.split.train) == 44
    assert chosen.epochs == 4000  # 160,000 images in whole epochs of 5 batches of 8 (40 images)
    line = next(r.message for r in caplog.records if "fewer than the defaults need" in r.message)
    assert "--eval-size 20" in line and "--batch-size" not in line and "cache" not in line
    assert not chosen.cache  # chosen by the user
    plan = make_plan(make_config(["--data-dir", str(tmp_path / "faces"), "--output-dir",
                                  str(tmp_path / "run2"), "--cache-dir", str(tmp_path / "c")]))
    assert plan.cfg.cache and type(plan.split.train.dataset).__name__ == "CachedImages"


def test_a_fine_tune_of_a_small_folder_gets_half_the_length(tmp_path):
    write_images(tmp_path / "faces", 100)
    model = REPO / "tests" / "data" / "format2_export"  # a trained generator: nz 8, width 4
    plan = make_plan(make_config(["--data-dir", str(tmp_path / "faces"), "--init-from", str(model),
                                  "--nz", "8", "--ngf", "4", "--ndf", "4", "--output-dir",
                                  str(tmp_path / "run"), "--cache-dir", str(tmp_path / "c")]))
    assert (plan.cfg.kimg, plan.cfg.eval_every_kimg) == (80.0, 20.0) and plan.init is not None


def test_an_impossible_explicit_combination_still_errors(tmp_path):
    write_images(tmp_path / "faces", 64)
    r = run_main("train", "--data-dir", tmp_path / "faces", "--eval-size", "3000",
                 "--output-dir", tmp_path / "run")
    assert r.returncode == 2 and "--eval-size 3000" in r.stderr and "Traceback" not in r.stderr


def test_epochs_and_kimg_in_one_command_is_an_error():
    with pytest.raises(ConfigError, match="--epochs and --kimg"):
        make_config(["--epochs", "3", "--kimg", "10"])
    with pytest.raises(ConfigError, match="--eval-every and --eval-every-kimg"):
        make_config(["--eval-every", "3", "--eval-every-kimg", "10"])


def test_an_epoch_end_is_due_after_each_multiple_of_the_images():
    engine = Engine(lambda e, b: None)
    engine.state.epoch_length = 13  # 104 images of batch 8 per epoch
    due = []
    for epoch in range(1, 9):
        engine.state.epoch = epoch
        due.append(crossed(engine, 8, 0.25))
    # 104, 208 | 312 | 416 | 520 | 624 | 728 | 832: the first past 250, 500, 750
    assert due == [False, False, True, False, True, False, False, True]


def _run(folder, out, *length):
    r = run_main("train", "--data-dir", folder, "--output-dir", out, "--eval-size", "16",
                 *TINY, *NO_EVAL, *length)
    assert r.returncode == 0, r.stderr
    return torch.load(sorted((out / "checkpoints").glob("checkpoint_*.pt"))[-1])


def test_kimg_and_epochs_give_the_same_run_for_the_same_length_each_drawn_in_its_unit(image_dir,
                                                                                     tmp_path):
    from animegan_ignite.evaluation.figures import _x_key
    from animegan_ignite.rundir import RunDir

    # 104 training faces, batch 8: 13 iterations, 104 images an epoch; 0.2 kimg -> 2 epochs
    by_epochs = _run(image_dir, tmp_path / "e", "--epochs", "2")
    by_kimg = _run(image_dir, tmp_path / "k", "--kimg", "0.2")
    assert by_kimg["trainer"]["iteration"] == by_epochs["trainer"]["iteration"] == 26
    assert all(torch.equal(by_epochs["netG"][k], by_kimg["netG"][k]) for k in by_epochs["netG"])
    saved = json.loads((tmp_path / "k" / "config.json").read_text())
    assert (saved["kimg"], saved["epochs"]) == (0.2, 2)
    # a run counted in images draws its scores against kimg, one counted in epochs against epochs
    epochs = split_history(read_history(tmp_path / "k"))[1]
    assert _x_key(RunDir(tmp_path / "k"), epochs) == "kimg"
    assert _x_key(RunDir(tmp_path / "e"), epochs) == "epoch"
    assert (tmp_path / "k" / "plots" / "losses.png").is_file()
    # --resume --kimg extends the run to the new total
    r = run_main("train", "--resume", tmp_path / "k", "--kimg", "0.3")
    assert r.returncode == 0, r.stderr
    assert "epoch 3/3 (0.312/0.3 kimg): Loss_D" in r.stderr
    epochs = split_history(read_history(tmp_path / "k"))[1]
    assert [e["epoch"] for e in epochs] == [1, 2, 3] and epochs[-1]["kimg"] == pytest.approx(0.312)


KIMG_CADENCES = ["--eval-size", "10", "--kimg", "0.5", "--eval-every-kimg", "0.2",
                 "--checkpoint-every-kimg", "0.25", "--lr-decay", "cosine", "--augment-p", "auto",
                 "--ada-kimg", "0.5", "--inception-weights", "pool3", "--eval-batch-size", "10"]


@pytest.mark.slow
def test_cadences_in_kimg_resume_exactly_after_sigkill(image_dir, tmp_path):
    """110 training faces, batch 8: 13 iterations (104 images) an epoch, 0.5 kimg = 5 epochs;
    evaluations after 200 and 400 images (epochs 2, 4) and the last; checkpoints after 250
    and 500 (epochs 3, 5). Killed in epoch 5, the resumed run (from epoch 3's checkpoint)
    ends with the uninterrupted run's weights, ADA's p and the same evaluated epochs."""
    args = ["--data-dir", str(image_dir), *TINY, *KIMG_CADENCES]
    assert run_cli("train", *args, "--output-dir", tmp_path / "whole").returncode == 0
    log = tmp_path / "faults.log"
    proc = start_cli([*args, "--output-dir", tmp_path / "cut"], fault="iteration:60:SIGKILL",
                     fault_log=log)
    proc.wait(timeout=600)
    assert proc.returncode == -9 and phases_passed(log).count("iteration") == 60
    names = sorted(p.name for p in (tmp_path / "cut" / "checkpoints").glob("checkpoint_*.pt"))
    assert names == ["checkpoint_39.pt"]  # epoch 3's: epoch 4 was not a checkpoint tick
    assert run_cli("train", "--resume", tmp_path / "cut").returncode == 0
    whole, cut = (torch.load(tmp_path / run / "checkpoints" / "checkpoint_65.pt")
                  for run in ("whole", "cut"))
    assert all(torch.equal(whole["netG"][k], cut["netG"][k]) for k in whole["netG"])
    assert whole["ada"] == cut["ada"] and whole["ada"]["p"] > 0
    for run in ("whole", "cut"):
        epochs = split_history(read_history(tmp_path / run))[1]
        assert [e["epoch"] for e in epochs if "fid" in e] == [2, 4, 5], run


