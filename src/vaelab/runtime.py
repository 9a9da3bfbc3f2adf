"""The one place that chooses the device and dtype and seeds generators."""

from __future__ import annotations

import contextlib
import hashlib
import random
from contextlib import nullcontext
from typing import ContextManager

import numpy as np
import torch

from vaelab.errors import ConfigError


def resolve_device(name: str = "auto") -> torch.device:
    """Return the compute device: ``auto`` picks CUDA when present, else CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} was asked for but CUDA is not available")
    try:
        return torch.device(name)
    except RuntimeError as exc:
        raise ConfigError(f"unknown device {name!r}") from exc


def autocast(device: torch.device, precision: str) -> ContextManager:
    """Autocast context for ``precision`` in {"float32", "bfloat16"}.

    Parameters and optimizer state stay float32; bfloat16 only changes the
    matmuls inside the forward pass.
    """
    if precision == "float32":
        return nullcontext()
    if precision == "bfloat16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    raise ConfigError(f"unknown precision {precision!r}; use float32 or bfloat16")


def make_generator(seed: int, device: torch.device | str = "cpu") -> torch.Generator:
    """A torch generator on ``device`` seeded with ``seed``."""
    gen = torch.Generator(device=device)
    gen.manual_seed(int(seed))
    return gen


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch's global generators (for code we do not own).

    vaelab's own random draws use explicit generators from
    :func:`make_generator`, so they do not depend on this global state.
    """
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


@contextlib.contextmanager
def seeded_init(seed: int):
    """Within the block torch's global generator is seeded with ``seed`` (for layer
    initialisation); the caller's global random state is restored afterwards."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def numpy_rng(seed: int) -> np.random.Generator:
    """A NumPy generator for data splits and other host-side draws."""
    return np.random.default_rng(seed)


def row_seeds(x: torch.Tensor, seed: int) -> list[int]:
    """One seed per row of ``x`` from ``seed`` and the row's float32 bytes alone: the same row gets
    the same seed in any batch and at any position."""
    rows = x.detach().to("cpu", torch.float32).contiguous().numpy()
    salt = int(seed).to_bytes(8, "little", signed=True)
    return [int.from_bytes(hashlib.blake2b(row.tobytes(), digest_size=8, salt=salt).digest(),
                           "little") >> 1 for row in rows]


class RowNoise:
    """Standard normal draws for a batch of rows, each row's from its own generator
    (:func:`row_seeds`), so Monte-Carlo scores do not depend on the batch a row is in or the order
    of the rows. Rows past ``n_rows`` (padding) get zeros. Passed where a ``torch.Generator`` goes
    (:func:`vaelab.distributions.reparameterize`)."""

    def __init__(self, x: torch.Tensor, seed: int, n_rows: int | None = None) -> None:
        n_rows = x.shape[0] if n_rows is None else n_rows
        self.device, self.n_pad = x.device, x.shape[0] - n_rows
        self.generators = [make_generator(s, x.device) for s in row_seeds(x[:n_rows], seed)]

    def standard_normal(self, shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
        """Draws of ``shape`` whose second-to-last axis is the rows."""
        row_shape = (*shape[:-2], shape[-1])
        draws = [torch.randn(row_shape, generator=g, device=self.device, dtype=dtype) for g in self.generators]
        draws += [torch.zeros(row_shape, device=self.device, dtype=dtype)] * self.n_pad
        return torch.stack(draws, dim=-2)
