"""MLflow tracking: a tracked tiny study read back through MLflow's own client; a store that is down costs
a warning, not the run; without MLflow, one line before any work."""

import pytest

from tests.conftest import TINY_STUDY
from vaelab.cli import main

mlflow = pytest.importorskip("mlflow", reason="the MLflow extra is not installed (pip install 'vaelab[mlflow]')")


@pytest.mark.slow
def test_a_tracked_study_reads_back_through_mlflow(tmp_path, monkeypatch, capsys):
    store = tmp_path / "store"
    store.mkdir()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{store / 'mlflow.db'}")
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "run"
    assert main(["run", "--out", str(out), *TINY_STUDY, "--set", "synthetic.types=[]", "--set",
                 "anomaly.protocols=[]", "--set", "semisupervised.labels=0", "--track", "mlflow"]) == 0
    client = mlflow.MlflowClient()
    experiment = client.get_experiment_by_name("vaelab")
    runs = client.search_runs([experiment.experiment_id])
    parent = next(r for r in runs if r.data.tags.get("vaelab.kind") == "study")
    assert parent.data.params["study.latent_dims"] == "[2, 3]" and parent.data.params["train.epochs"] == "1"
    assert "z2_test_rank" in parent.data.metrics
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"report.html", "metrics.json", "figures"} <= artifacts
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert sorted(r.info.run_name for r in children) == ["z2", "z3"]
    history = client.get_metric_history(children[0].info.run_id, "val_elbo")
    assert [m.step for m in history] == [1]
    assert "model" in {a.path for a in client.list_artifacts(children[0].info.run_id)}


def test_a_tracked_training_and_a_store_that_is_down(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    args = ["train", "--data", "mnist5k", "--epochs", "2", "--latent-dim", "2", "--set", "model.hidden_dims=[16]",
            "--set", "train.progress=false", "--set", "data.train_limit=300", "--track", "mlflow"]
    assert main([*args, "--out", str(tmp_path / "a")]) == 0  # no URI: the local store in ./mlruns
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}")
    client = mlflow.MlflowClient()
    (run,) = client.search_runs([client.get_experiment_by_name("vaelab").experiment_id])
    assert [m.step for m in client.get_metric_history(run.info.run_id, "train_elbo")] == [1, 2]
    assert run.data.params["model.latent_dim"] == "2"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")  # nothing listens there
    capsys.readouterr()
    assert main([*args, "--out", str(tmp_path / "b")]) == 0
    err = capsys.readouterr().err
    assert "vaelab: warning: MLflow tracking failed" in err and (tmp_path / "b" / "model.safetensors").exists()


def test_without_mlflow_tracking_is_refused_before_any_work(tmp_path, monkeypatch, capsys):
    import builtins

    real_import = builtins.__import__
    monkeypatch.setattr(builtins, "__import__", lambda name, *a, **k: (_ for _ in ()).throw(ImportError(name))
                        if name == "mlflow" else real_import(name, *a, **k))
    code = main(["train", "--data", "mnist5k", "--out", str(tmp_path / "r"), "--track", "mlflow"])
    err = capsys.readouterr().err
    assert code == 2 and err.strip() == ("vaelab: error: --track mlflow needs MLflow, which is not installed: "
                                        "pip install 'vaelab[mlflow]'")
    assert not (tmp_path / "r").exists()
