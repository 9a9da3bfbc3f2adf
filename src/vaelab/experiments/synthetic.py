"""Synthetic anomalies of known types: which detectors see which type, and what the latent space says.

Test images get anomalies of each type in ``config.synthetic.types`` at each
severity (:mod:`vaelab.data.synthetic`); every detector of the anomaly
benchmark scores them, with the study's trained VAEs (one per latent size)
and the raw-pixel baselines. Results:

- AUROC per severity x type x detector x latent size (each type's anomalies
  against the normal rows of the same test set);
- a linear probe: cross-validated accuracy of predicting the type (normal
  included) from the latent means versus from the raw pixels;
- the mean shift of each type's latent means from the normals', in units of
  the normals' spread;
- t-SNE maps of latent means coloured by type, beside one of the pixels.

With ``anomaly.clusters`` each latent size also has a cell of ``m2-clusters``
(``cells/z<d>-mc.npz``): M2 on the clusters found in the training rows, fitted
as the anomaly benchmark's leave-one-class-out cells fit it (``anomaly.loco_epochs``;
its training rows are of that kind, several digits), and with
``anomaly.cluster_gate`` ``m2-clusters-or-fusion`` in its place.

Scores live in resumable units (``cells/raw.npz``, ``cells/z<d>.npz``) keyed by
the test set, the settings and the model weights.
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import io
from pathlib import Path
from typing import Any, Callable, NamedTuple

import numpy as np

from vaelab import embedding, plots
from vaelab.config import Config, DataConfig, SyntheticConfig, ranking_detector_keys
from vaelab.data import Dataset, load_grey
from vaelab.data.synthetic import NORMAL, describe, image_test_set, inject
from vaelab.detectors import CLUSTER_CONDITIONAL, VAEDetector, reference_split, with_derived
from vaelab.errors import ConfigError, DataError
from vaelab.evaluation import detection_metrics
from vaelab.experiments.detector_scores import (COMPLEXITY, check_gate, gated_scores, load_scores, m2_scores, raw_scores,
                                                save_scores, vae_score_keys, vae_scores)
from vaelab.experiments.synthetic_tables import best_per_type, markdown
from vaelab.experiments.units import Unit, UnitStore, config_part
from vaelab.fileio import write_json, write_text
from vaelab.models import load_model
from vaelab.scores import reconstruction_terms

EXAMPLES = 8  # clean images per row of the examples figure


@dataclasses.dataclass(frozen=True)
class EvalSet:
    """Every severity's test set, concatenated: rows, type, severity, class label."""

    x: np.ndarray
    kind: np.ndarray
    severity: np.ndarray
    label: np.ndarray | None


@functools.lru_cache(maxsize=2)
def eval_set(data_config: DataConfig, synthetic: SyntheticConfig) -> EvalSet:
    """Every severity's test set of ``synthetic``'s anomaly types in the test images of ``data_config``."""
    data = load_grey(data_config)
    if data.kind != "image" or data.image_shape is None:
        raise DataError("synthetic image anomalies need image data", data.source)
    shape = tuple(data.image_shape[-2:])
    sets = [image_test_set(data.test.x, shape, list(synthetic.types), synthetic.fraction, s, synthetic.seed,
                           data.test.y) for s in synthetic.severities]
    return EvalSet(np.concatenate([t.x for t in sets]), np.concatenate([t.kind for t in sets]),
                   np.concatenate([np.full(len(t.x), s) for t, s in zip(sets, synthetic.severities)]),
                   None if data.test.y is None else np.concatenate([t.label for t in sets]))


def cell_unit(config: Config, latent_dim: int, model_file: Path | None = None, model_fingerprint: str = "") -> Unit:
    """The unit that scores the test set with the raw baselines (``latent_dim`` 0) or with the
    detectors of one trained VAE (``model_file``, identified by ``model_fingerprint``: the unit that
    trained it, or a hash of its weights)."""
    c = config.to_dict()
    settings = config_part(c, data=None, synthetic=None, detector=ranking_detector_keys(), train=["seed"],
                           anomaly=["raw_estimators"] if latent_dim == 0 else vae_score_keys(config),
                           **({} if latent_dim == 0 else {"score": None}))
    name = "raw" if latent_dim == 0 else f"z{latent_dim}"
    return Unit(name=name, function="vaelab.experiments.synthetic:run_cell",
                params={"config": settings, "latent_dim": latent_dim,
                        "references": "held-out",
                        "with": ["tsne-panel", "probe", *([COMPLEXITY] if latent_dim == 0 else [])]},
                outputs=(f"cells/{name}.npz",),
                after=(model_fingerprint,) if model_fingerprint else (), runtime={"model_file": str(model_file) if model_file else ""})


def cluster_unit(config: Config, latent_dim: int) -> Unit:
    """The unit that fits ``m2-clusters`` (with ``anomaly.cluster_gate``: only where its clusters are
    stable) at ``latent_dim`` on the training rows and scores the test set with it: M2 trains its own
    model, as the anomaly benchmark's leave-one-class-out cells train it (``anomaly.loco_epochs``)."""
    c = config.to_dict()
    gated = config.anomaly.cluster_gate
    settings = config_part(c, data=None, synthetic=None, detector=ranking_detector_keys(clusters=True, gate=gated),
                           train=["seed", "batch_size", "lr"], model=["hidden_dims"], anomaly=["loco_epochs"])
    gate = {"cluster_gate": True, "cluster_maps": config.detector.cluster_maps} if gated else {}
    return Unit(name=f"z{latent_dim}-mc", function="vaelab.experiments.synthetic:run_cell",
                params={"config": settings, "latent_dim": latent_dim, "references": "held-out", "clusters": True,
                        **gate},
                outputs=(f"cells/z{latent_dim}-mc.npz",), runtime={"device": config.train.device})


def run_cell(unit: Unit, root: Path) -> dict[str, Any]:
    """Score the synthetic test set with one cell's detectors; the latent means ride along (but in a
    cluster cell, :func:`cluster_unit`)."""
    config = Config.from_dict(unit.params["config"])
    data, ev = load_grey(config.data), eval_set(config.data, config.synthetic)
    fit, held = reference_split(len(data.train.x), config.detector.reference_rows, config.train.seed)
    x_fit, ref = data.train.x[fit], data.train.x[held]  # references held out: no model or estimator is fitted on them
    if unit.params.get("clusters"):
        p, config = unit.params, config.with_train(device=unit.runtime["device"])
        tests, refs, seconds, extra = m2_scores(CLUSTER_CONDITIONAL, config, x_fit, ev.x, ref,
                                                latent_dim=p["latent_dim"], epochs=config.anomaly.loco_epochs,
                                                seed=config.train.seed,
                                                gate_maps=p["cluster_maps"] if p.get("cluster_gate") else None)
        save_scores(root / unit.outputs[0], (ev.kind != NORMAL).astype(np.int64), tests, refs)
        return {"seconds": seconds, **extra}
    if unit.params["latent_dim"] == 0:
        tests, refs, seconds = raw_scores(x_fit, ev.x, ref, config)
    else:
        model, _ = load_model(unit.runtime["model_file"])
        vae = VAEDetector.from_model(model, score_name="iwae", n_samples=config.detector.iwae_samples,
                                     random_state=config.train.seed)
        tests, refs, seconds = vae_scores(vae, x_fit, ev.x, ref, config)
        tests = {**tests, **{f"mean/{j}": col for j, col in enumerate(vae.encode(ev.x).T)}}
    tests.update(tsne_columns(config, ev, tests))
    tests.update(probe_columns(config, ev, cell_features(ev, tests)))
    save_scores(root / unit.outputs[0], (ev.kind != NORMAL).astype(np.int64), tests, refs)
    return {"seconds": seconds}


def _mean_columns(tests: dict[str, np.ndarray]) -> list[str]:
    """The latent-mean columns of a cell's scores (``mean/0``, ``mean/1``, ...), in order."""
    return sorted((k for k in tests if k.startswith("mean/")), key=lambda k: int(k[5:]))


def cell_features(ev: EvalSet, tests: dict[str, np.ndarray]) -> np.ndarray:
    """What a cell describes each test row by: its latent means (a model's cell) or its pixels (the raw cell)."""
    cols = _mean_columns(tests)
    return np.stack([tests[k] for k in cols], axis=1) if cols else ev.x


def probe_rows(config: Config, ev: EvalSet, severity: float) -> np.ndarray:
    """The linear probe's rows at one severity: every anomaly and as many normals as there are
    anomalies of one type."""
    sc = config.synthetic
    at = np.flatnonzero(ev.severity == severity)
    anomalies = at[ev.kind[at] != NORMAL]
    normals = at[ev.kind[at] == NORMAL]
    n_each = len(anomalies) // len(sc.types)
    picked = np.random.default_rng(sc.seed).choice(normals, size=min(n_each, len(normals)), replace=False)
    return np.sort(np.concatenate([anomalies, picked]))


def probe_columns(config: Config, ev: EvalSet, features: np.ndarray) -> dict[str, np.ndarray]:
    """A cell's part of the linear probe, computed with the cell (in parallel with the others): for
    each severity ``s``, the type (normal included) that a standardized logistic regression predicts
    for each of :func:`probe_rows` under ``synthetic.probe_folds``-fold cross-validation, from
    ``features``; a column ``probe/<s>`` over the test set holding the index of the predicted type
    in the sorted type names, NaN outside the probe's rows.

    The standardized rows are first rotated onto their own principal axes (all of them: a PCA that
    drops nothing). An L2-penalised linear model's weights lie in the span of its training rows, so
    this is the same classifier, fitted in at most as many dimensions as there are training rows
    (784 pixels -> about 190 here, about 4x less work per iteration)."""
    from sklearn.decomposition import PCA
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    sc, names = config.synthetic, np.unique(ev.kind)
    out = {}
    for s in sc.severities:
        idx = probe_rows(config, ev, s)
        folds = StratifiedKFold(sc.probe_folds, shuffle=True, random_state=sc.seed)
        clf = make_pipeline(StandardScaler(), PCA(svd_solver="full"), LogisticRegression(max_iter=2000, C=1.0))
        column = np.full(len(ev.x), np.nan)
        column[idx] = np.searchsorted(names, cross_val_predict(clf, features[idx], ev.kind[idx], cv=folds))
        out[f"probe/{s:g}"] = column
    return out


def tsne_rows(config: Config, ev) -> np.ndarray:
    """The rows of the t-SNE figure: every anomaly at the top severity and ``synthetic.tsne_normals``
    normals at it."""
    sc = config.synthetic
    at = np.flatnonzero(ev.severity == max(sc.severities))
    normals = at[ev.kind[at] == NORMAL]
    normals = normals[embedding.subset(len(normals), sc.tsne_normals, sc.seed)]
    return np.sort(np.concatenate([at[ev.kind[at] != NORMAL], normals]))


def tsne_columns(config: Config, ev, tests: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """A cell's panel of the t-SNE figure, computed with the cell (in parallel with the others): the
    pixels (PCA 50 first) for the raw cell, the latent means for a model's; as two columns over the
    test set, NaN outside :func:`tsne_rows`."""
    sc, keep = config.synthetic, tsne_rows(config, ev)
    cols = _mean_columns(tests)
    if cols:
        points = embedding.tsne(np.stack([tests[k] for k in cols], axis=1)[keep], seed=sc.seed)
    else:
        points = embedding.tsne(embedding.pca(ev.x[keep], 50, sc.seed), seed=sc.seed)
    out = np.full((len(ev.x), 2), np.nan)
    out[keep] = points
    return {"tsne/0": out[:, 0], "tsne/1": out[:, 1]}


class CellScores(NamedTuple):
    """What a finished cell stored: test scores by detector, reference scores, the latent means
    (None for the raw cell), its t-SNE points (n, 2; :func:`tsne_columns`) and its probe's predictions
    by severity (:func:`probe_columns`)."""

    tests: dict[str, np.ndarray]
    refs: dict[str, np.ndarray]
    means: np.ndarray | None
    tsne: np.ndarray
    probe: dict[float, np.ndarray]


class SyntheticBenchmark:
    """The synthetic-anomaly benchmark with trained models (latent size -> (model file, the fingerprint
    of the unit that trained it: the cells depend on it))."""

    def __init__(self, config: Config, out_dir: str | Path, models: dict[int, tuple[Path, str]],
                 say: Callable[[str], None] | None = None, executor: Any = None) -> None:
        sc = config.synthetic
        if not sc.types:
            raise ConfigError("synthetic.types is empty: name the anomaly types to inject")
        check_gate(config)
        self.config, self.out_dir, self.models = config, Path(out_dir), models
        self.store = UnitStore(self.out_dir, say, executor)
        self.data: Dataset = load_grey(config.data)
        self.eval = eval_set(config.data, sc)
        self.shape = tuple(self.data.image_shape[-2:])

    # ---- cells -------------------------------------------------------------
    def units(self) -> list[Unit]:
        """The raw cell, then one cell per model, each followed by its latent size's cluster cell where
        ``anomaly.clusters`` asks for them."""
        clusters = self.config.anomaly.clusters
        return [cell_unit(self.config, 0), *(u for d, (file, fp) in sorted(self.models.items())
                                             for u in (cell_unit(self.config, d, file, fp),
                                                       *([cluster_unit(self.config, d)] if clusters else [])))]

    def scores(self, unit: Unit) -> CellScores:
        """What a finished cell stored, from one read of its file."""
        _, tests, refs = load_scores(self.out_dir / unit.outputs[0])
        tsne = np.stack([tests.pop("tsne/0"), tests.pop("tsne/1")], axis=1)
        probe = {s: tests.pop(f"probe/{s:g}") for s in self.config.synthetic.severities}
        cols = _mean_columns(tests)
        means = np.stack([tests.pop(k) for k in cols], axis=1) if cols else None
        return CellScores(tests, refs, means, tsne, probe)

    # ---- analysis ----------------------------------------------------------
    def run(self) -> dict[str, Any]:
        """Every missing cell, then every table and figure."""
        self.store.run_all(self.units())
        return self.finish()

    def finish(self) -> dict[str, Any]:
        """Every table and figure from the finished cells; returns the summary for metrics.json and the report."""
        sc, ev = self.config.synthetic, self.eval
        units = self.units()
        raw = self.scores(units[0])
        raw_tests, raw_refs = raw.tests, raw.refs
        rows: list[dict[str, Any]] = []
        means: dict[int, np.ndarray] = {}
        tsne, predictions = {0: raw.tsne}, {0: raw.probe}
        for unit in units:
            latent = unit.params["latent_dim"]
            if unit.params.get("clusters"):
                continue  # read with its latent size's cell
            if latent:
                cell = self.scores(unit)
                means[latent], tsne[latent], predictions[latent] = cell.means, cell.tsne, cell.probe
                tests, refs = {**cell.tests, **raw_tests}, {**cell.refs, **raw_refs}
                if self.config.anomaly.clusters:
                    _, more_tests, more_refs = load_scores(self.out_dir / cluster_unit(self.config, latent).outputs[0])
                    tests, refs = {**tests, **more_tests}, {**refs, **more_refs}
                tests, refs = with_derived(tests, refs)
                if self.config.anomaly.cluster_gate:
                    tests, refs, _ = gated_scores(tests, refs, {})
                scores = {k: v for k, v in tests.items() if k not in raw_tests}
            else:
                scores = with_derived(raw_tests, raw_refs)[0]
            for s in sc.severities:
                for t in sc.types:
                    rows_t = (ev.severity == s) & ((ev.kind == NORMAL) | (ev.kind == t))
                    y = (ev.kind[rows_t] == t).astype(int)
                    rows += [{"severity": s, "type": t, "latent_dim": latent, "detector": name,
                              **detection_metrics(y, v[rows_t])} for name, v in scores.items()]
        probe = self.probe(predictions)
        shift = self.shift(means)
        self.write(rows, probe, shift)
        figures = self.figures(rows, means, shift, tsne)
        return {"figures": figures, "best": best_per_type(rows), "probe": probe, "severities": list(sc.severities),
                "types": list(sc.types)}

    def probe(self, predictions: dict[int, dict[float, np.ndarray]]) -> list[dict[str, Any]]:
        """Cross-validated accuracy of a linear classifier of the type (normal included), from the
        cells' predictions (latent size, 0 for the pixels -> severity -> :func:`probe_columns`' column)."""
        sc, ev = self.config.synthetic, self.eval
        names = np.unique(ev.kind)
        out = []
        for s in sc.severities:
            idx = probe_rows(self.config, ev, s)
            y = ev.kind[idx]
            for latent, by_severity in predictions.items():
                pred = names[by_severity[s][idx].astype(int)]
                out.append({"severity": s, "features": "pixels" if latent == 0 else f"z{latent}",
                            "accuracy": float((pred == y).mean()), "chance": float(1 / len(np.unique(y))),
                            "per_type": {t: float((pred[y == t] == t).mean()) for t in np.unique(y)}})
        return out

    def shift(self, means: dict[int, np.ndarray]) -> list[dict[str, Any]]:
        """Distance between each type's mean code and the normals', in normal-spread units:
        ||mean_t - mean_normal|| / sqrt(sum of the normals' per-dimension variances)."""
        ev, sc = self.eval, self.config.synthetic
        out = []
        for d, m in means.items():
            for s in sc.severities:
                at = ev.severity == s
                normal = m[at & (ev.kind == NORMAL)]
                spread = float(np.sqrt(normal.var(0).sum()))
                for t in sc.types:
                    mt = m[at & (ev.kind == t)]
                    out.append({"latent_dim": d, "severity": s, "type": t,
                                "shift": float(np.linalg.norm(mt.mean(0) - normal.mean(0)) / spread),
                                "spread_ratio": float(np.sqrt(mt.var(0).sum())) / spread})
        return out

    # ---- outputs -----------------------------------------------------------
    def write(self, rows, probe, shift) -> None:
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        write_text(self.out_dir / "results.csv", buf.getvalue())
        write_json(self.out_dir / "results.json", {"config": self.config.to_dict()["synthetic"], "rows": rows,
                                                   "probe": probe, "shift": shift,
                                                   "types": {t: describe(t) for t in self.config.synthetic.types}})
        write_text(self.out_dir / "results.md", markdown(rows, probe, shift, list(self.config.synthetic.types)))

    def figures(self, rows, means: dict[int, np.ndarray], shift, tsne: dict[int, np.ndarray]) -> list[dict[str, Any]]:
        sc, ev, fig_dir = self.config.synthetic, self.eval, self.out_dir / "figures"
        entries = []
        clean = self.data.test.x[:EXAMPLES]
        grid = [clean] + [inject(t, clean, self.shape, s, seed=sc.seed, pool=self.data.test.x[EXAMPLES:])
                          for s in sc.severities for t in sc.types]
        labels = ["clean"] + [f"{t} {s:g}" for s in sc.severities for t in sc.types]
        plots.save_figure(plots.image_grid(np.concatenate(grid), self.shape, EXAMPLES, row_labels=labels,
                                           title="the anomaly types at each severity"), fig_dir / "synthetic_examples.png")
        entries.append({"file": "synthetic_examples.png", "caption": "Each anomaly type at each severity, applied "
                        "to the same test images. " + " ".join(f"{t}: {describe(t)}" for t in sc.types)})
        if self.models:
            latent = max(self.models)
            model, _ = load_model(self.models[latent][0], "cpu")
            top = [inject(t, clean, self.shape, max(sc.severities), seed=sc.seed, pool=self.data.test.x[EXAMPLES:])
                   for t in sc.types]
            x = np.concatenate([clean, *top])
            tiles = plots.pixel_map_tiles(x, reconstruction_terms(model, x, squared_error=False), self.shape)
            plots.save_figure(plots.image_grid(tiles, (self.shape[0], 2 * self.shape[1] + 1), EXAMPLES,
                                               row_labels=["clean", *sc.types],
                                               title=f"pixel maps of the latent-{latent} VAE, severity "
                                                     f"{max(sc.severities):g}"), fig_dir / "synthetic_explain.png")
            entries.append({"file": "synthetic_explain.png", "caption": f"Each anomaly type at severity "
                            f"{max(sc.severities):g} beside its pixel map from the latent-{latent} VAE: -log p(x_j|z) "
                            "at the code's mean, the per-pixel terms of the likelihood's data part (darker red = "
                            "more nats; each map scaled to its own maximum). A type whose map lights up where the "
                            "image was changed is one the likelihood sees for the right reason."})
        for s in sc.severities:
            sub = [r for r in rows if r["severity"] == s]
            keys = sorted({(r["detector"], r["latent_dim"]) for r in sub},
                          key=lambda k: -np.mean([r["auroc"] for r in sub if (r["detector"], r["latent_dim"]) == k]))
            lookup = {(r["detector"], r["latent_dim"], r["type"]): r["auroc"] for r in sub}
            table = np.array([[lookup[(*k, t)] for t in sc.types] for k in keys])
            table = np.c_[table, table.mean(1)]
            fig = plots.heatmap(table, [f"{det} ({'raw' if d == 0 else f'z{d}'})" for det, d in keys],
                                [*sc.types, "mean"], f"AUROC per anomaly type, severity {s:g}")
            file = f"synthetic_auroc_sev{s:g}.png"
            plots.save_figure(fig, fig_dir / file)
            entries.append({"file": file, "caption": f"AUROC of each detector (rows, best mean first) for each "
                            f"anomaly type (columns) at severity {s:g}: that type's anomalies against the normal "
                            "test digits."})
        top, keep = max(sc.severities), tsne_rows(self.config, ev)
        n_normal = int((ev.kind[keep] == NORMAL).sum())
        embedded = {d: points[keep] for d, points in tsne.items()}
        panels = [("pixels (PCA 50 then t-SNE)", embedded.pop(0))]
        panels += [(f"latent means, size {d}", points) for d, points in sorted(embedded.items())]
        plots.save_figure(plots.map_panel(panels, ev.kind[keep]), fig_dir / "synthetic_tsne.png")
        entries.append({"file": "synthetic_tsne.png", "caption": f"t-SNE of {len(keep)} test points at severity "
                        f"{top:g} ({n_normal} normal, the rest anomalies), coloured by "
                        "anomaly type: pixels beside the latent means of each size."})
        dims = sorted(means)
        table = np.array([[next(r["shift"] for r in shift if (r["type"], r["latent_dim"], r["severity"]) == (t, d, s))
                           for d in dims for s in sc.severities] for t in sc.types])
        fig = plots.heatmap(table, list(sc.types), [f"z{d} sev {s:g}" for d in dims for s in sc.severities],
                            "latent mean shift from the normals (normal-spread units)", vmin=0.0,
                            vmax=float(max(1.0, table.max())), cmap="viridis")
        plots.save_figure(fig, fig_dir / "synthetic_shift.png")
        entries.append({"file": "synthetic_shift.png", "caption": "How far each type moves the mean latent code "
                        "from the normals' mean, in units of the normals' spread (0: no shift)."})
        return entries


