"""The training step, on real image files."""

import math

import torch

from animegan_ignite.data.loading import make_split, make_train_loader
from animegan_ignite.networks.architecture import Architecture
from animegan_ignite.networks.gan import build_gan, make_training_step


def _tiny_gan():
    torch.manual_seed(0)
    return build_gan(Architecture(16, 8, 8), lr=2e-4, beta1=0.5, device=torch.device("cpu"))


def _loader(image_dir, batch=8):
    split = make_split(str(image_dir), eval_size=16, batch_size=batch, seed=0)
    return make_train_loader(split.train, batch, num_workers=0, seed=0)


def test_one_step_updates_both_networks_and_returns_finite_outputs(image_dir):
    gan = _tiny_gan()
    before_g = [p.clone() for p in gan.netG.parameters()]
    before_d = [p.clone() for p in gan.netD.parameters()]
    batch = next(iter(_loader(image_dir)))
    out = make_training_step(gan)(None, batch)
    assert set(out) == {"loss_d", "loss_g", "d_x", "d_g_z1", "d_g_z2", "d_real_sign", "d_real_logit",
                        "d_fake_logit"}
    assert all(math.isfinite(v) for v in out.values())
    assert all(0 <= out[k] <= 1 for k in ("d_x", "d_g_z1", "d_g_z2"))
    assert any(not torch.equal(a, b) for a, b in zip(before_g, gan.netG.parameters(), strict=True))
    assert any(not torch.equal(a, b) for a, b in zip(before_d, gan.netD.parameters(), strict=True))


def test_each_step_draws_fresh_noise(image_dir):
    gan = _tiny_gan()
    step = make_training_step(gan)
    batch = next(iter(_loader(image_dir)))
    states = []
    for _ in range(3):
        states.append(torch.get_rng_state())
        step(None, batch)
    assert not torch.equal(states[0], states[1]) and not torch.equal(states[1], states[2])
