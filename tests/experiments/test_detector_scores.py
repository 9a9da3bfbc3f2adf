"""Benchmark scores are the registry's detectors: what is measured is what `vaelab detect` ships."""

import numpy as np

from tests.conftest import tiny_config
from vaelab.detectors import make_detector
from vaelab.detectors.corrections import compression_nats, feature_range
from vaelab.detectors.registry import VAE_NAMES
from vaelab.experiments.detector_scores import load_scores, raw_scores, save_scores, vae_scores


def _data():
    rng = np.random.default_rng(0)
    basis = rng.normal(size=(2, 6))
    fit = rng.normal(size=(200, 2)) @ basis + 0.1 * rng.normal(size=(200, 6))
    return fit, np.vstack([fit[:20], rng.normal(size=(10, 6))]), fit[:50]


CONFIG = tiny_config(anomaly={"latent_estimators": ["gmm"], "raw_estimators": ["iforest", "pca-recon"]},
                     detector={"iwae_samples": 6}, study={"latent_dims": [2]})


def test_raw_scores_equal_the_registered_detectors_fitted_alone():
    fit, test, ref = _data()
    tests, refs, seconds = raw_scores(fit, test, ref, CONFIG)
    assert set(tests) == set(refs) == set(seconds) == {"raw-iforest", "raw-pca-recon", "input-complexity"}
    low, high = feature_range(fit)
    assert np.array_equal(tests.pop("input-complexity"), compression_nats(test, low, high))
    for name in tests:
        alone = make_detector(name, CONFIG, calibration=0.0).fit(fit)  # benchmarks fit on every row
        assert np.array_equal(tests[name], alone.score_samples(test)) and np.array_equal(refs[name],
                                                                                          alone.score_samples(ref))


def test_one_vae_gives_every_likelihood_score_and_the_latent_detectors():
    fit, test, ref = _data()
    vae = make_detector("vae-iwae", CONFIG, latent_dim=2, epochs=2, calibration=0.0).fit(fit)
    tests, refs, _ = vae_scores(vae, fit, test, ref, CONFIG)
    assert set(tests) == {*VAE_NAMES, "latent-gmm"} - {"vae-regret"}  # the costly score only on request
    assert np.array_equal(tests["vae-iwae"], vae.score_samples(test))  # K from [detector], as the registry's
    latent = make_detector("latent-gmm", CONFIG, latent_dim=2, vae=vae, calibration=0.0).fit(fit)
    assert np.array_equal(tests["latent-gmm"], latent.score_samples(test))
    assert (tests["vae-recon-error"] <= 0).all()  # minus the error: higher is more normal for every score


def test_scores_round_trip_through_their_file(tmp_path):
    y = np.array([0, 1, 0])
    save_scores(tmp_path / "c.npz", y, {"a": np.arange(3.0)}, {"a": np.ones(2)})
    got_y, tests, refs = load_scores(tmp_path / "c.npz")
    assert np.array_equal(got_y, y) and np.array_equal(tests["a"], np.arange(3.0)) and refs["a"].shape == (2,)


def test_the_likelihood_regret_is_scored_where_the_run_asks_for_it():
    fit, test, ref = _data()
    config = tiny_config(anomaly={"latent_estimators": [], "likelihood_regret": True}, score={"regret_samples": 2},
                         study={"latent_dims": [2]})
    vae = make_detector("vae-regret", config, latent_dim=2, epochs=2, calibration=0.0).fit(fit)
    tests, refs, seconds = vae_scores(vae, fit, test, ref, config)
    assert set(tests) == set(VAE_NAMES) and seconds["vae-regret"] > 0
    assert np.array_equal(tests["vae-regret"], vae.score_samples(test)) and (tests["vae-regret"] <= 0).all()
