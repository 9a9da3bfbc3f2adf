"""Models: the VAE, M2, the registry that builds them from a config, and their files."""

from vaelab.models.files import load_model, save_model, weights_fingerprint
from vaelab.models.m2 import M2, M2Output
from vaelab.models.registry import MODELS, build_model, resolve_likelihood
from vaelab.models.vae import VAE, VAEOutput

__all__ = ["M2", "M2Output", "MODELS", "VAE", "VAEOutput", "build_model", "load_model", "resolve_likelihood",
           "save_model", "weights_fingerprint"]
