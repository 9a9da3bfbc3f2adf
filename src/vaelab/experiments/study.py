"""The study behind ``vaelab run``: a graph of units of work over one run directory.

Per latent size d: ``train/zd`` (one VAE), ``scores/zd`` (every test point's
log p(x), ELBO and latent mean), ``figures/zd`` (decoder samples, latent
traversals, likelihood ranking grids, histograms), ``tsne/zd``; then
``tsne/pixels``, ``maps`` and ``curves``; then, when configured, the anomaly
benchmark's cells and tables, the synthetic benchmark's cells and tables and
the semi-supervised stage. Every unit is recorded under ``units/`` with a
fingerprint of its inputs (:mod:`vaelab.experiments.units`): a rerun skips
what is finished, an interrupted run continues (training resumes from its
last checkpoint), and a changed setting redoes only the units it feeds.
"""

from __future__ import annotations

import os
import platform
import sys
import time
from pathlib import Path
from typing import Any, Callable

import torch

from vaelab import __version__
from vaelab.checkpoint import versions
from vaelab.config import Config
from vaelab.data import load_dataset
from vaelab.errors import DataError
from vaelab.experiments.anomaly import AnomalyBenchmark
from vaelab.experiments.anomaly_tables import summary
from vaelab.experiments.executors import run_groups
from vaelab.experiments.synthetic import SyntheticBenchmark
from vaelab.experiments.training_run import MODEL_FILE
from vaelab.experiments.units import Unit, UnitStore, config_part
from vaelab.fileio import write_json, write_text
from vaelab.plots import figure_entry
from vaelab.runtime import resolve_device

STAGES = "vaelab.experiments.study_stages"


class Study:
    """One study run: a config, a run directory, and the units of work between them."""

    def __init__(self, config: Config, run_dir: str | Path, say: Callable[[str], None] | None = None,
                 executor: Any = None) -> None:
        self.config = config
        self.run_dir = Path(run_dir)
        self.say = say or (lambda line: print(line, file=sys.stderr, flush=True))
        self.executor = executor  # None: serial (vaelab.experiments.executors)
        self.store = UnitStore(self.run_dir, self.say, executor)
        self.runtime = {"device": config.train.device, "progress": config.train.progress}
        self.seconds: dict[str, float] = {}  # compute seconds of the finished units, by stage (the report's table)

    # ---- the units -----------------------------------------------------------
    def _part(self, latent: int | None = None, **sections) -> dict[str, Any]:
        c = (self.config if latent is None else self.config.with_latent_dim(latent)).to_dict()
        return config_part(c, **sections)

    def _results_config(self) -> dict[str, Any]:
        """The config a table step depends on: all of it but where runs are tracked."""
        return {k: v for k, v in self.config.to_dict().items() if k != "tracking"}

    def _train_keys(self) -> list[str]:
        return [k for k in self.config.to_dict()["train"] if k not in ("device", "progress")]

    def model_units(self) -> dict[int, tuple[Unit, Unit]]:
        """Per latent size: the training unit and the unit that scores the test points."""
        out = {}
        for d in self.config.study.latent_dims:
            train = Unit(f"train/z{d}", f"{STAGES}:train",
                         {"config": self._part(d, data=None, model=None, train=self._train_keys())},
                         outputs=(f"models/z{d}/{MODEL_FILE}", f"models/z{d}/history.json"), runtime=self.runtime)
            scores = Unit(f"scores/z{d}", f"{STAGES}:scores",
                          {"config": self._part(d, data=None, model=None, score=None, study=["rank_score"])},
                          outputs=(f"scores/z{d}.npz",), after=(train.fingerprint,), runtime=self.runtime)
            out[d] = (train, scores)
        return out

    def figure_units(self, models: dict[int, tuple[Unit, Unit]]) -> list[Unit]:
        """Figures per latent size, the t-SNE maps and the training curves."""
        st = self.config.study
        units = [Unit(f"figures/z{d}", f"{STAGES}:figures",
                      {"config": self._part(d, data=None, study=None), "latent_dim": d,
                       "order": st.latent_dims.index(d)}, after=(models[d][1].fingerprint,))
                 for d in st.latent_dims]
        tsne_keys = ["tsne_points", "tsne_perplexity", "seed"]
        tsne = [Unit("tsne/pixels", f"{STAGES}:tsne", {"config": self._part(data=None, study=[*tsne_keys, "pca_dims"]),
                                                        "key": "pixels"}, outputs=("embeddings/tsne_pixels.npy",),
                     runtime=self.runtime)]
        tsne += [Unit(f"tsne/z{d}", f"{STAGES}:tsne", {"config": self._part(data=None, study=tsne_keys),
                                                        "key": f"z{d}"},
                      outputs=(f"embeddings/tsne_z{d}.npy",), after=(models[d][1].fingerprint,), runtime=self.runtime)
                 for d in st.latent_dims]
        maps = Unit("maps", f"{STAGES}:maps",
                    {"config": self._part(data=None, study=["latent_dims", "tsne_points", "seed", "pca_dims"])},
                    outputs=("figures/tsne.png",), after=tuple(u.fingerprint for u in tsne))
        curves = Unit("curves", f"{STAGES}:curves",
                      {"config": self._part(data=None, study=["latent_dims", "curve_rows"], score=None,
                                            train=["snapshot_every"])},
                      outputs=("figures/training_curves.png",
                               *(("figures/likelihood_curve.png",) if self.config.train.snapshot_every else ())),
                      after=tuple(models[d][0].fingerprint for d in st.latent_dims))
        return [*units, *tsne, maps, curves]

    def semisupervised_unit(self) -> Unit:
        return Unit("semisupervised", "vaelab.experiments.semisupervised:run_m2_stage",
                    {"config": self._part(data=None, model=None, train=self._train_keys(), semisupervised=None,
                                          detector=["iwae_samples"])},
                    outputs=("semisupervised/m2.safetensors",), runtime={"device": self.config.train.device})

    # ---- running -------------------------------------------------------------
    def _begin(self) -> None:
        load_dataset(self.config.data)  # validate the data before anything is written
        self.run_dir.mkdir(parents=True, exist_ok=True)
        write_text(self.run_dir / "config.toml", self.config.to_toml())

    def models(self, units: dict[int, tuple[Unit, Unit]] | None = None) -> dict[int, dict[str, Any]]:
        """Train and score the model of every latent size (what the other stages build on)."""
        self._begin()
        units = units or self.model_units()
        trained = dict(zip(units, self.store.run_all([train for train, _ in units.values()])))
        scored = dict(zip(units, self.store.run_all([scores for _, scores in units.values()])))
        return {d: {**trained[d], **scored[d]} for d in units}

    def model_files(self) -> dict[int, tuple[Path, str]]:
        """Per latent size: the trained model's file and its training unit's fingerprint."""
        return {d: (self.run_dir / train.outputs[0], train.fingerprint) for d, (train, _) in self.model_units().items()}

    def anomaly(self) -> dict[str, Any]:
        """The anomaly benchmark of ``config.anomaly`` in ``anomaly/``: its cells, then its tables."""
        bench = AnomalyBenchmark(self.config, self.run_dir / "anomaly", say=self.say, executor=self.executor)
        cells = bench.units()
        bench.store.run_all(cells)
        finish = Unit("anomaly", "vaelab.experiments.study:anomaly_tables", {"config": self._results_config()},
                      outputs=("anomaly/results.json",), after=tuple(u.fingerprint for u in cells))
        result = self.store.run(finish)
        self.seconds["anomaly"] = sum(bench.store.seconds(cells).values()) + self.store.seconds([finish])["anomaly"]
        return result

    def synthetic(self, out_dir: str | Path | None = None) -> dict[str, Any]:
        """The synthetic-anomaly benchmark with this study's models (trained first where missing), into
        ``out_dir`` (default: ``synthetic/`` of the run directory)."""
        if load_dataset(self.config.data).kind != "image":
            raise DataError("synthetic image anomalies need image data", load_dataset(self.config.data).source)
        self.models()
        return self._synthetic(out_dir)

    def _synthetic_units(self, out_dir: str | Path | None = None) -> tuple[SyntheticBenchmark, list[Unit], Unit]:
        """The synthetic benchmark in ``out_dir`` (default ``synthetic/``), its cells and the unit that
        makes its tables and figures from them."""
        inside = out_dir is None
        out = self.run_dir / "synthetic" if inside else Path(out_dir)
        bench = SyntheticBenchmark(self.config, out, self.model_files(), say=self.say, executor=self.executor)
        units = bench.units()
        prefix = "synthetic/figures" if inside else str(out / "figures")
        finish = Unit("synthetic", "vaelab.experiments.study:synthetic_tables",
                      {"config": self._results_config(), "prefix": prefix}, outputs=("results.json",),
                      after=tuple(u.fingerprint for u in units), runtime={"models": {
                          str(d): [str(f), fp] for d, (f, fp) in self.model_files().items()}})
        return bench, units, finish

    def _synthetic(self, out_dir: str | Path | None = None) -> dict[str, Any]:
        bench, units, finish = self._synthetic_units(out_dir)
        bench.store.run_all(units)
        result = bench.store.run(finish)
        self.seconds["synthetic"] = sum(bench.store.seconds([*units, finish]).values())
        return result

    def _groups(self, model_units: dict[int, tuple[Unit, Unit]], figure_units: list[Unit]) -> list[tuple[UnitStore, list[Unit]]]:
        """Every stage's units with the store that records them, in the serial order (which a parallel
        executor's free worker also follows among the units that are ready): models, figures, the
        semi-supervised stage, synthetic cells and tables, anomaly cells. The anomaly tables run
        afterwards, in this process (they read the cells of another store)."""
        cfg = self.config
        groups = [(self.store, [*(t for t, _ in model_units.values()), *(s for _, s in model_units.values()),
                                *figure_units])]
        if cfg.semisupervised.labels:  # one long unit that needs nothing: early, beside the models
            groups.append((self.store, [self.semisupervised_unit()]))
        if cfg.synthetic.types and load_dataset(cfg.data).kind == "image":
            synthetic, cells, finish = self._synthetic_units()
            groups.append((synthetic.store, [*cells, finish]))  # the tables as soon as their cells are done
        if cfg.anomaly.protocols:  # many short cells that need nothing: they fill the workers last
            bench = AnomalyBenchmark(cfg, self.run_dir / "anomaly", say=self.say, executor=self.executor)
            groups.append((bench.store, bench.units()))
        return groups

    def run(self) -> dict[str, Any]:
        """Run (or continue) the whole study; writes and returns ``metrics.json``."""
        start = time.perf_counter()
        cfg, st = self.config, self.config.study
        if cfg.anomaly.protocols:
            cfg.anomaly_latent_dims()  # validate before any work
        model_units = self.model_units()
        units = self.figure_units(model_units)
        self._begin()
        run_groups(self.executor, self._groups(model_units, units))  # every stage's units, together
        per_latent = self.models(model_units)
        results = dict(zip([u.name for u in units], self.store.run_all(units)))
        self.seconds.update(self.store.seconds([*(u for pair in model_units.values() for u in pair), *units]))
        figures = []
        for d in st.latent_dims:
            figs = results[f"figures/z{d}"]
            figures += figs["figures"]
            per_latent[d].update(least_likely=figs["least_likely"], least_likely_scores=figs["least_likely_scores"])
        figures += results["maps"]["figures"] + results["curves"]["figures"]
        anomaly = self.anomaly() if cfg.anomaly.protocols else None
        synthetic = self._synthetic() if cfg.synthetic.types else None
        semi = None
        if cfg.semisupervised.labels:
            semi = self.store.run(self.semisupervised_unit())
            self.seconds.update(self.store.seconds([self.semisupervised_unit()]))
        for part in (anomaly, synthetic, semi):
            figures += part["figures"] if part else []
        data = load_dataset(cfg.data)
        metrics = {
            "study": {str(d): per_latent[d] for d in st.latent_dims},
            "figures": figures,
            **({"anomaly": {"summary": anomaly["summary"], "classes": anomaly["classes"]}} if anomaly else {}),
            **({"synthetic": {k: synthetic[k] for k in ("best", "probe", "severities", "types")}}
               if synthetic else {}),
            **({"semisupervised": {k: semi[k] for k in ("labels", "error_rate", "agreement", "curve", "normal_class")}}
               if semi else {}),
            "data": {"name": data.name, "source": data.source, **data.info},
            "run": {"finished": time.strftime("%Y-%m-%d %H:%M:%S"),
                    "seconds_this_invocation": round(time.perf_counter() - start, 1),
                    "stage_seconds": self.seconds,
                    "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.system()}",
                    "device": str(resolve_device(cfg.train.device)), "torch_threads": torch.get_num_threads(),
                    "versions": versions(), "vaelab": __version__},
        }
        write_json(self.run_dir / "metrics.json", metrics)
        return metrics


def anomaly_tables(unit: Unit, root: Path) -> dict[str, Any]:
    """The anomaly benchmark's tables and figures from its finished cells, as report entries."""
    config = Config.from_dict(unit.params["config"])
    bench = AnomalyBenchmark(config, root / "anomaly")
    rows = bench.finish()
    figures = [figure_entry(f"anomaly/figures/{f['file']}", "Anomaly detection", f["caption"], i)
               for i, f in enumerate(bench.figure_entries)]
    return {"figures": figures, "files": [f["file"] for f in figures], "summary": summary(rows),
            "classes": bench.classes}


def synthetic_tables(unit: Unit, root: Path) -> dict[str, Any]:
    """The synthetic benchmark's tables and figures from its finished cells, as report entries."""
    config = Config.from_dict(unit.params["config"])
    models = {int(d): (Path(f), fp) for d, (f, fp) in unit.runtime["models"].items()}
    result = SyntheticBenchmark(config, root, models).finish()
    prefix = unit.params["prefix"]
    result["figures"] = [figure_entry(f"{prefix}/{f['file']}", "Synthetic anomalies", f["caption"], i)
                         for i, f in enumerate(result["figures"])]
    result["files"] = [f"figures/{f['file'].rsplit('/', 1)[-1]}" for f in result["figures"]]
    return result


def run_study(config: Config, run_dir: str | Path, executor: Any = None) -> dict[str, Any]:
    """Run (or continue) the study of ``config`` in ``run_dir`` (its units on ``executor``; None: serially)."""
    return Study(config, run_dir, executor=executor).run()
