"""Fusion rules: the sign is kept, and Fisher's rule lets one extreme part flag a row."""

import numpy as np
import pytest

from vaelab.detectors import FusionDetector, RawDetector, fuse
from vaelab.evaluation import auroc


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


def test_reference_split_holds_out_at_most_half():
    from vaelab.detectors import reference_split

    fit, held = reference_split(100, 30, seed=0)
    assert len(held) == 30 and len(fit) == 70 and not set(fit) & set(held)
    assert len(reference_split(10, 30, seed=0)[1]) == 5
    assert np.array_equal(reference_split(100, 30, 0)[1], reference_split(100, 30, 0)[1])


def test_references_are_rows_the_parts_never_saw():
    """A kernel density scores its own fit rows with their self-kernel; references drawn from them
    would put every unseen row below every reference (measured before the hold-out: position 0.0
    here), and the rank rule would then ignore the part."""
    rng = np.random.default_rng(0)
    train, normal_test = rng.normal(size=(600, 50)), rng.normal(size=(200, 50))
    fusion = FusionDetector((RawDetector("kde", pca_components=None), RawDetector("iforest", pca_components=None)),
                            rule="rank", reference_rows=200).fit(train)
    position = np.searchsorted(np.sort(fusion.references_[0]), fusion.detectors_[0].score_samples(normal_test))
    assert 0.3 < position.mean() / len(fusion.references_[0]) < 0.7  # unseen normal rows sit among the references


def test_two_scores_of_one_vae_share_its_training():
    from vaelab.detectors import VAEDetector, reference_split

    rng = np.random.default_rng(4)
    train, test = rng.random((300, 12)), rng.random((40, 12))
    kw = dict(latent_dim=2, hidden_dims=(16,), epochs=3, n_samples=2)
    parts = (VAEDetector("recon-error", **kw), VAEDetector("regret", **kw))
    fusion = FusionDetector(parts, rule="fisher", refit="never").fit(train)  # held out, no refit: as computed below
    recon, regret = fusion.detectors_
    assert regret.model_ is recon.model_  # trained once
    fit, held = reference_split(len(train), fusion.reference_rows, fusion.random_state)
    alone = [VAEDetector(p.score_name, **kw).fit(train[fit]) for p in parts]  # what two trainings would give
    expected = fuse([a.score_samples(test) for a in alone], [a.score_samples(train[held]) for a in alone], "fisher")
    np.testing.assert_allclose(fusion.score_samples(test), expected)
    np.testing.assert_array_equal(fusion.explain(test[:3]), recon.explain(test[:3]))  # the exact part's split
    other = VAEDetector("regret", **{**kw, "epochs": 4})
    assert not other.trains_like(recon)
    with pytest.raises(ValueError, match="same training settings"):
        other.fit_sharing(train, recon, train[held])


def test_parts_threshold_on_the_reference_rows_and_a_shared_vae_is_stored_once(tmp_path):
    """A part's own threshold comes from the held-out reference scores the fusion computes anyway
    (no scoring pass over training rows), and two scores of one VAE keep one copy of it in a file."""
    from safetensors import safe_open

    from vaelab.detectors import BaseDetector, VAEDetector

    rng = np.random.default_rng(5)
    train, test = rng.random((300, 12)), rng.random((40, 12))
    kw = dict(latent_dim=2, hidden_dims=(16,), epochs=2, n_samples=2)
    fusion = FusionDetector((VAEDetector("recon-error", **kw), VAEDetector("elbo", **kw)), rule="fisher").fit(train)
    for part, reference in zip(fusion.detectors_, fusion.references_):
        assert part.offset_ == pytest.approx(np.quantile(reference, part.contamination))
    path = tmp_path / "fusion.safetensors"
    fusion.save(path)
    with safe_open(path, "pt") as f:
        weights = [k for k in f.keys() if ".model." in k]
    assert weights and all(k.startswith("part0.") for k in weights)
    loaded = BaseDetector.load(path)
    assert loaded.detectors_[1].model_ is loaded.detectors_[0].model_
    np.testing.assert_allclose(loaded.score_samples(test), fusion.score_samples(test), rtol=1e-6)


def test_a_corrected_likelihood_part_shares_the_fusions_vae_and_references():
    """The typicality fusion as shipped is what the anomaly benchmark computes: one VAE trained on the
    fusion's fit rows, and the fusion's held-out reference rows as the typicality test's references."""
    from vaelab.detectors import CorrectedLikelihoodDetector, VAEDetector, reference_split
    from vaelab.detectors.corrections import corrected_scores

    rng = np.random.default_rng(6)
    train, test = rng.random((300, 12)), rng.random((40, 12))
    kw = dict(latent_dim=2, hidden_dims=(16,), epochs=2, n_samples=4)
    parts = (VAEDetector("recon-error", **kw), CorrectedLikelihoodDetector("typicality", vae=VAEDetector("iwae", **kw)))
    fusion = FusionDetector(parts, rule="fisher", refit="never").fit(train)
    recon, typicality = fusion.detectors_
    assert typicality.vae_.model_ is recon.model_  # trained once
    fit, held = reference_split(len(train), fusion.reference_rows, fusion.random_state)
    iwae, error = VAEDetector("iwae", **kw).fit(train[fit]), VAEDetector("recon-error", **kw).fit(train[fit])
    logp_test, logp_ref = iwae.score_samples(test), iwae.score_samples(train[held])
    expected = fuse([error.score_samples(test), corrected_scores("typicality", logp_test, logp_ref, None, None)],
                    [error.score_samples(train[held]), corrected_scores("typicality", logp_ref, logp_ref, None, None)],
                    "fisher")
    np.testing.assert_allclose(fusion.score_samples(test), expected, rtol=1e-6)
    fitted = VAEDetector("iwae", **kw).fit(train)
    assert not CorrectedLikelihoodDetector("typicality", vae=fitted).trains_like(recon)  # a fitted template is used as is


def test_refit_rule_refits_when_the_hold_out_is_more_than_a_tenth():
    from vaelab.detectors.fusion import refits

    assert refits("auto", 2000, 10000) and not refits("auto", 2000, 20000) and not refits("auto", 2000, 45000)
    assert refits("always", 1, 10**6) and not refits("never", 500, 1000)
    with pytest.raises(ValueError, match="unknown refit"):
        refits("sometimes", 1, 2)


def test_a_refitted_fusion_scores_with_parts_fitted_on_every_row_and_keeps_the_held_out_references():
    """refit: the references are the hold-out's scores under the parts fitted without it (as without
    refit); then the parts are fitted again on every row and those fits score, a shared VAE included."""
    from vaelab.detectors import CorrectedLikelihoodDetector, VAEDetector

    rng = np.random.default_rng(7)
    train, test = rng.random((300, 12)), rng.random((40, 12))
    kw = dict(latent_dim=2, hidden_dims=(16,), epochs=2, n_samples=4)
    parts = (VAEDetector("recon-error", **kw), CorrectedLikelihoodDetector("typicality", vae=VAEDetector("iwae", **kw)),
             RawDetector("kde", pca_components=None))
    held_out = FusionDetector(parts, rule="fisher", refit="never").fit(train)
    refitted = FusionDetector(parts, rule="fisher", refit="always").fit(train)
    for a, b in zip(held_out.references_, refitted.references_):
        np.testing.assert_array_equal(a, b)
    recon, typicality, kde = refitted.detectors_
    assert typicality.vae_.model_ is recon.model_  # still one VAE
    np.testing.assert_allclose(recon.score_samples(test), VAEDetector("recon-error", **kw).fit(train).score_samples(test),
                               rtol=1e-6)  # fitted on every row
    assert len(kde.fit_features_) == len(train)
    assert not np.allclose(refitted.score_samples(test), held_out.score_samples(test))
    auto = FusionDetector(parts, rule="fisher", refit="auto").fit(train)  # 150 of 300 held out: refits
    np.testing.assert_allclose(auto.score_samples(test), refitted.score_samples(test))
    with pytest.raises(ValueError, match="unknown refit"):
        FusionDetector(parts, refit="twice").fit(train)


def test_a_refitted_fusion_round_trips_through_a_file(tmp_path):
    from vaelab.detectors import BaseDetector, VAEDetector

    rng = np.random.default_rng(8)
    train, test = rng.random((200, 12)), rng.random((30, 12))
    kw = dict(latent_dim=2, hidden_dims=(16,), epochs=2, n_samples=2)
    fusion = FusionDetector((VAEDetector("recon-error", **kw), VAEDetector("elbo", **kw)), rule="fisher",
                            refit="always").fit(train)
    fusion.save(tmp_path / "f.safetensors")
    loaded = BaseDetector.load(tmp_path / "f.safetensors")
    assert loaded.refit == "always"
    np.testing.assert_allclose(loaded.score_samples(test), fusion.score_samples(test), rtol=1e-6)


def test_a_seed_ensemble_is_the_benchmarks_fusion_over_seeds_and_round_trips(tmp_path):
    """detector.ensemble_seeds: each seed's parts fused by the detector's rule, the seeds by the rank
    rule, all against one hold-out: what the anomaly benchmark computes from its per-seed cells. Parts
    share a VAE within their seed only."""
    from vaelab.config import Config, DetectorConfig, ModelConfig
    from vaelab.detectors import BaseDetector, make_detector, reference_split, with_derived
    from vaelab.experiments.anomaly import seed_ensembles

    rng = np.random.default_rng(3)
    x, test = rng.random((300, 12)), np.vstack([rng.random((40, 12)), rng.random((10, 12)) ** 4])
    detector = DetectorConfig(reference_rows=100, fusion_refit="never", iwae_samples=4, max_fit_rows=500)
    config = Config(model=ModelConfig(hidden_dims=(16,)), detector=detector)
    ensemble = Config(model=ModelConfig(hidden_dims=(16,)), detector=DetectorConfig(**{**vars(detector), "ensemble_seeds": 2}))
    fused = make_detector("fusion-recon-kde-rank", ensemble, latent_dim=2, epochs=2, seed=0, calibration=0.0).fit(x)
    assert len(fused.detectors_) == 4 and fused.detectors_[1].vae is fused.detectors_[0]  # latent-kde on its seed's VAE
    assert fused.detectors_[3].vae is fused.detectors_[2] and fused.detectors_[2] is not fused.detectors_[0]
    fit, held = reference_split(len(x), 100, 0)
    per_seed = []
    for seed in (0, 1):
        vae = make_detector("vae-recon-error", config, latent_dim=2, epochs=2, seed=seed, calibration=0.0).fit(x[fit])
        kde = make_detector("latent-kde", config, latent_dim=2, epochs=2, seed=seed, vae=vae, calibration=0.0)
        kde.fit(x[fit])
        tests, refs = with_derived({"vae-recon-error": vae.score_samples(test), "latent-kde": kde.score_samples(test)},
                                   {"vae-recon-error": vae.score_samples(x[held]), "latent-kde": kde.score_samples(x[held])})
        per_seed.append(({2: tests}, {2: refs}))
    expected = seed_ensembles(per_seed, 2)["fusion-recon-kde-rank (ensemble of 2 seeds)"]
    np.testing.assert_allclose(fused.score_samples(test), expected, atol=1e-12)
    fused.save(tmp_path / "e.safetensors")
    np.testing.assert_allclose(BaseDetector.load(tmp_path / "e.safetensors").score_samples(test), expected, atol=1e-12)
    with pytest.raises(ValueError, match="cannot form 3 equal groups"):
        FusionDetector(fused.detectors[:2], ensemble=3).fit(x)
