"""Synthetic anomalies of known types, for images and for tables.

Image injectors take rows ``x`` (n, h*w) with values in [0, 1] (ink = 1), the
image shape, a ``severity`` in [0, 1] and a NumPy generator, and return new
rows; severity 0 returns ``x`` unchanged. Tabular generators follow ADBench
(Han et al. 2022): they fit a model of the normal rows and draw anomalies
from a distorted copy of it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

Injector = Callable[[np.ndarray, tuple[int, int], float, np.random.Generator], np.ndarray]


def _images(x: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    return np.asarray(x, dtype=np.float32).reshape(-1, *shape).copy()


def _rows(imgs: np.ndarray) -> np.ndarray:
    return np.clip(imgs, 0.0, 1.0).reshape(len(imgs), -1).astype(np.float32)


def _square(shape: tuple[int, int], side: int, rng: np.random.Generator, center: tuple[float, float] | None = None):
    """Row and column slices of a ``side``-pixel square, at random or around ``center``."""
    h, w = shape
    side = max(1, min(side, h, w))
    if center is None:
        top, left = rng.integers(0, h - side + 1), rng.integers(0, w - side + 1)
    else:
        top = int(np.clip(round(center[0] - side / 2), 0, h - side))
        left = int(np.clip(round(center[1] - side / 2), 0, w - side))
    return slice(top, top + side), slice(left, left + side)


def gaussian_noise(x, shape, severity, rng):
    """Additive Gaussian noise with standard deviation 0.5 x severity, clipped to [0, 1]."""
    if severity == 0:
        return np.array(x, dtype=np.float32, copy=True)
    return _rows(_images(x, shape) + rng.normal(0.0, 0.5 * severity, size=(len(x), *shape)))


def salt_and_pepper(x, shape, severity, rng):
    """A fraction 0.3 x severity of the pixels set to 0 or 1 at random."""
    imgs = _images(x, shape)
    hit = rng.random(imgs.shape) < 0.3 * severity
    imgs[hit] = rng.integers(0, 2, size=int(hit.sum())).astype(np.float32)
    return _rows(imgs)


def occlusion(x, shape, severity, rng):
    """A solid ink square of side severity x half the image, at a random place."""
    imgs = _images(x, shape)
    side = int(round(severity * shape[0] / 2))
    if side:
        for img in imgs:
            img[_square(shape, side, rng)] = 1.0
    return _rows(imgs)


def _ink_center(img: np.ndarray, rng: np.random.Generator) -> tuple[float, float]:
    rows, cols = np.nonzero(img > 0.5)
    if len(rows) == 0:
        return img.shape[0] / 2, img.shape[1] / 2
    i = rng.integers(len(rows))
    return float(rows[i]), float(cols[i])


def erasure(x, shape, severity, rng):
    """A square of side severity x half the image set to background, centred on a random ink pixel."""
    imgs = _images(x, shape)
    side = int(round(severity * shape[0] / 2))
    if side:
        for img in imgs:
            img[_square(shape, side, rng, center=_ink_center(img, rng))] = 0.0
    return _rows(imgs)


def rotation(x, shape, severity, rng):
    """Rotation about the centre by severity x 180 degrees, in a random direction (bilinear)."""
    from scipy.ndimage import rotate

    if severity == 0:
        return np.array(x, dtype=np.float32, copy=True)
    imgs = _images(x, shape)
    signs = rng.choice([-1.0, 1.0], size=len(imgs))
    return _rows(np.stack([rotate(img, s * 180.0 * severity, reshape=False, order=1, mode="constant")
                           for img, s in zip(imgs, signs)]))


def horizontal_flip(x, shape, severity, rng):
    """Left-right mirror of a central band of rows covering a severity fraction of the image (1: all)."""
    imgs = _images(x, shape)
    rows = int(round(severity * shape[0]))
    if rows:
        top = (shape[0] - rows) // 2
        imgs[:, top:top + rows] = imgs[:, top:top + rows, ::-1]
    return _rows(imgs)


def _morphology(x, shape, severity, op):
    from scipy import ndimage

    if severity == 0:
        return np.array(x, dtype=np.float32, copy=True)
    footprint = np.ones((3, 3), dtype=bool)
    if severity <= 0.5:
        footprint[[0, 0, 2, 2], [0, 2, 0, 2]] = False  # a plus sign: one pixel in four directions
    imgs = _images(x, shape)
    fn = ndimage.grey_dilation if op == "dilate" else ndimage.grey_erosion
    return _rows(np.stack([fn(img, footprint=footprint) for img in imgs]))


def thickening(x, shape, severity, rng):
    """Strokes thickened by grey dilation: a 3x3 plus sign (severity <= 0.5) or square (above)."""
    return _morphology(x, shape, severity, "dilate")


def thinning(x, shape, severity, rng):
    """Strokes thinned by grey erosion: a 3x3 plus sign (severity <= 0.5) or square (above)."""
    return _morphology(x, shape, severity, "erode")


def blur(x, shape, severity, rng):
    """Gaussian blur with a standard deviation of 2 x severity pixels."""
    from scipy.ndimage import gaussian_filter

    if severity == 0:
        return np.array(x, dtype=np.float32, copy=True)
    return _rows(gaussian_filter(_images(x, shape), sigma=(0, 2.0 * severity, 2.0 * severity)))


def inversion(x, shape, severity, rng):
    """Intensities inverted (1 - x) in a central square of side severity x the image (1: all of it)."""
    imgs = _images(x, shape)
    side = int(round(severity * shape[0]))
    if side:
        rows, cols = _square(shape, side, rng, center=(shape[0] / 2, shape[1] / 2))
        imgs[:, rows, cols] = 1.0 - imgs[:, rows, cols]
    return _rows(imgs)


def overlay(x, shape, severity, rng, pool: np.ndarray | None = None):
    """A second image drawn from ``pool`` (default: the other rows of x) laid over each: max(x, severity x other)."""
    x = np.asarray(x, dtype=np.float32)
    pool = x if pool is None else np.asarray(pool, dtype=np.float32)
    other = pool[rng.integers(0, len(pool), size=len(x))]
    return _rows(np.maximum(x, severity * other).reshape(-1, *shape))


IMAGE_ANOMALIES: dict[str, Injector] = {
    "noise": gaussian_noise, "salt-pepper": salt_and_pepper, "occlusion": occlusion, "erasure": erasure,
    "rotation": rotation, "flip": horizontal_flip, "thicken": thickening, "thin": thinning, "blur": blur,
    "invert": inversion, "overlay": overlay,
}


def describe(name: str) -> str:
    """The one-line definition of an image anomaly type (its docstring)."""
    return IMAGE_ANOMALIES[name].__doc__.strip().splitlines()[0]


def inject(name: str, x: np.ndarray, shape: tuple[int, int], severity: float, seed: int,
           pool: np.ndarray | None = None) -> np.ndarray:
    """Apply anomaly type ``name`` with ``severity`` in [0, 1] to rows ``x``; reproducible from ``seed``."""
    if name not in IMAGE_ANOMALIES:
        raise ValueError(f"unknown anomaly type {name!r}; known: {', '.join(IMAGE_ANOMALIES)}")
    if not 0.0 <= severity <= 1.0:
        raise ValueError(f"severity must be in [0, 1]; got {severity}")
    rng = np.random.default_rng(seed)
    if name == "overlay":
        return overlay(x, shape, severity, rng, pool=pool)
    return IMAGE_ANOMALIES[name](x, shape, severity, rng)


# ---- tabular anomalies (ADBench) -------------------------------------------

TABULAR_ANOMALIES = ("local", "global", "dependency", "clustered")


def tabular_anomalies(x_normal: np.ndarray, kind: str, n: int, seed: int, alpha: float | None = None,
                      n_components: int = 5) -> np.ndarray:
    """``n`` anomalies of ADBench type ``kind`` generated from a model of ``x_normal``.

    - ``local``: a Gaussian mixture fitted to the normals, sampled with every
      covariance scaled by ``alpha`` (default 5);
    - ``global``: uniform in each feature's normal range widened by ``alpha`` (default 1.1);
    - ``dependency``: each feature drawn independently from its own normal
      marginal (a per-feature KDE), which keeps the marginals and destroys the
      dependence between features (ADBench fits a vine copula to the normals;
      any dependence model serves, since the anomalies have none);
    - ``clustered``: the mixture with its means scaled by ``alpha`` (default 5) about the data mean.
    """
    from sklearn.mixture import GaussianMixture

    rng = np.random.default_rng(seed)
    x_normal = np.asarray(x_normal, dtype=np.float64)
    d = x_normal.shape[1]
    if kind == "global":
        a = 1.1 if alpha is None else alpha
        lo, hi = x_normal.min(0), x_normal.max(0)
        mid, half = (lo + hi) / 2, (hi - lo) / 2 * a
        return rng.uniform(mid - half, mid + half, size=(n, d))
    if kind == "dependency":
        bandwidth = 1.06 * x_normal.std(0) * len(x_normal) ** (-1 / 5)  # Silverman, per feature
        picks = rng.integers(0, len(x_normal), size=(n, d))
        return x_normal[picks, np.arange(d)] + rng.normal(size=(n, d)) * bandwidth
    if kind not in ("local", "clustered"):
        raise ValueError(f"unknown tabular anomaly type {kind!r}; known: {', '.join(TABULAR_ANOMALIES)}")
    a = 5.0 if alpha is None else alpha
    gmm = GaussianMixture(n_components=min(n_components, len(x_normal)), covariance_type="full",
                          random_state=seed).fit(x_normal)
    comp = rng.choice(len(gmm.weights_), size=n, p=gmm.weights_)
    means, covs = gmm.means_.copy(), gmm.covariances_.copy()
    if kind == "local":
        covs = covs * a
    else:
        center = x_normal.mean(0)
        means = center + a * (means - center)
    out = np.empty((n, d))
    for k in np.unique(comp):
        rows = comp == k
        out[rows] = rng.multivariate_normal(means[k], covs[k], size=int(rows.sum()))
    return out


# ---- test sets -------------------------------------------------------------

NORMAL = "normal"


@dataclass(frozen=True)
class SyntheticTestSet:
    """Normal rows plus injected anomalies, with each row's type kept for evaluation."""

    x: np.ndarray          # (n, d)
    kind: np.ndarray       # (n,) "normal" or the anomaly type
    source: np.ndarray     # (n,) the row of the clean data each row came from (-1: generated)
    label: np.ndarray | None  # (n,) the class label of the source row, where known
    severity: float

    @property
    def is_anomaly(self) -> np.ndarray:
        return (self.kind != NORMAL).astype(np.int64)


def image_test_set(x: np.ndarray, shape: tuple[int, int], types: list[str], fraction: float, severity: float,
                   seed: int, y: np.ndarray | None = None) -> SyntheticTestSet:
    """Clean rows of ``x`` plus, for each type, ``fraction`` x len(x) injected copies of other rows.

    The rows that get an anomaly are drawn without replacement and are not
    also used as normals, so no clean image appears beside its own corrupted copy.
    """
    rng = np.random.default_rng(seed)
    n_each = int(round(fraction * len(x)))
    if n_each * len(types) >= len(x):
        raise ValueError(f"{len(types)} types x {n_each} anomalies leave no normal rows of {len(x)}")
    order = rng.permutation(len(x))
    sources = {t: np.sort(order[i * n_each:(i + 1) * n_each]) for i, t in enumerate(types)}
    normal = np.sort(order[len(types) * n_each:])
    parts, kinds, srcs = [x[normal]], [np.full(len(normal), NORMAL, dtype=object)], [normal]
    for i, t in enumerate(types):
        parts.append(inject(t, x[sources[t]], shape, severity, seed=seed * 1000 + i + 1, pool=x[normal]))
        kinds.append(np.full(n_each, t, dtype=object))
        srcs.append(sources[t])
    source = np.concatenate(srcs)
    return SyntheticTestSet(np.concatenate(parts).astype(np.float32), np.concatenate(kinds).astype(str), source,
                            None if y is None else np.asarray(y)[source], severity)


def tabular_test_set(x_fit: np.ndarray, x_normal: np.ndarray, types: list[str], fraction: float, seed: int,
                     alpha: float | None = None) -> SyntheticTestSet:
    """Normal rows ``x_normal`` plus ``fraction`` x len(x_normal) anomalies of each type,
    generated from a model fitted on ``x_fit`` (training normals only)."""
    n_each = int(round(fraction * len(x_normal)))
    parts = [np.asarray(x_normal, dtype=np.float64)]
    kinds = [np.full(len(x_normal), NORMAL, dtype=object)]
    for i, t in enumerate(types):
        parts.append(tabular_anomalies(x_fit, t, n_each, seed=seed * 1000 + i + 1, alpha=alpha))
        kinds.append(np.full(n_each, t, dtype=object))
    source = np.r_[np.arange(len(x_normal)), np.full(n_each * len(types), -1)]
    return SyntheticTestSet(np.concatenate(parts).astype(np.float32), np.concatenate(kinds).astype(str), source,
                            None, float("nan") if alpha is None else alpha)
