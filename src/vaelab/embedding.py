"""2-D embeddings for looking at codes and data: PCA and t-SNE (openTSNE on a CPU, exact on a GPU)."""

from __future__ import annotations

import numpy as np


def pca(x: np.ndarray, n_components: int, seed: int = 0) -> np.ndarray:
    """The first ``n_components`` principal components of ``x`` (n, d)."""
    from sklearn.decomposition import PCA

    n_components = min(n_components, x.shape[0], x.shape[1])
    return PCA(n_components=n_components, random_state=seed).fit_transform(x)


def tsne_method(device: str) -> str:
    """Which t-SNE :func:`tsne` runs on ``device``: "exact" on CUDA, "openTSNE" elsewhere."""
    import torch

    return "exact" if torch.device(device).type == "cuda" else "openTSNE"


def tsne(x: np.ndarray, perplexity: float = 30.0, seed: int = 0, n_jobs: int | None = None,
         device: str = "cpu") -> np.ndarray:
    """A t-SNE map (n, 2) of ``x``, PCA-initialised and seeded.

    On a CUDA ``device``: exact t-SNE over all pairs (:mod:`vaelab.tsne`), seconds for 10,000 points.
    Elsewhere: openTSNE's approximation on ``n_jobs`` threads (default: torch's thread count, the
    budget of the unit computing it; all of the machine's cores made each local worker's map compete
    with the other worker's unit, up to 3x slower).
    """
    import torch

    x = np.ascontiguousarray(x, dtype=np.float64)
    if tsne_method(device) == "exact":
        return exact_tsne(x, perplexity, seed, device)  # it caps the perplexity itself (vaelab.tsne.tsne)
    from openTSNE import TSNE

    perplexity = min(perplexity, max(2.0, (x.shape[0] - 1) / 3.0))  # openTSNE refuses more than (n - 1) / 3

    n_jobs = n_jobs or torch.get_num_threads()
    embedding = TSNE(perplexity=perplexity, random_state=seed, n_jobs=n_jobs, initialization="pca",
                     verbose=False).fit(x)
    return np.asarray(embedding)


def exact_tsne(x: np.ndarray, perplexity: float = 30.0, seed: int = 0, device: str = "cpu") -> np.ndarray:
    """The exact t-SNE map (n, 2) of ``x`` on ``device``, from its first two principal components
    scaled to standard deviation 1e-4."""
    import torch

    from vaelab.tsne import tsne as optimise

    init = pca(x, 2, seed)
    init = init / max(float(init[:, 0].std()), 1e-12) * 1e-4
    points, _ = optimise(torch.as_tensor(x, dtype=torch.float32, device=device),
                         torch.as_tensor(init, dtype=torch.float32, device=device), perplexity)
    return points.double().cpu().numpy()


def subset(n: int, size: int, seed: int) -> np.ndarray:
    """Sorted indices of a seeded subset of ``range(n)`` (all of them if size >= n)."""
    if size >= n:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=size, replace=False))
