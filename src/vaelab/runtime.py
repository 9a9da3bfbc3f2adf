"""The one place that chooses the device and dtype and seeds generators."""

from __future__ import annotations

import contextlib
import ctypes
import functools
import hashlib
import json
import os
import platform
import random
import sys
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Callable, ContextManager

import numpy as np
import torch

from vaelab.config import PRECISIONS
from vaelab.errors import ConfigError, VaelabError
from vaelab.fileio import locked, write_json


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


# "auto" takes bfloat16 only where its products are at least this much faster than float32's: a
# clear margin, so that the choice does not flip between runs on a machine where they are close.
BFLOAT16_MIN_SPEEDUP = 1.5


def autocast(device: torch.device, precision: str) -> ContextManager:
    """Autocast context for a resolved ``precision`` in {"float32", "bfloat16"}.

    Parameters, optimizer state and element-wise work stay float32; bfloat16 only changes the
    matrix products (float32 accumulation).
    """
    if precision == "float32":
        return nullcontext()
    if precision == "bfloat16":  # no cast cache on CUDA, as a captured graph (training.GraphedStep) needs
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16, cache_enabled=device.type != "cuda")
    raise ConfigError(f"unknown precision {precision!r}; use float32, bfloat16 or auto")


@functools.lru_cache(maxsize=None)
def matmul_throughput(precision: str, shape: tuple[int, int, int] = (512, 784, 400),
                      device: str = "cpu", seconds: float = 0.3) -> float:
    """Measured matrix-multiply throughput in GFLOP/s for an (m, k) x (k, n) product in
    ``precision`` on ``device`` with the current thread count: the best of five short rounds
    (once per process and arguments)."""
    dtype = torch.bfloat16 if precision == "bfloat16" else torch.float32
    m, k, n = shape
    gen = make_generator(0, device)
    a = torch.randn((m, k), generator=gen, device=device).to(dtype)
    b = torch.randn((k, n), generator=gen, device=device).to(dtype)
    # on CUDA a product only queues work: wait for each, or the loop queues minutes of it
    sync = torch.cuda.synchronize if torch.device(device).type == "cuda" else (lambda: None)
    a @ b
    best = 0.0
    for _ in range(5):
        sync()
        count, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds / 5:
            a @ b
            sync()
            count += 1
        best = max(best, 2 * m * k * n * count / (time.perf_counter() - start) / 1e9)
    return best


PRECISION_ENV = "VAELAB_PRECISION"  # if set, what precision = "auto" answers instead of measuring
# set by a local executor for its workers: the parent's measured answer per device type (JSON), so that
# the processes of one run on one machine answer alike however busy the machine is when each starts
MEASURED_ENV = "VAELAB_MEASURED_PRECISION"


CACHE_ENV = "VAELAB_CACHE_DIR"  # where vaelab keeps what it measured about this machine


def cache_dir() -> Path:
    """The directory of vaelab's per-machine measurements: ``VAELAB_CACHE_DIR``, else
    ``$XDG_CACHE_HOME/vaelab``, else ``~/.cache/vaelab``. Delete it to measure again."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "vaelab"


def precision_file() -> Path:
    """Where the answers of ``precision = "auto"`` are kept, one per :func:`device_identity`."""
    return cache_dir() / "precision.json"


# the processor features that decide how fast bfloat16 and float32 products run (a model name alone,
# "AMD EPYC" in a virtual machine, may cover processors with and without them)
MATMUL_UNITS = ("amx_bf16", "amx_tile", "avx512_bf16", "avx512f", "avx2", "fma")


def device_identity(device: torch.device) -> str:
    """What a measurement of ``device`` holds for: the processor's or card's model, the torch version
    and the thread count (a speed ratio measured on one of these says nothing about another)."""
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else processor_name()
    return f"{device.type} | {name} | torch {torch.__version__} | {torch.get_num_threads()} threads"


@functools.lru_cache(maxsize=None)
def processor_name() -> str:
    """This processor's model and its :data:`MATMUL_UNITS` (read once per process: every ``auto`` asks)."""
    name = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        info = dict(line.split(":", 1) for line in Path("/proc/cpuinfo").read_text().splitlines() if ":" in line)
        info = {k.strip(): v.strip() for k, v in info.items()}
        units = [f for f in MATMUL_UNITS if f in info.get("flags", "").split()]
        name = " ".join([info.get("model name", name), *units])
    return name


def measure_precision(device: torch.device) -> str:
    """The measurement behind ``auto``: bfloat16 where its products run at least
    :data:`BFLOAT16_MIN_SPEEDUP` times faster than float32's, else float32."""
    if device.type == "cuda" and not torch.cuda.is_bf16_supported():
        return "float32"
    try:
        ratio = matmul_throughput("bfloat16", device=str(device)) / matmul_throughput("float32", device=str(device))
    except RuntimeError:  # no bfloat16 kernels on this device
        return "float32"
    return "bfloat16" if ratio >= BFLOAT16_MIN_SPEEDUP else "float32"


def measured_precision(device: torch.device | str) -> str:
    """bfloat16 where ``device`` multiplies bfloat16 matrices at least :data:`BFLOAT16_MIN_SPEEDUP`
    times faster than float32, else float32: the answer a parent process left for this device type in
    ``VAELAB_MEASURED_PRECISION``, else the one measured before on this machine (in
    :func:`precision_file`, keyed by :func:`device_identity`), else measured now and kept there. Measured once
    per machine, the answer cannot differ between two processes of the same command because one of them
    started while the machine was busy; no machine is assumed."""
    device = torch.device(device)
    inherited = json.loads(os.environ.get(MEASURED_ENV) or "{}").get(device.type)
    if inherited in ("float32", "bfloat16"):
        return inherited
    try:
        key, file = device_identity(device), precision_file()
        with locked(file.with_suffix(".lock")):  # a second process waits for the first's answer
            kept = read_kept(file)
            if kept.get(key) not in ("float32", "bfloat16"):
                kept[key] = measure_precision(device)
                write_json(file, kept)
            return kept[key]
    except (OSError, RuntimeError, VaelabError):  # no home or no writable cache: measure in this process alone
        return measure_precision(device)


def forget_measurement(device: torch.device | str) -> None:
    """Drop the answer kept for ``device`` on this machine, so that the next ``auto`` measures again
    (``vaelab machine --measure``: after a driver update, or a first measurement on a busy machine)."""
    file = precision_file()
    with locked(file.with_suffix(".lock")):
        kept = read_kept(file)
        if kept.pop(device_identity(torch.device(device)), None) is not None:
            write_json(file, kept)
    matmul_throughput.cache_clear()  # this process measures anew too


def read_kept(file: Path) -> dict[str, str]:
    """The answers kept in ``file``; none where it is missing or unreadable (then measured again)."""
    try:
        kept = json.loads(file.read_text())
    except (OSError, ValueError):
        return {}
    return kept if isinstance(kept, dict) else {}


def measured_precisions() -> dict[str, str]:
    """:func:`measured_precision` for this machine's CPU and, where there is one, its GPU (by device
    type): what a local executor measures once and hands to its workers (``VAELAB_MEASURED_PRECISION``)."""
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    return {d: measured_precision(d) for d in devices}


def resolve_precision(precision: str, device: torch.device | str,
                      agrees: Callable[[], bool] | None = None) -> str:
    """The precision to compute in: float32 and bfloat16 as given; ``auto`` takes bfloat16 where
    :func:`measured_precision` does and ``agrees()`` (the caller's check that its own result in
    bfloat16 stays within tolerance of float32's) holds; float32 elsewhere. ``VAELAB_PRECISION``
    (float32 or bfloat16) replaces the measurement, so that every process of a run (workers, nodes)
    answers alike. Callers record the answer in their results' metadata."""
    if precision not in PRECISIONS:
        raise ConfigError(f"unknown precision {precision!r}; use {', '.join(PRECISIONS)}")
    if precision != "auto":
        return precision
    pinned = os.environ.get(PRECISION_ENV, "")
    if pinned and pinned not in ("float32", "bfloat16"):
        raise ConfigError(f"{PRECISION_ENV} must be float32 or bfloat16; got {pinned!r}")
    machine = pinned or measured_precision(device)
    return "bfloat16" if machine == "bfloat16" and (agrees is None or agrees()) else "float32"


def keep_freed_memory() -> bool:
    """Ask glibc's allocator to keep freed memory for reuse rather than give it back to the system.

    By default every large tensor is a fresh memory mapping whose pages fault on first touch, and
    the loops here allocate the same large tensors again and again: measured on a 2-core machine,
    this costs a quarter of an epoch's time and of importance sampling's (benchmarks/train_speed.py,
    score_speed.py). The cost: the process keeps its peak memory until it exits. Applied when
    vaelab is imported, except where ``VAELAB_MALLOC=system``; a no-op off glibc. Returns whether
    it was applied.
    """
    if os.environ.get("VAELAB_MALLOC", "keep") == "system" or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        m_trim_threshold, m_mmap_max = -1, -4
        return bool(libc.mallopt(m_mmap_max, 0)) and bool(libc.mallopt(m_trim_threshold, 2**31 - 1))
    except (OSError, AttributeError):
        return False


MEMORY_KEPT = keep_freed_memory()


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
    (:func:`vaelab.distributions.reparameterize`). Draws are made in float32 and cast, so the same
    seed gives the same numbers whatever precision computes with them."""

    def __init__(self, x: torch.Tensor, seed: int, n_rows: int | None = None) -> None:
        n_rows = x.shape[0] if n_rows is None else n_rows
        self.device, self.n_pad = x.device, x.shape[0] - n_rows
        self.generators = [make_generator(s, x.device) for s in row_seeds(x[:n_rows], seed)]

    @property
    def n_real(self) -> int:
        """How many rows are real (not padding)."""
        return len(self.generators)

    def select(self, start: int, stop: int) -> "RowNoise":
        """The noise of rows ``start:stop`` (sharing their generators)."""
        part = RowNoise.__new__(RowNoise)
        part.device, part.generators = self.device, self.generators[start:stop]
        part.n_pad = (stop - start) - len(part.generators)
        return part

    def standard_normal(self, shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
        """Draws of ``shape`` whose second-to-last axis is the rows: each row's in one call to its own
        generator, written into one buffer (rows first in memory, so ``movedim(-2, 0)`` is contiguous)."""
        row_shape = (*shape[:-2], shape[-1])
        out = torch.zeros((self.n_real + self.n_pad, *row_shape), device=self.device)
        for row, g in enumerate(self.generators):
            torch.randn(row_shape, generator=g, device=self.device, out=out[row])
        return out.movedim(0, -2).to(dtype)
