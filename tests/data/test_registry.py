"""Named data sets and the suffix dispatch for files."""


import numpy as np
import pytest

from vaelab.config import DataConfig
from vaelab.data import load_dataset, load_path
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


def test_unknown_suffix_and_missing_file(tmp_path):
    (tmp_path / "x.txt").write_text("1")
    with pytest.raises(DataError, match="unknown file type"):
        load_path(tmp_path / "x.txt")
    with pytest.raises(DataError, match="not found"):
        load_path(tmp_path / "nope.csv")




def test_digits_config_takes_a_name_or_a_path():
    from vaelab.data import digits_config

    named, path = digits_config("mnist5k", 300), digits_config("../shared/data/mnist.npz")
    assert (named.name, named.path, named.train_limit, named.binarize) == ("mnist5k", "", 300, "none")
    assert (path.name, path.path, path.binarize) == ("mnist", "../shared/data/mnist.npz", "none")
