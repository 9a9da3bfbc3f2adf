"""Anomaly detectors with scikit-learn conventions.

Sign convention, everywhere: ``score_samples`` is higher for more normal
points; ``decision_function = score_samples - offset_`` where ``offset_`` is
the ``contamination`` quantile of the training scores (of at most
``THRESHOLD_ROWS`` seeded training rows); ``predict`` gives +1
(normal) where the decision is >= 0 and -1 (anomaly) elsewhere.
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.base import BaseEstimator, OutlierMixin
from sklearn.utils.validation import check_array, check_is_fitted

from vaelab.config import DEFAULT_DETECTOR, LATENT_ESTIMATORS, RAW_ESTIMATORS, ModelConfig, TrainConfig
from vaelab.models import build_model
from vaelab.runtime import seeded_init
from vaelab.scores import SCORES, latent_means, score_array
from vaelab.training import Trainer


def predictions(scores: np.ndarray, offset: float) -> np.ndarray:
    """+1 (normal) where ``scores - offset >= 0``, else -1 (anomaly)."""
    return np.where(np.asarray(scores) - offset >= 0, 1, -1)


FUSION_RULES = ("rank", "fisher", "zsum")


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
        below = np.searchsorted(ref, s, side="right")  # the empirical CDF position, for rank and fisher
        parts.append(below / len(ref) if rule == "rank" else np.log((below + 1) / (len(ref) + 1)))
    return np.mean(parts, axis=0) if rule == "rank" else np.sum(parts, axis=0)


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


def subsample(n: int, limit: int | None, seed: int) -> np.ndarray:
    """Sorted indices of at most ``limit`` of ``n`` rows (all rows if ``limit`` is None or >= n)."""
    if not limit or limit >= n:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=limit, replace=False))


THRESHOLD_ROWS = 2000


class BaseDetector(OutlierMixin, BaseEstimator):
    """Thresholding written once; subclasses implement ``_fit`` and ``_score``."""

    def __init__(self, contamination: float = 0.1) -> None:
        self.contamination = contamination

    def fit(self, X, y=None):
        X = check_array(X, dtype=np.float64)
        if not 0.0 < self.contamination < 0.5:
            raise ValueError(f"contamination must be in (0, 0.5); got {self.contamination}")
        self.n_features_in_ = X.shape[1]
        self._fit(X)
        return self._set_threshold(X)

    def _set_threshold(self, X: np.ndarray):
        """``offset_``: the contamination quantile of the scores of (a subsample of) normal rows X."""
        rows = subsample(len(X), THRESHOLD_ROWS, getattr(self, "random_state", 0))
        self.offset_ = float(np.quantile(self._score(X[rows]), self.contamination))
        return self

    def score_samples(self, X) -> np.ndarray:
        """Higher means more normal."""
        return self._score(self._checked(X))

    def _checked(self, X) -> np.ndarray:
        """X as a float array, after checking that the detector is fitted and X has its features."""
        check_is_fitted(self, "offset_")
        X = check_array(X, dtype=np.float64)
        if X.shape[1] != self.n_features_in_:
            raise ValueError(f"X has {X.shape[1]} features; the detector was fitted on {self.n_features_in_}")
        return X

    def decision_function(self, X) -> np.ndarray:
        return self.score_samples(X) - self.offset_

    def predict(self, X) -> np.ndarray:
        return predictions(self.score_samples(X), self.offset_)

    def _fit(self, X: np.ndarray) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _score(self, X: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError


class _ScaledInput:
    """Rows in the model's units: ``mean_`` / ``scale_`` from :func:`feature_scaling`, float32."""

    def _prepare(self, X: np.ndarray) -> np.ndarray:
        return ((X - self.mean_) / self.scale_).astype(np.float32)


class VAEDetector(_ScaledInput, BaseDetector):
    """Scores from a VAE fitted on X: ``recon-prob``, ``iwae``, ``elbo`` or ``recon-error``.

    Features in [0, 1] get a Bernoulli decoder; anything else is standardized
    (training statistics) and gets a Gaussian decoder with learned variance.
    """

    def __init__(self, score: str = "recon-prob", latent_dim: int = 5, hidden_dims: tuple[int, ...] = (400,),
                 epochs: int = 50, batch_size: int = 128, lr: float = 1e-3, n_samples: int | None = None,
                 contamination: float = 0.1, random_state: int = 0, device: str = "cpu") -> None:
        super().__init__(contamination)
        self.score = score
        self.latent_dim = latent_dim
        self.hidden_dims = hidden_dims
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.n_samples = n_samples
        self.random_state = random_state
        self.device = device

    def _fit(self, X: np.ndarray) -> None:
        if self.score not in SCORES:
            raise ValueError(f"unknown score {self.score!r}; known: {', '.join(SCORES)}")
        self.mean_, self.scale_ = feature_scaling(X)
        self.likelihood_ = feature_likelihood(X)
        config = ModelConfig(latent_dim=self.latent_dim, hidden_dims=tuple(self.hidden_dims))
        with seeded_init(self.random_state):
            self.model_ = build_model(config, X.shape[1], self.likelihood_)
        train = TrainConfig(epochs=self.epochs, batch_size=self.batch_size, lr=self.lr, seed=self.random_state,
                            device=self.device, progress=False)
        Trainer(self.model_, train, run_config={}).fit({"x": torch.from_numpy(self._prepare(X))})

    @classmethod
    def from_model(cls, model: torch.nn.Module, score: str = "iwae", n_samples: int | None = None,
                   X=None, contamination: float = 0.1, random_state: int = 0) -> "VAEDetector":
        """Wrap an already trained VAE (e.g. a run's ``model.safetensors``) whose inputs are rows in
        its own units; ``X`` (normal rows), if given, sets the threshold."""
        det = cls(score=score, latent_dim=model.config.latent_dim, hidden_dims=tuple(model.config.hidden_dims),
                  n_samples=n_samples, contamination=contamination, random_state=random_state)
        det.model_, det.likelihood_ = model, model.likelihood
        det.mean_, det.scale_ = np.zeros(model.input_dim), np.ones(model.input_dim)
        det.n_features_in_ = model.input_dim
        return det if X is None else det._set_threshold(check_array(X, dtype=np.float64))

    def encode(self, X) -> np.ndarray:
        """Latent means (n, latent_dim) of the fitted VAE."""
        check_is_fitted(self, "model_")
        return latent_means(self.model_, self._prepare(check_array(X, dtype=np.float64)))

    def score_with(self, X, score: str, n_samples: int | None = None) -> np.ndarray:
        """Another of the fitted VAE's scores (higher = more normal), without refitting."""
        check_is_fitted(self, "model_")
        if score not in SCORES:
            raise ValueError(f"unknown score {score!r}; known: {', '.join(SCORES)}")
        values = score_array(self.model_, self._prepare(check_array(X, dtype=np.float64)), score,
                             n_samples=n_samples, seed=self.random_state)
        return values if SCORES[score].higher_is_normal else -values

    def _score(self, X: np.ndarray) -> np.ndarray:
        return self.score_with(X, self.score, self.n_samples)


class GaussianKDE:
    """Gaussian kernel density with Scott's bandwidth n^(-1/(d+4)) (for standardized data).

    Scores by exact log-mean-exp over all fitted rows, computed in blocks with
    matrix products: unlike tree-based KDE it stays fast in hundreds of dimensions.
    """

    def __init__(self, block: int = 2048) -> None:
        self.block = block

    def fit(self, Z: np.ndarray) -> "GaussianKDE":
        self.points_ = np.asarray(Z, dtype=np.float64)
        n, d = self.points_.shape
        self.bandwidth_ = float(n ** (-1.0 / (d + 4)))
        return self

    def score_samples(self, Z: np.ndarray) -> np.ndarray:
        from scipy.special import logsumexp

        P, h = self.points_, self.bandwidth_
        n, d = P.shape
        sq_p = (P**2).sum(1)
        out = []
        for start in range(0, len(Z), self.block):
            z = np.asarray(Z[start:start + self.block], dtype=np.float64)
            dist = np.maximum((z**2).sum(1)[:, None] + sq_p[None, :] - 2 * z @ P.T, 0.0)
            out.append(logsumexp(-dist / (2 * h * h), axis=1))
        return np.concatenate(out) - np.log(n) - 0.5 * d * np.log(2 * np.pi * h * h)


def _density_estimator(name: str, random_state: int, n: int, d: int):
    """A scikit-learn estimator whose score_samples is higher for normal points."""
    from sklearn.ensemble import IsolationForest
    from sklearn.kernel_approximation import Nystroem
    from sklearn.linear_model import SGDOneClassSVM
    from sklearn.mixture import GaussianMixture
    from sklearn.pipeline import make_pipeline
    from sklearn.svm import OneClassSVM

    if name == "ocsvm":
        return OneClassSVM(gamma="scale", nu=0.1)
    if name == "ocsvm-nystroem":  # linear in n: kernel approximation + linear one-class SVM
        return make_pipeline(Nystroem(gamma=None, n_components=min(500, n), random_state=random_state),
                             SGDOneClassSVM(nu=0.1, random_state=random_state))
    if name == "iforest":
        return IsolationForest(n_estimators=200, random_state=random_state)
    if name == "gmm":  # full covariances up to 50 features; diagonal beyond (cost and overfitting grow as d^2)
        covariance = "full" if d <= 50 else "diag"
        return GaussianMixture(n_components=min(10, n), covariance_type=covariance, random_state=random_state)
    if name == "kde":
        return GaussianKDE()
    raise ValueError(f"unknown estimator {name!r}; use ocsvm, ocsvm-nystroem, iforest, gmm or kde")


class _EstimatorDetector(BaseDetector):
    """Shared part of the latent-space and raw-data detectors: standardize, then an estimator.

    ``max_fit_rows`` fits the estimator on a seeded subsample of at most that
    many rows (kernel methods cost O(n^2) to O(n^3) in the rows).
    """

    def _features(self, X: np.ndarray, fitting: bool) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def _fit(self, X: np.ndarray) -> None:
        Z = self._features(X, fitting=True)
        self._fit_estimator(Z[subsample(len(Z), self.max_fit_rows, self.random_state)])

    def _fit_estimator(self, Z: np.ndarray) -> None:
        """Standardize and fit the estimator on features Z (kept: a saved detector refits from them)."""
        from sklearn.preprocessing import StandardScaler

        self.fit_features_ = np.asarray(Z, dtype=np.float64)
        self.scaler_ = StandardScaler().fit(self.fit_features_)
        self.estimator_ = _density_estimator(self.estimator, self.random_state, *self.fit_features_.shape)
        self.estimator_.fit(self.scaler_.transform(self.fit_features_))

    def _score(self, X: np.ndarray) -> np.ndarray:
        Z = self.scaler_.transform(self._features(X, fitting=False))
        est = self.estimator_
        return est.score_samples(Z) if hasattr(est, "score_samples") else est.decision_function(Z)


class LatentDetector(_EstimatorDetector):
    """An estimator fitted on the latent means of a VAE (fitted here, or ``vae`` given fitted)."""

    def __init__(self, estimator: str = "ocsvm", vae: VAEDetector | None = None, latent_dim: int = 5,
                 epochs: int = 50, max_fit_rows: int | None = 10000, contamination: float = 0.1,
                 random_state: int = 0) -> None:
        super().__init__(contamination)
        self.estimator = estimator
        self.vae = vae
        self.latent_dim = latent_dim
        self.epochs = epochs
        self.max_fit_rows = max_fit_rows
        self.random_state = random_state

    def _features(self, X: np.ndarray, fitting: bool) -> np.ndarray:
        if fitting:
            if self.vae is not None:
                check_is_fitted(self.vae, "model_")
                self.vae_ = self.vae
            else:
                self.vae_ = VAEDetector(latent_dim=self.latent_dim, epochs=self.epochs,
                                        random_state=self.random_state).fit(X)
        return self.vae_.encode(X)


class RawDetector(_EstimatorDetector):
    """Baselines on the original features: an estimator after optional PCA, or ``pca-recon``.

    Features outside [0, 1] are standardized first (training statistics), as
    for the VAE. ``pca-recon`` scores by minus the squared error of the PCA
    reconstruction, with at most half as many components as features.
    """

    def __init__(self, estimator: str = "ocsvm", pca_components: int | None = 50,
                 max_fit_rows: int | None = 10000, contamination: float = 0.1, random_state: int = 0) -> None:
        super().__init__(contamination)
        self.estimator = estimator
        self.pca_components = pca_components
        self.max_fit_rows = max_fit_rows
        self.random_state = random_state

    def _features(self, X: np.ndarray, fitting: bool) -> np.ndarray:
        from sklearn.decomposition import PCA

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

    def _score(self, X: np.ndarray) -> np.ndarray:
        if self.estimator == "pca-recon":
            X = (X - self.center_) / self.scale_
            rec = self.pca_.inverse_transform(self.pca_.transform(X))
            return -((X - rec) ** 2).sum(1)
        return super()._score(X)


class FusionDetector(BaseDetector):
    """Combines its detectors' scores (higher = more normal) by :func:`fuse`'s ``rule``.

    Each detector is cloned and fitted on X; the references are their scores
    on (at most ``reference_rows`` of) the training rows. A ``LatentDetector``
    without its own ``vae`` reuses the first fitted ``VAEDetector`` of the same
    latent size among the detectors, so likelihood and latent codes come from
    one model.
    """

    def __init__(self, detectors: tuple[BaseDetector, ...] = (), rule: str = "rank",
                 reference_rows: int | None = 2000, contamination: float = 0.1, random_state: int = 0) -> None:
        super().__init__(contamination)
        self.detectors = detectors
        self.rule = rule
        self.reference_rows = reference_rows
        self.random_state = random_state

    def _fit(self, X: np.ndarray) -> None:
        from sklearn.base import clone

        if self.rule not in FUSION_RULES:
            raise ValueError(f"unknown rule {self.rule!r}; use {' or '.join(FUSION_RULES)}")
        if not self.detectors:
            raise ValueError("FusionDetector needs at least one detector")
        self.detectors_ = []
        for det in self.detectors:
            det = clone(det)
            if isinstance(det, LatentDetector) and det.vae is None:
                shared = [d for d in self.detectors_ if isinstance(d, VAEDetector) and d.latent_dim == det.latent_dim]
                if shared:
                    det.set_params(vae=shared[0])
            self.detectors_.append(det.fit(X))
        ref = X[subsample(len(X), self.reference_rows, self.random_state)]
        self.references_ = [d.score_samples(ref) for d in self.detectors_]

    def _score(self, X: np.ndarray) -> np.ndarray:
        return fuse([d.score_samples(X) for d in self.detectors_], self.references_, self.rule)


class SemiSupervisedDetector(_ScaledInput, BaseDetector):
    """M2 with two classes (0 normal, 1 anomaly) fitted on X and partial labels y.

    ``fit(X, y)``: y is 1 for known anomalies, 0 for known normals and -1 for
    unlabelled rows (y=None: all unlabelled). The class prior p(anomaly) is
    ``anomaly_prior``. Score (higher = more normal), by :func:`fuse`'s ``fisher``
    rule: log p_a + log p_b, where p is the empirical CDF position, among the
    non-anomalous training rows, of (a) L(x, normal), M2's bound on
    log p(x, y=normal) (how likely x is as a normal point: the generative view,
    which catches novel kinds of anomaly) and (b) log q(normal|x) (the
    classifier: the discriminative view, which catches the known kinds). Either
    part alone can flag a row. Not U(x), the bound with y marginalised: M2 also
    models the labelled anomalies, so U rates them likely.
    """

    fusion_rule = "fisher"  # how the two parts are combined (see fuse)

    def __init__(self, latent_dim: int = 5, hidden_dims: tuple[int, ...] = (400,), epochs: int = 50,
                 batch_size: int = 128, lr: float = 1e-3, alpha: float = 50.0, anomaly_prior: float = 0.05,
                 labelled_share: float = 0.2, reference_rows: int | None = 2000, contamination: float = 0.1,
                 random_state: int = 0, device: str = "cpu") -> None:
        super().__init__(contamination)
        self.latent_dim = latent_dim
        self.hidden_dims = hidden_dims
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.alpha = alpha
        self.anomaly_prior = anomaly_prior
        self.labelled_share = labelled_share
        self.reference_rows = reference_rows
        self.random_state = random_state
        self.device = device

    def fit(self, X, y=None):
        X = check_array(X, dtype=np.float64)
        y = np.full(len(X), -1) if y is None else np.asarray(y).astype(np.int64)
        if y.shape != (len(X),) or not np.isin(y, (-1, 0, 1)).all():
            raise ValueError("y must hold one of -1 (unlabelled), 0 (normal), 1 (anomaly) per row")
        self._y = y
        super().fit(X)
        del self._y
        return self

    def _set_threshold(self, X: np.ndarray):
        return super()._set_threshold(X[self._y != 1] if hasattr(self, "_y") else X)

    def score_parts(self, X) -> dict[str, np.ndarray]:
        """The two parts the score combines, each higher = more normal: "likelihood",
        L(x, normal), and "classifier", log q(normal|x)."""
        return self._parts(self._checked(X))

    def _parts(self, X: np.ndarray) -> dict[str, np.ndarray]:
        from vaelab.semisupervised import class_elbo, class_probabilities

        x = self._prepare(X)
        log_normal = np.log(np.clip(class_probabilities(self.model_, x)[:, 0], 1e-30, None))
        return {"likelihood": class_elbo(self.model_, x, 0, seed=self.random_state), "classifier": log_normal}

    def _fit(self, X: np.ndarray) -> None:
        from vaelab.semisupervised import train_m2

        if not 0 < self.anomaly_prior < 1:
            raise ValueError(f"anomaly_prior must be in (0, 1); got {self.anomaly_prior}")
        self.mean_, self.scale_ = feature_scaling(X)
        config = ModelConfig(name="m2", latent_dim=self.latent_dim, hidden_dims=tuple(self.hidden_dims), n_classes=2,
                             alpha=self.alpha, class_prior=(1 - self.anomaly_prior, self.anomaly_prior))
        train = TrainConfig(epochs=self.epochs, batch_size=self.batch_size, lr=self.lr, seed=self.random_state,
                            device=self.device, progress=False)
        self.model_ = train_m2(self._prepare(X), self._y, config, train, likelihood=feature_likelihood(X),
                               labelled_share=self.labelled_share)
        normal = np.flatnonzero(self._y != 1)
        ref = X[normal[subsample(len(normal), self.reference_rows, self.random_state)]]
        self.references_ = list(self._parts(ref).values())

    def _score(self, X: np.ndarray) -> np.ndarray:
        return self.fuse_parts(self._parts(X))

    def fuse_parts(self, parts: dict[str, np.ndarray], rule: str | None = None) -> np.ndarray:
        """The score from :meth:`score_parts`' output, by ``rule`` (default: the detector's)."""
        return fuse(list(parts.values()), self.references_, rule or self.fusion_rule)


def _vae(score: str):
    return lambda latent_dim, epochs, seed: VAEDetector(score=score, latent_dim=latent_dim, epochs=epochs,
                                                        random_state=seed)


def _latent(name: str):
    return lambda latent_dim, epochs, seed: LatentDetector(name, latent_dim=latent_dim, epochs=epochs,
                                                           random_state=seed)


def _raw(name: str):
    return lambda latent_dim, epochs, seed: RawDetector(name, random_state=seed)


# The fusions: (the other detector's registry name, rule); the likelihood part is always vae-iwae.
FUSIONS = {
    "fusion-raw-rank": ("raw-iforest", "rank"),
    "fusion-latent-rank": ("latent-ocsvm", "rank"),
    "fusion-latent-zsum": ("latent-gmm", "zsum"),
}
FUSION_IWAE_SAMPLES = 100


def _fusion(partner: str, rule: str):
    def build(latent_dim: int, epochs: int, seed: int) -> FusionDetector:
        vae = VAEDetector(score="iwae", latent_dim=latent_dim, epochs=epochs, n_samples=FUSION_IWAE_SAMPLES,
                          random_state=seed)
        return FusionDetector((vae, DETECTORS[partner](latent_dim, epochs, seed)), rule=rule, random_state=seed)
    return build


# name -> factory(latent_dim, epochs, seed)
DETECTORS = {
    **{f"vae-{s}": _vae(s) for s in SCORES},
    **{f"latent-{e}": _latent(e) for e in LATENT_ESTIMATORS},
    **{f"raw-{e}": _raw(e) for e in RAW_ESTIMATORS},
    **{name: _fusion(partner, rule) for name, (partner, rule) in FUSIONS.items()},
}


def make_detector(name: str, latent_dim: int = 5, epochs: int = 50, seed: int = 0) -> BaseDetector:
    """The detector registered as ``name``."""
    from vaelab.errors import ConfigError

    if name not in DETECTORS:
        raise ConfigError(f"unknown detector {name!r}; known: {', '.join(DETECTORS)}")
    return DETECTORS[name](latent_dim, epochs, seed)
