"""The anomaly benchmark: protocol x class x latent size x detector on a labelled data set.

The work is split into units (:mod:`vaelab.experiments.units`), one per cell,
each stored as ``cells/<protocol>_c<class>_<part>.npz`` under the benchmark's
directory, so an interrupted benchmark continues where it stopped, a changed
setting redoes only the cells it feeds, and cells can run in any process:

- ``raw``: the raw-data baselines of one (protocol, class);
- ``z<d>``: one VAE of latent size d trained on the normal training rows,
  which gives every likelihood score and, through its latent means, every
  latent-space detector.

Each cell stores every detector's scores on the test rows and on a fixed
subsample of training rows (the references that the fusion rules use), so
the fusions are computed afterwards exactly as ``FusionDetector`` combines them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from vaelab import plots
from vaelab.config import Config, ranking_detector_keys
from vaelab.data import Dataset, load_grey
from vaelab.data.protocols import PROTOCOL_SPLITS, ProtocolSplit
from vaelab.detectors import LIKELIHOOD, make_detector, subsample, with_fusions
from vaelab.errors import ConfigError, DataError
from vaelab.evaluation import detection_metrics, roc_points
from vaelab.experiments.anomaly_tables import PROTOCOL_TITLES, write_tables
from vaelab.experiments.detector_scores import load_scores, raw_scores, save_scores, vae_scores
from vaelab.experiments.units import Unit, UnitStore, config_part

ROC_DETECTORS = ("vae-iwae", "vae-recon-prob", "latent-ocsvm", "raw-ocsvm", "raw-pca-recon", "fusion-latent-rank")
RAW = 0  # the latent size of the raw-data cells (no VAE)


@dataclass(frozen=True)
class Cell:
    """One cell: the raw baselines (latent ``RAW``) or one VAE's detectors on one protocol split."""

    protocol: str
    target: int
    latent_dim: int

    @property
    def name(self) -> str:
        return f"{self.protocol}_c{self.target}_{'raw' if self.latent_dim == RAW else f'z{self.latent_dim}'}"

    @property
    def file(self) -> str:
        return f"cells/{self.name}.npz"


def cell_unit(config: Config, cell: Cell) -> Unit:
    """The unit of work of ``cell``: its params hold exactly the settings its numbers depend on."""
    c = config.to_dict()
    if cell.latent_dim == RAW:
        settings = config_part(c, data=None, detector=ranking_detector_keys(), train=["seed"], anomaly=["pollution", "raw_estimators"])
    else:
        settings = config_part(c, data=None, detector=ranking_detector_keys(), train=["seed", "batch_size", "lr"], score=None,
                               model=["hidden_dims"],
                               anomaly=["pollution", "latent_estimators", f"{cell.protocol}_epochs"])
    return Unit(name=cell.name, function="vaelab.experiments.anomaly:run_cell",
                params={"config": settings, "protocol": cell.protocol, "target": cell.target,
                        "latent_dim": cell.latent_dim},
                outputs=(cell.file,), runtime={"device": config.train.device})


def protocol_split(data: Dataset, protocol: str, target: int, pollution: float, seed: int) -> ProtocolSplit:
    return PROTOCOL_SPLITS[protocol](data.train.x, data.train.y, data.test.x, data.test.y, target,
                                     pollution=pollution, seed=seed)


def run_cell(unit: Unit, root: Path) -> dict[str, Any]:
    """Compute one cell: fit its detectors on the split's training rows and score the test rows."""
    p = unit.params
    config = Config.from_dict(p["config"]).with_train(**unit.runtime)
    split = protocol_split(load_grey(config.data), p["protocol"], p["target"], config.anomaly.pollution,
                           config.train.seed)
    ref = split.x_train[subsample(len(split.x_train), config.detector.reference_rows, config.train.seed)]
    t0 = time.perf_counter()
    extra: dict[str, Any] = {}
    if p["latent_dim"] == RAW:
        tests, refs, seconds = raw_scores(split.x_train, split.x_test, ref, config)
    else:
        epochs = getattr(config.anomaly, f"{p['protocol']}_epochs")
        vae = make_detector(LIKELIHOOD, config, latent_dim=p["latent_dim"], epochs=epochs,
                            calibration=0.0).fit(split.x_train)
        fit_seconds = time.perf_counter() - t0
        tests, refs, seconds = vae_scores(vae, split.x_train, split.x_test, ref, config)
        seconds = {"vae-fit": fit_seconds, **seconds}
        extra = {"epochs": epochs, "train_elbo": float(refs["vae-elbo"].mean())}
    save_scores(root / unit.outputs[0], split.is_anomaly, tests, refs)
    return {"seconds": seconds, **extra, "n_train": len(split.x_train), "n_test": len(split.x_test),
            "n_anomalies": int(split.is_anomaly.sum()), "cell_seconds": time.perf_counter() - t0}


class AnomalyBenchmark:
    """The benchmark of ``config.anomaly`` in ``out_dir``: its cells as units, then tables and figures."""

    def __init__(self, config: Config, out_dir: str | Path, say: Callable[[str], None] | None = None,
                 data: Dataset | None = None, executor: Any = None) -> None:
        if not config.anomaly.protocols:
            raise ConfigError("anomaly.protocols is empty: name loco and/or ovr")
        self.config = config
        self.out_dir = Path(out_dir)
        self.store = UnitStore(self.out_dir, say, executor)
        self.say = say or (lambda line: None)
        self.latent_dims = config.anomaly_latent_dims()
        data = data or load_grey(config.data)
        if data.train.y is None or data.test.y is None:
            raise DataError("the anomaly benchmark needs class labels", data.source)
        known = sorted(int(c) for c in np.unique(data.train.y))
        self.classes = list(config.anomaly.classes) or known
        missing = sorted(set(self.classes) - set(known))
        if missing:
            raise ConfigError(f"anomaly.classes has {missing[0]}, which {data.name} does not have")

    def cells(self) -> list[Cell]:
        return [Cell(p, c, d) for p in self.config.anomaly.protocols for c in self.classes
                for d in (RAW, *self.latent_dims)]

    def units(self) -> list[Unit]:
        return [cell_unit(self.config, cell) for cell in self.cells()]

    def run(self) -> list[dict[str, Any]]:
        """Compute every missing cell, then write the tables and figures; returns the result rows."""
        self.store.run_all(self.units())
        return self.finish()

    def finish(self) -> list[dict[str, Any]]:
        """Tables and figures from the finished cells; returns the result rows."""
        rows = self.results()
        write_tables(rows, self.out_dir, self.config)
        self.figure_entries = self.figures(rows)
        return rows

    def _cell(self, cell: Cell) -> tuple[np.ndarray, dict[str, np.ndarray], dict[str, np.ndarray], dict[str, Any]]:
        """(is_anomaly, test scores, reference scores, stored result) of a finished cell."""
        y, tests, refs = load_scores(self.out_dir / cell.file)
        return y, tests, refs, self.store.result(cell_unit(self.config, cell))

    def results(self) -> list[dict[str, Any]]:
        """One row per (protocol, class, latent size, detector): AUROC with its 95% interval, AP, seconds."""
        rows = []
        for p in self.config.anomaly.protocols:
            for c in self.classes:
                y, raw_tests, raw_refs, raw_meta = self._cell(Cell(p, c, RAW))
                rows += _rows(p, c, RAW, y, raw_tests, raw_meta["seconds"])
                for d in self.latent_dims:
                    y_d, tests, refs, meta = self._cell(Cell(p, c, d))
                    fused = with_fusions({**tests, **raw_tests}, {**refs, **raw_refs})
                    own = {k: v for k, v in fused.items() if k not in raw_tests}
                    rows += _rows(p, c, d, y_d, own, meta["seconds"], epochs=meta["epochs"])
        return rows

    def figures(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Per protocol: an AUROC heatmap and ROC curves per class; returns their report entries."""
        entries = []
        for p in self.config.anomaly.protocols:
            sub = [r for r in rows if r["protocol"] == p]
            keys = sorted({(r["detector"], r["latent_dim"]) for r in sub},
                          key=lambda k: -np.mean([r["auroc"] for r in sub if (r["detector"], r["latent_dim"]) == k]))
            table = np.array([[next(r["auroc"] for r in sub if (r["detector"], r["latent_dim"], r["class"]) == (*k, c))
                               for c in self.classes] for k in keys])
            table = np.c_[table, table.mean(1)]
            fig = plots.heatmap(table, [f"{det} ({'raw' if d == RAW else f'z{d}'})" for det, d in keys],
                                [*map(str, self.classes), "mean"], f"AUROC, {PROTOCOL_TITLES[p]}")
            file = f"anomaly_auroc_{p}.png"
            plots.save_figure(fig, self.out_dir / "figures" / file)
            entries.append({"file": file, "caption": f"AUROC per class, {PROTOCOL_TITLES[p]}: every detector and "
                            "latent size, best mean first (raw: no VAE)."})
            best = max(self.latent_dims, key=lambda d: np.mean([r["auroc"] for r in sub
                                                               if r["latent_dim"] == d and r["detector"] == LIKELIHOOD]))
            panels = []
            for c in self.classes:
                y, tests, refs, _ = self._cell(Cell(p, c, best))
                _, raw_tests, raw_refs, _ = self._cell(Cell(p, c, RAW))
                scores = with_fusions({**tests, **raw_tests}, {**refs, **raw_refs})
                panels.append((f"class {c}", {name: roc_points(y, scores[name]) for name in ROC_DETECTORS
                                              if name in scores}))
            file = f"anomaly_roc_{p}.png"
            plots.save_figure(plots.roc_panels(panels), self.out_dir / "figures" / file)
            entries.append({"file": file, "caption": f"ROC curves per class, {PROTOCOL_TITLES[p]}, latent size "
                            f"{best} (the best for {LIKELIHOOD}), for the main detector families."})
        return entries


def _rows(protocol: str, target: int, latent: int, y: np.ndarray, scores: dict[str, np.ndarray],
          seconds: dict[str, float], epochs: int | None = None) -> list[dict[str, Any]]:
    return [{"protocol": protocol, "class": target, "latent_dim": latent, "detector": name,
             **detection_metrics(y, s), "seconds": seconds.get(name), "epochs": epochs}
            for name, s in scores.items()]
