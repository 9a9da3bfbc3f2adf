"""The detector base class: scikit-learn's outlier-detector contract, thresholds and files.

Sign convention, everywhere: ``score_samples`` is higher for more normal
points; ``decision_function = score_samples - offset_``; ``predict`` gives +1
(normal) where the decision is >= 0 and -1 (anomaly) elsewhere.

Thresholds: with ``calibration`` > 0 that share of the normal training rows
is held out (the model never trains on them) and their scores (at most
``threshold_rows`` of them) calibrate the detector: ``score_pvalues`` gives
split-conformal p-values, and ``fpr`` sets ``offset_`` so that the
false-positive rate on normal rows is at most ``fpr``
(:mod:`vaelab.conformal`). Without ``fpr``, ``offset_`` is the
``contamination`` quantile of the calibration scores, or of the training
rows' own (optimistic) scores when ``calibration`` is 0 (scikit-learn's
convention). The parts of a composite detector (a fusion, a corrected
likelihood) take theirs from the held-out reference rows the composite scores
anyway (:meth:`BaseDetector.fit_part`).

Explanations: ``explain(X)`` gives per-feature contributions to each row's
anomaly score, (n, d), higher = pushes the row towards anomalous. Here, for
every kind, by occlusion: feature j's contribution is how much more normal
the row scores with x_j replaced by its training mean. Detectors with an
exact decomposition (the VAE's per-feature likelihood terms, the PCA
reconstruction residuals) override it.

Files: ``save(path)`` writes a safetensors file (arrays) with a JSON
description (class, constructor parameters, fitted state); ``load(path)``
rebuilds the detector without unpickling or running anything. Each class
carries its own state through ``_state`` and ``_restore``; a nested detector
met twice (a fusion's VAE shared with its latent part) is stored once.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from sklearn.base import BaseEstimator, OutlierMixin, clone
from sklearn.utils.validation import check_array, check_is_fitted

from vaelab import checkpoint as ckpt
from vaelab.conformal import conformal_pvalues, conformal_threshold
from vaelab.data.dataset import check_representable
from vaelab.errors import ModelFileError
from vaelab.fileio import write_files


def predictions(scores: np.ndarray, offset: float) -> np.ndarray:
    """+1 (normal) where ``scores - offset >= 0``, else -1 (anomaly)."""
    return np.where(np.asarray(scores) - offset >= 0, 1, -1)


def subsample(n: int, limit: int | None, seed: int) -> np.ndarray:
    """Sorted indices of at most ``limit`` of ``n`` rows (all rows if ``limit`` is None or >= n)."""
    if not limit or limit >= n:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=limit, replace=False))


def reference_split(n: int, reference_rows: int | None, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(fit rows, reference rows): sorted indices of a seeded hold-out of at most ``reference_rows``
    (and at most half) of ``n`` normal rows, and the rest. Rules that compare a score with its
    distribution on normal rows (fusions, corrections) need references the models never saw: an
    estimator scores its own fit rows optimistically (a kernel density in 200 dimensions gives every
    fit row the same self-kernel value, far above any unseen row)."""
    held = subsample(n, min(reference_rows or n, n // 2), seed)
    return np.setdiff1d(np.arange(n), held), held


def finite_rows(X, min_rows: int = 1) -> np.ndarray:
    """X as a float64 array of at least ``min_rows`` rows of finite values that the float32 models
    can hold (else a ValueError; a DataError names the first bad row and feature)."""
    X = check_array(X, dtype=np.float64, ensure_min_samples=min_rows)
    check_representable(X, None, "X")
    return X


def unfitted_part(det: "BaseDetector") -> "BaseDetector":
    """An unfitted copy of ``det`` to fit as a part of a composite detector (:meth:`BaseDetector.fit_part`):
    no calibration rows or false-positive target of its own, since the composite holds out its rows."""
    return clone(det).set_params(calibration=0.0, fpr=None)


def calibration_rows(normal: np.ndarray, share: float, seed: int) -> np.ndarray:
    """Sorted indices of the calibration rows: a seeded ``share`` of the ``normal`` rows (none for 0)."""
    if not share:
        return np.zeros(0, dtype=np.int64)
    n = int(np.ceil(share * len(normal)))
    picked = np.random.default_rng([seed, 7]).choice(len(normal), size=min(n, len(normal)), replace=False)
    return np.sort(np.asarray(normal)[picked])


def occlusion(score: Callable[[np.ndarray], np.ndarray], X: np.ndarray, baseline: np.ndarray, max_rows: int = 8192) -> np.ndarray:
    """Per-feature occlusion attributions, (n, d): ``score(X with column j set to baseline_j) - score(X)``
    for every row and feature (higher = the feature makes the row less normal). Scores ``d`` copies of
    each row, ``max_rows`` rows at a time."""
    n, d = X.shape
    out = np.empty((n, d))
    per = max(1, max_rows // (d + 1))
    for start in range(0, n, per):
        block = X[start:start + per]
        copies = np.repeat(block, d + 1, axis=0).reshape(len(block), d + 1, d)
        copies[:, np.arange(d), np.arange(d)] = baseline  # copy j has feature j occluded; the last is the row
        values = score(copies.reshape(-1, d)).reshape(len(block), d + 1)
        out[start:start + len(block)] = values[:, :d] - values[:, d:]
    return out


def in_unit_range(X: np.ndarray) -> bool:
    """Whether every value of X is in [0, 1] (pixels)."""
    return bool(X.min() >= 0.0 and X.max() <= 1.0)


LIKELIHOODS = ("auto", "bernoulli", "gaussian")  # a VAE detector's decoder: auto picks by the features' range


def feature_likelihood(X: np.ndarray, choice: str = "auto") -> str:
    """The decoder for features X: ``choice``, or for "auto" Bernoulli when every value is in [0, 1]
    (pixels) and Gaussian otherwise. A Bernoulli decoder needs values in [0, 1]."""
    if choice not in LIKELIHOODS:
        raise ValueError(f"likelihood must be one of {LIKELIHOODS}; got {choice!r}")
    if choice == "auto":
        return "bernoulli" if in_unit_range(X) else "gaussian"
    if choice == "bernoulli" and not in_unit_range(X):
        raise ValueError("likelihood='bernoulli' needs every feature value in [0, 1]")
    return choice


def feature_scaling(X: np.ndarray, standardize: bool | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(center, scale) for X: training mean and standard deviation (constant features keep scale 1)
    when ``standardize``, else none; None: standardize unless every value is in [0, 1] (pixels)."""
    if standardize is None:
        standardize = not in_unit_range(X)
    if not standardize:
        return np.zeros(X.shape[1]), np.ones(X.shape[1])
    scale = X.std(0)
    return X.mean(0), np.where(scale < 1e-12, 1.0, scale)


def is_fitted(obj: Any) -> bool:
    """Whether ``obj`` is a fitted vaelab detector."""
    return isinstance(obj, BaseDetector) and hasattr(obj, "offset_")


class BaseDetector(OutlierMixin, BaseEstimator):
    """Thresholding, validation and files written once; subclasses implement ``_fit`` and ``_score``
    (and ``_state`` / ``_restore`` for what they learn)."""

    def __init__(self, contamination: float = 0.1, threshold_rows: int | None = 2000, calibration: float = 0.0,
                 fpr: float | None = None) -> None:
        self.contamination = contamination
        self.threshold_rows = threshold_rows
        self.calibration = calibration
        self.fpr = fpr

    # ---- the scikit-learn contract ------------------------------------------
    def fit(self, X, y=None):
        X = finite_rows(X, min_rows=2)
        self._check_threshold_settings()
        normal = self._normal_rows(y, len(X))
        held = calibration_rows(normal, self.calibration, getattr(self, "random_state", 0))
        fit = np.setdiff1d(np.arange(len(X)), held)
        if len(fit) < 2 or (self.calibration and len(held) < 1):
            raise ValueError(f"a calibration share of {self.calibration} of {len(normal)} normal rows leaves "
                             f"{len(held)} to calibrate and {len(fit)} to fit on; give more rows or another share")
        self._fit_on(X[fit], None if y is None else np.asarray(y)[fit])
        return self._set_threshold(X[held] if len(held) else X[np.intersect1d(fit, normal)])

    def fit_part(self, X, reference) -> np.ndarray:
        """Fit on every row of X as a part of a composite detector (a fusion, a corrected likelihood)
        and return the scores of ``reference``: held-out normal rows that the composite scores anyway.
        The threshold is the ``contamination`` quantile of those scores, which saves :meth:`fit`'s
        scoring pass over training rows (with a slow score, such as the likelihood regret, a large
        part of a fit). Takes no calibration rows of its own (see :func:`unfitted_part`)."""
        X, reference = finite_rows(X, min_rows=2), finite_rows(reference)
        self._check_threshold_settings()
        if self.calibration:
            raise ValueError("a part of a composite detector holds out no calibration rows of its own; "
                             "set calibration=0 (unfitted_part does)")
        self._fit_on(X, None)
        scores = self._score(reference)
        self._threshold_from(np.sort(scores))
        return scores

    def _fit_part_sharing(self, X, reference, shared: Any) -> np.ndarray:
        """:meth:`fit_part` with what a composite lends this part (a fitted model, its rows) readable
        as ``self._shared`` inside ``_fit``, and gone afterwards."""
        self._shared = shared
        try:
            return self.fit_part(X, reference)
        finally:
            del self._shared

    def _fit_on(self, X: np.ndarray, y: np.ndarray | None) -> None:
        """Learn from the training rows (calibration rows already held out)."""
        self.n_features_in_ = X.shape[1]
        self.baseline_ = X.mean(0)
        self._fit_rows(X, y)

    def _check_threshold_settings(self) -> None:
        if not 0.0 < self.contamination < 0.5:
            raise ValueError(f"contamination must be in (0, 0.5); got {self.contamination}")
        if not 0.0 <= self.calibration < 1.0:
            raise ValueError(f"calibration must be a share in [0, 1); got {self.calibration}")
        if self.fpr is not None and not 0.0 < self.fpr < 1.0:
            raise ValueError(f"fpr must be in (0, 1); got {self.fpr}")
        if self.fpr is not None and not self.calibration:
            raise ValueError("fpr needs held-out calibration rows (calibration > 0): the training rows' own "
                             "scores are optimistic and guarantee nothing")

    def _normal_rows(self, y, n: int) -> np.ndarray:
        """Indices of the rows known or assumed normal (all of them, for an unsupervised detector)."""
        return np.arange(n)

    def _fit_rows(self, X: np.ndarray, y: np.ndarray | None) -> None:
        """Fit on the training rows left after the calibration rows are held out."""
        self._fit(X)

    def _set_threshold(self, X: np.ndarray):
        """Score (a subsample of at most ``threshold_rows`` of) normal rows X and set ``offset_`` from
        them; with calibration rows, keep their scores for p-values."""
        rows = subsample(len(X), self.threshold_rows, getattr(self, "random_state", 0))
        scores = np.sort(self._score(X[rows]))
        if self.calibration:
            self.calibration_scores_ = scores
        return self._threshold_from(scores)

    def _threshold_from(self, scores: np.ndarray):
        self.offset_ = (conformal_threshold(scores, self.fpr) if self.fpr is not None
                        else float(np.quantile(scores, self.contamination)))
        return self

    def set_threshold(self, *, fpr: float | None = None, contamination: float | None = None):
        """Re-derive ``offset_`` of a fitted, calibrated detector from its calibration scores, for a
        false-positive rate of at most ``fpr`` or an expected ``contamination`` (no refit)."""
        check_is_fitted(self, "offset_")
        if not hasattr(self, "calibration_scores_"):
            raise ValueError("this detector was fitted without calibration rows (calibration=0); refit it with "
                             "a calibration share to set its threshold from held-out scores")
        if (fpr is None) == (contamination is None):
            raise ValueError("give one of fpr and contamination")
        self.set_params(fpr=fpr, **({"contamination": contamination} if contamination is not None else {}))
        self._check_threshold_settings()
        return self._threshold_from(self.calibration_scores_)

    def score_pvalues(self, X) -> np.ndarray:
        """Split-conformal p-values against the held-out calibration rows: small = anomalous; for a
        normal row exchangeable with them, P(p <= a) <= a."""
        if not hasattr(self, "calibration_scores_"):
            check_is_fitted(self, "offset_")
            raise ValueError("this detector was fitted without calibration rows (calibration=0), so it has no "
                             "p-values; refit it with calibration > 0")
        return conformal_pvalues(self.calibration_scores_, self.score_samples(X))

    def explain(self, X) -> np.ndarray:
        """Per-feature contributions to each row's anomaly score, (n, d); higher = more anomalous.
        This one: occlusion, how much more normal the row scores with feature j at its training mean."""
        return occlusion(self._score, self._checked(X), self.baseline_)

    def score_samples(self, X) -> np.ndarray:
        """Higher means more normal."""
        return self._score(self._checked(X))

    def _checked(self, X) -> np.ndarray:
        """X as a float array, after checking that the detector is fitted and X has its features."""
        check_is_fitted(self, "n_features_in_")
        X = finite_rows(X)
        if X.shape[1] != self.n_features_in_:
            raise ValueError(f"X has {X.shape[1]} features, but {type(self).__name__} is expecting "
                             f"{self.n_features_in_} features as input")
        return X

    def decision_function(self, X) -> np.ndarray:
        return self.score_samples(X) - self.offset_

    def predict(self, X) -> np.ndarray:
        return predictions(self.score_samples(X), self.offset_)

    def __sklearn_clone__(self):
        """An unfitted copy with the same parameters, except that a fitted detector given as a
        parameter (a pre-fitted VAE handed to a latent detector or a fusion) is kept as it is."""
        def copy(value: Any) -> Any:
            if is_fitted(value):
                return value
            if isinstance(value, tuple) and any(isinstance(v, BaseDetector) for v in value):
                return tuple(copy(v) for v in value)
            return clone(value, safe=False)
        return type(self)(**{k: copy(v) for k, v in self.get_params(deep=False).items()})

    def _fit(self, X: np.ndarray) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _score(self, X: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    # ---- files ---------------------------------------------------------------
    def save(self, path: str | Path) -> None:
        """Write this fitted detector to ``path`` (atomically; safetensors + JSON, no pickle)."""
        write_files(self.files(path))

    def files(self, path: str | Path) -> dict[Path, bytes]:
        """What :meth:`save` writes, by path (the file and its JSON sidecar), for writing together with
        other outputs all or nothing (:func:`vaelab.fileio.write_files`)."""
        check_is_fitted(self, "offset_")
        writer = StateWriter()
        meta = writer.nested(self, "")
        return ckpt.tensor_files(path, writer.tensors, {"kind": "detector", "detector": meta,
                                                        "versions": ckpt.versions()})

    @classmethod
    def load(cls, path: str | Path) -> "BaseDetector":
        """A detector saved by :meth:`save`, ready to score."""
        path = Path(path)
        tensors, meta = ckpt.load_tensors(path)
        if meta.get("kind") != "detector":
            raise ModelFileError(f"not a detector file (kind {meta.get('kind')!r})", path)
        try:
            return StateReader(tensors, path).nested(meta["detector"], "")
        except (KeyError, TypeError, ValueError, RuntimeError) as exc:
            raise ModelFileError(f"detector file is inconsistent ({exc})", path) from None

    def _state(self, writer: "StateWriter", prefix: str) -> dict[str, Any]:  # pragma: no cover - abstract
        """Put this detector's fitted arrays into ``writer`` under ``prefix``; return the rest as JSON."""
        raise NotImplementedError

    def _restore(self, meta: dict[str, Any], reader: "StateReader", prefix: str) -> None:  # pragma: no cover
        """Inverse of :meth:`_state` on a detector built from the stored parameters."""
        raise NotImplementedError


def _plain_params(det: BaseDetector) -> dict[str, Any]:
    """Constructor parameters that are plain values (nested detectors are stored as state)."""
    out = {}
    for k, v in det.get_params(deep=False).items():
        if isinstance(v, BaseDetector) or (isinstance(v, tuple) and v and isinstance(v[0], BaseDetector)):
            continue
        out[k] = list(v) if isinstance(v, tuple) else v
    return out


class StateWriter:
    """Collects the tensors of a detector and its nested detectors, each detector and each torch model once."""

    def __init__(self) -> None:
        self.tensors: dict[str, torch.Tensor] = {}
        self._seen: dict[int, str] = {}
        self.models: dict[int, str] = {}  # id of a torch model -> the prefix it is stored under

    def array(self, key: str, value: np.ndarray) -> None:
        self.tensors[key] = torch.from_numpy(np.ascontiguousarray(value, dtype=np.float64))

    def nested(self, det: BaseDetector, prefix: str) -> dict[str, Any]:
        if id(det) in self._seen:
            return {"same_as": self._seen[id(det)]}
        self._seen[id(det)] = prefix
        for name in ("baseline_", "calibration_scores_"):
            if hasattr(det, name):
                self.array(f"{prefix}{name}", getattr(det, name))
        return {"class": type(det).__name__, "params": _plain_params(det), "offset": det.offset_,
                "n_features_in": det.n_features_in_, "state": det._state(self, prefix)}


def _detector_classes() -> dict[str, type]:
    """Every concrete subclass of BaseDetector, by name (no registry import needed here)."""
    found, todo = {}, [BaseDetector]
    while todo:
        for sub in todo.pop().__subclasses__():
            found[sub.__name__] = sub
            todo.append(sub)
    return found


class StateReader:
    """Rebuilds detectors from a file's tensors and JSON description."""

    def __init__(self, tensors: dict[str, torch.Tensor], path: Path) -> None:
        self.tensors, self.path = tensors, path
        self._built: dict[str, BaseDetector] = {}
        self.models: dict[str, Any] = {}  # prefix -> a restored model (and its scaling), for sharers

    def array(self, key: str) -> np.ndarray:
        return self.tensors[key].numpy()

    def has(self, key: str) -> bool:
        return key in self.tensors

    def nested(self, meta: dict[str, Any], prefix: str) -> BaseDetector:
        if "same_as" in meta:
            return self._built[meta["same_as"]]
        cls = _detector_classes().get(meta["class"])
        if cls is None:
            raise ModelFileError(f"unknown detector class {meta['class']!r}", self.path)
        params = {k: tuple(v) if isinstance(v, list) else v for k, v in meta["params"].items()}
        det = self._built[prefix] = cls(**params)
        det.offset_, det.n_features_in_ = float(meta["offset"]), int(meta["n_features_in"])
        for name in ("baseline_", "calibration_scores_"):
            if self.has(f"{prefix}{name}"):
                setattr(det, name, self.array(f"{prefix}{name}"))
        det._restore(meta["state"], self, prefix)
        return det
