"""Metrics against scikit-learn, protocol splits without leaks, fusion rules."""

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from vaelab.data.protocols import leave_one_class_out, one_vs_rest
from vaelab.detectors import FusionDetector, RawDetector, fuse
from vaelab.evaluation import auroc, auroc_by_group, average_precision, bootstrap


def test_auroc_matches_scikit_learn_with_ties():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 500)
    score = np.round(rng.normal(size=500) - y, 1)  # anomalies lower, many ties
    assert auroc(y, score) == pytest.approx(roc_auc_score(y, -score), abs=1e-12)
    assert auroc([0, 0, 1, 1], [4, 3, 2, 1]) == 1.0 and auroc([0, 1], [1, 1]) == 0.5
    assert 0 < average_precision(y, score) <= 1
    with pytest.raises(ValueError):
        auroc([0, 0], [1, 2])


def test_auroc_by_group_splits_the_anomalies_and_keeps_every_normal():
    is_anomaly = np.array([0, 0, 0, 1, 1, 1, 1])
    known = np.array([0, 0, 0, 1, 1, 0, 0], dtype=bool)
    score = np.array([5.0, 4.0, 3.0, 0.0, 1.0, 4.5, 2.0])  # known anomalies lowest; one novel one looks normal
    out = auroc_by_group("m2", is_anomaly, known, score)
    assert out["m2_known"] == 1.0
    assert out["m2_novel"] == pytest.approx(auroc([0, 0, 0, 1, 1], [5.0, 4.0, 3.0, 4.5, 2.0]))
    assert out["m2"] == pytest.approx(auroc(is_anomaly, score)) and out["m2_novel"] < out["m2"] < 1


def test_bootstrap_interval_contains_the_value():
    rng = np.random.default_rng(1)
    y = np.r_[np.zeros(300), np.ones(60)]
    score = rng.normal(size=360) - 1.5 * y
    ci = bootstrap(auroc, y, score, n_boot=300)
    assert ci.low < ci.value < ci.high and ci.high - ci.low < 0.2


def _labelled():
    rng = np.random.default_rng(2)
    y_train, y_test = rng.integers(0, 10, 1000), rng.integers(0, 10, 300)
    return rng.random((1000, 4)), y_train, rng.random((300, 4)), y_test


def test_protocols_keep_anomalies_out_of_training():
    x, y, xt, yt = _labelled()
    loco = leave_one_class_out(x, y, xt, yt, anomaly_class=3)
    assert len(loco.x_train) == (y != 3).sum() and loco.train_polluted.sum() == 0
    assert np.array_equal(loco.is_anomaly, (yt == 3).astype(int))
    assert not any((row == x[y == 3]).all(1).any() for row in loco.x_train)
    ovr = one_vs_rest(x, y, xt, yt, normal_class=7)
    assert len(ovr.x_train) == (y == 7).sum() and np.array_equal(ovr.is_anomaly, (yt != 7).astype(int))


def test_pollution_adds_the_asked_fraction_of_anomalies():
    x, y, xt, yt = _labelled()
    split = one_vs_rest(x, y, xt, yt, normal_class=7, pollution=0.1, seed=0)
    assert split.train_polluted.mean() == pytest.approx(0.1, abs=0.01)
    polluted_rows = split.x_train[split.train_polluted == 1]
    assert all((row == x[y != 7]).all(1).any() for row in polluted_rows)


def test_fisher_fusion_lets_one_extreme_part_flag_a_row():
    reference = [np.arange(100.0), np.arange(100.0)]
    one_extreme, two_moderate = [-1.0, 99.0], [30.0, 30.0]  # (p = 1/101, 1) and (p = 32/101 twice)
    scores = [np.array([one_extreme[i], two_moderate[i]]) for i in range(2)]
    rank, fisher = fuse(scores, reference, "rank"), fuse(scores, reference, "fisher")
    assert rank[0] > rank[1] and fisher[0] < fisher[1]
    assert fisher[1] == pytest.approx(2 * np.log(32 / 101))


@pytest.mark.parametrize("rule", ["rank", "fisher", "zsum"])
def test_fusion_combines_and_keeps_the_sign(rule):
    rng = np.random.default_rng(3)
    train = rng.normal(size=(400, 5))
    test = np.vstack([rng.normal(size=(100, 5)), rng.normal(size=(20, 5)) + 4])
    y = np.r_[np.zeros(100), np.ones(20)]
    fusion = FusionDetector((RawDetector("gmm", pca_components=None), RawDetector("iforest", pca_components=None)),
                            rule=rule).fit(train)
    assert len(fusion.detectors_) == 2 and auroc(y, fusion.score_samples(test)) > 0.95
