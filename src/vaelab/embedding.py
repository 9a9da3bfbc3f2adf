"""2-D embeddings for looking at codes and data: PCA and t-SNE (openTSNE)."""

from __future__ import annotations

import numpy as np


def pca(x: np.ndarray, n_components: int, seed: int = 0) -> np.ndarray:
    """The first ``n_components`` principal components of ``x`` (n, d)."""
    from sklearn.decomposition import PCA

    n_components = min(n_components, x.shape[0], x.shape[1])
    return PCA(n_components=n_components, random_state=seed).fit_transform(x)


def tsne(x: np.ndarray, perplexity: float = 30.0, seed: int = 0, n_jobs: int | None = None) -> np.ndarray:
    """A t-SNE map (n, 2) of ``x`` with openTSNE (PCA initialisation, seeded), on ``n_jobs`` threads
    (default: torch's thread count, the budget of the unit computing it; all of the machine's cores
    made each local worker's map compete with the other worker's unit, up to 3x slower)."""
    import torch
    from openTSNE import TSNE

    n_jobs = n_jobs or torch.get_num_threads()

    x = np.ascontiguousarray(x, dtype=np.float64)
    perplexity = min(perplexity, max(2.0, (x.shape[0] - 1) / 3.0))
    embedding = TSNE(perplexity=perplexity, random_state=seed, n_jobs=n_jobs, initialization="pca",
                     verbose=False).fit(x)
    return np.asarray(embedding)


def subset(n: int, size: int, seed: int) -> np.ndarray:
    """Sorted indices of a seeded subset of ``range(n)`` (all of them if size >= n)."""
    if size >= n:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=size, replace=False))
