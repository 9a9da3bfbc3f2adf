"""Detectors that fit an estimator on features of the rows: the VAE's latent means
(:class:`LatentDetector`) or the original features (:class:`RawDetector`, the baselines)."""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.decomposition import PCA
from sklearn.preprocessing import StandardScaler
from sklearn.utils.validation import check_is_fitted

from vaelab.detectors.base import BaseDetector, StateReader, StateWriter, feature_scaling, subsample
from vaelab.detectors.estimators import ESTIMATOR_SETTINGS, density_estimator, estimator_scores
from vaelab.detectors.vae import VAEDetector
from vaelab.errors import ModelFileError

PROBE_ROWS = 64  # fit rows whose scores a saved detector stores, to check its refit on load


class EstimatorDetector(BaseDetector):
    """Shared part of the latent-space and raw-data detectors: standardize, then an estimator.

    ``max_fit_rows`` fits the estimator on a seeded subsample of at most that
    many rows (kernel methods cost O(n^2) to O(n^3) in the rows). Saved, the
    estimator is stored as the features it was fitted on and refitted on load
    with its seed (every estimator here is deterministic given its seed); the
    scores of stored probe rows are compared after the refit, so a library
    change that alters the estimator is reported instead of scoring differently.
    """

    def __init__(self, estimator: str, max_fit_rows: int | None, ocsvm_nu: float, gmm_components: int,
                 gmm_full_max_dim: int, iforest_estimators: int, nystroem_components: int, contamination: float,
                 threshold_rows: int | None, random_state: int, calibration: float, fpr: float | None) -> None:
        super().__init__(contamination, threshold_rows, calibration, fpr)
        self.estimator = estimator
        self.max_fit_rows = max_fit_rows
        self.ocsvm_nu = ocsvm_nu
        self.gmm_components = gmm_components
        self.gmm_full_max_dim = gmm_full_max_dim
        self.iforest_estimators = iforest_estimators
        self.nystroem_components = nystroem_components
        self.random_state = random_state

    def _features(self, X: np.ndarray, fitting: bool) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def _fit(self, X: np.ndarray) -> None:
        Z = self._features(X, fitting=True)
        self._fit_estimator(Z[subsample(len(Z), self.max_fit_rows, self.random_state)])

    def _fit_estimator(self, Z: np.ndarray) -> None:
        """Standardize and fit the estimator on features Z (kept: a saved detector refits from them)."""
        self.fit_features_ = np.asarray(Z, dtype=np.float64)
        self.scaler_ = StandardScaler().fit(self.fit_features_)
        settings = {k: getattr(self, k) for k in ESTIMATOR_SETTINGS}
        self.estimator_ = density_estimator(self.estimator, self.random_state, *self.fit_features_.shape, **settings)
        self.estimator_.fit(self.scaler_.transform(self.fit_features_))

    def _estimator_scores(self, Z: np.ndarray) -> np.ndarray:
        return estimator_scores(self.estimator_, self.scaler_.transform(Z))

    def _score(self, X: np.ndarray) -> np.ndarray:
        return self._estimator_scores(self._features(X, fitting=False))

    def _state(self, writer: StateWriter, prefix: str) -> dict[str, Any]:
        if hasattr(self, "fit_features_"):
            writer.array(f"{prefix}fit_features", self.fit_features_)
            writer.array(f"{prefix}probe_scores", self._estimator_scores(self.fit_features_[:PROBE_ROWS]))
        return {}

    def _restore(self, meta: dict[str, Any], reader: StateReader, prefix: str) -> None:
        if not reader.has(f"{prefix}fit_features"):
            return
        self._fit_estimator(reader.array(f"{prefix}fit_features"))
        probe = self._estimator_scores(self.fit_features_[:PROBE_ROWS])
        if not np.allclose(probe, reader.array(f"{prefix}probe_scores"), rtol=1e-6, atol=1e-9):
            raise ModelFileError(f"the {self.estimator} estimator refitted on load scores differently from the "
                                 "saved one (another scikit-learn version?)", reader.path)


class LatentDetector(EstimatorDetector):
    """An estimator fitted on the latent means of a VAE (fitted here, or ``vae`` given fitted)."""

    def __init__(self, estimator: str = "ocsvm", vae: VAEDetector | None = None, latent_dim: int = 5,
                 epochs: int = 50, max_fit_rows: int | None = 10000, ocsvm_nu: float = 0.1, gmm_components: int = 10,
                 gmm_full_max_dim: int = 50, iforest_estimators: int = 200, nystroem_components: int = 500,
                 contamination: float = 0.1, threshold_rows: int | None = 2000, random_state: int = 0,
                 calibration: float = 0.0, fpr: float | None = None) -> None:
        super().__init__(estimator, max_fit_rows, ocsvm_nu, gmm_components, gmm_full_max_dim, iforest_estimators,
                         nystroem_components, contamination, threshold_rows, random_state, calibration, fpr)
        self.vae = vae
        self.latent_dim = latent_dim
        self.epochs = epochs

    def _features(self, X: np.ndarray, fitting: bool) -> np.ndarray:
        if fitting:
            if self.vae is not None:
                check_is_fitted(self.vae, "model_")
                self.vae_ = self.vae
            else:
                self.vae_ = VAEDetector(latent_dim=self.latent_dim, epochs=self.epochs,
                                        random_state=self.random_state).fit(X)
        return self.vae_.encode(X)

    def _state(self, writer: StateWriter, prefix: str) -> dict[str, Any]:
        return {**super()._state(writer, prefix), "vae": writer.nested(self.vae_, f"{prefix}vae.")}

    def _restore(self, meta: dict[str, Any], reader: StateReader, prefix: str) -> None:
        self.vae_ = reader.nested(meta["vae"], f"{prefix}vae.")
        super()._restore(meta, reader, prefix)


class RawDetector(EstimatorDetector):
    """Baselines on the original features: an estimator after optional PCA, or ``pca-recon``.

    Features outside [0, 1] are standardized first (training statistics), as
    for the VAE. ``pca-recon`` scores by minus the squared error of the PCA
    reconstruction, with at most half as many components as features.
    """

    def __init__(self, estimator: str = "ocsvm", pca_components: int | None = 50, max_fit_rows: int | None = 10000,
                 ocsvm_nu: float = 0.1, gmm_components: int = 10, gmm_full_max_dim: int = 50,
                 iforest_estimators: int = 200, nystroem_components: int = 500, contamination: float = 0.1,
                 threshold_rows: int | None = 2000, random_state: int = 0, calibration: float = 0.0,
                 fpr: float | None = None) -> None:
        super().__init__(estimator, max_fit_rows, ocsvm_nu, gmm_components, gmm_full_max_dim, iforest_estimators,
                         nystroem_components, contamination, threshold_rows, random_state, calibration, fpr)
        self.pca_components = pca_components

    def _features(self, X: np.ndarray, fitting: bool) -> np.ndarray:
        if fitting:
            self.center_, self.scale_ = feature_scaling(X)
        X = (X - self.center_) / self.scale_
        if fitting:
            k = min(self.pca_components or X.shape[1], X.shape[0], X.shape[1])
            if self.estimator == "pca-recon":
                k = min(k, max(1, X.shape[1] // 2))
            self.pca_ = PCA(n_components=k, random_state=self.random_state).fit(X) if self.pca_components else None
        return X if self.pca_ is None else self.pca_.transform(X)

    def _fit(self, X: np.ndarray) -> None:
        if self.estimator == "pca-recon":
            if not self.pca_components:
                raise ValueError("pca-recon needs pca_components")
            self._features(X, fitting=True)
            return
        super()._fit(X)

    def _residuals(self, X: np.ndarray) -> np.ndarray:
        """Squared residuals of the PCA reconstruction per (standardized) feature, (n, d)."""
        X = (X - self.center_) / self.scale_
        return (X - self.pca_.inverse_transform(self.pca_.transform(X))) ** 2

    def _score(self, X: np.ndarray) -> np.ndarray:
        if self.estimator == "pca-recon":
            return -self._residuals(X).sum(1)
        return super()._score(X)

    def explain(self, X) -> np.ndarray:
        """``pca-recon``: the squared residual of each standardized feature, exact (they sum to minus the
        score); the other estimators: occlusion (:meth:`BaseDetector.explain`)."""
        if self.estimator == "pca-recon":
            return self._residuals(self._checked(X))
        return super().explain(X)

    def _state(self, writer: StateWriter, prefix: str) -> dict[str, Any]:
        writer.array(f"{prefix}center", self.center_)
        writer.array(f"{prefix}scale", self.scale_)
        if self.pca_ is not None:
            for name in ("mean_", "components_", "explained_variance_"):
                writer.array(f"{prefix}pca.{name}", getattr(self.pca_, name))
        return super()._state(writer, prefix)

    def _restore(self, meta: dict[str, Any], reader: StateReader, prefix: str) -> None:
        self.center_, self.scale_ = reader.array(f"{prefix}center"), reader.array(f"{prefix}scale")
        self.pca_ = None
        if reader.has(f"{prefix}pca.mean_"):
            comps = reader.array(f"{prefix}pca.components_")
            self.pca_ = PCA(n_components=comps.shape[0])
            self.pca_.mean_, self.pca_.components_ = reader.array(f"{prefix}pca.mean_"), comps
            self.pca_.explained_variance_ = reader.array(f"{prefix}pca.explained_variance_")
            self.pca_.n_components_, self.pca_.n_features_in_ = comps.shape[0], comps.shape[1]
        super()._restore(meta, reader, prefix)
