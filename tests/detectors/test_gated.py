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
    with pytest.raises(ValueError, match="maps must be at least 2"):
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
