"""Fusion: combining several normality scores of the same rows, as a rule and as a detector."""

from __future__ import annotations

from typing import Any

import numpy as np

from vaelab.config import FUSION_REFITS
from vaelab.detectors.base import (BaseDetector, StateReader, StateWriter, is_fitted, reference_split,
                                   unfitted_part)
from vaelab.detectors.corrections import CorrectedLikelihoodDetector
from vaelab.detectors.latent_raw import LatentDetector
from vaelab.detectors.vae import VAEDetector

FUSION_RULES = ("rank", "fisher", "zsum")
TIE_TOLERANCE = 1e-9
# refit="auto" refits the parts on every row when the reference hold-out is more than this share of them
REFIT_SHARE = 0.1


def refits(refit: str, held: int, n: int) -> bool:
    """Whether a fusion whose references hold out ``held`` of ``n`` rows refits its parts on all n:
    ``always``, ``never``, or ``auto``: when the hold-out is more than :data:`REFIT_SHARE` of the rows
    (on small data a model trained without it would lose much of its data; on large data, little)."""
    if refit not in FUSION_REFITS:
        raise ValueError(f"unknown refit {refit!r}; use {', '.join(FUSION_REFITS)}")
    return refit == "always" or (refit == "auto" and held > REFIT_SHARE * n)


def fuse(scores: list[np.ndarray], references: list[np.ndarray], rule: str) -> np.ndarray:
    """Combine normality scores (higher = more normal) of the same rows.

    ``references[i]`` holds score ``i`` on normal training rows. ``rank``: the
    mean over scores of each value's empirical CDF among its reference (in
    [0, 1]). ``fisher``: Fisher's combination of those CDF values read as
    one-sided p-values, sum_i log p_i with p_i = (rank + 1) / (n_ref + 1):
    one very low p-value is enough to make a row anomalous, where ``rank``
    averages it away. ``zsum``: the sum of the scores standardized with their
    reference's mean and standard deviation; for log-density scores this is a
    sum of standardized log-density terms.
    """
    if rule not in FUSION_RULES:
        raise ValueError(f"unknown rule {rule!r}; use {' or '.join(FUSION_RULES)}")
    parts = []
    for s, ref in zip(scores, references, strict=True):
        ref = np.sort(np.asarray(ref, dtype=np.float64))
        if rule == "zsum":
            parts.append((np.asarray(s) - ref.mean()) / (ref.std() + 1e-12))
            continue
        s = np.asarray(s, dtype=np.float64)
        # the empirical CDF position, for rank and fisher; a reference within TIE_TOLERANCE (relative)
        # counts as equal, so a row that is itself a reference row ranks the same whatever block it
        # was scored in (blockwise sums may differ in the last bit)
        below = np.searchsorted(ref, s + TIE_TOLERANCE * np.maximum(1.0, np.abs(s)), side="right")
        parts.append(below / len(ref) if rule == "rank" else np.log((below + 1) / (len(ref) + 1)))
    return np.mean(parts, axis=0) if rule == "rank" else np.sum(parts, axis=0)


def fitted_vae(det: BaseDetector) -> VAEDetector | None:
    """The fitted VAE that ``det`` is or holds (a corrected likelihood's ``vae_``), if any."""
    vae = det if isinstance(det, VAEDetector) else getattr(det, "vae_", None)
    return vae if isinstance(vae, VAEDetector) else None


class FusionDetector(BaseDetector):
    """Combines its detectors' scores (higher = more normal) by :func:`fuse`'s ``rule``.

    Each unfitted detector is cloned and fitted on X less a seeded hold-out of at
    most ``reference_rows`` (and at most half) of its rows (a fitted one is used
    as it is); the references are the detectors' scores on that hold-out
    (:func:`~vaelab.detectors.base.reference_split`), and each part's own threshold comes from
    them (:meth:`~vaelab.detectors.base.BaseDetector.fit_part`), not from another scoring pass
    over training rows. A ``LatentDetector`` without its own ``vae`` reuses the first
    fitted VAE of the same latent size among the detectors (a ``VAEDetector``
    or the one a corrected likelihood holds), so likelihood and latent codes
    come from one model; a ``VAEDetector``, or a corrected likelihood whose VAE
    template, trains like an earlier ``VAEDetector`` part reuses its model
    instead of training a twin (the corrected likelihood then takes the
    fusion's reference rows as its own: one VAE, one hold-out, as the anomaly
    benchmark computes a fusion).

    ``refit`` (:func:`refits`): on small data the hold-out would cost the parts
    much of their training rows, so after the references are scored the
    unfitted parts are fitted again on every row, and those fits score (the
    references stay the hold-out's scores under the first fits: a model scores
    the rows it trained on optimistically). ``never`` is the fusion as the anomaly
    benchmark computes it; the refit costs a second training of each part. ``auto``
    (the default since it was measured: docs/anomaly.md) refits when the hold-out is
    more than a tenth of the rows, so with the default 2,000 reference rows below
    20,000 training rows.

    ``ensemble`` > 1: ``detectors`` are that many equal groups, one per VAE training seed (the same
    parts, seeded apart); each group is fused by ``rule`` and the groups' fused scores by the rank
    rule, all against the one hold-out, as the anomaly benchmark fuses a detector over its seeds.
    Parts share a VAE only within their group.
    """

    def __init__(self, detectors: tuple[BaseDetector, ...] = (), rule: str = "rank",
                 reference_rows: int | None = 2000, contamination: float = 0.1, threshold_rows: int | None = 2000,
                 random_state: int = 0, calibration: float = 0.0, fpr: float | None = None,
                 refit: str = "auto", ensemble: int = 1) -> None:
        super().__init__(contamination, threshold_rows, calibration, fpr)
        self.detectors = detectors
        self.rule = rule
        self.reference_rows = reference_rows
        self.random_state = random_state
        self.refit = refit
        self.ensemble = ensemble

    def _groups(self, items: list) -> list[list]:
        """``items`` (one per part) cut into the :attr:`ensemble` groups."""
        size = len(items) // self.ensemble
        return [list(items[i * size:(i + 1) * size]) for i in range(self.ensemble)]

    def _fit(self, X: np.ndarray) -> None:
        if self.rule not in FUSION_RULES:
            raise ValueError(f"unknown rule {self.rule!r}; use {' or '.join(FUSION_RULES)}")
        if not self.detectors:
            raise ValueError("FusionDetector needs at least one detector")
        if self.ensemble < 1 or len(self.detectors) % self.ensemble:
            raise ValueError(f"{len(self.detectors)} detectors cannot form {self.ensemble} equal groups")
        fit, held = reference_split(len(X), self.reference_rows, self.random_state)
        refit = refits(self.refit, len(held), len(X))
        self.detectors_, self.references_ = self._fit_groups(X[fit], X[held])
        if refit:
            self.detectors_, _ = self._fit_groups(X, X[held])
            for part, reference in zip(self.detectors_, self.references_):
                if not any(part is given for given in self.detectors):  # refitted: its threshold from the held-out scores
                    part._threshold_from(np.sort(reference))

    def _fit_groups(self, X: np.ndarray, ref: np.ndarray) -> tuple[list[BaseDetector], list[np.ndarray]]:
        """:meth:`_fit_parts` of each group in turn, their parts and references one after another."""
        parts, references = [], []
        for group in self._groups(list(self.detectors)):
            fitted, scored = self._fit_parts(group, X, ref)
            parts, references = parts + fitted, references + scored
        return parts, references

    def _fit_parts(self, detectors: list[BaseDetector], X: np.ndarray,
                   ref: np.ndarray) -> tuple[list[BaseDetector], list[np.ndarray]]:
        """(``detectors`` fitted on X, or as given when fitted already; their scores of ``ref``)."""
        parts, references = [], []
        for det in detectors:
            if is_fitted(det):
                parts.append(det)
                references.append(det.score_samples(ref))
                continue
            det = unfitted_part(det)
            twin = (next((d for d in parts if isinstance(d, VAEDetector) and det.trains_like(d)), None)
                    if isinstance(det, (VAEDetector, CorrectedLikelihoodDetector)) else None)
            if twin is not None:  # another score of a VAE already trained here: share it (and the references)
                references.append(det.fit_sharing(X, twin, ref))
            else:
                if isinstance(det, LatentDetector) and det.vae is None:
                    shared = [v for v in map(fitted_vae, parts) if v is not None and v.latent_dim == det.latent_dim]
                    if shared:
                        det.set_params(vae=shared[0])
                references.append(det.fit_part(X, ref))
            parts.append(det)
        return parts, references

    def _score(self, X: np.ndarray) -> np.ndarray:
        scores = [d.score_samples(X) for d in self.detectors_]
        if self.ensemble == 1:
            return fuse(scores, self.references_, self.rule)
        groups = list(zip(self._groups(scores), self._groups(self.references_)))
        return fuse([fuse(s, r, self.rule) for s, r in groups], [fuse(r, r, self.rule) for _, r in groups], "rank")

    def explain(self, X) -> np.ndarray:
        """Per-feature contributions, (n, d): those of the first part that splits its own score
        exactly (a ``VAEDetector``: e.g. the reconstruction error's squared errors), since the fused
        score has no exact split and occluding each feature of it would rescore every part d times;
        occlusion of the fused score where no part has one."""
        exact = next((d for d in self.detectors_ if isinstance(d, VAEDetector)), None)
        return exact.explain(X) if exact is not None else super().explain(X)

    def _state(self, writer: StateWriter, prefix: str) -> dict[str, Any]:
        for i, ref in enumerate(self.references_):
            writer.array(f"{prefix}ref{i}", ref)
        return {"parts": [writer.nested(d, f"{prefix}part{i}.") for i, d in enumerate(self.detectors_)]}

    def _restore(self, meta: dict[str, Any], reader: StateReader, prefix: str) -> None:
        self.detectors_ = [reader.nested(m, f"{prefix}part{i}.") for i, m in enumerate(meta["parts"])]
        self.references_ = [reader.array(f"{prefix}ref{i}") for i in range(len(self.detectors_))]
