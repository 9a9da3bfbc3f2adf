"""Every registered detector's scores from one fitted VAE and from the raw features, for the benchmarks.

Each scoring function returns ``(scores, references, seconds)``: dicts keyed by
the detector's registry name, holding its scores (higher = more normal) on the
evaluation rows, on the reference rows (normal training rows that the fusion
rules use) and its fit + score time. The detectors are built by the registry
with the run's config, so what is measured is what ``vaelab detect`` ships;
one VAE gives every ``vae-*`` score and the codes of every ``latent-*``
detector, and the fusions are computed afterwards from the stored parts
(:func:`vaelab.detectors.with_derived`).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from vaelab.config import Config
from vaelab.detectors import CLUSTER_CONDITIONAL, CLUSTER_GATED, VAEDetector, make_detector
from vaelab.detectors.corrections import compression_nats, feature_range
from vaelab.detectors.gated import chooses_clusters
from vaelab.detectors.registry import CORRECTION_PARTS, GATE_FALLBACK, VAE_NAMES, monte_carlo_samples
from vaelab.errors import ConfigError
from vaelab.fileio import atomic_path

Scores = dict[str, np.ndarray]
COMPLEXITY, BACKGROUND = CORRECTION_PARTS["complexity"], CORRECTION_PARTS["ratio"]  # the stored correction parts
# scores that no model is fitted for (the input complexity reads only the fit rows' feature range): a cell
# that refits takes their test and reference values from the same rows
UNFITTED = (COMPLEXITY,)
REGRET = "vae-regret"  # the costly VAE score, computed only where the run asks for it


def vae_score_keys(config: Config) -> list[str]:
    """The ``[anomaly]`` keys that :func:`vae_scores` depends on, for a cell's settings: the latent
    estimators, and ``likelihood_regret`` only where it is on (cells of runs without it keep their
    fingerprints)."""
    return ["latent_estimators", *(["likelihood_regret"] if config.anomaly.likelihood_regret else [])]


def vae_scores(vae: VAEDetector, x_fit: np.ndarray, x_eval: np.ndarray, ref: np.ndarray,
               config: Config) -> tuple[Scores, Scores, dict[str, float]]:
    """Every ``vae-*`` score of the fitted ``vae`` (``vae-regret`` only with
    ``config.anomaly.likelihood_regret``) and every latent detector of
    ``config.anomaly.latent_estimators`` fitted on the latent means of ``x_fit``."""
    samples = monte_carlo_samples(config)
    tests, refs, seconds = {}, {}, {}
    for name in VAE_NAMES:
        if name == REGRET and not config.anomaly.likelihood_regret:
            continue
        score = name[len("vae-"):]
        t0 = time.perf_counter()
        tests[name] = vae.score_with(x_eval, score, samples.get(score))
        seconds[name] = time.perf_counter() - t0
        refs[name] = vae.score_with(ref, score, samples.get(score))
    for est in config.anomaly.latent_estimators:
        name = f"latent-{est}"
        t0 = time.perf_counter()
        det = make_detector(name, config, latent_dim=vae.latent_dim, vae=vae, calibration=0.0).fit(x_fit)
        tests[name] = det.score_samples(x_eval)
        seconds[name] = time.perf_counter() - t0
        refs[name] = det.score_samples(ref)
    return tests, refs, seconds


def raw_scores(x_fit: np.ndarray, x_eval: np.ndarray, ref: np.ndarray,
               config: Config) -> tuple[Scores, Scores, dict[str, float]]:
    """The raw-feature baselines of ``config.anomaly.raw_estimators`` fitted on ``x_fit``, and the
    input complexity L(x) in nats (``input-complexity``, for the complexity-corrected likelihood)."""
    t0 = time.perf_counter()
    low, high = feature_range(x_fit)
    tests, refs = {COMPLEXITY: compression_nats(x_eval, low, high)}, {COMPLEXITY: compression_nats(ref, low, high)}
    seconds = {COMPLEXITY: time.perf_counter() - t0}
    for est in config.anomaly.raw_estimators:
        name = f"raw-{est}"
        t0 = time.perf_counter()
        det = make_detector(name, config, calibration=0.0).fit(x_fit)
        tests[name] = det.score_samples(x_eval)
        seconds[name] = time.perf_counter() - t0
        refs[name] = det.score_samples(ref)
    return tests, refs, seconds


def m2_scores(name: str, config: Config, x_fit: np.ndarray, x_eval: np.ndarray, ref: np.ndarray, *,
              latent_dim: int, epochs: int, seed: int, labels: np.ndarray | None = None,
              gate_maps: int | None = None, gate: bool | None = None) -> tuple[Scores, Scores, dict[str, float],
                                                                            dict[str, Any]]:
    """The M2 detector ``name`` (``m2-classes`` with ``labels``, ``m2-clusters`` without) fitted on
    ``x_fit``: (scores, references, seconds, record: epochs, clusters found, their stability).

    With ``gate_maps`` (the cluster gate, :class:`~vaelab.detectors.ClusterGatedDetector`'s rule) it is
    fitted only where the clusters found from that many maps are stable, and has no scores elsewhere
    (the gated detector is then :data:`GATE_FALLBACK`, :func:`gated_scores`); ``gate``: the choice made
    already (by another fit of the same cell), not measured again."""
    t0 = time.perf_counter()
    det = make_detector(name, config, latent_dim=latent_dim, epochs=epochs, seed=seed, calibration=0.0)
    extra: dict[str, Any] = {"epochs": epochs}
    if gate_maps is not None and gate is None:
        found, extra["cluster_stability"] = det.stable_clusters_of(x_fit, maps=gate_maps)
        gate = chooses_clusters(extra["cluster_stability"], config.detector.cluster_stability)
        det = det.fit_with_clusters(x_fit, found) if gate else None
    elif gate_maps is not None and not gate:
        det = None
    else:
        det.fit(x_fit, labels)
    tests, refs = ({name: det.score_samples(x_eval)}, {name: det.score_samples(ref)}) if det else ({}, {})
    if det is not None and name == CLUSTER_CONDITIONAL:
        extra["n_clusters"] = det.n_clusters_
    return tests, refs, {name: time.perf_counter() - t0}, extra


def check_gate(config: Config) -> None:
    """A benchmark's cluster gate falls back to :data:`GATE_FALLBACK`, which needs the latent KDE."""
    if config.anomaly.cluster_gate and "kde" not in config.anomaly.latent_estimators:
        raise ConfigError(f"anomaly.cluster_gate falls back to {GATE_FALLBACK}: add \"kde\" to anomaly.latent_estimators")


def gated_scores(tests: Scores, refs: Scores, seconds: dict[str, float]) -> tuple[Scores, Scores, dict[str, float]]:
    """(test scores, reference scores, seconds) of one latent size's cells with ``m2-clusters-or-fusion``
    in place of ``m2-clusters``: the cluster cell's scores where it fitted M2 (its clusters were
    stable), else the VAE cell's :data:`GATE_FALLBACK`, as :class:`~vaelab.detectors.ClusterGatedDetector`
    chooses."""
    chosen = CLUSTER_CONDITIONAL if CLUSTER_CONDITIONAL in tests else GATE_FALLBACK
    tests, refs, seconds = dict(tests), dict(refs), dict(seconds)
    tests[CLUSTER_GATED], refs[CLUSTER_GATED] = tests.pop(chosen), refs.pop(chosen)
    if chosen == GATE_FALLBACK:  # the fallback keeps its own row
        tests[GATE_FALLBACK], refs[GATE_FALLBACK] = tests[CLUSTER_GATED], refs[CLUSTER_GATED]
    seconds[CLUSTER_GATED] = seconds.pop(CLUSTER_CONDITIONAL, None)
    return tests, refs, seconds


def save_scores(path: Path, is_anomaly: np.ndarray, tests: Scores, refs: Scores) -> None:
    """One cell's scores as an .npz (atomically): labels, test and reference scores by detector."""
    arrays = {"is_anomaly": is_anomaly}
    arrays.update({f"test/{k}": v for k, v in tests.items()})
    arrays.update({f"ref/{k}": v for k, v in refs.items()})
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)


def load_scores(path: Path) -> tuple[np.ndarray, Scores, Scores]:
    """(is_anomaly, test scores by detector, reference scores by detector) from :func:`save_scores`."""
    with np.load(path) as z:
        tests = {k[5:]: z[k] for k in z.files if k.startswith("test/")}
        refs = {k[4:]: z[k] for k in z.files if k.startswith("ref/")}
        return z["is_anomaly"], tests, refs
