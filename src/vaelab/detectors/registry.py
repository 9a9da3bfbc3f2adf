"""The one registry of detectors by name, used by the CLI, the study and the benchmarks alike.

Names: ``vae-<score>`` (:class:`VAEDetector`), ``latent-<estimator>``
(:class:`LatentDetector`), ``raw-<estimator>`` (:class:`RawDetector`), the
fusions of :data:`FUSIONS` (:class:`FusionDetector`: scores of the same VAE,
or of the VAE and the raw features, combined by a fixed rule) and the
corrected likelihoods of :data:`CORRECTED` (:class:`CorrectedLikelihoodDetector`:
the ``vae-iwae`` log p(x) corrected for input complexity, typicality or a
background model). Every setting comes from a
:class:`~vaelab.config.Config`: the ``[detector]`` section, ``model.hidden_dims``
and the ``train`` batch size, learning rate and device.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from vaelab.config import LATENT_ESTIMATORS, RAW_ESTIMATORS, Config, DetectorConfig
from vaelab.detectors.base import BaseDetector
from vaelab.detectors.corrections import CorrectedLikelihoodDetector, corrected_scores
from vaelab.detectors.estimators import ESTIMATOR_SETTINGS
from vaelab.detectors.fusion import FusionDetector, fuse
from vaelab.detectors.gated import ClusterGatedDetector
from vaelab.detectors.latent_raw import LatentDetector, RawDetector
from vaelab.detectors.semisupervised import ClassConditionalDetector, ClusterConditionalDetector, SemiSupervisedDetector
from vaelab.detectors.vae import VAEDetector
from vaelab.errors import ConfigError
from vaelab.scores import SCORES, monte_carlo_samples as score_samples

LIKELIHOOD = "vae-iwae"  # the log p(x) that the corrections and most fusions start from
# The fusions: name -> (the parts' registry names, rule).
FUSIONS = {
    "fusion-raw-rank": ((LIKELIHOOD, "raw-iforest"), "rank"),
    "fusion-latent-rank": ((LIKELIHOOD, "latent-ocsvm"), "rank"),
    "fusion-latent-zsum": ((LIKELIHOOD, "latent-gmm"), "zsum"),
    "fusion-recon-kde-rank": (("vae-recon-error", "latent-kde"), "rank"),
    "fusion-complexity-kde-rank": (("likelihood-complexity", "latent-kde"), "rank"),
    # the reconstruction error misses anomalies that are too simple (a left-out 1); these parts see them
    "fusion-recon-typicality-fisher": (("vae-recon-error", "likelihood-typicality"), "fisher"),
    "fusion-recon-regret-fisher": (("vae-recon-error", "vae-regret"), "fisher"),
}
# The corrected likelihoods: name -> correction (vaelab.detectors.corrections).
CORRECTED = {"likelihood-complexity": "complexity", "likelihood-typicality": "typicality",
             "likelihood-ratio": "ratio"}
# The per-row quantities besides LIKELIHOOD that the benchmarks store for the corrections:
# the input complexity L(x) (raw cells) and the background model's log p(x) (background cells).
CORRECTION_PARTS = {"complexity": "input-complexity", "ratio": "background-iwae"}
VAE_NAMES = tuple(f"vae-{s}" for s in SCORES)
LATENT_NAMES = tuple(f"latent-{e}" for e in LATENT_ESTIMATORS)
RAW_NAMES = tuple(f"raw-{e}" for e in RAW_ESTIMATORS)
DETECTORS = (*VAE_NAMES, *LATENT_NAMES, *RAW_NAMES, *CORRECTED, *FUSIONS)  # the unsupervised ones: fit(X)
SEMI_SUPERVISED = "m2-semisupervised"  # SemiSupervisedDetector: fit(X, y) with a few labelled anomalies
CLASS_CONDITIONAL = "m2-classes"  # ClassConditionalDetector: fit(X, y) with every normal row's class
CLUSTER_CONDITIONAL = "m2-clusters"  # ClusterConditionalDetector: fit(X), M2 on the clusters found in X
# ClusterGatedDetector: fit(X), m2-clusters where the clusters found in X are stable, else GATE_FALLBACK
CLUSTER_GATED = "m2-clusters-or-fusion"
GATE_FALLBACK = "fusion-recon-kde-rank"  # the best unconditional detector one-vs-rest (docs/anomaly.md)
# Unsupervised detectors with VAE training seeds: detector.ensemble_seeds fuses them over seeds.
SEED_ENSEMBLES = (*(n for n in DETECTORS if n not in RAW_NAMES), CLUSTER_CONDITIONAL, CLUSTER_GATED)


def monte_carlo_samples(config: Config) -> dict[str, int]:
    """Samples each VAE score draws inside a detector: K for iwae from ``[detector]``, the others'
    (L for recon-prob, elbo and regret draws) from ``[score]``."""
    return {**score_samples(config.score), "iwae": config.detector.iwae_samples}


def estimator_name(name: str) -> str:
    """The estimator of a ``latent-*`` or ``raw-*`` name (``latent-gmm`` -> ``gmm``)."""
    return name.split("-", 1)[1]


def registered_variant(name: str) -> tuple[str, Config]:
    """(registry name, settings) of ``name@variant@...``: each variant a ``[detector]`` setting
    ``key=value`` (``fusion-recon-typicality-fisher@fusion_refit=auto``), or a decoder alone
    (``vae-recon-error@gaussian``: ``likelihood=gaussian``)."""
    registered, *variants = name.split("@")
    fields = {f.name for f in dataclasses.fields(DetectorConfig)}
    changed: dict[str, Any] = {}
    for variant in variants:
        key, _, value = variant.rpartition("=")
        key = key or "likelihood"
        if key not in fields:
            raise ValueError(f"unknown detector setting {key!r} in {name!r}")
        changed[key] = type(getattr(DetectorConfig(), key))(value)
    return registered, Config(detector=DetectorConfig(**changed))


def make_detector(name: str, config: Config | None = None, *, latent_dim: int | None = None,
                  epochs: int | None = None, seed: int | None = None, vae: VAEDetector | None = None,
                  calibration: float | None = None) -> BaseDetector:
    """The detector registered as ``name``, unfitted, with ``config``'s settings (defaults if None).

    ``latent_dim`` defaults to ``model.latent_dim``, ``epochs`` to ``train.epochs``, ``seed`` to
    ``train.seed`` and ``calibration`` (the held-out share of normal rows) to ``detector.calibration``;
    ``vae``, a fitted VAEDetector, is shared by a latent detector instead of fitting its own. The
    benchmarks pass ``calibration=0``: their AUROC needs no threshold, and their protocols fit on
    every normal training row.
    """
    config = config or Config()
    latent_dim = config.model.latent_dim if latent_dim is None else latent_dim
    epochs = config.train.epochs if epochs is None else epochs
    seed = config.train.seed if seed is None else seed
    det = config.detector
    calibration = det.calibration if calibration is None else calibration
    common = {"threshold_rows": det.threshold_rows, "random_state": seed, "calibration": calibration,
              "fpr": (det.fpr or None) if calibration else None}
    if det.ensemble_seeds > 1 and name in SEED_ENSEMBLES and vae is None:
        return seed_ensemble(name, config, latent_dim=latent_dim, epochs=epochs, common=common)
    estimator = {"max_fit_rows": det.max_fit_rows, **{k: getattr(det, k) for k in ESTIMATOR_SETTINGS}, **common}
    if name in VAE_NAMES:
        score = name[len("vae-"):]
        return VAEDetector(score_name=score, latent_dim=latent_dim, hidden_dims=tuple(config.model.hidden_dims),
                           epochs=epochs, batch_size=config.train.batch_size, lr=config.train.lr,
                           n_samples=monte_carlo_samples(config).get(score), device=config.train.device,
                           likelihood=det.likelihood, **common)
    if name in LATENT_NAMES:
        return LatentDetector(estimator_name(name), vae=vae, latent_dim=latent_dim, epochs=epochs, **estimator)
    if name in RAW_NAMES:
        return RawDetector(estimator_name(name), pca_components=det.pca_components, **estimator)
    if name == SEMI_SUPERVISED:
        return SemiSupervisedDetector(latent_dim=latent_dim, hidden_dims=tuple(config.model.hidden_dims), epochs=epochs,
                                      batch_size=config.train.batch_size, lr=config.train.lr,
                                      reference_rows=det.reference_rows, device=config.train.device, **common)
    if name == CLASS_CONDITIONAL:
        return ClassConditionalDetector(latent_dim=latent_dim, hidden_dims=tuple(config.model.hidden_dims),
                                        epochs=epochs, batch_size=config.train.batch_size, lr=config.train.lr,
                                        reference_rows=det.reference_rows, device=config.train.device, **common)
    if name == CLUSTER_CONDITIONAL:
        return ClusterConditionalDetector(latent_dim=latent_dim, hidden_dims=tuple(config.model.hidden_dims),
                                          epochs=epochs, batch_size=config.train.batch_size, lr=config.train.lr,
                                          reference_rows=det.reference_rows, cluster_share=det.cluster_share,
                                          cluster_rows=det.cluster_rows, device=config.train.device, **common)
    if name == CLUSTER_GATED:
        return ClusterGatedDetector(make_detector(CLUSTER_CONDITIONAL, config, latent_dim=latent_dim, epochs=epochs,
                                                  seed=seed, calibration=0.0),
                                    make_detector(GATE_FALLBACK, config, latent_dim=latent_dim, epochs=epochs,
                                                  seed=seed, calibration=0.0),
                                    min_stability=det.cluster_stability, maps=det.cluster_maps, **common)
    if name in CORRECTED:
        vae = make_detector(LIKELIHOOD, config, latent_dim=latent_dim, epochs=epochs, seed=seed, calibration=0.0)
        return CorrectedLikelihoodDetector(CORRECTED[name], vae=vae, background_noise=det.background_noise,
                                           reference_rows=det.reference_rows, **common)
    if name in FUSIONS:
        names, rule = FUSIONS[name]
        parts = tuple(make_detector(n, config, latent_dim=latent_dim, epochs=epochs, seed=seed, calibration=0.0)
                      for n in names)
        return FusionDetector(parts, rule=rule, reference_rows=det.reference_rows, refit=det.fusion_refit, **common)
    raise ConfigError(f"unknown detector {name!r}; known: {', '.join((*DETECTORS, CLUSTER_CONDITIONAL, CLUSTER_GATED, SEMI_SUPERVISED, CLASS_CONDITIONAL))}")


def seed_ensemble(name: str, config: Config, *, latent_dim: int, epochs: int,
                  common: dict[str, Any]) -> FusionDetector:
    """``name`` fused over ``detector.ensemble_seeds`` VAE training seeds (``seed``, ``seed + 1``, ...):
    a :class:`FusionDetector` with one group of parts per seed (a fusion's own parts, else the detector
    itself), each group fused by its rule and the groups by the rank rule, as the anomaly benchmark fuses
    a detector over ``anomaly.seeds``. ``common``: the ensemble's own threshold settings and seed."""
    det, seed = config.detector, common["random_state"]
    single = config.replace(detector=dataclasses.replace(det, ensemble_seeds=1))
    names, rule = FUSIONS.get(name, ((name,), "rank"))
    parts = tuple(make_detector(n, single, latent_dim=latent_dim, epochs=epochs, seed=seed + i, calibration=0.0)
                  for i in range(det.ensemble_seeds) for n in names)
    return FusionDetector(parts, rule=rule, reference_rows=det.reference_rows, refit=det.fusion_refit,
                          ensemble=det.ensemble_seeds, **common)


def with_derived(tests: dict[str, np.ndarray],
                 refs: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """(test scores, reference scores): ``tests`` and ``refs`` plus every corrected likelihood of
    :data:`CORRECTED` and then every fusion of :data:`FUSIONS` whose parts are present, computed from the parts' scores on the test rows and on
    the reference rows exactly as :class:`CorrectedLikelihoodDetector` and :class:`FusionDetector`
    do (the benchmarks store the parts once and derive the rest afterwards). The stored
    :data:`CORRECTION_PARTS` are inputs, not detectors, and are left out."""
    tests, refs = dict(tests), dict(refs)
    if LIKELIHOOD in tests:
        for name, correction in CORRECTED.items():
            part = CORRECTION_PARTS.get(correction)
            if part is None or part in tests:
                other, ref_other = (tests[part], refs[part]) if part else (None, None)
                tests[name] = corrected_scores(correction, tests[LIKELIHOOD], refs[LIKELIHOOD], other, ref_other)
                refs[name] = corrected_scores(correction, refs[LIKELIHOOD], refs[LIKELIHOOD], ref_other, ref_other)
    for name, (names, rule) in FUSIONS.items():
        if all(n in tests for n in names):
            tests[name] = fuse([tests[n] for n in names], [refs[n] for n in names], rule)
            refs[name] = fuse([refs[n] for n in names], [refs[n] for n in names], rule)
    parts = set(CORRECTION_PARTS.values())
    return ({k: v for k, v in tests.items() if k not in parts}, {k: v for k, v in refs.items() if k not in parts})
