"""Exact t-SNE in PyTorch, for GPUs: every repulsive pair computed, no tree or grid approximation.

t-SNE (van der Maaten & Hinton 2008) places points in 2-D so that a Student-t similarity between
the placed points matches Gaussian affinities between the inputs. On a CPU, openTSNE's
approximations (:func:`vaelab.embedding.tsne`) are the fast way; on a GPU the exact gradient over
all n^2 pairs is a few large element-wise passes per iteration, so 10,000 points take seconds.

The affinities are openTSNE's kind: each point's ``3 * perplexity`` nearest neighbours (exact),
a Gaussian bandwidth per point found by bisection so that its conditional distribution has the
given perplexity, symmetrised. The optimiser is the usual one: gradient descent with momentum and
per-coordinate gains (Jacobs 1988), early exaggeration 12 for the first 250 iterations, learning
rate max(n / 12, 200) (Belkina et al. 2019), PCA initialisation scaled to standard deviation 1e-4
(Kobak & Linderman 2021). Sums are ordered the same way on every run (no atomic adds), so a seeded
map is reproducible on the same device.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class TsneSchedule:
    """The optimiser's settings (the defaults are the usual ones, above)."""

    early_iterations: int = 250
    iterations: int = 500
    exaggeration: float = 12.0
    early_momentum: float = 0.5
    momentum: float = 0.8
    min_gain: float = 0.01


def _block_rows(n: int, budget: int = 1 << 25) -> int:
    """Rows per block so that a block of n columns holds at most ``budget`` values."""
    return max(1, min(n, budget // max(n, 1)))


def squared_distances(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Squared Euclidean distances (len(a), len(b)), clamped at 0 against rounding."""
    d = (a * a).sum(1, keepdim=True) + (b * b).sum(1) - 2.0 * (a @ b.T)
    return d.clamp_min_(0.0)


def nearest_neighbours(x: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Each row's ``k`` nearest other rows: (squared distances, indices), both (n, k), nearest first."""
    n = len(x)
    dists, index = [], []
    step = _block_rows(n)
    for start in range(0, n, step):
        d = squared_distances(x[start:start + step], x)
        rows = torch.arange(start, min(start + step, n), device=x.device)
        d[rows - start, rows] = math.inf
        values, idx = torch.topk(d, k, dim=1, largest=False, sorted=True)
        dists.append(values)
        index.append(idx)
    return torch.cat(dists), torch.cat(index)


def conditional_affinities(sq_dists: torch.Tensor, perplexity: float, steps: int = 64) -> torch.Tensor:
    """p_{j|i} over each row's neighbours (n, k) with a Gaussian bandwidth per row chosen by bisection
    so that the row's entropy is log(perplexity); computed in float64."""
    d = sq_dists.double()
    d = d - d[:, :1]  # the nearest neighbour at 0: the same distribution, no underflow
    target = math.log(perplexity)
    beta = torch.ones(len(d), 1, dtype=d.dtype, device=d.device)
    lo = torch.zeros_like(beta)
    hi = torch.full_like(beta, math.inf)
    for _ in range(steps):
        p = torch.softmax(-beta * d, dim=1)
        entropy = -(p * torch.log(p.clamp_min(1e-300))).sum(1, keepdim=True)
        too_flat = entropy > target  # too wide a kernel: raise beta
        lo = torch.where(too_flat, beta, lo)
        hi = torch.where(too_flat, hi, beta)
        beta = torch.where(torch.isinf(hi), beta * 2.0, (lo + hi) / 2.0)
    return torch.softmax(-beta * d, dim=1)


def joint_affinities(x: torch.Tensor, perplexity: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric joint affinities p_ij = (p_{j|i} + p_{i|j}) / 2n as a padded neighbour list:
    (values, indices), both (n, m), where m is the largest number of neighbours of any row and a
    padding entry has value 0 and its own row as index."""
    n = len(x)
    k = min(n - 1, max(1, int(3 * perplexity)))
    sq, idx = nearest_neighbours(x, k)
    p = conditional_affinities(sq, perplexity).to(x.dtype)
    rows = torch.arange(n, device=x.device).repeat_interleave(k)
    cols = idx.reshape(-1)
    pairs = torch.sparse_coo_tensor(torch.stack([torch.cat([rows, cols]), torch.cat([cols, rows])]),
                                    torch.cat([p.reshape(-1), p.reshape(-1)]) / (2 * n), (n, n),
                                    check_invariants=False).coalesce()
    (r, c), v = pairs.indices(), pairs.values()  # sorted by row, then column
    counts = torch.bincount(r, minlength=n)
    starts = torch.cumsum(counts, 0) - counts
    slot = torch.arange(len(r), device=x.device) - starts[r]
    width = int(counts.max())
    values = torch.zeros(n, width, dtype=x.dtype, device=x.device)
    indices = torch.arange(n, device=x.device).unsqueeze(1).repeat(1, width)
    values[r, slot] = v
    indices[r, slot] = c
    return values, indices


def gradient(y: torch.Tensor, p_values: torch.Tensor, p_index: torch.Tensor, exaggeration: float = 1.0,
             with_kl: bool = True) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The gradient of KL(P || Q) with respect to the map ``y`` (n, 2), with P scaled by
    ``exaggeration``, and (``with_kl``, else None) KL(P || Q) itself for the unexaggerated P, exactly
    over all pairs.

    With w_ij = 1 / (1 + |y_i - y_j|^2) and Z = sum_{i != j} w_ij:
    grad_i = 4 (sum_j a p_ij w_ij (y_i - y_j) - sum_j w_ij^2 (y_i - y_j) / Z).
    """
    n = len(y)
    neighbours = y[p_index]                                    # (n, m, 2)
    diff = y.unsqueeze(1) - neighbours
    w_near = 1.0 / (1.0 + (diff * diff).sum(-1))
    attract = ((p_values * w_near).unsqueeze(-1) * diff).sum(1)
    z = y.new_zeros(())
    push_weight = y.new_empty(n)
    push_mix = y.new_empty(n, y.shape[1])
    step = _block_rows(n)
    for start in range(0, n, step):
        w = 1.0 / (1.0 + squared_distances(y[start:start + step], y))
        z = z + w.sum()
        w.square_()
        push_weight[start:start + step] = w.sum(1)
        push_mix[start:start + step] = w @ y
    z = z - n  # the diagonal: w_ii = 1
    repulse = (push_weight.unsqueeze(1) * y - push_mix) / z
    grad = 4.0 * (exaggeration * attract - repulse)
    if not with_kl:
        return grad, None
    kl = (p_values * (torch.log(p_values.clamp_min(1e-30)) - torch.log(w_near.clamp_min(1e-30) / z))).sum()
    return grad, kl


def tsne(x: torch.Tensor, init: torch.Tensor, perplexity: float = 30.0,
         schedule: TsneSchedule = TsneSchedule()) -> tuple[torch.Tensor, float]:
    """An exact t-SNE map (n, 2) of ``x`` (n, d) from ``init`` (n, 2), on their device, and the final
    KL(P || Q). ``perplexity`` is capped at (n - 1) / 3, as openTSNE does."""
    n = len(x)
    if n < 3:
        raise ValueError(f"t-SNE needs at least 3 points, got {n}")
    perplexity = min(perplexity, max(1.0, (n - 1) / 3.0))
    p_values, p_index = joint_affinities(x, perplexity)
    y = init.to(x.dtype).clone()
    update = torch.zeros_like(y)
    gains = torch.ones_like(y)
    rate = max(n / schedule.exaggeration, 200.0)
    total = schedule.early_iterations + schedule.iterations
    kl = None
    for it in range(total):
        early = it < schedule.early_iterations
        # the KL only where it is returned: from the gradient of the last iteration (the map before its step)
        grad, kl = gradient(y, p_values, p_index, schedule.exaggeration if early else 1.0, with_kl=it == total - 1)
        same_sign = (grad > 0) == (update > 0)
        gains = torch.where(same_sign, gains * 0.8, gains + 0.2).clamp_min_(schedule.min_gain)
        update = (schedule.early_momentum if early else schedule.momentum) * update - rate * gains * grad
        y = y + update
        y = y - y.mean(0)
    return y, float(kl) if kl is not None else 0.0  # no iterations: nothing measured
