"""Detectors: the sign convention, thresholds, and detection on data with known anomalies."""

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from vaelab.detectors import LatentDetector, RawDetector, VAEDetector


@pytest.fixture(scope="module")
def blobs():
    """Correlated 8-d Gaussian normals; anomalies off the normals' low-dimensional structure."""
    rng = np.random.default_rng(0)
    basis = rng.normal(size=(2, 8))
    normal = rng.normal(size=(600, 2)) @ basis + 0.1 * rng.normal(size=(600, 8))
    test_normal = rng.normal(size=(200, 2)) @ basis + 0.1 * rng.normal(size=(200, 8))
    anomalies = rng.normal(size=(50, 8)) * 1.5
    x_test = np.vstack([test_normal, anomalies])
    is_anomaly = np.r_[np.zeros(200), np.ones(50)]
    return normal, x_test, is_anomaly


@pytest.mark.parametrize("detector", [
    RawDetector("ocsvm", pca_components=None), RawDetector("iforest", pca_components=None),
    RawDetector("gmm", pca_components=None), RawDetector("kde", pca_components=None),
    RawDetector("pca-recon", pca_components=2), RawDetector("ocsvm-nystroem", pca_components=None),
], ids=lambda d: d.estimator)
def test_raw_detectors_rank_anomalies_lower(blobs, detector):
    train, x_test, is_anomaly = blobs
    detector.fit(train)
    scores = detector.score_samples(x_test)
    assert roc_auc_score(is_anomaly, -scores) > 0.9
    assert np.allclose(detector.decision_function(x_test), scores - detector.offset_)
    flagged = (detector.predict(train) == -1).mean()
    assert abs(flagged - detector.contamination) < 0.02  # the threshold is the training quantile


def test_vae_and_latent_detectors(blobs):
    train, x_test, is_anomaly = blobs
    vae = VAEDetector(score="iwae", latent_dim=2, hidden_dims=(32,), epochs=60, batch_size=64,
                      n_samples=50).fit(train)
    assert vae.likelihood_ == "gaussian"
    assert roc_auc_score(is_anomaly, -vae.score_samples(x_test)) > 0.9
    error = VAEDetector(score="recon-error", latent_dim=2, hidden_dims=(32,), epochs=60, batch_size=64).fit(train)
    assert roc_auc_score(is_anomaly, -error.score_samples(x_test)) > 0.85  # negated error: higher = normal
    latent = LatentDetector("gmm", vae=vae).fit(train)
    assert latent.vae_ is vae and latent.score_samples(x_test).shape == (250,)
    assert set(np.unique(latent.predict(x_test))) <= {-1, 1}


def test_detectors_refuse_bad_input(blobs):
    train, _, _ = blobs
    det = RawDetector("iforest").fit(train)
    with pytest.raises(ValueError, match="features"):
        det.score_samples(train[:, :3])
    with pytest.raises(ValueError):
        RawDetector("nope").fit(train)
    with pytest.raises(ValueError, match="contamination"):
        RawDetector("iforest", contamination=0.7).fit(train)


def test_every_registered_detector_fits_and_follows_the_contract():
    from vaelab.detectors import DEFAULT_DETECTOR, DETECTORS, make_detector

    rng = np.random.default_rng(4)
    train, test = rng.normal(size=(120, 5)), rng.normal(size=(30, 5))
    assert DEFAULT_DETECTOR in DETECTORS
    for name in DETECTORS:
        det = make_detector(name, latent_dim=2, epochs=2).fit(train)
        scores = det.score_samples(test)
        assert scores.shape == (30,) and np.isfinite(scores).all(), name
        assert np.array_equal(det.predict(test), np.where(scores - det.offset_ >= 0, 1, -1)), name


def test_vae_detector_is_reproducible_from_its_seed(blobs):
    train, x_test, _ = blobs
    fit = lambda seed: VAEDetector(score="elbo", latent_dim=2, hidden_dims=(16,), epochs=2,  # noqa: E731
                                   random_state=seed).fit(train).score_samples(x_test)
    assert np.array_equal(fit(3), fit(3))
    assert not np.array_equal(fit(3), fit(4))


def test_gaussian_kde_matches_scikit_learn():
    from sklearn.neighbors import KernelDensity

    from vaelab.detectors import GaussianKDE

    rng = np.random.default_rng(0)
    fit, query = rng.normal(size=(300, 6)), rng.normal(size=(50, 6)) * 1.5
    ours = GaussianKDE(block=16).fit(fit).score_samples(query)
    theirs = KernelDensity(bandwidth="scott").fit(fit).score_samples(query)
    assert np.allclose(ours, theirs, atol=1e-8)
