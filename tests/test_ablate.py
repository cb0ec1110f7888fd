"""scripts/ablate.py end to end: real training runs per variant, one table, the figures, resume."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]


def ablate(out: Path, data: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "ablate.py"), "--out", str(out), "--data-dir",
         str(data), "--variants", "dcgan,diffaug", "--seeds", "1", "--iterations", "6",
         "--batch-size", "8", "--eval-size", "16", "--eval-points", "1", "--time-iters", "1",
         "--time-repeats", "1", "--extra", "--ngf", "8", "--ndf", "8", "--num-workers", "0"],
        capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_ablation_trains_each_variant_once_and_writes_table_curves_and_faces(image_dir, tmp_path):
    out = tmp_path / "ablation"
    r = ablate(out, image_dir)
    assert r.returncode == 0, r.stderr[-3000:]
    results = json.loads((out / "results.json").read_text())["variants"]
    assert list(results) == ["dcgan", "diffaug"]
    # 104 training images in batches of 8: one 13-iteration epoch covers the 6-iteration budget.
    for variant, res in results.items():
        (point,) = res["curves"]["1"]
        assert point["iteration"] == 13 and 0 < point["fid"] == res["final_fid"]["1"], variant
        assert point["kid"] is not None and point["diversity"] > 0
        assert res["seconds_per_iteration"] > 0
    assert results["dcgan"]["fid_ratio_to_dcgan"] == {"1": 1.0}
    assert results["diffaug"]["flags"] == ["--recipe", "dcgan", "--diffaugment", "color,translation"]
    table = (out / "results.md").read_text().splitlines()
    assert len(table) == 4 and table[3].startswith("| diffaug | `--diffaugment color,translation` | 1 |")
    assert "| KID | precision | recall | diversity |" in table[0]
    assert (out / "p_curves.png").is_file()
    with Image.open(out / "faces.png") as faces, Image.open(out / "curves.png") as curves:
        # Two labelled 4x4 crops of the final grids side by side, 6 px apart.
        assert faces.size == (2 * 266 + 6, 266 + 20) and curves.width > 0
    # Run again: finished runs are kept, not retrained, and the table is the same.
    histories = {p: p.stat().st_mtime_ns for p in out.glob("runs/*/history.jsonl")}
    assert len(histories) == 2
    r = ablate(out, image_dir)
    assert r.returncode == 0, r.stderr[-3000:]
    assert {p: p.stat().st_mtime_ns for p in out.glob("runs/*/history.jsonl")} == histories
    again = json.loads((out / "results.json").read_text())["variants"]
    assert {v: x["final_fid"] for v, x in again.items()} == {v: x["final_fid"] for v, x in results.items()}


def _script():
    import importlib.util

    spec = importlib.util.spec_from_file_location("ablate", ROOT / "scripts" / "ablate.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    return script


def test_the_timing_trainer_is_the_one_animegan_train_builds(image_dir, tmp_path):
    """ablate.py times the trainer of trainer.build_run: the same losses as animegan-train on
    the same flags, for a variant steered by r_v too (it needs its held-out faces)."""
    import torch
    from helpers import run_main

    from animegan_ignite.runs.history import read_history, split_history

    script = _script()
    flags = ["--data-dir", str(image_dir), *script.variant_flags("default_ada_rv"), "--eval-size",
             "16", "--eval-every", "0", "--batch-size", "8", "--ngf", "8", "--ndf", "8",
             "--no-progress", "--num-workers", "0", "--epochs", "1"]
    r = run_main("train", *flags, "--output-dir", tmp_path / "cli")
    assert r.returncode == 0, r.stderr[-2000:]
    cli = [x["loss_d"] for x in split_history(read_history(tmp_path / "cli"))[0]]
    run = script.build_run(script.make_plan(script.make_config(
        [*flags, "--output-dir", str(tmp_path / "script")])))
    run.engine.run(run.loader, max_epochs=1)
    run.ctx.close()
    assert run.ctx.cfg.ada_signal == "rv"
    ours = [x["loss_d"] for x in split_history(read_history(tmp_path / "script"))[0]]
    assert ours == cli and len(ours) == 13 and all(torch.isfinite(torch.tensor(ours)))
    assert script._seconds_per_iteration(flags, iters=2) > 0
