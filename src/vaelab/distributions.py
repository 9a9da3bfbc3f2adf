"""Pure log-density math on tensors. Every function returns logs, never probabilities.

Shapes: ``(..., d)`` inputs reduce over the last axis to ``(...)``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

LOG_2PI = math.log(2.0 * math.pi)


def log_normal_terms(x: torch.Tensor, mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """log N(x_j; mean_j, exp(logvar_j)) per coordinate (nats), not summed."""
    return -0.5 * (LOG_2PI + logvar + (x - mean).pow(2) * torch.exp(-logvar))


def log_normal_diag(x: torch.Tensor, mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """log N(x; mean, diag(exp(logvar))), summed over the last axis (nats)."""
    return log_normal_terms(x, mean, logvar).sum(-1)


def log_standard_normal(x: torch.Tensor) -> torch.Tensor:
    """log N(x; 0, I), summed over the last axis (nats)."""
    return -0.5 * (LOG_2PI + x.pow(2)).sum(-1)


def bernoulli_log_terms(x: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """log Bernoulli(x_j; sigmoid(logits_j)) per coordinate (nats), not summed; x may be grey in [0, 1]."""
    return -F.binary_cross_entropy_with_logits(logits, x.expand_as(logits), reduction="none")


def bernoulli_log_prob(x: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """log Bernoulli(x; sigmoid(logits)) summed over the last axis; x may be grey in [0, 1]."""
    return bernoulli_log_terms(x, logits).sum(-1)


def kl_diag_standard_normal(mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mean, diag(exp(logvar))) || N(0, I)) in closed form, summed over the last axis."""
    return 0.5 * (mean.pow(2) + torch.exp(logvar) - 1.0 - logvar).sum(-1)


def log_mean_exp(x: torch.Tensor, dim: int = 0) -> torch.Tensor:
    """log(mean(exp(x))) along ``dim``, computed stably."""
    return torch.logsumexp(x, dim=dim) - math.log(x.shape[dim])


def standard_normal(shape: tuple[int, ...], like: torch.Tensor, generator) -> torch.Tensor:
    """Standard normal draws of ``shape`` on ``like``'s device and dtype.

    ``generator``: a ``torch.Generator``, None (torch's global one), or a per-row noise source with
    a ``standard_normal(shape, dtype)`` method (:class:`vaelab.runtime.RowNoise`).
    """
    if generator is not None and not isinstance(generator, torch.Generator):
        return generator.standard_normal(shape, like.dtype)
    return torch.randn(shape, generator=generator, device=like.device).to(like.dtype)


def reparameterize(mean: torch.Tensor, logvar: torch.Tensor, n_samples: int, generator) -> torch.Tensor:
    """``n_samples`` draws z = mean + exp(logvar / 2) * eps, shape (n_samples, *mean.shape)
    (``generator`` as in :func:`standard_normal`)."""
    eps = standard_normal((n_samples, *mean.shape), mean, generator)
    return mean + torch.exp(0.5 * logvar) * eps


def log_prior_over_posterior(z: torch.Tensor, eps: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """log N(z; 0, I) - log N(z; mean, diag(exp(logvar))) for z = mean + exp(logvar / 2) * eps,
    summed over the last axis: -|z|^2 / 2 + |eps|^2 / 2 + sum(logvar) / 2 (the 2 pi terms cancel and
    the posterior's standardised residual is eps itself)."""
    return 0.5 * (eps.pow(2).sum(-1) - z.pow(2).sum(-1) + logvar.sum(-1))
