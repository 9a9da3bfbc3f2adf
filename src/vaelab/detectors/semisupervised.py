"""M2 (Kingma et al. 2014) as a detector: with a few labelled anomalies (SemiSupervisedDetector), with
normal rows labelled by class (ClassConditionalDetector), or by the clusters found in them
(ClusterConditionalDetector)."""

from __future__ import annotations

from typing import Any

import numpy as np

from vaelab.clusters import Clusters, find_clusters, stable_clusters
from vaelab.config import ModelConfig, TrainConfig
from vaelab.data.labels import LABELLED_SHARE
from vaelab.detectors.base import (BaseDetector, StateReader, StateWriter, feature_likelihood, feature_scaling,
                                   finite_rows, subsample)
from vaelab.detectors.corrections import complexity_slope, compression_nats, feature_range
from vaelab.detectors.fusion import fuse
from vaelab.detectors.vae import ScaledInput, model_state, restore_model
from vaelab.runtime import resolve_device
from vaelab.scores import class_elbo, class_probabilities
from vaelab.training import train_m2


REFERENCE_RULES = ("classified-normal", "all")  # which training rows the parts' p-values are read against
LIKELIHOOD_CORRECTIONS = ("none", "complexity")  # what the likelihood part is corrected for


class SemiSupervisedDetector(ScaledInput, BaseDetector):
    """M2 with two classes (0 normal, 1 anomaly) fitted on X and partial labels y.

    ``fit(X, y)``: y is 1 for known anomalies, 0 for known normals and -1 for
    unlabelled rows (y=None: all unlabelled). The class prior p(anomaly) is
    ``anomaly_prior``; ``balance`` weighs M2's class-balance term (see
    :class:`vaelab.models.m2.M2`; only when some rows are labelled), which keeps
    the classifier from putting every unlabelled row in the anomaly class when
    all labels are anomalies. Its default, 10, is the smallest of 1 and 10 at
    which the classifier called at least 90% (1 - 2 x the prior) of the
    unlabelled training rows normal in every labelled cell of Deep SAD's
    experiment 1 (a check without labels, :meth:`normal_share`; at 1 some
    cells fell to 82%). Score (higher = more normal), by :func:`fuse`'s ``fisher``
    rule: log p_a + log p_b, where p is the empirical CDF position, among the
    reference rows, of (a) L(x, normal), M2's bound on
    log p(x, y=normal) (how likely x is as a normal point: the generative view,
    which catches novel kinds of anomaly) and (b) log q(normal|x) (the
    classifier: the discriminative view, which catches the known kinds). Either
    part alone can flag a row. Not U(x), the bound with y marginalised: M2 also
    models the labelled anomalies, so U rates them likely. The reference rows
    (``references``): "classified-normal", the rows not labelled anomalous that
    the classifier puts in the normal class (unlabelled anomalies, pollution,
    would otherwise set a floor under the p-values of rows like them; all of
    them if that keeps under a tenth, and all of them when no row is labelled:
    the classifier is then untaught), or "all" of the rows not labelled
    anomalous. ``likelihood_correction`` = "complexity" (the default) replaces
    part (a) by its part that input complexity does not explain (Serra et al.
    2020, as the ``likelihood-complexity`` detector: minus a least-squares
    multiple of the zlib code length, the slope fitted on the reference rows),
    so that inputs with little ink are not rated likely for that alone; "none"
    keeps L(x, normal). Chosen by a rule written before it was measured: the
    default if, on Deep SAD's experiment 1 with three seeds, its mean over the
    five label ratios is higher and no ratio is lower by more than 0.2 points
    (it was higher at every one, by 0.4 to 1.3).
    """

    fusion_rule = "fisher"  # how the two parts are combined (see fuse)

    def __init__(self, latent_dim: int = 5, hidden_dims: tuple[int, ...] = (400,), epochs: int = 50,
                 batch_size: int = 128, lr: float = 1e-3, alpha: float = 50.0, anomaly_prior: float = 0.05,
                 balance: float = 10.0, labelled_share: float = LABELLED_SHARE, reference_rows: int | None = 2000,
                 references: str = "classified-normal", likelihood_correction: str = "complexity",
                 contamination: float = 0.1,
                 threshold_rows: int | None = 2000, random_state: int = 0, device: str = "cpu",
                 calibration: float = 0.0, fpr: float | None = None) -> None:
        super().__init__(contamination, threshold_rows, calibration, fpr)
        self.latent_dim = latent_dim
        self.hidden_dims = hidden_dims
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.alpha = alpha
        self.anomaly_prior = anomaly_prior
        self.balance = balance
        self.labelled_share = labelled_share
        self.reference_rows = reference_rows
        self.references = references
        self.likelihood_correction = likelihood_correction
        self.random_state = random_state
        self.device = device

    def _normal_rows(self, y, n: int) -> np.ndarray:
        """The rows not labelled anomalous: calibration rows and thresholds come from these."""
        y = np.full(n, -1) if y is None else np.asarray(y)
        if y.shape != (n,) or not np.isin(y, (-1, 0, 1)).all():
            raise ValueError("y must hold one of -1 (unlabelled), 0 (normal), 1 (anomaly) per row")
        return np.flatnonzero(y != 1)

    def _fit_rows(self, X: np.ndarray, y: np.ndarray | None) -> None:
        self._y = np.full(len(X), -1) if y is None else np.asarray(y).astype(np.int64)
        try:
            self._fit(X)
        finally:
            del self._y

    def score_parts(self, X) -> dict[str, np.ndarray]:
        """The two parts the score combines, each higher = more normal: "likelihood",
        L(x, normal), and "classifier", log q(normal|x)."""
        return self._parts(self._checked(X))

    def _parts(self, X: np.ndarray) -> dict[str, np.ndarray]:
        x = self._prepare(X)
        normal_class, log_q = self._normal_class(x)
        likelihood = class_elbo(self.model_, x, normal_class, seed=self.random_state)
        if self.slope_:
            likelihood = likelihood - self.slope_ * self._complexity(X)
        return {"likelihood": likelihood, "classifier": log_q}

    def _normal_class(self, x: np.ndarray) -> tuple["int | np.ndarray", np.ndarray]:
        """(the normal class each row is scored in, log q(that class|x)) for rows in the model's units:
        here class 0, the one normal class."""
        return 0, self._log_normal(x)

    def _reference_pool(self) -> np.ndarray:
        """The training rows the references are drawn from: those not labelled anomalous."""
        return np.flatnonzero(self._y != 1)

    def _m2_config(self, labelled: bool) -> ModelConfig:
        """M2's settings: this detector's network, and its classes (:meth:`_class_settings`)."""
        return ModelConfig(name="m2", latent_dim=self.latent_dim, hidden_dims=tuple(self.hidden_dims), alpha=self.alpha,
                           **self._class_settings(labelled))

    def _class_settings(self, labelled: bool) -> dict[str, Any]:
        """M2's classes: two, with prior (1 - ``anomaly_prior``, ``anomaly_prior``), and the class-balance
        term only when some rows are labelled."""
        return {"n_classes": 2, "class_prior": (1 - self.anomaly_prior, self.anomaly_prior),
                "balance": self.balance if labelled else 0.0}

    def _complexity(self, X: np.ndarray) -> np.ndarray:
        """The input complexity L(x) of rows X in nats (zlib code length over the training range)."""
        return compression_nats(X, self.low_, self.high_)

    def _log_normal(self, x: np.ndarray) -> np.ndarray:
        """log q(normal|x) of rows in the model's units: the classifier part."""
        return self._class_log_probabilities(x)[:, 0]

    def _class_log_probabilities(self, x: np.ndarray) -> np.ndarray:
        """log q(y|x) for every class, (n, n_classes), of rows in the model's units."""
        return np.log(np.clip(class_probabilities(self.model_, x), 1e-30, None))

    def _fit(self, X: np.ndarray) -> None:
        if not 0 < self.anomaly_prior < 1:
            raise ValueError(f"anomaly_prior must be in (0, 1); got {self.anomaly_prior}")
        if self.references not in REFERENCE_RULES:
            raise ValueError(f"references must be one of {REFERENCE_RULES}; got {self.references!r}")
        if self.likelihood_correction not in LIKELIHOOD_CORRECTIONS:
            raise ValueError(f"likelihood_correction must be one of {LIKELIHOOD_CORRECTIONS}; "
                             f"got {self.likelihood_correction!r}")
        self.mean_, self.scale_ = feature_scaling(X)
        labelled = bool((self._y >= 0).any())  # without labels the balance and the references' rule stay off
        config = self._m2_config(labelled)
        train = TrainConfig(epochs=self.epochs, batch_size=self.batch_size, lr=self.lr, seed=self.random_state,
                            device=self.device, progress=False)
        self.model_ = train_m2(self._prepare(X), self._y, config, train, likelihood=feature_likelihood(X),
                               labelled_share=self.labelled_share)
        normal = self._reference_pool()
        ref = X[normal[subsample(len(normal), self.reference_rows, self.random_state)]]
        self.slope_, (self.low_, self.high_) = 0.0, feature_range(X)
        parts, keep = self._parts(ref), np.ones(len(ref), dtype=bool)
        if self.references == "classified-normal" and labelled:
            classified = self.classified_normal(parts)
            if classified.sum() >= max(2, 0.1 * len(classified)):
                keep = classified
        parts = {name: part[keep] for name, part in parts.items()}
        if self.likelihood_correction == "complexity":
            complexity = self._complexity(ref[keep])
            self.slope_ = complexity_slope(parts["likelihood"], complexity)
            parts["likelihood"] = parts["likelihood"] - self.slope_ * complexity
        self.references_ = list(parts.values())

    def normal_share(self, X) -> float:
        """The share of rows of X that the classifier puts in the normal class: on the unlabelled
        training rows, a check that needs no labels (near 1 - ``anomaly_prior`` when the prior holds;
        far below it, the classifier has drawn normal rows into the anomaly class)."""
        log_normal = self._log_normal(self._prepare(self._checked(X)))
        return float(self.classified_normal({"classifier": log_normal}).mean())

    @staticmethod
    def classified_normal(parts: dict[str, np.ndarray]) -> np.ndarray:
        """Which rows of :meth:`score_parts`' output the classifier puts in the normal class."""
        return parts["classifier"] >= np.log(0.5)

    def _score(self, X: np.ndarray) -> np.ndarray:
        return self.fuse_parts(self._parts(X))

    def fuse_parts(self, parts: dict[str, np.ndarray], rule: str | None = None) -> np.ndarray:
        """The score from :meth:`score_parts`' output, by ``rule`` (default: the detector's)."""
        return fuse(list(parts.values()), self.references_, rule or self.fusion_rule)

    def _state(self, writer: StateWriter, prefix: str) -> dict[str, Any]:
        for i, ref in enumerate(self.references_):
            writer.array(f"{prefix}ref{i}", ref)
        for name, value in (("low_", self.low_), ("high_", self.high_), ("slope_", np.array([self.slope_]))):
            writer.array(f"{prefix}{name}", value)
        return model_state(writer, prefix, self.model_, self.mean_, self.scale_)

    def _restore(self, meta: dict[str, Any], reader: StateReader, prefix: str) -> None:
        self.model_, self.mean_, self.scale_ = restore_model(meta, reader, prefix)
        self.references_ = [reader.array(f"{prefix}ref{i}") for i in range(2)]
        if reader.has(f"{prefix}slope_"):  # files written before the correction existed have none
            self.low_, self.high_ = reader.array(f"{prefix}low_"), reader.array(f"{prefix}high_")
            self.slope_ = float(reader.array(f"{prefix}slope_")[0])
        else:
            self.slope_ = 0.0


class ClassConditionalDetector(SemiSupervisedDetector):
    """Normal rows that come labelled with their class (products, machine states, the nine digits
    left in): flag rows that belong to none of the classes (open-set recognition).

    ``fit(X, y)``: y holds every training row's class (any integers; all rows
    are normal). M2 (Kingma et al. 2014) is trained with every label known, one
    class per normal class, prior = the training shares. Score: the
    :class:`SemiSupervisedDetector`'s rule with its defaults, the normal class
    now being the class the classifier picks: Fisher's combination of the
    p-values of (a) L(x, y-hat), M2's bound on log p(x, y-hat) less what input
    complexity explains of it, and (b) max_y log q(y|x), the classifier's
    confidence (Hendrycks & Gimpel 2017: a novel class gets less confident
    answers). The references are (at most ``reference_rows`` of) the training
    rows. Needs labels; without them use an unsupervised detector.
    """

    def __init__(self, latent_dim: int = 5, hidden_dims: tuple[int, ...] = (400,), epochs: int = 50,
                 batch_size: int = 128, lr: float = 1e-3, alpha: float = 50.0, reference_rows: int | None = 2000,
                 likelihood_correction: str = "complexity", contamination: float = 0.1,
                 threshold_rows: int | None = 2000, random_state: int = 0, device: str = "cpu",
                 calibration: float = 0.0, fpr: float | None = None) -> None:
        super().__init__(latent_dim=latent_dim, hidden_dims=hidden_dims, epochs=epochs, batch_size=batch_size, lr=lr,
                         alpha=alpha, reference_rows=reference_rows, references="all",
                         likelihood_correction=likelihood_correction, contamination=contamination,
                         threshold_rows=threshold_rows, random_state=random_state, device=device,
                         calibration=calibration, fpr=fpr)

    def _normal_rows(self, y, n: int) -> np.ndarray:
        if y is None:
            raise ValueError("ClassConditionalDetector needs y, the class of every training row")
        y = np.asarray(y)
        if y.shape != (n,) or not np.issubdtype(y.dtype, np.integer):
            raise ValueError("y must hold one integer class per row")
        if len(np.unique(y)) < 2:
            raise ValueError("y has one class: with a single normal class use an unsupervised detector")
        return np.arange(n)

    def _fit_rows(self, X: np.ndarray, y: np.ndarray | None) -> None:
        self.classes_, index = np.unique(np.asarray(y), return_inverse=True)
        self.class_shares_ = np.bincount(index) / len(index)
        super()._fit_rows(X, index)

    def _reference_pool(self) -> np.ndarray:
        return np.arange(len(self._y))  # every row is normal

    def _class_settings(self, labelled: bool) -> dict[str, Any]:
        """M2's classes: one per normal class, prior = the training shares, no balance term (every row
        is labelled)."""
        return {"n_classes": len(self.classes_), "class_prior": tuple(self.class_shares_.tolist()), "balance": 0.0}

    def _normal_class(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        log_q = self._class_log_probabilities(x)
        return log_q.argmax(1), log_q.max(1)

    def predict_class(self, X) -> np.ndarray:
        """The normal class the classifier puts each row in (whether or not the row is anomalous)."""
        return self.classes_[self._normal_class(self._prepare(self._checked(X)))[0]]

    def _state(self, writer: StateWriter, prefix: str) -> dict[str, Any]:
        writer.array(f"{prefix}classes_", self.classes_)
        return super()._state(writer, prefix)

    def _restore(self, meta: dict[str, Any], reader: StateReader, prefix: str) -> None:
        super()._restore(meta, reader, prefix)
        self.classes_ = reader.array(f"{prefix}classes_").astype(np.int64)


class ClusterConditionalDetector(ClassConditionalDetector):
    """Normal rows of several kinds that come without labels: :class:`ClassConditionalDetector` on the
    clusters that :func:`vaelab.clusters.find_clusters` finds in the training rows (HDBSCAN on a t-SNE
    map of their principal components), each cluster taken as a normal class.

    ``fit(X)``: unsupervised (y is ignored). A row that belongs to none of the clusters gets a low
    likelihood under the cluster its classifier picks, or an unsure classifier (Hendrycks & Gimpel
    2017), as a novel class does for :class:`ClassConditionalDetector`; on MNIST with one digit left out
    the clusters are the nine digits left in, up to about 1% of the rows. ``cluster_share``: each
    cluster holds at least this share of the (mapped) rows; ``cluster_rows``: the t-SNE map holds at
    most this many rows (the rest join their nearest clustered rows); where HDBSCAN finds fewer than
    two, k-means cuts the map in two. ``n_clusters_``: how many there are.
    """

    def __init__(self, latent_dim: int = 5, hidden_dims: tuple[int, ...] = (400,), epochs: int = 50,
                 batch_size: int = 128, lr: float = 1e-3, alpha: float = 50.0, reference_rows: int | None = 2000,
                 likelihood_correction: str = "complexity", cluster_share: float = 0.01, cluster_rows: int = 60000,
                 contamination: float = 0.1, threshold_rows: int | None = 2000, random_state: int = 0,
                 device: str = "cpu", calibration: float = 0.0, fpr: float | None = None) -> None:
        super().__init__(latent_dim=latent_dim, hidden_dims=hidden_dims, epochs=epochs, batch_size=batch_size, lr=lr,
                         alpha=alpha, reference_rows=reference_rows, likelihood_correction=likelihood_correction,
                         contamination=contamination, threshold_rows=threshold_rows, random_state=random_state,
                         device=device, calibration=calibration, fpr=fpr)
        self.cluster_share = cluster_share
        self.cluster_rows = cluster_rows

    def _normal_rows(self, y, n: int) -> np.ndarray:
        return np.arange(n)  # unsupervised: every row is normal, y is ignored

    def _fit_rows(self, X: np.ndarray, y: np.ndarray | None) -> None:
        clusters = getattr(self, "_shared", None)  # found already (stable_clusters_of), else found here
        if clusters is None:
            self._check_cluster_settings()
            clusters = find_clusters(self._scaled(X), **self._cluster_settings())
        self.n_clusters_ = clusters.n_clusters
        super()._fit_rows(X, clusters.labels)

    def stable_clusters_of(self, X, *, maps: int) -> tuple[Clusters, float]:
        """(the clusters that :meth:`fit` finds in the rows X, their stability): the mean adjusted Rand
        index between them and the clusters found from the next ``maps - 1`` seeds
        (:func:`~vaelab.clusters.stable_clusters`). Fit with them by :meth:`fit_with_clusters`, so that
        they are not found twice."""
        self._check_cluster_settings()
        X = finite_rows(X, min_rows=2)
        settings = self._cluster_settings()
        return stable_clusters(self._scaled(X), seed=settings.pop("seed"), maps=maps, **settings)

    def fit_with_clusters(self, X, clusters: Clusters):
        """:meth:`fit` with ``clusters`` of the rows X (from :meth:`stable_clusters_of`) as the classes."""
        if len(clusters.labels) != len(X):
            raise ValueError(f"clusters of {len(clusters.labels)} rows given for {len(X)} rows")
        if self.calibration:
            raise ValueError("fit_with_clusters takes clusters of every row: set calibration=0")
        self._shared = clusters
        try:
            return self.fit(X)
        finally:
            del self._shared

    def _check_cluster_settings(self) -> None:
        if not 0.0 < self.cluster_share < 0.5:
            raise ValueError(f"cluster_share must be in (0, 0.5); got {self.cluster_share}")
        if self.cluster_rows < 2:
            raise ValueError(f"cluster_rows must be >= 2; got {self.cluster_rows}")

    def _cluster_settings(self) -> dict[str, Any]:
        return {"min_share": self.cluster_share, "max_rows": self.cluster_rows, "seed": self.random_state,
                "device": str(resolve_device(self.device))}

    @staticmethod
    def _scaled(X: np.ndarray) -> np.ndarray:
        center, scale = feature_scaling(X)  # tables: every feature on one scale before the principal components
        return (X - center) / scale

    def _restore(self, meta: dict[str, Any], reader: StateReader, prefix: str) -> None:
        super()._restore(meta, reader, prefix)
        self.n_clusters_ = len(self.classes_)

    def predict_cluster(self, X) -> np.ndarray:
        """The cluster the classifier puts each row in (whether or not the row is anomalous)."""
        return self.predict_class(X)
