"""Model files: a vaelab model's weights plus the metadata that rebuilds it, loaded without running code."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import torch

from vaelab.checkpoint import load_tensors, save_tensors, versions
from vaelab.config import Config
from vaelab.errors import ConfigError, ModelFileError
from vaelab.models.registry import build_model


def _own_meta(model: torch.nn.Module) -> dict[str, Any]:
    """What a vaelab model (VAE, M2) knows of its own build: config, input size, likelihood."""
    if not all(hasattr(model, a) for a in ("config", "input_dim", "likelihood")):
        return {}
    return {"model": Config(model=model.config).to_dict()["model"], "input_dim": model.input_dim,
            "likelihood": model.likelihood}


def save_model(path: str | Path, model: torch.nn.Module, meta: dict[str, Any]) -> None:
    """Save a model's weights and the metadata that rebuilds it.

    ``meta`` must hold ``model`` (the ModelConfig as a dict), ``input_dim``
    and ``likelihood``, taken from the model's own attributes where it does
    not; anything else (data, metrics) is carried along.
    """
    meta = {**_own_meta(model), **meta}
    for key in ("model", "input_dim", "likelihood"):
        if key not in meta:
            raise ValueError(f"model metadata needs {key!r}")
    save_tensors(path, dict(model.state_dict()), {**meta, "kind": "model", "versions": versions()})


def load_model(path: str | Path, device: torch.device | str = "cpu") -> tuple[torch.nn.Module, dict[str, Any]]:
    """Rebuild a model from a file written by :func:`save_model` (no code is executed)."""
    path = Path(path)
    tensors, meta = load_tensors(path)
    if meta.get("kind") != "model":
        raise ModelFileError(f"not a model file (kind {meta.get('kind')!r})", path)
    try:
        config = Config.from_dict({"model": meta["model"]}).model
        model = build_model(config, int(meta["input_dim"]), meta["likelihood"])
        model.load_state_dict(tensors, strict=True)
    except (ConfigError, KeyError, RuntimeError, ValueError) as exc:
        raise ModelFileError(f"model metadata does not match its weights ({exc})", path) from None
    return model.to(device).eval(), meta


def weights_fingerprint(model: torch.nn.Module) -> str:
    """A hash of a model's weights: results computed with it are valid while it is unchanged."""
    h = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]
