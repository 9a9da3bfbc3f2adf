"""Exact t-SNE (vaelab.tsne): calibrated affinities, the exact gradient, and maps as good as openTSNE's."""

import math

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from sklearn.manifold import trustworthiness

from vaelab import embedding
from vaelab import tsne as exact


def _digits(n: int) -> tuple[np.ndarray, np.ndarray]:
    x, y = load_digits(return_X_y=True)
    return x[:n].astype(np.float64), y[:n]


def test_conditional_affinities_have_the_asked_perplexity():
    x = torch.as_tensor(_digits(200)[0], dtype=torch.float32)
    sq, _ = exact.nearest_neighbours(x, 45)
    p = exact.conditional_affinities(sq, 15.0)
    entropy = -(p * torch.log(p.clamp_min(1e-300))).sum(1)
    assert torch.allclose(p.sum(1), torch.ones(200, dtype=p.dtype))
    assert float((entropy - math.log(15.0)).abs().max()) < 1e-6


def test_nearest_neighbours_match_a_brute_force_search():
    x = torch.randn(90, 7, generator=torch.Generator().manual_seed(0))
    d = torch.cdist(x, x).square()
    d.fill_diagonal_(math.inf)
    want = torch.topk(d, 5, largest=False).indices
    assert torch.equal(exact.nearest_neighbours(x, 5)[1], want)


def test_joint_affinities_are_symmetric_and_sum_to_one():
    x = torch.as_tensor(_digits(150)[0], dtype=torch.float32)
    values, index = exact.joint_affinities(x, 10.0)
    dense = torch.zeros(150, 150).index_put_((torch.arange(150).unsqueeze(1).expand_as(index), index), values,
                                             accumulate=True)
    assert torch.allclose(dense, dense.T, atol=1e-9)
    assert abs(float(dense.sum()) - 1.0) < 1e-5 and float(dense.diagonal().abs().max()) == 0.0


def test_gradient_and_kl_are_those_of_autograd():
    x = torch.as_tensor(_digits(60)[0], dtype=torch.float64)
    values, index = exact.joint_affinities(x, 8.0)
    p = torch.zeros(60, 60, dtype=torch.float64).index_put_(
        (torch.arange(60).unsqueeze(1).expand_as(index), index), values, accumulate=True)
    mask, off_diagonal = p > 0, 1 - torch.eye(60, dtype=torch.float64)
    start = torch.randn(60, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    for exaggeration in (1.0, 12.0):
        y = start.clone().requires_grad_()
        w = 1.0 / (1.0 + torch.cdist(y, y).square())
        log_z = torch.log((w * off_diagonal).sum())
        # KL(P || Q) = sum p log p - sum p log w + log Z; exaggeration a scales P's part of the gradient
        objective = -exaggeration * (p[mask] * torch.log(w[mask])).sum() + log_z
        objective.backward()
        grad, kl = exact.gradient(start, values, index, exaggeration)
        assert torch.allclose(grad, y.grad, atol=1e-10)
        want_kl = (p[mask] * torch.log(p[mask])).sum() - (p[mask] * torch.log(w[mask])).sum() + log_z
        assert abs(float(kl) - float(want_kl.detach())) < 1e-10


def test_exact_map_is_seeded_and_as_good_as_opentsne():
    x, _ = _digits(400)
    ours = embedding.exact_tsne(x, 30.0, seed=0)
    assert ours.shape == (400, 2) and np.isfinite(ours).all()
    assert np.array_equal(ours, embedding.exact_tsne(x, 30.0, seed=0))
    theirs = embedding.tsne(x, 30.0, seed=0)
    assert trustworthiness(x, ours, n_neighbors=10) >= trustworthiness(x, theirs, n_neighbors=10) - 0.01
    assert trustworthiness(x, ours, n_neighbors=10) > trustworthiness(x, x[:, :2], n_neighbors=10) + 0.1


def test_too_few_points_are_refused():
    with pytest.raises(ValueError, match="at least 3 points"):
        exact.tsne(torch.zeros(2, 3), torch.zeros(2, 2))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_map_is_exact_seeded_and_as_good_as_the_cpu_map():
    x, _ = _digits(1000)
    on_gpu = embedding.tsne(x, 30.0, seed=0, device="cuda")
    assert np.array_equal(on_gpu, embedding.tsne(x, 30.0, seed=0, device="cuda"))
    on_cpu = embedding.exact_tsne(x, 30.0, seed=0)
    assert abs(trustworthiness(x, on_gpu, n_neighbors=10) - trustworthiness(x, on_cpu, n_neighbors=10)) < 0.01
