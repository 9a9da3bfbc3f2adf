"""Corrections of the likelihood score for its known blind spot, as pure rules and as a detector.

A model's log p(x) ranks simple inputs (few, thin strokes; flat regions) as
likely even when it never saw their kind, because most of log p(x) measures how
much there is to encode, not how well the model knows it. Three remedies from
the literature, each a rule over log p(x) on the rows to score and on normal
reference rows (higher = more normal everywhere):

- ``complexity`` (Serra et al. 2020, "Input complexity and out-of-distribution
  detection with likelihood-based generative models"): subtract what a generic
  lossless compressor predicts. Serra et al. add the code length L(x) to
  log p(x) (a likelihood ratio against the compressor's model); that needs
  log p(x) as a code length of the same 8-bit values, which a Bernoulli or
  Gaussian decoder on continuous features is not. Here the weight of L(x) is
  set by least squares on the normal reference rows instead: the score is the
  part of log p(x) that the complexity does not explain.
- ``typicality`` (Nalisnick et al. 2019, "Detecting out-of-distribution inputs
  to deep generative models using typicality"), for one row at a time: minus
  the distance of log p(x) from its mean over the normal reference rows, so
  rows that are too likely are as suspect as rows that are too unlikely.
- ``ratio`` (Ren et al. 2019, "Likelihood ratios for out-of-distribution
  detection"): log p(x) - log p_background(x), the background model being the
  same VAE trained on the normal rows with a share of their features replaced
  by uniform noise (:func:`background_rows`), which learns the population-level
  statistics that dominate log p(x) but not the semantics.
"""

from __future__ import annotations

import zlib
from typing import Any

import numpy as np

from vaelab.detectors.base import (BaseDetector, StateReader, StateWriter, finite_rows, in_unit_range, is_fitted,
                                   reference_split, unfitted_part)
from vaelab.detectors.vae import VAEDetector

CORRECTIONS = ("complexity", "typicality", "ratio")
LEVELS = 256  # the compressor sees each feature quantized to one byte


def feature_range(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(low, high) per feature of the rows that a quantizer or noise draws should span: [0, 1] for
    pixels (every value in [0, 1]), else the rows' own minimum and maximum."""
    if in_unit_range(X):
        return np.zeros(X.shape[1]), np.ones(X.shape[1])
    return X.min(0), X.max(0)


def compression_nats(X: np.ndarray, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """Per row, the zlib (level 9) code length in nats of its features quantized to one byte each over
    [low, high] (values outside are clipped): the input-complexity estimate L(x)."""
    span = np.where(high > low, high - low, 1.0)
    q = np.clip(np.rint((np.asarray(X, dtype=np.float64) - low) / span * (LEVELS - 1)), 0, LEVELS - 1)
    q = np.ascontiguousarray(q.astype(np.uint8))
    return np.array([len(zlib.compress(row.tobytes(), 9)) for row in q], dtype=np.float64) * 8 * np.log(2)


def complexity_slope(ref_logp: np.ndarray, ref_complexity: np.ndarray) -> float:
    """Least-squares slope of log p(x) on L(x) over normal reference rows (0 if L does not vary)."""
    c = ref_complexity - ref_complexity.mean()
    var = float(c @ c)
    return float(c @ (ref_logp - ref_logp.mean()) / var) if var > 0 else 0.0


def corrected_scores(correction: str, logp: np.ndarray, ref_logp: np.ndarray, other: np.ndarray | None = None,
                     ref_other: np.ndarray | None = None) -> np.ndarray:
    """The corrected normality score of rows with log-likelihood ``logp`` (higher = more normal), by
    ``correction``; ``ref_*`` are the same quantities on normal reference rows. ``other`` is the
    complexity L(x) in nats for ``complexity``, the background model's log p(x) for ``ratio``, unused
    for ``typicality``."""
    logp, ref_logp = np.asarray(logp, dtype=np.float64), np.asarray(ref_logp, dtype=np.float64)
    if correction == "typicality":
        return -np.abs(logp - ref_logp.mean())
    if other is None or ref_other is None:
        raise ValueError(f"the {correction} correction needs its second quantity on the rows and references")
    if correction == "complexity":
        slope = complexity_slope(ref_logp, np.asarray(ref_other, dtype=np.float64))
        return logp - slope * np.asarray(other, dtype=np.float64)
    if correction == "ratio":
        return logp - np.asarray(other, dtype=np.float64)
    raise ValueError(f"unknown correction {correction!r}; use {', '.join(CORRECTIONS)}")


def background_rows(X: np.ndarray, rate: float, low: np.ndarray, high: np.ndarray, seed: int) -> np.ndarray:
    """A copy of X with each value, independently with probability ``rate``, replaced by a uniform draw
    over its feature's [low, high] (Ren et al.'s perturbation for training the background model)."""
    rng = np.random.default_rng([seed, 11])
    hit = rng.random(X.shape) < rate
    noise = low + rng.random(X.shape) * (high - low)
    return np.where(hit, noise, X)


class CorrectedLikelihoodDetector(BaseDetector):
    """log p(x) of a VAE (``vae``, an unfitted :class:`VAEDetector` template scoring ``iwae``, or a
    fitted one) corrected by :func:`corrected_scores`' ``correction``; the references are its
    quantities on (at most ``reference_rows`` of) the training rows. For ``ratio`` a clone of the
    template is trained on :func:`background_rows` of X with ``background_noise``."""

    def __init__(self, correction: str = "complexity", vae: VAEDetector | None = None, background_noise: float = 0.2,
                 reference_rows: int | None = 2000, contamination: float = 0.1, threshold_rows: int | None = 2000,
                 random_state: int = 0, calibration: float = 0.0, fpr: float | None = None) -> None:
        super().__init__(contamination, threshold_rows, calibration, fpr)
        self.correction = correction
        self.vae = vae
        self.background_noise = background_noise
        self.reference_rows = reference_rows
        self.random_state = random_state

    def trains_like(self, fitted: VAEDetector) -> bool:
        """Whether this detector's unfitted VAE template trains like ``fitted`` (see :meth:`fit_sharing`)."""
        return isinstance(self.vae, VAEDetector) and not is_fitted(self.vae) and self.vae.trains_like(fitted)

    def fit_sharing(self, X, fitted: VAEDetector, reference) -> np.ndarray:
        """:meth:`fit_part` as a part of a fusion whose ``fitted`` VAE part trains like this detector's
        template on the same rows X: the likelihood comes from that VAE, and the fusion's held-out
        ``reference`` rows are this detector's references too, so the fusion trains one VAE and holds
        out one set of rows (as the anomaly benchmark computes it). Returns the scores of ``reference``."""
        if not self.trains_like(fitted):
            raise ValueError("fit_sharing needs an unfitted VAE template with the same training settings")
        return self._fit_part_sharing(X, reference, (fitted, finite_rows(reference)))

    def _fit(self, X: np.ndarray) -> None:
        if self.correction not in CORRECTIONS:
            raise ValueError(f"unknown correction {self.correction!r}; use {', '.join(CORRECTIONS)}")
        if not 0.0 < self.background_noise < 1.0:
            raise ValueError(f"background_noise must be in (0, 1); got {self.background_noise}")
        template = self.vae if self.vae is not None else VAEDetector(score_name="iwae", random_state=self.random_state)
        shared = getattr(self, "_shared", None)
        if shared is not None:  # a fusion's part: its VAE and its reference rows
            fitted, ref = shared
            self.vae_ = unfitted_part(template)
            self.ref_logp_ = self.vae_.fit_sharing(X, fitted, ref)
        else:
            fit, held = reference_split(len(X), self.reference_rows, self.random_state)
            X, ref = X[fit], X[held]
            if is_fitted(template):
                self.vae_, self.ref_logp_ = template, template.score_samples(ref)
            else:
                self.vae_ = unfitted_part(template)
                self.ref_logp_ = self.vae_.fit_part(X, ref)
        self.low_, self.high_ = feature_range(X)
        if self.correction == "ratio":
            noisy = background_rows(X, self.background_noise, self.low_, self.high_, self.random_state)
            self.background_ = unfitted_part(template)
            self.ref_other_ = self.background_.fit_part(noisy, ref)
        else:
            self.ref_other_ = self._other(ref)

    def _other(self, X: np.ndarray) -> np.ndarray | None:
        """The correction's second quantity on rows X: L(x), the background log p(x), or None."""
        if self.correction == "complexity":
            return compression_nats(X, self.low_, self.high_)
        if self.correction == "ratio":
            return self.background_.score_samples(X)
        return None

    def _score(self, X: np.ndarray) -> np.ndarray:
        return corrected_scores(self.correction, self.vae_.score_samples(X), self.ref_logp_, self._other(X),
                                self.ref_other_)

    def _state(self, writer: StateWriter, prefix: str) -> dict[str, Any]:
        for name in ("low_", "high_", "ref_logp_", *(("ref_other_",) if self.ref_other_ is not None else ())):
            writer.array(f"{prefix}{name}", getattr(self, name))
        parts = {"vae": writer.nested(self.vae_, f"{prefix}vae.")}
        if hasattr(self, "background_"):
            parts["background"] = writer.nested(self.background_, f"{prefix}background.")
        return parts

    def _restore(self, meta: dict[str, Any], reader: StateReader, prefix: str) -> None:
        self.vae_ = reader.nested(meta["vae"], f"{prefix}vae.")
        if "background" in meta:
            self.background_ = reader.nested(meta["background"], f"{prefix}background.")
        for name in ("low_", "high_", "ref_logp_"):
            setattr(self, name, reader.array(f"{prefix}{name}"))
        self.ref_other_ = reader.array(f"{prefix}ref_other_") if reader.has(f"{prefix}ref_other_") else None
