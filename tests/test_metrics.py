"""FID and IS math against independent references on the same features and logits:
a float64 numpy/scipy FID, torchmetrics' FrechetInceptionDistance and InceptionScore."""

import numpy as np
import pytest
import scipy.linalg
import torch
from torch import nn
from torchmetrics.image.fid import FrechetInceptionDistance
from torchmetrics.image.inception import InceptionScore

from animegan_ignite.metrics import FeatureStats, fid_from_features, fid_from_stats, inception_score


def scipy_fid(x: np.ndarray, y: np.ndarray) -> float:
    """The pytorch-fid reference: scipy sqrtm with the small-eps retry."""
    mu1, mu2 = x.mean(0), y.mean(0)
    s1, s2 = np.cov(x, rowvar=False), np.cov(y, rowvar=False)
    covmean = scipy.linalg.sqrtm(s1 @ s2)
    if not np.isfinite(covmean).all():
        offset = np.eye(s1.shape[0]) * 1e-6
        covmean = scipy.linalg.sqrtm((s1 + offset) @ (s2 + offset))
    covmean = covmean.real
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


class FeaturesIn(nn.Module):
    """Lets torchmetrics take feature (or logit) rows directly as its "images"."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.num_features = dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


def _features(n=600, d=64, seed=0, shift=0.0, scale=1.0):
    g = torch.Generator().manual_seed(seed)
    mix = torch.randn(d, d, generator=g) / d**0.5  # correlated features, like Inception's
    return (torch.randn(n, d, generator=g) @ mix) * scale + shift


def _stats(x: torch.Tensor):
    s = FeatureStats.empty(x.shape[1])
    for chunk in x.split(97):  # batches of uneven size
        s.update(chunk)
    return s.mean_cov()


def test_feature_stats_equal_numpy_mean_and_cov():
    x = _features(n=500, d=32)
    mu, cov = _stats(x)
    ref = x.double().numpy()
    np.testing.assert_allclose(mu, ref.mean(0), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(cov, np.cov(ref, rowvar=False), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("shift, scale", [(0.3, 1.0), (0.0, 1.5), (1.0, 0.7)])
def test_fid_equals_scipy_reference_and_torchmetrics(shift, scale):
    real, fake = _features(seed=1), _features(seed=2, shift=shift, scale=scale)
    ours = fid_from_stats(*_stats(fake), *_stats(real))
    reference = scipy_fid(fake.double().numpy(), real.double().numpy())
    tm = FrechetInceptionDistance(feature=FeaturesIn(real.shape[1]))
    tm.update(real, real=True)
    tm.update(fake, real=False)
    assert ours == pytest.approx(reference, rel=1e-6)
    assert ours == pytest.approx(float(tm.compute()), rel=1e-6)
    assert ours > 0.1


@pytest.mark.slow
def test_fid_with_2048_singular_covariances_matches_scipy():
    # fewer samples than features: rank-deficient covariances, as in small evaluations
    real, fake = _features(n=1000, d=2048, seed=3), _features(n=1000, d=2048, seed=4, shift=0.05)
    ours = fid_from_stats(*_stats(fake), *_stats(real))
    assert ours == pytest.approx(scipy_fid(fake.double().numpy(), real.double().numpy()), rel=1e-6)


def test_fid_of_a_set_with_itself_is_zero():
    x = _features(seed=5)
    mu, cov = _stats(x)
    assert fid_from_stats(mu, cov, mu, cov) == pytest.approx(0.0, abs=1e-9)


def test_inception_score_equals_torchmetrics_on_the_same_logits():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(1000, 1008, generator=g, dtype=torch.float64) * 3
    tm = InceptionScore(feature=FeaturesIn(1008), splits=10)
    tm.update(logits)
    torch.manual_seed(123)
    tm_mean, tm_std = tm.compute()
    torch.manual_seed(123)  # torchmetrics shuffles the rows before splitting
    perm = torch.randperm(1000)
    mean, std = inception_score(logits[perm], splits=10)
    assert mean == pytest.approx(float(tm_mean), rel=1e-9)
    assert std == pytest.approx(float(tm_std), rel=1e-9)
    assert mean > 1.5


def test_inception_score_bounds():
    confident_and_diverse = torch.eye(100, dtype=torch.float64).repeat(10, 1) * 50
    assert inception_score(confident_and_diverse, splits=10)[0] == pytest.approx(100, rel=1e-6)
    one_class = torch.zeros(100, 10, dtype=torch.float64)
    one_class[:, 3] = 50
    assert inception_score(one_class, splits=10)[0] == pytest.approx(1.0, abs=1e-6)


@pytest.mark.parametrize("n", [5, 40, 63, 64, 65, 200])
def test_fid_from_samples_equals_scipy_below_and_above_the_feature_count(n):
    """Fewer samples than features take the n x n route; it must give the reference's FID."""
    real = _features(n=300, seed=1)
    fake = _features(n=n, seed=2, shift=0.2, scale=1.3)
    mu, sigma = _stats(real)
    assert fid_from_features(fake, mu, sigma) == pytest.approx(
        scipy_fid(fake.double().numpy(), real.double().numpy()), rel=1e-7)
