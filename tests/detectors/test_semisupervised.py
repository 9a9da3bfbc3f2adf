"""The semi-supervised detector uses its few anomaly labels."""

import numpy as np
import pytest


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
