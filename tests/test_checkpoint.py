"""Model files: exact round trip, no code execution, refusal of damaged files."""

import json

import pytest
import torch

from vaelab import checkpoint as ckpt
from vaelab.config import ModelConfig
from vaelab.errors import ModelFileError
from vaelab.models import VAE


def _model_file(tmp_path):
    config = ModelConfig(latent_dim=3, hidden_dims=(16,))
    model = VAE(20, config, "bernoulli")
    path = tmp_path / "m.safetensors"
    save_model(path, model, {"model": {"latent_dim": 3, "hidden_dims": [16]}, "input_dim": 20,
                                  "likelihood": "bernoulli", "metrics": {"val_elbo": -1.5}})
    return model, path


def test_file_is_plain_safetensors_without_pickle(tmp_path):
    _, path = _model_file(tmp_path)
    from safetensors.torch import load_file

    assert "enc_mean.weight" in load_file(path)
    assert b"\x80\x04" not in path.read_bytes()[:64]  # no pickle protocol header


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


def test_optimizer_state_round_trip():
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    model(torch.randn(4, 3)).sum().backward()
    opt.step()
    tensors, meta = ckpt.optimizer_to_tensors(opt)
    meta = json.loads(json.dumps(meta))
    other = torch.optim.Adam(model.parameters(), lr=0.01)
    other.load_state_dict(ckpt.optimizer_from_tensors(tensors, meta))
    for a, b in zip(opt.state.values(), other.state.values()):
        assert all(torch.equal(a[k], b[k]) for k in a)
