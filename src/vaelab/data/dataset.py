"""The data containers, splits, preprocessing and binarization."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vaelab.errors import DataError

FLOAT32_MAX = float(np.finfo(np.float32).max)


def check_representable(x: np.ndarray, path: Path | str | None, what: str,
                        names: tuple[str, ...] | None = None) -> None:
    """Refuse NaN, infinite, or values too large for the float32 arithmetic of the models, naming
    the first bad row and feature (column name where ``names`` are given)."""
    if x.dtype.kind != "f":
        return  # integers up to 64 bits always fit
    with np.errstate(invalid="ignore"):
        bad = ~np.isfinite(x) | (np.abs(x) > FLOAT32_MAX)
    if bad.any():
        row, col = map(int, np.argwhere(bad)[0])
        value = x[row, col]
        feature = f"column {names[col]!r}" if names else f"feature {col}"
        problem = "a NaN or infinite value" if not np.isfinite(value) else \
            f"the value {value:.3g}, beyond the float32 range the models compute in (|x| <= 3.4e38)"
        raise DataError(f"{what} has {problem} at row {row}, {feature}", path)


@dataclass(frozen=True)
class RawData:
    """Arrays as read from a source, before splitting and preprocessing.

    ``x_*`` have one row per sample (images flattened); ``y_*`` may be None.
    ``x_test`` is None when the source has no test split of its own.
    """

    kind: str                          # "image" | "tabular"
    x_train: np.ndarray
    y_train: np.ndarray | None
    x_test: np.ndarray | None = None
    y_test: np.ndarray | None = None
    image_shape: tuple[int, ...] | None = None
    feature_names: tuple[str, ...] | None = None
    default_val_size: float = 0.1
    default_test_size: float = 0.2

    def column_names(self) -> tuple[str, ...]:
        """A name per feature: the table's columns, ``px_ROW_COL`` for image pixels, else ``x0``, ``x1``, ..."""
        if self.feature_names:
            return tuple(self.feature_names)
        if self.image_shape and len(self.image_shape) == 2:
            return tuple(f"px_{r}_{c}" for r in range(self.image_shape[0]) for c in range(self.image_shape[1]))
        return tuple(f"x{j}" for j in range(self.x_train.shape[1]))

    def all_rows(self) -> tuple[np.ndarray, np.ndarray | None]:
        """Every row in file order (train part, then test part) and the labels if all parts have them."""
        if self.x_test is None:
            return self.x_train, self.y_train
        y = None if self.y_train is None or self.y_test is None else np.concatenate([self.y_train, self.y_test])
        return np.concatenate([self.x_train, self.x_test]), y


@dataclass(frozen=True)
class Split:
    """One part of a data set: float32 features (n, d) and optional int labels (n,)."""

    x: np.ndarray
    y: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.x.shape[0])


@dataclass(frozen=True)
class Preprocessing:
    """Feature scaling fitted on the training part and stored with the model.

    Images: ``x * scale`` maps pixels to [0, 1]. Tabular data:
    ``(x - mean) / std`` with statistics of the training part only.
    """

    kind: str
    scale: float = 1.0
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None

    def apply(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        if self.kind == "image":
            return (x * self.scale).astype(np.float32)
        mean = np.asarray(self.mean)
        std = np.asarray(self.std)
        if x.shape[1] != mean.shape[0]:
            raise DataError(f"has {x.shape[1]} features; the model expects {mean.shape[0]}")
        scaled = (x - mean) / std  # float64, then checked before it becomes float32
        check_representable(scaled, None, "after the model's scaling, the data")
        return scaled.astype(np.float32)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "scale": self.scale,
                "mean": None if self.mean is None else list(self.mean),
                "std": None if self.std is None else list(self.std)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Preprocessing":
        return cls(kind=d["kind"], scale=float(d.get("scale", 1.0)),
                   mean=None if d.get("mean") is None else tuple(d["mean"]),
                   std=None if d.get("std") is None else tuple(d["std"]))


def fit_preprocessing(raw: RawData) -> Preprocessing:
    """Fit the preprocessing on the training rows of ``raw``."""
    if raw.kind == "image":
        top = float(np.max(raw.x_train)) if raw.x_train.size else 1.0
        return Preprocessing(kind="image", scale=1.0 / 255.0 if top > 1.0 else 1.0)
    x = np.asarray(raw.x_train, dtype=np.float64)
    std = x.std(axis=0)
    std[std < 1e-12] = 1.0  # constant columns stay centred, not divided by zero
    return Preprocessing(kind="tabular", mean=tuple(x.mean(axis=0)), std=tuple(std))


@dataclass(frozen=True)
class Dataset:
    """A prepared data set: train / validation / test splits in model units."""

    name: str
    source: str
    kind: str
    train: Split
    val: Split
    test: Split
    preprocessing: Preprocessing
    image_shape: tuple[int, ...] | None = None
    feature_names: tuple[str, ...] | None = None
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def n_features(self) -> int:
        return int(self.train.x.shape[1])

    def split(self, name: str) -> Split:
        """The split called ``name`` (train, val, test) or all rows ("all")."""
        if name == "all":
            ys = [s.y for s in (self.train, self.val, self.test)]
            y = None if any(v is None for v in ys) else np.concatenate(ys)
            return Split(np.concatenate([self.train.x, self.val.x, self.test.x]), y)
        if name not in ("train", "val", "test"):
            raise DataError(f"unknown split {name!r}; use train, val, test or all")
        return getattr(self, name)


def resolve_size(size: float | str, n: int, default: float) -> int:
    """Turn a split size ('auto', fraction or count) into a row count."""
    if size == "auto":
        size = default
    count = int(round(size * n)) if 0 < float(size) < 1 else int(size)
    if not 0 < count < n:
        raise DataError(f"a split of {size} leaves no rows on one side of {n} rows")
    return count


def split_rows(n: int, size: int, seed: int, y: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Seeded (stratified where labels allow) split of ``range(n)`` into (rest, part)."""
    from sklearn.model_selection import train_test_split

    idx = np.arange(n)
    stratify = None
    if y is not None:
        _, counts = np.unique(y, return_counts=True)
        if counts.min() >= 2 and len(counts) <= size:
            stratify = y
    rest, part = train_test_split(idx, test_size=size, random_state=seed, stratify=stratify)
    return np.sort(rest), np.sort(part)


def _take(y: np.ndarray | None, idx: np.ndarray) -> np.ndarray | None:
    return None if y is None else y[idx]


def binarize_fixed(x: np.ndarray, mode: str, threshold: float, seed: int) -> np.ndarray:
    """Binarize evaluation data once: threshold, or one seeded Bernoulli draw."""
    if mode == "none":
        return x
    if mode == "threshold":
        return (x > threshold).astype(np.float32)
    rng = np.random.default_rng(seed)
    return (rng.random(x.shape, dtype=np.float32) < x).astype(np.float32)


def prepare(raw: RawData, *, name: str, source: str, val_size: float | str,
            test_size: float | str, split_seed: int, binarize: str, threshold: float,
            train_limit: int = 0, preprocessing: Preprocessing | None = None) -> Dataset:
    """Split ``raw``, fit (or reuse) preprocessing on the training part, binarize.

    A source with its own test split keeps it, and its validation part is the
    last ``val_size`` training rows (MNIST: 50,000 / 10,000 / 10,000). Other
    sources get a seeded split, stratified by label where labels exist.

    With ``binarize="dynamic"`` the training split keeps grey values (the
    training loop draws a fresh Bernoulli sample per batch) and the
    validation and test splits are binarized once with a fixed seed.
    """
    x_train, y_train = raw.x_train, raw.y_train
    if raw.x_test is None:
        n_test = resolve_size(test_size, len(x_train), raw.default_test_size)
        rest, part = split_rows(len(x_train), n_test, split_seed, y_train)
        x_test, y_test = x_train[part], _take(y_train, part)
        x_train, y_train = x_train[rest], _take(y_train, rest)
    else:
        x_test, y_test = raw.x_test, raw.y_test
    n_val = resolve_size(val_size, len(x_train), raw.default_val_size)
    if raw.x_test is not None:  # the conventional split: validation is the last training rows
        rest, part = np.arange(len(x_train) - n_val), np.arange(len(x_train) - n_val, len(x_train))
    else:
        rest, part = split_rows(len(x_train), n_val, split_seed + 1, y_train)
    x_val, y_val = x_train[part], _take(y_train, part)
    x_train, y_train = x_train[rest], _take(y_train, rest)
    if 0 < train_limit < len(x_train):  # a seeded, stratified subset: files sorted by class stay mixed
        keep = split_rows(len(x_train), train_limit, split_seed + 2, y_train)[1]
        x_train, y_train = x_train[keep], _take(y_train, keep)
    fitted = RawData(raw.kind, x_train, y_train)
    prep = preprocessing or fit_preprocessing(fitted)
    train = Split(prep.apply(x_train), y_train)
    val = Split(prep.apply(x_val), y_val)
    test = Split(prep.apply(x_test), y_test)
    if raw.kind == "image":
        if binarize == "threshold":
            train = Split(binarize_fixed(train.x, binarize, threshold, 0), train.y)
        val = Split(binarize_fixed(val.x, binarize, threshold, split_seed + 2), val.y)
        test = Split(binarize_fixed(test.x, binarize, threshold, split_seed + 3), test.y)
    return Dataset(name=name, source=source, kind=raw.kind, train=train, val=val, test=test,
                   preprocessing=prep, image_shape=raw.image_shape,
                   feature_names=raw.feature_names,
                   info={"n_train": len(train), "n_val": len(val), "n_test": len(test)})
