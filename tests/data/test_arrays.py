"""User files: .npz / .npy arrays and CSV / Parquet tables, and their refusals."""


import numpy as np
import pandas as pd
import pytest

from vaelab.config import DataConfig
from vaelab.data import load_dataset, load_path
from vaelab.errors import DataError


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


def test_image_npz_is_scaled(image_npz):
    data = load_dataset(DataConfig(name=str(image_npz), binarize="none"))
    assert data.kind == "image" and data.image_shape == (8, 8) and data.train.x.max() <= 1.0
