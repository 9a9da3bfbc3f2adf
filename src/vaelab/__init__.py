"""vaelab: variational autoencoder experiments and VAE-based anomaly detection."""

__version__ = "0.1.0"

from vaelab.errors import VaelabError

__all__ = ["VaelabError", "__version__"]
