"""M2: the exact marginalisation over y, the loss, conditional generation, and no label leak."""

import numpy as np
import pytest
import torch
from tests.conftest import tiny_config
from vaelab.config import ModelConfig, TrainConfig
from vaelab.models import build_model
from vaelab.data.labels import balanced_labels, epoch_rows
from vaelab.evaluation import error_rate
from vaelab.scores import marginal_elbo
from vaelab.training import train_m2
import json
from vaelab import checkpoint as ckpt
from vaelab.config import ModelConfig
from vaelab.errors import ModelFileError
from vaelab.models import VAE


@pytest.fixture
def m2():
    torch.manual_seed(0)
    return build_model(ModelConfig(name="m2", latent_dim=3, hidden_dims=(16,), n_classes=4, logvar_min=-80.0), 12, "bernoulli")


def test_m2_file_round_trip_takes_its_build_from_the_model(tmp_path, m2):
    from vaelab.models import load_model, save_model

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
    assert sidecar["tensor_sha256"] == meta["tensor_sha256"]


def test_missing_and_foreign_files(tmp_path):
    with pytest.raises(ModelFileError, match="not found"):
        load_model(tmp_path / "none.safetensors")
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(2)}, tmp_path / "plain.safetensors")
    with pytest.raises(ModelFileError, match="not a vaelab file"):
        load_model(tmp_path / "plain.safetensors")


