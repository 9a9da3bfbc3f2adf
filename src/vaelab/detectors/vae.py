"""VAEDetector: a VAE fitted on the normal rows scores each row by a likelihood score."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from sklearn.utils.validation import check_array

from vaelab.config import Config, ModelConfig, TrainConfig
from vaelab.data.dataset import check_representable
from vaelab.detectors.base import BaseDetector, StateReader, StateWriter, feature_likelihood, feature_scaling
from vaelab.models import build_model
from vaelab.runtime import seeded_init
from vaelab.scores import SCORES, latent_means, reconstruction_terms, score_array
from vaelab.training import Trainer


class ScaledInput:
    """Rows in the model's units: ``mean_`` / ``scale_`` from :func:`feature_scaling`, float32."""

    def _prepare(self, X: np.ndarray) -> np.ndarray:
        scaled = (np.asarray(X, dtype=np.float64) - self.mean_) / self.scale_  # float64, checked, then float32
        check_representable(scaled, None, "after the detector's scaling, X")
        return scaled.astype(np.float32)


def model_state(writer: StateWriter, prefix: str, model: torch.nn.Module, mean: np.ndarray,
                scale: np.ndarray) -> dict[str, Any]:
    """Store a detector's torch model (weights as tensors) and its input scaling; a model that an
    earlier detector in the file shares (two scores of one VAE in a fusion) is stored once."""
    same = writer.models.setdefault(id(model), prefix)
    if same == prefix:
        writer.tensors.update({f"{prefix}model.{k}": v for k, v in model.state_dict().items()})
        writer.array(f"{prefix}mean", mean)
        writer.array(f"{prefix}scale", scale)
    return {"likelihood": model.likelihood, "model": Config(model=model.config).to_dict()["model"],
            "input_dim": model.input_dim, **({"model_same_as": same} if same != prefix else {})}


def restore_model(meta: dict[str, Any], reader: StateReader, prefix: str) -> tuple[torch.nn.Module, np.ndarray,
                                                                                   np.ndarray]:
    """Inverse of :func:`model_state`: (model, mean, scale)."""
    if "model_same_as" in meta:
        return reader.models[meta["model_same_as"]]
    model = build_model(Config.from_dict({"model": meta["model"]}).model, int(meta["input_dim"]), meta["likelihood"])
    start = len(prefix) + len("model.")
    model.load_state_dict({k[start:]: v for k, v in reader.tensors.items() if k.startswith(f"{prefix}model.")})
    restored = reader.models[prefix] = (model.eval(), reader.array(f"{prefix}mean"), reader.array(f"{prefix}scale"))
    return restored


# the settings that decide a VAEDetector's trained model (the others decide how it is scored)
TRAINING_PARAMS = ("latent_dim", "hidden_dims", "epochs", "batch_size", "lr", "random_state", "device", "likelihood")


class VAEDetector(ScaledInput, BaseDetector):
    """Scores from a VAE fitted on X: ``score_name`` is ``recon-prob``, ``iwae``, ``elbo`` or
    ``recon-error`` (minus the error, so that higher is more normal for all four).

    ``likelihood``: "auto" gives features in [0, 1] a Bernoulli decoder and
    standardizes anything else (training statistics) under a Gaussian decoder
    with learned variance; "gaussian" standardizes and uses the Gaussian
    decoder whatever the range (grey images, as PyOD does); "bernoulli" needs
    values in [0, 1].
    ``n_samples``: K for iwae, L for recon-prob, draws for elbo (None: 1000, 10, 1).
    """

    def __init__(self, score_name: str = "recon-prob", latent_dim: int = 5, hidden_dims: tuple[int, ...] = (400,),
                 epochs: int = 50, batch_size: int = 128, lr: float = 1e-3, n_samples: int | None = None,
                 contamination: float = 0.1, threshold_rows: int | None = 2000, random_state: int = 0,
                 device: str = "cpu", calibration: float = 0.0, fpr: float | None = None,
                 likelihood: str = "auto") -> None:
        super().__init__(contamination, threshold_rows, calibration, fpr)
        self.score_name = score_name
        self.latent_dim = latent_dim
        self.hidden_dims = hidden_dims
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.n_samples = n_samples
        self.random_state = random_state
        self.device = device
        self.likelihood = likelihood

    def trains_like(self, other: "VAEDetector") -> bool:
        """Whether ``other`` trains its VAE with the same settings (it may score it differently)."""
        return all(getattr(self, k) == getattr(other, k) for k in TRAINING_PARAMS)

    def fit_sharing(self, X, fitted: "VAEDetector", reference) -> np.ndarray:
        """:meth:`fit_part` by reusing ``fitted``'s VAE, which was trained with the same settings on the
        same rows (two scores of one model, as in a fusion): no second training, and the model is
        stored once in a file. Returns the scores of ``reference``."""
        if not self.trains_like(fitted):
            raise ValueError("fit_sharing needs a VAEDetector with the same training settings")
        return self._fit_part_sharing(X, reference, fitted)

    def _fit(self, X: np.ndarray) -> None:
        if self.score_name not in SCORES:
            raise ValueError(f"unknown score {self.score_name!r}; known: {', '.join(SCORES)}")
        shared = getattr(self, "_shared", None)
        if shared is not None:
            self.likelihood_, self.mean_, self.scale_, self.model_ = (shared.likelihood_, shared.mean_,
                                                                      shared.scale_, shared.model_)
            return
        self.likelihood_ = feature_likelihood(X, self.likelihood)
        self.mean_, self.scale_ = feature_scaling(X, standardize=self.likelihood_ == "gaussian")
        config = ModelConfig(latent_dim=self.latent_dim, hidden_dims=tuple(self.hidden_dims))
        with seeded_init(self.random_state):
            self.model_ = build_model(config, X.shape[1], self.likelihood_)
        train = TrainConfig(epochs=self.epochs, batch_size=self.batch_size, lr=self.lr, seed=self.random_state,
                            device=self.device, progress=False)
        Trainer(self.model_, train, run_config={}).fit({"x": torch.from_numpy(self._prepare(X))})

    @classmethod
    def from_model(cls, model: torch.nn.Module, score_name: str = "iwae", n_samples: int | None = None,
                   X=None, contamination: float = 0.1, random_state: int = 0) -> "VAEDetector":
        """Wrap an already trained VAE (e.g. a run's ``model.safetensors``) whose inputs are rows in
        its own units; ``X`` (normal rows), if given, sets the threshold."""
        det = cls(score_name=score_name, latent_dim=model.config.latent_dim,
                  hidden_dims=tuple(model.config.hidden_dims), n_samples=n_samples, contamination=contamination,
                  random_state=random_state)
        det.model_, det.likelihood_ = model, model.likelihood
        det.mean_, det.scale_ = np.zeros(model.input_dim), np.ones(model.input_dim)
        det.n_features_in_ = model.input_dim
        return det if X is None else det._set_threshold(check_array(X, dtype=np.float64))

    def encode(self, X) -> np.ndarray:
        """Latent means (n, latent_dim) of the fitted VAE."""
        return latent_means(self.model_, self._prepare(self._checked(X)))

    def score_with(self, X, score_name: str, n_samples: int | None = None) -> np.ndarray:
        """Another of the fitted VAE's scores (higher = more normal), without refitting."""
        return self._scores(self._checked(X), score_name, n_samples)

    def _scores(self, X: np.ndarray, score_name: str, n_samples: int | None) -> np.ndarray:
        """``score_name`` of checked rows X, higher = more normal."""
        if score_name not in SCORES:
            raise ValueError(f"unknown score {score_name!r}; known: {', '.join(SCORES)}")
        values = score_array(self.model_, self._prepare(X), score_name, n_samples=n_samples, seed=self.random_state)
        return values if SCORES[score_name].higher_is_normal else -values

    def _score(self, X: np.ndarray) -> np.ndarray:
        return self._scores(X, self.score_name, self.n_samples)

    def explain(self, X) -> np.ndarray:
        """Per-feature contributions, (n, d), exact: for ``recon-error`` the squared errors (in the
        model's units), which sum to minus the score; for the likelihood scores -log p(x_j|z) at the
        code's mean z, which sum to -log p(x|z), the data term of the score (the prior / KL part and
        the Monte-Carlo averaging are not per feature)."""
        x = self._prepare(self._checked(X))
        return reconstruction_terms(self.model_, x, squared_error=self.score_name == "recon-error")

    def _state(self, writer: StateWriter, prefix: str) -> dict[str, Any]:
        return model_state(writer, prefix, self.model_, self.mean_, self.scale_)

    def _restore(self, meta: dict[str, Any], reader: StateReader, prefix: str) -> None:
        self.model_, self.mean_, self.scale_ = restore_model(meta, reader, prefix)
        self.likelihood_ = self.model_.likelihood
