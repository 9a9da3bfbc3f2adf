"""Metrics against scikit-learn, AUROC by anomaly group, intervals, and M2's conditional agreement."""

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from vaelab.config import ModelConfig
from vaelab.evaluation import auroc, auroc_by_group, average_precision, bootstrap
from vaelab.models import build_model


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


@pytest.fixture
def m2():
    torch.manual_seed(0)
    return build_model(ModelConfig(name="m2", latent_dim=3, hidden_dims=(16,), n_classes=4, logvar_min=-80.0), 12, "bernoulli")


def test_conditional_agreement_is_chance_when_the_decoder_ignores_the_class(m2):
    from vaelab.evaluation import conditional_agreement

    with torch.no_grad():
        m2.cvae.decoder[0].weight[:, m2.config.latent_dim:] = 0.0  # p(x|y,z) = p(x|z)
    assert conditional_agreement(m2, per_class=25) == pytest.approx(1 / m2.n_classes)
    # a judge that recognises every row as what it was asked to draw
    assert conditional_agreement(m2, per_class=5, judge=lambda x: np.repeat(np.arange(len(x) // 5), 5)) == 1.0
