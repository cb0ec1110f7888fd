"""The training recipe options: DiffAugment, hinge loss, spectral norm, TTUR, EMA of G, and the
seed design kept exactly under ``--recipe dcgan``."""

import json
import math

import pytest
import torch
from helpers import TINY, checkpoint_names, phases_passed, run_main, start_cli, write_images

from animegan_ignite.config import Config, make_config, parse_policy
from animegan_ignite.networks.architecture import Architecture
from animegan_ignite.networks.augment import DiffAugment, color, cut, cutout, translate, translation
from animegan_ignite.networks.gan import ADA_KEYS, OUTPUT_KEYS, build_gan, make_training_step
from animegan_ignite.networks.models import Discriminator, dcgan_weights_init
from animegan_ignite.runs.history import read_history, split_history
from animegan_ignite.training.handlers import cosine_factor, ema_momentum

# --- DiffAugment -----------------------------------------------------------------------------


def test_translation_moves_each_image_by_its_own_offset_with_zeros_shifted_in():
    x = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).view(2, 3, 8, 8) + 1
    out = translate(x, torch.tensor([2, -1]), torch.tensor([-3, 0]))
    assert torch.equal(out[0, :, 2:, :5], x[0, :, :6, 3:])  # down 2, left 3
    assert (out[0, :, :2] == 0).all() and (out[0, :, :, 5:] == 0).all()
    assert torch.equal(out[1, :, :7], x[1, :, 1:]) and (out[1, :, 7] == 0).all()  # up 1


def test_random_translation_stays_within_an_eighth_and_differs_per_image():
    torch.manual_seed(0)
    x = torch.zeros(64, 1, 16, 16)
    x[:, :, 8, 8] = 1  # one bright pixel per image
    out = translation(x)
    pos = torch.stack(torch.where(out[:, 0] == 1)[1:], 1) - 8
    assert pos.shape == (64, 2) and pos.abs().max() <= 2  # 16 / 8
    assert len({tuple(p.tolist()) for p in pos}) > 5


def test_cutout_zeroes_one_square_of_half_the_size():
    x = torch.ones(1, 3, 8, 8)
    out = cut(x, torch.tensor([4]), torch.tensor([4]), 4)
    assert (out[0, :, 2:6, 2:6] == 0).all() and out.sum() == 3 * (64 - 16)
    torch.manual_seed(1)
    zeroed = (cutout(torch.ones(32, 3, 64, 64)) == 0).float().sum(dim=(1, 2, 3)) / 3
    assert (zeroed <= 32 * 32).all() and (zeroed > 0).all()


def test_color_keeps_shape_and_the_paper_ranges():
    torch.manual_seed(2)
    x = torch.rand(256, 3, 16, 16) * 2 - 1
    out = color(x)
    assert out.shape == x.shape and out.dtype == x.dtype
    shift = (out - x).mean(dim=(1, 2, 3))
    assert shift.std() > 0.05  # each image gets its own draw
    grey = torch.zeros(1, 3, 4, 4)  # saturation and contrast keep a flat grey image flat
    flat = color(grey)
    assert torch.allclose(flat, flat.flatten()[0].expand_as(flat)) and flat.abs().max() <= 0.5


def test_gradients_reach_the_generator_through_every_augmentation():
    torch.manual_seed(3)
    gan = build_gan(Architecture(16, 8, 8), 2e-4, 0.5, torch.device("cpu"))
    fake = gan.netG(torch.randn(4, 16, 1, 1))
    DiffAugment(parse_policy("color,translation,cutout"))(fake).sum().backward()
    grads = [p.grad for p in gan.netG.parameters()]
    assert all(g is not None and g.abs().sum() > 0 for g in grads)


def test_policy_names_are_checked():
    assert parse_policy("translation, color") == ("translation", "color")
    assert not DiffAugment(parse_policy(None))
    with pytest.raises(ValueError, match="unknown DiffAugment policy zoom"):
        parse_policy("color,zoom")


# --- losses, spectral norm, TTUR, EMA schedule ----------------------------------------------


def test_spectral_norm_discriminator_has_no_batchnorm_and_unit_spectral_norms():
    torch.manual_seed(4)
    d = Discriminator(8, spectral_norm=True)
    d.apply(dcgan_weights_init)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in d.modules())
    original = d.main[0].parametrizations.weight.original
    assert abs(original.std().item() - 0.02) < 0.005  # the DCGAN init reached the raw weight
    for _ in range(30):  # power iterations run in training-mode forwards
        d(torch.randn(2, 3, 64, 64))
    d.eval()
    sigma = torch.linalg.matrix_norm(d.main[0].weight.flatten(1), ord=2)
    assert sigma.item() == pytest.approx(1.0, rel=0.05)


def test_ttur_gives_each_optimizer_its_rate_and_lr_alone_sets_both(tmp_path):
    gan = build_gan(Architecture(16, 8, 8), 1e-4, 0.5, torch.device("cpu"), lr_d=4e-4)
    assert gan.optG.param_groups[0]["lr"] == 1e-4 and gan.optD.param_groups[0]["lr"] == 4e-4
    cfg = make_config(["--lr", "3e-4", "--lr-d", "5e-4"])
    assert (cfg.g_lr, cfg.d_lr) == (3e-4, 5e-4)


def test_ema_half_life_ramps_up_with_the_images_seen():
    cfg = Config(batch_size=128, ema_halflife_kimg=10, ema_rampup=0.05)
    assert ema_momentum(cfg, 1) > 0.999  # the start: the average follows G closely
    # after 460 iterations the half-life is 0.05 * 58,880 images, about 23 iterations
    assert ema_momentum(cfg, 460) == pytest.approx(1 - 0.5 ** (128 / (0.05 * 460 * 128)))
    assert ema_momentum(cfg, 10**6) == pytest.approx(1 - 0.5 ** (128 / 10_000))  # 10 kimg cap
    assert ema_momentum(Config(batch_size=128, ema_halflife_kimg=10), 1) == pytest.approx(
        1 - 0.5 ** (128 / 10_000))


def test_cosine_decay_falls_from_the_full_rate_to_zero_at_the_end():
    assert cosine_factor(0, 468) == 1.0
    assert cosine_factor(234, 468) == pytest.approx(0.5)
    assert cosine_factor(467, 468) == pytest.approx(1.13e-5, rel=0.01)  # the last iteration
    assert cosine_factor(600, 468) == 0.0  # never negative past the end
    assert make_config(["--lr-decay", "cosine"]).lr_decay == "cosine"
    assert make_config([]).lr_decay == "none"


# --- through the real command line ------------------------------------------------------------

GOLDEN_DCGAN = [  # the first six iterations of the seed design before recipes existed
    # (commit be83f5b, `train --data-dir D --epochs 1 --eval-size 16 --ngf 8 --ndf 8
    #  --batch-size 8 --num-workers 0 --eval-every 0` on write_images(D, 120, ext=".png"))
    [1.4129469394683838, 1.0671671628952026, 0.43880799412727356, 0.43059027194976807, 0.35093724727630615],
    [1.3257139921188354, 1.0770330429077148, 0.4669896960258484, 0.41345497965812683, 0.347023069858551],
    [1.3980625867843628, 1.0181293487548828, 0.4524959921836853, 0.43744733929634094, 0.37190067768096924],
    [1.324958324432373, 1.1146026849746704, 0.44854170083999634, 0.38854745030403137, 0.33485594391822815],
    [1.4099363088607788, 0.9572836756706238, 0.4614166021347046, 0.4563869833946228, 0.39154064655303955],
    [1.2358242273330688, 1.0506885051727295, 0.5166914463043213, 0.42499110102653503, 0.35992053151130676],
]


def test_recipe_dcgan_gives_the_seed_designs_losses(tmp_path):
    write_images(tmp_path / "data", 120, ext=".png")
    # --no-cache: the seed's data path (a DataLoader, whose iterator draws a seed from the
    # training stream), which the data-size rule would replace on a folder this small
    r = run_main("train", "--data-dir", tmp_path / "data", "--output-dir", tmp_path / "run",
                "--epochs", "1", "--eval-size", "16", "--eval-every", "0", "--recipe", "dcgan",
                "--no-cache", *TINY)
    assert r.returncode == 0, r.stderr
    iters = split_history(read_history(tmp_path / "run"))[0][:6]
    got = [x[k] for x in iters for k in ("loss_d", "loss_g", "d_x", "d_g_z1", "d_g_z2")]
    assert got == pytest.approx([v for row in GOLDEN_DCGAN for v in row], rel=1e-4)


FULL = ["--loss", "hinge", "--spectral-norm", "--lr-g", "1e-4", "--lr-d", "4e-4",
        "--diffaugment", "color,translation,cutout", "--ema-halflife-kimg", "0.5",
        "--ema-rampup", "0.05", "--lr-decay", "cosine"]
SLOW = ["--batch-size", "32", "--ngf", "16", "--ndf", "16", "--num-workers", "0", "--no-progress",
        "--eval-size", "32", "--eval-every", "0"]


@pytest.mark.slow
def test_killed_and_resumed_run_ends_with_the_uninterrupted_runs_ema_weights(big_dir, tmp_path):
    args = ["--data-dir", big_dir, "--epochs", "3", *SLOW, *FULL]
    assert run_main("train", *args, "--output-dir", tmp_path / "whole").returncode == 0
    # checkpointed every 4 iterations too (4, 8, 9 the epoch end, 12, 16), so the run resumes
    # from inside an epoch
    log = tmp_path / "faults.log"  # killed inside iteration 14: epoch 2, checkpoint_12.pt written
    proc = start_cli([*args, "--output-dir", tmp_path / "cut", "--checkpoint-every", "4"],
                     fault="iteration:14:SIGKILL", fault_log=log)
    proc.wait(timeout=300)
    assert phases_passed(log)[-1] == "iteration" and phases_passed(log).count("iteration") == 14
    r = run_main("train", "--resume", tmp_path / "cut")
    assert r.returncode == 0, r.stderr
    assert "resumed inside epoch 2, at iteration 12\n" in r.stderr, r.stderr[-2000:]
    whole, cut_run = (torch.load(tmp_path / run / "checkpoints" / "checkpoint_27.pt")
                      for run in ("whole", "cut"))
    for key in ("ema", "netG", "netD"):
        assert whole[key].keys() == cut_run[key].keys()
        assert all(torch.equal(whole[key][k], cut_run[key][k]) for k in whole[key]), key
    assert not all(torch.equal(whole["ema"][k], whole["netG"][k]) for k in whole["ema"])
    # the cosine decay reached the last of 27 iterations with each network's own base rate
    for key, base in (("optG", 1e-4), ("optD", 4e-4)):
        for run in (whole, cut_run):
            assert run[key]["param_groups"][0]["lr"] == pytest.approx(base * cosine_factor(26, 27))


def test_the_full_recipe_trains_from_the_cache_in_bf16_and_generates_from_either_weights(
        image_dir, tmp_path):
    run = tmp_path / "run"
    r = run_main("train", "--data-dir", image_dir, "--output-dir", run, "--epochs", "1",
                "--eval-size", "16", "--inception-weights", "pool3", "--cache", "--cache-dir",
                tmp_path / "cache", "--precision", "bf16", *TINY, *FULL)
    assert r.returncode == 0, r.stderr
    (epoch,) = split_history(read_history(run))[1]
    assert epoch["fid"] > 0  # evaluated on the EMA generator
    ckpt = torch.load(run / "checkpoints" / checkpoint_names(run)[-1])
    assert "ema" in ckpt and "parametrizations.weight.original" in "".join(ckpt["netD"])
    for weights in ("ema", "raw"):
        r = run_main("generate", "--checkpoint", run, "--grid", tmp_path / f"{weights}.png",
                    "--num", "4", "--weights", weights)
        assert r.returncode == 0, r.stderr
    assert (tmp_path / "ema.png").read_bytes() != (tmp_path / "raw.png").read_bytes()


def test_asking_for_ema_weights_of_a_run_without_ema_is_a_one_line_error(image_dir, tmp_path):
    run = tmp_path / "run"
    assert run_main("train", "--data-dir", image_dir, "--output-dir", run, "--epochs", "1",
                   "--eval-size", "16", "--eval-every", "0", "--recipe", "dcgan",
                   *TINY).returncode == 0
    r = run_main("generate", "--checkpoint", run, "--grid", tmp_path / "g.png", "--weights", "ema")
    assert r.returncode == 2 and "has no EMA generator" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_each_step_of_the_full_recipe_updates_both_networks(image_dir):
    from animegan_ignite.data.loading import make_split, make_train_loader

    torch.manual_seed(0)
    gan = build_gan(Architecture(16, 8, 8, spectral_norm=True), 1e-4, 0.5, torch.device("cpu"),
                    lr_d=4e-4)
    batch = next(iter(make_train_loader(make_split(str(image_dir), 16, 8, 0).train, 8, 0, 0)))
    before = [p.clone() for p in gan.netG.parameters()]
    step = make_training_step(gan, loss="hinge", augment=DiffAugment(parse_policy("color,translation")))
    out = step(None, batch)
    assert set(out) == {*OUTPUT_KEYS, *ADA_KEYS}
    assert any(not torch.equal(a, b) for a, b in zip(before, gan.netG.parameters(), strict=True))


# --- adaptive augmentation (ADA) ---------------------------------------------------------------


def test_each_operation_applies_to_each_image_with_probability_p():
    x = torch.rand(400, 3, 16, 16) * 2 - 1
    torch.manual_seed(0)
    plain = DiffAugment(("translation",))(x)
    torch.manual_seed(0)
    assert torch.equal(DiffAugment(("translation",), p=1.0)(x), plain)  # p = 1: no mask drawn
    assert torch.equal(DiffAugment(("color", "translation"), p=0.0)(x), x)
    moved = (DiffAugment(("color",), p=0.25)(x) != x).flatten(1).any(1).float().mean()
    assert 0.17 < moved < 0.33


def _adaptive(p=0.0, target=0.6, probe=None):
    from animegan_ignite.networks.augment import AdaptiveAugment

    augment = DiffAugment(("color",), p=p)
    return augment, AdaptiveAugment(augment, True, target, kimg=1, batch_size=8, interval=4,
                                    probe=probe)


def _iterate(ada, engine, sign, real=0.0, fake=0.0):
    engine.state.iteration += 1
    engine.state.output = {"loss_d": 1.0, "d_real_sign": sign, "d_real_logit": real,
                           "d_fake_logit": fake}
    ada(engine)
    return engine.state.output


def test_ada_raises_p_when_d_overfits_lowers_it_when_not_and_resumes_exactly():
    from ignite.engine import Engine

    augment, ada = _adaptive()
    engine = Engine(lambda e, b: None)
    for _ in range(8):  # r_t = 1 > 0.6 twice: p up by 2 x (8 x 4 / 1000)
        out = _iterate(ada, engine, 1.0)
    assert augment.p == pytest.approx(0.064) and out["r_t"] == 1.0 and "d_real_sign" not in out
    assert "r_v" not in out and "d_real_logit" not in out  # no probe: no r_v
    saved = ada.state_dict()
    for _ in range(4):
        out = _iterate(ada, engine, 0.2)  # r_t below the target: p down again
    assert augment.p == pytest.approx(0.032) and out["augment_p"] == pytest.approx(0.064)
    augment2, ada2 = _adaptive()
    ada2.load_state_dict(saved)
    assert augment2.p == pytest.approx(0.064) and ada2.r_t == 1.0
    for _ in range(20):
        _iterate(ada, engine, -1.0)
    assert augment.p == 0.0  # clipped


def test_ada_steered_by_r_v_compares_held_out_faces_with_training_and_generated_ones():
    from ignite.engine import Engine

    held_out = {1: 2.0, 2: 2.9, 3: 2.0}  # D's mean logit on the k-th held-out batch
    augment, ada = _adaptive(target=0.1, probe=held_out.__getitem__)
    engine = Engine(lambda e, b: None)
    for _ in range(4):  # training faces 3, fakes -1, held-out 2: r_v = (3 - 2) / (3 + 1)
        out = _iterate(ada, engine, 1.0, real=3.0, fake=-1.0)
    assert out["r_v"] == pytest.approx(0.25) and out["r_t"] == 1.0
    assert augment.p == pytest.approx(0.032)  # r_v 0.25 > 0.1 (r_t plays no part): p up
    for _ in range(2):  # half an interval, then saved: the sums go into the checkpoint
        _iterate(ada, engine, 1.0, real=2.0, fake=-2.0)
    saved = ada.state_dict()
    augment2, ada2 = _adaptive(target=0.1, probe=held_out.__getitem__)
    ada2.load_state_dict(saved)
    engine2 = Engine(lambda e, b: None)
    engine2.state.iteration = engine.state.iteration
    for a, e in ((ada, engine), (ada2, engine2)):
        for _ in range(2):  # means 3 and -1 again; held-out 2.9: r_v = 0.025 < 0.1: p down
            out = _iterate(a, e, 1.0, real=4.0, fake=0.0)
        assert out["r_v"] == pytest.approx(0.025) and a.augment.p == pytest.approx(0.0)
    for _ in range(4):  # D scores reals below fakes: nothing to overfit, r_v 0
        out = _iterate(ada, engine, -1.0, real=-1.0, fake=1.0)
    assert out["r_v"] == 0.0

    augment3, ada3 = _adaptive()  # a checkpoint written before r_v existed
    ada3.load_state_dict({"p": 0.5, "sign_sum": 2.0, "count": 2, "r_t": 0.9})
    assert (augment3.p, ada3.sums, ada3.r_v) == (0.5, [2.0, 0.0, 0.0, 2], None)


@pytest.mark.parametrize("recipe", ["dcgan", "diffaug-cosine", *(
    pytest.param(r, marks=pytest.mark.slow) for r in ("diffaug", "diffaug-fast"))])
def test_adaptive_augmentation_trains_with_every_recipe_and_records_p_and_r_t(image_dir, tmp_path,
                                                                              recipe):
    run = tmp_path / "run"
    r = run_main("train", "--data-dir", image_dir, "--output-dir", run, "--epochs", "1",
                 "--eval-size", "16", "--eval-every", "0", "--recipe", recipe, "--augment-p",
                 "auto", "--ada-kimg", "0.5", *TINY)
    assert r.returncode == 0, r.stderr[-2000:]
    iters, (epoch,) = split_history(read_history(run))
    assert iters[0]["augment_p"] == 0.0 and "r_t" not in iters[0]  # ADA starts at p = 0
    assert all(-1 <= x["r_t"] <= 1 for x in iters[3:])
    assert epoch["augment_p"] == pytest.approx(iters[-1]["augment_p"], abs=0.07)
    assert "augment p" in r.stderr and (run / "plots" / "augment.png").is_file()
    config = json.loads((run / "config.json").read_text())
    assert config["augment_p"] == "auto" and config["diffaugment"]  # dcgan too: colour+translation


def _ada_run(tmp_path, data: str, signal: str, epochs: int) -> list[float]:
    """p at every iteration of a tiny run steered by ``signal``, on 64 faces (and 16 held out)
    or on synthetic faces drawn anew every epoch (80 per epoch)."""
    if data == "64 faces":
        write_images(tmp_path / "data", 80)
        # --no-cache: the data path (and random stream) these thresholds were measured on
        source = ["--data-dir", tmp_path / "data", "--no-cache"]
    else:
        source = ["--synthetic-fresh", "--no-cache", "--synthetic-size", "96"]
    run = tmp_path / "run"
    r = run_main("train", *source, "--output-dir", run, "--epochs", epochs, "--eval-size", "16",
                 "--eval-every", "0", "--augment-p", "auto", "--ada-kimg", "1", "--ada-signal",
                 signal, "--snapshot-every", "1000", *TINY)
    assert r.returncode == 0, r.stderr[-2000:]
    iters = split_history(read_history(run))[0]
    assert all(("r_v" in x) == (signal == "rv") for x in iters[4:])
    return [x["augment_p"] for x in iters]


@pytest.mark.parametrize("data, signal, epochs, check", [
    ("64 faces", "rt", 10, lambda p: p[-1] > 0.3),  # D memorises: r_t goes to 1, p rises
    # (p at each epoch's end: 0, .06, .06, .13, .19, .26, .32, .38, .45, .51, ... 1.0 at epoch 19)
    # every face new, nothing to memorise: r_v stays near 0 and with it p; r_t cannot tell
    ("fresh faces", "rv", 10, lambda p: max(p) < 0.15),
    pytest.param("64 faces", "rv", 20, lambda p: max(p) > 0.25, marks=pytest.mark.slow),
    pytest.param("fresh faces", "rt", 20, lambda p: p[-1] > 0.5, marks=pytest.mark.slow),
])
def test_ada_raises_p_on_64_faces_and_steered_by_r_v_keeps_it_low_on_fresh_faces(
        tmp_path, data, signal, epochs, check):
    p = _ada_run(tmp_path, data, signal, epochs)
    assert check(p), p[::8]


def test_adaptive_augmentation_with_the_cache_in_bf16(image_dir, tmp_path):
    """Steered by r_v: D's pass over held-out faces runs in the run's precision too. (The pass
    runs through the plain D, compiled or not: a compiled step is tests/test_speed.py's.)"""
    speed = ["--cache", "--precision", "bf16"]
    run = tmp_path / "run"
    r = run_main("train", "--data-dir", image_dir, "--output-dir", run, "--epochs", "2",
                 "--eval-size", "16", "--eval-every", "0", "--augment-p", "auto", "--ada-kimg",
                 "0.5", "--ada-signal", "rv", "--ada-target", "0.01", "--cache-dir",
                 tmp_path / "cache", *speed, *TINY)
    assert r.returncode == 0, r.stderr[-2000:]
    iters = split_history(read_history(run))[0]
    assert [x["iteration"] for x in iters] == list(range(1, 27))
    assert iters[-1]["augment_p"] > 0 and all(math.isfinite(x["loss_d"]) for x in iters)
    assert all(math.isfinite(x["r_v"]) for x in iters[3:])


def test_a_masked_operation_leaves_unchosen_images_exact_and_matches_the_plain_one_on_chosen():
    from animegan_ignite.networks.augment import color, cutout, translation

    x = torch.rand(64, 3, 16, 16) * 2 - 1
    chosen = torch.arange(64) % 3 == 0
    for op in (color, translation, cutout):
        torch.manual_seed(1)
        plain = op(x)
        torch.manual_seed(1)
        masked = op(x, chosen)
        assert torch.equal(masked[~chosen], x[~chosen]), op.__name__
        assert torch.allclose(masked[chosen], plain[chosen], atol=1e-6), op.__name__
