"""The detector base class: scikit-learn's outlier-detector contract, thresholds and files.

Sign convention, everywhere: ``score_samples`` is higher for more normal
points; ``decision_function = score_samples - offset_`` where ``offset_`` is
the ``contamination`` quantile of the scores of (at most ``threshold_rows``
seeded) training rows; ``predict`` gives +1 (normal) where the decision is
>= 0 and -1 (anomaly) elsewhere.

Files: ``save(path)`` writes a safetensors file (arrays) with a JSON
description (class, constructor parameters, fitted state); ``load(path)``
rebuilds the detector without unpickling or running anything. Each class
carries its own state through ``_state`` and ``_restore``; a nested detector
met twice (a fusion's VAE shared with its latent part) is stored once.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.base import BaseEstimator, OutlierMixin, clone
from sklearn.utils.validation import check_array, check_is_fitted

from vaelab import checkpoint as ckpt
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


def finite_rows(X, min_rows: int = 1) -> np.ndarray:
    """X as a float64 array of at least ``min_rows`` rows of finite values that the float32 models
    can hold (else a ValueError; a DataError names the first bad row and feature)."""
    X = check_array(X, dtype=np.float64, ensure_min_samples=min_rows)
    check_representable(X, None, "X")
    return X


def _in_unit_range(X: np.ndarray) -> bool:
    return bool(X.min() >= 0.0 and X.max() <= 1.0)


def feature_likelihood(X: np.ndarray) -> str:
    """The decoder for features X: Bernoulli for values in [0, 1] (pixels), else Gaussian."""
    return "bernoulli" if _in_unit_range(X) else "gaussian"


def feature_scaling(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(center, scale) for X: none for features already in [0, 1] (pixels), else training
    mean and standard deviation (constant features keep scale 1)."""
    if _in_unit_range(X):
        return np.zeros(X.shape[1]), np.ones(X.shape[1])
    scale = X.std(0)
    return X.mean(0), np.where(scale < 1e-12, 1.0, scale)


def is_fitted(obj: Any) -> bool:
    """Whether ``obj`` is a fitted vaelab detector."""
    return isinstance(obj, BaseDetector) and hasattr(obj, "offset_")


class BaseDetector(OutlierMixin, BaseEstimator):
    """Thresholding, validation and files written once; subclasses implement ``_fit`` and ``_score``
    (and ``_state`` / ``_restore`` for what they learn)."""

    def __init__(self, contamination: float = 0.1, threshold_rows: int | None = 2000) -> None:
        self.contamination = contamination
        self.threshold_rows = threshold_rows

    # ---- the scikit-learn contract ------------------------------------------
    def fit(self, X, y=None):
        X = finite_rows(X, min_rows=2)
        if not 0.0 < self.contamination < 0.5:
            raise ValueError(f"contamination must be in (0, 0.5); got {self.contamination}")
        self.n_features_in_ = X.shape[1]
        self._fit(X)
        return self._set_threshold(X)

    def _set_threshold(self, X: np.ndarray):
        """``offset_``: the contamination quantile of the scores of (a subsample of) normal rows X."""
        rows = subsample(len(X), self.threshold_rows, getattr(self, "random_state", 0))
        self.offset_ = float(np.quantile(self._score(X[rows]), self.contamination))
        return self

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
    """Collects the tensors of a detector and its nested detectors, each detector once."""

    def __init__(self) -> None:
        self.tensors: dict[str, torch.Tensor] = {}
        self._seen: dict[int, str] = {}

    def array(self, key: str, value: np.ndarray) -> None:
        self.tensors[key] = torch.from_numpy(np.ascontiguousarray(value, dtype=np.float64))

    def nested(self, det: BaseDetector, prefix: str) -> dict[str, Any]:
        if id(det) in self._seen:
            return {"same_as": self._seen[id(det)]}
        self._seen[id(det)] = prefix
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
        det._restore(meta["state"], self, prefix)
        return det
