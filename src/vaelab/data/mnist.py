"""MNIST from an .npz, a directory of canonical IDX files, or a checked download."""

from __future__ import annotations

import gzip
import os
import zlib
from pathlib import Path

import numpy as np

from vaelab.data.arrays import read_npz
from vaelab.data.dataset import RawData
from vaelab.data.download import download
from vaelab.errors import DataError

MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)

# SHA-256 of the canonical gzipped IDX files.
CHECKSUMS = {
    "train-images-idx3-ubyte.gz": "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
    "train-labels-idx1-ubyte.gz": "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
    "t10k-images-idx3-ubyte.gz": "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
    "t10k-labels-idx1-ubyte.gz": "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
}
FILES = {"x_train": "train-images-idx3-ubyte", "y_train": "train-labels-idx1-ubyte",
         "x_test": "t10k-images-idx3-ubyte", "y_test": "t10k-labels-idx1-ubyte"}
VAL_SIZE = 10_000  # the study's 50,000 train / 10,000 validation split

_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (optionally gzipped) into an array."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as fh:
            data = fh.read()
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"cannot read IDX file ({exc})", path) from None
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_DTYPES:
        raise DataError("not an IDX file (bad magic number)", path)
    dtype, ndim = np.dtype(_IDX_DTYPES[data[2]]), data[3]
    header = 4 + 4 * ndim
    shape = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    expected = header + int(np.prod(shape)) * dtype.itemsize
    if len(data) != expected:
        raise DataError(f"IDX file is truncated or padded ({len(data)} bytes, expected {expected})", path)
    return np.frombuffer(data, dtype=dtype, offset=header).reshape(shape)


def _raw(x_train, y_train, x_test, y_test, source: str | Path) -> RawData:
    for name, x, y in (("train", x_train, y_train), ("test", x_test, y_test)):
        if x.ndim != 3 or x.shape[1:] != (28, 28):
            raise DataError(f"x_{name} must have shape (n, 28, 28); got {x.shape}", source)
        if y.shape != (x.shape[0],):
            raise DataError(f"y_{name} must have shape ({x.shape[0]},); got {y.shape}", source)
    return RawData(kind="image", x_train=x_train.reshape(len(x_train), -1), y_train=y_train.astype(np.int64),
                   x_test=x_test.reshape(len(x_test), -1), y_test=y_test.astype(np.int64),
                   image_shape=(28, 28), default_val_size=VAL_SIZE)


def load_idx_dir(directory: str | Path) -> RawData:
    """MNIST from a directory with the four canonical IDX files (.gz or not)."""
    directory = Path(directory)
    arrays = {}
    for key, stem in FILES.items():
        for candidate in (directory / f"{stem}.gz", directory / stem):
            if candidate.exists():
                arrays[key] = read_idx(candidate)
                break
        else:
            raise DataError(f"missing {stem}.gz (the four canonical MNIST IDX files are needed)", directory)
    return _raw(arrays["x_train"], arrays["y_train"], arrays["x_test"], arrays["y_test"], directory)


def load_npz(path: str | Path) -> RawData:
    """MNIST from an .npz with x_train, y_train, x_test, y_test."""
    arrays = read_npz(path)
    missing = [k for k in FILES if k not in arrays]
    if missing:
        raise DataError(f"missing array(s) {', '.join(missing)}", path)
    return _raw(arrays["x_train"], arrays["y_train"], arrays["x_test"], arrays["y_test"], path)


def default_cache_dir() -> Path:
    return Path(os.environ.get("VAELAB_CACHE", Path.home() / ".cache" / "vaelab"))


def fetch(cache_dir: str | Path, mirrors: tuple[str, ...] = MIRRORS,
          checksums: dict[str, str] = CHECKSUMS) -> Path:
    """Download the four IDX files into ``cache_dir/mnist``, each SHA-256 checked.

    Tries each mirror in turn for each file; returns the directory.
    """
    target = Path(cache_dir) / "mnist"
    for filename, digest in checksums.items():
        errors = []
        for mirror in mirrors:
            try:
                download(mirror.rstrip("/") + "/" + filename, target / filename, digest)
                break
            except DataError as exc:
                errors.append(str(exc))
        else:
            raise DataError(f"could not download {filename}: {'; '.join(errors)}", target)
    return target


def load_mnist(path: str = "", cache_dir: str = "", allow_download: bool = False) -> RawData:
    """MNIST from ``path`` (.npz or IDX directory) or from the download cache."""
    if path:
        p = Path(path).expanduser()
        if not p.exists():
            raise DataError("MNIST file or directory not found", p)
        return load_idx_dir(p) if p.is_dir() else load_npz(p)
    cache = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
    if all((cache / "mnist" / f).exists() for f in CHECKSUMS):
        return load_idx_dir(cache / "mnist")
    if not allow_download:
        raise DataError("MNIST is not in the cache; give data.path (an .npz or IDX directory) "
                        "or set data.download=true", cache / "mnist")
    return load_idx_dir(fetch(cache))
