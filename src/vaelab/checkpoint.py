"""Tensor files (model files, checkpoints, detector files): safetensors plus JSON metadata.

A file holds named tensors and a JSON metadata document embedded in the
safetensors header, with a SHA-256 digest of the tensor bytes. Loading parses
only the header and raw tensor bytes (no pickle, no code) and refuses a file
that is truncated, malformed or whose tensors do not match the digest. A
human-readable copy of the metadata is written beside it as ``NAME.json``.
"""

from __future__ import annotations

import hashlib
import json
import platform
import struct
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from vaelab import __version__
from vaelab.errors import ModelFileError
from vaelab.fileio import write_bytes, write_json

META_KEY = "vaelab"
FORMAT_VERSION = 1


def tensor_digest(tensors: dict[str, torch.Tensor]) -> str:
    """SHA-256 over names, dtypes, shapes and bytes of ``tensors`` (sorted by name)."""
    digest = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().contiguous().cpu()
        digest.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()


def versions() -> dict[str, str]:
    import numpy

    return {"vaelab": __version__, "torch": torch.__version__, "numpy": numpy.__version__,
            "python": platform.python_version()}


def save_tensors(path: str | Path, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    """Write ``tensors`` and ``meta`` atomically to ``path`` (+ ``path.json``)."""
    path = Path(path)
    tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    meta = {**meta, "format_version": FORMAT_VERSION, "tensor_sha256": tensor_digest(tensors)}
    blob = st_save(tensors, metadata={META_KEY: json.dumps(meta, allow_nan=False)})
    write_bytes(path, blob)
    write_json(path.with_suffix(".json"), meta)


def _header(blob: bytes, path: Path) -> dict[str, Any]:
    if len(blob) < 8:
        raise ModelFileError("file is truncated (no safetensors header)", path)
    (size,) = struct.unpack("<Q", blob[:8])
    if size > len(blob) - 8:
        raise ModelFileError("file is truncated (header runs past the end)", path)
    try:
        return json.loads(blob[8:8 + size])
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ModelFileError("malformed safetensors header", path) from None


def load_tensors(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read and verify a file written by :func:`save_tensors`."""
    path = Path(path)
    try:
        blob = path.read_bytes()
    except FileNotFoundError:
        raise ModelFileError("model file not found", path) from None
    except OSError as exc:
        raise ModelFileError(f"cannot read model file ({exc.strerror})", path) from None
    header = _header(blob, path)
    try:
        tensors = st_load(blob)
    except (SafetensorError, ValueError, RuntimeError) as exc:
        raise ModelFileError(f"not a valid safetensors file ({exc})", path) from None
    try:
        meta = json.loads(header.get("__metadata__", {})[META_KEY])
    except (KeyError, TypeError, json.JSONDecodeError):
        raise ModelFileError("not a vaelab file (no vaelab metadata)", path) from None
    if meta.get("format_version") != FORMAT_VERSION:
        raise ModelFileError(f"unsupported format version {meta.get('format_version')!r}", path)
    if tensor_digest(tensors) != meta.get("tensor_sha256"):
        raise ModelFileError("tensor data does not match its recorded SHA-256 (file modified or corrupt)", path)
    return tensors, meta


# ---- training checkpoints ----------------------------------------------------
def optimizer_to_tensors(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split an optimizer's state dict into tensors and JSON-able metadata."""
    state = optimizer.state_dict()
    tensors, scalars = {}, {}
    for pid, slots in state["state"].items():
        for key, value in slots.items():
            if torch.is_tensor(value):
                tensors[f"optim.{pid}.{key}"] = value
            else:
                scalars[f"{pid}.{key}"] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def optimizer_from_tensors(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict[str, Any]:
    """Inverse of :func:`optimizer_to_tensors`: an optimizer state dict."""
    state: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        if name.startswith("optim."):
            _, pid, key = name.split(".", 2)
            state.setdefault(int(pid), {})[key] = value
    for name, value in meta["scalars"].items():
        pid, key = name.split(".", 1)
        state.setdefault(int(pid), {})[key] = value
    return {"state": state, "param_groups": meta["param_groups"]}
