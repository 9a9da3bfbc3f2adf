"""Likelihood scores: pure per-row functions of a trained model and a data batch, and their
batched evaluation over whole arrays (the VAE's scores, and M2's class bounds and classifier).

Every function takes ``x`` of shape (n, d) and returns a tensor of shape (n,)
in nats. Sign: for ``elbo``, ``iwae_log_px`` and ``reconstruction_log_prob``
higher means more likely (more normal); ``reconstruction_error`` is a
squared distance, so higher means less normal. Monte-Carlo scores take a
``torch.Generator`` (or a :class:`~vaelab.runtime.RowNoise`) and are deterministic for it.

Whole arrays (:func:`score_array`, :func:`latent_means`, M2's scores) go
through the model in blocks of exactly ``batch_size`` rows (the last one
padded) with each row's noise drawn from its own seed, so a row's score does
not depend on the other rows scored with it, their number or their order
(the same float32 products, the same draws).

The model must provide ``encode(x) -> (mean, logvar)``,
``log_px_given_z(x, z)`` (z with leading sample axes) and
``decoder_mean(z)``, with a standard normal prior.
"""

from __future__ import annotations

import math
import weakref
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from torch import nn

from vaelab import distributions as D
from vaelab.config import ScoreConfig
from vaelab.runtime import RowNoise, autocast, resolve_precision


def elbo(model: nn.Module, x: torch.Tensor, n_samples: int = 1,
         generator: torch.Generator | None = None) -> torch.Tensor:
    """ELBO = E_q[log p(x|z)] - KL(q(z|x) || p(z)), the expectation over ``n_samples`` draws."""
    mean, logvar = model.encode(x)
    z = D.reparameterize(mean, logvar, n_samples, generator)
    return model.log_px_given_z(x, z).mean(0) - D.kl_diag_standard_normal(mean, logvar)


def log_importance_weights(model: nn.Module, x: torch.Tensor, mean: torch.Tensor,
                           logvar: torch.Tensor, n_samples: int,
                           generator: torch.Generator | RowNoise | None) -> torch.Tensor:
    """log p(x, z_k) - log q(z_k|x) for z_k ~ q(z|x); shape (n, n_samples), a row's samples together.

    The prior and posterior terms come from the draws in closed form
    (:func:`~vaelab.distributions.log_prior_over_posterior`), and the decoder's term through
    ``model.log_px_given_codes`` where the model has it (many codes per row, less work per code).
    """
    eps = D.standard_normal((n_samples, *mean.shape), mean, generator).transpose(0, 1)
    z = mean.unsqueeze(1) + torch.exp(0.5 * logvar).unsqueeze(1) * eps
    prior = D.log_prior_over_posterior(z, eps, logvar.unsqueeze(1))
    if hasattr(model, "log_px_given_codes"):
        return model.log_px_given_codes(x, z).to(mean.dtype) + prior
    return model.log_px_given_z(x, z.transpose(0, 1)).transpose(0, 1).to(mean.dtype) + prior


def iwae_log_px(model: nn.Module, x: torch.Tensor, n_samples: int = 1000,
                generator: torch.Generator | RowNoise | None = None, chunk: int | None = None,
                rows: int | None = None, precision: str = "float32") -> torch.Tensor:
    """Importance-sampled log p(x) with K = ``n_samples`` (the IWAE bound, Burda et al. 2016).

    log (1/K) sum_k p(x, z_k) / q(z_k|x). The rows go through ``rows`` at a time with their K
    samples drawn ``chunk`` at a time and combined by a running log-sum-exp, so memory stays
    bounded; groups made only of padding rows (a :class:`RowNoise` says which) are skipped. The
    encoder and every sum run in the input's dtype; ``precision`` = "bfloat16" runs the decoder's
    products in bfloat16 (see :func:`vaelab.runtime.autocast`).
    """
    mean, logvar = (t.to(x.dtype) for t in model.encode(x))
    rows = rows or x.shape[0]
    chunk = chunk or n_samples
    parts = []
    for start in range(0, x.shape[0], rows):
        stop = min(start + rows, x.shape[0])
        noise = generator.select(start, stop) if isinstance(generator, RowNoise) else generator
        if isinstance(noise, RowNoise) and noise.n_real == 0:
            parts.append(x.new_zeros(stop - start))
            continue
        total = x.new_full((stop - start,), -math.inf)
        for first in range(0, n_samples, chunk):
            k = min(chunk, n_samples - first)
            with autocast(x.device, precision):
                logw = log_importance_weights(model, x[start:stop], mean[start:stop],
                                              logvar[start:stop], k, noise)
            total = torch.logaddexp(total, torch.logsumexp(logw, dim=1))
        parts.append(total)
    return torch.cat(parts) - math.log(n_samples)


REGRET_STEPS = 30  # Adam steps of each row's own posterior in likelihood_regret
REGRET_LR = 0.05   # their step size (latent units and log-variances)


def likelihood_regret(model: nn.Module, x: torch.Tensor, n_samples: int = 8,
                      generator: torch.Generator | RowNoise | None = None, steps: int = REGRET_STEPS,
                      lr: float = REGRET_LR) -> torch.Tensor:
    """Likelihood regret (Xiao et al. 2020), with the posterior's parameters as what is refitted: the
    ELBO of x under a q(z|x) whose mean and log-variance are fitted to x alone (``steps`` of Adam
    from the encoder's output, the decoder fixed), minus the ELBO under the encoder's own q(z|x).

    Xiao et al. refit the encoder's weights per input; refitting its output instead measures the same
    gap (how much better x could be explained than the encoder, trained on normal data, explains it),
    costs a few decoder passes per step and lets every row of a batch be refitted at once, each on its
    own (the bound is a sum over rows and Adam works per element). Both bounds use the same
    ``n_samples`` draws per row; the best bound seen counts, so the regret is >= 0. Nats; higher =
    less normal.
    """
    with torch.no_grad():
        mean, logvar = model.encode(x)
    eps = D.standard_normal((n_samples, *mean.shape), mean, generator)

    def bound(m: torch.Tensor, lv: torch.Tensor) -> torch.Tensor:
        return model.log_px_given_z(x, m + torch.exp(0.5 * lv) * eps).mean(0) - D.kl_diag_standard_normal(m, lv)

    with torch.no_grad():
        before = bound(mean, logvar)
    params = [mean.clone().requires_grad_(True), logvar.clone().requires_grad_(True)]
    optimizer = torch.optim.Adam(params, lr=lr)
    best = before.clone()
    with torch.enable_grad():
        for _ in range(steps):
            value = bound(*params)
            best = torch.maximum(best, value.detach())
            # gradients for the posterior's parameters only: the decoder's weights get none
            grads = torch.autograd.grad(-value.sum(), params)
            for p, g in zip(params, grads):
                p.grad = g
            optimizer.step()
    with torch.no_grad():
        best = torch.maximum(best, bound(*params))
    return best - before


def reconstruction_log_prob(model: nn.Module, x: torch.Tensor, n_samples: int = 10,
                            generator: torch.Generator | None = None) -> torch.Tensor:
    """The reconstruction probability of An & Cho (2015), as a log.

    log (1/L) sum_l p(x | z_l), z_l ~ q(z|x): how well the decoder explains x
    from codes the encoder gives it, without the prior's penalty.
    """
    mean, logvar = model.encode(x)
    z = D.reparameterize(mean, logvar, n_samples, generator)
    return D.log_mean_exp(model.log_px_given_z(x, z), dim=0)


def reconstruction_error(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Squared error between x and E[x | z = mean(q(z|x))], summed over features."""
    mean, _ = model.encode(x)
    return (x - model.decoder_mean(mean).float()).pow(2).sum(-1)


# ---- batched evaluation on whole data sets ----------------------------------
@dataclass(frozen=True)
class ScoreSpec:
    name: str
    higher_is_normal: bool
    description: str


SCORES: dict[str, ScoreSpec] = {
    "elbo": ScoreSpec("elbo", True, "evidence lower bound (nats)"),
    "iwae": ScoreSpec("iwae", True, "importance-sampled log p(x) (nats)"),
    "recon-prob": ScoreSpec("recon-prob", True, "log reconstruction probability, An & Cho 2015 (nats)"),
    "recon-error": ScoreSpec("recon-error", False, "squared reconstruction error"),
    "regret": ScoreSpec("regret", False, "likelihood regret, Xiao et al. 2020 (nats)"),
}


def row_blocks(x: np.ndarray | torch.Tensor, block: int, device: torch.device | str):
    """Yield (rows, n): ``x`` in blocks of exactly ``block`` float32 rows on ``device``, the last one
    padded with zero rows, and how many of each block's rows are real."""
    x = torch.as_tensor(np.asarray(x, dtype=np.float32) if not torch.is_tensor(x) else x)
    for start in range(0, x.shape[0], block):
        rows = x[start:start + block].to(device, torch.float32)
        n = rows.shape[0]
        if n < block:
            rows = torch.cat([rows, rows.new_zeros((block - n, *rows.shape[1:]))])
        yield rows, n


def _per_row(x: np.ndarray | torch.Tensor, block: int, device: torch.device | str,
             fn: Callable[[torch.Tensor, int], torch.Tensor]) -> torch.Tensor:
    """``fn(block rows, real rows)`` over :func:`row_blocks`, the padding dropped, on the CPU."""
    parts = [fn(rows, n)[:n].cpu() for rows, n in row_blocks(x, block, device)]
    return torch.cat(parts) if parts else torch.zeros(0)


@torch.no_grad()
def latent_means(model: nn.Module, x: np.ndarray | torch.Tensor, batch_size: int = 4096) -> np.ndarray:
    """The means of q(z|x), (n, latent_dim), computed in blocks on the model's device."""
    return latent_posteriors(model, x, batch_size)[0]


@torch.no_grad()
def latent_posteriors(model: nn.Module, x: np.ndarray | torch.Tensor,
                      batch_size: int = 4096) -> tuple[np.ndarray, np.ndarray]:
    """The means and standard deviations of q(z|x), each (n, latent_dim), in blocks on the model's device."""
    model.eval()
    device = next(model.parameters()).device

    def both(rows: torch.Tensor, n: int) -> torch.Tensor:
        mean, logvar = model.encode(rows)
        return torch.cat([mean.float(), (0.5 * logvar.float()).exp()], dim=1)

    joined = _per_row(x, batch_size, device, both).numpy()
    half = joined.shape[1] // 2
    return np.ascontiguousarray(joined[:, :half]), np.ascontiguousarray(joined[:, half:])


# "auto" scores in bfloat16 only where this much agrees with float32 (mean absolute difference of
# log p(x) over a few rows, nats, the same draws): the accuracy asked of the fast scorer.
IWAE_TOLERANCE = 0.05


PRECISION_PROBE_ROWS = 64  # the model's own draws on which bfloat16 must agree with float32
_precision_choices: "weakref.WeakKeyDictionary[nn.Module, tuple[tuple, str]]" = weakref.WeakKeyDictionary()


def scoring_precision(model: nn.Module, precision: str, device: torch.device | str) -> str:
    """The precision importance sampling under ``model`` runs in: ``precision`` resolved by
    :func:`vaelab.runtime.resolve_precision`, where bfloat16 must also agree with float32 within
    :data:`IWAE_TOLERANCE` (mean over rows, K = 64, the same draws) on :data:`PRECISION_PROBE_ROWS`
    rows that the model itself generates (seed 0). The choice depends on the model alone, never on
    the rows being scored (so a row scores the same in any batch), and is made once per model and
    weights (a training step makes it anew)."""
    if precision != "auto":
        return resolve_precision(precision, device)
    versions = tuple(p._version for p in model.parameters())
    cached = _precision_choices.get(model)
    if cached is not None and cached[0] == versions:
        return cached[1]

    def agrees() -> bool:
        with torch.no_grad():
            rows = model.draw(PRECISION_PROBE_ROWS, torch.Generator(device=device).manual_seed(0)).to(device)
            exact, fast = (iwae_log_px(model, rows, 64, RowNoise(rows, 0), precision=p)
                           for p in ("float32", "bfloat16"))
        return float((exact - fast).abs().mean()) <= IWAE_TOLERANCE

    choice = resolve_precision(precision, device, agrees)
    _precision_choices[model] = (versions, choice)
    return choice


def _row_cost(model: nn.Module, x: torch.Tensor) -> int:
    """Bytes the decoder needs per (sample, row): the widest activations, float32."""
    widths = [m.out_features for m in model.modules() if isinstance(m, nn.Linear)]
    return 4 * 3 * (max(widths, default=1) + x.shape[1])


@torch.no_grad()
def score_array(model: nn.Module, x: np.ndarray | torch.Tensor, score: str, *,
                n_samples: int | None = None, batch_size: int = 1000, memory_mb: int = 256,
                seed: int = 0, device: torch.device | str | None = None, precision: str = "auto",
                progress: Callable[[int], None] | None = None) -> np.ndarray:
    """Score every row of ``x`` (n, d) with the score named ``score``; float64 (n,).

    ``n_samples`` is K for ``iwae``, L for ``recon-prob`` and the number of
    draws for ``elbo`` and per row for ``regret`` (defaults 1000, 10, 1, 8). Rows go through in blocks of
    ``batch_size``; for ``iwae`` each block in groups of rows with all their
    samples at once, as many as keep the decoder's work tensors under
    ``memory_mb`` (samples in chunks where one row's do not fit), and with the
    decoder's products in ``precision`` (float32, bfloat16, or auto: see
    :func:`scoring_precision`; the other scores run in float32). Deterministic for a given ``seed``,
    and a row's score is the same whatever rows are scored with it.
    """
    if score not in SCORES:
        raise ValueError(f"unknown score {score!r}; known: {', '.join(SCORES)}")
    model.eval()
    device = torch.device(device) if device is not None else next(model.parameters()).device
    if score == "iwae" and precision == "auto":
        precision = scoring_precision(model, precision, device)

    def block_scores(xb: torch.Tensor, n: int) -> torch.Tensor:
        noise = RowNoise(xb, seed, n) if score != "recon-error" else None
        if score == "iwae":
            k = n_samples or 1000
            budget = max(1, memory_mb * 2**20 // _row_cost(model, xb))  # (sample, row) pairs
            rows, chunk = (min(budget // k, len(xb)), k) if budget >= k else (1, budget)
            values = iwae_log_px(model, xb, k, noise, chunk=chunk, rows=rows, precision=precision)
        elif score == "recon-prob":
            values = reconstruction_log_prob(model, xb, n_samples or 10, noise)
        elif score == "elbo":
            values = elbo(model, xb, n_samples or 1, noise)
        elif score == "regret":
            values = likelihood_regret(model, xb, n_samples or 8, noise)
        else:
            values = reconstruction_error(model, xb)
        if progress is not None:
            progress(n)
        return values.double()

    return _per_row(x, batch_size, device, block_scores).numpy()


@torch.no_grad()
def reconstruction_terms(model: nn.Module, x: np.ndarray | torch.Tensor, squared_error: bool,
                         batch_size: int = 1000) -> np.ndarray:
    """Per-feature terms of the reconstruction at the code's mean z = E[q(z|x)], (n, d), float64:
    the squared errors (x_j - E[x_j|z])^2, which sum to :func:`reconstruction_error`, or
    -log p(x_j|z), which sum to -log p(x|z), the data term of the likelihood scores."""
    model.eval()
    device = next(model.parameters()).device

    def block(rows: torch.Tensor, n: int) -> torch.Tensor:
        mean, _ = model.encode(rows)
        if squared_error:
            return (rows - model.decoder_mean(mean).float()).pow(2).double()
        return -model.feature_log_probs(rows, mean).double()

    return _per_row(x, batch_size, device, block).numpy()


def monte_carlo_samples(score: ScoreConfig) -> dict[str, int]:
    """The number of samples each Monte-Carlo score draws under ``score``'s settings."""
    return {"iwae": score.iwae_samples, "recon-prob": score.recon_samples, "elbo": score.elbo_samples,
            "regret": score.regret_samples}


# ---- M2's scores (Kingma et al. 2014), per row over whole arrays -----------------
@torch.no_grad()
def _m2_per_row(m2: nn.Module, x: np.ndarray, fn: Callable[[torch.Tensor, int], torch.Tensor], batch: int) -> np.ndarray:
    """``fn(block rows on the model's device, real rows)`` over ``x`` in blocks, concatenated on the CPU."""
    return _per_row(x, batch, next(m2.parameters()).device, fn).numpy()


def class_probabilities(m2: nn.Module, x: np.ndarray, batch: int = 4096) -> np.ndarray:
    """q(y|x) for every row, (n, n_classes)."""
    return _m2_per_row(m2, x, lambda xb, n: torch.softmax(m2.classify(xb).float(), -1), batch)


def marginal_elbo(m2: nn.Module, x: np.ndarray, seed: int = 0, batch: int = 1024) -> np.ndarray:
    """U(x), M2's bound on log p(x) with y marginalised (one z draw per class), per row (nats)."""
    return _m2_per_row(m2, x, lambda xb, n: m2.unlabelled_elbo(xb, RowNoise(xb, seed, n)).double(), batch)


def class_elbo(m2: nn.Module, x: np.ndarray, label: "int | np.ndarray", seed: int = 0, batch: int = 1024) -> np.ndarray:
    """L(x, y=label), M2's bound on log p(x, y=label) (one z draw), per row (nats); ``label`` one class
    for every row or one per row (each row's draw is its own, so a row's bound does not depend on
    the others)."""
    if np.ndim(label):
        label = np.asarray(label)
        out = np.empty(len(x))
        for c in np.unique(label):
            rows = np.flatnonzero(label == c)
            out[rows] = class_elbo(m2, x[rows], int(c), seed, batch)
        return out
    return _m2_per_row(m2, x, lambda xb, n: m2.labelled_elbo(
        xb, torch.full((len(xb),), label, device=xb.device), RowNoise(xb, seed, n)).double(), batch)
