"""ClusterGatedDetector: m2-clusters where the normal rows' clusters are stable, a fallback elsewhere."""

import numpy as np
import pytest

from tests.detectors.test_semisupervised import _novel_class_task

M2 = dict(latent_dim=2, hidden_dims=(32,), epochs=30, batch_size=64, cluster_share=0.1)


def _gate(fallback=None, **kw):
    from vaelab.detectors import ClusterConditionalDetector, ClusterGatedDetector, RawDetector

    return ClusterGatedDetector(ClusterConditionalDetector(**M2), fallback or RawDetector("kde"), **kw)


def test_stable_clusters_fit_the_cluster_detector_as_it_fits_alone(tmp_path):
    """Three islands of normal rows: the clusters agree across seeds, so the gate is m2-clusters, with
    the scores m2-clusters gets on its own (the clusters found once, not twice); the file round-trips."""
    from vaelab.detectors import BaseDetector, ClusterConditionalDetector

    x, _, _, _, test, _ = _novel_class_task()
    gate = _gate().fit(x)
    assert gate.chose_clusters_ and gate.stability_ > 0.99
    alone = ClusterConditionalDetector(**M2).fit(x)
    np.testing.assert_allclose(gate.score_samples(test), alone.score_samples(test), rtol=1e-6)
    assert gate.detector_.n_clusters_ == 3
    gate.save(tmp_path / "g.safetensors")
    loaded = BaseDetector.load(tmp_path / "g.safetensors")
    np.testing.assert_allclose(loaded.score_samples(test), gate.score_samples(test), rtol=1e-6)
    assert loaded.chose_clusters_ and loaded.stability_ == gate.stability_
    np.testing.assert_allclose(loaded.predict(test), gate.predict(test))


def test_one_mass_of_rows_takes_the_fallback(tmp_path):
    """One Gaussian mass: its clusters move with the seed, so the gate is the fallback, fitted on every
    row as it would be alone; the same rows with a threshold of -1 take the clusters."""
    from vaelab.detectors import BaseDetector, RawDetector

    rng = np.random.default_rng(3)
    x, test = rng.normal(size=(600, 6)), rng.normal(size=(50, 6)) * 1.5
    gate = _gate().fit(x)
    assert not gate.chose_clusters_ and gate.stability_ < 0.8
    np.testing.assert_allclose(gate.score_samples(test), RawDetector("kde").fit(x).score_samples(test), rtol=1e-9)
    gate.save(tmp_path / "g.safetensors")
    loaded = BaseDetector.load(tmp_path / "g.safetensors")
    np.testing.assert_allclose(loaded.score_samples(test), gate.score_samples(test), rtol=1e-9)
    assert _gate(min_stability=-1.0).fit(x).chose_clusters_


def test_bad_settings_are_refused():
    from vaelab.detectors import ClusterGatedDetector, RawDetector

    x = np.random.default_rng(0).normal(size=(60, 3))
    with pytest.raises(ValueError, match="min_stability"):
        _gate(min_stability=-1.5).fit(x)
    with pytest.raises(ValueError, match="the stability needs at least two maps; got 1"):  # vaelab.clusters' check
        _gate(maps=1).fit(x)
    with pytest.raises(ValueError, match="needs a ClusterConditionalDetector"):
        ClusterGatedDetector(None, RawDetector("kde")).fit(x)


def test_the_registry_builds_it_from_the_config():
    from vaelab.config import Config, DetectorConfig
    from vaelab.detectors import CLUSTER_GATED, ClusterConditionalDetector, FusionDetector, make_detector

    gate = make_detector(CLUSTER_GATED, Config(detector=DetectorConfig(cluster_stability=0.6, cluster_share=0.05,
                                                                       cluster_maps=4)))
    assert gate.min_stability == 0.6 and gate.maps == 4 and isinstance(gate.clusters, ClusterConditionalDetector)
    assert gate.clusters.cluster_share == 0.05 and gate.clusters.calibration == 0.0
    assert isinstance(gate.fallback, FusionDetector) and gate.fallback.rule == "rank"
    assert [type(p).__name__ for p in gate.fallback.detectors] == ["VAEDetector", "LatentDetector"]


def test_a_seed_ensemble_of_gates_is_the_benchmarks_fusion_over_seeds(tmp_path):
    """m2-clusters-or-fusion@ensemble_seeds=2: each seed's gate decides on its own, and the seeds' scores
    are fused by the rank rule against one hold-out, as the anomaly benchmark fuses its per-seed cells."""
    from vaelab.config import Config, DetectorConfig, ModelConfig
    from vaelab.detectors import CLUSTER_GATED, BaseDetector, fuse, make_detector, reference_split

    rng = np.random.default_rng(4)
    x, test = rng.random((300, 12)), np.vstack([rng.random((40, 12)), rng.random((10, 12)) ** 4])
    settings = dict(reference_rows=100, fusion_refit="never", iwae_samples=4, cluster_share=0.1, cluster_maps=2)
    config = Config(model=ModelConfig(hidden_dims=(16,)), detector=DetectorConfig(**settings))
    ensemble = Config(model=ModelConfig(hidden_dims=(16,)), detector=DetectorConfig(**settings, ensemble_seeds=2))
    fused = make_detector(CLUSTER_GATED, ensemble, latent_dim=2, epochs=2, seed=0, calibration=0.0).fit(x)
    assert [type(d).__name__ for d in fused.detectors_] == ["ClusterGatedDetector"] * 2
    fit, held = reference_split(len(x), 100, 0)
    gates = [make_detector(CLUSTER_GATED, config, latent_dim=2, epochs=2, seed=s, calibration=0.0).fit(x[fit])
             for s in (0, 1)]
    assert [g.stability_ for g in gates] == [g.stability_ for g in fused.detectors_]
    expected = fuse([g.score_samples(test) for g in gates], [g.score_samples(x[held]) for g in gates], "rank")
    np.testing.assert_allclose(fused.score_samples(test), expected, atol=1e-12)
    fused.save(tmp_path / "e.safetensors")
    np.testing.assert_allclose(BaseDetector.load(tmp_path / "e.safetensors").score_samples(test), expected, atol=1e-12)
