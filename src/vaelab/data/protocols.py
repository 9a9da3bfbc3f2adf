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
    return ProtocolSplit(x_train[idx], x_test, (~normal_test).astype(np.int64), polluted, description)


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


# config name -> split function
PROTOCOL_SPLITS = {"loco": leave_one_class_out, "ovr": one_vs_rest}
