"""Every registered detector fits and follows the contract."""

import numpy as np


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




def test_the_likelihood_setting_reaches_the_vae_detectors():
    from vaelab.config import Config, DetectorConfig
    from vaelab.detectors import make_detector

    config = Config(detector=DetectorConfig(likelihood="gaussian"))
    assert make_detector("vae-recon-error", config).likelihood == "gaussian"
    assert make_detector("likelihood-complexity", config).vae.likelihood == "gaussian"
    assert make_detector("vae-recon-error").likelihood == "auto"
