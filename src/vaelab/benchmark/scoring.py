"""Every detector's scores from one fitted VAE and from the raw features, shared by the benchmarks.

Each function returns ``(scores, references, seconds)``: dicts keyed by the
detector's registry name, holding its scores (higher = more normal) on the
evaluation rows, on the reference rows (normal training rows that the
fusion rules use) and its fit + score time.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from vaelab.config import Config

Scores = dict[str, np.ndarray]


def monte_carlo(config: Config) -> dict[str, int]:
    """The sample counts of the likelihood scores in the benchmarks."""
    return {"iwae": config.anomaly.iwae_samples, "recon-prob": config.score.recon_samples,
            "elbo": config.score.elbo_samples}


def vae_scores(vae: Any, x_fit: np.ndarray, x_eval: np.ndarray, ref: np.ndarray,
               config: Config) -> tuple[Scores, Scores, dict[str, float]]:
    """Every likelihood score of the fitted ``vae`` (a VAEDetector) and every latent detector
    of ``config.anomaly.latent_estimators`` fitted on the latent means of ``x_fit``."""
    from vaelab.detectors import LatentDetector
    from vaelab.scores import SCORES

    samples, seed, ac = monte_carlo(config), config.train.seed, config.anomaly
    tests, refs, seconds = {}, {}, {}
    for score in SCORES:
        t0 = time.perf_counter()
        tests[f"vae-{score}"] = vae.score_with(x_eval, score, samples.get(score))
        seconds[f"vae-{score}"] = time.perf_counter() - t0
        refs[f"vae-{score}"] = vae.score_with(ref, score, samples.get(score))
    for est in ac.latent_estimators:
        t0 = time.perf_counter()
        det = LatentDetector(est, vae=vae, latent_dim=vae.latent_dim, max_fit_rows=ac.max_fit_rows,
                             random_state=seed).fit(x_fit)
        tests[f"latent-{est}"] = det.score_samples(x_eval)
        seconds[f"latent-{est}"] = time.perf_counter() - t0
        refs[f"latent-{est}"] = det.score_samples(ref)
    return tests, refs, seconds


def raw_scores(x_fit: np.ndarray, x_eval: np.ndarray, ref: np.ndarray,
               config: Config) -> tuple[Scores, Scores, dict[str, float]]:
    """The raw-feature baselines of ``config.anomaly.raw_estimators`` fitted on ``x_fit``."""
    from vaelab.detectors import RawDetector

    ac = config.anomaly
    tests, refs, seconds = {}, {}, {}
    for est in ac.raw_estimators:
        t0 = time.perf_counter()
        det = RawDetector(est, max_fit_rows=ac.max_fit_rows, random_state=config.train.seed).fit(x_fit)
        tests[f"raw-{est}"] = det.score_samples(x_eval)
        seconds[f"raw-{est}"] = time.perf_counter() - t0
        refs[f"raw-{est}"] = det.score_samples(ref)
    return tests, refs, seconds
