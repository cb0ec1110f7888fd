"""A warm parent for the tests' command-line runs: it imports torch, torchvision, ignite and the
package once, then forks one child process per command.

Each child is a real process of its own (its own pid, working directory, environment, stdout,
stderr and exit status) that runs ``animegan_ignite.<module>.main(args)`` exactly as ``python -m
animegan_ignite.<module> args`` does; only the ~8 s of imports that every fresh interpreter pays
on this machine are skipped (they are most of the suite's time on 2 cores). The parent runs no
torch operation, so no thread pool exists to be broken by the fork.

Protocol: one JSON request per line on stdin (module, args, cwd, env, stdout and stderr file
paths, timeout); one JSON reply per line on stdout: {"status": N} or {"timeout": true}.
"""

from __future__ import annotations

import importlib
import json
import os
import signal
import sys
import time
import traceback

MODULES = ("train", "training.trainer", "generate", "evaluate", "evaluation.scoring", "serve",
           "use.webapp", "plot", "evaluation.figures")


def _child(request: dict) -> None:
    """In the forked child: become the command, then exit with its status."""
    os.setpgid(0, 0)  # its own group, so a timeout can kill what it started too
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    fds = [os.open(os.devnull, os.O_RDONLY),
           os.open(request["stdout"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC),
           os.open(request["stderr"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC)]
    for target, fd in enumerate(fds):
        os.dup2(fd, target)
        os.close(fd)
    sys.stdin = open(0, closefd=False)  # noqa: SIM115 - the process's own streams
    sys.stdout = open(1, "w", buffering=1, closefd=False)  # noqa: SIM115
    sys.stderr = open(2, "w", buffering=1, closefd=False)  # noqa: SIM115
    module = importlib.import_module(f"animegan_ignite.{request['module']}")
    sys.argv = [module.__file__, *request["args"]]
    try:
        status = module.main(request["args"])
    except SystemExit as e:
        status = e.code
    except BaseException:
        traceback.print_exc()
        status = 1
    if isinstance(status, str):  # as the interpreter does with sys.exit("message")
        print(status, file=sys.stderr)
        status = 1
    sys.exit(status or 0)  # a normal exit: atexit handlers and buffers run as usual


def _wait(pid: int, timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return {"status": os.waitstatus_to_exitcode(status)}
        time.sleep(0.02)
    os.killpg(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    return {"timeout": True}


def serve() -> None:
    for name in MODULES:
        importlib.import_module(f"animegan_ignite.{name}")
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        request = json.loads(line)
        sys.stdout.flush()
        pid = os.fork()
        if pid == 0:
            _child(request)
        print(json.dumps(_wait(pid, request["timeout"])), flush=True)


if __name__ == "__main__":
    serve()
