"""Test helpers: real image files on disk, tiny settings, and the commands in this process
(:func:`run_main`) or as processes of their own (:func:`run_cli`, :func:`start_cli`)."""

from __future__ import annotations

import contextlib
import importlib
import io
import json
import logging
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
SHARED_FACES = REPO.parent / "shared" / "data" / "anime-faces-64"

# Tiny networks and batches: the tests check behaviour, not image quality.
TINY = ["--ngf", "8", "--ndf", "8", "--batch-size", "8", "--num-workers", "0", "--no-progress"]
# For tests of training itself: no FID/IS (Inception on 2 CPU cores costs seconds per image batch).
NO_EVAL = ["--eval-every", "0"]
# Set for every test (conftest.py) but those marked ``inception``: the tests' tiny features.
TINY_FEATURES = "ANIMEGAN_TEST_FEATURES"


@contextlib.contextmanager
def inception_network():
    """The real Inception networks inside the block (for a fixture that embeds with them)."""
    saved = os.environ.pop(TINY_FEATURES, None)
    try:
        yield
    finally:
        if saved is not None:
            os.environ[TINY_FEATURES] = saved


def write_images(folder: Path, n: int, size: int = 64, seed: int = 0, ext: str = ".jpg") -> list[Path]:
    """``n`` real image files of random blobs, in an ImageFolder layout (folder/faces/*)."""
    rng = np.random.default_rng(seed)
    out = folder / "faces"
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        base = rng.integers(0, 255, size=(1, 1, 3))
        noise = rng.integers(-40, 40, size=(size, size, 3))
        arr = np.clip(base + noise, 0, 255).astype(np.uint8)
        path = out / f"img_{i:04d}{ext}"
        Image.fromarray(arr).save(path)
        paths.append(path)
    return paths


def run_main(module: str, *args: object, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """``animegan_ignite.<module>.main(args)`` in this process, where the process boundary is
    not what is tested: its exit status, stdout and stderr (log lines included)."""
    command = importlib.import_module(f"animegan_ignite.{module}")
    out, err = io.StringIO(), io.StringIO()
    root = logging.getLogger()
    handlers, level, here = list(root.handlers), root.level, Path.cwd()
    os.chdir(cwd or here)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                status = command.main([str(a) for a in args])
            except SystemExit as e:
                status = e.code
    finally:
        os.chdir(here)
        root.handlers[:] = handlers
        root.setLevel(level)
    return subprocess.CompletedProcess(args, status, out.getvalue(), err.getvalue())


def run_cli(module: str, *args: str, timeout: float = 600, cwd: Path | None = None,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """``python -m animegan_ignite.<module> args`` in a process of its own: a child forked from
    a warm parent that has done the imports (tests/zygote.py), or with ANIMEGAN_TEST_FRESH=1 a
    fresh interpreter."""
    argv = [sys.executable, "-m", f"animegan_ignite.{module}", *map(str, args)]
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    if os.environ.get("ANIMEGAN_TEST_FRESH") == "1":
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env,
                              cwd=cwd)
    return _ZYGOTE.run(module, [str(a) for a in args], argv, env, cwd, timeout)


class _Zygote:
    """The warm parent of :func:`run_cli`'s processes, started on first use."""

    def __init__(self) -> None:
        self.proc: subprocess.Popen | None = None
        self.lock = threading.Lock()

    def _start(self) -> subprocess.Popen:
        if self.proc is None or self.proc.poll() is not None:
            self.proc = subprocess.Popen([sys.executable, str(REPO / "tests" / "zygote.py")],
                                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                         env={**os.environ, "PYTHONUNBUFFERED": "1"})
            assert json.loads(self.proc.stdout.readline()) == {"ready": True}
        return self.proc

    def run(self, module: str, args: list[str], argv: list[str], env: dict[str, str],
            cwd: Path | None, timeout: float) -> subprocess.CompletedProcess:
        with self.lock, tempfile.TemporaryDirectory() as tmp:
            out, err = Path(tmp) / "stdout", Path(tmp) / "stderr"
            proc = self._start()
            proc.stdin.write(json.dumps({
                "module": module, "args": args, "cwd": str(cwd or Path.cwd()), "env": env,
                "stdout": str(out), "stderr": str(err), "timeout": timeout}) + "\n")
            proc.stdin.flush()
            reply = json.loads(proc.stdout.readline())
            stdout, stderr = out.read_text(errors="replace"), err.read_text(errors="replace")
        if reply.get("timeout"):
            raise subprocess.TimeoutExpired(argv, timeout, stdout, stderr)
        return subprocess.CompletedProcess(argv, reply["status"], stdout, stderr)


_ZYGOTE = _Zygote()


def checkpoint_names(run_dir: Path) -> list[str]:
    """The run's regular checkpoint files, oldest first."""
    from animegan_ignite.rundir import RunDir

    return [p.name for _, p in RunDir(run_dir).regular_checkpoints()]


def start_cli(args, module: str = "train", fault: str | None = None, fault_log: Path | None = None,
              **popen) -> subprocess.Popen:
    """``python -m animegan_ignite.<module> args`` started in the background; with ``fault``
    (faults.py: ``PHASE:N:SIGNAL[:TARGET]``) it stops itself exactly there, whatever the
    machine's speed, and ``fault_log`` records every fault point it passed."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.update({k: str(v) for k, v in (("ANIMEGAN_FAULT", fault), ("ANIMEGAN_FAULT_LOG", fault_log))
                if v is not None})
    return subprocess.Popen([sys.executable, "-m", f"animegan_ignite.{module}", *map(str, args)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            **popen)


def phases_passed(fault_log: Path) -> list[str]:
    """The fault points a run passed, in order (the last one is where a kill landed)."""
    return [line.split()[0] for line in fault_log.read_text().splitlines()]


def start_serve(checkpoint: Path) -> tuple[subprocess.Popen, str]:
    """``python -m animegan_ignite.serve`` on a free port, once it answers; (process, base URL)."""
    import socket
    import urllib.error
    import urllib.request

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "animegan_ignite.serve", "--checkpoint",
                             str(checkpoint), "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            urllib.request.urlopen(base + "/api/info", timeout=2)
            return proc, base
        except (urllib.error.URLError, ConnectionError):
            assert proc.poll() is None, proc.stdout.read()
            time.sleep(0.3)
    proc.kill()
    raise AssertionError("the server did not answer in time")
