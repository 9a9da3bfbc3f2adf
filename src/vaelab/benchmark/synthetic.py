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

Scores live in resumable cells (``cells/raw``, ``cells/z<d>``) keyed by the
test set, the settings and the model weights.
"""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from vaelab.benchmark.scoring import cell_done, load_cell, raw_scores, save_cell, vae_scores, with_fusions
from vaelab.config import Config
from vaelab.data import Dataset, load_grey
from vaelab.data.synthetic import NORMAL, describe, image_test_set, inject
from vaelab.errors import DataError
from vaelab.evaluation import detection_metrics
from vaelab.fileio import fingerprint, write_json, write_text

EXAMPLES = 8  # clean images per row of the examples figure


def model_fingerprint(model: torch.nn.Module) -> str:
    """A hash of a model's weights: results computed with it are valid while it is unchanged."""
    h = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


@dataclasses.dataclass(frozen=True)
class EvalSet:
    """Every severity's test set, concatenated: rows, type, severity, class label."""

    x: np.ndarray
    kind: np.ndarray
    severity: np.ndarray
    label: np.ndarray | None


class SyntheticBenchmark:
    """Runs (or continues) the synthetic-anomaly benchmark with trained ``models`` (latent size -> VAE)."""

    def __init__(self, config: Config, out_dir: str | Path, models: dict[int, torch.nn.Module],
                 say: Callable[[str], None] | None = None, data: Dataset | None = None) -> None:
        sc = config.synthetic
        if not sc.types:
            from vaelab.errors import ConfigError

            raise ConfigError("synthetic.types is empty: name the anomaly types to inject")
        self.config, self.out_dir, self.models = config, Path(out_dir), models
        self.say = say or (lambda line: None)
        self.data: Dataset = data or load_grey(config.data)
        if self.data.kind != "image" or self.data.image_shape is None:
            raise DataError("synthetic image anomalies need image data", self.data.source)
        self.shape = tuple(self.data.image_shape[-2:])
        sets = [image_test_set(self.data.test.x, self.shape, list(sc.types), sc.fraction, s, sc.seed,
                               self.data.test.y) for s in sc.severities]
        self.eval = EvalSet(np.concatenate([t.x for t in sets]), np.concatenate([t.kind for t in sets]),
                            np.concatenate([np.full(len(t.x), s) for t, s in zip(sets, sc.severities)]),
                            None if self.data.test.y is None else np.concatenate([t.label for t in sets]))
        from vaelab.detectors import subsample

        self.ref = self.data.train.x[subsample(len(self.data.train.x), config.anomaly.reference_rows,
                                               config.train.seed)]

    # ---- cells -------------------------------------------------------------
    def _fingerprint(self, part: str) -> str:
        cfg = self.config.to_dict()
        base = [cfg["data"], cfg["synthetic"], cfg["anomaly"]["reference_rows"], cfg["train"]["seed"]]
        if part == "raw":
            return fingerprint(base, cfg["anomaly"]["raw_estimators"], cfg["anomaly"]["max_fit_rows"])
        a = {k: v for k, v in cfg["anomaly"].items() if k not in ("protocols", "classes", "latent_dims")}
        return fingerprint(base, a, cfg["score"], model_fingerprint(self.models[int(part[1:])]))

    def _cell(self, part: str) -> Path:
        path, fp = self.out_dir / "cells" / part, self._fingerprint(part)
        if cell_done(path, fp):
            self.say(f"[synthetic] {part} up to date")
            return path
        from vaelab.detectors import VAEDetector

        x_fit = self.data.train.x
        if part == "raw":
            tests, refs, seconds = raw_scores(x_fit, self.eval.x, self.ref, self.config)
            result = {"scores": tests, "refs": refs, "seconds": seconds}
        else:
            model = self.models[int(part[1:])]
            vae = VAEDetector.from_model(model, n_samples=self.config.anomaly.iwae_samples,
                                         random_state=self.config.train.seed)
            tests, refs, seconds = vae_scores(vae, x_fit, self.eval.x, self.ref, self.config)
            # the latent means ride along as one more array per row block
            tests = {**tests, **{f"mean/{j}": col for j, col in enumerate(vae.encode(self.eval.x).T)}}
            result = {"scores": tests, "refs": refs, "seconds": seconds}
        save_cell(path, (self.eval.kind != NORMAL).astype(np.int64), result, fp)
        self.say(f"[synthetic] {part} scored")
        return path

    def scores(self, part: str) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], np.ndarray | None]:
        """(test scores by detector, reference scores, latent means or None) of a part."""
        _, tests, refs = load_cell(self._cell(part))
        cols = sorted((k for k in tests if k.startswith("mean/")), key=lambda k: int(k[5:]))
        means = np.stack([tests.pop(k) for k in cols], axis=1) if cols else None
        return tests, refs, means

    # ---- analysis ----------------------------------------------------------
    def run(self) -> dict[str, Any]:
        """Every table and figure; returns the summary for metrics.json and the report."""
        sc, ev = self.config.synthetic, self.eval
        raw_tests, raw_refs, _ = self.scores("raw")
        rows: list[dict[str, Any]] = []
        means: dict[int, np.ndarray] = {}
        for part, latent in [("raw", 0), *((f"z{d}", d) for d in sorted(self.models))]:
            if latent:
                tests, refs, means[latent] = self.scores(part)
                scores = {k: v for k, v in with_fusions({**tests, **raw_tests}, {**refs, **raw_refs}).items()
                          if k not in raw_tests}
            else:
                scores = raw_tests
            for s in sc.severities:
                for t in sc.types:
                    rows_t = (ev.severity == s) & ((ev.kind == NORMAL) | (ev.kind == t))
                    y = (ev.kind[rows_t] == t).astype(int)
                    rows += [{"severity": s, "type": t, "latent_dim": latent, "detector": name,
                              **detection_metrics(y, v[rows_t])} for name, v in scores.items()]
        probe = self.probe(means)
        shift = self.shift(means)
        self.write(rows, probe, shift)
        figures = self.figures(rows, means, shift)
        return {"figures": figures, "best": best_per_type(rows), "probe": probe, "severities": list(sc.severities),
                "types": list(sc.types)}

    def probe(self, means: dict[int, np.ndarray]) -> list[dict[str, Any]]:
        """Cross-validated accuracy of a linear classifier of the type (normal included)."""
        from sklearn.linear_model import LogisticRegression
        from sklearn.model_selection import StratifiedKFold, cross_val_predict
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        sc, ev = self.config.synthetic, self.eval
        out = []
        for s in sc.severities:
            idx = self._probe_rows(s)
            y = ev.kind[idx]
            folds = StratifiedKFold(sc.probe_folds, shuffle=True, random_state=sc.seed)
            features = {"pixels": ev.x[idx], **{f"z{d}": m[idx] for d, m in means.items()}}
            for name, X in features.items():
                clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, C=1.0))
                pred = cross_val_predict(clf, X, y, cv=folds)
                out.append({"severity": s, "features": name, "accuracy": float((pred == y).mean()),
                            "chance": float(1 / len(np.unique(y))),
                            "per_type": {t: float((pred[y == t] == t).mean()) for t in np.unique(y)}})
        return out

    def _probe_rows(self, severity: float) -> np.ndarray:
        """Every anomaly of a severity and as many normals as there are anomalies of one type."""
        ev, sc = self.eval, self.config.synthetic
        at = np.flatnonzero(ev.severity == severity)
        anomalies = at[ev.kind[at] != NORMAL]
        normals = at[ev.kind[at] == NORMAL]
        n_each = len(anomalies) // len(sc.types)
        picked = np.random.default_rng(sc.seed).choice(normals, size=min(n_each, len(normals)), replace=False)
        return np.sort(np.concatenate([anomalies, picked]))

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
        import csv
        import io

        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        write_text(self.out_dir / "results.csv", buf.getvalue())
        write_json(self.out_dir / "results.json", {"config": self.config.to_dict()["synthetic"], "rows": rows,
                                                   "probe": probe, "shift": shift,
                                                   "types": {t: describe(t) for t in self.config.synthetic.types}})
        write_text(self.out_dir / "results.md", markdown(rows, probe, shift, list(self.config.synthetic.types)))

    def figures(self, rows, means: dict[int, np.ndarray], shift) -> list[dict[str, Any]]:
        from vaelab import embedding, plots

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
        top = max(sc.severities)
        at = np.flatnonzero(ev.severity == top)
        normals = at[ev.kind[at] == NORMAL]
        normals = normals[embedding.subset(len(normals), sc.tsne_normals, sc.seed)]
        keep = np.sort(np.concatenate([at[ev.kind[at] != NORMAL], normals]))
        panels = [("pixels (PCA 50 then t-SNE)", embedding.tsne(embedding.pca(ev.x[keep], 50, sc.seed), seed=sc.seed))]
        panels += [(f"latent means, size {d}", embedding.tsne(m[keep], seed=sc.seed)) for d, m in sorted(means.items())]
        plots.save_figure(plots.map_panel(panels, ev.kind[keep]), fig_dir / "synthetic_tsne.png")
        entries.append({"file": "synthetic_tsne.png", "caption": f"t-SNE of {len(keep)} test points at severity "
                        f"{top:g} ({len(normals)} normal, the rest anomalies), coloured by "
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


def best_per_type(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per severity and type: the best detector and the best of each family (vae, latent, raw, fusion)."""
    out = []
    for s in dict.fromkeys(r["severity"] for r in rows):
        for t in dict.fromkeys(r["type"] for r in rows):
            sub = [r for r in rows if r["severity"] == s and r["type"] == t]
            entry = {"severity": s, "type": t}
            for family in ("vae", "latent", "raw", "fusion"):
                fam = [r for r in sub if r["detector"].startswith(family + "-")]
                if fam:
                    b = max(fam, key=lambda r: r["auroc"])
                    entry[family] = {"detector": b["detector"], "latent_dim": b["latent_dim"], "auroc": b["auroc"]}
            out.append(entry)
    return out


def markdown(rows, probe, shift, types: list[str]) -> str:
    """Best AUROC per type and family, the probe and the shifts, as Markdown tables."""
    lines = ["### Best AUROC per anomaly type, by detector family", "",
             "| severity | type | vae-* (likelihood) | latent-* | raw-* | fusion-* |", "|---|---|---|---|---|---|"]
    for b in best_per_type(rows):
        cell = lambda f: (f"{b[f]['auroc']:.3f} {b[f]['detector']}" + (f" z{b[f]['latent_dim']}"  # noqa: E731
                                                                        if b[f]["latent_dim"] else "")) if f in b else ""
        lines.append(f"| {b['severity']:g} | {b['type']} | {cell('vae')} | {cell('latent')} | {cell('raw')} | "
                     f"{cell('fusion')} |")
    lines += ["", "### Linear probe: cross-validated accuracy of predicting the type (normal included)", "",
              "| severity | features | accuracy | chance |", "|---|---|---|---|"]
    lines += [f"| {p['severity']:g} | {p['features']} | {p['accuracy']:.3f} | {p['chance']:.3f} |" for p in probe]
    dims = sorted({r["latent_dim"] for r in shift})
    sevs = sorted({r["severity"] for r in shift})
    lines += ["", "### Latent mean shift from the normals (normal-spread units)", "",
              "| type | " + " | ".join(f"z{d} sev {s:g}" for d in dims for s in sevs) + " |",
              "|---|" + "---|" * (len(dims) * len(sevs))]
    for t in types:
        vals = [next(r["shift"] for r in shift if (r["type"], r["latent_dim"], r["severity"]) == (t, d, s))
                for d in dims for s in sevs]
        lines.append(f"| {t} | " + " | ".join(f"{v:.2f}" for v in vals) + " |")
    return "\n".join(lines) + "\n"
