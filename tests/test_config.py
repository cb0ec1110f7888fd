"""Settings: one declaration per setting, the defaults --help shows are the ones a run records,
a Config made in code is the command line's, precedence, and every bad value named early."""

import json
import re
import subprocess
import sys
from dataclasses import fields

import pytest
from helpers import REPO, run_main

from animegan_ignite.config import RECIPES, Config, ConfigError, build_parser, make_config, shown_value


def _help_defaults() -> dict[str, tuple[str, str | None]]:
    """Each flag's (default, demo default) as ``--help`` states them."""
    found = {}
    flag_lines = "\n".join(line for line in build_parser().format_help().splitlines()
                           if line.startswith(" "))  # not the usage, group titles or blanks
    for entry in re.split(r"\n  (?=--)", flag_lines):
        entry = " ".join(entry.split())
        m = re.search(r"\(default: ([^;)]*)(?:; demo: ([^;)]*))?[^()]*\)$", entry)
        if entry.startswith("--") and m:
            found[entry.split()[0].split(",")[0][2:].replace("-", "_")] = m.groups()
    return found


def test_every_default_shown_by_help_is_what_a_run_records(image_dir, tmp_path):
    shown = _help_defaults()
    assert set(shown) == {f.name for f in fields(Config)}
    for argv, demo in ((["--data-dir", str(image_dir)], False), ([], True)):
        (tmp_path / "run").mkdir(exist_ok=True)
        recorded = make_config([*argv, "--output-dir", str(tmp_path / "run")]).to_dict()
        for f in fields(Config):
            if f.metadata["shown"] is not None:  # a default that is not a value ("runs/<timestamp>")
                continue
            default, demo_default = shown[f.name]
            expected = demo_default if demo and demo_default is not None else default
            assert expected == shown_value(recorded[f.name]), (f.name, demo, expected)


def test_a_config_made_in_code_trains_what_the_command_line_trains(tmp_path):
    assert Config() == make_config([])  # the demo, with its recipe
    assert Config(data_dir="d") == make_config(["--data-dir", "d"])
    for recipe in RECIPES:
        assert Config(data_dir="d", recipe=recipe) == make_config(["--data-dir", "d", "--recipe",
                                                                    recipe])
    real = Config(data_dir="d")
    assert (real.recipe, real.lr, real.diffaugment, real.lr_decay) == (
        "diffaug-cosine", 5e-4, "color,translation", "cosine")
    seed = Config(data_dir="d", recipe="dcgan")
    assert (seed.lr, seed.diffaugment, seed.lr_decay, seed.batch_size, seed.ngf) == (
        2e-4, None, "none", 128, 64)


def test_the_seed_design_and_the_demo_schedule():
    c = Config(data_dir="d", recipe="dcgan")
    assert (c.batch_size, c.nz, c.ngf, c.ndf, c.lr, c.beta1) == (128, 100, 64, 64, 2e-4, 0.5)
    assert (c.epochs, c.seed, c.eval_size, c.snapshot_every) == (50, 999, 3000, 500)
    demo = Config()
    assert demo.synthetic and (demo.recipe, demo.epochs, demo.batch_size, demo.ngf, demo.cache,
                               demo.eval_size, demo.eval_every) == (
        "diffaug-fast", 12, 32, 16, True, 128, 12)


def test_flags_override_config_file_which_overrides_defaults(tmp_path):
    yaml_file = tmp_path / "c.yaml"
    yaml_file.write_text("data-dir: /data\nepochs: 7\nlr: 0.001\n")
    c = make_config(["--config", str(yaml_file), "--epochs", "3"])
    assert (c.data_dir, c.epochs, c.lr) == ("/data", 3, 0.001)
    json_file = tmp_path / "c.json"
    json_file.write_text(json.dumps({"data_dir": "/d", "batch_size": 32}))
    assert make_config(["--config", str(json_file)]).batch_size == 32


def test_yaml_numbers_in_exponent_form_are_numbers(tmp_path):
    """PyYAML reads YAML 1.1, where 1e-3 is text; users mean the number."""
    f = tmp_path / "c.yaml"
    f.write_text("data_dir: d\nlr: 1e-3\nlr_g: 2E-4\nema_halflife_kimg: 1e1\n")
    c = make_config(["--config", str(f)])
    assert (c.lr, c.lr_g, c.ema_halflife_kimg) == (1e-3, 2e-4, 10.0)
    f.write_text("data_dir: d\nlr: fast\n")
    with pytest.raises(ConfigError, match="c.yaml: lr 'fast': must be a number in"):
        make_config(["--config", str(f)])


@pytest.mark.parametrize("argv, fragment", [
    (["--batch-size", "-4"], "--batch-size -4: must be an integer in 1..65536"),
    (["--device", "tpu"], "--device 'tpu': must be one of auto, cpu, cuda"),
    (["--lr", "0"], "--lr 0.0: must be a number in (0, 1)"),
    (["--eval-size", "-1"], "--eval-size -1: must be an integer in 0..10000000"),
    (["--recipe", "best"], "--recipe 'best': must be one of dcgan, diffaug, diffaug-fast"),
    (["--ada-signal", "rv", "--eval-size", "0"], "--ada-signal rv scores held-out faces: it needs "
                                                 "--eval-size > 0"),
])
def test_invalid_values_raise_a_config_error_naming_the_flag(argv, fragment):
    with pytest.raises(ConfigError, match=re.escape(fragment)):
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
def test_the_command_rejects_bad_flags_with_one_line_and_status_2(tmp_path, argv):
    r = run_main("train", *argv, "--output-dir", tmp_path / "run")
    assert r.returncode == 2
    assert len(r.stderr.strip().splitlines()) == 1 and r.stderr.startswith("error:")
    assert "Traceback" not in r.stderr
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("command", ["train", "evaluate", "generate", "serve", "plot"])
def test_help_and_flag_errors_answer_without_importing_torch(command):
    """What makes them instant: torch, ignite and torchvision load only once flags are checked."""
    probe = (f"import sys\nfrom animegan_ignite import {command}\n"
             "for argv in (['--help'], ['--bogus']):\n"
             f"    try:\n        {command}.main(argv)\n    except SystemExit:\n        pass\n"
             "heavy = [m for m in ('torch', 'ignite', 'torchvision') if m in sys.modules]\n"
             "print('loaded:', heavy)\n")
    r = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert "loaded: []" in r.stdout, (r.stdout, r.stderr)
    assert "usage:" in r.stdout and "error:" in r.stderr


def test_help_groups_the_flags():
    text = build_parser().format_help()
    for group in ("data:", "model", "recipe", "evaluation", "run and checkpoints:", "speed:",
                  "distributed", "logging:"):
        assert f"\n{group}" in text
    assert "--tensorboard" not in text and "--image-size" not in text  # dead options removed


def test_recipes_by_name_with_old_names_accepted_and_flags_over_them(tmp_path, caplog):
    c = make_config(["--recipe", "diffaug", "--data-dir", str(tmp_path)])
    assert (c.recipe, c.diffaugment, c.loss, c.lr) == ("diffaug", "color,translation", "bce", 2e-4)
    c = make_config(["--recipe", "diffaug", "--diffaugment", "none", "--data-dir", str(tmp_path)])
    assert c.diffaugment is None
    old = make_config(["--recipe", "diffaug_lr5_cos", "--data-dir", str(tmp_path)])
    assert old.recipe == "diffaug-cosine" and "now called 'diffaug-cosine'" in caplog.text
    mine = make_config(["--recipe", "diffaug-cosine", "--lr", "1e-4", "--data-dir", str(tmp_path)])
    assert (mine.lr, mine.g_lr, mine.d_lr, mine.lr_decay) == (1e-4, 1e-4, 1e-4, "cosine")
    ttur = make_config(["--lr-g", "1e-4", "--lr-d", "4e-4", "--data-dir", str(tmp_path)])
    assert (ttur.g_lr, ttur.d_lr) == (1e-4, 4e-4)


def test_a_run_written_by_an_earlier_version_still_reads(tmp_path):
    """Its config.json has the old recipe name, lr_g/lr_d set by that recipe, image_size and
    tensorboard: it resumes with exactly its own settings."""
    run = tmp_path / "old"
    run.mkdir()
    old = {**Config(data_dir="d").to_dict(), "recipe": "diffaug_lr5_cos", "lr": 2e-4,
           "lr_g": 5e-4, "lr_d": 5e-4, "image_size": 64, "tensorboard": True, "logger": None}
    (run / "config.json").write_text(json.dumps(old))
    c = make_config(["--resume", str(run)])
    assert (c.recipe, c.g_lr, c.d_lr, c.logger, c.output_dir) == (
        "diffaug-cosine", 5e-4, 5e-4, "tensorboard", str(run))


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


def test_the_readme_names_every_recipe_and_no_missing_flag():
    readme = (REPO / "README.md").read_text()
    for recipe in RECIPES:
        assert f"`{recipe}`" in readme
    flags = {f"--{f.name.replace('_', '-')}" for f in fields(Config)} | {"--config", "--help",
                                                                          "--no-progress"}
    named = set(re.findall(r"`(--[a-z0-9-]+)", readme.split("## The flags that matter")[1]
                           .split("\n## ")[0]))
    assert named and named <= flags, named - flags


def test_a_throwaway_setting_is_one_declaration_that_reaches_flags_help_files_and_checks(
        tmp_path, monkeypatch):
    """A setting is one ``setting(...)`` field: with nothing else written, the parser offers
    it, --help explains it, a config file and the flags set it, and its rule checks it."""
    import dataclasses

    from animegan_ignite.config import cli, settings
    from animegan_ignite.config.rules import setting

    extended = dataclasses.make_dataclass("Extended", [(
        "throwaway_knob", int, setting(3, int, "speed", "a knob that only this test has",
                                       lo=1, hi=9))], bases=(Config,))
    for module in (cli, settings):
        monkeypatch.setattr(module, "Config", extended)
    assert "a knob that only this test has (default: 3)" in " ".join(
        build_parser().format_help().split())
    assert make_config([]).throwaway_knob == 3
    assert make_config(["--throwaway-knob", "7"]).throwaway_knob == 7
    (tmp_path / "c.yaml").write_text("throwaway-knob: 5\n")
    assert make_config(["--config", str(tmp_path / "c.yaml")]).throwaway_knob == 5
    with pytest.raises(ConfigError, match=r"throwaway-knob 0: must be an integer in 1\.\.9"):
        make_config(["--throwaway-knob", "0"])
