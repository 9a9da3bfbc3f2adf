"""The VAE module: shapes of each distribution, sample axes, conditions, and the clamped variances."""

import torch

from vaelab.config import ModelConfig
from vaelab.models import VAE


def test_encode_decode_and_sample_axes():
    torch.manual_seed(0)
    vae = VAE(10, ModelConfig(latent_dim=3, hidden_dims=(8,)), "bernoulli")
    x = torch.rand(5, 10).bernoulli()
    mean, logvar = vae.encode(x)
    assert mean.shape == logvar.shape == (5, 3)
    z = torch.randn(7, 5, 3)  # seven samples per row
    assert vae.log_px_given_z(x, z).shape == (7, 5) and (vae.log_px_given_z(x, z) <= 0).all()
    assert vae.decoder_mean(z).shape == (7, 5, 10) and ((0 <= vae.decoder_mean(z)) & (vae.decoder_mean(z) <= 1)).all()
    out = vae(x)
    assert torch.allclose(out.elbo, out.log_px_given_z - out.kl) and torch.isclose(out.loss, -out.elbo.mean())


def test_a_condition_is_broadcast_over_sample_axes():
    torch.manual_seed(0)
    cvae = VAE(6, ModelConfig(latent_dim=2, hidden_dims=(8,)), "bernoulli", condition_dim=3)
    x, c = torch.rand(4, 6), torch.eye(3)[[0, 1, 2, 0]]
    z = torch.randn(5, 4, 2)
    assert cvae.log_px_given_z(x, z, c).shape == (5, 4)
    assert torch.allclose(cvae.log_px_given_z(x, z[0], c), cvae.log_px_given_z(x, z, c)[0])


def test_gaussian_decoder_variances_are_clamped():
    vae = VAE(3, ModelConfig(latent_dim=2, hidden_dims=(4,), logvar_min=-2.0, logvar_max=1.0), "gaussian")
    with torch.no_grad():
        vae.dec_logvar.fill_(50.0)
        vae.enc_logvar.bias.fill_(-50.0)
    assert vae._clamp(vae.dec_logvar).max() == 1.0
    assert vae.encode(torch.zeros(2, 3))[1].min() >= -2.0
