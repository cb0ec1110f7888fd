"""Figures drawn from a run's saved history (matplotlib, Agg backend: no screen needed)."""

from __future__ import annotations

import logging
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from .history import read_history, split_history  # noqa: E402

PLOT_DIR = "plots"
logger = logging.getLogger(__name__)


def smooth(values: np.ndarray, window: int) -> np.ndarray:
    """Trailing moving average (same length; the first points average what there is)."""
    if window <= 1 or len(values) == 0:
        return values
    c = np.cumsum(np.insert(values, 0, 0.0))
    n = np.arange(1, len(values) + 1)
    lo = np.maximum(n - window, 0)
    return (c[n] - c[lo]) / (n - lo)


def _epoch_lines(ax, epochs: list[dict]) -> None:
    for r in epochs:
        ax.axvline(r["iteration"], color="0.85", lw=0.8, zorder=0)


def plot_losses(iters: list[dict], epochs: list[dict], path: Path) -> None:
    """Loss_G and Loss_D per iteration, raw (faint) and smoothed, epoch ends marked."""
    x = np.array([r["iteration"] for r in iters])
    window = max(1, len(x) // 50)
    fig, ax = plt.subplots(figsize=(9, 4.5))
    for key, label, colour in (("loss_g", "G", "tab:blue"), ("loss_d", "D", "tab:orange")):
        y = np.array([r[key] for r in iters], dtype=float)
        ax.plot(x, y, color=colour, alpha=0.25, lw=0.7)
        ax.plot(x, smooth(y, window), color=colour, lw=1.8, label=f"{label} (moving avg {window})")
    _epoch_lines(ax, epochs)
    ax.set(xlabel="iteration", ylabel="BCE loss", title="Generator and discriminator loss")
    ax.legend()
    _save(fig, path)


def plot_d_outputs(iters: list[dict], epochs: list[dict], path: Path) -> None:
    """D(x) and D(G(z)) per iteration."""
    x = np.array([r["iteration"] for r in iters])
    window = max(1, len(x) // 50)
    fig, ax = plt.subplots(figsize=(9, 4.5))
    for key, label, colour in (("d_x", "D(x), real", "tab:green"),
                               ("d_g_z1", "D(G(z)) before D step", "tab:red"),
                               ("d_g_z2", "D(G(z)) after D step", "tab:purple")):
        y = np.array([r[key] for r in iters], dtype=float)
        ax.plot(x, smooth(y, window), color=colour, lw=1.5, label=label)
    _epoch_lines(ax, epochs)
    ax.set(xlabel="iteration", ylabel="mean probability", ylim=(0, 1),
           title="Discriminator outputs")
    ax.legend()
    _save(fig, path)


def _save(fig, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def export_plots(run_dir: str | Path, out_dir: str | Path | None = None) -> list[Path]:
    """Draw every figure the history allows; return the files written."""
    run_dir = Path(run_dir)
    out = Path(out_dir) if out_dir else run_dir / PLOT_DIR
    iters, epochs = split_history(read_history(run_dir))
    written = []
    if iters:
        plot_losses(iters, epochs, out / "losses.png")
        plot_d_outputs(iters, epochs, out / "d_outputs.png")
        written += [out / "losses.png", out / "d_outputs.png"]
    else:
        logger.info("no iterations in the history yet: no loss plots")
    return written
