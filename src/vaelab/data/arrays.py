"""Readers for user files: .npz / .npy arrays and CSV / Parquet tables."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from vaelab.data.dataset import RawData, check_representable
from vaelab.errors import DataError

TABLE_SUFFIXES = (".csv", ".parquet", ".pq")
ARRAY_SUFFIXES = (".npz", ".npy")


def read_npz(path: str | Path) -> dict[str, np.ndarray]:
    """All arrays of an .npz (never unpickling objects)."""
    path = Path(path)
    if not path.exists():
        raise DataError("file not found", path)
    try:
        with np.load(path, allow_pickle=False) as npz:
            return {k: npz[k] for k in npz.files}
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as exc:
        raise DataError(f"not a readable .npz file ({exc})", path) from None


def _check_features(x: np.ndarray, path: Path, what: str) -> np.ndarray:
    if x.dtype.kind not in "biuf":
        raise DataError(f"{what} is not numeric (dtype {x.dtype})", path)
    if x.ndim < 2 or x.shape[0] == 0 or x.size == 0:
        raise DataError(f"{what} must have one row per sample and at least one feature; got shape {x.shape}", path)
    flat = x.reshape(x.shape[0], -1)
    check_representable(flat, path, what)
    return flat


def _check_labels(y: np.ndarray | None, n: int, path: Path, what: str) -> np.ndarray | None:
    if y is None:
        return None
    if y.shape != (n,):
        raise DataError(f"{what} must have shape ({n},); got {y.shape}", path)
    if y.dtype.kind not in "biu" and not (y.dtype.kind == "f" and np.all(np.mod(y, 1) == 0)):
        raise DataError(f"{what} must hold integer labels", path)
    return y.astype(np.int64)


def _kind(x: np.ndarray) -> str:
    """Images are uint8 arrays or arrays of 3+ dimensions; anything else is tabular."""
    return "image" if x.ndim >= 3 or x.dtype == np.uint8 else "tabular"


def load_array_file(path: str | Path) -> RawData:
    """An .npz with (x_train[, y_train], x_test[, y_test]) or (x[, y]), or an .npy of x."""
    path = Path(path)
    if path.suffix == ".npy":
        try:
            arrays = {"x": np.load(path, allow_pickle=False)}
        except (ValueError, OSError) as exc:
            raise DataError(f"not a readable .npy file ({exc})", path) from None
    else:
        arrays = read_npz(path)
    if "x_train" in arrays:
        x_raw, y_raw = arrays["x_train"], arrays.get("y_train")
        xt_raw, yt_raw = arrays.get("x_test"), arrays.get("y_test")
    elif "x" in arrays:
        x_raw, y_raw, xt_raw, yt_raw = arrays["x"], arrays.get("y"), None, None
    else:
        raise DataError(f"needs an array 'x' or 'x_train'; found {', '.join(arrays) or 'none'}", path)
    x = _check_features(x_raw, path, "x_train" if "x_train" in arrays else "x")
    y = _check_labels(y_raw, len(x), path, "y_train" if "x_train" in arrays else "y")
    xt = yt = None
    if xt_raw is not None:
        xt = _check_features(xt_raw, path, "x_test")
        if xt.shape[1] != x.shape[1]:
            raise DataError(f"x_test has {xt.shape[1]} features but x_train has {x.shape[1]}", path)
        yt = _check_labels(yt_raw, len(xt), path, "y_test")
    kind = _kind(x_raw)
    if kind == "image" and (x.min() < 0 or x.max() > 255):
        raise DataError("image pixels must lie in [0, 255] (or [0, 1])", path)
    shape = tuple(x_raw.shape[1:]) if x_raw.ndim >= 3 else None
    return RawData(kind=kind, x_train=x, y_train=y, x_test=xt, y_test=yt, image_shape=shape)


def load_table(path: str | Path, label_column: str = "label") -> RawData:
    """A CSV or Parquet file of numeric columns, with an optional label column."""
    import pandas as pd

    path = Path(path)
    if not path.exists():
        raise DataError("file not found", path)
    try:
        frame = pd.read_csv(path) if path.suffix == ".csv" else pd.read_parquet(path)
    except Exception as exc:  # pandas raises many types for malformed files
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(f"cannot read table ({first})", path) from None
    if frame.empty:
        raise DataError("table has no rows", path)
    y = None
    if label_column and label_column in frame.columns:
        y = _check_labels(frame.pop(label_column).to_numpy(), len(frame), path, f"column {label_column!r}")
    if frame.shape[1] == 0:
        raise DataError("table has no feature columns", path)
    names = tuple(map(str, frame.columns))
    if len(set(names)) != len(names):
        raise DataError("table has repeated column names", path)
    for column in frame.columns:
        if not pd.api.types.is_numeric_dtype(frame[column]) or pd.api.types.is_bool_dtype(frame[column]):
            raise DataError(f"column {column!r} is not numeric", path)
        values = frame[column].to_numpy(dtype=np.float64)
        if not np.all(np.isfinite(values)):
            row = int(np.flatnonzero(~np.isfinite(values))[0])
            raise DataError(f"column {column!r} has a missing or infinite value at row {row}", path)
    x = frame.to_numpy(dtype=np.float64)
    check_representable(x, path, "table", names)
    return RawData(kind="tabular", x_train=x, y_train=y, feature_names=names)
