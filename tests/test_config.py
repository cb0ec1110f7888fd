"""Settings: the seed's defaults, file + flag precedence, and invalid values rejected early."""

import json

import pytest
from helpers import run_cli

from animegan_ignite.config import DEMO_OVERRIDES, Config, ConfigError, make_config


def test_defaults_are_the_seed_design():
    c = Config()
    assert (c.batch_size, c.nz, c.ngf, c.ndf, c.lr, c.beta1) == (128, 100, 64, 64, 2e-4, 0.5)
    assert (c.epochs, c.seed, c.eval_size, c.snapshot_every) == (50, 999, 3000, 500)


def test_real_data_keeps_seed_defaults_and_demo_uses_cpu_schedule(tmp_path):
    real = make_config(["--data-dir", str(tmp_path)])
    assert real.batch_size == 128 and real.ngf == 64 and real.epochs == 50
    demo = make_config([])
    assert demo.synthetic
    assert all(getattr(demo, k) == v for k, v in DEMO_OVERRIDES.items())


def test_flags_override_config_file_which_overrides_defaults(tmp_path):
    yaml_file = tmp_path / "c.yaml"
    yaml_file.write_text("data-dir: /data\nepochs: 7\nlr: 0.001\n")
    c = make_config(["--config", str(yaml_file), "--epochs", "3"])
    assert (c.data_dir, c.epochs, c.lr) == ("/data", 3, 0.001)
    json_file = tmp_path / "c.json"
    json_file.write_text(json.dumps({"data_dir": "/d", "batch_size": 32}))
    assert make_config(["--config", str(json_file)]).batch_size == 32


@pytest.mark.parametrize("argv, fragment", [
    (["--batch-size", "-4"], "--batch-size -4: must be an integer in 1..65536"),
    (["--device", "tpu"], "--device 'tpu': must be one of auto, cpu, cuda"),
    (["--lr", "0"], "--lr 0.0: must be a number in (0, 1)"),
    (["--eval-size", "-1"], "--eval-size -1: must be an integer in 0..10000000"),
])
def test_invalid_values_raise_a_config_error_naming_the_flag(argv, fragment):
    with pytest.raises(ConfigError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        make_config(argv)


def test_bad_config_file_values_are_rejected(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("epochs: many\n")
    with pytest.raises(ConfigError, match="c.yaml: epochs 'many': must be an integer in 1..1000000"):
        make_config(["--config", str(f)])
    f.write_text("epoch: 3\n")
    with pytest.raises(ConfigError, match="unknown setting"):
        make_config(["--config", str(f)])


@pytest.mark.parametrize("argv", [["--batch-size", "-1"], ["--device", "tpu"],
                                  ["--epochs", "two"], ["--bogus-flag"]])
def test_cli_rejects_bad_flags_with_one_line_and_status_2(tmp_path, argv):
    r = run_cli("train", *argv, "--output-dir", tmp_path / "run")
    assert r.returncode == 2
    assert len(r.stderr.strip().splitlines()) == 1 and r.stderr.startswith("error:")
    assert "Traceback" not in r.stderr
    assert not (tmp_path / "run").exists()


def test_a_recipe_sets_its_values_below_the_flags_and_a_resume_keeps_them(tmp_path):
    c = make_config(["--recipe", "diffaug", "--data-dir", str(tmp_path)])
    assert (c.recipe, c.diffaugment, c.loss) == ("diffaug", "color,translation", "bce")
    c = make_config(["--recipe", "diffaug", "--diffaugment", "none", "--data-dir", str(tmp_path)])
    assert c.diffaugment is None
    default = make_config(["--data-dir", str(tmp_path)])  # real data: the measured winner
    assert (default.recipe, default.diffaugment, default.lr_decay) == (
        "diffaug_lr5_cos", "color,translation", "cosine")
    demo = make_config([])  # the demo's own winner, without the decay
    assert (demo.recipe, demo.diffaugment, demo.g_lr, demo.lr_decay) == (
        "diffaug_lr5", "color,translation", 5e-4, "none")
    plain = make_config(["--recipe", "dcgan", "--data-dir", str(tmp_path)])
    assert (plain.diffaugment, plain.g_lr, plain.d_lr, plain.lr_decay) == (None, 2e-4, 2e-4, "none")
    best = make_config(["--recipe", "diffaug_lr5_cos", "--data-dir", str(tmp_path)])
    assert (best.diffaugment, best.lr_g, best.lr_d, best.lr_decay) == (
        "color,translation", 5e-4, 5e-4, "cosine")
    mine = make_config(["--recipe", "diffaug_lr5_cos", "--lr", "1e-4", "--data-dir", str(tmp_path)])
    assert (mine.lr, mine.lr_g, mine.lr_d, mine.lr_decay) == (1e-4, None, None, "cosine")


def test_a_runs_config_json_starts_a_new_run_with_the_same_settings(tmp_path):
    """What the 'no checkpoint yet' message tells a user to run."""
    saved = make_config(["--data-dir", str(tmp_path), "--epochs", "3", "--recipe", "diffaug",
                         "--output-dir", str(tmp_path / "old")])
    (tmp_path / "config.json").write_text(json.dumps(saved.to_dict()))
    again = make_config(["--config", str(tmp_path / "config.json"), "--output-dir",
                         str(tmp_path / "new")])
    assert {**saved.to_dict(), "output_dir": str(tmp_path / "new")} == again.to_dict()
    (tmp_path / "config.json").write_text(json.dumps({**saved.to_dict(), "resume": "somewhere"}))
    with pytest.raises(ConfigError, match="give --resume RUN_DIR on the command line"):
        make_config(["--config", str(tmp_path / "config.json")])  # a file of settings, not a run's
    # a resumed run's own config.json records where it was resumed from: a new run ignores that
    (tmp_path / "history.jsonl").write_text("")
    again = make_config(["--config", str(tmp_path / "config.json"), "--output-dir",
                         str(tmp_path / "new")])
    assert {**saved.to_dict(), "output_dir": str(tmp_path / "new")} == again.to_dict()
