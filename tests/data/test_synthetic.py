"""Synthetic anomalies: each injector changes only what it claims, severity 0 is the identity,
injection is reproducible from its seed, and the type labels survive into a test set."""

import numpy as np
import pytest

from vaelab.data.synthetic import (
    IMAGE_ANOMALIES,
    NORMAL,
    TABULAR_ANOMALIES,
    describe,
    image_test_set,
    inject,
    tabular_anomalies,
    tabular_test_set,
)

SHAPE = (28, 28)
RANDOM_TYPES = ("noise", "salt-pepper", "occlusion", "erasure", "rotation", "overlay")


@pytest.fixture(scope="module")
def digits():
    """Forty hand-made 'digits': random strokes on a 28x28 canvas."""
    rng = np.random.default_rng(0)
    imgs = np.zeros((40, *SHAPE), dtype=np.float32)
    for img in imgs:
        r, c = rng.integers(6, 22, size=2)
        img[r - 5:r + 5, c - 1:c + 2] = 1.0
        img[r - 1:r + 1, c - 4:c + 4] = 0.7
    return imgs.reshape(40, -1)


@pytest.mark.parametrize("name", list(IMAGE_ANOMALIES))
def test_severity_zero_is_the_identity_and_output_stays_in_range(digits, name):
    assert np.array_equal(inject(name, digits, SHAPE, 0.0, seed=1), digits)
    out = inject(name, digits, SHAPE, 1.0, seed=1)
    assert out.shape == digits.shape and out.dtype == np.float32
    assert out.min() >= 0 and out.max() <= 1
    assert not np.array_equal(out, digits), "full severity must change the images"
    assert describe(name)  # every type is documented in one line


@pytest.mark.parametrize("name", list(IMAGE_ANOMALIES))
def test_injection_is_reproducible_from_its_seed(digits, name):
    a = inject(name, digits, SHAPE, 0.7, seed=5)
    assert np.array_equal(a, inject(name, digits, SHAPE, 0.7, seed=5))
    if name in RANDOM_TYPES:
        assert not np.array_equal(a, inject(name, digits, SHAPE, 0.7, seed=6))


def _changed_box(before, after):
    rows, cols = np.nonzero(before.reshape(SHAPE) != after.reshape(SHAPE))
    return rows.min(), rows.max(), cols.min(), cols.max()


@pytest.mark.parametrize("name,value", [("occlusion", 1.0), ("erasure", 0.0)])
def test_patch_types_change_only_a_square_patch(digits, name, value):
    out = inject(name, digits, SHAPE, 0.5, seed=2)
    side = 7  # 0.5 x half of 28
    for before, after in zip(digits, out):
        changed = before != after
        if changed.any():
            r0, r1, c0, c1 = _changed_box(before, after)
            assert r1 - r0 < side and c1 - c0 < side
            assert np.all(after[changed] == value)


def test_flip_changes_only_its_band_and_inversion_only_its_square(digits):
    out = inject("flip", digits, SHAPE, 0.5, seed=0).reshape(-1, *SHAPE)
    imgs = digits.reshape(-1, *SHAPE)
    assert np.array_equal(out[:, :7], imgs[:, :7]) and np.array_equal(out[:, 21:], imgs[:, 21:])
    assert np.array_equal(out[:, 7:21], imgs[:, 7:21, ::-1])
    inv = inject("invert", digits, SHAPE, 0.5, seed=0).reshape(-1, *SHAPE)
    assert np.array_equal(inv[:, 7:21, 7:21], 1 - imgs[:, 7:21, 7:21])
    mask = np.ones(SHAPE, bool)
    mask[7:21, 7:21] = False
    assert np.array_equal(inv[:, mask], imgs[:, mask])


def test_morphology_and_overlay_move_ink_the_claimed_way(digits):
    assert np.all(inject("thicken", digits, SHAPE, 1.0, 0) >= digits)
    assert np.all(inject("thin", digits, SHAPE, 1.0, 0) <= digits)
    assert inject("thicken", digits, SHAPE, 1.0, 0).sum() > inject("thicken", digits, SHAPE, 0.3, 0).sum()
    assert np.all(inject("overlay", digits, SHAPE, 1.0, 0) >= digits)


def test_image_test_set_keeps_types_sources_and_labels(digits):
    y = np.arange(40) % 4
    ts = image_test_set(digits, SHAPE, ["occlusion", "blur"], fraction=0.1, severity=1.0, seed=3, y=y)
    kinds, counts = np.unique(ts.kind, return_counts=True)
    assert dict(zip(kinds, counts)) == {NORMAL: 32, "occlusion": 4, "blur": 4}
    assert np.array_equal(ts.is_anomaly, (ts.kind != NORMAL).astype(int))
    normal_src = set(ts.source[ts.kind == NORMAL])
    assert not normal_src & set(ts.source[ts.kind != NORMAL])  # no clean twin of an anomaly
    assert np.array_equal(ts.label, y[ts.source])
    assert np.array_equal(ts.x[ts.kind == NORMAL], digits[ts.source[ts.kind == NORMAL]])
    again = image_test_set(digits, SHAPE, ["occlusion", "blur"], fraction=0.1, severity=1.0, seed=3, y=y)
    assert np.array_equal(again.x, ts.x)


@pytest.fixture(scope="module")
def correlated():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(2000, 2))
    return np.c_[z[:, 0], z[:, 0] + 0.1 * z[:, 1], z[:, 1], -z[:, 1] + 0.1 * z[:, 0]]


def test_tabular_types_follow_adbench(correlated):
    x = correlated
    glob = tabular_anomalies(x, "global", 500, seed=0)
    lo, hi = x.min(0), x.max(0)
    assert np.all(glob >= lo - 0.06 * (hi - lo)) and np.all(glob <= hi + 0.06 * (hi - lo))
    dep = tabular_anomalies(x, "dependency", 3000, seed=0)
    assert abs(np.corrcoef(dep[:, 0], dep[:, 1])[0, 1]) < 0.1 < np.corrcoef(x[:, 0], x[:, 1])[0, 1]
    assert np.allclose(dep.std(0), x.std(0), rtol=0.15)  # the marginals are kept
    local = tabular_anomalies(x, "local", 3000, seed=0)
    assert np.all(local.std(0) > 1.5 * x.std(0))  # each component's covariance x 5
    clustered = tabular_anomalies(x, "clustered", 3000, seed=0)
    assert np.linalg.norm(clustered.mean(0) - x.mean(0)) < 1.0 and clustered.std(0).mean() > 2 * x.std(0).mean()
    with pytest.raises(ValueError, match="unknown"):
        tabular_anomalies(x, "sideways", 5, seed=0)
    ts = tabular_test_set(x[:1000], x[1000:1500], list(TABULAR_ANOMALIES), fraction=0.02, seed=1)
    assert len(ts.x) == 500 + 4 * 10 and set(ts.kind) == {NORMAL, *TABULAR_ANOMALIES}


def test_config_knows_every_injector():
    from vaelab.config import IMAGE_ANOMALY_TYPES

    assert tuple(IMAGE_ANOMALIES) == IMAGE_ANOMALY_TYPES
