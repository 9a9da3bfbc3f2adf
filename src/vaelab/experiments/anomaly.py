"""The anomaly benchmark: protocol x class x latent size x detector on a labelled data set.

The work is split into units (:mod:`vaelab.experiments.units`), one per cell,
each stored as ``cells/<protocol>_c<class>_<part>.npz`` under the benchmark's
directory, so an interrupted benchmark continues where it stopped, a changed
setting redoes only the cells it feeds, and cells can run in any process:

- ``raw``: the raw-data baselines of one (protocol, class);
- ``z<d>``: one VAE of latent size d trained on the normal training rows,
  which gives every likelihood score and, through its latent means, every
  latent-space detector;
- ``z<d>-bg`` (with ``anomaly.likelihood_ratio``): the background VAE of the
  likelihood ratio (Ren et al. 2019), trained on the same rows with noise;
- ``z<d>-cc`` (with ``anomaly.labelled_normals``, leave-one-class-out only):
  ``m2-classes``, the ClassConditionalDetector fitted on the same rows with
  their classes (the normal rows come labelled; one-vs-rest has one class);
- ``z<d>-mc`` (with ``anomaly.clusters``): ``m2-clusters``, the
  ClusterConditionalDetector fitted on the same rows without labels (M2 on
  the clusters found in them).

Each cell stores every detector's scores on the test rows and on a fixed
hold-out of normal training rows that no model or estimator is fitted on
(the references that the fusion and correction rules use), so
the corrected likelihoods and fusions are computed afterwards exactly as
``CorrectedLikelihoodDetector`` and ``FusionDetector`` compute them, and so
are the ensembles over latent sizes (``latent_dim`` :data:`ENSEMBLE`: each
detector's scores at every latent size, fused by rank). With ``anomaly.refit``
a cell fits its detectors a second time on every training row to score the
test rows, as ``FusionDetector(refit=...)`` does; the references keep the
scores of the fits that never saw them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from vaelab import plots
from vaelab.config import OLD_GATE_MAPS, Config, ranking_detector_keys
from vaelab.data import Dataset, load_grey
from vaelab.data.protocols import PROTOCOL_SPLITS, ProtocolSplit
from vaelab.detectors import (CLASS_CONDITIONAL, CLUSTER_CONDITIONAL, LIKELIHOOD, fuse, make_detector,
                              reference_split, with_derived)
from vaelab.detectors.fusion import refits
from vaelab.detectors.corrections import background_rows, feature_range
from vaelab.errors import ConfigError, DataError
from vaelab.evaluation import detection_metrics, roc_points
from vaelab.experiments.anomaly_tables import (ENSEMBLE, PROTOCOL_TITLES, RAW, class_means, latent_label,
                                              seed_ensemble_name, write_tables)
from vaelab.experiments.detector_scores import (BACKGROUND, COMPLEXITY, UNFITTED, check_gate, gated_scores,
                                                load_scores, m2_scores, raw_scores, save_scores, vae_score_keys,
                                                vae_scores)
from vaelab.experiments.units import Unit, UnitStore, config_part

ROC_DETECTORS = ("vae-iwae", "vae-recon-prob", "latent-ocsvm", "raw-ocsvm", "raw-pca-recon", "fusion-latent-rank")
HEATMAP_ROWS = 30  # the AUROC heatmap shows the best this many (detector, latent size) pairs
ENSEMBLE_RULE = "rank"  # fixed before any test score was seen: scale-free, equal weights


VAE_CELL, BACKGROUND_CELL, LABELLED_CELL, CLUSTER_CELL = "vae", "background", "labelled", "clusters"
# a latent size's cell kinds: (name suffix, the unit parameter that marks it, as fingerprinted since it came)
CELL_KINDS = {VAE_CELL: ("", None),  # the VAE and the detectors on it
              BACKGROUND_CELL: ("-bg", "background"),  # the likelihood ratio's background VAE
              LABELLED_CELL: ("-cc", "labelled_normals"),  # the labelled-normals detector (m2-classes)
              CLUSTER_CELL: ("-mc", "clusters")}  # M2 on the clusters found in the normal rows (m2-clusters)
# the M2 detectors that a cell of their own fits: cell kind -> registry name
M2_CELLS = {LABELLED_CELL: CLASS_CONDITIONAL, CLUSTER_CELL: CLUSTER_CONDITIONAL}


@dataclass(frozen=True)
class Cell:
    """One cell: the raw baselines (latent ``RAW``) or one VAE's detectors on one protocol split."""

    protocol: str
    target: int
    latent_dim: int
    kind: str = VAE_CELL  # what a latent size's cell fits: one of CELL_KINDS
    seed: int | None = None  # the VAE's training seed where it is not train.seed (anomaly.seeds)

    @property
    def name(self) -> str:
        part = "raw" if self.latent_dim == RAW else f"z{self.latent_dim}{CELL_KINDS[self.kind][0]}"
        return f"{self.protocol}_c{self.target}_{part}{'' if self.seed is None else f'_s{self.seed}'}"

    @property
    def file(self) -> str:
        return f"cells/{self.name}.npz"


def cell_unit(config: Config, cell: Cell) -> Unit:
    """The unit of work of ``cell``: its params hold exactly the settings its numbers depend on."""
    c = config.to_dict()
    extra: dict[str, Any] = {}
    if cell.latent_dim == RAW:
        settings = config_part(c, data=None, detector=ranking_detector_keys(), train=["seed"], anomaly=["pollution", "raw_estimators"])
        extra = {"with": [COMPLEXITY]}
    else:
        gated = cell.kind == CLUSTER_CELL and config.anomaly.cluster_gate
        settings = config_part(c, data=None, detector=ranking_detector_keys(cell.kind == BACKGROUND_CELL,
                                                                          cell.kind == CLUSTER_CELL, gated),
                               train=["seed", "batch_size", "lr"], score=None, model=["hidden_dims"],
                               anomaly=["pollution", *vae_score_keys(config), f"{cell.protocol}_epochs"])
        marker = CELL_KINDS[cell.kind][1]
        extra = {marker: True} if marker else {}
        if cell.seed is not None:
            extra["train_seed"] = cell.seed
        if gated:  # without: the fingerprints as before the gate came
            extra["cluster_gate"] = True
            if config.detector.cluster_maps != OLD_GATE_MAPS:  # without: as before the number of maps was a setting
                extra["cluster_maps"] = config.detector.cluster_maps
    if config.anomaly.refit != "never":  # without: the fingerprints as before the setting came
        extra["refit"] = config.anomaly.refit
    return Unit(name=cell.name, function="vaelab.experiments.anomaly:run_cell",
                params={"config": settings, "protocol": cell.protocol, "target": cell.target,
                        "latent_dim": cell.latent_dim, "references": "held-out", **extra},
                outputs=(cell.file,), runtime={"device": config.train.device})


def protocol_split(data: Dataset, protocol: str, target: int, pollution: float, seed: int) -> ProtocolSplit:
    return PROTOCOL_SPLITS[protocol](data.train.x, data.train.y, data.test.x, data.test.y, target,
                                     pollution=pollution, seed=seed)


def run_cell(unit: Unit, root: Path) -> dict[str, Any]:
    """Compute one cell: fit its detectors on the split's training rows and score the test rows. The
    split and the reference rows follow ``train.seed``; a cell's ``train_seed`` seeds its VAE.

    The references are held out: no model or estimator is fitted on them. With ``refit``
    (``anomaly.refit``, decided by :func:`refits` as ``FusionDetector(refit=...)`` decides it) the
    detectors are then fitted again on every training row and those fits score the test rows, while
    the references keep the scores of the fits that never saw them, as the shipped fusions do."""
    p = unit.params
    config = Config.from_dict(p["config"]).with_train(**unit.runtime)
    split = protocol_split(load_grey(config.data), p["protocol"], p["target"], config.anomaly.pollution,
                           config.train.seed)
    fit, held = reference_split(len(split.x_train), config.detector.reference_rows, config.train.seed)
    ref = split.x_train[held]
    refit = refits(p.get("refit", "never"), len(held), len(split.x_train))
    t0 = time.perf_counter()
    if refit:  # the record describes the fits that score the test rows; a cluster gate decides on them
        tests, again, seconds, extra = fitted_scores(p, config, split, np.arange(len(split.x_train)), split.x_test, ref)
        _, refs, _, _ = fitted_scores(p, config, split, fit, ref, ref, gate=bool(tests) if p.get("cluster_gate") else None)
        refs.update({k: again[k] for k in UNFITTED if k in again})  # no model: both sides from one row range
        extra["n_reference_fit"] = len(fit)
    else:
        tests, refs, seconds, extra = fitted_scores(p, config, split, fit, split.x_test, ref)
    save_scores(root / unit.outputs[0], split.is_anomaly, tests, refs)
    return {"seconds": seconds, **extra, "n_train": len(split.x_train) if refit else len(fit),
            "n_reference": len(ref), "n_test": len(split.x_test), "n_anomalies": int(split.is_anomaly.sum()),
            "cell_seconds": time.perf_counter() - t0}


def fitted_scores(p: dict[str, Any], config: Config, split: ProtocolSplit, rows: np.ndarray, x_eval: np.ndarray,
                  ref: np.ndarray, gate: bool | None = None) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray],
                                                                   dict[str, float], dict[str, Any]]:
    """(scores of ``x_eval``, scores of ``ref``, seconds, extra record) of the detectors of the cell with
    params ``p``, fitted on the training rows ``rows`` (indices into ``split.x_train``).

    A cluster cell with ``cluster_gate`` fits m2-clusters only where its clusters are stable
    (:class:`~vaelab.detectors.ClusterGatedDetector`'s rule; the stability in the record), and has no
    scores elsewhere: there the gated detector is the VAE cell's fallback fusion (:func:`gated_scores`).
    ``gate``: the choice made already (by the refit's fit on every row), not measured again."""
    vae_seed = p.get("train_seed", config.train.seed)
    x_fit = split.x_train[rows]
    t0 = time.perf_counter()
    extra: dict[str, Any] = {}
    epochs = getattr(config.anomaly, f"{p['protocol']}_epochs")  # what the model cells train (raw cells: none)
    if p["latent_dim"] == RAW:
        tests, refs, seconds = raw_scores(x_fit, x_eval, ref, config)
    elif m2_kind := next((k for k in M2_CELLS if p.get(CELL_KINDS[k][1])), None):
        gate_maps = p.get("cluster_maps", OLD_GATE_MAPS) if p.get("cluster_gate") else None
        tests, refs, seconds, extra = m2_scores(M2_CELLS[m2_kind], config, x_fit, x_eval, ref,
                                                latent_dim=p["latent_dim"], epochs=epochs, seed=vae_seed,
                                                labels=split.y_train[rows] if m2_kind == LABELLED_CELL else None,
                                                gate_maps=gate_maps, gate=gate)
    else:
        fit_rows = (background_rows(x_fit, config.detector.background_noise, *feature_range(x_fit), vae_seed)
                    if p.get("background") else x_fit)
        vae = make_detector(LIKELIHOOD, config, latent_dim=p["latent_dim"], epochs=epochs, seed=vae_seed,
                            calibration=0.0).fit(fit_rows)
        if p.get("background"):
            tests, refs = {BACKGROUND: vae.score_samples(x_eval)}, {BACKGROUND: vae.score_samples(ref)}
            seconds, extra = {"background-fit-and-score": time.perf_counter() - t0}, {"epochs": epochs}
        else:
            fit_seconds = time.perf_counter() - t0
            tests, refs, seconds = vae_scores(vae, x_fit, x_eval, ref, config)
            seconds = {"vae-fit": fit_seconds, **seconds}
            extra = {"epochs": epochs, "train_elbo": float(refs["vae-elbo"].mean())}
    return tests, refs, seconds, extra


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
        check_gate(config)

    def cells(self) -> list[Cell]:
        return [cell for p in self.config.anomaly.protocols for c in self.classes
                for cell in (Cell(p, c, RAW), *(Cell(p, c, d, kind, seed=s) for s in self.seeds
                                                for d in self.latent_dims for kind in self.vae_cell_kinds(p)))]

    def vae_cell_kinds(self, protocol: str) -> list[str]:
        """The cells of each latent size: the VAE's own, then the likelihood ratio's background VAE, the
        labelled-normals detector (leave-one-class-out only) and the cluster detector where the config
        asks for them."""
        return [VAE_CELL, *([BACKGROUND_CELL] if self.config.anomaly.likelihood_ratio else []),
                *([LABELLED_CELL] if self.config.anomaly.labelled_normals and protocol == "loco" else []),
                *([CLUSTER_CELL] if self.config.anomaly.clusters else [])]

    @property
    def seeds(self) -> list[int | None]:
        """The VAE cells' training seeds as :class:`Cell` names them: None for ``train.seed``."""
        base = self.config.train.seed
        return [None if s == base else s for s in (self.config.anomaly.seeds or (base,))]

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

    def scores(self, protocol: str, target: int, seed: int | None = None) -> tuple[
            np.ndarray, dict[int, dict[str, np.ndarray]], dict[int, dict[str, Any]]]:
        """(is_anomaly, scores by latent size by detector, cell records by latent size) of one
        (protocol, class) and VAE training ``seed`` (:attr:`seeds`): the raw baselines under
        :data:`RAW`, each latent size's detectors with the corrections and fusions derived from its
        cells, and the ensembles over latent sizes under :data:`ENSEMBLE` (every detector of the VAE
        cells that each latent size has)."""
        y, scores, _, records = self._scored(protocol, target, seed)
        return y, scores, records

    def _scored(self, protocol: str, target: int, seed: int | None) -> tuple[
            np.ndarray, dict[int, dict[str, np.ndarray]], dict[int, dict[str, np.ndarray]], dict[int, dict[str, Any]]]:
        """:meth:`scores` with, between the scores and the records, each latent size's reference scores
        (the held-out normal training rows) by detector."""
        y, raw_tests, raw_refs, raw_meta = self._cell(Cell(protocol, target, RAW))
        scores, records = {RAW: with_derived(raw_tests, raw_refs)[0]}, {RAW: raw_meta}
        refs_by_dim = {}
        for d in self.latent_dims:
            _, tests, refs, meta = self._cell(Cell(protocol, target, d, seed=seed))
            for kind in self.vae_cell_kinds(protocol)[1:]:
                _, more_tests, more_refs, more_meta = self._cell(Cell(protocol, target, d, kind, seed=seed))
                tests, refs = {**tests, **more_tests}, {**refs, **more_refs}
                meta = {**meta, "seconds": {**meta["seconds"], **more_meta["seconds"]}}
            tests, refs = with_derived({**tests, **raw_tests}, {**refs, **raw_refs})
            if self.config.anomaly.cluster_gate:
                tests, refs, seconds = gated_scores(tests, refs, meta["seconds"])
                meta = {**meta, "seconds": seconds}
            scores[d] = {k: v for k, v in tests.items() if k not in raw_tests}
            refs_by_dim[d], records[d] = refs, meta
        if len(self.latent_dims) > 1:
            shared = [k for k in scores[self.latent_dims[0]] if all(k in scores[d] for d in self.latent_dims)]
            scores[ENSEMBLE] = {k: fuse([scores[d][k] for d in self.latent_dims],
                                        [refs_by_dim[d][k] for d in self.latent_dims], ENSEMBLE_RULE) for k in shared}
            records[ENSEMBLE] = {"seconds": {}}
        return y, scores, refs_by_dim, records

    def results(self) -> list[dict[str, Any]]:
        """One row per (protocol, class, latent size, detector, VAE training seed): AUROC with its 95%
        interval, AP, seconds (the raw baselines once, under ``train.seed``)."""
        rows = []
        for p in self.config.anomaly.protocols:
            for c in self.classes:
                per_seed = []
                for i, seed in enumerate(self.seeds):
                    y, scores, refs, records = self._scored(p, c, seed)
                    per_seed.append((scores, refs))
                    number = self.config.train.seed if seed is None else seed
                    for d, by_name in scores.items():
                        if d != RAW or i == 0:
                            rows += _rows(p, c, d, y, by_name, records[d]["seconds"], number,
                                          epochs=records[d].get("epochs"))
                if len(per_seed) > 1:
                    rows += [row for d in self.latent_dims
                             for row in _rows(p, c, d, y, seed_ensembles(per_seed, d), {}, None)]
        return rows

    def figures(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Per protocol: an AUROC heatmap and ROC curves per class; returns their report entries."""
        entries = []
        for p in self.config.anomaly.protocols:
            sub = [r for r in rows if r["protocol"] == p]
            means = {(det, d): vals for (_, d, det), vals in class_means(sub).items()}
            keys = sorted(means, key=lambda k: -np.mean(list(means[k].values())))[:HEATMAP_ROWS]
            table = np.array([[means[k][c] for c in self.classes] for k in keys])
            table = np.c_[table, table.mean(1)]
            fig = plots.heatmap(table, [f"{det} ({latent_label(d)})" for det, d in keys],
                                [*map(str, self.classes), "mean"], f"AUROC, {PROTOCOL_TITLES[p]}")
            file = f"anomaly_auroc_{p}.png"
            plots.save_figure(fig, self.out_dir / "figures" / file)
            entries.append({"file": file, "caption": f"AUROC per class, {PROTOCOL_TITLES[p]}: the {len(keys)} best "
                            "(detector, latent size) pairs by mean, best first (raw: no VAE; all: the ensemble over "
                            "latent sizes)."})
            best = max(self.latent_dims, key=lambda d: np.mean([r["auroc"] for r in sub
                                                               if r["latent_dim"] == d and r["detector"] == LIKELIHOOD]))
            panels = []
            for c in self.classes:
                y, scores, _ = self.scores(p, c)
                merged = {**scores[RAW], **scores[best]}
                panels.append((f"class {c}", {name: roc_points(y, merged[name]) for name in ROC_DETECTORS
                                              if name in merged}))
            file = f"anomaly_roc_{p}.png"
            plots.save_figure(plots.roc_panels(panels), self.out_dir / "figures" / file)
            entries.append({"file": file, "caption": f"ROC curves per class, {PROTOCOL_TITLES[p]}, latent size "
                            f"{best} (the best for {LIKELIHOOD}), for the main detector families."})
        return entries


def seed_ensembles(per_seed: list[tuple[dict, dict]], latent: int) -> dict[str, np.ndarray]:
    """Each detector of latent size ``latent`` that every VAE training seed has, fused over the seeds by
    :data:`ENSEMBLE_RULE` against its reference scores, named by :func:`seed_ensemble_name`. ``per_seed``:
    (scores, reference scores) by latent size by detector, one pair per seed."""
    first, _ = per_seed[0]
    names = [k for k in first[latent] if all(k in s[latent] and k in r[latent] for s, r in per_seed)]
    return {seed_ensemble_name(k, len(per_seed)): fuse([s[latent][k] for s, _ in per_seed],
                                                       [r[latent][k] for _, r in per_seed], ENSEMBLE_RULE)
            for k in names}


def _rows(protocol: str, target: int, latent: int, y: np.ndarray, scores: dict[str, np.ndarray],
          seconds: dict[str, float], seed: int, epochs: int | None = None) -> list[dict[str, Any]]:
    return [{"protocol": protocol, "class": target, "latent_dim": latent, "detector": name, "seed": seed,
             **detection_metrics(y, s), "seconds": seconds.get(name), "epochs": epochs}
            for name, s in scores.items()]
