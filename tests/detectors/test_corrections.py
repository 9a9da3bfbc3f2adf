"""Corrected likelihoods: the rules, the background perturbation, and the detector equal to the rules."""

import numpy as np
import pytest

from vaelab.detectors import CorrectedLikelihoodDetector, VAEDetector, corrected_scores, reference_split, with_derived
from vaelab.detectors.corrections import background_rows, complexity_slope, compression_nats, feature_range


def test_compression_counts_structure_not_size():
    rng = np.random.default_rng(0)
    flat = np.zeros((3, 400))
    noisy = rng.random((3, 400))
    low, high = np.zeros(400), np.ones(400)
    l_flat, l_noisy = compression_nats(flat, low, high), compression_nats(noisy, low, high)
    assert np.all(l_flat < l_noisy / 10)
    assert np.all(l_noisy > 300 * np.log(256) * 0.9)  # 400 random bytes barely compress
    assert np.array_equal(compression_nats(noisy * 5 - 1, low, high), compression_nats(np.clip(noisy * 5 - 1, 0, 1), low, high))


def test_feature_range_is_unit_for_pixels_and_observed_otherwise():
    assert np.array_equal(feature_range(np.array([[0.0, 0.5], [0.2, 0.1]]))[1], [1.0, 1.0])
    low, high = feature_range(np.array([[-1.0, 3.0], [2.0, 4.0]]))
    assert np.array_equal(low, [-1.0, 3.0]) and np.array_equal(high, [2.0, 4.0])


def test_rules():
    rng = np.random.default_rng(1)
    ref_c = rng.normal(100, 10, 500)
    ref_lp = -0.5 * ref_c + rng.normal(0, 1, 500)
    assert complexity_slope(ref_lp, ref_c) == pytest.approx(-0.5, abs=0.02)
    corrected = corrected_scores("complexity", ref_lp, ref_lp, ref_c, ref_c)
    assert abs(np.corrcoef(corrected, ref_c)[0, 1]) < 1e-9  # the complexity no longer explains the score
    # a simple row (low complexity) that is only as likely as an average row is now unusual
    simple = corrected_scores("complexity", np.array([ref_lp.mean()]), ref_lp, np.array([60.0]), ref_c)
    assert simple[0] < np.quantile(corrected, 0.01)
    assert np.allclose(corrected_scores("typicality", np.array([1.0, 3.0]), np.array([2.0, 2.0])), [-1.0, -1.0])
    assert np.allclose(corrected_scores("ratio", np.array([1.0]), ref_lp, np.array([4.0]), ref_lp), [-3.0])
    with pytest.raises(ValueError, match="needs"):
        corrected_scores("ratio", ref_lp, ref_lp)
    with pytest.raises(ValueError, match="unknown correction"):
        corrected_scores("nope", ref_lp, ref_lp, ref_c, ref_c)


def test_background_rows_replace_about_the_rate_within_range_seeded():
    x = np.full((200, 50), 0.5)
    low, high = np.zeros(50), np.ones(50)
    noisy = background_rows(x, 0.2, low, high, seed=3)
    changed = noisy != 0.5
    assert 0.17 < changed.mean() < 0.23 and noisy.min() >= 0 and noisy.max() <= 1
    assert np.array_equal(noisy, background_rows(x, 0.2, low, high, seed=3))
    assert not np.array_equal(noisy, background_rows(x, 0.2, low, high, seed=4))


def _vae():
    return VAEDetector(score_name="iwae", latent_dim=2, hidden_dims=(16,), epochs=2, n_samples=5)


@pytest.mark.parametrize("correction", ["complexity", "typicality", "ratio"])
def test_detector_equals_the_rule_on_stored_parts(correction):
    """What the benchmarks derive from stored parts is what the detector computes itself."""
    rng = np.random.default_rng(0)
    x = rng.random((300, 12))
    test = np.vstack([rng.random((40, 12)), rng.random((10, 12)) ** 4])
    det = CorrectedLikelihoodDetector(correction, vae=_vae(), reference_rows=100).fit(x)
    ref = x[reference_split(len(x), 100, 0)[1]]
    vae = det.vae_
    tests, refs = {"vae-iwae": vae.score_samples(test)}, {"vae-iwae": vae.score_samples(ref)}
    if correction == "complexity":
        tests["input-complexity"], refs["input-complexity"] = (compression_nats(v, *feature_range(x)) for v in (test, ref))
    if correction == "ratio":
        assert det.background_.model_ is not vae.model_
        tests["background-iwae"], refs["background-iwae"] = (det.background_.score_samples(v) for v in (test, ref))
    derived = with_derived(tests, refs)[0]
    assert np.allclose(derived[f"likelihood-{correction}"], det.score_samples(test))
    assert "input-complexity" not in derived and "background-iwae" not in derived


def test_detector_refuses_bad_settings():
    x = np.random.default_rng(0).random((50, 4))
    with pytest.raises(ValueError, match="unknown correction"):
        CorrectedLikelihoodDetector("nope", vae=_vae()).fit(x)
    with pytest.raises(ValueError, match="background_noise"):
        CorrectedLikelihoodDetector("ratio", vae=_vae(), background_noise=1.5).fit(x)
