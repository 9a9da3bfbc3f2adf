"""Training's schedule (learning-rate decay, early stopping with the best weights), weight
snapshots and the log p(x)-against-epochs curve, and the measured choice of precision."""

import json

import pytest
import torch
from safetensors.torch import load_file

from tests.conftest import tiny_config
from vaelab import runtime
from vaelab.config import identity
from vaelab.data import load_dataset
from vaelab.experiments.study_stages import curves
from vaelab.experiments.training_run import train_model
from vaelab.experiments.units import Unit
from vaelab.errors import VaelabError
from vaelab.models import build_model, load_model
from vaelab.training import Trainer, evaluate_elbo

FAST = {"precision": "float32", "checkpoint_every": 1}


def test_the_learning_rate_decays_and_training_stops_keeping_the_best_epoch(tmp_path):
    config = tiny_config(train={**FAST, "epochs": 40, "lr": 0.02, "lr_decay": 0.5, "lr_patience": 1,
                                "stop_patience": 3})
    run = train_model(config, tmp_path / "r")
    history = json.loads((tmp_path / "r" / "history.json").read_text())
    best = max(history, key=lambda row: row["val_elbo"])
    assert len(history) < 40 and history[-1]["epoch"] - best["epoch"] == 3
    assert run.meta["metrics"]["stopped"] and run.meta["metrics"]["epochs"] == best["epoch"]
    assert run.meta["metrics"]["val_elbo"] == best["val_elbo"]
    for i, (row, following) in enumerate(zip(history, history[1:])):
        improved = all(row["val_elbo"] > earlier["val_elbo"] for earlier in history[:i])
        assert following["lr"] == pytest.approx(row["lr"] * (1.0 if improved else 0.5))
    assert history[-1]["lr"] < 0.02
    model, _ = load_model(tmp_path / "r" / "model.safetensors")
    val = {"x": torch.from_numpy(load_dataset(config.data).val.x)}
    assert evaluate_elbo(model, val, config.train.eval_batch_size, config.train.seed + 1) == best["val_elbo"]


def test_a_scheduled_run_resumes_bit_identically(tmp_path):
    schedule = {**FAST, "lr": 0.02, "lr_decay": 0.5, "lr_patience": 1, "stop_patience": 50}
    train_model(tiny_config(train={**schedule, "epochs": 6}), tmp_path / "full")
    train_model(tiny_config(train={**schedule, "epochs": 3}), tmp_path / "part")
    train_model(tiny_config(train={**schedule, "epochs": 6}), tmp_path / "part", existing="resume")
    a, b = (load_file(tmp_path / r / "model.safetensors") for r in ("full", "part"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    rows = [json.loads((tmp_path / r / "history.json").read_text()) for r in ("full", "part")]
    assert [row["lr"] for row in rows[0]] == [row["lr"] for row in rows[1]]


def test_a_schedule_without_a_validation_split_is_refused():
    config = tiny_config(train={"stop_patience": 3})
    data = load_dataset(config.data)
    trainer = Trainer(build_model(config.model, data.n_features, "bernoulli"), config.train, run_config={})
    with pytest.raises(VaelabError, match="validation split"):
        trainer.fit({"x": torch.from_numpy(data.train.x)})


def test_settings_added_later_count_for_the_identity_only_when_set():
    plain = identity(tiny_config())
    assert "lr_decay" not in plain["train"] and "stop_patience" not in plain["train"]
    assert identity(tiny_config(train={"lr_decay": 0.5}))["train"]["lr_decay"] == 0.5
    assert identity(tiny_config(train={"snapshot_every": 5})) == plain  # snapshots do not change the weights


def test_snapshots_give_the_likelihood_curve(tmp_path):
    config = tiny_config(train={**FAST, "epochs": 4, "snapshot_every": 2}, study={"latent_dims": [2], "curve_rows": 50})
    train_model(config.with_latent_dim(2), tmp_path / "models" / "z2")
    snaps = sorted(p.name for p in (tmp_path / "models" / "z2" / "snapshots").glob("*.safetensors"))
    assert snaps == ["epoch_00002.safetensors", "epoch_00004.safetensors"]
    result = curves(Unit("curves", "vaelab.experiments.study_stages:curves", {"config": config.to_dict()}), tmp_path)
    points = result["likelihood_curve"]["z2"]
    assert [p[0] for p in points] == [2, 4] and all(-800 < p[1] < 0 for p in points)
    assert (tmp_path / "figures" / "likelihood_curve.png").stat().st_size > 1000


def test_auto_precision_follows_the_measured_speed_and_the_callers_check(monkeypatch):
    speeds = {"float32": 100.0, "bfloat16": 400.0}
    monkeypatch.setattr(runtime, "matmul_throughput", lambda p, *a, **k: speeds[p])
    assert runtime.resolve_precision("auto", "cpu") == "bfloat16"
    assert runtime.resolve_precision("auto", "cpu", agrees=lambda: False) == "float32"
    speeds["bfloat16"] = 120.0  # faster, but not by a clear margin
    runtime.precision_file().unlink()  # measured again, not the answer kept before
    assert runtime.resolve_precision("auto", "cpu") == "float32"
    assert runtime.resolve_precision("bfloat16", "cpu") == "bfloat16"


def test_a_trained_model_records_the_precision_it_ran_in(tmp_path):
    run = train_model(tiny_config(), tmp_path / "r")
    assert run.meta["metrics"]["precision"] in ("float32", "bfloat16")


def test_a_worker_that_draws_the_curve_is_sent_the_snapshots(tmp_path):
    """Under --jobs or Ray the curve's unit runs in a private directory with the files of the units it
    reads: the training unit lists its snapshots, so they are sent (they were not, and the curve was empty)."""
    from vaelab.experiments.units import UnitStore

    config = tiny_config(train={**FAST, "epochs": 2, "snapshot_every": 1}, study={"latent_dims": [2], "curve_rows": 20})
    store = UnitStore(tmp_path)
    train = Unit("train/z2", "vaelab.experiments.study_stages:train", {"config": config.with_latent_dim(2).to_dict()},
                 outputs=("models/z2/model.safetensors", "models/z2/history.json"))
    store.run(train)
    reader = Unit("curves", "vaelab.experiments.study_stages:curves", {"config": config.to_dict()},
                  after=(train.fingerprint,))
    sent = store.input_files(reader)
    assert {"models/z2/snapshots/epoch_00001.safetensors", "models/z2/snapshots/epoch_00002.safetensors"} <= set(sent)


def test_a_curve_without_its_snapshots_is_an_error_not_an_empty_figure(tmp_path):
    config = tiny_config(train={**FAST, "epochs": 2, "snapshot_every": 1}, study={"latent_dims": [2], "curve_rows": 20})
    train_model(config.with_latent_dim(2), tmp_path / "models" / "z2")
    for path in (tmp_path / "models" / "z2" / "snapshots").glob("*"):
        path.unlink()
    with pytest.raises(VaelabError, match="no weight snapshots"):
        curves(Unit("curves", "vaelab.experiments.study_stages:curves", {"config": config.to_dict()}), tmp_path)
