"""Every score of an evaluation, declared once: the registry :data:`SCORES`.

A :class:`Score` says what it needs (generated features, the held-out faces' features or only
their statistics, the classifier's logits, a sample of the training faces' features), how it is
computed from them, and its record fields (:class:`Field`: name, format, which way is better, its
panel of ``plots/metrics.png``, whether trackers log it, whether tables show it). Everything else
reads the registry: the evaluator (quality.py), the epoch record and its console line
(:func:`score_line`), the trackers (:func:`tracked_keys`), ``plots/metrics.png`` (one panel per
:func:`panels` entry), ``animegan-evaluate`` (text and ``--json``), the truncation sweep's table
and ``scripts/ablate.py``'s. A score that the inputs do not allow is None in the record, with the
reason in its ``unavailable`` map. Adding a score is one :class:`Score` in :data:`SCORES`.

No torch at import (the console line and the tables are read by light commands); the math is in
metrics.py.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

# What a score can need. "real_stats": the held-out faces' mean and covariance (a statistics
# file has only these); "real": their features; "generated_stats": the generated side's mean
# and covariance, from its features or a statistics file; "training": a sample of the training
# faces' features.
NEEDS = ("generated", "generated_stats", "real_stats", "real", "logits", "training")
IS_SPLITS = 10
# Under half the Vendi score of as many real faces, a sample is as varied as a handful of real
# faces repeated (docs/evaluation.md, "Diversity"): collapsed runs measured fall far below,
# healthy ones stay above.
COLLAPSE_RATIO = 0.5
# C_T at or below this (a z-score: 3 standard deviations) says the generator copies training faces.
COPYING_Z = -3.0


@dataclass(frozen=True)
class Field:
    """One number of a score in the record."""

    key: str
    label: str
    fmt: str = ".3f"
    better: str | None = None  # "lower", "higher", or None (a spread, a yardstick)
    panel: str | None = None  # the title of its panel in plots/metrics.png; None: not drawn
    band: str | None = None  # the key of its ± spread, drawn as a band
    reference: tuple[float, str] | None = None  # a line drawn across its panel: (value, label)
    headline: bool = False  # a column of the tables (truncation sweep, ablate.py)
    tracked: bool = True  # logged to the trackers


@dataclass(frozen=True)
class Score:
    """One score: what it needs, how it is computed (``compute(inputs)`` returns its fields'
    values; it may add an ``"unavailable"`` map of notes; a ValueError makes it unavailable
    with the error as the reason), its fields, and optionally its console text and a figure it
    draws from the inputs at evaluated epoch ends (``plots/<figure_name>``)."""

    name: str
    needs: frozenset[str]
    fields: tuple[Field, ...]
    compute: Callable[[Inputs], dict[str, Any]]
    text: Callable[[dict[str, Any]], str | None] | None = None
    figure: Callable[[Inputs, Path], None] | None = None
    figure_name: str | None = None

    def line(self, record: dict[str, Any]) -> str | None:
        """This score's part of the console line, or None when it has no value."""
        if self.text is not None:
            return self.text(record)
        parts = [f"{f.label} {record[f.key]:{f.fmt}}" for f in self.fields
                 if record.get(f.key) is not None]
        return "  ".join(parts) or None


@dataclass
class Images:
    """Where a figure gets pictures from: ``generated(indices)`` and ``training(indices)``
    return images in [-1, 1] of the generated sample and of the training-face sample."""

    generated: Callable[[list[int]], Any]
    training: Callable[[list[int]], Any] | None = None


@dataclass
class Inputs:
    """What the scores are computed from (features are (N, 2048) tensors): the generated
    sample's features (and logits), the held-out faces (features.RealFeatures), a sample of the
    training faces, and why any of them is missing (``missing``: need -> reason). Where the
    generated side is a statistics file, ``generated`` is None and ``generated_stats`` holds its
    (mu, sigma)."""

    generated: Any
    real: Any = None
    logits: Any = None
    training: Any = None
    missing: dict[str, str] = field(default_factory=dict)
    images: Images | None = None
    generated_stats: tuple[Any, Any] | None = None

    def lacks(self, need: str) -> str | None:
        """Why ``need`` is missing, or None when it is there."""
        present = {"generated": self.generated is not None,
                   "generated_stats": self.generated is not None or self.generated_stats is not None,
                   "real_stats": self.real is not None,
                   "real": self.real is not None and self.real.features is not None,
                   "logits": self.logits is not None,
                   "training": self.training is not None}[need]
        if present:
            return None
        return self.missing.get(need) or DEFAULT_MISSING[need]

    @cached_property
    def nearest_training(self) -> dict[str, Any]:
        """Distances of generated and held-out faces to their nearest training faces, the
        generated faces' four nearest, and the C_T cells of both (metrics.kmeans)."""
        from .metrics import ct_cells, kmeans, nearest

        # on the CPU: the real sides' features live there, and a few thousand rows take seconds
        train, held_out = self.training.features.cpu(), self.real.features.cpu()
        generated = self.generated.cpu()
        gen_d, gen_i = nearest(generated, train, k=min(4, len(train)))
        held_d, _ = nearest(held_out, train)
        cells = ct_cells(len(held_out))
        centroids = kmeans(train, cells)
        return {"generated": gen_d[:, 0], "generated_4": (gen_d, gen_i), "held_out": held_d[:, 0],
                "cells": len(centroids), "generated_cell": nearest(generated, centroids)[1][:, 0],
                "held_out_cell": nearest(held_out, centroids)[1][:, 0]}


DEFAULT_MISSING = {
    "generated": "no generated images",
    "generated_stats": "no generated images or their statistics",
    "real_stats": "no real faces",
    "real": "the real side is a statistics file (mu, sigma); give a folder of images",
    "logits": "the backbone has no classifier (IS needs the standard Inception weights)",
    "training": "no training faces to compare with (a run's checkpoint has them: "
                "animegan-evaluate --checkpoint RUN)",
}


# --- the scores ---------------------------------------------------------------------------------


def _fid(inputs: Inputs) -> dict[str, Any]:
    from .metrics import fid_from_features, fid_from_stats

    real = inputs.real
    if inputs.generated is None:  # a statistics file: the Frechet distance of the two Gaussians
        return {"fid": fid_from_stats(*inputs.generated_stats, real.mu, real.sigma)}
    return {"fid": fid_from_features(inputs.generated, real.mu, real.sigma)}


def _kid(inputs: Inputs) -> dict[str, Any]:
    from .metrics import KID_SUBSET_SIZE, kid

    fake, real = inputs.generated, inputs.real.features.to(inputs.generated.device)
    mean, std = kid(fake, real, inputs.real.kid_kernel())
    if len(fake) == len(real) <= KID_SUBSET_SIZE:  # every subset the same: a spread of 0
        return {"kid": mean, "kid_std": None, "unavailable": {"kid spread": (
            f"every KID subset is the whole sample ({len(fake)} images a side), so the spread "
            f"would be 0 by construction; it needs --eval-size above {KID_SUBSET_SIZE}")}}
    return {"kid": mean, "kid_std": std}


def _kid_text(r: dict[str, Any]) -> str | None:
    if r.get("kid") is None:
        return None
    spread = "" if r.get("kid_std") is None else f" ± {r['kid_std']:.4f}"
    return f"KID {r['kid']:.4f}{spread}"


def _prdc(inputs: Inputs) -> dict[str, Any]:
    from .metrics import prdc

    real = inputs.real.features.to(inputs.generated.device)
    return prdc(real, inputs.generated, real_radii=inputs.real.radii())


def _diversity(inputs: Inputs) -> dict[str, Any]:
    from .metrics import vendi

    ours, theirs = vendi(inputs.generated), inputs.real.vendi_of(inputs.generated.shape[0])
    return {"vendi": ours, "vendi_real": theirs, "diversity": ours / theirs}


def _diversity_text(r: dict[str, Any]) -> str | None:
    if r.get("diversity") is None:
        return None
    return f"diversity {r['diversity']:.2f} (Vendi {r['vendi']:.2f} / real {r['vendi_real']:.2f})"


def _memorisation(inputs: Inputs) -> dict[str, Any]:
    """C_T (metrics.data_copying) of the generated faces against the held-out ones, both
    measured to the training-face sample."""
    from .metrics import data_copying

    n = inputs.nearest_training
    ct = data_copying(n["generated"], n["generated_cell"], n["held_out"], n["held_out_cell"],
                      n["cells"])
    return {"memorisation": ct, "num_training": len(inputs.training.features)}


def _memorisation_text(r: dict[str, Any]) -> str | None:
    if r.get("memorisation") is None:
        return None
    verdict = "  (copies training faces)" if r["memorisation"] <= COPYING_Z else ""
    return f"memorisation C_T {r['memorisation']:+.2f}{verdict}"


def _draw_nearest(inputs: Inputs, path: Path, rows: int = 8, scale: int = 2) -> None:
    """The generated faces nearest to a training face (the likeliest copies), each beside its
    four nearest training faces, with the pool3 distances and the held-out faces' median. Drawn
    with PIL (a matplotlib grid of 40 axes costs seconds at every evaluation)."""
    import torch
    from PIL import Image, ImageDraw

    from ..rundir import atomic_write

    n = inputs.nearest_training
    distances, neighbours = n["generated_4"]
    order = torch.argsort(n["generated"])[:rows].tolist()
    fakes = inputs.images.generated(order)
    size, label, head, gap = 64 * scale, 14, 34, 6
    cols = 1 + neighbours.shape[1]
    sheet = Image.new("RGB", (cols * (size + gap) + gap, head + len(order) * (size + label + gap)),
                      "white")
    draw = ImageDraw.Draw(sheet)
    median = float(n["held_out"].median())
    draw.text((gap, 4), "Generated faces nearest to a training face, beside their nearest training "
              "faces (pool3 distance).", fill="black")
    draw.text((gap, 18), f"A held-out real face lies {median:.1f} from its nearest training face "
              "(median): copies lie far closer.", fill="black")
    for row, g in enumerate(order):
        pictures = [fakes[row], *inputs.images.training(neighbours[g].tolist())]
        titles = ["generated", *(f"{d:.1f}" for d in distances[g].tolist())]
        y = head + row * (size + label + gap)
        for col, (picture, title) in enumerate(zip(pictures, titles, strict=True)):
            x = gap + col * (size + gap)
            pixels = ((picture.float().clamp(-1, 1) + 1) * 127.5).round().byte()
            tile = Image.fromarray(pixels.permute(1, 2, 0).numpy()).resize((size, size), Image.NEAREST)
            sheet.paste(tile, (x, y + label))
            draw.text((x, y), title, fill="black")
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda f: sheet.save(f, format="PNG"))


def _is(inputs: Inputs) -> dict[str, Any]:
    from .metrics import inception_score

    mean, std = inception_score(inputs.logits.cpu(), IS_SPLITS)
    return {"is_mean": mean, "is_std": std}


def _is_text(r: dict[str, Any]) -> str | None:
    if r.get("is_mean") is not None:
        return f"IS {r['is_mean']:.3f} ± {r['is_std']:.3f}"
    return "IS unavailable" if "is_mean" in r else None


FIDELITY = "Fidelity and diversity, apart"
MEMORISATION = "Memorisation: C_T (at or below -3: copies training faces)"
SCORES: dict[str, Score] = {s.name: s for s in (
    Score("fid", frozenset({"generated_stats", "real_stats"}), (
        Field("fid", "FID", ".2f", "lower", panel="FID", headline=True),), _fid),
    Score("kid", frozenset({"generated", "real"}), (
        Field("kid", "KID", ".4f", "lower", panel="KID (unbiased)", band="kid_std", headline=True),
        Field("kid_std", "KID std", ".4f")), _kid, _kid_text),
    Score("precision/recall", frozenset({"generated", "real"}), (
        Field("precision", "precision", ".3f", "higher", panel=FIDELITY, headline=True),
        Field("recall", "recall", ".3f", "higher", panel=FIDELITY, headline=True),
        Field("density", "density", ".3f", "higher"),
        Field("coverage", "coverage", ".3f", "higher")), _prdc,
        lambda r: None if r.get("precision") is None else
        f"precision {r['precision']:.3f}  recall {r['recall']:.3f}"),
    Score("diversity", frozenset({"generated", "real"}), (
        Field("vendi", "Vendi", ".2f", "higher"),
        Field("vendi_real", "real faces' Vendi", ".2f"),
        Field("diversity", "diversity", ".2f", "higher", panel=FIDELITY,
              reference=(COLLAPSE_RATIO, "collapse warning"), headline=True)),
        _diversity, _diversity_text),
    Score("memorisation", frozenset({"generated", "real", "training"}), (
        Field("memorisation", "memorisation C_T", "+.2f", None, panel=MEMORISATION,
              reference=(0.0, "as far as new real faces"), headline=True),
        Field("num_training", "training faces compared", "d", tracked=False)),
        _memorisation, _memorisation_text, _draw_nearest, "nearest.png"),
    Score("is", frozenset({"logits"}), (
        Field("is_mean", "IS", ".3f", "higher", panel="Inception Score", band="is_std"),
        Field("is_std", "IS std", ".3f")), _is, _is_text),
)}


def all_fields() -> list[Field]:
    return [f for s in SCORES.values() for f in s.fields]


def tracked_keys() -> list[str]:
    return [f.key for f in all_fields() if f.tracked]


def headline_fields() -> list[Field]:
    """The columns of the tables: the scores a comparison reads first."""
    return [f for f in all_fields() if f.headline]


def ranking_fields() -> dict[str, Field]:
    """The scores ``--best-metric`` may name: the headline ones with a better direction."""
    return {f.key: f for f in headline_fields() if f.better is not None}


def panels() -> dict[str, list[Field]]:
    """plots/metrics.png's panels in order: title -> the fields drawn in it."""
    out: dict[str, list[Field]] = {}
    for f in all_fields():
        if f.panel is not None:
            out.setdefault(f.panel, []).append(f)
    return out


def score_of(key: str) -> Score:
    return next(s for s in SCORES.values() if any(f.key == key for f in s.fields))


def compute_all(inputs: Inputs) -> dict[str, Any]:
    """Every registered score of ``inputs``: each field's value (None where unavailable) and
    ``unavailable``, score name -> the reason."""
    out: dict[str, Any] = {"unavailable": {}}
    for score in SCORES.values():
        reason = next((why for need in sorted(score.needs) if (why := inputs.lacks(need))), None)
        if reason is None:
            try:
                values = score.compute(inputs)
                out["unavailable"].update(values.pop("unavailable", {}))
                out.update(values)
            except ValueError as e:  # too few images for this score
                reason = str(e)
        if reason is not None:
            out["unavailable"][score.name] = reason
    for f in all_fields():
        out.setdefault(f.key, None)
    return out


def of_features(generated: Any, real: Any, training: Any = None) -> dict[str, Any]:
    """Every score of generated features against real (and training) ones (features.RealFeatures)."""
    return compute_all(Inputs(generated, real, training=training))


def draw_figures(inputs: Inputs, folder: Path) -> list[Path]:
    """Each available score's figure (Score.figure) of these inputs, into ``folder``."""
    written = []
    for score in SCORES.values():
        if score.figure is not None and inputs.images is not None and not any(
                inputs.lacks(need) for need in score.needs):
            path = folder / score.figure_name
            score.figure(inputs, path)
            written.append(path)
    return written


def why_unavailable(record: dict[str, Any], score: str) -> str | None:
    """Why ``score`` has no value in ``record`` (its ``unavailable`` map; records written before
    the map carried IS's reason under ``is_unavailable``)."""
    legacy = record.get("is_unavailable") if score == "is" else None
    return (record.get("unavailable") or {}).get(score) or legacy


def score_line(record: dict[str, Any]) -> str:
    """One line of an evaluation's scores, as the console and ``animegan-evaluate`` print them."""
    return "  ".join(part for s in SCORES.values() if (part := s.line(record)))


def table_cell(f: Field, value: Any) -> str:
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) \
        else f"{value:{f.fmt}}"


def collapse_warning(record: dict[str, Any], earlier: list[dict[str, Any]] = ()) -> str | None:
    """A warning when the sample's diversity (its Vendi score over that of as many real faces)
    is under :data:`COLLAPSE_RATIO`, or under half the best of the ``earlier`` evaluations
    (recall too, once precision says the fakes lie among the real faces); else None."""
    ratio = record.get("diversity")
    if ratio is None:
        return None
    best = max((r["diversity"] for r in earlier if r.get("diversity") is not None), default=0.0)
    recalls = [r["recall"] for r in earlier if r.get("recall") is not None and r["precision"] >= 0.5]
    reasons = []
    if ratio < COLLAPSE_RATIO:
        reasons.append(f"its diversity is {ratio:.2f} of real faces' (under {COLLAPSE_RATIO})")
    elif ratio < 0.5 * best:
        reasons.append(f"its diversity fell to {ratio:.2f} from the run's best {best:.2f}")
    if recalls and record.get("precision", 0) >= 0.5 and record["recall"] < 0.5 * max(recalls):
        reasons.append(f"recall fell to {record['recall']:.2f} from the run's best {max(recalls):.2f}")
    if not reasons:
        return None
    where = f" at epoch {record['epoch']}" if "epoch" in record else ""
    # A training run's record has augment_p when it already uses DiffAugment.
    other = "" if "augment_p" in record else "DiffAugment (--recipe diffaug-cosine) or "
    return (f"possible mode collapse{where}: {'; '.join(reasons)}; the generator draws few "
            "distinct faces. Look at the snapshots; resume from the best checkpoint with a lower "
            f"--lr, or try {other}another --seed")


def copying_warning(record: dict[str, Any]) -> str | None:
    """A warning when C_T says the generated faces copy training faces."""
    ct = record.get("memorisation")
    if ct is None or ct > COPYING_Z:
        return None
    where = f" at epoch {record['epoch']}" if "epoch" in record else ""
    return (f"the generator copies training faces{where}: memorisation C_T {ct:+.2f} (generated "
            "faces lie closer to training faces than new real faces do; see plots/nearest.png). "
            "Use more faces, stronger augmentation (--augment-p 1 or auto), or an earlier checkpoint")
