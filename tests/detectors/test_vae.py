"""VAE and latent detectors find anomalies and are reproducible from their seed."""

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from vaelab.detectors import LatentDetector, VAEDetector


def test_vae_and_latent_detectors(blobs):
    train, x_test, is_anomaly = blobs
    vae = VAEDetector(score_name="iwae", latent_dim=2, hidden_dims=(32,), epochs=60, batch_size=64,
                      n_samples=50).fit(train)
    assert vae.likelihood_ == "gaussian"
    assert roc_auc_score(is_anomaly, -vae.score_samples(x_test)) > 0.9
    error = VAEDetector(score_name="recon-error", latent_dim=2, hidden_dims=(32,), epochs=60, batch_size=64).fit(train)
    assert roc_auc_score(is_anomaly, -error.score_samples(x_test)) > 0.85  # negated error: higher = normal
    latent = LatentDetector("gmm", vae=vae).fit(train)
    assert latent.vae_ is vae and latent.score_samples(x_test).shape == (250,)
    assert set(np.unique(latent.predict(x_test))) <= {-1, 1}


def test_vae_detector_is_reproducible_from_its_seed(blobs):
    train, x_test, _ = blobs
    fit = lambda seed: VAEDetector(score_name="elbo", latent_dim=2, hidden_dims=(16,), epochs=2,  # noqa: E731
                                   random_state=seed).fit(train).score_samples(x_test)
    assert np.array_equal(fit(3), fit(3))
    assert not np.array_equal(fit(3), fit(4))




def test_vae_detector_likelihood_choice():
    rng = np.random.default_rng(0)
    pixels = rng.uniform(size=(200, 6))  # in [0, 1]: auto picks Bernoulli and leaves the values unscaled
    auto = VAEDetector(score_name="recon-error", latent_dim=2, hidden_dims=(8,), epochs=1).fit(pixels)
    assert auto.likelihood_ == "bernoulli" and np.all(auto.mean_ == 0) and np.all(auto.scale_ == 1)
    gaussian = VAEDetector(score_name="recon-error", latent_dim=2, hidden_dims=(8,), epochs=1,
                           likelihood="gaussian").fit(pixels)  # grey values standardized under a Gaussian decoder
    assert gaussian.likelihood_ == "gaussian" and gaussian.model_.likelihood == "gaussian"
    assert np.allclose(gaussian.mean_, pixels.mean(0)) and np.allclose(gaussian.scale_, pixels.std(0))
    with pytest.raises(ValueError, match=r"needs every feature value in \[0, 1\]"):
        VAEDetector(likelihood="bernoulli", epochs=1).fit(pixels * 2)
    with pytest.raises(ValueError, match="likelihood must be one of"):
        VAEDetector(likelihood="poisson", epochs=1).fit(pixels)
