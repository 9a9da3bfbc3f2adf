"""Loaders, splits, preprocessing and the checked download."""

import functools
import hashlib
import http.server
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from vaelab.config import DataConfig
from vaelab.data import load_dataset
from vaelab.data import mnist as M
from vaelab.data.arrays import load_path
from vaelab.data.dataset import binarize_fixed
from vaelab.data.download import download, sha256_file
from vaelab.errors import DataError


def test_mnist5k_is_embedded_split_reproducibly_and_disjointly():
    a = load_dataset(DataConfig(binarize="none"))
    b = load_dataset(DataConfig(binarize="none"))
    assert (len(a.train), len(a.val), len(a.test)) == (3600, 400, 1000)
    assert a.kind == "image" and a.image_shape == (28, 28) and a.n_features == 784
    assert np.array_equal(a.train.x, b.train.x) and np.array_equal(a.test.y, b.test.y)
    assert 0.0 <= a.train.x.min() and a.train.x.max() == 1.0
    assert np.bincount(a.test.y).tolist() == [100] * 10  # stratified
    rows = {r.tobytes() for r in a.train.x}
    assert not any(r.tobytes() in rows for r in a.test.x)
    other = load_dataset(DataConfig(binarize="none", split_seed=1))
    assert not np.array_equal(a.test.x, other.test.x)


def test_binarization_modes():
    grey = load_dataset(DataConfig(binarize="none"))
    thr = load_dataset(DataConfig(binarize="threshold", threshold=0.5))
    dyn = load_dataset(DataConfig(binarize="dynamic"))
    assert np.array_equal(thr.train.x, (grey.train.x > 0.5).astype(np.float32))
    assert np.array_equal(dyn.train.x, grey.train.x)  # the training loop samples per batch
    assert set(np.unique(dyn.test.x)) <= {0.0, 1.0}
    assert np.array_equal(dyn.test.x, load_dataset(DataConfig(binarize="dynamic")).test.x)
    # one Bernoulli draw: the mean matches the grey level
    draw = binarize_fixed(np.full((200, 200), 0.3, np.float32), "dynamic", 0.5, seed=0)
    assert abs(draw.mean() - 0.3) < 0.01


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


@pytest.fixture
def http_dir(tmp_path):
    """A local HTTP server over a directory; yields (directory, base URL)."""
    root = tmp_path / "served"
    root.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *a, **k: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()


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


def test_checksum_mismatch_leaves_nothing(http_dir, tmp_path):
    root, url = http_dir
    (root / "f.bin").write_bytes(b"hello")
    dest = tmp_path / "out" / "f.bin"
    with pytest.raises(DataError, match="checksum mismatch"):
        download(url + "f.bin", dest, "0" * 64)
    assert not dest.exists() and list(dest.parent.iterdir()) == []
    with pytest.raises(DataError, match="failed"):
        download(url + "missing.bin", dest, "0" * 64)
    assert list(dest.parent.iterdir()) == []


def test_file_url_download(tmp_path):
    src = tmp_path / "src.bin"
    src.write_bytes(b"x" * 5000)
    dest = download(src.as_uri(), tmp_path / "d" / "dst.bin", sha256_file(src))
    assert dest.read_bytes() == src.read_bytes()


def test_tabular_standardized_with_training_statistics_only(table_csv):
    data = load_dataset(DataConfig(name=str(table_csv)))
    assert data.kind == "tabular" and data.feature_names == ("a", "b", "c", "d", "e")
    assert np.allclose(data.train.x.mean(0), 0, atol=1e-5) and np.allclose(data.train.x.std(0), 1, atol=1e-4)
    assert not np.allclose(data.test.x.mean(0), 0, atol=1e-3)  # test rows keep their own offsets
    assert data.train.y is not None and set(np.unique(data.train.y)) == {0, 1}
    raw = pd.read_csv(table_csv)
    mean = np.asarray(data.preprocessing.mean)
    train_rows = raw.drop(columns="label").to_numpy()
    assert not np.allclose(mean, train_rows.mean(0))  # fitted on the training part, not all rows


def test_parquet_equals_csv(table_csv, tmp_path):
    path = tmp_path / "t.parquet"
    pd.read_csv(table_csv).to_parquet(path)
    a, b = load_dataset(DataConfig(name=str(table_csv))), load_dataset(DataConfig(name=str(path)))
    assert np.allclose(a.train.x, b.train.x) and np.array_equal(a.test.y, b.test.y)


@pytest.mark.parametrize("content, message", [
    ("a,b\n1,2\n3,x\n", "column 'b' is not numeric"),
    ("a,b\n1,2\n3,\n", "column 'b' has a missing or infinite value at row 1"),
    ("label\n1\n", "no feature columns"),
    ("a,b\n", "no rows"),
])
def test_bad_tables(tmp_path, content, message):
    path = tmp_path / "bad.csv"
    path.write_text(content)
    with pytest.raises(DataError) as info:
        load_path(path)
    assert message in str(info.value) and str(path) in str(info.value)


@pytest.mark.parametrize("arrays, message", [
    ({"x": np.zeros(5)}, "at least one feature"),
    ({"x": np.array([[1.0, np.nan]])}, "NaN"),
    ({"x": np.zeros((3, 2)), "y": np.zeros(4)}, "y must have shape (3,)"),
    ({"z": np.zeros((3, 2))}, "needs an array 'x'"),
])
def test_bad_arrays(tmp_path, arrays, message):
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    with pytest.raises(DataError) as info:
        load_path(path)
    assert message in str(info.value)


def test_unknown_suffix_and_missing_file(tmp_path):
    (tmp_path / "x.txt").write_text("1")
    with pytest.raises(DataError, match="unknown file type"):
        load_path(tmp_path / "x.txt")
    with pytest.raises(DataError, match="not found"):
        load_path(tmp_path / "nope.csv")


def test_image_npz_is_scaled(image_npz):
    data = load_dataset(DataConfig(name=str(image_npz), binarize="none"))
    assert data.kind == "image" and data.image_shape == (8, 8) and data.train.x.max() <= 1.0
