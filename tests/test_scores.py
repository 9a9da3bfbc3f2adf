"""Scores against closed forms and their known properties."""

import numpy as np
import pytest
import torch
from torch.distributions import MultivariateNormal

from vaelab import scores as S
from vaelab.config import ModelConfig
from vaelab.models import VAE
from vaelab.runtime import RowNoise


def linear_gaussian_vae(sigma: float = 0.5) -> VAE:
    """A linear-Gaussian VAE whose encoder is the exact posterior.

    Decoder x = W z + b + sigma * noise with orthogonal columns of W, so the
    posterior is diagonal: Sigma = diag(1 / (1 + a_i^2 / sigma^2)),
    mean = Sigma W^T (x - b) / sigma^2. Every importance weight then equals
    p(x) exactly: IWAE_K = log p(x) for any K, and ELBO = log p(x).
    """
    torch.manual_seed(0)
    config = ModelConfig(latent_dim=2, hidden_dims=(), likelihood="gaussian",
                         gaussian_variance="fixed", gaussian_std=sigma)
    model = VAE(4, config, "gaussian")
    q, _ = torch.linalg.qr(torch.randn(4, 4))
    scale = torch.tensor([2.0, 0.7])
    w = q[:, :2] * scale
    b = torch.tensor([0.3, -0.2, 0.1, 0.5])
    post_var = 1.0 / (1.0 + scale**2 / sigma**2)
    with torch.no_grad():
        model.decoder[0].weight.copy_(w)
        model.decoder[0].bias.copy_(b)
        a = post_var[:, None] * w.T / sigma**2
        model.enc_mean.weight.copy_(a)
        model.enc_mean.bias.copy_(-a @ b)
        model.enc_logvar.weight.zero_()
        model.enc_logvar.bias.copy_(torch.log(post_var))
    model.exact = MultivariateNormal(b, w @ w.T + sigma**2 * torch.eye(4))
    return model.eval()


@torch.no_grad()
def test_exact_posterior_makes_every_score_the_true_log_px():
    model = linear_gaussian_vae()
    x = model.exact.sample((50,))
    truth = model.exact.log_prob(x)
    gen = torch.Generator().manual_seed(0)
    assert torch.allclose(S.iwae_log_px(model, x, 7, gen), truth, atol=1e-4)
    assert torch.allclose(S.iwae_log_px(model, x, 64, gen, chunk=10), truth, atol=1e-4)
    # the ELBO's reconstruction term is Monte-Carlo (the KL is closed form), so it
    # equals log p(x) only in expectation
    assert torch.allclose(S.elbo(model, x, 20000, gen), truth, atol=0.05)


@torch.no_grad()
def test_iwae_converges_to_closed_form_with_a_poor_proposal():
    model = linear_gaussian_vae()
    x = model.exact.sample((20,), )
    truth = model.exact.log_prob(x)
    with torch.no_grad():  # widen q: no longer the posterior, so the ELBO is strictly below
        model.enc_logvar.bias.add_(1.0)
    gen = torch.Generator().manual_seed(1)
    elbo = S.elbo(model, x, 2000, gen)
    iwae = S.iwae_log_px(model, x, 5000, gen, chunk=700)
    assert (truth - elbo).min() > 0.05
    assert torch.allclose(iwae, truth, atol=0.02)


@pytest.fixture(scope="module")
def trained_vae():
    from tests.conftest import tiny_config
    from vaelab.data import load_dataset
    from vaelab.models import build_model
    from vaelab.training import Trainer, dynamic_binarization

    config = tiny_config(data={"train_limit": 2000}, model={"hidden_dims": [64]}, train={"epochs": 10})
    data = load_dataset(config.data)
    model = build_model(config.model, data.n_features, "bernoulli")
    Trainer(model, config.train, run_config=config.to_dict(),
            transform=dynamic_binarization).fit({"x": torch.from_numpy(data.train.x)})
    return model.eval(), torch.from_numpy(data.test.x[::5])  # 200 rows, every digit


@torch.no_grad()
def test_iwae_is_above_elbo_and_rises_with_k(trained_vae):
    model, x = trained_vae
    gen = torch.Generator().manual_seed(0)
    elbo = S.elbo(model, x, 1, gen).mean()
    means = [S.iwae_log_px(model, x, k, gen).mean() for k in (1, 10, 100, 1000)]
    assert abs(means[0] - elbo) < 1.5  # K=1 is the ELBO in expectation
    assert means[0] < means[1] < means[2] < means[3]
    assert means[3] > elbo


@torch.no_grad()
def test_bernoulli_log_likelihoods_are_never_positive(trained_vae):
    model, x = trained_vae
    gen = torch.Generator().manual_seed(0)
    for values in (S.iwae_log_px(model, x, 50, gen), S.elbo(model, x, 1, gen),
                   S.reconstruction_log_prob(model, x, 5, gen)):
        assert (values <= 0).all()


@torch.no_grad()
def test_reconstruction_probability_bounds(trained_vae):
    model, x = trained_vae
    gen = torch.Generator().manual_seed(0)
    # log mean_l p(x|z_l) >= mean_l log p(x|z_l) (Jensen), with equality for L=1
    rp = S.reconstruction_log_prob(model, x, 20, torch.Generator().manual_seed(3))
    z_mean = S.elbo(model, x, 20, torch.Generator().manual_seed(3)) + \
        __import__("vaelab.distributions", fromlist=["x"]).kl_diag_standard_normal(*model.encode(x))
    assert (rp >= z_mean - 1e-3).all()
    err = S.reconstruction_error(model, x)
    assert err.shape == (x.shape[0],) and (err >= 0).all()
    del gen


def test_score_array_is_deterministic_and_bounded_in_memory(trained_vae):
    model, x = trained_vae
    a = S.score_array(model, x.numpy(), "iwae", n_samples=64, batch_size=50, memory_mb=1, seed=4)
    b = S.score_array(model, x.numpy(), "iwae", n_samples=64, batch_size=50, memory_mb=1, seed=4)
    c = S.score_array(model, x.numpy(), "iwae", n_samples=64, batch_size=50, memory_mb=1, seed=5)
    assert a.shape == (200,) and np.array_equal(a, b) and not np.array_equal(a, c)
    assert abs(a.mean() - c.mean()) < 0.5  # another seed: the same estimate up to MC noise
    with pytest.raises(ValueError, match="unknown score"):
        S.score_array(model, x.numpy(), "nope")


@pytest.mark.parametrize("activation", ["relu", "tanh", "elu", "softplus"])
@torch.no_grad()
def test_the_lean_data_term_equals_the_elementwise_one(activation):
    torch.manual_seed(0)
    model = VAE(12, ModelConfig(latent_dim=3, hidden_dims=(8, 6), activation=activation), "bernoulli").double().eval()
    x = torch.rand(5, 12, dtype=torch.float64)
    z = torch.randn(5, 7, 3, dtype=torch.float64)
    lean = model.log_px_given_codes(x, z)
    plain = model.log_px_given_z(x, z.transpose(0, 1)).transpose(0, 1)
    assert lean.shape == (5, 7) and torch.allclose(lean, plain, atol=1e-9)
    gaussian = linear_gaussian_vae().double()
    xg, zg = torch.randn(5, 4, dtype=torch.float64), torch.randn(5, 7, 2, dtype=torch.float64)
    assert torch.allclose(gaussian.log_px_given_codes(xg, zg),
                          gaussian.log_px_given_z(xg, zg.transpose(0, 1)).transpose(0, 1))


@torch.no_grad()
def test_bfloat16_importance_sampling_stays_within_tolerance_of_float64():
    torch.manual_seed(0)
    model = VAE(64, ModelConfig(latent_dim=4, hidden_dims=(32,)), "bernoulli").eval()
    x = (torch.rand(20, 64) < 0.3).float()
    exact = S.iwae_log_px(model.double(), x.double(), 200, RowNoise(x, 0)).numpy()  # the same draws, in float64
    model.float()
    x = x.numpy()
    for precision in ("float32", "bfloat16"):
        fast = S.score_array(model, x, "iwae", n_samples=200, precision=precision)
        assert np.abs(fast - exact).mean() <= S.IWAE_TOLERANCE
    assert S.scoring_precision(model, "float32", "cpu") == "float32"
    assert S.scoring_precision(model, "auto", "cpu") in ("float32", "bfloat16")


def test_auto_precision_is_chosen_once_per_model_and_weights(monkeypatch):
    """The choice depends on the model alone (its own draws), so it is made once and a row scores
    the same in any batch; changed weights make it anew."""
    model = VAE(64, ModelConfig(latent_dim=4, hidden_dims=(32,)), "bernoulli").eval()
    calls = []
    monkeypatch.setattr(S, "resolve_precision", lambda p, d, agrees=None: calls.append(agrees()) or "float32")
    assert S.scoring_precision(model, "auto", "cpu") == S.scoring_precision(model, "auto", "cpu") == "float32"
    assert len(calls) == 1
    with torch.no_grad():
        next(model.parameters()).mul_(1.0)
    S.scoring_precision(model, "auto", "cpu")
    assert len(calls) == 2


def test_model_draws_are_data_like():
    torch.manual_seed(0)
    bern = VAE(16, ModelConfig(latent_dim=2, hidden_dims=(8,)), "bernoulli")
    draws = bern.draw(50, torch.Generator().manual_seed(0))
    assert draws.shape == (50, 16) and set(draws.unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(draws, bern.draw(50, torch.Generator().manual_seed(0)))
    gauss = VAE(16, ModelConfig(latent_dim=2, hidden_dims=(8,)), "gaussian")
    assert gauss.draw(5).shape == (5, 16) and gauss.draw(5).dtype == torch.float32


def test_likelihood_regret_measures_how_far_the_encoder_is_from_the_best_posterior():
    model = linear_gaussian_vae()
    x = model.exact.sample((40,))
    exact = S.likelihood_regret(model, x, 64, torch.Generator().manual_seed(0), steps=100)
    assert (exact >= 0).all() and exact.mean() < 0.05  # the encoder is the posterior: nothing to regret
    with torch.no_grad():  # shift q's mean: the encoder now explains every row worse than it could
        model.enc_mean.bias.add_(torch.tensor([1.0, -0.5]))
    gap = model.exact.log_prob(x) - S.elbo(model, x, 20000, torch.Generator().manual_seed(1))
    shifted = S.likelihood_regret(model, x, 64, torch.Generator().manual_seed(0), steps=100)
    assert gap.mean() > 0.5
    assert torch.allclose(shifted.mean(), gap.mean(), atol=0.1)
    assert all(p.grad is None for p in model.parameters())  # the decoder's weights are left alone


def test_likelihood_regret_of_a_row_does_not_depend_on_its_batch(trained_vae):
    model, x = trained_vae
    a = S.score_array(model, x.numpy(), "regret", n_samples=4, batch_size=50, seed=2)
    b = S.score_array(model, x.numpy()[:70], "regret", n_samples=4, batch_size=33, seed=2)
    assert a.shape == (200,) and (a >= 0).all() and a.max() > 0
    np.testing.assert_allclose(a[:70], b, rtol=1e-4, atol=1e-4)
