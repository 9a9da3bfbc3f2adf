"""Training one model into a run directory, and scoring data with a trained one (`vaelab train`,
`vaelab score`, the study's training units)."""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from vaelab import checkpoint as ckpt
from vaelab.config import Config, DataConfig, identity
from vaelab.data import Dataset, load_dataset
from vaelab.data.dataset import Preprocessing
from vaelab.data.registry import DATASETS, load_rows
from vaelab.errors import DataError, VaelabError
from vaelab.fileio import locked, write_json, write_text
from vaelab.models import build_model, load_model, resolve_likelihood, save_model
from vaelab.runtime import resolve_device, seed_everything
from vaelab.scores import monte_carlo_samples, score_array
from vaelab.training import Trainer, dynamic_binarization

MODEL_FILE = "model.safetensors"
CHECKPOINT_FILE = "checkpoint.safetensors"


@dataclass
class TrainedRun:
    out_dir: Path
    model: torch.nn.Module
    dataset: Dataset
    meta: dict[str, Any]


def _logger(path: Path) -> Callable[[str], None]:
    def log(line: str) -> None:
        with path.open("a", encoding="utf-8") as fh:
            fh.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {line}\n")
    return log


def data_meta(dataset: Dataset, data_config: DataConfig) -> dict[str, Any]:
    """What a model file records about its data, enough to prepare new data alike."""
    return {"config": Config(data=data_config).to_dict()["data"], "source": dataset.source,
            "kind": dataset.kind, "image_shape": dataset.image_shape,
            "feature_names": dataset.feature_names, "preprocessing": dataset.preprocessing.to_dict(),
            "sizes": dataset.info}


EXISTING = ("refuse", "resume", "continue")


def _stored_identity(ckpt_path: Path) -> dict[str, Any] | None:
    try:
        return identity(ckpt.load_tensors(ckpt_path)[1].get("config", {}))
    except VaelabError:
        return None


def train_model(config: Config, out_dir: str | Path, *, existing: str = "refuse",
                dataset: Dataset | None = None) -> TrainedRun:
    """Train ``config``'s model on its data into ``out_dir``.

    Writes ``config.toml``, ``checkpoint.safetensors`` (during training),
    ``model.safetensors`` + ``model.json`` (at the end), ``history.json`` and
    ``log.txt``. All input is validated before the directory is created.
    ``existing`` says what to do with a run already there: ``refuse`` it,
    ``resume`` it (it must have a checkpoint of the same model: :func:`~vaelab.config.identity`),
    or ``continue``: resume a checkpoint of the same model, start afresh over anything else.
    """
    if existing not in EXISTING:
        raise ValueError(f"existing must be one of {EXISTING}")
    out_dir = Path(out_dir)
    model_path, ckpt_path = out_dir / MODEL_FILE, out_dir / CHECKPOINT_FILE
    if existing == "continue":
        same = ckpt_path.exists() and _stored_identity(ckpt_path) == identity(config)
        existing = "resume" if same else "replace"
    resume = existing == "resume"
    if existing == "refuse" and (ckpt_path.exists() or model_path.exists()):
        raise VaelabError("already holds a trained run; use --resume to continue it or choose another --out", out_dir)
    if resume and not ckpt_path.exists():
        raise VaelabError("has no checkpoint to resume from", out_dir)
    dataset = dataset or load_dataset(config.data)
    likelihood = resolve_likelihood(config.model, dataset.kind)
    if likelihood == "bernoulli" and (dataset.train.x.min() < 0 or dataset.train.x.max() > 1):
        raise DataError("a Bernoulli decoder needs features in [0, 1]; use model.likelihood=\"gaussian\"",
                        dataset.source)
    resolve_device(config.train.device)
    seed_everything(config.train.seed)
    model = build_model(config.model, dataset.n_features, likelihood)

    binarize_dynamic = dataset.kind == "image" and config.data.binarize == "dynamic"
    log = _logger(out_dir / "log.txt")
    trainer = Trainer(model, config.train, run_config=config.to_dict(), checkpoint_path=ckpt_path,
                      transform=dynamic_binarization if binarize_dynamic else None, log=log)
    if resume:
        trainer.load_checkpoint()  # refuses a different config before anything is written
    created = not out_dir.exists()
    out_dir.mkdir(parents=True, exist_ok=True)
    try:
        with locked(out_dir, wait=False) as mine:
            if not mine:
                created = False
                raise VaelabError("another vaelab process is training into this directory now", out_dir)
            for stale in out_dir.glob(".*.tmp"):  # a write cut short by a killed process (this one holds the lock)
                stale.unlink(missing_ok=True)
            return _train(config, out_dir, dataset, likelihood, trainer, log)
    except BaseException:
        if created and not ckpt_path.exists():  # nothing finished to keep: leave nothing behind
            shutil.rmtree(out_dir, ignore_errors=True)
        raise


def _train(config: Config, out_dir: Path, dataset: Dataset, likelihood: str, trainer: Trainer,
           log: Callable[[str], None]) -> TrainedRun:
    """The training itself, under the run directory's lock."""
    write_text(out_dir / "config.toml", config.to_toml())
    log(f"train {config.model.name} latent_dim={config.model.latent_dim} on {dataset.name} "
        f"({len(dataset.train)} train / {len(dataset.val)} val rows)")
    result = trainer.fit({"x": torch.from_numpy(dataset.train.x)}, {"x": torch.from_numpy(dataset.val.x)})

    last = result.history[-1]
    if trainer.best is not None:  # a schedule kept the best epoch's weights: report that epoch
        last = max(result.history, key=lambda row: row["val_elbo"])
    meta = {"model": config.to_dict()["model"], "input_dim": dataset.n_features, "likelihood": likelihood,
            "data": data_meta(dataset, config.data), "train": config.to_dict()["train"],
            "metrics": {"epochs": last["epoch"], "epochs_trained": result.history[-1]["epoch"],
                        "stopped": trainer.stopped, "train_elbo": last["train_elbo"],
                        "val_elbo": last.get("val_elbo"),
                        "train_seconds": sum(row["seconds"] for row in result.history),
                        "precision": result.precision}}
    model_path = out_dir / MODEL_FILE
    save_model(model_path, trainer.model, meta)
    write_json(out_dir / "history.json", result.history)
    log(f"saved {model_path}")
    return TrainedRun(out_dir, trainer.model, dataset, meta)


def load_run(run_dir: str | Path, device: str = "auto") -> tuple[torch.nn.Module, dict[str, Any]]:
    """The model saved in a run directory (or a model file given directly)."""
    path = Path(run_dir)
    if path.is_dir():
        path = path / MODEL_FILE
    return load_model(path, resolve_device(device))


def rows_for_scoring(meta: dict[str, Any], data: str | None, split: str) -> tuple[np.ndarray, np.ndarray | None, str]:
    """Data prepared in the model's units: ``split`` of a named set or all rows of a file."""
    stored = meta["data"]["config"]
    cfg = Config.from_dict({"data": {**stored, **({"name": data} if data else {})}}).data
    prep = Preprocessing.from_dict(meta["data"]["preprocessing"])
    if split == "auto":
        split = "test" if cfg.name in DATASETS else "all"
    try:
        rows = load_rows(cfg, prep) if split == "all" else load_dataset(cfg, preprocessing=prep).split(split)
    except DataError as exc:
        raise exc.at(cfg.name) from None
    if rows.x.shape[1] != meta["input_dim"]:
        raise DataError(f"has {rows.x.shape[1]} features per row; the model expects {meta['input_dim']}", cfg.name)
    return rows.x, rows.y, split


def score_rows(model: torch.nn.Module, x: np.ndarray, score: str, config: Config,
               samples: int | None = None) -> np.ndarray:
    """One score per row of ``x`` with the Monte-Carlo settings of ``config.score``."""
    return score_array(model, x, score, n_samples=samples or monte_carlo_samples(config.score).get(score),
                       batch_size=config.score.batch_size, memory_mb=config.score.memory_mb,
                       seed=config.score.seed, precision=config.score.precision)
