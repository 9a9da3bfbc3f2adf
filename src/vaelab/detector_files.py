"""Saving and loading fitted detectors without pickle.

A detector file is a safetensors file (see :mod:`vaelab.checkpoint`) with
arrays and a JSON description: the class, its constructor parameters and
its fitted state. Nothing is unpickled and no code is executed on load.
VAE weights are stored as tensors; a scikit-learn estimator is stored as the
features it was fitted on and refitted on load with the same seed (every
estimator vaelab uses is deterministic given its seed); scores of stored
probe rows are compared after the refit, so a library change that alters
the estimator is reported instead of silently giving other scores.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from vaelab import checkpoint as ckpt
from vaelab.errors import ModelFileError

PROBE_ROWS = 64


def _arr(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float64))


def _params(det) -> dict[str, Any]:
    """Constructor parameters that are plain values (nested detectors are stored separately)."""
    from vaelab.detectors import BaseDetector

    out = {}
    for k, v in det.get_params(deep=False).items():
        if isinstance(v, BaseDetector) or (isinstance(v, tuple) and v and isinstance(v[0], BaseDetector)):
            continue
        out[k] = list(v) if isinstance(v, tuple) else v
    return out


def _dump(det, prefix: str, tensors: dict[str, torch.Tensor], seen: dict[int, str]) -> dict[str, Any]:
    """Describe ``det`` and put its arrays into ``tensors`` under ``prefix``; a detector met
    before (a fusion's VAE shared with its latent part) is stored once and referenced."""
    from vaelab.detectors import FusionDetector, LatentDetector, RawDetector, VAEDetector

    if id(det) in seen:
        return {"same_as": seen[id(det)]}
    seen[id(det)] = prefix
    meta: dict[str, Any] = {"class": type(det).__name__, "params": _params(det), "offset": det.offset_,
                            "n_features_in": det.n_features_in_}
    if isinstance(det, VAEDetector):
        tensors.update({f"{prefix}model.{k}": v for k, v in det.model_.state_dict().items()})
        tensors[f"{prefix}mean"], tensors[f"{prefix}scale"] = _arr(det.mean_), _arr(det.scale_)
        meta.update(likelihood=det.likelihood_, model=_model_config(det.model_))
    elif isinstance(det, FusionDetector):
        meta["parts"] = [_dump(d, f"{prefix}part{i}.", tensors, seen) for i, d in enumerate(det.detectors_)]
        for i, ref in enumerate(det.references_):
            tensors[f"{prefix}ref{i}"] = _arr(ref)
    elif isinstance(det, (LatentDetector, RawDetector)):
        if isinstance(det, LatentDetector):
            meta["vae"] = _dump(det.vae_, f"{prefix}vae.", tensors, seen)
        if isinstance(det, RawDetector):
            tensors[f"{prefix}center"], tensors[f"{prefix}scale"] = _arr(det.center_), _arr(det.scale_)
        if isinstance(det, RawDetector) and det.pca_ is not None:
            for name in ("mean_", "components_", "explained_variance_"):
                tensors[f"{prefix}pca.{name}"] = _arr(getattr(det.pca_, name))
        if hasattr(det, "fit_features_"):
            tensors[f"{prefix}fit_features"] = _arr(det.fit_features_)
            probe = det.fit_features_[:PROBE_ROWS]
            tensors[f"{prefix}probe_scores"] = _arr(_estimator_scores(det, probe))
    else:
        raise TypeError(f"cannot save a {type(det).__name__}")
    return meta


def _model_config(model) -> dict[str, Any]:
    from vaelab.config import Config

    return Config(model=model.config).to_dict()["model"]


def _estimator_scores(det, Z: np.ndarray) -> np.ndarray:
    est, Zs = det.estimator_, det.scaler_.transform(Z)
    return est.score_samples(Zs) if hasattr(est, "score_samples") else est.decision_function(Zs)


def save_detector(path: str | Path, detector) -> None:
    """Write a fitted detector to ``path`` (atomically)."""
    from sklearn.utils.validation import check_is_fitted

    check_is_fitted(detector, "offset_")
    tensors: dict[str, torch.Tensor] = {}
    meta = _dump(detector, "", tensors, {})
    ckpt.save_tensors(path, tensors, {"kind": "detector", "detector": meta, "versions": ckpt.versions()})


def _load(meta: dict[str, Any], prefix: str, tensors: dict[str, torch.Tensor], path: Path, seen: dict[str, Any]):
    from sklearn.decomposition import PCA

    from vaelab import detectors as D
    from vaelab.config import Config
    from vaelab.models import build_model

    if "same_as" in meta:
        return seen[meta["same_as"]]
    cls = {c.__name__: c for c in (D.VAEDetector, D.LatentDetector, D.RawDetector, D.FusionDetector)}.get(meta["class"])
    if cls is None:
        raise ModelFileError(f"unknown detector class {meta['class']!r}", path)
    params = {k: tuple(v) if isinstance(v, list) else v for k, v in meta["params"].items()}
    det = seen[prefix] = cls(**params)
    det.offset_, det.n_features_in_ = float(meta["offset"]), int(meta["n_features_in"])
    np_of = lambda key: tensors[f"{prefix}{key}"].numpy()  # noqa: E731
    if cls is D.VAEDetector:
        model = build_model(Config.from_dict({"model": meta["model"]}).model, det.n_features_in_, meta["likelihood"])
        model.load_state_dict({k[len(prefix) + 6:]: v for k, v in tensors.items() if k.startswith(f"{prefix}model.")})
        det.model_, det.likelihood_ = model.eval(), meta["likelihood"]
        det.mean_, det.scale_ = np_of("mean"), np_of("scale")
    elif cls is D.FusionDetector:
        det.detectors_ = [_load(m, f"{prefix}part{i}.", tensors, path, seen) for i, m in enumerate(meta["parts"])]
        det.references_ = [np_of(f"ref{i}") for i in range(len(det.detectors_))]
    else:
        if cls is D.LatentDetector:
            det.vae_ = _load(meta["vae"], f"{prefix}vae.", tensors, path, seen)
        if cls is D.RawDetector:
            det.center_, det.scale_ = np_of("center"), np_of("scale")
            det.pca_ = None
            if f"{prefix}pca.mean_" in tensors:
                comps = np_of("pca.components_")
                det.pca_ = PCA(n_components=comps.shape[0])
                det.pca_.mean_, det.pca_.components_ = np_of("pca.mean_"), comps
                det.pca_.explained_variance_ = np_of("pca.explained_variance_")
                det.pca_.n_components_, det.pca_.n_features_in_ = comps.shape[0], comps.shape[1]
        if f"{prefix}fit_features" in tensors:
            det._fit_estimator(np_of("fit_features"))
            probe = det.fit_features_[:PROBE_ROWS]
            if not np.allclose(_estimator_scores(det, probe), np_of("probe_scores"), rtol=1e-6, atol=1e-9):
                raise ModelFileError(f"the {det.estimator} estimator refitted on load scores differently from the "
                                     "saved one (another scikit-learn version?)", path)
    return det


def load_detector(path: str | Path):
    """A detector saved by :func:`save_detector`, ready to score."""
    path = Path(path)
    tensors, meta = ckpt.load_tensors(path)
    if meta.get("kind") != "detector":
        raise ModelFileError(f"not a detector file (kind {meta.get('kind')!r})", path)
    try:
        return _load(meta["detector"], "", tensors, path, {})
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise ModelFileError(f"detector file is inconsistent ({exc})", path) from None
