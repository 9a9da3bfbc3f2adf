"""MNIST from IDX files, an .npz or the checked download."""

import hashlib

import numpy as np
import pytest

from vaelab.config import DataConfig
from vaelab.data import load_dataset
from vaelab.data import mnist as M
from vaelab.errors import DataError


def test_idx_directory_matches_written_arrays(idx_dir):
    raw = M.load_idx_dir(idx_dir)
    assert raw.x_train.shape == (300, 784) and raw.x_test.shape == (50, 784)
    assert np.array_equal(raw.x_train[0].reshape(28, 28), M.read_idx(idx_dir / "train-images-idx3-ubyte.gz")[0])
    data = load_dataset(DataConfig(name="mnist", path=str(idx_dir), val_size=50, binarize="none"))
    assert (len(data.train), len(data.val), len(data.test)) == (250, 50, 50)
    # the validation part is the last rows of the training file, as in the study
    assert np.allclose(data.val.x, raw.x_train[250:] / 255.0)


def test_truncated_idx_is_refused(idx_dir):
    path = idx_dir / "t10k-labels-idx1-ubyte"
    path.write_bytes(bytes([0, 0, 8, 1]) + (50).to_bytes(4, "big") + bytes(10))
    with pytest.raises(DataError, match="truncated"):
        M.read_idx(path)


def test_mnist_npz_and_missing_arrays(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "m.npz"
    np.savez(path, x_train=rng.integers(0, 256, (40, 28, 28), dtype=np.uint8), y_train=np.arange(40) % 10,
             x_test=rng.integers(0, 256, (10, 28, 28), dtype=np.uint8), y_test=np.arange(10))
    data = load_dataset(DataConfig(name="mnist", path=str(path), val_size=10))
    assert (len(data.train), len(data.val), len(data.test)) == (30, 10, 10)
    np.savez(tmp_path / "bad.npz", x_train=np.zeros((4, 28, 28), np.uint8))
    with pytest.raises(DataError, match="missing array"):
        load_dataset(DataConfig(name="mnist", path=str(tmp_path / "bad.npz")))


def test_mnist_needs_a_source(tmp_path):
    with pytest.raises(DataError, match="not in the cache"):
        load_dataset(DataConfig(name="mnist", cache_dir=str(tmp_path)))


def test_fetch_downloads_verifies_and_loads(idx_dir, http_dir, tmp_path):
    root, url = http_dir
    checksums = {}
    for f in idx_dir.iterdir():
        (root / f.name).write_bytes(f.read_bytes())
        checksums[f.name] = hashlib.sha256(f.read_bytes()).hexdigest()
    cache = tmp_path / "cache"
    # the first mirror is dead, the second serves the files
    target = M.fetch(cache, mirrors=("http://127.0.0.1:9/", url), checksums=checksums)
    assert sorted(p.name for p in target.iterdir()) == sorted(checksums)
    data = load_dataset(DataConfig(name="mnist", cache_dir=str(cache), val_size=50))
    assert len(data.test) == 50


