"""FID and IS math against independent references on the same features and logits:
a float64 numpy/scipy FID, torchmetrics' FrechetInceptionDistance and InceptionScore."""

import numpy as np
import pytest
import scipy.linalg
import torch
from torch import nn

from animegan_ignite.evaluation.metrics import (
    FeatureStats,
    fid_from_features,
    fid_from_stats,
    inception_score,
    kid,
    kid_real_kernel,
    knn_radii,
    prdc,
    vendi,
)


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
    from torchmetrics.image.fid import FrechetInceptionDistance  # 1.5 s: only where it is used

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
    from torchmetrics.image.inception import InceptionScore

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


# --- KID, precision/recall/density/coverage, Vendi against their reference libraries -----------


def test_kid_equals_torch_fidelity_on_the_same_features_and_subsets():
    from torch_fidelity.metric_kid import kid_features_to_metric

    fake = _features(n=300, d=64, seed=3, shift=0.1).double()
    real = _features(n=250, d=64, seed=4).double()
    ref = kid_features_to_metric(fake, real, kid_subsets=20, kid_subset_size=100, rng_seed=2020,
                                 kid_kernel="poly", kid_kernel_poly_degree=3,
                                 kid_kernel_poly_gamma=None, kid_kernel_poly_coef0=1, verbose=False)
    mean, std = kid(fake, real, subsets=20, subset_size=100)
    assert mean == pytest.approx(ref["kernel_inception_distance_mean"], rel=1e-6)
    assert std == pytest.approx(ref["kernel_inception_distance_std"], rel=1e-6)
    # the real kernel kept across evaluations gives the same number
    assert kid(fake, real, kid_real_kernel(real), subsets=20, subset_size=100) == (mean, std)


def test_kid_is_near_zero_for_one_distribution_and_grows_with_the_shift():
    x = _features(n=800, seed=5)  # two halves of one distribution
    real, fake = x[:400], x[400:]
    same = abs(kid(fake, real, subsets=20, subset_size=200)[0])
    shifted = [kid(fake + s, real, subsets=20, subset_size=200)[0] for s in (0.2, 0.5)]
    assert same < 0.05 * shifted[0] < shifted[0] < shifted[1]


def test_prdc_equals_the_prdc_package_exactly():
    from prdc import compute_prdc

    real = _features(n=200, d=32, seed=7).double()
    fake = _features(n=150, d=32, seed=8, shift=0.15, scale=0.8).double()
    ref = compute_prdc(real.numpy(), fake.numpy(), nearest_k=3)
    ours = prdc(real, fake, k=3)
    assert ours == {k: float(v) for k, v in ref.items()}
    assert prdc(real, fake, 3, knn_radii(real, 3)) == ours


def test_precision_falls_when_fakes_leave_the_reals_and_recall_when_they_collapse():
    x = _features(n=600, d=32, seed=9)  # two halves of one distribution
    real, fake = x[:300], x[300:]
    good = prdc(real, fake)
    away = prdc(real, fake + 3.0)
    collapsed = prdc(real, fake.mean(0) + 0.05 * (fake - fake.mean(0)))
    assert good["precision"] > 0.6 and good["recall"] > 0.6
    assert away["precision"] < 0.05  # fidelity lost: precision, not recall, says so first
    assert collapsed["recall"] < 0.1 < collapsed["precision"]  # diversity lost


def test_vendi_equals_the_vendi_score_package_and_counts_distinct_samples():
    from vendi_score import vendi as reference

    for n in (50, 100):  # fewer and more samples than features
        x = _features(n=n, d=64, seed=11).double()
        assert vendi(x) == pytest.approx(reference.score_X(x.numpy()), rel=1e-6)
        assert vendi(x) == pytest.approx(reference.score_dual(x.numpy()), rel=1e-6)
    basis = torch.eye(8, 16, dtype=torch.float64)  # 8 orthogonal samples, each repeated 5 times
    assert vendi(basis.repeat(5, 1)) == pytest.approx(8.0)
    assert vendi(basis[:1].repeat(40, 1)) == pytest.approx(1.0)


def test_too_few_samples_are_refused_not_scored():
    x = _features(n=3, d=8)
    for score in (lambda: kid(x[:1], x), lambda: prdc(x, x, k=3), lambda: vendi(x[:1])):
        with pytest.raises(ValueError, match="need"):
            score()


def test_kid_spread_is_null_where_every_subset_is_the_whole_sample():
    from animegan_ignite.evaluation.features import RealFeatures
    from animegan_ignite.evaluation.scores import of_features as scores

    real = _features(n=60, d=16, seed=1)
    equal = scores(_features(n=60, d=16, seed=2), RealFeatures(real))
    assert equal["kid"] is not None and equal["kid_std"] is None
    assert "--eval-size above 1000" in equal["unavailable"]["kid spread"]
    fewer = scores(_features(n=40, d=16, seed=2), RealFeatures(real))  # subsets of 40 of 60 vary
    assert fewer["kid_std"] > 0 and "kid spread" not in fewer["unavailable"]


def test_the_collapse_warning_suggests_diffaugment_only_to_a_run_without_it():
    from animegan_ignite.evaluation.scores import collapse_warning

    record = {"epoch": 3, "diversity": 0.2, "vendi": 1.2, "vendi_real": 6.0, "precision": 0.0,
              "recall": 0.0}
    assert "at epoch 3" in collapse_warning(record) and "DiffAugment" in collapse_warning(record)
    augmented = collapse_warning({**record, "augment_p": 1.0})
    assert "possible mode collapse" in augmented and "DiffAugment" not in augmented
