"""Every figure of a run, drawn from what the run saved (history, snapshots, checkpoints), with
matplotlib's object-oriented ``Figure`` API, which renders with the Agg backend and
never touches pyplot's global state or a screen. Used by the trainer at each epoch end and by
``animegan-plot RUN_DIR``; works on runs in progress, resumed runs and runs with no metrics yet
(it draws what there is and lists what is missing).

Files written (into ``RUN_DIR/plots`` unless told otherwise): ``losses.png``,
``d_outputs.png``, ``augment.png`` (p and r_t), ``metrics.png``, ``real_vs_fake.png``,
``training.gif``, ``summary.png``.
"""

from __future__ import annotations

import logging
import math
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from PIL import Image, ImageDraw
from torchvision.utils import make_grid

from ..config import ADA_TARGETS, Config
from ..errors import UserError
from ..networks.models import sample
from ..networks.objectives import OBJECTIVES, penalty_keys
from ..rundir import RunDir, atomic_write
from ..runs import faults
from ..runs.checkpoints import CheckpointError, load_checkpoint, load_generator
from ..runs.history import drawable, is_evaluated, read_history, split_history
from .scores import Field, headline_fields, panels, score_of, why_unavailable

logger = logging.getLogger(__name__)


@dataclass
class PlotReport:
    """What :func:`export_plots` wrote, and what it could not draw and why."""

    written: list[Path] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)


def smooth(values: np.ndarray, window: int) -> np.ndarray:
    """Trailing moving average (same length; the first points average what there is)."""
    if window <= 1 or len(values) == 0:
        return values
    c = np.cumsum(np.insert(values, 0, 0.0))
    n = np.arange(1, len(values) + 1)
    lo = np.maximum(n - window, 0)
    return (c[n] - c[lo]) / (n - lo)


# Beyond this many epochs the lines would grey the whole panel (short epochs of a small set).
MAX_EPOCH_LINES = 60


def _epoch_lines(ax, epochs: list[dict]) -> None:
    if len(epochs) > MAX_EPOCH_LINES:
        return
    for r in epochs:
        ax.axvline(r["iteration"], color="0.85", lw=0.8, zorder=0)


def draw_losses(ax, iters: list[dict], epochs: list[dict], label: str = "loss") -> None:
    """Loss_G and Loss_D per iteration, raw (faint) and smoothed, epoch ends as grey lines
    (up to MAX_EPOCH_LINES epochs); the gradient penalties taken (E|grad D|^2 at the steps
    that took one) on a log axis on the right. ``label`` names the objective's loss."""
    window = max(1, len(iters) // 50)
    lows, highs = [], []
    for key, name, colour in (("loss_g", "G", "tab:blue"), ("loss_d", "D", "tab:orange")):
        x, y = _series(iters, key)
        if not len(y):
            continue
        ax.plot(x, y, color=colour, alpha=0.25, lw=0.7)
        ax.plot(x, smooth(y, window), color=colour, lw=1.8, label=f"{name} (moving avg {window})")
        lows.append(float(np.percentile(y, 1)))
        highs.append(float(np.percentile(y, 99)))
    if highs:
        lo, hi = min(min(lows), 0.0), max(highs)  # losses can be negative (hinge G, Wasserstein)
        pad = 0.15 * (hi - lo) or 1.0
        ax.set_ylim(lo - (pad if lo < 0 else 0), hi + pad)  # single spikes would flatten curves
    _epoch_lines(ax, epochs)
    ax.set(xlabel="iteration", ylabel=label, title="Generator and discriminator loss")
    ax.legend(loc="upper left")
    taken = [k for k in penalty_keys() if any(k in r for r in iters)]
    if taken:
        twin = ax.twinx()
        for i, key in enumerate(taken):  # colours after the losses' C0 and C1, any number
            twin.plot(*_series(iters, key), color=f"C{2 + i}", lw=0.9, ls="--",
                      label=f"{key} penalty: E|grad D|^2")
        twin.set(yscale="log", ylabel="gradient penalty")
        twin.legend(loc="upper right")


def _series(records: list[dict], key: str) -> tuple[np.ndarray, np.ndarray]:
    """(iterations, values) of the records that hold ``key`` (history.drawable leaves out the
    values that are not finite)."""
    at = [r for r in records if key in r]
    return (np.array([r["iteration"] for r in at]), np.array([r[key] for r in at], dtype=float))


def draw_d_outputs(ax, iters: list[dict], epochs: list[dict]) -> None:
    """Mean D(x) and D(G(z)) per iteration (smoothed)."""
    window = max(1, len(iters) // 50)
    for key, label, colour in (("d_x", "D(x), real", "tab:green"),
                               ("d_g_z1", "D(G(z)) before D step", "tab:red"),
                               ("d_g_z2", "D(G(z)) after D step", "tab:purple")):
        x, y = _series(iters, key)
        ax.plot(x, smooth(y, window), color=colour, lw=1.5, label=label)
    _epoch_lines(ax, epochs)
    ax.set(xlabel="iteration", ylabel="mean probability", ylim=(0, 1), title="Discriminator outputs")
    ax.legend(loc="center right")


def draw_augment(ax, iters: list[dict], epochs: list[dict], signal: str | None,
                 target: float | None) -> None:
    """The augmentation probability p (ADA moves it) and D's overfitting signals (r_t =
    E[sign D(real)]; r_v where the run measures it), with the value p steers to."""
    colors = {"r_t": "tab:red", "r_v": "tab:purple"}
    labels = {"r_t": "r_t = E[sign D(real)]", "r_v": "r_v (held-out faces)"}
    for key, color in colors.items():
        points = np.array([(r["iteration"], r[key]) for r in iters if r.get(key) is not None])
        if key == "r_v" and len(points) > 100:  # one held-out batch per value: noisy, so smoothed
            ax.plot(*points.T, color=color, lw=0.6, alpha=0.3)
            window = np.ones(25) / 25
            ax.plot(points[12:-12, 0], np.convolve(points[:, 1], window, "valid"), color=color,
                    lw=1.4, label=labels[key][:-1] + ", running mean)")
        elif len(points):
            ax.plot(*points.T, color=color, lw=1.2, label=labels[key])
    if target is not None and signal is not None:
        ax.axhline(target, color=colors["r_" + signal[1:]], ls=":", lw=1,
                   label=f"{signal} target {target:g}")
    if any("augment_p" in r for r in iters):
        ax.plot([r["iteration"] for r in iters if "augment_p" in r],
                [r["augment_p"] for r in iters if "augment_p" in r], color="tab:blue", lw=1.8,
                label="augmentation probability p")
    _epoch_lines(ax, epochs)
    ax.set(xlabel="iteration", ylim=(-1.05, 1.05), title="Adaptive augmentation (ADA)")
    ax.legend(loc="lower right")


def _setting(run: RunDir, name: str):
    """A setting of the run (Config.from_run; None when its config.json is absent or unusable)."""
    try:
        return getattr(Config.from_run(run.root), name)
    except UserError:
        return None


def _loss_label(run: RunDir) -> str:
    """How the run's objective names its loss."""
    return OBJECTIVES[_setting(run, "loss") or "bce"].label


def _x_key(run: RunDir, epochs: list[dict]) -> str:
    """The scores' x axis: thousands of images for a run whose length is in them (--kimg),
    else epochs (and for records written before they carried ``kimg``)."""
    in_kimg = _setting(run, "kimg") is not None and all("kimg" in e for e in epochs)
    return "kimg" if in_kimg else "epoch"


def _evaluated(epochs: list[dict]) -> list[dict]:
    return [e for e in epochs if is_evaluated(e)]


def _unavailable(ax, title: str, reason: str) -> None:
    ax.text(0.5, 0.5, _wrap(reason, 60), ha="center", va="center", fontsize=8, wrap=True,
            transform=ax.transAxes)
    ax.set(title=f"{title}: unavailable", xticks=[], yticks=[])


def _why_missing(epochs: list[dict], fields: list[Field]) -> str:
    """Why a panel's scores are missing: the reason the latest evaluation gives, or that the
    run's history was written before the score existed."""
    for e in reversed(_evaluated(epochs)):
        for f in fields:
            reason = why_unavailable(e, score_of(f.key).name)
            if reason:
                return reason
    return "not in this run's history (written before this score existed) or too few images"


def draw_panel(ax, epochs: list[dict], title: str, fields: list[Field], x_key: str = "epoch"
               ) -> None:
    """One panel of the scores (scores.panels): each field per evaluated epoch (against
    ``x_key``: the epoch, or the thousands of images shown), its ± spread as a band, its
    reference line, and the best value of the panel's first field starred."""
    drawn = False
    for i, f in enumerate(fields):
        ev = [e for e in _evaluated(epochs) if e.get(f.key) is not None]
        if not ev:
            continue
        x, y = np.array([e[x_key] for e in ev]), np.array([e[f.key] for e in ev], dtype=float)
        ax.plot(x, y, ("o-", "s-", "D-", "^-", "v-")[i % 5], lw=1.8, label=f.label, color=f"C{i}")
        if f.band and all(e.get(f.band) is not None for e in ev):
            spread = np.array([e[f.band] for e in ev], dtype=float)
            ax.fill_between(x, y - spread, y + spread, color=f"C{i}", alpha=0.2, label="± std")
        if f.better and len([g for g in fields if g.better]) == 1:  # one score to rank by
            best = int(np.argmin(y) if f.better == "lower" else np.argmax(y))
            ax.plot(x[best], y[best], "*", color="gold", ms=16, mec="k",
                    label=f"best: {y[best]:{f.fmt}} ({x_key} {x[best]:g})")
        if f.reference is not None:
            ax.axhline(f.reference[0], color="0.4", ls=":", lw=1, label=f.reference[1])
        if x_key == "epoch":
            _epoch_axis(ax, x)
        drawn = True
    if not drawn:
        _unavailable(ax, title, _why_missing(epochs, fields))
        return
    better = {f.better for f in fields if f.better}
    hint = f" ({better.pop()} is better)" if len(better) == 1 else ""
    n = _evaluated(epochs)[-1].get("num_generated")
    ax.set(xlabel=x_key, title=f"{title}{hint}" + (f", {n} generated" if title == "FID" else ""))
    ax.legend(loc="best", fontsize=8)


def draw_metrics(epochs: list[dict], x_key: str = "epoch") -> Figure:
    """plots/metrics.png: one panel per entry of scores.panels(), two per row."""
    shown = panels()
    rows = max(1, math.ceil(len(shown) / 2))
    fig = Figure(figsize=(12, 4.5 * rows))
    axes = fig.subplots(rows, 2, squeeze=False).flat
    for ax, (title, fields) in zip(axes, shown.items(), strict=False):
        draw_panel(ax, epochs, title, fields, x_key)
    for ax in list(fig.axes)[len(shown):]:
        ax.axis("off")
    return fig


def _epoch_axis(ax, epochs) -> None:
    """Whole epochs on the x axis; around a single evaluation (the demo evaluates once) the
    automatic limits span less than one epoch and would be ticked in fractions."""
    if len(epochs) == 1:
        ax.set_xlim(epochs[0] - 1, epochs[0] + 1)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def _wrap(text: str, width: int) -> str:
    return "\n".join(textwrap.wrap(text, width))


def latest_fakes(run: RunDir) -> tuple[np.ndarray, int] | None:
    """64 faces from the latest checkpoint's G on the run's fixed noise, as an image grid, and
    the checkpoint's iteration; None when the run has no readable checkpoint yet."""
    found = run.regular_checkpoints()
    if not found:
        return None
    try:
        ckpt = load_checkpoint(found[-1][1])
    except CheckpointError:
        return None
    images = sample(load_generator(ckpt), ckpt["run_state"]["fixed_noise"])
    grid = make_grid(images, nrow=8, normalize=True, value_range=(-1, 1), padding=2)
    return grid.permute(1, 2, 0).numpy(), int(ckpt["trainer"]["iteration"])


def write_gif(snapshots: list[tuple[int, Path]], path: Path, frame_ms: int = 400) -> None:
    """An animated GIF of the snapshots, each frame labelled with its iteration."""
    frames = []
    for iteration, file in snapshots:
        with Image.open(file) as im:
            frame = im.convert("RGB")
        canvas = Image.new("RGB", (frame.width, frame.height + 22), "white")
        canvas.paste(frame, (0, 22))
        ImageDraw.Draw(canvas).text((6, 4), f"iteration {iteration}", fill="black")
        # Fast octree quantisation: PIL's default (median cut) is far slower per frame, which
        # every epoch end would pay for every snapshot so far; this looks the same.
        frames.append(canvas.quantize(256, method=Image.Quantize.FASTOCTREE,
                                      dither=Image.Dither.NONE))
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda f: frames[0].save(f, format="GIF", save_all=True,
                                                append_images=frames[1:], duration=frame_ms,
                                                loop=0, optimize=False))


def _figure(path: Path, draw, size=(9, 4.5)) -> Image.Image:
    fig = Figure(figsize=size)
    ax = fig.subplots()
    draw(ax)
    return _save(fig, path)


def _save(fig: Figure, path: Path) -> Image.Image:
    """Render ``fig`` at 110 dpi, write it and return it (the summary page is put together from
    these, not from the files read back). Margins fixed in inches rather than tight_layout's,
    which renders the figure once more to measure its labels."""
    width, height = fig.get_size_inches()
    right = 1.0 if any(ax.yaxis.get_label_position() == "right" for ax in fig.axes) else 0.3
    fig.subplots_adjust(left=0.8 / width, right=1 - right / width, bottom=0.6 / height,
                        top=1 - 0.45 / height, wspace=0.25, hspace=0.3)
    fig.set_dpi(110)
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    image = Image.frombuffer("RGBA", canvas.get_width_height(), canvas.buffer_rgba(), "raw",
                             "RGBA", 0, 1).convert("RGB")
    _save_image(image, path)
    return image


def export_plots(run_dir: str | Path, out_dir: str | Path | None = None) -> PlotReport:
    """Draw every figure the run's files allow; report what was written and what is missing."""
    with matplotlib.rc_context(FAST):
        return _export_plots(run_dir, out_dir)


# Titles at a fixed height: matplotlib otherwise measures every axis's tick labels at each draw
# to lift a title above any at the top (none here), a quarter of a figure's drawing time.
FAST = {"axes.titley": 1.0}


def _export_plots(run_dir: str | Path, out_dir: str | Path | None) -> PlotReport:
    run = RunDir(run_dir)
    out = Path(out_dir) if out_dir else run.plots
    history = drawable(read_history(run.root))
    skipped = history.skipped
    if skipped:
        logger.warning("warning: %s: skipped %d damaged record(s) of its history: %s", run.history,
                       len(skipped), "; ".join(skipped[:5]) + ("; ..." if len(skipped) > 5 else ""))
    if history.not_finite:
        logger.warning("warning: %s: left out values that are NaN or infinite (a diverged run?): "
                       "%s", run.history, ", ".join(f"{k} in {n} record(s)"
                                                   for k, n in history.not_finite.items()))
    iters, epochs = split_history(history.records)
    report, drawn = PlotReport(), {}  # drawn: the pictures by file name, for the summary

    def keep(name: str, image: Image.Image) -> None:
        drawn[name] = image
        report.written.append(out / name)

    if iters:
        keep("losses.png", _figure(out / "losses.png", lambda ax: draw_losses(
            ax, iters, epochs, _loss_label(run))))
        keep("d_outputs.png", _figure(out / "d_outputs.png",
                                      lambda ax: draw_d_outputs(ax, iters, epochs)))
    else:
        report.missing.append("losses, D outputs: no iterations in the history yet")
    if any(r.get("r_t") is not None for r in iters):
        signal = _setting(run, "ada_signal") or "rt"  # runs before --ada-signal steered by r_t
        target = _setting(run, "ada_target") or ADA_TARGETS.get(signal)
        adaptive = _setting(run, "augment_p") == "auto"
        keep("augment.png", _figure(out / "augment.png", lambda ax: draw_augment(
            ax, iters, epochs, signal if adaptive else None, target)))
    faults.point("plots")
    if _evaluated(epochs):
        keep("metrics.png", _save(draw_metrics(epochs, _x_key(run, epochs)), out / "metrics.png"))
    else:
        report.missing.append("scores: no evaluated epoch yet (evaluation runs at epoch ends)")
    real = Image.open(run.real_samples).convert("RGB") if run.real_samples.is_file() else None
    fakes = latest_fakes(run)
    if real is not None and fakes is not None:
        fake = Image.fromarray((fakes[0] * 255).round().astype(np.uint8))
        pair = side_by_side([(real, "held-out real faces"),
                             (fake, f"generated (checkpoint at iteration {fakes[1]})")])
        _save_image(pair, out / "real_vs_fake.png")
        keep("real_vs_fake.png", pair)
    else:
        report.missing.append("real vs fake: " + ("no checkpoint yet" if fakes is None
                                                  else f"no {run.real_samples.name}"))
    snapshots = run.snapshot_files()
    if snapshots:
        write_gif(snapshots, out / "training.gif")
        report.written.append(out / "training.gif")
    else:
        report.missing.append("training GIF: no snapshots yet")
    rows = [[drawn[n] for n in names if n in drawn] for names in (
        ("losses.png", "d_outputs.png"), ("metrics.png",), ("real_vs_fake.png",))]
    _save_image(stack_rows([row for row in rows if row]), out / "summary.png")
    report.written.append(out / "summary.png")
    return report


# Pictures are put together with PIL, not drawn by matplotlib again: a figure of image panels
# costs matplotlib about a second on a CPU at every epoch end, PIL a few hundredths.
CAPTION = 34  # pixels above a picture for its caption


def side_by_side(pictures: list[tuple[Image.Image, str]], gap: int = 16) -> Image.Image:
    """Pictures in a row on white, each with its caption above it."""
    width = sum(p.width for p, _ in pictures) + gap * (len(pictures) + 1)
    height = max(p.height for p, _ in pictures) + CAPTION + gap
    canvas = Image.new("RGB", (width, height), "white")
    draw, x = ImageDraw.Draw(canvas), gap
    for picture, caption in pictures:
        draw.text((x + picture.width // 2, CAPTION // 2), caption, fill="black", anchor="mm",
                  font=_font())
        canvas.paste(picture, (x, CAPTION))
        x += picture.width + gap
    return canvas


def stack_rows(rows: list[list[Image.Image]]) -> Image.Image:
    """One page: each row's pictures side by side, the rows one under another, centred."""
    if not rows:
        return Image.new("RGB", (400, 100), "white")
    lines = [(sum(p.width for p in row), max(p.height for p in row), row) for row in rows]
    canvas = Image.new("RGB", (max(w for w, _, _ in lines), sum(h for _, h, _ in lines)), "white")
    y = 0
    for width, height, row in lines:
        x = (canvas.width - width) // 2
        for picture in row:
            canvas.paste(picture, (x, y))
            x += picture.width
        y += height
    return canvas


def _font():
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=18)
    except TypeError:  # Pillow before 10.1: one bitmap size
        return ImageFont.load_default()


def _save_image(image: Image.Image, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda f: image.save(f, format="png", compress_level=1))


def draw_truncation_sweep(results: list[dict], path: Path) -> None:
    """``animegan-evaluate --truncation-sweep``: the fidelity/diversity trade-off as one panel
    per headline score of the registry (scores.py) against psi, each saying which way is better
    (fidelity rises and diversity falls as psi shrinks)."""
    labels = ["none" if r["truncation"] is None else f"{r['truncation']:g}" for r in results]
    x, fields = np.arange(len(results)), headline_fields()
    columns = min(3, len(fields))
    rows = -(-len(fields) // columns)
    fig = Figure(figsize=(4.3 * columns, 3.4 * rows))
    axes = list(fig.subplots(rows, columns, squeeze=False).flat)
    for ax, f in zip(axes, fields, strict=False):  # more panels than scores: the rest hidden
        values = [np.nan if r.get(f.key) is None else r[f.key] for r in results]
        ax.plot(x, values, "o-", color="tab:blue")
        better = f" ({f.better} is better)" if f.better else ""
        ax.set(xticks=x, xticklabels=labels, xlabel="truncation psi", title=f.label + better)
    for ax in axes[len(fields):]:
        ax.set_visible(False)
    _save(fig, path)
