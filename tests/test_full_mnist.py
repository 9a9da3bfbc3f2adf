"""Full-data tests on ../shared/data/mnist.npz (marked slow)."""

import numpy as np
import pytest

from tests.conftest import SHARED_MNIST, write_idx
from vaelab.cli import main
from vaelab.config import DataConfig
from vaelab.data import load_dataset
from vaelab.data import mnist as M

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not SHARED_MNIST.exists(), reason="needs ../shared/data/mnist.npz")]


def test_full_mnist_split_is_the_studys():
    data = load_dataset(DataConfig(name="mnist", path=str(SHARED_MNIST), binarize="none"))
    assert (len(data.train), len(data.val), len(data.test)) == (50_000, 10_000, 10_000)
    assert np.bincount(data.test.y).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    raw = np.load(SHARED_MNIST)
    assert np.allclose(data.val.x, raw["x_train"][50_000:].reshape(10_000, -1) / 255.0)
    assert abs(float(raw["x_train"].mean()) / 255.0 - 0.1307) < 1e-3


def test_idx_files_load_the_same_arrays_as_the_npz(tmp_path):
    raw = np.load(SHARED_MNIST)
    for key, stem in M.FILES.items():
        write_idx(tmp_path / f"{stem}.gz", raw[key])
    a, b = M.load_idx_dir(tmp_path), M.load_npz(SHARED_MNIST)
    assert np.array_equal(a.x_train, b.x_train) and np.array_equal(a.y_test, b.y_test)


def test_study_pipeline_on_full_mnist(tmp_path, capsys):
    code = main(["run", "configs/seed.toml", "--out", str(tmp_path / "seed"),
                 "--set", f"data.path='{SHARED_MNIST}'", "--set", "train.epochs=2",
                 "--set", "study.latent_dims=[5]", "--set", "study.tsne_points=1500",
                 "--set", "score.iwae_samples=50", "--set", "train.progress=false"])
    assert code == 0
    out = capsys.readouterr().out
    row = [line for line in out.splitlines() if line.strip().startswith("5 ")][0].split()
    test_elbo, test_iwae = float(row[4]), float(row[5])
    assert -175 < test_elbo < test_iwae < -100  # two epochs of the study's VAE
