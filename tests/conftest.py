"""Shared fixtures: tiny data files and tiny configs so every test runs in seconds."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
import torch

from vaelab.config import Config

SHARED_MNIST = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mnist.npz"


def tiny_config(**sections) -> Config:
    """A small, fast config on the embedded data; ``sections`` override whole dicts."""
    base = {"data": {"name": "mnist5k", "train_limit": 600},
            "model": {"latent_dim": 2, "hidden_dims": [32]},
            "train": {"epochs": 2, "batch_size": 64, "progress": False},
            "score": {"iwae_samples": 20, "recon_samples": 5}}
    for key, values in sections.items():
        base[key] = {**base.get(key, {}), **values}
    return Config.from_dict(base)


# A whole study on tiny settings, run once per test session and shared by the study and report tests.
TINY_STUDY = ["--set", "train.progress=false", "--set", "train.epochs=1", "--set", "data.train_limit=600",
              "--set", "anomaly.classes=[1,7]", "--set", "anomaly.latent_dims=[2]", "--set", "anomaly.loco_epochs=1",
              "--set", "synthetic.types=[\"noise\",\"occlusion\"]", "--set", "synthetic.tsne_normals=100",
              "--set", "semisupervised.epochs=1", "--set", "semisupervised.latent_dim=2",
              "--set", "semisupervised.anomaly_labels=[0,5]",
              "--set", "model.hidden_dims=[32]", "--set", "study.latent_dims=[2,3]",
              "--set", "study.tsne_points=150", "--set", "score.iwae_samples=8",
              "--set", "study.n_prior_samples=16"]


@pytest.fixture(scope="session")
def study_run(tmp_path_factory) -> Path:
    from vaelab.cli import main

    out = tmp_path_factory.mktemp("study") / "run"
    assert main(["run", "--out", str(out), *TINY_STUDY]) == 0
    return out


@pytest.fixture(autouse=True)
def _threads():
    torch.set_num_threads(2)


@pytest.fixture(autouse=True)
def _machine_cache(tmp_path_factory, monkeypatch):
    """Each test keeps its measurements of the machine (auto precision) in a cache of its own, never in
    the user's: a test's answer does not depend on what ran before it."""
    from vaelab.runtime import CACHE_ENV

    monkeypatch.setenv(CACHE_ENV, str(tmp_path_factory.mktemp("machine-cache")))


@pytest.fixture
def image_npz(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    path = tmp_path / "images.npz"
    np.savez(path, x=(rng.random((120, 8, 8)) * 255).astype(np.uint8), y=rng.integers(0, 3, 120))
    return path


@pytest.fixture
def table_csv(tmp_path: Path) -> Path:
    rng = np.random.default_rng(1)
    path = tmp_path / "table.csv"
    x = rng.normal(size=(200, 5)) * [1, 2, 3, 4, 5] + [10, 0, -5, 1, 2]
    lines = ["a,b,c,d,e,label"] + [",".join(f"{v:.6f}" for v in row) + f",{i % 2}" for i, row in enumerate(x)]
    path.write_text("\n".join(lines) + "\n")
    return path


def cluster_purity(truth: np.ndarray, found: np.ndarray) -> float:
    """The share of rows in the most common true class of their found cluster."""
    return sum(np.bincount(truth[found == k]).max() for k in np.unique(found)) / len(truth)


def write_idx(path: Path, array: np.ndarray) -> None:
    """Write ``array`` (uint8) as a gzipped IDX file."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(s).to_bytes(4, "big") for s in array.shape)
    with gzip.open(path, "wb") as fh:
        fh.write(header + array.astype(np.uint8).tobytes())


@pytest.fixture
def idx_dir(tmp_path: Path) -> Path:
    rng = np.random.default_rng(2)
    directory = tmp_path / "idx"
    directory.mkdir()
    write_idx(directory / "train-images-idx3-ubyte.gz", rng.integers(0, 256, (300, 28, 28)))
    write_idx(directory / "train-labels-idx1-ubyte.gz", rng.integers(0, 10, 300))
    write_idx(directory / "t10k-images-idx3-ubyte.gz", rng.integers(0, 256, (50, 28, 28)))
    write_idx(directory / "t10k-labels-idx1-ubyte.gz", rng.integers(0, 10, 50))
    return directory
