"""The model registry: names to constructors, and the likelihood that ``auto`` picks."""

import pytest

from vaelab.config import ModelConfig
from vaelab.errors import ConfigError
from vaelab.models import M2, MODELS, VAE, build_model, resolve_likelihood


def test_names_build_their_model_and_an_unknown_name_is_refused():
    assert set(MODELS) == {"vae", "m2"}
    assert isinstance(build_model(ModelConfig(latent_dim=2, hidden_dims=(4,)), 6, "bernoulli"), VAE)
    assert isinstance(build_model(ModelConfig(name="m2", latent_dim=2, hidden_dims=(4,), n_classes=3), 6, "gaussian"), M2)
    with pytest.raises(ConfigError, match="unknown model.name"):
        build_model(ModelConfig(name="gan"), 6, "bernoulli")


def test_auto_likelihood_follows_the_data_kind():
    assert resolve_likelihood(ModelConfig(), "image") == "bernoulli"
    assert resolve_likelihood(ModelConfig(), "tabular") == "gaussian"
    assert resolve_likelihood(ModelConfig(likelihood="gaussian"), "image") == "gaussian"
