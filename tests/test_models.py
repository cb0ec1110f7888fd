"""The DCGAN networks: shapes, parameter counts of the seed design, DCGAN weight init."""

import torch
from torch import nn

from animegan_ignite.networks.models import Discriminator, Generator, count_parameters, dcgan_weights_init


def test_default_parameter_counts_match_the_seed_design():
    assert count_parameters(Generator()) == 3_576_704
    assert count_parameters(Discriminator()) == 2_765_568


def test_generator_draws_64x64_rgb_in_tanh_range():
    g = Generator(nz=100, ngf=8)
    out = g(torch.randn(5, 100, 1, 1))
    assert out.shape == (5, 3, 64, 64)
    assert out.min() >= -1 and out.max() <= 1


def test_discriminator_returns_one_logit_per_image():
    d = Discriminator(ndf=8)
    out = d(torch.randn(5, 3, 64, 64))
    assert out.shape == (5,)
    assert not isinstance(d.main[-1], nn.Sigmoid)  # the Sigmoid lives in BCEWithLogitsLoss


def test_widths_and_latent_size_are_configurable():
    g, d = Generator(nz=16, ngf=4), Discriminator(ndf=4)
    assert g(torch.randn(2, 16, 1, 1)).shape == (2, 3, 64, 64)
    assert count_parameters(g) < count_parameters(Generator(nz=16, ngf=8))
    assert count_parameters(d) < count_parameters(Discriminator(ndf=8))


def test_dcgan_weight_init_statistics():
    torch.manual_seed(0)
    g, d = Generator(), Discriminator()
    for net in (g, d):
        net.apply(dcgan_weights_init)
        convs = [m.weight for m in net.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
        w = torch.cat([c.flatten() for c in convs])
        assert abs(w.mean().item()) < 1e-3
        assert abs(w.std().item() - 0.02) < 1e-3
        bns = [m for m in net.modules() if isinstance(m, nn.BatchNorm2d)]
        gamma = torch.cat([b.weight.flatten() for b in bns])
        assert abs(gamma.mean().item() - 1.0) < 5e-3
        assert abs(gamma.std().item() - 0.02) < 5e-3
        assert all(torch.count_nonzero(b.bias) == 0 for b in bns)
