"""Which training recipe draws the best faces from the same compute: a side-by-side ablation.

    python scripts/ablate.py --data-dir ../shared/data/anime-faces-64 --out ablation \\
        --variants dcgan,diffaug,ema,diffaug_ema --seeds 1 --iterations 460 --eval-size 1000
    python scripts/ablate.py --out ablation_demo --variants dcgan,recipe:diffaug --seeds 1,2  # demo

Every variant is a real training run of ``python -m animegan_ignite.train`` (its own run folder
under --out) on the same data, held-out subset (``--split-seed``), batch, iteration budget and
evaluation: FID of --eval-size generated images against the same --eval-size held-out real ones,
at --eval-points evenly spaced epoch ends, the last at the end of the budget. Without
--data-dir the variants train on the synthetic demo with its own schedule.

Seconds per iteration are timed separately, in this process, on the trainer with every handler
of a real run, with the variants taken in turns (a, b, c, a, b, c, ...) so that machine drift
affects each alike; the median is reported.

Writes into --out: ``results.json``, ``results.md`` (per variant and seed the final FID, KID,
precision, recall and diversity ratio, FID against ``dcgan``'s, seconds per iteration),
``curves.png`` (FID, KID, recall and diversity against iteration per variant and seed),
``p_curves.png`` (the augmentation probability against iteration) and ``faces.png`` (each
variant's final fixed-noise faces side by side). Interrupted, it
resumes: finished runs are kept, unfinished ones continue from their last checkpoint.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ignite.engine import Events
from matplotlib.figure import Figure
from PIL import Image, ImageDraw
from tqdm import tqdm

from animegan_ignite.config import Config, make_config
from animegan_ignite.data.loading import find_images, iterations_per_epoch, make_split
from animegan_ignite.evaluation.scores import headline_fields, table_cell
from animegan_ignite.rundir import RunDir
from animegan_ignite.runs.history import has_ended, is_evaluated, read_history, split_history
from animegan_ignite.training.trainer import build_run, make_plan

DIFFAUG = ["--diffaugment", "color,translation"]
EMA = ["--ema-halflife-kimg", "10", "--ema-rampup", "0.05"]
HINGE_SN = ["--loss", "hinge", "--spectral-norm"]
TTUR = ["--lr-g", "1e-4", "--lr-d", "4e-4"]
RPGAN = ["--loss", "rpgan", "--r1-gamma", "0.1", "--r2-gamma", "0.1"]
# Each variant is the seed design (--recipe dcgan) plus its flags, or a named recipe.
VARIANTS: dict[str, list[str]] = {
    "dcgan": ["--recipe", "dcgan"],
    "diffaug": ["--recipe", "dcgan", *DIFFAUG],
    "diffaug_cutout": ["--recipe", "dcgan", "--diffaugment", "color,translation,cutout"],
    "ema": ["--recipe", "dcgan", *EMA],
    "ema_update": ["--recipe", "dcgan", *EMA, "--ema-buffers", "update"],
    "ema_no_ramp": ["--recipe", "dcgan", "--ema-halflife-kimg", "10"],
    "diffaug_ema": ["--recipe", "dcgan", *DIFFAUG, *EMA],
    "diffaug_ema_hinge_sn": ["--recipe", "dcgan", *DIFFAUG, *EMA, *HINGE_SN],
    "diffaug_ema_ttur": ["--recipe", "dcgan", *DIFFAUG, *EMA, *TTUR],
    "all": ["--recipe", "dcgan", *DIFFAUG, *EMA, *HINGE_SN, *TTUR],
    "diffaug_fast_g": ["--recipe", "dcgan", *DIFFAUG, "--lr-g", "4e-4", "--lr-d", "1e-4"],
    "diffaug_lr4": ["--recipe", "dcgan", *DIFFAUG, "--lr", "4e-4"],
    "diffaug_ema_long": ["--recipe", "dcgan", *DIFFAUG, "--ema-halflife-kimg", "5",
                         "--ema-rampup", "0.3"],
    "diffaug_hinge": ["--recipe", "dcgan", *DIFFAUG, "--loss", "hinge"],
    "diffaug_lr5": ["--recipe", "dcgan", *DIFFAUG, "--lr", "5e-4"],
    "lr5": ["--recipe", "dcgan", "--lr", "5e-4"],
    "lr5_cos": ["--recipe", "dcgan", "--lr", "5e-4", "--lr-decay", "cosine"],
    "diffaug_cos": ["--recipe", "dcgan", *DIFFAUG, "--lr-decay", "cosine"],
    "diffaug_lr5_cos": ["--recipe", "dcgan", *DIFFAUG, "--lr", "5e-4", "--lr-decay", "cosine"],
    "diffaug_lr10": ["--recipe", "dcgan", *DIFFAUG, "--lr", "1e-3"],
    "diffaug_g10d5": ["--recipe", "dcgan", *DIFFAUG, "--lr-g", "1e-3", "--lr-d", "5e-4"],
    "diffaug_lr10_cos": ["--recipe", "dcgan", *DIFFAUG, "--lr", "1e-3", "--lr-decay", "cosine"],
    "diffaug_g10d5_cos": ["--recipe", "dcgan", *DIFFAUG, "--lr-g", "1e-3", "--lr-d", "5e-4",
                          "--lr-decay", "cosine"],
    "translation": ["--recipe", "dcgan", "--diffaugment", "translation"],
    "translation_lr5": ["--recipe", "dcgan", "--diffaugment", "translation", "--lr", "5e-4"],
    "translation_ema_lr5": ["--recipe", "dcgan", "--diffaugment", "translation", *EMA,
                            "--lr", "5e-4"],
    # The default for real data (DiffAugment at p = 1, Adam 5e-4 with a cosine decay), its
    # strength adapted (ADA), and its rates without augmentation (issue 29's regimes).
    "default": ["--recipe", "diffaug-cosine"],
    "default_ada": ["--recipe", "diffaug-cosine", "--augment-p", "auto"],
    "default_ada_rv": ["--recipe", "diffaug-cosine", "--augment-p", "auto", "--ada-signal", "rv"],
    # r_v recorded only: no augmentation draws no random numbers, so training is unchanged
    "default_noaug": ["--recipe", "diffaug-cosine", "--diffaugment", "none", "--ada-signal", "rv"],
    # The objective (issue 35): EMA of G; the non-saturating loss with lazy R1; relativistic
    # pairing with R1 and R2 (R3GAN's loss), with Adam's betas as is and as R3GAN's (0, 0.99);
    # and without D's BatchNorm (each face's own input gradient).
    "default_ema": ["--recipe", "diffaug-cosine", *EMA],
    "default_r1": ["--recipe", "diffaug-cosine", "--r1-gamma", "0.1"],
    "default_rpgan": ["--recipe", "diffaug-cosine", *RPGAN],
    "default_rpgan_b0": ["--recipe", "r3gan"],
    "default_rpgan_nobn": ["--recipe", "diffaug-cosine", *RPGAN, "--no-d-batchnorm"],
    "default_r1_g1": ["--recipe", "diffaug-cosine", "--r1-gamma", "1"],
    "default_rpgan_g1": ["--recipe", "diffaug-cosine", "--loss", "rpgan", "--r1-gamma", "1",
                         "--r2-gamma", "1"],
}


def variant_flags(name: str) -> list[str]:
    """A variant's flags: one of VARIANTS, or ``recipe:NAME`` for a named recipe."""
    if name.startswith("recipe:"):
        return ["--recipe", name.split(":", 1)[1]]
    if name not in VARIANTS:
        raise SystemExit(f"error: unknown variant {name!r}; choose from {', '.join(VARIANTS)} "
                         "or recipe:NAME")
    return VARIANTS[name]


def schedule(args: argparse.Namespace) -> list[str]:
    """The flags every variant shares: data, split, batch, budget, evaluation. Without
    --data-dir and --iterations, the synthetic demo's own schedule."""
    if args.data_dir is None and args.iterations is None:
        return ["--inception-weights", args.inception_weights, "--split-seed", str(args.split_seed)]
    args.iterations = args.iterations or 460
    if args.data_dir is None:  # the synthetic faces, on a budget (--fresh: new ones every epoch)
        n = args.synthetic_size - args.eval_size
        data = ["--synthetic-size", str(args.synthetic_size), "--no-cache",
                *(["--synthetic-fresh"] if args.fresh else [])]
    else:
        folder = subset_folder(args) if args.train_size else args.data_dir
        n = len(make_split(folder, args.eval_size, args.batch_size, args.split_seed).train)
        data = ["--data-dir", folder, "--cache"]
    per_epoch = iterations_per_epoch(n, args.batch_size)
    epochs = math.ceil(args.iterations / per_epoch)
    every = max(1, epochs // args.eval_points)
    return [*data, "--split-seed", str(args.split_seed), "--batch-size", str(args.batch_size),
            "--eval-size", str(args.eval_size), "--epochs", str(epochs), "--eval-every", str(every),
            "--inception-weights", args.inception_weights,
            "--snapshot-every", str(max(1, epochs * per_epoch // 8))]


def subset_folder(args: argparse.Namespace) -> str:
    """A folder of links to --train-size + --eval-size faces of --data-dir (a seeded choice):
    the data-limited regime, its held-out faces as many as the full folder's."""
    files = find_images(args.data_dir)
    need = args.train_size + args.eval_size
    if need > len(files):
        raise SystemExit(f"error: --train-size {args.train_size} + --eval-size {args.eval_size} "
                         f"needs {need} faces; {args.data_dir} has {len(files)}")
    chosen = random.Random(args.split_seed).sample(files, need)
    folder = args.out / f"data_{args.train_size}" / "faces"
    folder.mkdir(parents=True, exist_ok=True)
    for i, path in enumerate(sorted(chosen)):
        link = folder / f"{i:06d}{path.suffix}"
        if not link.exists():
            link.symlink_to(Path(path).resolve())
    return str(folder.parent)


def finished(run: Path) -> bool:
    """The run is finished (history.has_ended: its end record; one killed after its last
    epoch's record but before its end is resumed to finish it)."""
    return RunDir(run).config.is_file() and has_ended(read_history(run))


def train(run: Path, flags: list[str], bar: tqdm, label: str) -> None:
    """One run as a real ``train`` process; an unfinished one is resumed, one that never reached
    a checkpoint starts again. Each epoch's log line is shown above the progress bar."""
    if RunDir(run).regular_checkpoints():
        cmd = ["--resume", str(run), "--no-progress"]
    else:
        shutil.rmtree(run, ignore_errors=True)
        cmd = [*flags, "--output-dir", str(run), "--no-progress"]
    proc = subprocess.Popen([sys.executable, "-m", "animegan_ignite.train", *cmd],
                            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    tail = []
    for line in proc.stderr:
        tail = [*tail[-20:], line]
        if line.startswith("epoch "):
            bar.update(1)
            tqdm.write(f"{label}: {line.strip()}")
    if proc.wait() != 0:
        raise SystemExit(f"error: {label} failed (status {proc.returncode}):\n{''.join(tail)}")


def run_all(args: argparse.Namespace, shared: list[str]) -> dict[str, dict[int, Path]]:
    runs = {v: {s: args.out / "runs" / f"{v}_seed{s}" for s in args.seeds} for v in args.variants}
    todo = [(v, s, p) for v, by_seed in runs.items() for s, p in by_seed.items() if not finished(p)]
    epochs = Config.from_run(todo[0][2]).epochs if todo and RunDir(
        todo[0][2]).config.is_file() else None
    with tqdm(total=len(todo) * (epochs or 1), desc="ablation (epochs)", unit="epoch") as bar:
        for i, (variant, seed, path) in enumerate(todo, 1):
            flags = [*shared, *variant_flags(variant), "--seed", str(seed), *args.extra]
            label = f"[{i}/{len(todo)}] {variant} seed {seed}"
            tqdm.write(f"{label}: python -m animegan_ignite.train {' '.join(flags)}")
            if epochs is None:  # the bar's size is known once the first run wrote its config
                epochs = make_config([*flags, "--output-dir", str(path)]).epochs
                bar.total = len(todo) * epochs
            train(path, flags, bar, label)
    return runs


def time_variants(args: argparse.Namespace, shared: list[str]) -> dict[str, float]:
    """Median seconds per iteration of each variant's trainer (every handler of a real run,
    evaluation off), taken in turns."""
    samples: dict[str, list[float]] = {v: [] for v in args.variants}
    for _ in range(args.time_repeats):
        for variant in args.variants:
            flags = [*shared, *variant_flags(variant), *args.extra, "--eval-every", "0",
                     "--no-progress", "--num-workers", "0"]
            samples[variant].append(_seconds_per_iteration(flags, args.time_iters))
    return {v: statistics.median(s) for v, s in samples.items()}


def _seconds_per_iteration(flags: list[str], iters: int, warmup: int = 2) -> float:
    """The trainer ``animegan-train`` builds for these flags (trainer.build_run), in a
    temporary run folder, timed over ``iters`` iterations after ``warmup``."""
    marks: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        cfg = make_config([*flags, "--output-dir", str(Path(tmp) / "run"), "--cache-dir",
                           str(Path(tempfile.gettempdir()) / "ablate-cache")])
        run = build_run(make_plan(cfg))
        run.engine.add_event_handler(Events.ITERATION_COMPLETED(
            event_filter=lambda _, i: i in (warmup, warmup + iters)),
            lambda _: marks.append(time.perf_counter()))
        run.engine.run(run.loader, max_epochs=1, epoch_length=warmup + iters)
        run.ctx.close()
    return (marks[1] - marks[0]) / iters


SCORES = tuple(f.key for f in headline_fields())  # the registry's table columns


def collect(runs: dict[str, dict[int, Path]]) -> dict[str, dict]:
    """Each variant's score curves per seed, from its history (an older run's history has FID
    only: the other scores are then None)."""
    out = {}
    for variant, by_seed in runs.items():
        curves = {}
        for seed, path in by_seed.items():
            epochs = [e for e in split_history(read_history(path))[1] if is_evaluated(e)]
            curves[seed] = [{"iteration": e["iteration"], **{k: e.get(k) for k in SCORES}}
                            for e in epochs]
        out[variant] = {"curves": curves, "flags": variant_flags(variant),
                        "final": {s: c[-1] for s, c in curves.items()},
                        "final_fid": {s: c[-1]["fid"] for s, c in curves.items()}}
    return out


def summarize(results: dict[str, dict], seconds: dict[str, float]) -> None:
    base = results.get("dcgan")
    for variant, r in results.items():
        r["mean_fid"] = statistics.mean(r["final_fid"].values())
        r["seconds_per_iteration"] = round(seconds[variant], 4) if variant in seconds else None
        if base is not None:
            r["fid_ratio_to_dcgan"] = {s: round(f / base["final_fid"][s], 3)
                                       for s, f in r["final_fid"].items() if s in base["final_fid"]}
            if variant in seconds and "dcgan" in seconds:
                r["time_ratio_to_dcgan"] = round(seconds[variant] / seconds["dcgan"], 3)


def _cell(value: float | None, digits: int) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def write_markdown(results: dict[str, dict], seeds: list[int], path: Path) -> None:
    """One row per variant and seed: the final headline scores (scores.py), FID against
    dcgan's, and seconds."""
    columns = headline_fields()
    head = "| variant | flags | seed | " + " | ".join(f.label for f in columns) + \
        " | FID / dcgan | s / iteration |"
    lines = [head, "|" + " --- |" * (len(columns) + 5)]
    for variant, r in results.items():
        flags = " ".join(f for f in r["flags"] if f not in ("--recipe", "dcgan")) or "(seed design)"
        for seed in seeds:
            final = r["final"][seed]
            ratio = r.get("fid_ratio_to_dcgan", {}).get(seed)
            cells = " | ".join(table_cell(f, final.get(f.key)) for f in columns)
            lines.append(f"| {variant} | `{flags}` | {seed} | {cells} | {_cell(ratio, 2)} | "
                         f"{_cell(r['seconds_per_iteration'], 2)} |")
    path.write_text("\n".join(lines) + "\n")


def draw_curves(results: dict[str, dict], path: Path) -> None:
    """Each headline score (scores.py) against iteration, per variant and seed."""
    columns = headline_fields()
    rows = math.ceil(len(columns) / 2)
    fig = Figure(figsize=(13, 4.5 * rows))
    styles = ["-", "--", ":", "-."]
    for ax, f in zip(fig.subplots(rows, 2, squeeze=False).flat, columns, strict=False):
        for i, (variant, r) in enumerate(results.items()):
            for j, (seed, curve) in enumerate(r["curves"].items()):
                points = [(p["iteration"], p[f.key]) for p in curve if p.get(f.key) is not None]
                if points:
                    ax.plot(*zip(*points, strict=True), styles[j % 4], marker="o",
                            color=f"C{i % 10}", label=f"{variant} (seed {seed})")
        better = f" ({f.better} is better)" if f.better else ""
        ax.set(xlabel="iteration", ylabel=f.label + better)
        if ax.has_data():
            ax.legend(fontsize=7, ncol=2)
    for ax in list(fig.axes)[len(columns):]:
        ax.axis("off")
    fig.suptitle("Scores against iteration: same data, budget and evaluation")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def draw_p_curves(runs: dict[str, dict[int, Path]], path: Path) -> None:
    """The augmentation probability p (and D's r_t) against iteration for the variants that
    augment: ADA's p moves, a fixed p is a flat line."""
    fig = Figure(figsize=(9, 5))
    ax = fig.subplots()
    for i, (variant, by_seed) in enumerate(runs.items()):
        for j, (seed, run) in enumerate(by_seed.items()):
            iters = split_history(read_history(run))[0]
            points = [(r["iteration"], r["augment_p"]) for r in iters if "augment_p" in r]
            if points:
                ax.plot(*zip(*points, strict=True), ["-", "--"][j % 2], color=f"C{i % 10}",
                        label=f"{variant} p (seed {seed})")
    ax.set(xlabel="iteration", ylabel="augmentation probability p", ylim=(-0.02, 1.02),
           title="Augmentation strength against iteration")
    if ax.has_data():
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def draw_faces(runs: dict[str, dict[int, Path]], seed: int, path: Path) -> None:
    """Each variant's final fixed-noise grid (the first 16 faces), labelled, side by side."""
    tiles = []
    for variant, by_seed in runs.items():
        with Image.open(RunDir(by_seed[seed]).final_snapshot) as im:
            grid = im.convert("RGB").crop((0, 0, 4 * 66 + 2, 4 * 66 + 2))  # 4x4 of the 8x8 grid
        tile = Image.new("RGB", (grid.width, grid.height + 20), "white")
        tile.paste(grid, (0, 20))
        ImageDraw.Draw(tile).text((4, 4), variant, fill="black")
        tiles.append(tile)
    out = Image.new("RGB", (sum(t.width for t in tiles) + 6 * (len(tiles) - 1), tiles[0].height),
                    "white")
    x = 0
    for tile in tiles:
        out.paste(tile, (x, 0))
        x += tile.width + 6
    out.save(path)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, required=True, help="results and run folders go here")
    p.add_argument("--data-dir", help="real images (default: the synthetic demo)")
    p.add_argument("--variants", default="dcgan,diffaug,ema,diffaug_ema",
                   help=f"comma-separated: {', '.join(VARIANTS)}, or recipe:NAME")
    p.add_argument("--seeds", default="1", help="training seeds, comma-separated")
    p.add_argument("--split-seed", type=int, default=999, help="held-out subset, for every run")
    p.add_argument("--iterations", type=int, help="budget per run, in whole epochs (default 460; "
                   "without --data-dir: the demo's own schedule unless given)")
    p.add_argument("--train-size", type=int, help="train on this many faces of --data-dir "
                   "(links in --out), held-out faces apart: the data-limited regime")
    p.add_argument("--synthetic-size", type=int, default=2528, help="synthetic faces, with "
                   "--iterations and no --data-dir")
    p.add_argument("--fresh", action="store_true", help="synthetic faces drawn anew every epoch "
                   "(--synthetic-fresh): the data-rich regime")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--eval-size", type=int, default=1000)
    p.add_argument("--eval-points", type=int, default=3, help="evaluations per run")
    p.add_argument("--inception-weights", default="pool3")
    p.add_argument("--time-iters", type=int, default=5, help="timed iterations per repeat")
    p.add_argument("--time-repeats", type=int, default=3)
    p.add_argument("--extra", nargs=argparse.REMAINDER, default=[],
                   help="further train flags for every run (put last)")
    args = p.parse_args()
    args.variants = args.variants.split(",")
    args.seeds = [int(s) for s in args.seeds.split(",")]
    for v in args.variants:
        variant_flags(v)
    args.out.mkdir(parents=True, exist_ok=True)
    shared = schedule(args)
    runs = run_all(args, shared)
    seconds = time_variants(args, shared) if args.time_repeats else {}
    results = collect(runs)
    summarize(results, seconds)
    (args.out / "results.json").write_text(json.dumps(
        {"command": sys.argv, "shared_flags": shared, "variants": results}, indent=2))
    write_markdown(results, args.seeds, args.out / "results.md")
    draw_curves(results, args.out / "curves.png")
    draw_p_curves(runs, args.out / "p_curves.png")
    draw_faces(runs, args.seeds[0], args.out / "faces.png")
    print((args.out / "results.md").read_text())


if __name__ == "__main__":
    main()
