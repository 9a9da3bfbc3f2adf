"""The semi-supervised M2 model of Kingma et al. (2014).

Generative story: y ~ Cat(prior), z ~ N(0, I), x | y, z ~ p(x|y,z) (a
conditional MLP decoder). Inference: a classifier q(y|x) and a conditional
encoder q(z|x,y). Objectives, per row (nats):

- labelled:   L(x, y) = E_q(z|x,y)[log p(x|y,z)] + log p(y) - KL(q(z|x,y) || p(z))
- unlabelled: U(x) = sum_y q(y|x) L(x, y) + H(q(y|x)), y marginalised exactly
  by evaluating L for every class (a lower bound on log p(x));
- loss: the mean over rows of -L (labelled) or -U (unlabelled), plus
  ``alpha`` x -log q(y|x) for every labelled row (the paper's classification term),
  plus ``balance`` x KL(p(y) || q_bar(y)) per unlabelled row, q_bar being the batch's class
  shares: q(y|x) for unlabelled rows, the label for labelled ones (not in the paper). Without
  it, when every label is of one class (anomalies, in the detector), the classifier can put
  every row in that class and the other class is never trained (measured:
  benchmarks/deep_sad.py, docs/semisupervised.md); this term keeps the class shares near the
  prior.

Unlabelled rows carry y = -1 in the batch.

On CUDA a step has fixed shapes (:meth:`M2.forward`), so that a CUDA graph can replay it
(``graph_safe``, :class:`vaelab.training.GraphedStep`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from vaelab import distributions as D
from vaelab.config import ModelConfig
from vaelab.models.vae import VAE, mlp


@dataclass
class M2Output:
    loss: torch.Tensor
    elbo: torch.Tensor         # (n,) L(x, y) for labelled rows, U(x) for unlabelled rows
    logits: torch.Tensor       # (n, n_classes) of q(y|x)


class M2(nn.Module):
    """Classifier q(y|x) plus a conditional VAE q(z|x,y), p(x|y,z)."""

    graph_safe = True  # on CUDA its step has fixed shapes (forward)

    def __init__(self, input_dim: int, config: ModelConfig, likelihood: str) -> None:
        super().__init__()
        self.input_dim, self.config, self.likelihood = input_dim, config, likelihood
        self.n_classes = config.n_classes
        self.cvae = VAE(input_dim, config, likelihood, condition_dim=self.n_classes)
        self.classifier = mlp([input_dim, *config.hidden_dims, self.n_classes], config.activation)
        prior = torch.tensor(config.class_prior or [1.0 / self.n_classes] * self.n_classes)
        self.register_buffer("log_prior", prior.log(), persistent=False)

    def classify(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of q(y|x), (n, n_classes)."""
        return self.classifier(x)

    def labelled_elbo(self, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """L(x, y) per row for integer classes y."""
        onehot = F.one_hot(y, self.n_classes).to(x.dtype)
        rec, kl = self.cvae.elbo_terms(x, onehot, generator)
        return rec - kl + self.log_prior[y]

    def elbo_per_class(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """L(x, y) for every class y, (n, n_classes): all classes in one batched pass."""
        onehots = torch.eye(self.n_classes, device=x.device, dtype=x.dtype)
        mean, logvar = self.cvae.encode_each(x, onehots)                        # (k, n, d)
        z = D.reparameterize(mean, logvar, 1, generator)[0]
        rec = self.cvae.log_px_given_z(x, z, onehots.unsqueeze(1))              # (k, n)
        kl = D.kl_diag_standard_normal(mean.float(), logvar.float())
        return (rec - kl + self.log_prior.unsqueeze(1)).T

    def unlabelled_elbo(self, x: torch.Tensor, generator: torch.Generator | None = None,
                        logits: torch.Tensor | None = None, per_class: torch.Tensor | None = None) -> torch.Tensor:
        """U(x) = sum_y q(y|x) (L(x, y) - log q(y|x)) per row (``per_class``: L(x, y) for every y, if
        already drawn)."""
        logits = self.classify(x) if logits is None else logits
        per_class = self.elbo_per_class(x, generator) if per_class is None else per_class
        log_q = F.log_softmax(logits.float(), dim=-1)
        return (log_q.exp() * (per_class - log_q)).sum(-1)

    def class_balance(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """KL(p(y) || q_bar(y)), q_bar the batch's class shares: q(y|x) for its unlabelled rows
        (y = -1), the label for the others. Large when a class the prior expects gets (almost) no
        rows; labelled rows count at their share of the batch, so once they hold their class's
        prior share the term draws the unlabelled rows to the other classes."""
        q = F.softmax(logits.float(), dim=-1)
        labelled = y >= 0
        q = torch.where(labelled.unsqueeze(1), F.one_hot(y.clamp_min(0), self.n_classes).to(q.dtype), q)
        q_bar = q.mean(0).clamp_min(1e-12)
        return (self.log_prior.exp() * (self.log_prior - q_bar.log())).sum()

    def forward(self, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator | None = None) -> M2Output:
        """The loss of a batch. On the CPU its labelled and unlabelled rows are split, each given only
        the bounds it needs. On CUDA every row gets every class's bound in one pass and the labelled
        rows' own class is picked out: about a fifth more arithmetic, which a GPU's small products
        do at no cost, and a step of fixed shapes that a CUDA graph can replay. The two are the same
        objective, each draw of z from the same q(z|x,y)."""
        logits = self.classify(x)
        labelled = y >= 0
        if x.is_cuda:
            return self._fixed_shape_loss(x, y, labelled, logits, generator)
        elbo = torch.empty(x.shape[0], device=x.device, dtype=torch.float32)
        loss = torch.zeros((), device=x.device)
        if labelled.any():
            yl = y[labelled]
            elbo[labelled] = self.labelled_elbo(x[labelled], yl, generator).float()
            ce = F.cross_entropy(logits[labelled].float(), yl, reduction="sum")
            loss = loss + self.config.alpha * ce
        if (~labelled).any():
            elbo[~labelled] = self.unlabelled_elbo(x[~labelled], generator, logits[~labelled])
        if self.config.balance and (~labelled).any():
            loss = loss + self.config.balance * (~labelled).sum() * self.class_balance(logits, y)
        loss = (loss - elbo.sum()) / x.shape[0]
        return M2Output(loss=loss, elbo=elbo, logits=logits)

    def _fixed_shape_loss(self, x: torch.Tensor, y: torch.Tensor, labelled: torch.Tensor, logits: torch.Tensor,
                          generator: torch.Generator | None) -> M2Output:
        """:meth:`forward` without a data-dependent shape or a host sync: L(x, y) for every row and
        class, U(x) from it, and each row's own term chosen by mask."""
        known = y.clamp_min(0)
        per_class = self.elbo_per_class(x, generator).float()
        unlabelled = self.unlabelled_elbo(x, logits=logits, per_class=per_class)
        elbo = torch.where(labelled, per_class.gather(1, known.unsqueeze(1)).squeeze(1), unlabelled)
        ce = F.cross_entropy(logits.float(), known, reduction="none")
        loss = self.config.alpha * torch.where(labelled, ce, 0.0).sum()
        if self.config.balance:
            loss = loss + self.config.balance * (~labelled).sum() * self.class_balance(logits, y)
        return M2Output(loss=(loss - elbo.sum()) / x.shape[0], elbo=elbo, logits=logits)

    @torch.no_grad()
    def sample(self, y: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """E[x|y,z] for classes y (n,) and codes z (n, latent_dim)."""
        return self.cvae.decoder_mean(z, F.one_hot(y, self.n_classes).to(z.dtype))

    @torch.no_grad()
    def style(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The mean code of q(z|x,y): the 'style' of x given its class y."""
        return self.cvae.encode(x, F.one_hot(y, self.n_classes).to(x.dtype))[0]


