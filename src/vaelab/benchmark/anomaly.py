"""The anomaly benchmark: protocol x class x latent size x detector on a labelled data set.

Work is split into cells that are computed once and kept on disk
(``cells/<protocol>_c<class>_<part>.npz`` with a JSON beside it), so an
interrupted benchmark continues where it stopped and a changed setting
redoes only the cells it feeds:

- ``raw``: the raw-data baselines of one (protocol, class);
- ``z<d>``: one VAE of latent size d trained on the normal training rows,
  which gives every likelihood score and, through its latent means, every
  latent-space detector.

Each cell stores every detector's scores on the test rows and on a fixed
subsample of training rows (the references that the fusion rules use), so
the fusions of :data:`vaelab.detectors.FUSIONS` are computed afterwards with
the same :func:`vaelab.detectors.fuse` that ``FusionDetector`` uses.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from vaelab.config import Config
from vaelab.data import Dataset, load_grey
from vaelab.data.protocols import PROTOCOL_SPLITS, ProtocolSplit
from vaelab.benchmark.scoring import (LIKELIHOOD, cell_done, load_cell, raw_scores, save_cell, vae_scores,
                                      with_fusions)
from vaelab.evaluation import detection_metrics
from vaelab.fileio import fingerprint, write_json, write_text

ROC_DETECTORS = ("vae-iwae", "vae-recon-prob", "latent-ocsvm", "raw-ocsvm", "raw-pca-recon", "fusion-latent-rank")


@dataclasses.dataclass(frozen=True)
class Cell:
    """One unit of work: the raw baselines or one VAE's detectors on one protocol split."""

    protocol: str
    target: int
    part: str  # "raw" or "z<d>"

    @property
    def name(self) -> str:
        return f"{self.protocol}_c{self.target}_{self.part}"


def _raw_cell(config: Config, split: ProtocolSplit, ref: np.ndarray) -> dict[str, Any]:
    tests, refs, seconds = raw_scores(split.x_train, split.x_test, ref, config)
    return {"scores": tests, "refs": refs, "seconds": seconds}


def _vae_cell(config: Config, split: ProtocolSplit, ref: np.ndarray, latent: int, epochs: int) -> dict[str, Any]:
    from vaelab.detectors import VAEDetector

    t0 = time.perf_counter()
    vae = VAEDetector(score="iwae", latent_dim=latent, hidden_dims=tuple(config.model.hidden_dims), epochs=epochs,
                      batch_size=config.train.batch_size, lr=config.train.lr, n_samples=config.anomaly.iwae_samples,
                      random_state=config.train.seed, device=config.train.device).fit(split.x_train)
    fit_seconds = time.perf_counter() - t0
    tests, refs, seconds = vae_scores(vae, split.x_train, split.x_test, ref, config)
    return {"scores": tests, "refs": refs, "seconds": {"vae-fit": fit_seconds, **seconds},
            "train_elbo": float(refs["vae-elbo"].mean())}


class AnomalyBenchmark:
    """Runs (or continues) the benchmark of ``config.anomaly`` into ``out_dir``."""

    def __init__(self, config: Config, out_dir: str | Path, say: Callable[[str], None] | None = None,
                 data: Dataset | None = None) -> None:
        if not config.anomaly.protocols:
            from vaelab.errors import ConfigError

            raise ConfigError("anomaly.protocols is empty: name loco and/or ovr")
        self.config = config
        self.out_dir = Path(out_dir)
        self.say = say or (lambda line: None)
        self.latent_dims = config.anomaly.latent_dims or config.study.latent_dims
        data = data or load_grey(config.data)
        if data.train.y is None or data.test.y is None:
            from vaelab.errors import DataError

            raise DataError("the anomaly benchmark needs class labels", data.source)
        self.data = data
        known = sorted(int(c) for c in np.unique(data.train.y))
        self.classes = list(config.anomaly.classes) or known
        missing = sorted(set(self.classes) - set(known))
        if missing:
            from vaelab.errors import ConfigError

            raise ConfigError(f"anomaly.classes has {missing[0]}, which {data.name} does not have")

    def split(self, protocol: str, target: int) -> ProtocolSplit:
        d = self.data
        return PROTOCOL_SPLITS[protocol](d.train.x, d.train.y, d.test.x, d.test.y, target,
                                         pollution=self.config.anomaly.pollution, seed=self.config.train.seed)

    def cells(self) -> list[Cell]:
        return [Cell(p, c, part) for p in self.config.anomaly.protocols for c in self.classes
                for part in ["raw", *(f"z{d}" for d in self.latent_dims)]]

    def _fingerprint(self, cell: Cell) -> str:
        """What a cell's numbers depend on; the raw baselines do not depend on the VAE's settings."""
        cfg = self.config.to_dict()
        a = cfg["anomaly"]
        split = [cfg["data"], cell.name, a["pollution"], a["reference_rows"], cfg["train"]["seed"]]
        if cell.part == "raw":
            return fingerprint(split, a["raw_estimators"], a["max_fit_rows"])
        vae = {k: v for k, v in a.items() if k not in ("protocols", "classes", "latent_dims", "raw_estimators")}
        train = {k: cfg["train"][k] for k in ("batch_size", "lr")}
        return fingerprint(split, vae, cfg["model"]["hidden_dims"], train, cfg["score"])

    def path(self, cell: Cell) -> Path:
        return self.out_dir / "cells" / cell.name

    def run_cell(self, cell: Cell) -> None:
        path, fp = self.path(cell), self._fingerprint(cell)
        if cell_done(path, fp):
            return
        from vaelab.detectors import subsample

        split = self.split(cell.protocol, cell.target)
        ref = split.x_train[subsample(len(split.x_train), self.config.anomaly.reference_rows,
                                      self.config.train.seed)]
        t0 = time.perf_counter()
        if cell.part == "raw":
            result = _raw_cell(self.config, split, ref)
        else:
            epochs = getattr(self.config.anomaly, f"{cell.protocol}_epochs")
            result = _vae_cell(self.config, split, ref, int(cell.part[1:]), epochs)
            result["epochs"] = epochs
        result.update(n_train=len(split.x_train), n_test=len(split.x_test),
                      n_anomalies=int(split.is_anomaly.sum()), cell_seconds=time.perf_counter() - t0)
        save_cell(path, split.is_anomaly, result, fp)

    def run(self) -> list[dict[str, Any]]:
        """Compute every missing cell, then write the tables and figures; returns the result rows."""
        cells = self.cells()
        for i, cell in enumerate(cells, 1):
            t0 = time.perf_counter()
            done = cell_done(self.path(cell), self._fingerprint(cell))
            self.run_cell(cell)
            self.say(f"[anomaly {i}/{len(cells)}] {cell.name} "
                     + ("up to date" if done else f"done in {time.perf_counter() - t0:.0f} s"))
        rows = self.results()
        write_tables(rows, self.out_dir, self.config)
        self.figure_entries = self.figures(rows)
        return rows

    def figures(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Per protocol: an AUROC heatmap and ROC curves per class; returns their report entries."""
        from vaelab import plots
        from vaelab.evaluation import roc_points

        entries = []
        for p in self.config.anomaly.protocols:
            sub = [r for r in rows if r["protocol"] == p]
            keys = sorted({(r["detector"], r["latent_dim"]) for r in sub},
                          key=lambda k: -np.mean([r["auroc"] for r in sub if (r["detector"], r["latent_dim"]) == k]))
            table = np.array([[next(r["auroc"] for r in sub if (r["detector"], r["latent_dim"], r["class"]) == (*k, c))
                               for c in self.classes] for k in keys])
            table = np.c_[table, table.mean(1)]
            fig = plots.heatmap(table, [f"{det} ({'raw' if d == 0 else f'z{d}'})" for det, d in keys],
                                [*map(str, self.classes), "mean"], f"AUROC, {PROTOCOL_TITLES[p]}")
            file = f"anomaly_auroc_{p}.png"
            plots.save_figure(fig, self.out_dir / "figures" / file)
            entries.append({"file": file, "caption": f"AUROC per class, {PROTOCOL_TITLES[p]}: every detector and "
                            "latent size, best mean first (raw: no VAE)."})
            best = max(self.latent_dims, key=lambda d: np.mean([r["auroc"] for r in sub
                                                               if r["latent_dim"] == d and r["detector"] == LIKELIHOOD]))
            panels = []
            for c in self.classes:
                y, tests, refs = load_cell(self.path(Cell(p, c, f"z{best}")))
                _, raw_tests, raw_refs = load_cell(self.path(Cell(p, c, "raw")))
                scores = with_fusions({**tests, **raw_tests}, {**refs, **raw_refs})
                panels.append((f"class {c}", {name: roc_points(y, scores[name]) for name in ROC_DETECTORS
                                              if name in scores}))
            fig = plots.roc_panels(panels)
            file = f"anomaly_roc_{p}.png"
            plots.save_figure(fig, self.out_dir / "figures" / file)
            entries.append({"file": file, "caption": f"ROC curves per class, {PROTOCOL_TITLES[p]}, latent size "
                            f"{best} (the best for {LIKELIHOOD}), for the main detector families."})
        return entries

    def results(self) -> list[dict[str, Any]]:
        """One row per (protocol, class, latent size, detector): AUROC with its 95% interval, AP, seconds."""
        rows = []
        for p in self.config.anomaly.protocols:
            for c in self.classes:
                y, raw_tests, raw_refs = load_cell(self.path(Cell(p, c, "raw")))
                raw_meta = json.loads(self.path(Cell(p, c, "raw")).with_suffix(".json").read_text())
                rows += _rows(p, c, 0, y, raw_tests, raw_meta["seconds"])
                for d in self.latent_dims:
                    cell = Cell(p, c, f"z{d}")
                    y_d, tests, refs = load_cell(self.path(cell))
                    meta = json.loads(self.path(cell).with_suffix(".json").read_text())
                    fused = with_fusions({**tests, **raw_tests}, {**refs, **raw_refs})
                    own = {k: v for k, v in fused.items() if k not in raw_tests}
                    rows += _rows(p, c, d, y_d, own, meta["seconds"], epochs=meta["epochs"])
        return rows


def _rows(protocol: str, target: int, latent: int, y: np.ndarray, scores: dict[str, np.ndarray],
          seconds: dict[str, float], epochs: int | None = None) -> list[dict[str, Any]]:
    rows = []
    for name, s in scores.items():
        rows.append({"protocol": protocol, "class": target, "latent_dim": latent, "detector": name,
                     **detection_metrics(y, s), "seconds": seconds.get(name), "epochs": epochs})
    return rows


def summary(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean AUROC and AP over classes per (protocol, latent size, detector), best first."""
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault((r["protocol"], r["latent_dim"], r["detector"]), []).append(r)
    out = [{"protocol": p, "latent_dim": d, "detector": name, "n_classes": len(g),
            "mean_auroc": float(np.mean([r["auroc"] for r in g])), "mean_ap": float(np.mean([r["ap"] for r in g])),
            "min_auroc": float(np.min([r["auroc"] for r in g]))}
           for (p, d, name), g in groups.items()]
    return sorted(out, key=lambda r: (r["protocol"], -r["mean_auroc"]))


PROTOCOL_TITLES = {"loco": "leave-one-class-out (class c is the anomaly)",
                   "ovr": "one-vs-rest (class c is normal)"}


def markdown_tables(rows: list[dict[str, Any]]) -> str:
    """Per protocol: AUROC per class and mean, one line per detector and latent size."""
    lines = []
    for p in dict.fromkeys(r["protocol"] for r in rows):
        sub = [r for r in rows if r["protocol"] == p]
        classes = sorted({r["class"] for r in sub})
        lines += [f"### {PROTOCOL_TITLES[p]}", "",
                  "| detector | latent | " + " | ".join(str(c) for c in classes) + " | mean |",
                  "|---|---|" + "---|" * (len(classes) + 1)]
        by_key: dict[tuple, dict[int, float]] = {}
        for r in sub:
            by_key.setdefault((r["detector"], r["latent_dim"]), {})[r["class"]] = r["auroc"]
        order = sorted(by_key, key=lambda k: -np.mean(list(by_key[k].values())))
        for det, d in order:
            vals = by_key[(det, d)]
            cells = " | ".join(f"{vals[c]:.3f}" if c in vals else "" for c in classes)
            lines.append(f"| {det} | {d or 'raw'} | {cells} | **{np.mean(list(vals.values())):.3f}** |")
        lines.append("")
    return "\n".join(lines)


# Published AUROC per MNIST class (0-9), for comparison only; see the README for the sources.
PUBLISHED = {
    "loco": {
        "An & Cho 2015, VAE reconstruction probability": (0.917, 0.136, 0.921, 0.781, 0.808, 0.862, 0.848, 0.596,
                                                           0.895, 0.545),
        "Tonnaer (thesis, Table 3.3), VAE ELBO, latent 2": (0.96, 0.73, 0.97, 0.94, 0.73, 0.92, 0.95, 0.77, 0.92,
                                                            0.66),
        "Tonnaer (thesis, Table 3.3), VAE ELBO, latent 32": (0.81, 0.09, 0.92, 0.87, 0.78, 0.86, 0.87, 0.51, 0.89,
                                                             0.58),
    },
    "ovr": {
        "Ruff et al. 2018, OC-SVM": (0.986, 0.995, 0.825, 0.881, 0.949, 0.771, 0.965, 0.937, 0.889, 0.931),
        "Ruff et al. 2018, KDE": (0.971, 0.989, 0.790, 0.862, 0.879, 0.738, 0.876, 0.914, 0.792, 0.882),
        "Ruff et al. 2018, isolation forest": (0.980, 0.973, 0.886, 0.899, 0.927, 0.855, 0.956, 0.920, 0.899, 0.935),
        "Ruff et al. 2018, one-class Deep SVDD": (0.980, 0.997, 0.917, 0.919, 0.949, 0.885, 0.983, 0.946, 0.939,
                                                  0.965),
    },
}
COMPARED = {"loco": ("vae-recon-prob", "vae-iwae", "latent-ocsvm", "raw-ocsvm"),
            "ovr": ("raw-ocsvm", "raw-kde", "raw-iforest", "vae-iwae", "latent-ocsvm")}


def published_comparison(rows: list[dict[str, Any]]) -> str:
    """Per protocol: a few of our detectors (each at its best latent size) and the best one,
    beside the published per-class AUROC on MNIST."""
    lines = []
    for p in dict.fromkeys(r["protocol"] for r in rows):
        sub = [r for r in rows if r["protocol"] == p]
        classes = sorted({r["class"] for r in sub})
        if classes != list(range(10)):
            continue
        means = {}
        for r in sub:
            means.setdefault((r["detector"], r["latent_dim"]), []).append(r["auroc"])
        best_of = lambda det: max((k for k in means if k[0] == det), key=lambda k: np.mean(means[k]))  # noqa: E731
        picks = [best_of(d) for d in COMPARED[p] if any(k[0] == d for k in means)]
        overall = max(means, key=lambda k: np.mean(means[k]))
        picks += [overall] if overall not in picks else []
        lines += [f"### {PROTOCOL_TITLES[p]}: vaelab beside published results", "",
                  "| | " + " | ".join(map(str, classes)) + " | mean |", "|---|" + "---|" * (len(classes) + 1)]
        for det, d in picks:
            vals = {r["class"]: r["auroc"] for r in sub if (r["detector"], r["latent_dim"]) == (det, d)}
            label = f"vaelab {det}" + (f" (latent {d})" if d else "") + (" — best mean" if (det, d) == overall else "")
            lines.append(f"| {label} | " + " | ".join(f"{vals[c]:.3f}" for c in classes) +
                         f" | **{np.mean(list(vals.values())):.3f}** |")
        for name, vals in PUBLISHED[p].items():
            lines.append(f"| {name} | " + " | ".join(f"{v:.3f}" for v in vals) + f" | {np.mean(vals):.3f} |")
        lines.append("")
    return "\n".join(lines)


def write_tables(rows: list[dict[str, Any]], out_dir: Path, config: Config) -> None:
    """results.csv (one row per cell and detector), results.json (rows + summary), results.md."""
    import csv
    import io

    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_text(out_dir / "results.csv", buf.getvalue())
    write_json(out_dir / "results.json", {"config": config.to_dict()["anomaly"], "rows": rows,
                                          "summary": summary(rows)})
    write_text(out_dir / "results.md", published_comparison(rows) + "\n" + markdown_tables(rows))
