"""Anomaly protocols on labelled data: leave-one-class-out and one-vs-rest.

Both return the training rows (normal only, unless ``pollution`` asks for a
fraction of anomalies) and the full test set with 1 marking anomalies.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ProtocolSplit:
    x_train: np.ndarray
    x_test: np.ndarray
    is_anomaly: np.ndarray     # (n_test,) 1 = anomaly
    train_polluted: np.ndarray  # (n_train,) 1 = an anomaly put into training on purpose
    description: str
    y_train: np.ndarray | None = None  # (n_train,) each training row's class (the labelled-normals detectors')


def _split(x_train, y_train, x_test, y_test, normal_train: np.ndarray, normal_test: np.ndarray,
           pollution: float, seed: int, description: str) -> ProtocolSplit:
    if not 0.0 <= pollution < 1.0:
        raise ValueError(f"pollution must be in [0, 1); got {pollution}")
    normal_idx = np.flatnonzero(normal_train)
    extra = np.zeros(0, dtype=np.int64)
    if pollution > 0:
        candidates = np.flatnonzero(~normal_train)
        n_extra = int(round(pollution * len(normal_idx) / (1 - pollution)))
        extra = np.sort(np.random.default_rng(seed).choice(candidates, size=min(n_extra, len(candidates)),
                                                           replace=False))
    idx = np.concatenate([normal_idx, extra])
    polluted = np.r_[np.zeros(len(normal_idx), np.int64), np.ones(len(extra), np.int64)]
    return ProtocolSplit(x_train[idx], x_test, (~normal_test).astype(np.int64), polluted, description,
                         np.asarray(y_train)[idx])


def leave_one_class_out(x_train, y_train, x_test, y_test, anomaly_class: int, pollution: float = 0.0,
                        seed: int = 0) -> ProtocolSplit:
    """An & Cho (2015): ``anomaly_class`` is the anomaly; train on the other classes."""
    return _split(x_train, y_train, x_test, y_test, y_train != anomaly_class, y_test != anomaly_class,
                  pollution, seed, f"leave-one-class-out: class {anomaly_class} is the anomaly")


def one_vs_rest(x_train, y_train, x_test, y_test, normal_class: int, pollution: float = 0.0,
                seed: int = 0) -> ProtocolSplit:
    """Ruff et al. (2018): ``normal_class`` is normal; every other class is an anomaly."""
    return _split(x_train, y_train, x_test, y_test, y_train == normal_class, y_test == normal_class,
                  pollution, seed, f"one-vs-rest: class {normal_class} is normal")


@dataclass(frozen=True)
class SemiSupervisedSplit:
    x_train: np.ndarray
    y_train: np.ndarray      # 1 labelled anomaly, 0 labelled normal, -1 unlabelled
    x_test: np.ndarray
    is_anomaly: np.ndarray   # (n_test,) 1 = anomaly
    description: str
    train_rows: np.ndarray | None = None  # which rows of the full training set x_train holds, in order


def polluting_count(n_normal: int, pollution: float) -> int:
    """Unlabelled anomalies that make up the share ``pollution`` of the unlabelled rows beside
    ``n_normal`` normal ones."""
    return int(round(pollution * n_normal / (1 - pollution))) if pollution > 0 else 0


def semi_supervised_one_vs_rest(x_train, y_train, x_test, y_test, normal_class: int,
                                known_anomaly_classes: tuple[int, ...], n_labelled_anomalies: int,
                                n_labelled_normals: int = 0, pollution: float = 0.0, seed: int = 0) -> SemiSupervisedSplit:
    """Ruff et al. (2020, Deep SAD): ``normal_class`` is normal, every other class an anomaly.

    Training: the normal class's rows (``n_labelled_normals`` of them labelled 0, the rest
    unlabelled), ``n_labelled_anomalies`` rows drawn from ``known_anomaly_classes`` and labelled
    1, and, if ``pollution`` > 0, unlabelled anomalies from every other class making up that
    fraction of the unlabelled rows. Test: every test row. Test labels only mark the test anomalies.
    """
    if normal_class in known_anomaly_classes:
        raise ValueError("the normal class cannot also be a known anomaly class")
    rng = np.random.default_rng(seed)
    normal = np.flatnonzero(y_train == normal_class)
    known = np.flatnonzero(np.isin(y_train, known_anomaly_classes))
    if n_labelled_anomalies > len(known):
        raise ValueError(f"only {len(known)} rows of the known anomaly classes")
    labelled_anomalies = rng.choice(known, size=n_labelled_anomalies, replace=False)
    n_extra = polluting_count(len(normal), pollution)
    others = np.setdiff1d(np.flatnonzero(y_train != normal_class), labelled_anomalies)
    polluting = rng.choice(others, size=min(n_extra, len(others)), replace=False)
    labelled_normals = rng.choice(normal, size=n_labelled_normals, replace=False)
    rows = np.concatenate([normal, polluting, labelled_anomalies])
    labels = np.full(len(rows), -1, dtype=np.int64)
    labels[np.isin(rows, labelled_normals)] = 0
    labels[len(normal) + len(polluting):] = 1
    return SemiSupervisedSplit(x_train[rows], labels, x_test, (y_test != normal_class).astype(np.int64),
                               f"semi-supervised one-vs-rest: class {normal_class} normal, "
                               f"{n_labelled_anomalies} labelled anomalies from {list(known_anomaly_classes)}",
                               rows)


# config name -> split function
PROTOCOL_SPLITS = {"loco": leave_one_class_out, "ovr": one_vs_rest}
