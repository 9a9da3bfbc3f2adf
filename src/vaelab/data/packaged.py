"""Anomaly tasks from data that ships inside installable packages: nothing is downloaded.

Each task is ``(train normals, test rows, test is_anomaly)``. Sources:
- scikit-learn's tables: breast cancer (benign normal), wine (class 0 normal), digits (digit 0
  normal), and ADBench's four synthetic types (Han et al. 2022) generated from a model of the
  breast-cancer normals (:mod:`vaelab.data.synthetic`);
- scikit-learn's 8x8 digit images, grey levels 0-16 scaled to [0, 1], one-vs-rest for each digit;
- scikit-image's three texture photographs (brick, grass, gravel; 512 x 512 grey), cut into
  patches, one-vs-rest for each texture: surface inspection in miniature. Training patches come from
  each photograph's top half and test patches from its bottom half, so no test patch overlaps a
  training one. scikit-image is an optional extra (``pip install vaelab[compare]``).
"""

from __future__ import annotations

import numpy as np

from vaelab.data.synthetic import TABULAR_ANOMALIES, tabular_anomalies

Task = tuple[np.ndarray, np.ndarray, np.ndarray]
TEXTURES = ("brick", "grass", "gravel")


def holdout_task(x: np.ndarray, y: np.ndarray, normal_class: int, seed: int, train_share: float = 0.6) -> Task:
    """``normal_class`` normal: ``train_share`` of its rows (seeded draw) train; the rest of them and
    every other row test."""
    normal = np.random.default_rng(seed).permutation(np.flatnonzero(y == normal_class))
    cut = int(train_share * len(normal))
    test = np.r_[normal[cut:], np.flatnonzero(y != normal_class)]
    return x[normal[:cut]], x[test], (y[test] != normal_class).astype(np.int64)


def table_tasks(seed: int) -> dict[str, Task]:
    """scikit-learn's breast cancer, wine and digits, one class normal, the features as they come."""
    from sklearn.datasets import load_breast_cancer, load_digits, load_wine

    sets = {"breast-cancer": (load_breast_cancer(), 1), "wine": (load_wine(), 0), "digits": (load_digits(), 0)}
    return {name: holdout_task(bunch.data.astype(np.float64), bunch.target, normal, seed)
            for name, (bunch, normal) in sets.items()}


def adbench_tasks(seed: int) -> dict[str, Task]:
    """ADBench's synthetic types from the breast-cancer normals (features log-scaled: they span decades)."""
    from sklearn.datasets import load_breast_cancer

    bunch = load_breast_cancer()
    x = np.log1p(bunch.data[bunch.target == 1])
    order = np.random.default_rng(seed).permutation(len(x))
    cut = int(0.6 * len(x))
    train, test_normal = x[order[:cut]], x[order[cut:]]
    out = {}
    for i, kind in enumerate(TABULAR_ANOMALIES):
        anomalies = tabular_anomalies(train, kind, n=len(test_normal) // 4, seed=seed * 10 + i)
        out[f"adbench-{kind}"] = (train, np.vstack([test_normal, anomalies]),
                                  np.r_[np.zeros(len(test_normal), np.int64), np.ones(len(anomalies), np.int64)])
    return out


def digit_image_task(normal_class: int, seed: int) -> Task:
    """scikit-learn's 8x8 digits as images in [0, 1], ``normal_class`` normal (60% of it trains)."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    return holdout_task(bunch.data / 16.0, bunch.target, normal_class, seed)


def texture_patches(name: str, patch: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """(top-half patches, bottom-half patches) of scikit-image's ``name`` photograph, non-overlapping
    ``patch`` x ``patch`` squares flattened to rows in [0, 1]."""
    if name not in TEXTURES:
        raise ValueError(f"unknown texture {name!r}; known: {', '.join(TEXTURES)}")
    try:
        from skimage import data as images
    except ImportError as exc:
        raise ImportError("the texture tasks need scikit-image: pip install 'vaelab[compare]'") from exc
    image = np.asarray(getattr(images, name)(), dtype=np.float64) / 255.0
    image = image if image.ndim == 2 else image.mean(-1)
    rows = image.shape[0] // patch
    cols = image.shape[1] // patch
    grid = image[:rows * patch, :cols * patch].reshape(rows, patch, cols, patch).swapaxes(1, 2)
    half = rows // 2
    return grid[:half].reshape(-1, patch * patch), grid[half:].reshape(-1, patch * patch)


def texture_task(normal: str, patch: int = 16) -> Task:
    """One texture normal (its top-half patches train), the other textures' bottom-half patches
    anomalies."""
    train, test = texture_patches(normal, patch)
    others = [texture_patches(name, patch)[1] for name in TEXTURES if name != normal]
    anomalies = np.vstack(others)
    return train, np.vstack([test, anomalies]), np.r_[np.zeros(len(test), np.int64), np.ones(len(anomalies), np.int64)]
