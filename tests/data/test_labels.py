"""Partial labels: balanced over the classes, and the labelled share of an epoch."""

import numpy as np
import pytest

from vaelab.data.labels import balanced_labels, epoch_rows


def test_balanced_labels_and_epoch_rows():
    y = np.repeat(np.arange(5), 40)
    semi = balanced_labels(y, 10, seed=0)
    assert (semi >= 0).sum() == 10 and np.bincount(semi[semi >= 0]).tolist() == [2] * 5
    assert np.array_equal(semi[semi >= 0], y[semi >= 0])  # a kept label is the true one
    rows = epoch_rows(semi, 0.2)
    share = (semi[rows] >= 0).mean()
    assert 0.15 < share < 0.25 and set(np.flatnonzero(semi < 0)) <= set(rows)
    with pytest.raises(ValueError):
        balanced_labels(y, 7, seed=0)


