"""Configs: TOML round trip, overrides, refusals naming the file, and identity()."""

import pytest

from vaelab.config import Config, apply_overrides, load_config, parse_override
from vaelab.errors import ConfigError


def test_toml_round_trip_is_exact(tmp_path):
    config = Config.from_dict({"model": {"latent_dim": 3, "hidden_dims": [400, 200]},
                               "data": {"val_size": 0.25}, "train": {"lr": 3e-4}})
    path = tmp_path / "c.toml"
    path.write_text(config.to_toml())
    again = load_config(path)
    assert again == config
    assert again.model.hidden_dims == (400, 200)
    assert again.data.val_size == 0.25 and again.data.test_size == "auto"


def test_overrides_parse_toml_values():
    assert parse_override("model.hidden_dims=[400,400]") == (["model", "hidden_dims"], [400, 400])
    assert parse_override("data.name=mnist") == (["data", "name"], "mnist")
    assert parse_override("train.lr=1e-4") == (["train", "lr"], 1e-4)
    config = load_config(None, ["model.latent_dim=7", "train.progress=false"])
    assert config.model.latent_dim == 7 and config.train.progress is False


def test_overrides_apply_on_top_of_file(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text("[model]\nlatent_dim = 3\n[train]\nepochs = 9\n")
    config = load_config(path, ["train.epochs=2"])
    assert (config.model.latent_dim, config.train.epochs) == (3, 2)
    assert apply_overrides({"a": {"b": 1}}, ["a.c=2"]) == {"a": {"b": 1, "c": 2}}


@pytest.mark.parametrize("text, message", [
    ("[model]\nlatnt_dim = 3\n", "unknown key model.latnt_dim"),
    ("[modle]\nlatent_dim = 3\n", "unknown key modle"),
    ("[model]\nlatent_dim = 0\n", "model.latent_dim must be >= 1"),
    ("[model]\nlatent_dim = \"3\"\n", "model.latent_dim must be of type int"),
    ("[train]\nepochs = true\n", "train.epochs must be of type int"),
    ("[data]\nbinarize = \"maybe\"\n", "data.binarize must be one of"),
    ("[data]\nval_size = 1.5\n", "data.val_size must be"),
    ("[detector]\nlikelihood = \"poisson\"\n", "detector.likelihood must be auto, bernoulli or gaussian"),
    ("[anomaly]\nrefit = \"sometimes\"\n", "anomaly.refit must be auto, always, never"),
    ("[detector]\ncluster_stability = -2\n", "detector.cluster_stability must be at least -1"),
    ("[detector]\ncluster_maps = 1\n", "detector.cluster_maps must be at least 2"),
    ("[model\n", "not valid TOML"),
])
def test_bad_configs_name_the_file_and_problem(tmp_path, text, message):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(path) in str(info.value) and message in str(info.value)
    assert "\n" not in str(info.value)


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.toml")


def test_configs_are_frozen():
    with pytest.raises(Exception):
        Config().model.latent_dim = 3  # type: ignore[misc]


def test_quick_config_is_the_builtin_default():
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    assert load_config(root / "configs" / "quick.toml") == Config()
    seed = load_config(root / "configs" / "seed.toml")
    assert seed.study.latent_dims == (3, 5, 200) and seed.train.epochs == 200
    assert seed.train.batch_size == 512 and seed.model.hidden_dims == (400,)


def test_identity_is_what_determines_the_weights():
    from vaelab.config import identity

    base = Config()
    assert identity(base) == identity(base.to_dict())  # a Config or its stored dict form
    vae = base.to_dict()
    assert "n_classes" not in identity(vae)["model"]
    assert identity(vae) == identity({**vae, "model": {**vae["model"], "alpha": 1.0}})  # M2 settings: not a VAE's
    m2 = {**vae, "model": {**vae["model"], "name": "m2"}}
    assert identity(m2) != identity({**m2, "model": {**m2["model"], "alpha": 1.0}})
    stored_m2 = {**m2, "model": {k: v for k, v in m2["model"].items() if k != "balance"}}
    assert identity(stored_m2) == identity(m2)  # an M2 stored before balance existed keeps its identity
    assert identity(m2) != identity({**m2, "model": {**m2["model"], "balance": 1.0}})
    resumable = {**vae, "train": {**vae["train"], "epochs": 999, "device": "cpu", "progress": False}}
    assert identity(resumable) == identity(vae)  # may change between a run and its resumption
    for section, key, value in (("train", "lr", 0.5), ("train", "seed", 3), ("model", "latent_dim", 7),
                                ("data", "binarize", "none")):
        assert identity({**vae, section: {**vae[section], key: value}}) != identity(vae), key
    assert identity(base.with_latent_dim(7)) == identity({**vae, "model": {**vae["model"], "latent_dim": 7}})


def test_anomaly_latent_sizes_must_be_the_studys():
    with pytest.raises(ConfigError, match="anomaly.latent_dims must be among study.latent_dims"):
        Config.from_dict({"study": {"latent_dims": [2, 3]}, "anomaly": {"latent_dims": [5]}}).anomaly_latent_dims()
    assert Config.from_dict({"study": {"latent_dims": [2]}, "anomaly": {"latent_dims": []}}).anomaly_latent_dims() == (2,)
    assert Config().anomaly_latent_dims() == (5,)


def test_every_shipped_config_loads():
    from pathlib import Path

    for path in sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.toml")):
        load_config(path)  # a setting that moved would be refused here, not in a user's hands
