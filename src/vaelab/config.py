"""Dataclass configs for every setting: TOML in, validated, TOML out.

A config file has one table per section (``[data]``, ``[model]``, ``[train]``,
``[score]``, ``[detector]``, ``[study]``, ``[anomaly]``, ``[synthetic]``, ``[semisupervised]``,
``[tracking]``); every key is a field of the section's dataclass. Command-line
overrides use dotted keys, e.g. ``--set model.latent_dim=3`` or
``--set model.hidden_dims=[400,400]``; the value is read as a TOML value
(falling back to a plain string).

Longer than most modules (about 510 lines) on purpose: it is the one schema of
every setting, one frozen dataclass per section with its validation, plus the
TOML reading that builds them; splitting it would give settings two homes.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import tomli_w
import tomllib

from vaelab.errors import ConfigError

# The detector `vaelab detect` uses unless told otherwise. Chosen by evidence (docs/anomaly.md, "Choosing
# the default detector"): at latent size 5 it has the best mean rank (the rule) and the best mean over MNIST
# leave-one-class-out and one-vs-rest (three seeds), the synthetic anomaly types, the tabular benchmark and
# data never tuned on (8x8 digits, textures, tables). Until 2026-11-27: vae-recon-error, then (third
# session) fusion-recon-regret-fisher.
DEFAULT_DETECTOR = "fusion-recon-typicality-fisher"

BINARIZE_MODES = ("none", "threshold", "dynamic")
LIKELIHOODS = ("auto", "bernoulli", "gaussian")
VARIANCES = ("learned", "fixed")
ACTIVATIONS = ("relu", "tanh", "elu", "softplus")
PRECISIONS = ("float32", "bfloat16", "auto")  # auto: measured per machine (runtime.resolve_precision)


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)


def _check_choice(value: str, choices: tuple[str, ...], key: str) -> None:
    _check(value in choices, f"{key} must be one of {', '.join(choices)}; got {value!r}")


def _check_size(value: float | str, key: str) -> None:
    """A split size: 'auto', a fraction in (0, 1), or a whole count >= 1."""
    if isinstance(value, str):
        _check(value == "auto", f"{key} must be 'auto', a fraction or a count; got {value!r}")
    else:
        _check(0 < value < 1 or (value >= 1 and float(value).is_integer()),
               f"{key} must be a fraction in (0, 1) or a whole count >= 1; got {value!r}")


@dataclass(frozen=True)
class DataConfig:
    """Where the data comes from and how it is split and binarized."""

    name: str = "mnist5k"          # registered name (see `vaelab datasets`) or a file/dir path
    path: str = ""                 # for "mnist": an .npz or a directory of IDX .gz files
    cache_dir: str = ""            # download cache; "" means $VAELAB_CACHE or ~/.cache/vaelab
    download: bool = False         # for "mnist" without a path: download into cache_dir
    val_size: float | str = "auto"   # fraction or count of the training part held out
    test_size: float | str = "auto"  # used only by sources without their own test split
    split_seed: int = 0
    binarize: str = "dynamic"      # image pixels: none | threshold | dynamic
    threshold: float = 0.5
    label_column: str = "label"    # tabular files: the label column, if present
    train_limit: int = 0           # keep a seeded, stratified subset of N training rows (0 = all)

    def __post_init__(self) -> None:
        _check(bool(self.name), "data.name must not be empty")
        _check_size(self.val_size, "data.val_size")
        _check_size(self.test_size, "data.test_size")
        _check_choice(self.binarize, BINARIZE_MODES, "data.binarize")
        _check(0.0 < self.threshold < 1.0, f"data.threshold must be in (0, 1); got {self.threshold}")
        _check(self.train_limit >= 0, "data.train_limit must be >= 0")


@dataclass(frozen=True)
class ModelConfig:
    """The VAE's architecture and likelihood."""

    name: str = "vae"
    latent_dim: int = 5
    hidden_dims: tuple[int, ...] = (400,)
    activation: str = "relu"
    likelihood: str = "auto"       # auto: bernoulli for images, gaussian for tabular data
    gaussian_variance: str = "learned"  # learned (one log-variance per feature) | fixed
    gaussian_std: float = 1.0      # the decoder's standard deviation when fixed
    logvar_min: float = -12.0      # every log-variance is clamped to [logvar_min, logvar_max]
    logvar_max: float = 8.0
    # semi-supervised M2 (name = "m2"): classes of y, the classification weight, the class prior
    n_classes: int = 10
    alpha: float = 50.0            # weight of -log q(y|x) per labelled row (the paper's alpha, per-row form)
    class_prior: tuple[float, ...] = ()  # p(y); empty = uniform
    balance: float = 0.0           # weight, per unlabelled row, of KL(p(y) || a batch's mean q(y|x) over its unlabelled rows)

    def __post_init__(self) -> None:
        _check(self.n_classes >= 2, "model.n_classes must be >= 2")
        _check(self.alpha >= 0, "model.alpha must be >= 0")
        _check(self.balance >= 0, "model.balance must be >= 0")
        _check(not self.class_prior or (len(self.class_prior) == self.n_classes and all(p > 0 for p in self.class_prior)
                                        and abs(sum(self.class_prior) - 1) < 1e-6),
               "model.class_prior must list n_classes positive probabilities summing to 1")
        _check(self.latent_dim >= 1, f"model.latent_dim must be >= 1; got {self.latent_dim}")
        _check(all(h >= 1 for h in self.hidden_dims), "model.hidden_dims must be positive")
        _check_choice(self.activation, ACTIVATIONS, "model.activation")
        _check_choice(self.likelihood, LIKELIHOODS, "model.likelihood")
        _check_choice(self.gaussian_variance, VARIANCES, "model.gaussian_variance")
        _check(self.gaussian_std > 0, "model.gaussian_std must be > 0")
        _check(self.logvar_min < self.logvar_max, "model.logvar_min must be < model.logvar_max")


@dataclass(frozen=True)
class TrainConfig:
    """The training loop's settings."""

    epochs: int = 50
    batch_size: int = 128
    lr: float = 1e-3
    seed: int = 0
    device: str = "auto"
    precision: str = "auto"        # float32 | bfloat16 (autocast) | auto (measured: runtime.resolve_precision)
    checkpoint_every: int = 5      # epochs between checkpoints (and one at the end)
    eval_batch_size: int = 4096
    progress: bool = True
    # The schedule (each needs a validation split): the learning rate is multiplied by lr_decay
    # whenever the validation bound has gone lr_patience epochs without a new best, and training
    # stops once it has gone stop_patience epochs without one (0: never), keeping the best epoch.
    lr_decay: float = 1.0
    lr_patience: int = 10
    stop_patience: int = 0
    snapshot_every: int = 0        # keep the weights every this many epochs (0: none), for curves
    # On CUDA, a model whose step has fixed shapes (``graph_safe``) replays each full batch's step
    # as one captured CUDA graph: one launch instead of dozens (training.GraphedStep). No effect on CPU.
    cuda_graphs: bool = True
    # KL warm-up (Sønderby et al. 2016): the KL term of a VAE's loss is weighted epoch / kl_warmup in
    # the first kl_warmup epochs, then 1 (0: always 1). Fewer latent units collapse to the prior.
    kl_warmup: int = 0

    def __post_init__(self) -> None:
        _check(self.epochs >= 1, f"train.epochs must be >= 1; got {self.epochs}")
        _check(self.kl_warmup >= 0, f"train.kl_warmup must be >= 0; got {self.kl_warmup}")
        _check(self.batch_size >= 1, f"train.batch_size must be >= 1; got {self.batch_size}")
        _check(self.lr > 0, f"train.lr must be > 0; got {self.lr}")
        _check_choice(self.precision, PRECISIONS, "train.precision")
        _check(self.checkpoint_every >= 1, "train.checkpoint_every must be >= 1")
        _check(0 < self.lr_decay <= 1, f"train.lr_decay must be in (0, 1]; got {self.lr_decay}")
        _check(self.lr_patience >= 1, f"train.lr_patience must be >= 1; got {self.lr_patience}")
        _check(self.stop_patience >= 0, f"train.stop_patience must be >= 0; got {self.stop_patience}")
        _check(self.snapshot_every >= 0, f"train.snapshot_every must be >= 0; got {self.snapshot_every}")
        _check(self.eval_batch_size >= 1, "train.eval_batch_size must be >= 1")


# Model settings that count only for M2, so adding them did not change the identity of earlier VAEs.
M2_FIELDS = ("n_classes", "alpha", "class_prior", "balance")
# M2 settings added after M2 models were stored: left out of the identity at their default values.
LATER_M2_FIELDS = {"balance": 0.0}
# Training settings that may differ between a run and its resumption (they do not change the weights
# of the epochs already trained).
RESUMABLE_CHANGES = ("epochs", "progress", "checkpoint_every", "eval_batch_size", "device", "snapshot_every",
                     "cuda_graphs")
# Training settings added after models were stored: left out of the identity at their default
# values, so those models keep theirs.
LATER_TRAIN_FIELDS = {"lr_decay": 1.0, "lr_patience": 10, "stop_patience": 0, "kl_warmup": 0}


def identity(config: "Config | Mapping[str, Any]") -> dict[str, Any]:
    """The one answer to "is this the same model?": the settings that determine a trained model's
    weights epoch by epoch (data, the model's build, the training settings but those in
    :data:`RESUMABLE_CHANGES`). Takes a Config or its dict form (as stored in checkpoints)."""
    c = config.to_dict() if isinstance(config, Config) else config
    model = dict(c.get("model") or {})
    if model.get("name", "vae") != "m2":
        model = {k: v for k, v in model.items() if k not in M2_FIELDS}
    model = {k: v for k, v in model.items() if LATER_M2_FIELDS.get(k, object()) != v}
    train = {k: v for k, v in (c.get("train") or {}).items()
             if k not in RESUMABLE_CHANGES and LATER_TRAIN_FIELDS.get(k, object()) != v}
    return {"data": c.get("data"), "model": model, "train": train}


@dataclass(frozen=True)
class ScoreConfig:
    """Monte-Carlo settings of the likelihood scores."""

    iwae_samples: int = 1000       # K of the importance-sampled log p(x)
    recon_samples: int = 10        # L of the reconstruction probability
    elbo_samples: int = 1
    regret_samples: int = 8        # draws per row of both bounds in the likelihood regret
    batch_size: int = 1000         # rows per batch
    memory_mb: int = 256           # bound on the decoder's work tensors per chunk
    seed: int = 0
    precision: str = "auto"        # importance sampling's products: float32 | bfloat16 | auto

    def __post_init__(self) -> None:
        for key in ("iwae_samples", "recon_samples", "elbo_samples", "regret_samples", "batch_size", "memory_mb"):
            _check(getattr(self, key) >= 1, f"score.{key} must be >= 1; got {getattr(self, key)}")
        _check_choice(self.precision, PRECISIONS, "score.precision")


FUSION_REFITS = ("auto", "always", "never")  # vaelab.detectors.fusion.refits


@dataclass(frozen=True)
class DetectorConfig:
    """Settings of the detectors that `vaelab detect`, the study and the benchmarks build through the
    registry (:mod:`vaelab.detectors.registry`)."""

    threshold_rows: int = 2000      # training rows whose scores set the contamination threshold
    reference_rows: int = 2000      # training rows whose scores the fusion rules compare against
    max_fit_rows: int = 10000       # kernel estimators fit on at most this many training rows
    iwae_samples: int = 100         # K of log p(x) in vae-iwae and in every fusion's likelihood part
    ocsvm_nu: float = 0.1           # the one-class SVMs' bound on the share of training outliers
    gmm_components: int = 10
    gmm_full_max_dim: int = 50      # full covariances up to this many features, diagonal beyond
    iforest_estimators: int = 200
    nystroem_components: int = 500  # kernel features of ocsvm-nystroem
    pca_components: int = 50        # raw baselines work on this many principal components
    background_noise: float = 0.2   # likelihood-ratio: share of features replaced by noise for the background VAE
    calibration: float = 0.2        # share of the normal training rows held out for p-values and thresholds
    fpr: float = 0.0                # > 0: threshold for this false-positive rate (conformal); 0: contamination
    likelihood: str = "auto"        # the VAE detectors' decoder: auto (Bernoulli in [0, 1], else Gaussian), bernoulli, gaussian
    fusion_refit: str = "auto"      # fusions: refit the parts on every row after scoring the references (auto: hold-out > 10%)
    ensemble_seeds: int = 1         # > 1: a VAE-based detector fused over this many VAE training seeds (rank rule)
    cluster_share: float = 0.01     # m2-clusters: each cluster of the training rows holds at least this share of them
    cluster_rows: int = 60000       # m2-clusters: the t-SNE map that the clusters are found in holds at most this many rows
    cluster_stability: float = 0.8  # m2-clusters-or-fusion: the clusters' least stability (mean adjusted Rand index; > 1: never)
    cluster_maps: int = 3           # m2-clusters-or-fusion: the stability is measured over this many seeds' maps (>= 2)

    def __post_init__(self) -> None:
        for key in ("threshold_rows", "reference_rows", "max_fit_rows", "iwae_samples", "gmm_components",
                    "gmm_full_max_dim", "iforest_estimators", "nystroem_components", "pca_components", "cluster_rows"):
            _check(getattr(self, key) >= 1, f"detector.{key} must be >= 1; got {getattr(self, key)}")
        _check(self.ensemble_seeds >= 1, f"detector.ensemble_seeds must be >= 1; got {self.ensemble_seeds}")
        _check(self.cluster_maps >= 2, f"detector.cluster_maps must be at least 2; got {self.cluster_maps}")
        _check(0 < self.cluster_share < 0.5, f"detector.cluster_share must be in (0, 0.5); got {self.cluster_share}")
        _check(self.cluster_stability >= -1, f"detector.cluster_stability must be at least -1 (an adjusted Rand "
               f"index; above 1: never the clusters); got {self.cluster_stability}")
        _check(0 < self.ocsvm_nu <= 1, f"detector.ocsvm_nu must be in (0, 1]; got {self.ocsvm_nu}")
        _check(0 < self.background_noise < 1, f"detector.background_noise must be in (0, 1); got {self.background_noise}")
        _check(0 <= self.calibration < 1, f"detector.calibration must be a share in [0, 1); got {self.calibration}")
        _check(0 <= self.fpr < 1, f"detector.fpr must be in [0, 1) (0: use the contamination); got {self.fpr}")
        _check(not self.fpr or self.calibration > 0, "detector.fpr needs detector.calibration > 0")
        _check(self.likelihood in ("auto", "bernoulli", "gaussian"),
               f"detector.likelihood must be auto, bernoulli or gaussian; got {self.likelihood!r}")
        _check(self.fusion_refit in FUSION_REFITS,
               f"detector.fusion_refit must be {', '.join(FUSION_REFITS)}; got {self.fusion_refit!r}")


# Detector settings that only place thresholds (p-values, fpr): no ranking, and so no AUROC of the
# benchmarks, depends on them, and a benchmark's units leave them out of their fingerprints.
THRESHOLD_SETTINGS = ("calibration", "fpr")
# Detector settings that only the likelihood-ratio's background model depends on: the benchmarks'
# background units include them, every other unit leaves them out.
BACKGROUND_SETTINGS = ("background_noise",)
# Detector settings that only m2-clusters depends on: the benchmarks' cluster units include them.
CLUSTER_SETTINGS = ("cluster_share", "cluster_rows")
# Detector settings that only m2-clusters-or-fusion's choice depends on: cluster units include them
# where the benchmark's cluster gate is on (cluster_maps only where it is not two, the number of maps
# before the setting came, so that the cells measured then keep their fingerprints).
GATE_SETTINGS = ("cluster_stability",)
GATE_MAPS = "cluster_maps"
OLD_GATE_MAPS = 2


# Detector settings that the benchmarks' cells never use: a cell fits one seed's models, and the
# benchmark fuses them over its seeds itself (anomaly.seeds).
ENSEMBLE_SETTINGS = ("ensemble_seeds",)


def ranking_detector_keys(background: bool = False, clusters: bool = False, gate: bool = False) -> list[str]:
    """The ``[detector]`` settings that change a benchmark cell's scores (all but :data:`THRESHOLD_SETTINGS`
    and :data:`ENSEMBLE_SETTINGS`, but :data:`BACKGROUND_SETTINGS` unless ``background``, but
    :data:`CLUSTER_SETTINGS` unless ``clusters`` and but :data:`GATE_SETTINGS` unless ``gate``)."""
    left_out = (*THRESHOLD_SETTINGS, *ENSEMBLE_SETTINGS, GATE_MAPS, *(() if background else BACKGROUND_SETTINGS),
                *(() if clusters else CLUSTER_SETTINGS), *(() if gate else GATE_SETTINGS))
    return [f.name for f in dataclasses.fields(DetectorConfig) if f.name not in left_out]


@dataclass(frozen=True)
class StudyConfig:
    """The study that `vaelab run` performs: one VAE per latent size, then its figures.

    ``model.latent_dim`` is replaced by each of ``latent_dims`` in turn.
    """

    latent_dims: tuple[int, ...] = (3, 5, 200)
    rank_score: str = "iwae"       # the score that ranks test points by likelihood
    n_ranked: int = 25             # points in the global least / most likely grids
    n_per_class: int = 10          # points per digit in the conditional grids
    n_prior_samples: int = 100     # decoder samples per latent size
    traversal_steps: int = 15      # grid side for 2- and 3-dimensional latents
    tsne_points: int = 10000       # test points in every t-SNE map (all if fewer)
    tsne_perplexity: float = 30.0
    pca_dims: int = 50             # PCA before the t-SNE of raw pixels
    seed: int = 0                  # the t-SNE subset and layouts
    curve_rows: int = 1000         # test points of the log p(x)-against-epochs curve (train.snapshot_every)

    def __post_init__(self) -> None:
        _check(len(self.latent_dims) >= 1 and all(d >= 1 for d in self.latent_dims),
               "study.latent_dims must list positive sizes")
        _check(len(set(self.latent_dims)) == len(self.latent_dims), "study.latent_dims has a repeated size")
        _check_choice(self.rank_score, ("iwae", "elbo", "recon-prob"), "study.rank_score")
        for key in ("n_ranked", "n_per_class", "n_prior_samples", "traversal_steps", "tsne_points", "pca_dims",
                    "curve_rows"):
            _check(getattr(self, key) >= 1, f"study.{key} must be >= 1")
        _check(self.tsne_perplexity > 0, "study.tsne_perplexity must be > 0")


PROTOCOLS = ("loco", "ovr")
LATENT_ESTIMATORS = ("ocsvm", "ocsvm-nystroem", "iforest", "gmm", "kde")
RAW_ESTIMATORS = (*LATENT_ESTIMATORS, "pca-recon")


@dataclass(frozen=True)
class AnomalyConfig:
    """The anomaly benchmark (`vaelab benchmark anomaly`, and a stage of `vaelab run` when
    ``protocols`` is not empty): protocol x class x latent size x detector.

    One VAE per (protocol, class, latent size) on grey pixels gives every
    likelihood score and the latent codes; raw-data baselines are fitted once
    per (protocol, class). ``model``, ``train`` and ``detector`` settings apply,
    with the epochs given here. An empty ``latent_dims`` means ``study.latent_dims``.
    """

    protocols: tuple[str, ...] = ("loco",)  # loco (An & Cho 2015) and/or ovr (Ruff et al. 2018); [] = none
    classes: tuple[int, ...] = ()       # empty: every class
    latent_dims: tuple[int, ...] = (5,)  # empty: study.latent_dims
    loco_epochs: int = 20
    ovr_epochs: int = 60
    latent_estimators: tuple[str, ...] = ("ocsvm", "iforest", "gmm", "kde")
    raw_estimators: tuple[str, ...] = ("ocsvm", "iforest", "gmm", "kde", "pca-recon")
    pollution: float = 0.0              # fraction of anomalies put into training
    likelihood_ratio: bool = False      # also train each VAE's background model (Ren et al. 2019): twice the training
    likelihood_regret: bool = False     # also score vae-regret (Xiao et al. 2020): about an IWAE K=500 per row
    seeds: tuple[int, ...] = ()         # VAE training seeds, each a set of cells; empty: train.seed alone
    labelled_normals: bool = False      # also m2-classes, fitted with the normal rows' classes (loco only; no pollution)
    clusters: bool = False              # also m2-clusters: M2 on the clusters found in the normal rows (no labels)
    cluster_gate: bool = False          # with clusters: m2-clusters-or-fusion in place of m2-clusters (M2 only where
                                        # the clusters are stable, detector.cluster_stability; else fusion-recon-kde-rank)
    refit: str = "never"                # as detector.fusion_refit: refit every detector on all training rows to score

    def __post_init__(self) -> None:
        for p in self.protocols:
            _check_choice(p, PROTOCOLS, "anomaly.protocols")
        for e in self.latent_estimators:
            _check_choice(e, LATENT_ESTIMATORS, "anomaly.latent_estimators")
        for e in self.raw_estimators:
            _check_choice(e, RAW_ESTIMATORS, "anomaly.raw_estimators")
        _check(all(d >= 1 for d in self.latent_dims), "anomaly.latent_dims must list positive sizes")
        for key in ("loco_epochs", "ovr_epochs"):
            _check(getattr(self, key) >= 1, f"anomaly.{key} must be >= 1")
        _check(0.0 <= self.pollution < 0.5, f"anomaly.pollution must be in [0, 0.5); got {self.pollution}")
        _check(self.refit in FUSION_REFITS, f"anomaly.refit must be {', '.join(FUSION_REFITS)}; got {self.refit!r}")
        _check(self.clusters or not self.cluster_gate, "anomaly.cluster_gate needs anomaly.clusters = true")
        _check(not (self.labelled_normals and self.pollution > 0),
               "anomaly.labelled_normals needs anomaly.pollution = 0: the anomalies put into training have no "
               "normal class to be labelled with")


IMAGE_ANOMALY_TYPES = ("noise", "salt-pepper", "occlusion", "erasure", "rotation", "flip", "thicken", "thin",
                       "blur", "invert", "overlay")


@dataclass(frozen=True)
class SyntheticConfig:
    """Synthetic anomalies of known types in the test images (`vaelab benchmark synthetic`, and a
    stage of `vaelab run` when ``types`` is not empty). The study's models are used; the
    detectors and their settings are those of ``[anomaly]``.
    """

    types: tuple[str, ...] = IMAGE_ANOMALY_TYPES  # [] = none
    severities: tuple[float, ...] = (0.5, 1.0)
    fraction: float = 0.02              # anomalies of each type, as a fraction of the test rows
    tsne_normals: int = 1000            # normal points beside the anomalies in the t-SNE maps
    probe_folds: int = 5                # cross-validation folds of the linear probe
    seed: int = 0

    def __post_init__(self) -> None:
        for t in self.types:
            _check_choice(t, IMAGE_ANOMALY_TYPES, "synthetic.types")
        _check(len(self.severities) >= 1 and all(0 < v <= 1 for v in self.severities),
               "synthetic.severities must list values in (0, 1]")
        _check(0 < self.fraction * len(self.types) < 1 or not self.types,
               "synthetic.fraction x the number of types must be in (0, 1)")
        _check(self.tsne_normals >= 1 and self.probe_folds >= 2, "synthetic.tsne_normals >= 1, probe_folds >= 2")


@dataclass(frozen=True)
class SemiSupervisedConfig:
    """The semi-supervised stage of `vaelab run` (on when ``labels`` > 0): an M2 classifier trained
    with ``labels`` balanced labels (error rate, conditional samples, style transfer) and the
    AUROC of the SemiSupervisedDetector as labelled anomalies grow (Deep SAD protocol)."""

    labels: int = 100                   # labelled training rows for the M2 classifier; 0 = no stage
    epochs: int = 20
    latent_dim: int = 4                 # M2's z: small, or z carries the class and the decoder ignores y
    normal_class: int = 0               # the anomaly curve: this class is normal ...
    known_anomaly_classes: tuple[int, ...] = (1,)  # ... labelled anomalies come from these
    anomaly_labels: tuple[int, ...] = (0, 5, 10, 50)
    pollution: float = 0.0

    def __post_init__(self) -> None:
        _check(self.labels >= 0 and self.epochs >= 1 and self.latent_dim >= 1,
               "semisupervised.labels >= 0, epochs >= 1, latent_dim >= 1")
        _check(all(n >= 0 for n in self.anomaly_labels) and len(self.anomaly_labels) >= 1,
               "semisupervised.anomaly_labels must list counts >= 0")
        _check(self.normal_class not in self.known_anomaly_classes,
               "semisupervised.normal_class cannot be a known anomaly class")
        _check(0.0 <= self.pollution < 0.5, "semisupervised.pollution must be in [0, 0.5)")


TRACKING_BACKENDS = ("", "mlflow")


@dataclass(frozen=True)
class TrackingConfig:
    """Experiment tracking (`--track mlflow`): where finished runs are recorded; "" = nowhere. Tracking
    reads a finished run and never changes its results."""

    backend: str = ""
    experiment: str = "vaelab"          # the MLflow experiment runs go into

    def __post_init__(self) -> None:
        _check_choice(self.backend, TRACKING_BACKENDS, "tracking.backend")
        _check(bool(self.experiment), "tracking.experiment must not be empty")


@dataclass(frozen=True)
class Config:
    """A whole experiment: one config, one run directory.

    The defaults are the quick study of ``configs/quick.toml`` (a test keeps
    the two equal), so ``vaelab run`` without a config runs it.
    """

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    score: ScoreConfig = field(default_factory=ScoreConfig)
    detector: DetectorConfig = field(default_factory=DetectorConfig)
    study: StudyConfig = field(default_factory=StudyConfig)
    anomaly: AnomalyConfig = field(default_factory=AnomalyConfig)
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)
    semisupervised: SemiSupervisedConfig = field(default_factory=SemiSupervisedConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)

    # ---- conversions -------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (tuples become lists), ready for TOML or JSON."""
        return _plain(dataclasses.asdict(self))

    def to_toml(self) -> str:
        return tomli_w.dumps(self.to_dict())

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "config") -> "Config":
        return _build(cls, data, prefix="", source=source)

    def replace(self, **sections: Any) -> "Config":
        return dataclasses.replace(self, **sections)

    def anomaly_latent_dims(self) -> tuple[int, ...]:
        """The latent sizes the anomaly benchmark covers: ``anomaly.latent_dims`` (which must be among
        ``study.latent_dims``, the sizes an experiment trains), or all of ``study.latent_dims``."""
        extra = sorted(set(self.anomaly.latent_dims) - set(self.study.latent_dims))
        _check(not extra, f"anomaly.latent_dims must be among study.latent_dims; {extra[0] if extra else ''} is not "
                          "(add it to study.latent_dims, or set anomaly.latent_dims=[] for all of them)")
        return tuple(self.anomaly.latent_dims or self.study.latent_dims)

    def with_train(self, **changes: Any) -> "Config":
        """This config with ``train`` settings changed (a unit's runtime settings: device, progress)."""
        return dataclasses.replace(self, train=dataclasses.replace(self.train, **changes))

    def with_latent_dim(self, latent_dim: int) -> "Config":
        """This config with ``model.latent_dim`` set: the one home of a model's latent size."""
        return dataclasses.replace(self, model=dataclasses.replace(self.model, latent_dim=int(latent_dim)))


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _build(cls: type, data: Mapping[str, Any], prefix: str, source: str) -> Any:
    """Build dataclass ``cls`` from ``data``, rejecting unknown keys and wrong types."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{prefix.rstrip('.') or 'config'} must be a table", source)
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"unknown key {prefix}{unknown[0]!s} (known: {', '.join(sorted(names))})", source)
    kwargs = {}
    for key, value in data.items():
        hint = hints[key]
        if dataclasses.is_dataclass(hint):
            kwargs[key] = _build(hint, value, f"{prefix}{key}.", source)
        else:
            kwargs[key] = _coerce(value, hint, f"{prefix}{key}", source)
    try:
        return cls(**kwargs)
    except ConfigError as exc:
        raise ConfigError(str(exc), source) from None


def _coerce(value: Any, hint: Any, key: str, source: str) -> Any:
    """Check ``value`` against a simple type hint; convert lists to tuples."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        for option in typing.get_args(hint):
            try:
                return _coerce(value, option, key, source)
            except ConfigError:
                continue
        raise ConfigError(f"{key} has an invalid value {value!r}", source)
    if origin is tuple:
        (item,) = {a for a in typing.get_args(hint) if a is not Ellipsis}
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key} must be a list; got {value!r}", source)
        return tuple(_coerce(v, item, key, source) for v in value)
    if hint is bool:
        ok = isinstance(value, bool)
    elif hint is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif hint is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if ok else value
        if ok and not math.isfinite(value):
            raise ConfigError(f"{key} must be a finite number; got {value!r}", source)
    elif hint is str:
        ok = isinstance(value, str)
    else:  # pragma: no cover - a field type this module does not know
        raise TypeError(f"unsupported config type {hint!r} for {key}")
    if not ok:
        raise ConfigError(f"{key} must be of type {hint.__name__}; got {value!r}", source)
    return value


def parse_override(text: str) -> tuple[list[str], Any]:
    """Split ``a.b=value`` into (["a", "b"], parsed TOML value or string)."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} must look like section.key=value")
    key, raw = text.split("=", 1)
    parts = [p for p in key.strip().split(".")]
    if not all(parts):
        raise ConfigError(f"override {text!r} has an empty key")
    try:
        value = tomllib.loads(f"v = {raw.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw.strip()
    return parts, value


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Return a copy of nested ``data`` with each ``a.b=value`` override applied."""
    result = _plain(dict(data))
    for text in overrides:
        parts, value = parse_override(text)
        node = result
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {text!r}: {part} is not a section")
        node[parts[-1]] = value
    return result


def read_toml(path: str | Path) -> dict[str, Any]:
    """Read a TOML file, with one-line errors naming the file."""
    path = Path(path)
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError("config file not found", path) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"not valid TOML ({exc})", path) from None
    except UnicodeDecodeError:
        raise ConfigError("not valid TOML (the file is not UTF-8 text)", path) from None
    except IsADirectoryError:
        raise ConfigError("is a directory, not a config file", path) from None
    except OSError as exc:
        raise ConfigError(f"cannot read config ({exc.strerror})", path) from None


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """The config from ``path`` (defaults if None) with ``overrides`` applied."""
    data = read_toml(path) if path else {}
    data = apply_overrides(data, overrides or [])
    source = str(path) if path else "--set"
    return Config.from_dict(data, source=source)
