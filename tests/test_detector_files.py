"""Detector files: every kind of detector round-trips without pickle and scores identically."""

import numpy as np
import pytest

from vaelab.detector_files import load_detector, save_detector
from vaelab.detectors import FusionDetector, LatentDetector, RawDetector, VAEDetector
from vaelab.errors import ModelFileError


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    basis = rng.normal(size=(2, 6))
    train = rng.normal(size=(300, 2)) @ basis + 0.1 * rng.normal(size=(300, 6))
    test = np.vstack([rng.normal(size=(30, 2)) @ basis, rng.normal(size=(10, 6)) * 2])
    return train, test


def _vae(**kw):
    return VAEDetector(latent_dim=2, hidden_dims=(16,), epochs=3, n_samples=8, **kw)


DETECTORS = {
    "vae-iwae": lambda: _vae(score="iwae"),
    "latent-ocsvm": lambda: LatentDetector("ocsvm", vae=_vae()),
    "latent-gmm": lambda: LatentDetector("gmm", vae=_vae()),
    "raw-iforest": lambda: RawDetector("iforest", pca_components=3),
    "raw-kde": lambda: RawDetector("kde", pca_components=None),
    "raw-ocsvm-nystroem": lambda: RawDetector("ocsvm-nystroem", pca_components=4),
    "raw-pca-recon": lambda: RawDetector("pca-recon", pca_components=2),
    "fusion": lambda: FusionDetector((_vae(score="iwae"), LatentDetector("ocsvm", latent_dim=2)), rule="zsum"),
}


@pytest.mark.parametrize("name", list(DETECTORS))
def test_round_trip_scores_identically(data, tmp_path, name):
    train, test = data
    det = DETECTORS[name]()
    if isinstance(det, LatentDetector):
        det.vae.fit(train)
    det.fit(train)
    path = tmp_path / "det.safetensors"
    save_detector(path, det)
    loaded = load_detector(path)
    assert type(loaded) is type(det) and loaded.offset_ == det.offset_
    assert np.allclose(loaded.score_samples(test), det.score_samples(test), rtol=1e-6, atol=1e-8)
    assert np.array_equal(loaded.predict(test), det.predict(test))


def test_a_changed_file_is_refused(data, tmp_path):
    train, _ = data
    path = tmp_path / "det.safetensors"
    save_detector(path, RawDetector("gmm", pca_components=None).fit(train))
    blob = bytearray(path.read_bytes())
    blob[-5] ^= 0xFF
    path.write_bytes(bytes(blob))
    with pytest.raises(ModelFileError):
        load_detector(path)
