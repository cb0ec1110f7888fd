"""A trained run as a Hugging Face-style model folder (``animegan-export``, export.py): the
weights as safetensors, the architecture record, a model card and a sample grid. The folder's
layout and how every command reads it: checkpoints.py (``EXPORT_*``)."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file
from torchvision.utils import save_image

from ..config import Config
from ..data.cache import file_digest
from ..errors import UserError
from ..evaluation.scores import headline_fields, table_cell
from ..networks.architecture import record
from ..networks.models import sample
from ..rundir import RunDir, atomic_write, write_json_atomic, write_text_atomic
from ..runs.checkpoints import (
    EXPORT_CONFIG,
    EXPORT_WEIGHTS,
    EXPORTED,
    architecture_of,
    checkpoint_iteration,
    load_checkpoint,
    load_generator,
    resolve_checkpoint,
)
from ..runs.history import is_evaluated, read_history, split_history


def export(run: str | Path, out: Path) -> list[Path]:
    """Write ``run``'s latest checkpoint (or the checkpoint file ``run``) as a model folder."""
    file = resolve_checkpoint(run)
    if file.name == EXPORT_WEIGHTS:
        raise UserError(f"{run}: is already an exported model")
    checkpoint = load_checkpoint(file)
    info = describe(checkpoint, file, RunDir.of_checkpoint(file))
    # clones: the EMA copies G's BatchNorm statistics, which a checkpoint stores once, shared
    tensors = {f"{net}.{k}": v.clone().contiguous() for net in EXPORTED if net in checkpoint
               for k, v in checkpoint[net].items()}
    out.mkdir(parents=True, exist_ok=True)
    atomic_write(out / EXPORT_WEIGHTS, lambda f: f.write(_safetensors_bytes(tensors)))
    write_json_atomic(out / EXPORT_CONFIG, info)
    _sample_grid(checkpoint, out / "sample.png")
    write_text_atomic(out / "README.md", model_card(info, out))
    return [out / n for n in (EXPORT_WEIGHTS, EXPORT_CONFIG, "sample.png", "README.md")]


def _safetensors_bytes(tensors: dict[str, torch.Tensor]) -> bytes:
    """safetensors writes to a path; through a temporary file so the folder's copy is atomic."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.safetensors"
        save_file(tensors, str(path), metadata={"format": "animegan-ignite"})
        return path.read_bytes()


def describe(checkpoint: dict[str, Any], file: Path, run: RunDir) -> dict[str, Any]:
    """The export's config.json: format, architecture, iteration, source, settings, scores."""
    settings = Config.from_run(run.root).to_dict() if run.config.is_file() else None
    evaluated = [e for e in split_history(read_history(run.root))[1]
                 if is_evaluated(e) and e["iteration"] <= checkpoint_iteration(checkpoint)]
    return {**record(architecture_of(checkpoint)), "iteration": checkpoint_iteration(checkpoint),
            "weights": [net for net in ("netG", "ema", "netD") if net in checkpoint],
            "source": {"run": str(run.root.resolve()), "checkpoint": file.name,
                       "sha256": file_digest(file)},
            "settings": settings, "scores": evaluated[-1] if evaluated else None}


def _sample_grid(checkpoint: dict[str, Any], path: Path) -> None:
    netG = load_generator(checkpoint)
    noise = checkpoint["run_state"].get("fixed_noise")
    if noise is None:
        noise = torch.randn(64, netG.nz, 1, 1, generator=torch.Generator().manual_seed(0))
    images = sample(netG, noise)
    atomic_write(path, lambda f: save_image(images, f, format="png", nrow=8, normalize=True,
                                            value_range=(-1, 1)))


def model_card(info: dict[str, Any], out: Path) -> str:
    """README.md: the Hub's YAML header, then what the model is, how good, how to use it."""
    arch, settings, scores = info["architecture"], info["settings"] or {}, info["scores"]
    flags = (f"--nz {arch['nz']} --ngf {arch['ngf']} --ndf {arch['ndf']}"
             + ("" if arch["d_batchnorm"] or arch["spectral_norm"] else " --no-d-batchnorm")
             + (" --spectral-norm" if arch["spectral_norm"] else ""))
    data = settings.get("data_dir") or "the built-in synthetic demo faces"
    lines = [
        "---", "library_name: pytorch", "license: other", "pipeline_tag: unconditional-image-generation",
        "tags:", *[f"- {t}" for t in ("gan", "dcgan", "anime", "pytorch-ignite", "animegan-ignite")],
        "---", "", f"# DCGAN anime faces ({out.name})", "",
        f"A DCGAN generator of 64x64 faces trained by animegan-ignite {info['package_version']} "
        f"for {info['iteration']} iterations on {data} (recipe {settings.get('recipe', '?')}, "
        f"batch {settings.get('batch_size', '?')}, G width {arch['ngf']}, D width {arch['ndf']}, "
        f"latent size {arch['nz']}). Weights: {', '.join(info['weights'])}"
        + (" (ema: the averaged generator, used by default)" if "ema" in info["weights"] else "")
        + ". The training faces' own terms apply.",
        "", "![64 faces of the run's fixed noise](sample.png)", "", "## Scores", ""]
    if scores:
        fields = [f for f in headline_fields() if scores.get(f.key) is not None]
        lines += [f"At iteration {scores['iteration']}: {scores.get('num_generated')} generated "
                  f"against {scores.get('num_real')} held-out real faces, features of "
                  f"{scores.get('fid_backbone', '?')}.", "",
                  "| " + " | ".join(f.label for f in fields) + " |",
                  "| " + " | ".join("---:" for _ in fields) + " |",
                  "| " + " | ".join(table_cell(f, scores[f.key]) for f in fields) + " |"]
    else:
        lines.append("No evaluation was recorded by the run at or before this checkpoint.")
    lines += ["", "## Use it", "", "```bash", "pip install animegan-ignite",
              f"animegan-generate --checkpoint {out.name} --grid faces.png --num 64 --seed 7",
              f"animegan-serve --checkpoint {out.name}",
              f"animegan-evaluate --checkpoint {out.name} --data-dir FACES",
              "# fine-tune it on your own faces (a new run starting from these weights):",
              f"animegan-train --init-from {out.name} --data-dir YOUR_FACES {flags}",
              "# share it:", f"huggingface-cli upload OWNER/NAME {out.name}", "```", "",
              "From the Hub: `animegan-train --init-from hf:OWNER/NAME ...`.", ""]
    return "\n".join(lines)

