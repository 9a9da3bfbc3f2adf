"""Experiment tracking in MLflow (the optional extra ``vaelab[mlflow]``), from a finished directory alone.

``--track mlflow`` (or ``tracking.backend = "mlflow"``) records, after the work is done and written:
a run per study or benchmark (its config as parameters, its headline numbers as metrics, its report,
metrics, tables and figures as artifacts) with a nested run per trained model (its settings, the
training and validation bounds per epoch as metric histories, its final metrics, the model file).
Tracking reads what the run wrote and never changes it; when it fails (a server that is down), it
says so in one warning line and the run stands. The store is ``MLFLOW_TRACKING_URI`` or, without one,
a local SQLite store in ``./mlruns`` (no server needed): ``mlflow ui --backend-store-uri
sqlite:///mlruns/mlflow.db`` browses it.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path
from typing import Any, Callable

from vaelab.errors import VaelabError
from vaelab.experiments.anomaly_tables import latent_label

MLFLOW_INSTALL = "pip install 'vaelab[mlflow]'"
LOCAL_STORE = Path("mlruns")


def require_mlflow() -> None:
    """Refuse (one line) before any work when MLflow is asked for but not installed."""
    try:
        import mlflow  # noqa: F401
    except ImportError:
        raise VaelabError(f"--track mlflow needs MLflow, which is not installed: {MLFLOW_INSTALL}") from None


def _flat(prefix: str, value: Any, out: dict[str, str]) -> dict[str, str]:
    if isinstance(value, dict):
        for k, v in value.items():
            _flat(f"{prefix}.{k}" if prefix else str(k), v, out)
    else:
        out[prefix] = json.dumps(value) if isinstance(value, (list, tuple)) else str(value)
    return out


def _store(mlflow) -> str:
    """The tracking URI (MLFLOW_TRACKING_URI, else ./mlruns/mlflow.db) and the experiment's artifact place."""
    uri = os.environ.get("MLFLOW_TRACKING_URI", "")
    if not uri:
        LOCAL_STORE.mkdir(exist_ok=True)
        uri = f"sqlite:///{(LOCAL_STORE / 'mlflow.db').resolve()}"
    mlflow.set_tracking_uri(uri)
    return uri


def _experiment(mlflow, name: str) -> str:
    client = mlflow.MlflowClient()
    found = client.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    local = not os.environ.get("MLFLOW_TRACKING_URI")
    artifacts = (LOCAL_STORE / "artifacts").resolve().as_uri() if local else None
    return client.create_experiment(name, artifact_location=artifacts)


def _log_model(mlflow, model_dir: Path, params: bool) -> None:
    """Into the active run: one trained model's settings, per-epoch bounds, final metrics and files."""
    meta = json.loads((model_dir / "model.json").read_text()) if (model_dir / "model.json").exists() else {}
    if params:
        mlflow.log_params(_flat("", {"model": meta.get("model", {}), "train": meta.get("train", {})}, {}))
    history = json.loads((model_dir / "history.json").read_text()) if (model_dir / "history.json").exists() else []
    for row in history:
        mlflow.log_metrics({k: float(row[k]) for k in ("train_elbo", "val_elbo", "seconds")
                            if row.get(k) is not None}, step=int(row["epoch"]))
    final = {k: float(v) for k, v in (meta.get("metrics") or {}).items() if isinstance(v, (int, float))}
    if final:
        mlflow.log_metrics({f"final_{k}": v for k, v in final.items()})
    for name in ("model.safetensors", "model.json", "history.json"):
        if (model_dir / name).exists():
            mlflow.log_artifact(str(model_dir / name), artifact_path="model")


def _headline(metrics: dict[str, Any]) -> dict[str, float]:
    """The numbers a study or benchmark run is compared by."""
    out: dict[str, float] = {}
    for d, m in (metrics.get("study") or {}).items():
        for key in ("test_rank", "test_elbo", "val_elbo"):
            if isinstance(m.get(key), (int, float)):
                out[f"z{d}_{key}"] = float(m[key])
    summary = (metrics.get("anomaly") or {}).get("summary") or metrics.get("summary") or []
    for row in summary:
        if isinstance(row, dict) and "mean_auroc" in row:
            out[f"{row['protocol']}_{row['detector']}_z{latent_label(row.get('latent_dim') or 0)}_mean_auroc"] = float(
                row["mean_auroc"])
    return out


def track(run_dir: str | Path, kind: str, config: dict[str, Any], experiment: str = "vaelab",
          warn: Callable[[str], None] | None = None) -> str | None:
    """Record the finished ``run_dir`` (a ``study``, ``train`` or ``benchmark`` directory) in MLflow; returns
    the run id, or None after a one-line warning when tracking fails."""
    warn = warn or (lambda line: print(line, file=sys.stderr, flush=True))
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")  # a server that is down: fail fast
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
    run_dir = Path(run_dir)
    try:
        import mlflow

        for name in ("mlflow", "alembic"):
            logging.getLogger(name).setLevel(logging.ERROR)
        _store(mlflow)
        experiment_id = _experiment(mlflow, experiment)
        with mlflow.start_run(run_name=run_dir.name, experiment_id=experiment_id,
                              tags={"vaelab.kind": kind, "vaelab.run_dir": str(run_dir.resolve())}) as run:
            mlflow.log_params(_flat("", config, {}))
            metrics_file = next((p for p in (run_dir / "metrics.json", run_dir / "results.json") if p.exists()), None)
            if metrics_file is not None:
                numbers = _headline(json.loads(metrics_file.read_text()))
                if numbers:
                    mlflow.log_metrics(numbers)
            for name in ("report.html", "metrics.json", "config.toml", "results.json", "results.md", "results.csv"):
                if (run_dir / name).exists():
                    mlflow.log_artifact(str(run_dir / name))
            if (run_dir / "figures").is_dir():
                mlflow.log_artifacts(str(run_dir / "figures"), artifact_path="figures")
            if kind == "train":
                _log_model(mlflow, run_dir, params=False)  # the config above holds its settings
            for model_dir in sorted(p for p in (run_dir / "models").glob("*") if p.is_dir()):
                with mlflow.start_run(run_name=model_dir.name, nested=True, experiment_id=experiment_id):
                    _log_model(mlflow, model_dir, params=True)
            return run.info.run_id
    except Exception as exc:  # noqa: BLE001 - tracking never costs a finished run
        first = " ".join(str(exc).split())[:300] or type(exc).__name__
        warn(f"vaelab: warning: MLflow tracking failed ({first}); the results are in {run_dir}")
        return None
