"""``animegan-train`` end to end: the run directory, reproducibility, bad input (in this
process), and resume after SIGKILL, Ctrl-C and SIGTERM (real processes, real signals)."""

import json
import re
import signal

import pytest
import torch
from helpers import NO_EVAL, TINY, checkpoint_names, phases_passed, run_main, start_cli

from animegan_ignite.runs.history import read_history, split_history


def _losses(run_dir):
    return split_history(read_history(run_dir))[0]


def test_a_short_run_writes_a_complete_run_directory(image_dir, tmp_path):
    run = tmp_path / "run"
    r = run_main("train", "--data-dir", image_dir, "--output-dir", run, "--epochs", "2",
                "--eval-size", "16", "--snapshot-every", "5", *TINY, *NO_EVAL)
    assert r.returncode == 0, r.stderr
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["epochs"] == 2 and cfg["data_dir"] == str(image_dir)
    iters, epochs = split_history(read_history(run))
    assert [x["iteration"] for x in iters] == list(range(1, 27))  # 104 train images / 8
    assert [e["epoch"] for e in epochs] == [1, 2] and all(e["train_seconds"] > 0 for e in epochs)
    assert checkpoint_names(run) == ["checkpoint_13.pt", "checkpoint_26.pt"]
    assert torch.load(run / "fixed_noise.pt").shape == (64, 100, 1, 1)
    assert sorted(p.name for p in (run / "snapshots").iterdir())[:2] == [
        "final.png", "iter_0000005.png"]
    assert (run / "plots" / "losses.png").stat().st_size > 10_000
    assert "104 train, 16 held out" in (run / "train.log").read_text()
    assert sorted(p.name for p in run.iterdir()) == _readme_layout(without={"tensorboard", "wandb", "mlruns"})


def _readme_layout(without: set[str]) -> list[str]:
    """The top-level names of the README's "What a run writes" tree."""
    from helpers import REPO

    text = (REPO / "README.md").read_text().split("## What a run writes")[1].split("```")[1]
    names = [line.split()[0].rstrip("/") for line in text.splitlines()
             if line.startswith("  ") and not line.startswith("    ")]
    return sorted(set(names) - without)


def test_same_seed_gives_identical_first_losses(image_dir, tmp_path):
    args = ["--data-dir", image_dir, "--epochs", "1", "--eval-size", "16", *TINY, *NO_EVAL]
    for name in ("a", "b"):
        assert run_main("train", *args, "--output-dir", tmp_path / name).returncode == 0
    a, b = _losses(tmp_path / "a")[:5], _losses(tmp_path / "b")[:5]
    assert a == b
    c = run_main("train", *args, "--seed", "1", "--output-dir", tmp_path / "c")
    assert c.returncode == 0 and _losses(tmp_path / "c")[:5] != a


SLOWER = ["--batch-size", "32", "--ngf", "16", "--ndf", "16", "--num-workers", "0",
          "--no-progress", "--eval-size", "32", *NO_EVAL]


@pytest.mark.slow
def test_sigkill_mid_epoch_then_resume_finishes_with_a_continuous_history(big_dir, tmp_path):
    run, log = tmp_path / "run", tmp_path / "faults.log"
    # inside iteration 12 (epoch 2), after epoch 1's checkpoint
    proc = start_cli(["--data-dir", big_dir, "--output-dir", run, "--epochs", "3", *SLOWER],
                     fault="iteration:12:SIGKILL", fault_log=log)
    proc.wait(timeout=300)
    assert proc.returncode == -signal.SIGKILL
    assert phases_passed(log)[-1] == "iteration" and phases_passed(log).count("iteration") == 12
    killed_at = _losses(run)[-1]["iteration"]
    assert killed_at == 11, "killed inside iteration 12, before its record"
    latest = checkpoint_names(run)[-1]
    assert latest == "checkpoint_9.pt"

    r = run_main("train", "--resume", run, "--no-progress")
    assert r.returncode == 0, r.stderr
    iters, epochs = split_history(read_history(run))
    assert [x["iteration"] for x in iters] == list(range(1, 28))
    assert [e["epoch"] for e in epochs] == [1, 2, 3]
    assert checkpoint_names(run)[-1] == "checkpoint_27.pt"
    resumed_from = int(latest.split("_")[1].split(".")[0])
    assert f"resumed at epoch {resumed_from // 9}, iteration {resumed_from}" in r.stderr


@pytest.mark.slow
@pytest.mark.parametrize("sig, status, said", [(signal.SIGINT, 130, "interrupted"),
                                               (signal.SIGTERM, 143, "stopped by SIGTERM")])
def test_ctrl_c_or_sigterm_saves_a_checkpoint_and_plots_then_resume_continues_there(
        big_dir, tmp_path, sig, status, said):
    run = tmp_path / "run"
    # SIGTERM: a preemption, `kill`, `docker stop`; sent inside iteration 4
    proc = start_cli(["--data-dir", big_dir, "--output-dir", run, "--epochs", "2", *SLOWER],
                     fault=f"iteration:4:{sig.name}")
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == status, err
    assert re.search(rf"{said}; checkpoint_4\.pt was saved\. Continue with: animegan-train "
                     rf"--resume {run}", err), err
    assert "stopped at: iteration, 4 iterations done" in err  # the interrupted iteration's end
    assert (run / "plots" / "losses.png").exists()

    r = run_main("train", "--resume", run, "--no-progress")
    assert r.returncode == 0, r.stderr
    assert [x["iteration"] for x in _losses(run)] == list(range(1, 19))


@pytest.mark.slow
def test_sigterm_to_the_whole_process_group_with_dataloader_workers_still_checkpoints(big_dir,
                                                                                      tmp_path):
    # pkill, systemd and job schedulers signal every process of the job: the DataLoader workers
    # end too, and their ends must not break the checkpoint being written.
    run = tmp_path / "run"
    proc = start_cli(["--data-dir", big_dir, "--output-dir", run, "--epochs", "2", *SLOWER,
                      "--num-workers", "2"], fault="iteration:4:SIGTERM:group",
                     start_new_session=True)  # the group: the trainer and its workers
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 143, err
    assert re.search(r"stopped by SIGTERM; checkpoint_4\.pt was saved", err), err
    assert "stopped at: iteration, 4 iterations done" in err
    r = run_main("train", "--resume", run, "--no-progress")
    assert r.returncode == 0, r.stderr
    assert [x["iteration"] for x in _losses(run)] == list(range(1, 19))


def test_resuming_a_finished_run_asks_for_more_epochs_then_extends_it(image_dir, tmp_path):
    run = tmp_path / "run"
    base = ["--data-dir", image_dir, "--output-dir", run, "--eval-size", "16", *TINY, *NO_EVAL]
    assert run_main("train", *base, "--epochs", "1").returncode == 0
    r = run_main("train", "--resume", run)
    assert r.returncode == 2 and "pass --epochs N with N > 1" in r.stderr
    r = run_main("train", "--resume", run, "--epochs", "2", "--no-progress")
    assert r.returncode == 0, r.stderr
    assert _losses(run)[-1]["iteration"] == 26


def _assert_user_error(r, fragment):
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert fragment in r.stderr
    assert "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_bad_data_dirs_are_one_line_errors_and_write_nothing(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "a_file.jpg").write_bytes(b"x")
    for data, fragment in ((tmp_path / "missing", "no such folder"),
                           (tmp_path / "empty", "no images"),
                           (tmp_path / "a_file.jpg", "is a file, not a folder")):
        r = run_main("train", "--data-dir", data, "--output-dir", tmp_path / "run", *TINY, *NO_EVAL)
        _assert_user_error(r, fragment)
        assert not (tmp_path / "run").exists()


def test_truncated_or_foreign_checkpoint_is_refused_and_left_intact(image_dir, tmp_path):
    run = tmp_path / "run"
    assert run_main("train", "--data-dir", image_dir, "--output-dir", run, "--epochs", "1",
                   "--eval-size", "16", *TINY, *NO_EVAL).returncode == 0
    ckpt = run / "checkpoints" / checkpoint_names(run)[-1]
    data = ckpt.read_bytes()
    broken = run / "checkpoints" / "checkpoint_99.pt"
    broken.write_bytes(data[: len(data) // 3])
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    _assert_user_error(run_main("train", "--resume", broken, "--epochs", "2"),
                       "cannot be read as a checkpoint")
    _assert_user_error(run_main("train", "--resume", run, "--epochs", "2"),
                       "cannot be read as a checkpoint")  # the run's latest is the broken one
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(3)}, foreign)
    _assert_user_error(run_main("train", "--resume", foreign), "not a checkpoint of a run")
    _assert_user_error(run_main("train", "--resume", tmp_path / "nope"), "no such run directory")
    assert before == {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}


def test_output_dir_holding_another_run_is_refused_and_untouched(image_dir, tmp_path):
    run = tmp_path / "run"
    args = ["--data-dir", image_dir, "--output-dir", run, "--epochs", "1", "--eval-size", "16",
            *TINY, *NO_EVAL]
    assert run_main("train", *args).returncode == 0
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    _assert_user_error(run_main("train", *args), "already holds a run")
    assert before == {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
