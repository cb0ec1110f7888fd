"""Long runs that are stopped at the worst moments and resumed: resumed from the best checkpoint,
resumed many times, a run that diverges (a stop at each fault point by each signal, compared
whole with the uninterrupted run: tests/test_stops.py)."""


import pytest
import torch
from helpers import TINY, checkpoint_names, run_main

from animegan_ignite.rundir import RunDir
from animegan_ignite.runs.history import read_history, split_history

# 310 training images of big_dir in batches of 32: 9 iterations per epoch; FID on 10 images.
EVAL = ["--batch-size", "32", "--ngf", "16", "--ndf", "16", "--num-workers", "0", "--no-progress",
        "--eval-size", "10", "--inception-weights", "pool3"]
# The four evaluating runs on big_dir share one test process, so its training faces go through
# Inception once for all four instead of once per process (feature_cache).
ON_BIG_DIR = pytest.mark.xdist_group("big_dir_evaluations")


def _records(run):
    return split_history(read_history(run))


def _assert_complete(run, epochs):
    iters, records = _records(run)
    assert [x["iteration"] for x in iters] == list(range(1, 9 * epochs + 1))
    assert [e["epoch"] for e in records] == list(range(1, epochs + 1))
    assert all(e["fid"] > 0 for e in records)


@pytest.mark.slow
@ON_BIG_DIR
def test_resume_from_the_best_checkpoint_continues_from_there(big_dir, feature_cache, tmp_path):
    run, cache = tmp_path / "run", feature_cache
    base = ["--data-dir", big_dir, "--output-dir", run, "--cache-dir", cache, *EVAL]
    assert run_main("train", *base, "--epochs", "3").returncode == 0
    ((best_it, best),) = RunDir(run).best_checkpoints()
    later = [n for n in checkpoint_names(run) if int(n[11:-3]) > best_it]

    r = run_main("train", "--resume", best, "--epochs", "4", "--no-progress", "--cache-dir", cache)
    assert r.returncode == 0, r.stderr
    assert f"resumed at epoch {best_it // 9}, iteration {best_it}" in r.stderr
    _assert_complete(run, 4)  # the history after the best point was truncated and redone
    superseded = sorted(p.name for p in RunDir(run).superseded.glob("*.pt"))
    assert superseded == sorted(later)
    assert checkpoint_names(run) == ["checkpoint_27.pt", "checkpoint_36.pt"]


@pytest.mark.slow
@ON_BIG_DIR
def test_three_resumes_keep_the_latest_two_checkpoints_and_one_best(big_dir, feature_cache,
                                                                     tmp_path):
    run, cache = tmp_path / "run", feature_cache
    assert run_main("train", "--data-dir", big_dir, "--output-dir", run, "--epochs", "1",
                   "--cache-dir", cache, *EVAL).returncode == 0
    for epochs in (2, 3, 4):
        r = run_main("train", "--resume", run, "--epochs", epochs, "--no-progress",
                    "--cache-dir", cache)
        assert r.returncode == 0, r.stderr
    assert checkpoint_names(run) == ["checkpoint_27.pt", "checkpoint_36.pt"]
    fids = {e["iteration"]: e["fid"] for e in _records(run)[1]}
    assert [it for it, _ in RunDir(run).best_checkpoints()] == [min(fids, key=fids.get)]


def test_a_diverged_run_exits_3_with_one_line_and_keeps_the_last_good_checkpoint(image_dir, tmp_path,
                                                                                  monkeypatch):
    import animegan_ignite.training.trainer as trainer

    make_step = trainer.make_training_step

    def poisoned(gan, *args, **kwargs):
        step = make_step(gan, *args, **kwargs)

        def run(engine, batch):
            if engine.state.iteration == 15:  # a diverged discriminator
                with torch.no_grad():
                    next(gan.netD.parameters()).fill_(float("nan"))
            return step(engine, batch)
        return run

    monkeypatch.setattr(trainer, "make_training_step", poisoned)
    run = tmp_path / "run"
    # 104 training faces in batches of 8: 13 iterations an epoch
    r = run_main("train", "--data-dir", image_dir, "--output-dir", run, "--epochs", "3",
                 "--snapshot-every", "3", "--eval-every", "0", "--eval-size", "16", *TINY)
    assert r.returncode == 3, r.stderr
    errors = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "diverged at iteration 15" in errors[0]
    assert "Traceback" not in r.stderr
    assert checkpoint_names(run) == ["checkpoint_13.pt"]
    saved = torch.load(run / "checkpoints" / "checkpoint_13.pt")
    assert all(torch.isfinite(v).all() for v in saved["netD"].values())
    assert not (run / "snapshots" / "final.png").exists()
    assert not (run / "snapshots" / "iter_0000015.png").exists()
    assert _records(run)[0][-1]["iteration"] == 14
    assert (run / "plots" / "losses.png").exists()  # the curves up to the divergence


@pytest.mark.slow
def test_with_dataloader_workers_a_resumed_run_ends_with_the_uninterrupted_runs_weights(image_dir,
                                                                                          tmp_path):
    # Persistent workers: the resumed run's new data iterator draws from the RNG where the
    # uninterrupted run's did not. Resumed at an epoch end (13) and inside an epoch (25 of 26).
    args = ["--data-dir", image_dir, "--epochs", "2", "--eval-size", "16", "--eval-every", "0",
            "--ngf", "8", "--ndf", "8", "--batch-size", "8", "--num-workers", "1", "--no-progress",
            "--lr-decay", "none", "--checkpoint-every", "5"]
    assert run_main("train", *args, "--output-dir", tmp_path / "whole").returncode == 0
    assert run_main("train", *args, "--epochs", "1", "--output-dir", tmp_path / "cut").returncode == 0
    r = run_main("train", "--resume", tmp_path / "cut", "--epochs", "2")
    assert r.returncode == 0, r.stderr
    whole = torch.load(tmp_path / "whole" / "checkpoints" / "checkpoint_26.pt")
    cut = torch.load(tmp_path / "cut" / "checkpoints" / "checkpoint_26.pt")
    r = run_main("train", "--resume", tmp_path / "whole" / "checkpoints" / "checkpoint_25.pt")
    assert r.returncode == 0, r.stderr
    inside = torch.load(tmp_path / "whole" / "checkpoints" / "checkpoint_26.pt")
    for resumed in (cut, inside):
        for key in ("netG", "netD"):
            assert all(torch.equal(whole[key][k], resumed[key][k]) for k in whole[key]), key


# --- requested stops, in this process: the signal is sent at an exact point of the run ----------


SMALL = ["--synthetic-size", "120", "--epochs", "2", "--batch-size", "8", "--ngf", "8", "--ndf", "8",
         "--nz", "16", "--eval-size", "10", "--eval-every", "1", "--snapshot-every", "4",
         "--inception-weights", "pool3",
         "--num-workers", "0", "--no-progress"]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The uninterrupted run, and the real features' cache the others share."""
    root = tmp_path_factory.mktemp("reference")
    r = run_main("train", *SMALL, "--cache-dir", root / "cache", "--output-dir", root / "ref")
    assert r.returncode == 0, r.stderr[-2000:]
    return root


def _stopped(reference, tmp_path, fault: str):
    """The reference's run stopped by ``fault`` (faults.py) in ``tmp_path/run``."""
    with pytest.MonkeyPatch.context() as m:
        m.setenv("ANIMEGAN_FAULT", fault)
        return run_main("train", *SMALL, "--cache-dir", reference / "cache", "--output-dir",
                        tmp_path / "run")


def _resumed(reference, tmp_path):
    return run_main("train", "--resume", tmp_path / "run", "--cache-dir", reference / "cache")


def _without_work(run):
    return [{k: v for k, v in r.items() if k not in ("train_seconds", "eval_seconds",
                                                      "inception_images")} for r in read_history(run)]


def test_ctrl_c_during_the_last_evaluation_then_resume_ends_as_an_uninterrupted_run(reference,
                                                                                   tmp_path):
    stopped = _stopped(reference, tmp_path, "evaluation:2:SIGINT")  # the last epoch's
    assert stopped.returncode == 130, stopped.stderr[-2000:]
    assert "interrupted; checkpoint_26.pt was saved. Continue with: animegan-train --resume" in stopped.stderr
    resumed = _resumed(reference, tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "finishing epoch 2's end" in resumed.stderr
    ref, run = reference / "ref", tmp_path / "run"
    assert _without_work(run) == _without_work(ref)  # the last record and the end, once each
    assert (run / "snapshots" / "final.png").read_bytes() == (ref / "snapshots" / "final.png").read_bytes()
    assert [p.name for _, p in RunDir(run).best_checkpoints()] == [
        p.name for _, p in RunDir(ref).best_checkpoints()]
    assert sorted(p.name for p in (run / "plots").iterdir()) == sorted(
        p.name for p in (ref / "plots").iterdir())
    a, b = (torch.load(r / "checkpoints" / "checkpoint_26.pt") for r in (run, ref))
    assert all(torch.equal(a["netG"][k], b["netG"][k]) for k in a["netG"])


@pytest.mark.slow
def test_sigterm_during_start_up_says_what_to_run_and_the_resume_trains_from_the_beginning(
        reference, tmp_path):
    stopped = _stopped(reference, tmp_path, "start:1:SIGTERM")
    assert stopped.returncode == 143, stopped.stderr[-2000:]
    assert "stopped by SIGTERM before the first checkpoint. Continue with: animegan-train --resume" \
        in stopped.stderr
    assert not RunDir(tmp_path / "run").regular_checkpoints()
    resumed = _resumed(reference, tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert _without_work(tmp_path / "run") == _without_work(reference / "ref")
