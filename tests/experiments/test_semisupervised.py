"""Semi-supervised experiments: the label curve's groups, M1's active units, a classification run."""

import numpy as np
import pytest

from vaelab.config import ModelConfig
from vaelab.experiments.semisupervised import curve_groups, m1_features
from vaelab.experiments.units import Unit, UnitStore
from vaelab.models import VAE, save_model
from vaelab.runtime import seeded_init


def test_curve_groups_average_the_detector_and_the_baseline_over_curves():
    curve = lambda v: {"m2": [v, v + 0.1], "m2_known": [v, v], "m2_novel": [v, v],  # noqa: E731
                       "unsupervised": v, "unsupervised_known": v, "unsupervised_novel": v}
    lines, base = curve_groups([curve(0.5), curve(0.7)])
    assert lines["M2, all test anomalies"] == pytest.approx([0.6, 0.7])
    assert base["vae-iwae, all test anomalies"] == pytest.approx(0.6) and len(lines) == len(base) == 3


def test_m1_features_keep_the_active_units(tmp_path):
    with seeded_init(0):  # not the global generator's state, which depends on the tests before this one
        vae = VAE(6, ModelConfig(latent_dim=3, hidden_dims=(4,)), "bernoulli")
    with __import__("torch").no_grad():
        vae.enc_mean.weight[1] = 0.0  # unit 1 ignores its input: inactive
    save_model(tmp_path / "m1.safetensors", vae, {})
    x = np.random.default_rng(0).random((50, 6)).astype(np.float32)
    codes = m1_features(str(tmp_path / "m1.safetensors"), x, x[:5], 1e-6)
    assert codes.n_active == 2 and codes.train.shape == codes.train_sd.shape == (50, 2)
    assert codes.test.shape == (5, 2) and (codes.train_sd > 0).all()
    with __import__("torch").no_grad():
        mean, logvar = vae.encode(__import__("torch").from_numpy(x))
    kept = [0, 2]
    assert np.allclose(codes.train, mean[:, kept].numpy(), atol=1e-6)
    assert np.allclose(codes.train_sd, (0.5 * logvar[:, kept]).exp().numpy(), atol=1e-6)


def test_a_classification_run_is_a_unit_with_its_error_and_weights(tmp_path):
    unit = Unit("m2-20-seed0", "vaelab.experiments.semisupervised:run_classifier",
                {"config": {"data": {"name": "mnist5k", "train_limit": 300}}, "labels": 20, "seed": 0,
                 "model": {"name": "m2", "latent_dim": 2, "hidden_dims": [16], "n_classes": 10}, "epochs": 1,
                 "likelihood": "bernoulli", "binarize": True, "m1": None}, outputs=("m2-20-seed0.safetensors",))
    result = UnitStore(tmp_path).run(unit)
    assert 0 <= result["error"] <= 100 and (tmp_path / "m2-20-seed0.safetensors").exists()


def test_labelled_raw_baselines_flag_a_class_they_were_not_given():
    from vaelab.evaluation import auroc
    from vaelab.experiments.semisupervised import labelled_raw_scores

    rng = np.random.default_rng(2)
    centres = np.eye(6)[:4] * 4
    x = np.vstack([rng.normal(size=(150, 6)) + c for c in centres[:3]])
    y = np.repeat(np.arange(3), 150)
    test = np.vstack([rng.normal(size=(60, 6)) + c for c in centres])
    is_anomaly = np.r_[np.zeros(180), np.ones(60)]
    scores = labelled_raw_scores(x, y, test, pca_components=5, hidden=16, epochs=30, seed=0)
    assert set(scores) == {"raw-classifier", "raw-mahalanobis"}
    assert auroc(is_anomaly, scores["raw-mahalanobis"]) > 0.95 and auroc(is_anomaly, scores["raw-classifier"]) > 0.7
