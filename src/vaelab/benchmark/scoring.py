"""Every detector's scores from one fitted VAE and from the raw features, shared by the benchmarks.

Each function returns ``(scores, references, seconds)``: dicts keyed by the
detector's registry name, holding its scores (higher = more normal) on the
evaluation rows, on the reference rows (normal training rows that the
fusion rules use) and its fit + score time.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from vaelab.config import Config
from vaelab.fileio import atomic_path, write_json

Scores = dict[str, np.ndarray]
LIKELIHOOD = "vae-iwae"  # the likelihood part of every fusion


def monte_carlo(config: Config) -> dict[str, int]:
    """The sample counts of the likelihood scores in the benchmarks: ``score``'s, with K from ``anomaly``."""
    from vaelab.experiment import monte_carlo_samples

    return {**monte_carlo_samples(config.score), "iwae": config.anomaly.iwae_samples}


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


# ---- cells: one unit of stored work, marked done by its JSON's fingerprint ------

def save_cell(path: Path, is_anomaly: np.ndarray, result: dict[str, Any], fp: str) -> None:
    arrays = {"is_anomaly": is_anomaly}
    arrays.update({f"test/{k}": v for k, v in result["scores"].items()})
    arrays.update({f"ref/{k}": v for k, v in result["refs"].items()})
    with atomic_path(path.with_suffix(".npz")) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)
    meta = {k: v for k, v in result.items() if k not in ("scores", "refs")}
    write_json(path.with_suffix(".json"), {**meta, "fingerprint": fp})  # written last: marks the cell done


def load_cell(path: Path) -> tuple[np.ndarray, dict[str, np.ndarray], dict[str, np.ndarray]]:
    """(is_anomaly, test scores by detector, reference scores by detector) of a finished cell."""
    with np.load(path.with_suffix(".npz")) as z:
        tests = {k[5:]: z[k] for k in z.files if k.startswith("test/")}
        refs = {k[4:]: z[k] for k in z.files if k.startswith("ref/")}
        return z["is_anomaly"], tests, refs


def cell_done(path: Path, fp: str) -> bool:
    meta = path.with_suffix(".json")
    if not (meta.exists() and path.with_suffix(".npz").exists()):
        return False
    try:
        return json.loads(meta.read_text()).get("fingerprint") == fp
    except json.JSONDecodeError:
        return False


def with_fusions(tests: dict[str, np.ndarray], refs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """``tests`` plus every fusion of :data:`FUSIONS` whose parts are present."""
    from vaelab.detectors import FUSIONS, fuse

    out = dict(tests)
    for name, (partner, rule) in FUSIONS.items():
        if LIKELIHOOD in tests and partner in tests:
            out[name] = fuse([tests[LIKELIHOOD], tests[partner]], [refs[LIKELIHOOD], refs[partner]], rule)
    return out
