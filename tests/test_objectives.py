"""The objectives (objectives.py): each loss on known logits, the penalties against a
hand-written ``torch.autograd.grad``, every objective through the real step in each precision,
and the trainer's exact resume and two-process agreement with penalties on."""

import math

import pytest
import torch
import torch.nn.functional as F
from helpers import phases_passed, run_cli, start_cli
from ignite.engine import Engine, Events

from animegan_ignite.config import OBJECTIVE_NAMES, ConfigError, make_config, parse_policy
from animegan_ignite.networks.architecture import Architecture
from animegan_ignite.networks.augment import DiffAugment
from animegan_ignite.networks.gan import ADA_KEYS, OUTPUT_KEYS, build_gan, make_training_step
from animegan_ignite.networks.models import Discriminator, dcgan_weights_init
from animegan_ignite.networks.objectives import OBJECTIVES, penalties

REAL, FAKE = torch.tensor([2.0, 0.5]), torch.tensor([-3.0, 0.0])


def test_bce_and_hinge_on_known_logits():
    bce = torch.nn.BCEWithLogitsLoss()
    d, g = OBJECTIVES["bce"].d_loss, OBJECTIVES["bce"].g_loss
    assert d(REAL, FAKE).item() == pytest.approx(
        (bce(REAL, torch.ones(2)) + bce(FAKE, torch.zeros(2))).item())
    assert g(FAKE, None).item() == pytest.approx(bce(FAKE, torch.ones(2)).item())
    d, g = OBJECTIVES["hinge"].d_loss, OBJECTIVES["hinge"].g_loss
    assert d(REAL, FAKE).item() == pytest.approx((0 + 0.5) / 2 + (0 + 1) / 2)
    assert g(FAKE, None).item() == pytest.approx(1.5)


def test_relativistic_pairing_and_wasserstein_on_known_logits():
    rp = OBJECTIVES["rpgan"]
    # pairs (2, -3) and (0.5, 0): log(1 + e^(fake - real)) per pair, averaged
    assert rp.d_loss(REAL, FAKE).item() == pytest.approx(
        (math.log1p(math.exp(-5)) + math.log1p(math.exp(-0.5))) / 2)
    assert rp.g_loss(FAKE, REAL).item() == pytest.approx(
        (math.log1p(math.exp(5)) + math.log1p(math.exp(0.5))) / 2)
    assert rp.pairs and not OBJECTIVES["bce"].pairs
    w = OBJECTIVES["wgan-gp"]
    assert w.d_loss(REAL, FAKE).item() == pytest.approx(-1.5 - 1.25)
    assert w.g_loss(FAKE, None).item() == pytest.approx(1.5)
    assert tuple(OBJECTIVES) == OBJECTIVE_NAMES


def _tiny_d(batch_norm: bool) -> Discriminator:
    torch.manual_seed(0)
    d = Discriminator(4, batch_norm=batch_norm)
    d.apply(dcgan_weights_init)
    return d


@pytest.mark.parametrize("batch_norm", [True, False])
def test_r1_and_r2_equal_a_hand_written_autograd_penalty(batch_norm):
    netD = _tiny_d(batch_norm)
    real, fake = torch.randn(3, 3, 64, 64), torch.randn(3, 3, 64, 64)
    r1, r2 = penalties("bce", 3, r1=0.4, r2=2.0)
    for penalty, points, gamma in ((r1, real, 0.4), (r2, fake, 2.0)):
        x = points.clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(netD(x).sum(), x, create_graph=True)
        expected = gamma / 2 * grad.square().sum([1, 2, 3]).mean()
        term, norms2 = penalty(netD, real, fake, lambda t: t)
        assert term.item() == pytest.approx(3 * expected.item(), rel=1e-5)  # lazy: times K
        assert norms2.item() == pytest.approx(grad.square().sum([1, 2, 3]).mean().item(), rel=1e-5)
        # the penalty's own gradient reaches D's weights (double backward)
        netD.zero_grad()
        term.backward()
        convs = [m.weight for m in netD.modules() if isinstance(m, torch.nn.Conv2d)]
        assert all(w.grad is not None and w.grad.abs().sum() > 0 for w in convs)
    assert [p.due(i) for p in (r1,) for i in range(1, 7)] == [False, False, True] * 2


def test_wgan_gp_penalty_is_one_centred_at_points_between_real_and_fake():
    netD = _tiny_d(False)
    real, fake = torch.randn(4, 3, 64, 64), torch.randn(4, 3, 64, 64)
    (gp,) = penalties("wgan-gp", 4)
    torch.manual_seed(5)
    term, _ = gp(netD, real, fake, lambda t: t)
    torch.manual_seed(5)
    t = torch.rand(4, 1, 1, 1)
    x = (fake + t * (real - fake)).requires_grad_(True)
    (grad,) = torch.autograd.grad(netD(x).sum(), x, create_graph=True)
    expected = 10 * (grad.flatten(1).norm(dim=1) - 1).square().mean()
    assert term.item() == pytest.approx(expected.item(), rel=1e-4)
    assert gp.every == 1  # the objective's own penalty is never lazy


def test_without_penalties_the_step_is_todays_step_bit_for_bit(image_dir):
    """bce with R1/R2 at 0 draws the same random numbers and gives the same losses as the step
    built with no penalties at all (the dcgan golden losses in test_recipe hold as well)."""
    outs = []
    for extra in ({}, {"penalties": penalties("bce", 4)}):
        torch.manual_seed(7)
        gan = build_gan(Architecture(16, 8, 8), 2e-4, 0.5, torch.device("cpu"))
        step = make_training_step(gan, augment=DiffAugment(parse_policy("color,translation")), **extra)
        engine = Engine(step)
        engine.run([torch.rand(4, 3, 64, 64) * 2 - 1 for _ in range(3)])
        outs.append(engine.state.output)
    assert outs[0] == outs[1]


@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16"])
@pytest.mark.parametrize("loss", OBJECTIVE_NAMES)
def test_every_objective_trains_with_penalties_in_every_precision(loss, precision):
    from animegan_ignite.networks.gan import Speed, make_scalers

    torch.manual_seed(1)
    gan = build_gan(Architecture(16, 8, 8, d_batchnorm=False), 2e-4, 0.0, torch.device("cpu"),
                    beta2=0.99)
    assert gan.optD.param_groups[0]["betas"] == (0.0, 0.99)
    before = [p.detach().clone() for p in gan.netD.parameters()]
    step = make_training_step(gan, Speed(precision), make_scalers(gan, precision), loss,
                              DiffAugment(parse_policy("color,translation")),
                              penalties(loss, 2, r1=0.5, r2=0.5))
    outputs = []
    engine = Engine(step)
    engine.add_event_handler(Events.ITERATION_COMPLETED, lambda e: outputs.append(dict(e.state.output)))
    engine.run([torch.rand(4, 3, 64, 64) * 2 - 1 for _ in range(4)])
    taken = {"r1", "r2"} | ({"gp"} if loss == "wgan-gp" else set())
    for i, out in enumerate(outputs, start=1):
        due = taken if i % 2 == 0 else taken & {"gp"}
        assert set(out) == {*OUTPUT_KEYS, *ADA_KEYS, *due}, i
        assert all(math.isfinite(v) for v in out.values())
    assert all(outputs[1][k] > 0 for k in ("r1", "r2"))
    assert any(not torch.equal(a, b) for a, b in zip(before, gan.netD.parameters(), strict=True))


def test_the_recipe_settings_reach_the_config_and_are_checked():
    cfg = make_config(["--loss", "rpgan", "--r1-gamma", "0.1", "--r2-gamma", "0.1",
                       "--reg-every", "8", "--beta1", "0", "--beta2", "0.99", "--no-d-batchnorm"])
    assert (cfg.loss, cfg.r1_gamma, cfg.r2_gamma, cfg.reg_every, cfg.beta1, cfg.beta2,
            cfg.d_batchnorm) == ("rpgan", 0.1, 0.1, 8, 0.0, 0.99, False)
    default = make_config([])
    assert (default.beta2, default.reg_every, default.r1_gamma, default.d_batchnorm) == (
        0.999, 4, 0.0, True)
    r3gan = make_config(["--data-dir", "d", "--recipe", "r3gan"])
    assert (r3gan.loss, r3gan.r1_gamma, r3gan.r2_gamma, r3gan.beta1, r3gan.beta2, r3gan.lr_decay,
            r3gan.diffaugment) == ("rpgan", 0.1, 0.1, 0.0, 0.99, "cosine", "color,translation")
    for bad, words in ((["--loss", "wgan"], "--loss"), (["--r1-gamma", "-1"], "--r1-gamma"),
                       (["--reg-every", "0"], "--reg-every")):
        with pytest.raises(ConfigError, match=words):
            make_config(bad)


def test_a_penalty_needs_no_batchnorm_only_in_name_a_step_with_it_and_batchnorm_runs():
    """D with BatchNorm keeps working with a penalty (batch statistics mix each face's input
    gradient with its batch-mates', which the docs say); the step's numbers stay finite."""
    torch.manual_seed(2)
    gan = build_gan(Architecture(16, 8, 8), 2e-4, 0.5, torch.device("cpu"))
    step = make_training_step(gan, loss="rpgan", penalties=penalties("rpgan", 1, r1=0.1, r2=0.1))
    out = Engine(step).run([torch.rand(4, 3, 64, 64) * 2 - 1]).output
    assert math.isfinite(out["r1"]) and math.isfinite(out["loss_g"])
    assert F.softplus(torch.tensor(0.0)).item() == pytest.approx(math.log(2))


PENALISED = ["--loss", "rpgan", "--r1-gamma", "0.5", "--r2-gamma", "0.5", "--reg-every", "3",
             "--beta1", "0", "--beta2", "0.99"]
TINY = ["--epochs", "2", "--eval-size", "16", "--eval-every", "0", "--ngf", "8", "--ndf", "8",
        "--batch-size", "8", "--num-workers", "0", "--no-progress", "--checkpoint-every", "5"]


@pytest.mark.slow
def test_a_penalised_run_killed_mid_epoch_resumes_to_the_uninterrupted_weights(image_dir, tmp_path):
    args = ["--data-dir", str(image_dir), *TINY, *PENALISED]
    assert run_cli("train", *args, "--output-dir", tmp_path / "whole").returncode == 0
    log = tmp_path / "faults.log"
    proc = start_cli([*args, "--output-dir", tmp_path / "cut"], fault="iteration:7:SIGKILL",
                     fault_log=log)
    proc.wait(timeout=300)
    assert proc.returncode == -9 and phases_passed(log).count("iteration") == 7
    assert run_cli("train", "--resume", tmp_path / "cut").returncode == 0
    whole, cut = (torch.load(tmp_path / run / "checkpoints" / f"checkpoint_{n}.pt")
                  for run, n in (("whole", 26), ("cut", 26)))
    assert all(torch.equal(whole[net][k], cut[net][k]) for net in ("netG", "netD")
               for k in whole[net])


def test_ada_steered_by_the_sign_of_d_is_refused_where_the_logits_level_is_free():
    """Under rpgan D's logits on real faces drifted to all negative in a 600-face run (r_t
    -1.00 at p = 1): r_t means nothing there; r_v, a ratio of differences, still does."""
    with pytest.raises(ConfigError, match="--ada-signal rv"):
        make_config(["--loss", "rpgan", "--augment-p", "auto"])
    assert make_config(["--loss", "rpgan", "--augment-p", "auto", "--ada-signal", "rv"]).adaptive
    assert make_config(["--loss", "hinge", "--augment-p", "auto"]).adaptive


def test_a_throwaway_objective_and_penalty_are_one_entry_each_and_reach_step_and_figure(monkeypatch):
    """Adding an objective or a penalty is one declaration (objectives.py) plus its code: the
    step takes both and records the penalty, and the loss figure draws its curve."""
    from matplotlib.figure import Figure

    from animegan_ignite.evaluation.figures import draw_losses
    from animegan_ignite.networks import objectives

    def midpoints(real, fake):
        return (real + fake) / 2

    monkeypatch.setitem(objectives.OPTIONAL_PENALTIES, "rmid", midpoints)
    monkeypatch.setitem(objectives.OBJECTIVES, "softplus-sum", objectives.Objective(
        lambda r, f: F.softplus(-r).mean() + F.softplus(f).mean(),
        lambda f, r: F.softplus(-f).mean(), "throwaway loss"))
    torch.manual_seed(3)
    gan = build_gan(Architecture(16, 8, 8), 2e-4, 0.5, torch.device("cpu"))
    step = make_training_step(gan, loss="softplus-sum",
                              penalties=penalties("softplus-sum", 1, rmid=0.5, r1=0.0))
    records = []
    engine = Engine(step)
    engine.add_event_handler(Events.ITERATION_COMPLETED, lambda e: records.append(
        {"kind": "iteration", "iteration": e.state.iteration, "epoch": 1, **e.state.output}))
    engine.run([torch.rand(4, 3, 64, 64) * 2 - 1 for _ in range(3)])
    assert all(r["rmid"] > 0 and "r1" not in r for r in records)
    ax = Figure().subplots()
    draw_losses(ax, records, [], "throwaway loss")
    twin_labels = [line.get_label() for other in ax.figure.axes if other is not ax
                   for line in other.get_lines()]
    assert twin_labels == ["rmid penalty: E|grad D|^2"]
