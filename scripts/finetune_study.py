"""Fine-tuning on 100 faces a base has not seen: from scratch against ``--init-from`` a base
trained on other faces, with and without ``--freeze-d`` and ``--mirror`` (docs/recipes.md,
"Fine-tuning").

The faces are split by a visible rule: the hair's hue (the circular mean hue of the saturated
pixels in the image's top quarter, mostly hair) in [180, 270) degrees, blue and teal hair, is
"inside". The base trains on every face outside the rule; each variant trains on 100 faces
inside it and is scored against 500 other inside faces that no run trained on (the run's own
held-out split: ``--eval-size 500``), with the memorisation score against its 100.

    python scripts/finetune_study.py --faces ../shared/data/anime-faces-64/images --out study

Runs are resumable: a finished run is not trained again. ``--jobs 2`` trains two runs at a
time with one thread each. Prints the table (two-seed means) and writes ``OUT/table.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

from animegan_ignite.runs.history import has_ended, is_evaluated, read_history

INSIDE_HUES = (180.0, 270.0)
TRAIN_FACES, HELD_OUT = 100, 500
WIDTH = ["--ngf", "16", "--ndf", "16", "--batch-size", "32", "--no-progress", "--cache"]
VARIANTS = {  # name: (starts from the base, extra flags, length as a share of --kimg)
    "scratch": (False, [], 1.0),
    "init": (True, [], 0.5),
    "init_freeze2": (True, ["--freeze-d", "2"], 0.5),
    "init_mirror": (True, ["--mirror"], 0.5),
    "init_freeze2_mirror": (True, ["--freeze-d", "2", "--mirror"], 0.5),
    "init_lr2": (True, ["--lr", "2e-4"], 0.5),  # the 2016 rate, under the cosine
}
SCORES = ("fid", "kid", "precision", "recall", "diversity", "memorisation")


def hair_hue(path: Path) -> float | None:
    """The circular mean hue (degrees) of the saturated, not dark pixels of the top quarter."""
    hsv = np.asarray(Image.open(path).convert("RGB").resize((64, 64)).convert("HSV"))[:16]
    h, s, v = (hsv[..., i].astype(float) for i in range(3))
    keep = (s > 60) & (v > 50)
    if keep.sum() < 50:
        return None  # grey, white or black hair: outside
    angle = h[keep] / 255 * 2 * np.pi
    return float(np.degrees(np.arctan2(np.sin(angle).mean(), np.cos(angle).mean())) % 360)


def split(faces: Path, out: Path) -> dict:
    """Folders of links: ``outside/`` (the base's faces) and ``inside/`` (100 + 500, a seeded
    choice among the faces inside the rule)."""
    files = sorted(p for p in faces.iterdir() if p.suffix.lower() in (".jpg", ".png"))
    hues = [hair_hue(p) for p in files]
    inside = [p for p, h in zip(files, hues, strict=True)
              if h is not None and INSIDE_HUES[0] <= h < INSIDE_HUES[1]]
    outside = sorted(set(files) - set(inside))
    chosen = [inside[i] for i in np.random.default_rng(0).permutation(len(inside))[
        :TRAIN_FACES + HELD_OUT]]
    for name, group in (("outside", outside), ("inside", chosen)):
        folder = out / name
        folder.mkdir(parents=True, exist_ok=True)
        for p in group:
            link = folder / p.name
            if not link.exists():
                link.symlink_to(p.resolve())
    return {"faces": len(files), "inside_rule": len(inside), "outside": len(outside),
            "inside_used": len(chosen)}


def finished(run: Path) -> bool:
    return has_ended(read_history(run))


def train(run: Path, args: list[str], threads: int) -> subprocess.Popen | None:
    if finished(run):
        return None
    resume = ["--resume", str(run)] if (run / "config.json").is_file() else ["--output-dir", str(run)]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    log = (run.parent / f"{run.name}.out").open("a")
    return subprocess.Popen([sys.executable, "-m", "animegan_ignite.train",
                             *(resume if resume[0] == "--resume" else [*args, *resume])],
                            stdout=log, stderr=subprocess.STDOUT, env=env)


def run_all(jobs: list[tuple[Path, list[str]]], parallel: int, times: Path,
            threads: int | None = None) -> None:
    """Train the runs, ``parallel`` at a time (``threads`` each: by default the machine's two
    cores shared out), recording each one's wall time."""
    pending, running = list(jobs), []
    while pending or running:
        while pending and len(running) < parallel:
            run, flags = pending.pop(0)
            proc = train(run, flags, threads or (2 if parallel == 1 else 1))
            if proc is not None:
                running.append((run, proc, time.monotonic()))
        for item in list(running):
            run, proc, start = item
            if proc.poll() is not None:
                running.remove(item)
                if proc.returncode:
                    sys.exit(f"{run} failed ({proc.returncode}): see {run}.out")
                seconds = json.loads(times.read_text()) if times.is_file() else {}  # re-read:
                seconds[run.name] = seconds.get(run.name, 0) + time.monotonic() - start  # another
                times.write_text(json.dumps(seconds, indent=1))  # study may share the folder
                print(f"{run.name}: {seconds[run.name]:.0f} s", flush=True)
        time.sleep(2)


def last_scores(run: Path) -> dict:
    records = [json.loads(line) for line in (run / "history.jsonl").read_text().splitlines()]
    return [r for r in records if is_evaluated(r)][-1]


def table(out: Path, variants: list[str], seeds: list[int]) -> str:
    """Two-seed (or one-seed) means of the last evaluation's scores, the training time (the
    epochs' ``train_seconds``: the first run to evaluate also embeds the judges once, which
    its wall time holds) and the wall time."""
    seconds = json.loads((out / "times.json").read_text())
    rows = ["| variant | kimg | " + " | ".join(SCORES) + " | training (s) | wall (s) | FID per seed |",
            "| --- | ---: | " + " | ".join("---:" for _ in SCORES) + " | ---: | ---: | --- |"]
    for v in variants:
        runs = [out / f"{v}_s{s}" for s in seeds]
        if not all(finished(r) for r in runs):
            continue
        found = [last_scores(r) for r in runs]
        mean = {k: np.mean([f[k] for f in found]) for k in SCORES}
        kimg = json.loads((runs[0] / "config.json").read_text())["kimg"]
        train = np.mean([training_seconds(r) for r in runs])
        rows.append(f"| {v} | {kimg:g} | " + " | ".join(
            f"{mean[k]:.3f}" if k in ("kid", "precision", "recall", "diversity") else f"{mean[k]:.1f}"
            for k in SCORES) + f" | {train:.0f} | {np.mean([seconds[r.name] for r in runs]):.0f} | "
            + " / ".join(f"{f['fid']:.1f}" for f in found) + " |")
    return "\n".join(rows)


def training_seconds(run: Path) -> float:
    records = [json.loads(line) for line in (run / "history.jsonl").read_text().splitlines()]
    return sum(r.get("train_seconds", 0) for r in records if r.get("kind") == "epoch")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--faces", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--seeds", default="1,2")
    p.add_argument("--variants", default=",".join(VARIANTS))
    p.add_argument("--pretrain-kimg", type=float, default=192)
    p.add_argument("--kimg", type=float, default=160, help="the from-scratch length (the "
                   "data-size rule's for 100 faces); fine-tunes train a share of it")
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--threads", type=int, help="threads per run (default: 2 / --jobs)")
    a = p.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    print(json.dumps(split(a.faces, a.out)))
    base = a.out / "base"
    run_all([(base, ["--data-dir", str(a.out / "outside"), *WIDTH, "--eval-size", str(HELD_OUT),
                     "--kimg", f"{a.pretrain_kimg:g}", "--eval-every-kimg", f"{a.pretrain_kimg:g}",
                     "--seed", "1"])], 1, a.out / "times.json")
    seeds, variants = [int(s) for s in a.seeds.split(",")], a.variants.split(",")
    jobs = []
    for seed in seeds:
        for v in variants:
            init, extra, share = VARIANTS[v]
            kimg = a.kimg * share
            jobs.append((a.out / f"{v}_s{seed}", [
                "--data-dir", str(a.out / "inside"), *WIDTH, "--eval-size", str(HELD_OUT),
                "--split-seed", "0", "--seed", str(seed), "--kimg", f"{kimg:g}",
                "--eval-every-kimg", f"{kimg / 2:g}", *(["--init-from", str(base)] if init else []),
                *extra]))
    run_all(jobs, a.jobs, a.out / "times.json", a.threads)
    text = table(a.out, variants, seeds)
    (a.out / "table.md").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
