"""The anomaly tasks built from data inside installable packages."""

import numpy as np
import pytest

from vaelab.data.packaged import TEXTURES, adbench_tasks, digit_image_task, holdout_task, table_tasks


def test_holdout_task_trains_on_a_share_of_the_normal_class():
    x = np.arange(20, dtype=float)[:, None]
    y = np.r_[np.zeros(10, int), np.ones(10, int)]
    train, test, is_anomaly = holdout_task(x, y, 0, seed=1, train_share=0.6)
    assert len(train) == 6 and set(train[:, 0]) < set(range(10))
    assert len(test) == 14 and is_anomaly.sum() == 10
    assert not set(train[:, 0]) & set(test[:, 0])  # no row both trains and tests
    assert np.array_equal(holdout_task(x, y, 0, seed=1)[0], train)  # seeded


def test_table_and_digit_image_tasks():
    tables = {**table_tasks(0), **adbench_tasks(0)}
    assert set(tables) == {"breast-cancer", "wine", "digits", "adbench-local", "adbench-global",
                           "adbench-dependency", "adbench-clustered"}
    for train, test, is_anomaly in tables.values():
        assert train.shape[1] == test.shape[1] and len(test) == len(is_anomaly) and 0 < is_anomaly.mean() < 1
    train, test, is_anomaly = digit_image_task(3, seed=0)
    assert train.shape[1] == 64 and 0 <= train.min() and train.max() <= 1  # grey images in [0, 1]
    assert is_anomaly.sum() == 1797 - 183  # every other digit


def test_texture_patches_split_top_and_bottom_halves():
    pytest.importorskip("skimage", reason="the compare extra is not installed (pip install 'vaelab[compare]')")
    from vaelab.data.packaged import texture_patches, texture_task

    top, bottom = texture_patches("brick", patch=16)
    assert top.shape == bottom.shape == (512, 256) and 0 <= top.min() and top.max() <= 1
    assert not (top[:, None, :] == bottom[None, :, :]).all(-1).any()  # no test patch is a training patch
    train, test, is_anomaly = texture_task("grass")
    assert len(train) == 512 and len(test) == 512 * len(TEXTURES) and is_anomaly.sum() == 1024
    with pytest.raises(ValueError, match="unknown texture"):
        texture_patches("marble")
