"""The VAE of Kingma & Welling (2013) with MLP encoder and decoder.

Generative story: z ~ N(0, I) in R^latent_dim; x | z ~ p_theta(x | z), a
Bernoulli (logits) or diagonal Gaussian whose parameters an MLP computes
from z. Inference: q_phi(z | x) = N(mu(x), diag(exp(logvar(x)))), another MLP.
The module only parameterises these distributions; objectives and scores
live in :mod:`vaelab.scores` and :mod:`vaelab.training`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from vaelab import distributions as D
from vaelab.config import ModelConfig

_ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "elu": nn.ELU, "softplus": nn.Softplus}
# The activations applied in place where no gradient is needed (scoring).
_IN_PLACE = {nn.ReLU: torch.relu_, nn.Tanh: torch.tanh_, nn.ELU: F.elu_,
             nn.Softplus: lambda t: t.copy_(F.softplus(t))}


def mlp(sizes: list[int], activation: str) -> nn.Sequential:
    """Linear layers of ``sizes`` with ``activation`` between them (none after the last)."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(_ACTIVATIONS[activation]())
    return nn.Sequential(*layers)


@dataclass
class VAEOutput:
    """Per-row terms of one forward pass (nats); ``loss`` is the batch mean of -ELBO."""

    loss: torch.Tensor
    elbo: torch.Tensor          # (n,)
    log_px_given_z: torch.Tensor  # (n,)
    kl: torch.Tensor            # (n,)


class VAE(nn.Module):
    """MLP VAE with a Gaussian encoder and a Bernoulli or Gaussian decoder.

    With ``condition_dim`` > 0 it is a conditional VAE: encoder and decoder
    also take a condition c (e.g. a one-hot class), q(z|x,c) and p(x|z,c).
    """

    # its training step has fixed shapes and never waits on the device, so a CUDA graph can
    # capture it (training.GraphedStep)
    graph_safe = True

    def __init__(self, input_dim: int, config: ModelConfig, likelihood: str, condition_dim: int = 0) -> None:
        super().__init__()
        if likelihood not in ("bernoulli", "gaussian"):
            raise ValueError(f"likelihood must be bernoulli or gaussian, not {likelihood!r}")
        self.input_dim = input_dim
        self.config = config
        self.likelihood = likelihood
        self.condition_dim = condition_dim
        hidden = list(config.hidden_dims)
        enc_in = input_dim + condition_dim
        self.encoder = mlp([enc_in, *hidden], config.activation) if hidden else nn.Identity()
        enc_out = hidden[-1] if hidden else enc_in
        self.enc_act = _ACTIVATIONS[config.activation]() if hidden else nn.Identity()
        self.enc_mean = nn.Linear(enc_out, config.latent_dim)
        self.enc_logvar = nn.Linear(enc_out, config.latent_dim)
        self.decoder = mlp([config.latent_dim + condition_dim, *hidden[::-1], input_dim], config.activation)
        if likelihood == "gaussian":
            init = 2.0 * math.log(config.gaussian_std)
            self.dec_logvar = nn.Parameter(torch.full((input_dim,), init),
                                           requires_grad=config.gaussian_variance == "learned")
        # the loss's weight on the KL term, set in place by the trainer during a KL warm-up (so that a
        # captured CUDA graph reads the new value); not stored with the model
        self.register_buffer("kl_weight", torch.ones(()), persistent=False)

    # ---- the distributions -------------------------------------------------
    def _clamp(self, logvar: torch.Tensor) -> torch.Tensor:
        return logvar.clamp(self.config.logvar_min, self.config.logvar_max)

    @staticmethod
    def _with(t: torch.Tensor, c: torch.Tensor | None) -> torch.Tensor:
        """``t`` with the condition appended on the last axis (broadcast over leading sample axes)."""
        if c is None:
            return t
        return torch.cat([t, c.to(t.dtype).expand(*t.shape[:-1], c.shape[-1])], dim=-1)

    def encode(self, x: torch.Tensor, c: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """q(z|x[,c]): mean and clamped log-variance, each (n, latent_dim)."""
        h = self.enc_act(self.encoder(self._with(x, c)))
        return self.enc_mean(h), self._clamp(self.enc_logvar(h))

    def encode_each(self, x: torch.Tensor, conditions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """q(z|x,c) for every row of x under every condition c, each (k, n, latent_dim) for k conditions.

        Equal to ``encode`` on the repeated rows, but the first layer's x part, W_x x + b, is
        computed once per row and the condition's part W_c c once per condition.
        """
        first = self.encoder[0] if isinstance(self.encoder, nn.Sequential) else None
        if first is None:  # no hidden layer: nothing to share
            k, n = conditions.shape[0], x.shape[0]
            mean, logvar = self.encode(x.repeat(k, 1), conditions.repeat_interleave(n, 0))
            return mean.view(k, n, -1), logvar.view(k, n, -1)
        w_x, w_c = first.weight[:, :self.input_dim], first.weight[:, self.input_dim:]
        h = F.linear(x, w_x, first.bias).unsqueeze(0) + F.linear(conditions.to(x.dtype), w_c).unsqueeze(1)
        h = self.enc_act(self.encoder[1:](h))
        return self.enc_mean(h), self._clamp(self.enc_logvar(h))

    def decode(self, z: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        """p(x|z[,c])'s location: logits (Bernoulli) or mean (Gaussian), shape (..., input_dim)."""
        return self.decoder(self._with(z, c))

    def decoder_mean(self, z: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        """E[x|z[,c]]: sigmoid(logits) or the Gaussian mean."""
        out = self.decode(z, c)
        return torch.sigmoid(out) if self.likelihood == "bernoulli" else out

    def log_px_given_z(self, x: torch.Tensor, z: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        """log p(x|z[,c]) summed over features; z may carry leading sample axes (k, n, d)."""
        return self.feature_log_probs(x, z, c).sum(-1)

    @torch.no_grad()
    def log_px_given_codes(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """log p(x|z) for many codes per row: z (n, k, latent_dim) holds k codes for each row of
        x (n, d); returns (n, k). For scoring (no gradients).

        Equal to :meth:`log_px_given_z` up to float rounding, with less work per code. For a
        Bernoulli decoder of linear layers and activations (logits = h W^T + b) the data term
        sum_j x_j logits_j = h . (x W) + x . b needs the d-wide product once per row, not once per
        code, leaving sum_j softplus(logits_j) per code; activations run in place. Under bfloat16
        autocast the products run in bfloat16, and both terms come from the same rounded logits
        (a term x_j l_j - softplus(l_j) is then off only where the pixel is uncertain); sums are
        float32.
        """
        body = list(self.decoder) if isinstance(self.decoder, nn.Sequential) else []
        lean = (self.likelihood == "bernoulli" and not self.condition_dim and body
                and isinstance(body[-1], nn.Linear)
                and all(isinstance(m, (nn.Linear, *_IN_PLACE)) for m in body))
        if not lean:
            return self.log_px_given_z(x.unsqueeze(1), z)
        device = x.device.type
        dtype = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else x.dtype
        n, k, width = z.shape
        with torch.autocast(device, enabled=False):
            acts = z.reshape(n * k, width).to(dtype)
            for layer in body[:-1]:
                if isinstance(layer, nn.Linear):
                    acts = F.linear(acts, layer.weight.to(dtype), layer.bias.to(dtype))
                else:
                    _IN_PLACE[type(layer)](acts)
            weight, bias = body[-1].weight.to(dtype), body[-1].bias.to(dtype)
            logits = F.linear(acts, weight, bias).to(x.dtype)
            if dtype == x.dtype:
                per_row = (x @ weight).unsqueeze(-1)
                data = torch.bmm(acts.view(n, k, -1), per_row).squeeze(-1) + (x @ bias).unsqueeze(-1)
            else:  # the logits were rounded: take x . logits from the same rounded numbers as softplus
                data = torch.bmm(logits.view(n, k, -1), x.unsqueeze(-1)).squeeze(-1)
            return data - F.softplus(logits).sum(-1).view(n, k)

    def feature_log_probs(self, x: torch.Tensor, z: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        """log p(x_j|z[,c]) for each feature j, (..., input_dim): the terms of :meth:`log_px_given_z`."""
        out = self.decode(z, c).float()
        if self.likelihood == "bernoulli":
            return D.bernoulli_log_terms(x, out)
        return D.log_normal_terms(x, out, self._clamp(self.dec_logvar))

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """E[x|z] for n draws z ~ p(z), shape (n, input_dim)."""
        device = self.enc_mean.weight.device
        z = torch.randn((n, self.config.latent_dim), generator=generator, device=device)
        return self.decoder_mean(z)

    def draw(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """n data draws x ~ p(x) (z ~ p(z), then x ~ p(x|z)), shape (n, input_dim), float32."""
        mean = self.sample(n, generator).float()
        if self.likelihood == "bernoulli":
            return torch.bernoulli(mean, generator=generator)
        std = torch.exp(0.5 * self._clamp(self.dec_logvar)).float()
        return mean + std * torch.randn(mean.shape, generator=generator, device=mean.device)

    # ---- the objective -----------------------------------------------------
    def elbo_terms(self, x: torch.Tensor, c: torch.Tensor | None = None,
                   generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """One-sample log p(x|z[,c]) with z ~ q(z|x[,c]), and the closed-form KL to p(z); each (n,)."""
        mean, logvar = self.encode(x, c)
        z = D.reparameterize(mean, logvar, 1, generator)[0]
        return self.log_px_given_z(x, z, c), D.kl_diag_standard_normal(mean.float(), logvar.float())

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None) -> VAEOutput:
        """Single-sample ELBO with the KL in closed form; the loss weighs the KL by ``kl_weight``
        (1 but during a KL warm-up, ``train.kl_warmup``), the ELBO does not."""
        rec, kl = self.elbo_terms(x, None, generator)
        elbo = rec - kl
        return VAEOutput(loss=-(rec - self.kl_weight * kl).mean(), elbo=elbo, log_px_given_z=rec, kl=kl)
