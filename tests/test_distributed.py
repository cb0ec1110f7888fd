"""Multi-process training with ignite.distributed: 2 gloo processes on CPU over real files."""

import contextlib
import math
import re
import socket

import ignite.distributed as idist
import pytest
import torch
from dist_helpers import train_and_dump, train_and_dump_rng
from helpers import phases_passed, run_cli, start_cli

from animegan_ignite.config import make_config
from animegan_ignite.runs.history import read_history, split_history
from animegan_ignite.training.trainer import make_plan

ARGS = ["--epochs", "2", "--eval-size", "16", "--eval-every", "0", "--ngf", "8", "--ndf", "8",
        "--batch-size", "8", "--num-workers", "0", "--no-progress", "--backend", "gloo"]
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("gloo")]  # one worker: ports never meet


@contextlib.contextmanager
def hold_port(port: int):
    """A listening socket on ``port`` (if someone else already holds it, it is held anyway)."""
    with socket.socket() as s:
        with contextlib.suppress(OSError):
            s.bind(("127.0.0.1", port))
            s.listen()
        yield


def test_two_processes_train_identical_models_and_only_rank_0_writes(image_dir, tmp_path):
    run = tmp_path / "run"
    plan = make_plan(make_config(["--data-dir", str(image_dir), "--output-dir", str(run),
                                  "--nproc-per-node", "2", *ARGS]))
    with idist.Parallel(backend="gloo", nproc_per_node=2) as parallel:
        parallel.run(train_and_dump, plan, str(tmp_path))
    for net in ("G", "D"):
        a, b = torch.load(tmp_path / f"{net}_rank0.pt"), torch.load(tmp_path / f"{net}_rank1.pt")
        params = [k for k in a if not k.endswith(("running_mean", "running_var", "num_batches_tracked"))]
        assert params and all(torch.equal(a[k], b[k]) for k in params), net
    # 104 training images: 52 per process, 4 per process-batch (global batch 8): 13 iterations
    iters, epochs = split_history(read_history(run))
    assert [r["iteration"] for r in iters] == list(range(1, 27))
    assert [e["epoch"] for e in epochs] == [1, 2]
    assert (run / "train.log").read_text().count("epoch 2/2") == 1
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["checkpoint_13.pt",
                                                                      "checkpoint_26.pt"]


def test_cli_launches_two_processes_from_one_command(image_dir, tmp_path, monkeypatch):
    run = tmp_path / "run"
    monkeypatch.delenv("MASTER_PORT", raising=False)
    # Another run on this machine holds ignite's default rendezvous port: this one must pick its own.
    with hold_port(2222):
        r = run_cli("train", "--data-dir", image_dir, "--output-dir", run, "--nproc-per-node", "2",
                    *ARGS)
    assert r.returncode == 0, r.stderr
    iters, _ = split_history(read_history(run))
    assert [x["iteration"] for x in iters] == list(range(1, 27))
    r = run_cli("train", "--resume", run, "--epochs", "3", "--nproc-per-node", "2",
                "--backend", "gloo", "--no-progress")
    assert r.returncode == 0, r.stderr
    assert [x["iteration"] for x in split_history(read_history(run))[0]] == list(range(1, 40))


def test_sigterm_to_the_launching_process_checkpoints_both_and_resume_continues(big_dir, tmp_path):
    run = tmp_path / "run"
    # 288 training images, global batch 32 (16 a process): 9 iterations an epoch
    proc = start_cli(["--data-dir", big_dir, "--output-dir", run, "--epochs", "2", "--eval-size",
                      "32", "--eval-every", "0", "--batch-size", "32", "--ngf", "16", "--ndf", "16",
                      "--num-workers", "0", "--no-progress", "--backend", "gloo",
                      "--nproc-per-node", "2"],
                     fault="iteration:4:SIGTERM:parent")  # to the launcher only, as `kill PID` does
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 143, err
    assert re.search(r"stopped by SIGTERM; checkpoint_4\.pt was saved", err), err
    assert "stopped at: iteration, 4 iterations done" in err
    r = run_cli("train", "--resume", run, "--no-progress")
    assert r.returncode == 0, r.stderr
    assert [x["iteration"] for x in split_history(read_history(run))[0]] == list(range(1, 19))


def test_batch_must_split_evenly_and_processes_need_a_backend(tmp_path):
    r = run_cli("train", "--nproc-per-node", "3", "--backend", "gloo", "--batch-size", "8")
    assert r.returncode == 2 and "must divide evenly over 3 processes" in r.stderr
    r = run_cli("train", "--nproc-per-node", "2")
    assert r.returncode == 2 and "needs --backend" in r.stderr


def test_the_same_code_runs_under_torchrun_with_the_kaggle_speed_flags(image_dir, tmp_path):
    import os
    import subprocess
    import sys

    # Under torchrun every rank builds the decoded-image cache at the same moment, into one folder.
    run = tmp_path / "run"
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
                        "--master-port", "29533", "-m", "animegan_ignite.train",
                        "--data-dir", str(image_dir), "--output-dir", str(run), *ARGS,
                        "--cache", "--cache-dir", str(tmp_path / "cache"), "--precision", "fp16"],
                       capture_output=True, text=True, timeout=600,
                       env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stderr[-3000:]
    iters = split_history(read_history(run))[0]
    assert [x["iteration"] for x in iters] == list(range(1, 27))
    assert all(math.isfinite(x["loss_d"]) and math.isfinite(x["loss_g"]) for x in iters)
    assert (run / "train.log").read_text().count("epoch 2/2") == 1
    assert len(list((tmp_path / "cache" / "decoded").glob("*.pt"))) == 1


def _train_2_procs(argv, dump):
    plan = make_plan(make_config([*ARGS, "--nproc-per-node", "2", *argv]))
    dump.mkdir()
    with idist.Parallel(backend="gloo", nproc_per_node=2) as parallel:
        parallel.run(train_and_dump_rng, plan, str(dump))
    return {f.stem: torch.load(f) for f in dump.iterdir()}


def test_a_resumed_2_process_run_draws_each_ranks_own_noise_as_if_never_stopped(image_dir, tmp_path):
    """Resumed at an epoch's end and from inside an epoch, with ADA steered by r_t (one p for
    both ranks, its controller resumed; r_v's: the penalised objectives' test below)."""
    # A constant rate: the default recipe's cosine spans a run's own --epochs, so a 1-epoch run
    # resumed to 2 follows another curve than a 2-epoch run (the same-curve resume is test_recipe's).
    flags = ["--data-dir", str(image_dir), *_ada("rt")]
    whole = _train_2_procs([*flags, "--output-dir", str(tmp_path / "a"), "--checkpoint-every", "5"],
                           tmp_path / "whole")
    ranks = [whole["output_rank0"], whole["output_rank1"]]
    assert ranks[0]["augment_p"] == ranks[1]["augment_p"] > 0 and ranks[0]["r_t"] == ranks[1]["r_t"]
    _train_2_procs([*flags, "--output-dir", str(tmp_path / "b"), "--epochs", "1"], tmp_path / "first")
    resumed = _train_2_procs(["--resume", str(tmp_path / "b"), "--epochs", "2"], tmp_path / "resumed")
    # and from inside epoch 2 (iteration 25 of 26, written by --checkpoint-every)
    inside = _train_2_procs(["--resume", str(tmp_path / "a" / "checkpoints" / "checkpoint_25.pt")],
                            tmp_path / "inside")
    assert not torch.equal(resumed["rng_rank0"], resumed["rng_rank1"])  # ranks draw different noise
    for other in (resumed, inside):
        for key in ("rng_rank0", "rng_rank1"):
            assert torch.equal(other[key], whole[key]), key
        for key in ("G_rank0", "D_rank1"):
            assert all(torch.equal(whole[key][k], other[key][k]) for k in whole[key]), key
        assert str(other["output_rank0"]) == str(whole["output_rank0"])  # p, r_t, losses
    losses = [[r["loss_d"] for r in split_history(read_history(tmp_path / run))[0]] for run in "ab"]
    assert losses[0] == losses[1]


def test_ranks_with_different_cache_folders_agree_on_the_real_statistics(image_dir, tmp_path):
    import json
    import subprocess
    import sys

    from dist_helpers import evaluate_fixed_generator
    from helpers import REPO

    single = tmp_path / "single.json"
    evaluate_fixed_generator(0, str(image_dir), str(single), 12)
    expected = json.loads(single.read_text())["fid"]
    script = f"""
import sys; sys.path.insert(0, {str(REPO / "tests")!r})
import ignite.distributed as idist
from dist_helpers import evaluate_with_own_cache
with idist.Parallel(backend="gloo", nproc_per_node=2) as p:
    p.run(evaluate_with_own_cache, sys.argv[1], sys.argv[2], sys.argv[3])
"""
    caches = tmp_path / "caches"

    def evaluate(name):
        out = tmp_path / f"{name}.json"
        r = subprocess.run([sys.executable, "-c", script, str(image_dir), str(out), str(caches)],
                           capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr[-2000:]
        assert json.loads(out.read_text())["fid"] == pytest.approx(expected, rel=1e-9)

    evaluate("none_cached")  # rank 0 writes its folder's cache
    assert [p.name for p in caches.iterdir()] == ["rank0"]
    evaluate("rank0_cached")  # rank 1 sees no cache: it follows rank 0's decision
    (caches / "rank0").rename(caches / "rank1")
    evaluate("rank1_cached")  # rank 0 sees none: every rank computes


def _ada(steer: str) -> list[str]:
    # rv: each rank scores its own held-out batch; the means, like r_t's, are all-reduced
    return ["--augment-p", "auto", "--ada-kimg", "0.2", "--lr-decay", "none", "--ada-signal", steer,
            "--ada-target", "0.01" if steer == "rv" else "0.6"]


def test_an_adaptive_2_process_run_killed_by_sigkill_resumes_exactly(image_dir, tmp_path):
    """Through the command, the whole process group killed mid-run. Steered by r_v: its
    controller keeps r_t's state (p, the interval's sums) and also draws held-out batches, so
    it resumes all that an r_t run does and more."""
    args = ["--data-dir", str(image_dir), *ARGS, "--nproc-per-node", "2", *_ada("rv"),
            "--checkpoint-every", "5"]
    assert run_cli("train", *args, "--output-dir", tmp_path / "c").returncode == 0
    log = tmp_path / "faults.log"
    proc = start_cli([*args, "--output-dir", tmp_path / "d"], fault="iteration:12:SIGKILL:group",
                     fault_log=log, start_new_session=True)
    proc.wait(timeout=300)
    assert phases_passed(log)[-1] == "iteration" and phases_passed(log).count("iteration") == 12
    assert run_cli("train", "--resume", tmp_path / "d").returncode == 0
    c, d = (torch.load(tmp_path / run / "checkpoints" / "checkpoint_26.pt") for run in "cd")
    assert c["ada"] == d["ada"] and c["ada"]["p"] > 0
    assert all(torch.equal(c["netG"][k], d["netG"][k]) for k in c["netG"])


@pytest.mark.parametrize("objective", [  # R3GAN's, steered by held-out faces (r_v) as it must be
    ["--loss", "rpgan", "--r1-gamma", "0.5", "--r2-gamma", "0.5", "--reg-every", "2", *_ada("rv")],
    ["--loss", "wgan-gp", "--no-d-batchnorm", "--beta1", "0", "--beta2", "0.9", "--lr-decay",
     "none"]])
def test_penalised_objectives_train_equal_ranks_and_resume_exactly(image_dir, tmp_path, objective):
    """The penalties' double backward through DDP: both ranks end with the same weights, every
    rank recorded the penalty, and a resume from inside epoch 2 ends where the whole run did;
    with ADA steered by r_v (each rank scores its own held-out batch; the means all-reduced),
    one p and one r_v on both ranks, resumed exactly."""
    flags = ["--data-dir", str(image_dir), *objective]
    whole = _train_2_procs([*flags, "--output-dir", str(tmp_path / "a"), "--checkpoint-every", "5"],
                           tmp_path / "whole")
    key = "r1" if "rpgan" in objective else "gp"
    assert whole["output_rank0"][key] > 0 and whole["output_rank1"][key] > 0
    if "rpgan" in objective:
        ranks = [whole["output_rank0"], whole["output_rank1"]]
        assert ranks[0]["augment_p"] == ranks[1]["augment_p"] > 0
        assert ranks[0]["r_v"] == ranks[1]["r_v"] and ranks[0]["r_t"] == ranks[1]["r_t"]
    for net in ("G", "D"):
        a, b = whole[f"{net}_rank0"], whole[f"{net}_rank1"]
        params = [k for k in a if not k.endswith(("running_mean", "running_var", "num_batches_tracked"))]
        assert params and all(torch.equal(a[k], b[k]) for k in params), net
    inside = _train_2_procs(["--resume", str(tmp_path / "a" / "checkpoints" / "checkpoint_25.pt")],
                            tmp_path / "inside")
    for net in ("G_rank0", "D_rank1"):
        assert all(torch.equal(whole[net][k], inside[net][k]) for k in whole[net]), net
    assert str(inside["output_rank1"]) == str(whole["output_rank1"])
