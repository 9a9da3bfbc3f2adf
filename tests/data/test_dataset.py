"""Splits, preprocessing fitted on training rows only, and binarization."""


import numpy as np
import pandas as pd

from vaelab.config import DataConfig
from vaelab.data import load_dataset
from vaelab.data.dataset import binarize_fixed


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


