"""Model registry: config name -> constructor."""

from __future__ import annotations

from typing import Callable

from torch import nn

from vaelab.config import ModelConfig
from vaelab.errors import ConfigError
from vaelab.models.m2 import M2
from vaelab.models.vae import VAE

MODELS: dict[str, Callable[[int, ModelConfig, str], nn.Module]] = {"vae": VAE, "m2": M2}


def resolve_likelihood(config: ModelConfig, data_kind: str) -> str:
    """``auto`` means Bernoulli for image data and Gaussian for tabular data."""
    if config.likelihood != "auto":
        return config.likelihood
    return "bernoulli" if data_kind == "image" else "gaussian"


def build_model(config: ModelConfig, input_dim: int, likelihood: str) -> nn.Module:
    """Construct the model named by ``config.name``."""
    if config.name not in MODELS:
        raise ConfigError(f"unknown model.name {config.name!r}; known: {', '.join(MODELS)}")
    return MODELS[config.name](input_dim, config, likelihood)
