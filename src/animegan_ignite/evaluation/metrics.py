"""The math of every score, in float64: FID, IS, KID, precision/recall/density/coverage, Vendi.

- FID (Heusel et al., 2017): ``||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2))``. The trace of
  the matrix square root is computed by the eigen-decomposition route: with ``A = S1^(1/2)``
  (symmetric, from ``eigh``), ``S1 S2`` is similar to the symmetric PSD matrix ``A S2 A``, so
  ``Tr (S1 S2)^(1/2) = sum sqrt(eig(A S2 A))``. This equals scipy's ``sqrtm`` route to float64
  rounding, is faster at 2048 features, and never produces complex values.
  With fewer samples than features (a 128-image demo evaluation), the covariance of the
  samples has rank below its size, and the non-zero eigenvalues of ``S1 S2`` are those of the
  small matrix ``X S2 X^T / (n - 1)`` (``X`` the centred samples): :func:`fid_from_features`
  takes that route, the same number from an n x n instead of a 2048 x 2048 eigenproblem.
- IS (Salimans et al., 2016): ``exp(E_x KL(p(y|x) || p(y)))`` per split; mean and std over splits.

- KID (Bińkowski et al., 2018): the unbiased MMD² with the kernel ``(x.y / d + 1)^3``, mean and
  std over 100 random subsets of up to 1,000 images of each set (torch-fidelity's defaults and
  subset draws, rng seed 2020). The three kernel matrices are computed once and every subset's
  sums read from them, instead of three kernel products per subset.
- Precision, recall, density and coverage (Kynkäänniemi et al., 2019; Naeem et al., 2020): k-NN
  balls (k = 3) around each real and each fake feature vector, as ``prdc`` computes them.
  Precision: the share of fakes inside some real ball (fidelity); recall: the share of reals
  inside some fake ball (diversity).
- Vendi score (Friedman & Dieng, 2023): ``exp`` of the entropy of the eigenvalues of ``K / n``,
  ``K`` the cosine-similarity matrix of the samples: the effective number of distinct samples.

FID's statistics are count, sum and sum of outer products, which add exactly across batches.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .. import seeds

KID_SUBSETS, KID_SUBSET_SIZE, KID_SEED = 100, 1000, seeds.KID_SUBSETS
NEAREST_K = 3


@dataclass
class FeatureStats:
    """Running sufficient statistics of feature vectors, in float64."""

    n: int
    total: torch.Tensor  # (D,)
    outer: torch.Tensor  # (D, D), sum of x x^T

    @classmethod
    def empty(cls, dim: int, device: torch.device | str = "cpu") -> FeatureStats:
        return cls(0, torch.zeros(dim, dtype=torch.float64, device=device),
                   torch.zeros(dim, dim, dtype=torch.float64, device=device))

    @classmethod
    def of(cls, features: torch.Tensor) -> FeatureStats:
        stats = cls.empty(features.shape[1], features.device)
        stats.update(features)
        return stats

    def update(self, features: torch.Tensor) -> None:
        f = features.to(self.total.device, torch.float64)
        self.n += f.shape[0]
        self.total += f.sum(0)
        self.outer += f.T @ f

    def mean_cov(self) -> tuple[np.ndarray, np.ndarray]:
        """The mean and the unbiased covariance (as ``np.cov``), as float64 numpy arrays."""
        if self.n < 2:
            raise ValueError(f"need at least 2 feature vectors for a covariance, got {self.n}")
        mu = self.total / self.n
        cov = (self.outer - self.n * torch.outer(mu, mu)) / (self.n - 1)
        return mu.cpu().numpy(), cov.cpu().numpy()


def _sqrt_psd(matrix: np.ndarray) -> np.ndarray:
    """Symmetric square root of a symmetric PSD matrix (tiny negative eigenvalues from
    rounding are clipped to 0)."""
    w, v = np.linalg.eigh(matrix)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def trace_sqrt_product(sigma1: np.ndarray, sigma2: np.ndarray) -> float:
    """``Tr((sigma1 @ sigma2) ^ (1/2))`` for symmetric PSD ``sigma1``, ``sigma2``."""
    a = _sqrt_psd(sigma1)
    m = a @ sigma2 @ a
    eig = np.linalg.eigvalsh((m + m.T) / 2)
    return float(np.sqrt(np.clip(eig, 0, None)).sum())


def fid_from_stats(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray,
                   sigma2: np.ndarray) -> float:
    """Frechet distance between N(mu1, sigma1) and N(mu2, sigma2), in float64."""
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    sigma1, sigma2 = np.asarray(sigma1, np.float64), np.asarray(sigma2, np.float64)
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape:
        raise ValueError(f"shape mismatch: {mu1.shape}/{sigma1.shape} vs {mu2.shape}/{sigma2.shape}")
    diff = mu1 - mu2
    value = diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * trace_sqrt_product(sigma1, sigma2)
    return float(max(value, 0.0))  # rounding can leave -1e-12 for identical sets


def fid_from_features(features: torch.Tensor, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """FID between the samples ``features`` (N, D) and N(mu2, sigma2), in float64; with N <= D
    through the N x N eigenproblem (see the module docstring)."""
    x = features.detach().cpu().to(torch.float64).numpy()
    n, dim = x.shape
    if n > dim:
        return fid_from_stats(*FeatureStats.of(features.cpu()).mean_cov(), mu2, sigma2)
    if n < 2:
        raise ValueError(f"need at least 2 feature vectors for a covariance, got {n}")
    mu1 = x.mean(axis=0)
    centred = x - mu1
    small = centred @ np.asarray(sigma2, np.float64) @ centred.T / (n - 1)
    eig = np.linalg.eigvalsh((small + small.T) / 2)
    diff = mu1 - np.asarray(mu2, np.float64)
    trace1 = float((centred * centred).sum()) / (n - 1)
    value = diff @ diff + trace1 + np.trace(sigma2) - 2 * np.sqrt(np.clip(eig, 0, None)).sum()
    return float(max(value, 0.0))


def inception_score(logits: torch.Tensor, splits: int = 10) -> tuple[float, float]:
    """IS of classifier logits ``(N, C)``: mean and (unbiased) std over ``splits`` consecutive
    chunks, like torchmetrics' ``InceptionScore`` (which first shuffles the rows)."""
    if logits.shape[0] < splits:
        raise ValueError(f"need at least {splits} images for {splits} IS splits, got {logits.shape[0]}")
    logits = logits.to(torch.float64)
    prob, log_prob = logits.softmax(dim=1), logits.log_softmax(dim=1)
    scores = []
    for p, log_p in zip(prob.chunk(splits), log_prob.chunk(splits), strict=True):
        p_y = p.mean(dim=0, keepdim=True)
        scores.append((p * (log_p - p_y.log())).sum(dim=1).mean().exp())
    s = torch.stack(scores)
    return float(s.mean()), float(s.std()) if len(scores) > 1 else 0.0


def _poly_kernel(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return (x @ y.T / x.shape[1] + 1) ** 3


def kid(fake: torch.Tensor, real: torch.Tensor, real_kernel: torch.Tensor | None = None,
        subsets: int = KID_SUBSETS, subset_size: int = KID_SUBSET_SIZE, seed: int = KID_SEED
        ) -> tuple[float, float]:
    """KID of features ``fake`` (N, D) against ``real`` (M, D): mean and std of the unbiased MMD²
    over ``subsets`` subsets of ``min(subset_size, N, M)`` rows of each. ``real_kernel``: the
    real features' kernel matrix, when a caller keeps it across evaluations."""
    fake, real = fake.to(torch.float64), real.to(torch.float64)
    n, m = len(fake), len(real)
    size = min(subset_size, n, m)
    if size < 2:
        raise ValueError(f"KID needs at least 2 images on each side, got {n} and {m}")
    rng = np.random.RandomState(seed)
    w_fake = np.zeros((n, subsets))
    w_real = np.zeros((m, subsets))
    for i in range(subsets):  # torch-fidelity's draws, in its order
        w_fake[rng.choice(n, size, replace=False), i] = 1
        w_real[rng.choice(m, size, replace=False), i] = 1
    w_fake = torch.as_tensor(w_fake, device=fake.device)
    w_real = torch.as_tensor(w_real, device=fake.device)
    k_real = _poly_kernel(real, real) if real_kernel is None else real_kernel.to(fake.device)
    k_fake, k_cross = _poly_kernel(fake, fake), _poly_kernel(fake, real)

    def within(k: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        """Each subset's sum of kernel values over pairs of distinct rows."""
        return ((k @ w) * w).sum(0) - k.diagonal() @ w

    mmd = ((within(k_fake, w_fake) + within(k_real, w_real)) / (size * (size - 1))
           - 2 * ((k_cross @ w_real) * w_fake).sum(0) / size**2)
    return float(mmd.mean()), float(mmd.std(unbiased=False))


def kid_real_kernel(real: torch.Tensor) -> torch.Tensor:
    return _poly_kernel(real.to(torch.float64), real.to(torch.float64))


def _distances(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Euclidean distances as scikit-learn computes them (prdc's): from squared norms and dot
    products in float64, a set's distance to itself exactly 0."""
    d2 = (x * x).sum(1)[:, None] - 2 * x @ y.T + (y * y).sum(1)[None, :]
    d = d2.clamp_(min=0).sqrt_()
    if x is y:
        d.fill_diagonal_(0)
    return d


def knn_radii(x: torch.Tensor, k: int = NEAREST_K) -> torch.Tensor:
    """Each row's distance to its k-th nearest other row."""
    x = x.to(torch.float64)
    return torch.kthvalue(_distances(x, x), k + 1, dim=1).values


def prdc(real: torch.Tensor, fake: torch.Tensor, k: int = NEAREST_K,
         real_radii: torch.Tensor | None = None) -> dict[str, float]:
    """Precision, recall, density and coverage of ``fake`` against ``real`` (prdc's rules,
    strict inequalities). ``real_radii``: :func:`knn_radii` of ``real``, when kept."""
    if min(len(real), len(fake)) <= k:
        raise ValueError(f"precision/recall need more than k = {k} images on each side, got "
                         f"{len(real)} real and {len(fake)} generated")
    real, fake = real.to(torch.float64), fake.to(torch.float64)
    real_radii = knn_radii(real, k) if real_radii is None else real_radii.to(real.device)
    d = _distances(real, fake)  # (real, fake)
    in_real_balls = d < real_radii[:, None]
    return {"precision": float(in_real_balls.any(0).double().mean()),
            "recall": float((d < knn_radii(fake, k)[None, :]).any(1).double().mean()),
            "density": float((1.0 / k) * in_real_balls.sum(0).double().mean()),
            "coverage": float((d.min(1).values < real_radii).double().mean())}


def vendi(features: torch.Tensor) -> float:
    """The Vendi score of the rows of ``features`` with the cosine-similarity kernel, from the
    smaller of the n x n and d x d Gram matrices (their non-zero eigenvalues are the same)."""
    x = F.normalize(features.to(torch.float64), dim=1)
    n, d = x.shape
    if n < 2:
        raise ValueError(f"a diversity score needs at least 2 images, got {n}")
    gram = (x.T @ x if n > d else x @ x.T) / n
    w = torch.linalg.eigvalsh(gram)
    w = w[w > 0]
    return float(torch.exp(-(w * w.log()).sum()))


# --- memorisation: the data-copying test C_T (Meehan, Chaudhuri & Dasgupta, AISTATS 2020) ---------
# Generated faces that copy training faces lie closer to them than new real faces do. C_T compares,
# cell by cell of a k-means partition of the training faces, each generated face's distance to its
# nearest training face with the held-out faces' own nearest-training distances (a Mann-Whitney U
# test, as a z-score), and averages the cells' z-scores weighted by their share of held-out faces.
CT_FACES_PER_CELL, CT_MAX_CELLS, CT_MIN_PER_CELL, CT_SEED = 100, 10, 5, seeds.CT_CELLS


def nearest(x: torch.Tensor, y: torch.Tensor, k: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Each row of ``x``'s ``k`` nearest rows of ``y`` (Euclidean, float64): distances and
    indices, nearest first, shape (len(x), k)."""
    d = _distances(x.to(torch.float64), y.to(torch.float64))
    found = torch.topk(d, k, dim=1, largest=False)
    return found.values, found.indices


def ct_cells(n_held_out: int) -> int:
    """How many cells C_T partitions the training faces into: one per ``CT_FACES_PER_CELL``
    held-out faces, so each cell's test has enough of them, at most ``CT_MAX_CELLS``."""
    return max(1, min(CT_MAX_CELLS, n_held_out // CT_FACES_PER_CELL))


def kmeans(x: torch.Tensor, k: int, seed: int = CT_SEED, iterations: int = 25) -> torch.Tensor:
    """``k`` centroids of the rows of ``x`` (k-means++ seeding from ``seed``, then Lloyd's
    iterations), in float64; deterministic."""
    x = x.to(torch.float64)
    gen = torch.Generator().manual_seed(seed)
    centroids = x[torch.randint(len(x), (1,), generator=gen)]
    while len(centroids) < k:
        d2 = _distances(x, centroids).min(1).values ** 2
        if d2.sum() == 0:  # fewer distinct rows than cells
            break
        centroids = torch.cat([centroids, x[torch.multinomial(d2, 1, generator=gen)]])
    for _ in range(iterations):
        cell = _distances(x, centroids).argmin(1)
        moved = torch.stack([x[cell == c].mean(0) if (cell == c).any() else centroids[c]
                             for c in range(len(centroids))])
        if torch.equal(moved, centroids):
            break
        centroids = moved
    return centroids


def mann_whitney_z(a: torch.Tensor, b: torch.Tensor) -> float:
    """The Mann-Whitney U statistic of ``a`` against ``b`` (pairs with a > b, ties counted
    half, as scipy's ``mannwhitneyu``) as a z-score under the null of one distribution:
    negative when ``a`` tends to be smaller."""
    m, n = len(a), len(b)
    u = (a[:, None] > b[None, :]).sum().item() + 0.5 * (a[:, None] == b[None, :]).sum().item()
    return (u - m * n / 2) / math.sqrt(m * n * (m + n + 1) / 12)


def data_copying(generated_d: torch.Tensor, generated_cell: torch.Tensor, held_out_d: torch.Tensor,
                 held_out_cell: torch.Tensor, cells: int, min_per_cell: int = CT_MIN_PER_CELL
                 ) -> float:
    """C_T from each face's distance to its nearest training face and its cell: the cells'
    z-scores of generated against held-out distances, weighted by their share of held-out faces,
    over the cells holding at least ``min_per_cell`` faces of each. Far below 0: generated faces
    copy training faces; about 0: they lie as far from them as new real faces; above 0: farther."""
    used = [c for c in range(cells) if (generated_cell == c).sum() >= min_per_cell
            and (held_out_cell == c).sum() >= min_per_cell]
    if not used:
        raise ValueError(f"C_T needs a cell of the training faces holding at least {min_per_cell} "
                         "generated and held-out faces each; more images are needed")
    weights = torch.tensor([float((held_out_cell == c).sum()) for c in used], dtype=torch.float64)
    z = torch.tensor([mann_whitney_z(generated_d[generated_cell == c], held_out_d[held_out_cell == c])
                      for c in used], dtype=torch.float64)
    return float((weights * z).sum() / weights.sum())
