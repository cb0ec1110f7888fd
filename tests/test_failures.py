"""Every failure a user can cause or meet, through the real commands' ``main``: the exit status,
one ``error:`` line and no traceback, and the files that existed before unchanged."""

import os
import shutil
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import pytest
from helpers import NO_EVAL, TINY, checkpoint_names, run_main, start_serve, write_images

from animegan_ignite.data.loading import find_images, make_split
from animegan_ignite.runs.history import read_history, split_history


def snapshot(root: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in root.rglob("*") if p.is_file()} if root.exists() else {}


def assert_one_line_error(r, status: int, fragment: str) -> None:
    errors = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    assert r.returncode == status, (r.returncode, r.stdout[-2000:], r.stderr[-2000:])
    assert len(errors) == 1 and fragment in errors[0], r.stderr[-2000:]
    assert "Traceback" not in r.stderr


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A folder with what hostile users leave around: a file, a folder of their own notes, a
    finished run, config files with mistakes, and a small image folder."""
    root = tmp_path_factory.mktemp("world")
    write_images(root / "data", 120)
    (root / "afile").write_text("not a folder")
    (root / "mine").mkdir()
    (root / "mine" / "notes.txt").write_text("my notes")
    (root / "mine" / "todo.md").write_text("- buy milk")
    (root / "taken").mkdir()
    (root / "taken" / "snapshots").write_text("a file where the run wants a folder")
    configs = {"intkey.yaml": "1: 3\n", "outdir.yaml": "output_dir: 5\n",
               "datadir.yaml": "data_dir: [a, b]\n", "typo.yaml": "epoch: 3\n",
               "nullseed.yaml": "seed: null\n", "boolint.yaml": "snapshot_every: true\n",
               "list.yaml": "- 1\n- 2\n", "broken.yaml": "epochs: [1,\n"}
    for name, text in configs.items():
        (root / name).write_text(text)
    r = run_main("train", "--data-dir", root / "data", "--output-dir", root / "run", "--epochs", "1",
                "--eval-size", "16", *TINY, *NO_EVAL)
    assert r.returncode == 0, r.stderr
    (root / "nockpt").mkdir()
    (root / "nockpt" / "config.json").write_text((root / "run" / "config.json").read_text())
    (root / "ckfile").mkdir()  # a new output folder with a file where the run's folder goes
    (root / "ckfile" / "checkpoints").write_text("mine")
    (root / "histdir" / "history.jsonl").mkdir(parents=True)  # and a folder for its file
    (root / "empty" / "checkpoints").mkdir(parents=True)  # a run whose checkpoint is empty
    (root / "empty" / "config.json").write_text((root / "run" / "config.json").read_text())
    (root / "empty" / "checkpoints" / "checkpoint_5.pt").write_bytes(b"")
    return root


TRAIN = ["--epochs", "1", "--eval-size", "16", *TINY, *NO_EVAL]

CASES = [  # (command, args, exit status, fragment of the one error line)
    ("train", ["--output-dir", "afile/run"], 2, "is a file, so nothing can be written below it"),
    ("train", ["--output-dir", "afile"], 2, "is a file, not a folder"),
    ("train", ["--output-dir", "taken", "--force"], 2, "taken/snapshots is a file"),
    ("train", ["--output-dir", "mine"], 2, "is not empty (notes.txt, todo.md) and holds no run"),
    ("train", ["--output-dir", "ckfile"], 2, "ckfile/checkpoints is a file, but the run keeps a folder"),
    ("train", ["--output-dir", "histdir"], 2, "history.jsonl is a folder, but the run keeps a file"),
    ("train", ["--eval-every", "1", "--cache-dir", "afile/cache"], 2, "afile is a file, so nothing "
     "can be written below it"),
    ("train", ["--resume", "empty/checkpoints/checkpoint_5.pt"], 2, "cannot be read as a checkpoint"),
    ("train", ["--resume", "empty"], 2, "cannot be read as a checkpoint"),
    ("train", ["--output-dir", "run"], 2, "already holds a run"),
    ("train", ["--config", "intkey.yaml"], 2, "setting names must be text, got 1"),
    ("train", ["--config", "outdir.yaml"], 2, "output-dir 5: must be non-empty text"),
    ("train", ["--config", "datadir.yaml"], 2, "data-dir ['a', 'b']: must be non-empty text"),
    ("train", ["--config", "typo.yaml"], 2, "unknown setting 'epoch' (did you mean epochs?)"),
    ("train", ["--config", "nullseed.yaml"], 2, "seed None: must be an integer in 0..4294967295"),
    ("train", ["--config", "boolint.yaml"], 2, "snapshot-every True: must be an integer"),
    ("train", ["--config", "list.yaml"], 2, "expected a mapping of setting: value"),
    ("train", ["--config", "broken.yaml"], 2, "not valid YAML/JSON"),
    ("train", ["--seed", "-1"], 2, "--seed -1: must be an integer in 0..4294967295"),
    ("train", ["--seed", "4294967296"], 2, "--seed 4294967296: must be"),
    ("train", ["--lr", "nan"], 2, "--lr nan: must be a number in (0, 1)"),
    ("train", ["--epochs", "0", "--batch-size", "-3"], 2, "--batch-size -3: must be an integer"),
    ("train", ["--resume", "mine"], 2, "is not a run directory"),
    ("train", ["--resume", "afile"], 2, "not a checkpoint of a run"),
    ("train", ["--resume", "missing"], 2, "no such run directory"),
    ("train", ["--resume", "run", "--output-dir", "elsewhere"], 2,
     "a resumed run continues in its own folder"),
    ("generate", ["--checkpoint", "run", "--grid", "100000"], 2, "must end in .png"),
    ("generate", ["--checkpoint", "run", "--grid", "afile/g.png"], 2, "is a file, so nothing"),
    ("generate", ["--checkpoint", "run", "--out-dir", "afile/faces"], 2, "is a file, so nothing"),
    ("generate", ["--checkpoint", "run", "--out-dir", "afile"], 2, "is a file, not a folder"),
    ("generate", ["--checkpoint", "run", "--export", "onnx", "--output", "afile/g.onnx"], 2,
     "is a file, so nothing"),
    ("generate", ["--checkpoint", "run", "--export", "onnx", "--output", "g.pt"], 2, "must end in .onnx"),
    ("generate", ["--checkpoint", "run", "--interpolate", "5", "--gif", "walk.png"], 2,
     "must end in .gif"),
    ("generate", ["--checkpoint", "run", "--grid", "g.png", "--num", "0"], 2,
     "--num 0: must be an integer in 1..256 for --grid"),
    ("generate", ["--checkpoint", "run", "--grid", "g.png", "--num", "-5"], 2,
     "--num -5: must be an integer in"),
    ("generate", ["--checkpoint", "run", "--grid", "g.png", "--num", "1e9"], 2, "invalid int value"),
    ("generate", ["--checkpoint", "run", "--grid", "g.png", "--seed", "-1"], 2,
     "--seed -1: must be an integer in 0.."),
    ("generate", ["--checkpoint", "missing", "--grid", "g.png"], 2, "no such checkpoint"),
    ("evaluate", ["--real", "data", "--save-stats", "afile/s.npz"], 2, "is a file, so nothing"),
    ("evaluate", ["--real", "data", "--save-stats", "stats.txt"], 2, "must end in .npz"),
    ("evaluate", ["--real", "missing", "--fake", "data"], 2, "no such folder"),
    ("evaluate", ["--real", "data", "--fake", "data", "--num", "1"], 2, "--num must be at least 2"),
    ("evaluate", ["--checkpoint", "run", "--batch-size", "0"], 2,
     "--batch-size 0: must be an integer in 1..65536"),
    ("evaluate", ["--real", "data"], 2, "give --checkpoint PATH, or --real and --fake"),
    ("serve", ["--checkpoint", "run", "--port", "70000"], 2, "--port 70000: must be an integer in 0..65535"),
    ("serve", ["--checkpoint", "mine"], 2, "no checkpoints/checkpoint_<iteration>.pt"),
    ("plot", ["run", "--out", "afile/plots"], 2, "is a file, so nothing"),
    ("plot", ["mine"], 2, "is not a run directory"),
]


@pytest.mark.parametrize("module, args, status, fragment", CASES,
                         ids=[f"{c[0]}:{' '.join(c[1])}" for c in CASES])
def test_a_bad_input_is_one_line_with_its_status_and_changes_nothing(world, module, args, status,
                                                                     fragment):
    before = snapshot(world)
    extra = TRAIN if module == "train" and "--resume" not in args else []
    r = run_main(module, *extra, *args, cwd=world)  # the case's flags win
    assert_one_line_error(r, status, fragment)
    assert snapshot(world) == before


def test_a_run_stopped_before_its_first_checkpoint_resumes_from_the_beginning(world, tmp_path):
    run = tmp_path / "nockpt"
    shutil.copytree(world / "nockpt", run)  # config.json only: killed before any checkpoint
    (run / "history.jsonl").write_text('{"kind": "iteration", "iteration": 1, "epoch": 1, '
                                       '"loss_d": 1.0, "loss_g": 1.0}\n')
    r = run_main("train", "--resume", run)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "has no checkpoint yet: training it from the beginning" in r.stderr
    iters, epochs = split_history(read_history(run))
    assert [x["iteration"] for x in iters] == list(range(1, 14)) and len(epochs) == 1
    reference = split_history(read_history(world / "run"))[0]
    assert [x["loss_d"] for x in iters] == [x["loss_d"] for x in reference]  # the same run


def _png_header_claiming(path: Path, width: int, height: int) -> None:
    """A tiny PNG whose header promises ``width`` x ``height`` pixels (a decompression bomb's
    signature); only the header is read before such a file is refused."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
                     + chunk(b"IDAT", zlib.compress(b"\x00" * 16)) + chunk(b"IEND", b""))


def test_what_counts_as_an_image_and_oversized_files_are_skipped_and_counted(tmp_path, caplog):
    write_images(tmp_path / "ÄnimeFaces" / "素晴らしい", 3)  # non-ASCII folder names
    write_images(tmp_path / "upper", 2, ext=".JPG")  # any case
    write_images(tmp_path / "deep" / "a" / "b" / "c", 2, ext=".webp")  # nested
    write_images(tmp_path / ".ipynb_checkpoints", 2)  # hidden folder: not part of the data
    (tmp_path / "._face.jpg").write_bytes(b"macOS resource fork")  # hidden file
    (tmp_path / "notes.txt").write_text("not an image")
    _png_header_claiming(tmp_path / "bomb.png", 100_000, 100_000)
    files = find_images(tmp_path)
    assert len(files) == 3 * 1 + 2 + 2 + 1  # (write_images puts them in a faces/ subfolder)
    assert any("素晴らしい" in str(f) for f in files) and not any(".ipynb" in str(f) for f in files)
    with caplog.at_level("WARNING"):
        split = make_split(str(tmp_path), eval_size=2, batch_size=2, seed=0)
    assert len(split.train) + len(split.eval) == 7
    assert any("1 unreadable image file(s) of 8: bomb.png" in r.message for r in caplog.records)


@pytest.mark.slow
def test_serve_still_answers_every_hostile_request_with_a_4xx(world):
    import urllib.error
    import urllib.request

    proc, base = start_serve(world / "run")
    try:
        hostile = ["/api/faces?n=100000", "/api/faces?n=-1", "/api/faces?seed=nan",
                   "/api/faces?seed=inf", "/api/faces?seed=-5", "/api/walk?a=1&b=2&t=nan",
                   "/api/walk?a=1&b=2&t=inf", "/api/walk?a=1&b=2&t=-0.5",
                   "/api/faces?seed=" + "9" * 100_000, "/api/walk?a=x&b=2",
                   "/api/faces?seed=99999999999999999999999"]
        for path in hostile:
            try:
                urllib.request.urlopen(base + path, timeout=30)
                status = 200
            except urllib.error.HTTPError as e:
                status = e.code
            assert 400 <= status < 500, (path[:60], status)
        # the largest seed the page accepts still draws faces
        with urllib.request.urlopen(base + f"/api/faces?seed={2**63 - 1}&n=1", timeout=30) as r:
            assert r.status == 200
    finally:
        proc.terminate()
        proc.wait(timeout=30)


# --- a disk that fills up ---------------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path):
    """A 3.8 MB tmpfs (where this process may mount one)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3800k", "tmpfs", str(mount)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a size-limited tmpfs here ({r.stderr.strip()[:80]})")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


HOLD_LOCK = """
import os, sys, time
from animegan_ignite.rundir import RunDir, run_lock
with run_lock(RunDir(sys.argv[1])):
    worker = os.fork()  # as a trainer's DataLoader workers are, outliving it for seconds
    if worker == 0:
        time.sleep(600)
        os._exit(0)
    print(worker, flush=True)
    time.sleep(600)
"""


def hold_lock(run: Path) -> tuple[subprocess.Popen, int]:
    """Another process holding ``run``'s lock, as a trainer writing it does, and its forked child."""
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(run)], stdout=subprocess.PIPE,
                              text=True)
    return holder, int(holder.stdout.readline())


def test_a_run_another_trainer_writes_is_refused_and_a_killed_trainer_leaves_no_lock(world, tmp_path):
    resumed, new = tmp_path / "run", tmp_path / "new"
    shutil.copytree(world / "run", resumed)
    holders = [hold_lock(resumed), hold_lock(new)]
    try:
        before = snapshot(tmp_path)
        r = run_main("train", "--resume", resumed, "--epochs", "2")
        assert_one_line_error(r, 2, f"{resumed} is being written by another training process")
        # said before the run's checkpoint and data are loaded: a missing data folder comes second
        r = run_main("train", "--resume", resumed, "--epochs", "2", "--data-dir", tmp_path / "gone")
        assert_one_line_error(r, 2, f"{resumed} is being written by another training process")
        r = run_main("train", "--data-dir", world / "data", "--output-dir", new, *TRAIN)
        assert_one_line_error(r, 2, f"{new} is being written by another training process")
        assert snapshot(tmp_path) == before
        for holder, _ in holders:
            holder.kill()  # SIGKILL: no clean-up, as when a trainer is killed
            holder.wait()
        # The forked children live on; the lock went with the process that took it.
        r = run_main("train", "--resume", resumed, "--epochs", "2")
        assert r.returncode == 0, r.stderr[-2000:]
        assert [e["epoch"] for e in split_history(read_history(resumed))[1]] == [1, 2]
        r = run_main("train", "--data-dir", world / "data", "--output-dir", new, *TRAIN)
        assert r.returncode == 0, r.stderr[-2000:]
        assert (new / "config.json").is_file()
    finally:
        for holder, worker in holders:
            holder.kill()
            holder.wait()
            os.kill(worker, 9)


def test_a_disk_that_fills_keeps_the_last_checkpoint_and_every_plot_then_resumes(world, small_disk):
    run = small_disk / "run"
    args = ["--data-dir", world / "data", "--output-dir", run, "--epochs", "4", "--snapshot-every",
            "2", "--eval-size", "16", *TINY, *NO_EVAL]
    r = run_main("train", *args)
    assert_one_line_error(r, 4, "No space left on device")
    assert f"--resume {run}" in r.stderr and "free on its file system" in r.stderr
    temporary = [p for p in run.rglob("*") if p.name.endswith(".tmp")]
    assert not temporary
    assert checkpoint_names(run), "the first checkpoint fitted"
    from animegan_ignite.runs.checkpoints import load_checkpoint, resolve_checkpoint

    load_checkpoint(resolve_checkpoint(run))  # the last complete checkpoint loads
    iters = split_history(read_history(run))[0]
    assert [x["iteration"] for x in iters] == list(range(1, len(iters) + 1))
    from PIL import Image

    for image in (run / "plots").glob("*.png"):
        Image.open(image).load()  # every plot there is complete
    subprocess.run(["mount", "-o", "remount,size=64m", str(small_disk)], check=True)
    r = run_main("train", "--resume", run)
    assert r.returncode == 0, r.stderr[-2000:]
    iters = split_history(read_history(run))[0]
    assert [x["iteration"] for x in iters] == list(range(1, 4 * 13 + 1))


def test_a_read_only_output_folder_is_refused_before_training(world, small_disk):
    subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)
    r = run_main("train", "--data-dir", world / "data", "--output-dir", small_disk / "run", *TRAIN)
    assert_one_line_error(r, 2, "is not writable (read-only or no permission)")
    r = run_main("generate", "--checkpoint", world / "run", "--out-dir", small_disk / "faces")
    assert_one_line_error(r, 2, "is not writable")
    shutil.rmtree(small_disk / "run", ignore_errors=True)
    assert not list(small_disk.iterdir())
    assert os.path.ismount(small_disk)
