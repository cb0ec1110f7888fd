"""The score registry (scores.py): a score declared once reaches every reader; the memorisation
score C_T against an independent reference and on inputs built to move it."""

import json
import math

import numpy as np
import pytest
import torch
from helpers import TINY, run_main

from animegan_ignite.evaluation import scores
from animegan_ignite.evaluation.features import RealFeatures
from animegan_ignite.evaluation.metrics import data_copying, kmeans, mann_whitney_z, nearest
from animegan_ignite.evaluation.scores import Field, Score, of_features
from animegan_ignite.runs.history import read_history, split_history


def test_a_score_added_to_the_registry_reaches_record_console_trackers_figure_and_evaluate(
        image_dir, tmp_path, monkeypatch):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from animegan_ignite.evaluation.figures import draw_metrics, draw_truncation_sweep

    def spread(inputs):  # the generated features' mean distance from their centre
        g = inputs.generated.double()
        return {"spread": float((g - g.mean(0)).norm(dim=1).mean())}

    entry = Score("spread", frozenset({"generated"}), (
        Field("spread", "feature spread", ".4f", "higher", panel="Feature spread", headline=True),),
        spread)
    monkeypatch.setitem(scores.SCORES, "spread", entry)
    run = tmp_path / "run"
    r = run_main("train", "--data-dir", image_dir, "--epochs", "1", "--eval-size", "16",
                 "--logger", "tensorboard", "--snapshot-every", "5", "--inception-weights", "pool3",
                 "--best-metric", "spread", "--cache-dir", tmp_path / "cache", "--output-dir", run,
                 *TINY)
    assert r.returncode == 0, r.stderr[-2000:]
    iters, (epoch,) = split_history(read_history(run))
    assert epoch["spread"] > 0
    assert f"feature spread {epoch['spread']:.4f}" in r.stderr  # the console line
    events = EventAccumulator(str(run / "tensorboard")).Reload()
    logged = events.Scalars("epoch/spread")
    assert [e.value for e in logged] == pytest.approx([epoch["spread"]], rel=1e-6)
    # TensorBoard gets every iteration and epoch the history has, and the snapshots
    for tag, records, key in (("train/loss_d", iters, "loss_d"), ("epoch/loss_g", [epoch], "loss_g"),
                              ("epoch/fid", [epoch], "fid")):
        assert [e.step for e in events.Scalars(tag)] == [x["iteration"] for x in records]
        assert [e.value for e in events.Scalars(tag)] == pytest.approx([x[key] for x in records],
                                                                       rel=1e-6)
    assert [e.step for e in events.Images("fixed_noise")] == [5, 10]
    titles = [ax.get_title() for ax in draw_metrics([epoch]).axes]
    assert any(t.startswith("Feature spread") for t in titles), titles
    assert len(list((run / "checkpoints").glob("best_checkpoint_*.pt"))) == 1  # --best-metric
    draw_truncation_sweep([{**epoch, "truncation": None}, {**epoch, "truncation": 0.7}],
                          tmp_path / "sweep.png")
    assert (tmp_path / "sweep.png").stat().st_size > 0
    r = run_main("evaluate", "--checkpoint", run, "--inception-weights", "pool3", "--cache-dir",
                 tmp_path / "cache", "--json")
    assert r.returncode == 0, r.stderr[-2000:]
    assert json.loads(r.stdout.strip().splitlines()[-1])["spread"] == pytest.approx(epoch["spread"])
    # the run's own memorisation score and its figure
    assert epoch["memorisation"] is not None and epoch["num_training"] == 104
    assert (run / "plots" / "nearest.png").is_file()


def _reference_ct(gen, held, train, centroids, min_per_cell=5):
    """C_T as Meehan et al. define it, from scikit-learn's nearest neighbours and scipy's
    Mann-Whitney U, cell by cell (the cells: nearest of the given centroids)."""
    from scipy.stats import mannwhitneyu
    from sklearn.neighbors import NearestNeighbors

    nn_train = NearestNeighbors(n_neighbors=1).fit(train)
    nn_cells = NearestNeighbors(n_neighbors=1).fit(centroids)
    gen_d, held_d = nn_train.kneighbors(gen)[0][:, 0], nn_train.kneighbors(held)[0][:, 0]
    gen_c, held_c = nn_cells.kneighbors(gen)[1][:, 0], nn_cells.kneighbors(held)[1][:, 0]
    total, weight = 0.0, 0.0
    for c in range(len(centroids)):
        a, b = gen_d[gen_c == c], held_d[held_c == c]
        if len(a) < min_per_cell or len(b) < min_per_cell:
            continue
        u = mannwhitneyu(a, b).statistic
        z = (u - len(a) * len(b) / 2) / np.sqrt(len(a) * len(b) * (len(a) + len(b) + 1) / 12)
        total, weight = total + len(b) * z, weight + len(b)
    return total / weight


def _blobs(n, seed, shift=0.0, d=16):
    g = torch.Generator().manual_seed(seed)
    centres = torch.tensor([[4.0] * d, [-4.0] * d, [0.0] * d], dtype=torch.float64)
    return centres[torch.randint(3, (n,), generator=g)] + torch.randn(n, d, generator=g,
                                                                      dtype=torch.float64) + shift


def test_c_t_equals_the_mann_whitney_reference_cell_by_cell():
    train, held, gen = _blobs(300, 1), _blobs(250, 2), _blobs(200, 3, shift=0.3)
    centroids = kmeans(train, 3)
    gen_d, held_d = nearest(gen, train)[0][:, 0], nearest(held, train)[0][:, 0]
    gen_c, held_c = nearest(gen, centroids)[1][:, 0], nearest(held, centroids)[1][:, 0]
    ours = data_copying(gen_d, gen_c, held_d, held_c, 3)
    reference = _reference_ct(gen.numpy(), held.numpy(), train.numpy(), centroids.numpy())
    assert ours == pytest.approx(reference, rel=1e-12)
    assert sorted(torch.bincount(held_c).tolist()) == pytest.approx([83, 83, 83], abs=30)  # 3 blobs
    a, b = torch.tensor([1.0, 2.0, 2.0]), torch.tensor([2.0, 3.0])  # ties count half, as scipy's
    from scipy.stats import mannwhitneyu
    u = mannwhitneyu(a.numpy(), b.numpy()).statistic
    assert mann_whitney_z(a, b) == pytest.approx((u - 3) / np.sqrt(6 * 6 / 12))


def test_c_t_flags_copies_of_training_faces_not_fresh_samples_and_rises_for_distant_ones():
    train, held = RealFeatures(_blobs(300, 1)), RealFeatures(_blobs(300, 2))
    copies = of_features(train.features[:300], held, train)["memorisation"]
    near_copies = of_features(train.features + 0.05, held, train)["memorisation"]
    fresh = of_features(_blobs(300, 3), held, train)["memorisation"]
    distant = of_features(_blobs(300, 4, shift=1.0), held, train)["memorisation"]
    print(f"copies {copies:.1f}, near copies {near_copies:.1f}, fresh {fresh:.2f}, far {distant:.1f}")
    assert copies <= near_copies < scores.COPYING_Z and copies < -10
    assert abs(fresh) < 2.5 and distant > 5
    assert "copies training faces" in scores.score_line({"memorisation": copies})
    assert scores.copying_warning({"memorisation": copies, "epoch": 3}).startswith(
        "the generator copies training faces at epoch 3")
    assert scores.copying_warning({"memorisation": fresh}) is None


def test_a_score_whose_inputs_are_missing_is_null_with_the_reason():
    real = RealFeatures(_blobs(40, 1))
    out = of_features(_blobs(40, 2), real)  # no training faces, no logits
    assert out["memorisation"] is None and "training faces" in out["unavailable"]["memorisation"]
    assert out["is_mean"] is None and "classifier" in out["unavailable"]["is"]
    assert out["fid"] > 0 and out["kid"] is not None
    assert set(scores.tracked_keys()) <= set(out)


def test_best_metric_takes_any_headline_score_and_its_direction_from_the_registry(tmp_path):
    from animegan_ignite.training.handlers import best_score

    assert best_score({"precision": 0.5}, "precision") > best_score({"precision": 0.3}, "precision")
    assert best_score({"fid": 10.0}, "fid") > best_score({"fid": 20.0}, "fid")
    assert best_score({"fid": float("nan")}, "fid") == best_score({}, "fid") == -math.inf
    assert set(scores.ranking_fields()) >= {"fid", "kid", "precision", "recall", "diversity"}
    r = run_main("train", "--best-metric", "vendi_real", "--output-dir", tmp_path / "run", *TINY)
    assert r.returncode == 2 and "error: --best-metric vendi_real" in r.stderr
    assert "fid, kid, precision" in r.stderr and not (tmp_path / "run").exists()
