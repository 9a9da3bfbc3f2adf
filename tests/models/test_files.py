"""Model files: exact round trip (VAE and M2), no code execution, refusal of damaged and foreign files."""

import json

import pytest
import torch

from vaelab.config import ModelConfig
from vaelab.errors import ModelFileError
from vaelab.models import VAE, build_model, load_model, save_model, weights_fingerprint


@pytest.fixture
def m2():
    torch.manual_seed(0)
    return build_model(ModelConfig(name="m2", latent_dim=3, hidden_dims=(16,), n_classes=4, logvar_min=-80.0), 12, "bernoulli")


def test_m2_file_round_trip_takes_its_build_from_the_model(tmp_path, m2):
    save_model(tmp_path / "m2.safetensors", m2, {"labels": 100})
    loaded, meta = load_model(tmp_path / "m2.safetensors")
    assert meta["labels"] == 100 and meta["model"]["n_classes"] == 4
    x = torch.rand(3, 12)
    assert torch.equal(loaded.classify(x), m2.classify(x))


def _model_file(tmp_path):
    config = ModelConfig(latent_dim=3, hidden_dims=(16,))
    model = VAE(20, config, "bernoulli")
    path = tmp_path / "m.safetensors"
    save_model(path, model, {"model": {"latent_dim": 3, "hidden_dims": [16]}, "input_dim": 20,
                                  "likelihood": "bernoulli", "metrics": {"val_elbo": -1.5}})
    return model, path


def test_save_load_gives_equal_tensors_and_metadata(tmp_path):
    model, path = _model_file(tmp_path)
    loaded, meta = load_model(path)
    for (k, a), (k2, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert k == k2 and torch.equal(a, b)
    assert meta["metrics"] == {"val_elbo": -1.5} and meta["versions"]["torch"] == torch.__version__
    sidecar = json.loads(path.with_suffix(".json").read_text())
    assert sidecar["sha256"] == meta["sha256"]


def test_missing_and_foreign_files(tmp_path):
    with pytest.raises(ModelFileError, match="not found"):
        load_model(tmp_path / "none.safetensors")
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(2)}, tmp_path / "plain.safetensors")
    with pytest.raises(ModelFileError, match="not a vaelab file"):
        load_model(tmp_path / "plain.safetensors")


def test_file_is_plain_safetensors_without_pickle(tmp_path):
    _, path = _model_file(tmp_path)
    from safetensors.torch import load_file

    assert "enc_mean.weight" in load_file(path)
    blob = path.read_bytes()
    assert blob[8:9] == b"{" and b"torch._utils" not in blob  # a JSON header after its length; no pickle


def test_truncated_file_is_refused(tmp_path):
    _, path = _model_file(tmp_path)
    blob = path.read_bytes()
    for size in (4, 100, len(blob) // 2, len(blob) - 1):
        path.write_bytes(blob[:size])
        with pytest.raises(ModelFileError) as info:
            load_model(path)
        assert str(path) in str(info.value)


def test_tampered_tensor_bytes_are_refused(tmp_path):
    _, path = _model_file(tmp_path)
    blob = bytearray(path.read_bytes())
    blob[-5] ^= 0xFF
    path.write_bytes(bytes(blob))
    with pytest.raises(ModelFileError, match="does not match its recorded SHA-256"):
        load_model(path)


def test_tampered_header_is_refused(tmp_path):
    _, path = _model_file(tmp_path)
    blob = bytearray(path.read_bytes())
    blob[12] = ord("#")
    path.write_bytes(bytes(blob))
    with pytest.raises(ModelFileError):
        load_model(path)


def test_weights_fingerprint_changes_with_any_weight():
    model = VAE(6, ModelConfig(latent_dim=2, hidden_dims=(4,)), "bernoulli")
    before = weights_fingerprint(model)
    with torch.no_grad():
        model.enc_mean.bias[0] += 1e-6
    assert weights_fingerprint(model) != before
