"""The semi-supervised detector uses its few anomaly labels."""

import numpy as np
import pytest

from tests.conftest import cluster_purity


def test_semi_supervised_detector_uses_its_few_anomaly_labels():
    from vaelab.detectors import SemiSupervisedDetector
    from vaelab.evaluation import auroc

    rng = np.random.default_rng(0)
    normal = rng.normal(size=(500, 6))
    known = rng.normal(size=(20, 6)) * 0.3 + np.array([1.6, -1.6, 0, 0, 0, 0])
    x = np.vstack([normal, known])
    y = np.r_[np.full(500, -1), np.ones(20)].astype(int)
    test = np.vstack([rng.normal(size=(200, 6)), rng.normal(size=(40, 6)) * 0.3 + np.array([1.6, -1.6, 0, 0, 0, 0])])
    is_anomaly = np.r_[np.zeros(200), np.ones(40)]
    kw = dict(latent_dim=2, hidden_dims=(32,), epochs=30, batch_size=64)
    with_labels = SemiSupervisedDetector(**kw).fit(x, y)
    without = SemiSupervisedDetector(**kw).fit(normal)
    a_with, a_without = auroc(is_anomaly, with_labels.score_samples(test)), auroc(is_anomaly, without.score_samples(test))
    assert a_with > 0.8 and a_with > a_without + 0.2
    assert with_labels.model_.config.balance == 10.0 and without.model_.config.balance == 0.0  # balance: with labels only
    assert (with_labels.predict(normal) == -1).mean() == pytest.approx(0.1, abs=0.03)
    with pytest.raises(ValueError, match="y must hold"):
        SemiSupervisedDetector(**kw).fit(x, np.full(len(x), 2))




def test_references_leave_out_the_rows_the_classifier_calls_anomalies():
    from vaelab.detectors import SemiSupervisedDetector

    rng = np.random.default_rng(1)
    shift = np.array([2.0, -2.0, 0, 0])
    polluted = np.vstack([rng.normal(size=(300, 4)), rng.normal(size=(30, 4)) * 0.3 + shift])  # 30 unlabelled anomalies
    x = np.vstack([polluted, rng.normal(size=(15, 4)) * 0.3 + shift])
    y = np.r_[np.full(330, -1), np.ones(15)].astype(int)
    kw = dict(latent_dim=2, hidden_dims=(32,), epochs=30, batch_size=64)
    every = SemiSupervisedDetector(references="all", **kw).fit(x, y)
    classified = SemiSupervisedDetector(**kw).fit(x, y)
    assert len(every.references_[0]) == 330 and len(classified.references_[0]) < 330  # the same model otherwise
    assert np.array_equal(every.score_parts(x)["classifier"], classified.score_parts(x)["classifier"])
    with pytest.raises(ValueError, match="references must be one of"):
        SemiSupervisedDetector(references="some", **kw).fit(x, y)


def test_normal_share_is_the_classifiers_normal_calls():
    from vaelab.detectors import SemiSupervisedDetector
    from vaelab.scores import class_probabilities

    rng = np.random.default_rng(0)
    x = np.vstack([rng.normal(0, 1, (200, 4)), rng.normal(6, 1, (20, 4))])
    y = np.r_[np.full(200, -1), np.ones(20, int)]
    det = SemiSupervisedDetector(latent_dim=2, hidden_dims=(16,), epochs=15, batch_size=32).fit(x, y)
    probs = class_probabilities(det.model_, det._prepare(x[:200]))[:, 0]
    assert det.normal_share(x[:200]) == pytest.approx((probs >= 0.5).mean())
    assert det.normal_share(x[:200]) > 0.8 and det.normal_share(x[200:]) < 0.5


def test_the_complexity_correction_takes_the_code_length_out_of_the_likelihood_part(tmp_path):
    from vaelab.detectors import BaseDetector, SemiSupervisedDetector
    from vaelab.detectors.corrections import compression_nats

    rng = np.random.default_rng(2)
    ink = rng.uniform(0.05, 0.6, size=(240, 1))  # images in [0, 1] with more or less ink: varied code lengths
    x = (rng.random((240, 36)) < ink).astype(np.float32)
    y = np.r_[np.full(220, -1), np.ones(20, int)]
    kw = dict(latent_dim=2, hidden_dims=(16,), epochs=5, batch_size=32)
    plain = SemiSupervisedDetector(likelihood_correction="none", **kw).fit(x, y)
    corrected = SemiSupervisedDetector(**kw).fit(x, y)  # the default
    assert plain.slope_ == 0.0 and corrected.slope_ != 0.0
    raw, parts = plain.score_parts(x), corrected.score_parts(x)  # the same model: the correction is after training
    np.testing.assert_allclose(parts["likelihood"],
                               raw["likelihood"] - corrected.slope_ * compression_nats(x, np.zeros(36), np.ones(36)))
    np.testing.assert_array_equal(parts["classifier"], raw["classifier"])
    corrected.save(tmp_path / "m2.safetensors")
    np.testing.assert_allclose(BaseDetector.load(tmp_path / "m2.safetensors").score_samples(x),
                               corrected.score_samples(x), rtol=1e-6)
    with pytest.raises(ValueError, match="likelihood_correction must be one of"):
        SemiSupervisedDetector(likelihood_correction="typicality", **kw).fit(x, y)


def _classes(rng, n_per: int, centres: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x = np.vstack([rng.normal(size=(n_per, centres.shape[1])) * 0.4 + c for c in centres])
    return x, np.repeat(np.arange(len(centres)), n_per)


def _novel_class_task() -> tuple[np.ndarray, ...]:
    """Normal training rows in three classes (x, y), normal test rows (and their classes), and those
    beside a fourth class: (x, y, test_normal, test_y, test, is_anomaly)."""
    rng = np.random.default_rng(1)
    centres = np.array([[3, 0, 0, 0, 0, 0], [0, 3, 0, 0, 0, 0], [0, 0, 3, 0, 0, 0], [2.2, 2.2, 0, 0, 0, 0]], float)
    x, y = _classes(rng, 200, centres[:3])
    test_normal, test_y = _classes(rng, 60, centres[:3])
    novel, _ = _classes(rng, 60, centres[3:])
    return x, y, test_normal, test_y, np.vstack([test_normal, novel]), np.r_[np.zeros(len(test_normal)), np.ones(60)]


def test_class_conditional_detector_flags_a_class_it_was_not_taught(tmp_path):
    """Normal rows in three labelled classes; a fourth class at test time is flagged, better than by
    the same M2 fitted without labels (the two-class detector), and the file round-trips."""
    from vaelab.detectors import BaseDetector, ClassConditionalDetector, SemiSupervisedDetector
    from vaelab.evaluation import auroc

    x, y, test_normal, test_y, test, is_anomaly = _novel_class_task()
    kw = dict(latent_dim=2, hidden_dims=(32,), epochs=30, batch_size=64)
    det = ClassConditionalDetector(**kw).fit(x, y + 5)  # any integer classes
    assert list(det.classes_) == [5, 6, 7] and det.model_.n_classes == 3
    assert (det.predict_class(test_normal) == test_y + 5).mean() > 0.95
    a_labelled = auroc(is_anomaly, det.score_samples(test))
    a_unlabelled = auroc(is_anomaly, SemiSupervisedDetector(**kw).fit(x).score_samples(test))
    assert a_labelled > 0.9 and a_labelled > a_unlabelled
    assert set(det.score_parts(test)) == {"likelihood", "classifier"}
    det.save(tmp_path / "d.safetensors")
    loaded = BaseDetector.load(tmp_path / "d.safetensors")
    np.testing.assert_allclose(loaded.score_samples(test), det.score_samples(test), rtol=1e-6)
    assert np.array_equal(loaded.predict_class(test), det.predict_class(test))
    for bad, message in ((None, "needs y"), (np.zeros(len(x), int), "one class"), (y + 0.5, "one integer class")):
        with pytest.raises(ValueError, match=message):
            ClassConditionalDetector(**kw).fit(x, bad)


def test_class_elbo_takes_one_class_per_row():
    import torch

    from vaelab.config import ModelConfig
    from vaelab.models import build_model
    from vaelab.scores import class_elbo

    torch.manual_seed(0)
    m2 = build_model(ModelConfig(name="m2", latent_dim=2, hidden_dims=(8,), n_classes=3), 5, "gaussian")
    x = np.random.default_rng(0).normal(size=(30, 5)).astype(np.float32)
    labels = np.arange(30) % 3
    per_row = class_elbo(m2, x, labels)
    for c in range(3):
        np.testing.assert_allclose(per_row[labels == c], class_elbo(m2, x, c)[labels == c], rtol=1e-6)


def test_cluster_conditional_detector_finds_the_classes_itself(tmp_path):
    """Normal rows of three unlabelled kinds: m2-clusters finds them as clusters, flags a fourth kind at
    test time about as well as m2-classes given the classes, ignores y, and round-trips its file."""
    from vaelab.detectors import BaseDetector, ClusterConditionalDetector, make_detector
    from vaelab.evaluation import auroc

    x, y, _, _, test, is_anomaly = _novel_class_task()
    kw = dict(latent_dim=2, hidden_dims=(32,), epochs=30, batch_size=64)
    det = ClusterConditionalDetector(cluster_share=0.1, **kw).fit(x)
    assert det.n_clusters_ == 3 and det.model_.n_classes == 3
    found = det.predict_cluster(x)
    assert cluster_purity(y, found) > 0.95
    a_clusters = auroc(is_anomaly, det.score_samples(test))
    a_classes = auroc(is_anomaly, make_detector("m2-classes").set_params(**kw).fit(x, y).score_samples(test))
    assert a_clusters > 0.9 and a_clusters > a_classes - 0.03
    with_y = ClusterConditionalDetector(cluster_share=0.1, **kw).fit(x, np.zeros(len(x), int))
    np.testing.assert_allclose(with_y.score_samples(test), det.score_samples(test), rtol=1e-6)  # y is ignored
    det.save(tmp_path / "d.safetensors")
    loaded = BaseDetector.load(tmp_path / "d.safetensors")
    np.testing.assert_allclose(loaded.score_samples(test), det.score_samples(test), rtol=1e-6)
    assert loaded.n_clusters_ == 3 and np.array_equal(loaded.predict_cluster(test), det.predict_cluster(test))
    for bad, message in (({"cluster_share": 0.5}, "cluster_share must be"), ({"cluster_rows": 1}, "cluster_rows must")):
        with pytest.raises(ValueError, match=message):
            ClusterConditionalDetector(**kw, **bad).fit(x)
