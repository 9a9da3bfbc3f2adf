"""Distributions against closed forms."""

import math

import torch
from torch.distributions import Bernoulli, Independent, Normal, kl_divergence

from vaelab import distributions as D


def test_kl_matches_torch_distributions():
    g = torch.Generator().manual_seed(0)
    mean, logvar = torch.randn(6, 3, generator=g), torch.randn(6, 3, generator=g)
    q = Independent(Normal(mean, torch.exp(0.5 * logvar)), 1)
    p = Independent(Normal(torch.zeros(3), torch.ones(3)), 1)
    assert torch.allclose(D.kl_diag_standard_normal(mean, logvar), kl_divergence(q, p), atol=1e-5)


def test_kl_analytic_value():
    # KL(N(1, e^0) || N(0, 1)) = 0.5 * (1 + 1 - 1 - 0) = 0.5 per dimension
    assert D.kl_diag_standard_normal(torch.ones(1, 4), torch.zeros(1, 4)).item() == 2.0


def test_log_densities_match_torch():
    g = torch.Generator().manual_seed(1)
    x, mean, logvar = (torch.randn(5, 4, generator=g) for _ in range(3))
    ref = Independent(Normal(mean, torch.exp(0.5 * logvar)), 1).log_prob(x)
    assert torch.allclose(D.log_normal_diag(x, mean, logvar), ref, atol=1e-5)
    assert torch.allclose(D.log_standard_normal(x), Independent(Normal(0.0, torch.ones(4)), 1).log_prob(x), atol=1e-5)
    xb = (torch.rand(5, 4, generator=g) > 0.5).float()
    assert torch.allclose(D.bernoulli_log_prob(xb, mean), Independent(Bernoulli(logits=mean), 1).log_prob(xb), atol=1e-5)


def test_log_mean_exp_is_stable():
    x = torch.tensor([[1000.0], [1000.0 + math.log(3.0)]])
    assert torch.allclose(D.log_mean_exp(x, 0), torch.tensor([1000.0 + math.log(2.0)]))


def test_reparameterize_is_seeded_and_shaped():
    mean, logvar = torch.zeros(3, 2), torch.zeros(3, 2)
    a = D.reparameterize(mean, logvar, 4, torch.Generator().manual_seed(5))
    b = D.reparameterize(mean, logvar, 4, torch.Generator().manual_seed(5))
    assert a.shape == (4, 3, 2) and torch.equal(a, b)
