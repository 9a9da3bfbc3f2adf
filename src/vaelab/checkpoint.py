"""Tensor files (model files, checkpoints, detector files): safetensors plus JSON metadata.

A file holds named tensors and a JSON metadata document embedded in the
safetensors header. Loading parses only the header and raw tensor bytes (no
pickle, no code). A human-readable copy of the metadata is written beside it
as ``NAME.json`` (for people; loading never reads it).

Integrity: ``sha256`` in the metadata covers everything that changes
behaviour, the tensors and every other metadata field (preprocessing,
thresholds, configs), so a file that is truncated, corrupt or edited in any
field is refused. A digest stored inside the file detects accidents, not
intent: whoever edits a file can recompute it. Authenticity: with
``VAELAB_SIGNING_KEY`` set, files are written with ``hmac_sha256``, an
HMAC-SHA256 of the same content under that key, and only files whose HMAC
verifies under the key are loaded; without the key no one can produce a file
that loads.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
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
from vaelab.fileio import write_files

META_KEY = "vaelab"
FORMAT_VERSION = 2
SIGNING_KEY_ENV = "VAELAB_SIGNING_KEY"
_SEALS = ("sha256", "hmac_sha256")  # the fields that seal the rest


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


def _content(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> bytes:
    """The bytes that the seals cover: the tensors' digest and every metadata field but the seals."""
    fields = {k: v for k, v in meta.items() if k not in _SEALS}
    return (tensor_digest(tensors) + json.dumps(fields, sort_keys=True, separators=(",", ":"))).encode()


def _signing_key() -> bytes | None:
    key = os.environ.get(SIGNING_KEY_ENV, "")
    return key.encode() if key else None


def _seal(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict[str, Any]:
    content = _content(tensors, meta)
    sealed = {**meta, "sha256": hashlib.sha256(content).hexdigest()}
    key = _signing_key()
    if key is not None:
        sealed["hmac_sha256"] = hmac.new(key, content, hashlib.sha256).hexdigest()
    return sealed


def _check_seal(tensors: dict[str, torch.Tensor], meta: dict[str, Any], path: Path) -> None:
    content = _content(tensors, meta)
    if not hmac.compare_digest(hashlib.sha256(content).hexdigest(), str(meta.get("sha256", ""))):
        raise ModelFileError("content does not match its recorded SHA-256 (file modified or corrupt)", path)
    key = _signing_key()
    if key is None:
        return
    if "hmac_sha256" not in meta:
        raise ModelFileError(f"file is not signed, and {SIGNING_KEY_ENV} is set (only signed files load)", path)
    if not hmac.compare_digest(hmac.new(key, content, hashlib.sha256).hexdigest(), str(meta["hmac_sha256"])):
        raise ModelFileError(f"signature does not verify under {SIGNING_KEY_ENV} (modified, or signed with "
                             "another key)", path)


def tensor_files(path: str | Path, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict[Path, bytes]:
    """The contents of ``path`` and its ``.json`` sidecar holding ``tensors`` and ``meta``, sealed (and
    signed when ``VAELAB_SIGNING_KEY`` is set), ready for :func:`vaelab.fileio.write_files`."""
    path = Path(path)
    tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    try:
        text = json.dumps({**meta, "format_version": FORMAT_VERSION}, allow_nan=False)
    except ValueError:
        raise ModelFileError("metadata holds a NaN or infinite value and cannot be stored", path) from None
    meta = _seal(tensors, json.loads(text))  # sealed as it will be read back
    blob = st_save(tensors, metadata={META_KEY: json.dumps(meta, allow_nan=False)})
    return {path: blob, path.with_suffix(".json"): (json.dumps(meta, indent=2, sort_keys=True) + "\n").encode()}


def save_tensors(path: str | Path, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    """Write ``tensors`` and ``meta`` to ``path`` and its sidecar, all or nothing."""
    write_files(tensor_files(path, tensors, meta))


def _header(blob: bytes, path: Path) -> dict[str, Any]:
    if len(blob) < 8:
        raise ModelFileError("file is truncated (no safetensors header)", path)
    (size,) = struct.unpack("<Q", blob[:8])
    if size > len(blob) - 8:
        raise ModelFileError("file is truncated (header runs past the end)", path)
    try:
        header = json.loads(blob[8:8 + size])
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ModelFileError("malformed safetensors header", path) from None
    if not isinstance(header, dict):
        raise ModelFileError("malformed safetensors header (not an object)", path)
    return header


def load_tensors(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read and verify a file written by :func:`save_tensors`."""
    path = Path(path)
    try:
        blob = path.read_bytes()
    except FileNotFoundError:
        raise ModelFileError("file not found", path) from None
    except IsADirectoryError:
        raise ModelFileError("is a directory, not a model or detector file", path) from None
    except OSError as exc:
        raise ModelFileError(f"cannot read file ({exc.strerror})", path) from None
    header = _header(blob, path)
    try:
        tensors = st_load(blob)
    except (SafetensorError, ValueError, RuntimeError) as exc:
        raise ModelFileError(f"not a valid safetensors file ({exc})", path) from None
    try:
        meta = json.loads(header.get("__metadata__", {})[META_KEY])
    except (KeyError, TypeError, json.JSONDecodeError):
        raise ModelFileError("not a vaelab file (no vaelab metadata)", path) from None
    if not isinstance(meta, dict):
        raise ModelFileError("not a vaelab file (metadata is not an object)", path)
    if meta.get("format_version") != FORMAT_VERSION:
        raise ModelFileError(f"unsupported format version {meta.get('format_version')!r} (this vaelab reads "
                             f"version {FORMAT_VERSION}; retrain or refit to write a current file)", path)
    _check_seal(tensors, meta, path)
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
