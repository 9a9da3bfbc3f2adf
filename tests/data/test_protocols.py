"""Protocol splits: no anomaly in training, the asked pollution, labels only on training rows."""

import numpy as np
import pytest

from vaelab.data.protocols import leave_one_class_out, one_vs_rest


def test_semi_supervised_protocol_labels_only_training_rows():
    from vaelab.data.protocols import semi_supervised_one_vs_rest

    rng = np.random.default_rng(0)
    y_train, y_test = np.repeat(np.arange(4), 50), np.repeat(np.arange(4), 10)
    x_train, x_test = rng.random((200, 3)), rng.random((40, 3))
    x_train[:, 0] = np.arange(200)  # row ids, to trace every training row back
    split = semi_supervised_one_vs_rest(x_train, y_train, x_test, y_test, normal_class=1,
                                        known_anomaly_classes=(2,), n_labelled_anomalies=7,
                                        n_labelled_normals=5, pollution=0.1, seed=3)
    source = split.x_train[:, 0].astype(int)
    assert set(y_train[source[split.y_train == 1]]) == {2} and (split.y_train == 1).sum() == 7
    assert set(y_train[source[split.y_train == 0]]) == {1} and (split.y_train == 0).sum() == 5
    unlabelled = source[split.y_train == -1]
    assert np.mean(y_train[unlabelled] != 1) == pytest.approx(0.1, abs=0.02)
    assert np.array_equal(split.x_test, x_test) and np.array_equal(split.is_anomaly, (y_test != 1).astype(int))
    assert len(set(source)) == len(source)  # no row twice
    assert np.array_equal(split.x_train, x_train[split.train_rows])


def _labelled():
    rng = np.random.default_rng(2)
    y_train, y_test = rng.integers(0, 10, 1000), rng.integers(0, 10, 300)
    return rng.random((1000, 4)), y_train, rng.random((300, 4)), y_test


def test_protocols_keep_anomalies_out_of_training():
    x, y, xt, yt = _labelled()
    loco = leave_one_class_out(x, y, xt, yt, anomaly_class=3)
    assert len(loco.x_train) == (y != 3).sum() and loco.train_polluted.sum() == 0
    assert np.array_equal(loco.is_anomaly, (yt == 3).astype(int))
    assert not any((row == x[y == 3]).all(1).any() for row in loco.x_train)
    ovr = one_vs_rest(x, y, xt, yt, normal_class=7)
    assert len(ovr.x_train) == (y == 7).sum() and np.array_equal(ovr.is_anomaly, (yt != 7).astype(int))


def test_pollution_adds_the_asked_fraction_of_anomalies():
    x, y, xt, yt = _labelled()
    split = one_vs_rest(x, y, xt, yt, normal_class=7, pollution=0.1, seed=0)
    assert split.train_polluted.mean() == pytest.approx(0.1, abs=0.01)
    polluted_rows = split.x_train[split.train_polluted == 1]
    assert all((row == x[y != 7]).all(1).any() for row in polluted_rows)


