"""The study behind ``vaelab run``: resumable stages over one run directory.

Stages, per latent size d: ``train/zd`` (one VAE), ``scores/zd`` (every test
point's log p(x), ELBO and latent mean), ``figures/zd`` (decoder samples,
latent traversals, likelihood ranking grids, histograms), ``tsne/zd``; then
``tsne/pixels``, ``maps`` and ``curves``; the report is rebuilt at the end.

Every stage records a fingerprint of its inputs in ``stages.json``; a stage
whose fingerprint and outputs are unchanged is skipped, so an interrupted
run continues where it stopped (training itself resumes from its last
checkpoint) and a changed setting redoes only the stages it feeds.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from vaelab import __version__, embedding, plots, ranking
from vaelab.checkpoint import load_model, versions
from vaelab.config import Config, load_config, model_identity
from vaelab.data import Dataset, load_dataset, load_grey
from vaelab.experiment import CHECKPOINT_FILE, MODEL_FILE, monte_carlo_samples, train_model
from vaelab.fileio import atomic_path, fingerprint, write_json, write_text
from vaelab.runtime import resolve_device
from vaelab.scores import SCORES, latent_means, score_array
from vaelab.training import training_identity


class Ledger:
    """The record of finished stages: name -> {fingerprint, result}."""

    def __init__(self, run_dir: Path, say: Callable[[str], None]) -> None:
        self.path = run_dir / "stages.json"
        self.say = say
        self.stages: dict[str, dict[str, Any]] = json.loads(self.path.read_text()) if self.path.exists() else {}

    def run(self, name: str, fp: str, outputs: list[Path], fn: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        done = self.stages.get(name)
        figures = [self.path.parent / f["file"] for f in (done or {}).get("result", {}).get("figures", [])]
        if done and done["fingerprint"] == fp and all(p.exists() for p in outputs + figures):
            self.say(f"[{name}] up to date, skipped")
            return done["result"]
        self.say(f"[{name}] running")
        t0 = time.perf_counter()
        result = fn()
        result["seconds"] = round(time.perf_counter() - t0, 2)
        self.stages[name] = {"fingerprint": fp, "result": result}
        write_json(self.path, self.stages)
        self.say(f"[{name}] done in {result['seconds']:.1f} s")
        return result


def _figure(file: str, section: str, caption: str, order: float) -> dict[str, Any]:
    return {"file": file, "section": section, "caption": caption, "order": order}


class Study:
    """One study run: a config, a run directory and the data."""

    def __init__(self, config: Config, run_dir: str | Path, say: Callable[[str], None] | None = None) -> None:
        self.config = config
        self.run_dir = Path(run_dir)
        self.say = say or (lambda line: print(line, file=sys.stderr, flush=True))
        self.dataset: Dataset | None = None
        self._grey: Dataset | None = None

    # ---- helpers -----------------------------------------------------------
    def data(self) -> Dataset:
        if self.dataset is None:
            self.dataset = load_dataset(self.config.data)
        return self.dataset

    def grey_data(self) -> Dataset:
        """The data with grey pixels, as the anomaly, synthetic and semi-supervised stages score it."""
        if self._grey is None:
            self._grey = load_grey(self.config.data)
        return self._grey

    def model_config(self, latent: int) -> Config:
        return self.config.replace(model=self.config.model.__class__(
            **{**self.config.model.__dict__, "latent_dim": latent}))

    def path(self, *parts: str) -> Path:
        return self.run_dir.joinpath(*parts)

    # ---- stages ------------------------------------------------------------
    def train(self, latent: int) -> dict[str, Any]:
        config = self.model_config(latent)
        out = self.path("models", f"z{latent}")
        if (out / "config.toml").exists() and (training_identity(load_config(out / "config.toml").to_dict())
                                               != training_identity(config.to_dict())):
            shutil.rmtree(out)  # made with other settings: start this model afresh
        elif (out / MODEL_FILE).exists():
            (out / MODEL_FILE).unlink()  # finished but not recorded: retrain from its checkpoint
        run = train_model(config, out, resume=(out / CHECKPOINT_FILE).exists(), dataset=self.data())
        m = run.meta["metrics"]
        return {"epochs": m["epochs"], "train_seconds": m["train_seconds"], "val_elbo": m["val_elbo"],
                "train_elbo": m["train_elbo"]}

    def scores(self, latent: int) -> dict[str, Any]:
        model, _ = load_model(self.path("models", f"z{latent}", MODEL_FILE), resolve_device(self.config.train.device))
        x = self.data().test.x
        cfg = self.config.score
        rank = self.config.study.rank_score
        samples = monte_carlo_samples(cfg)
        results = {}
        for name in dict.fromkeys([rank, "elbo"]):
            results[name] = score_array(model, x, name, n_samples=samples[name], batch_size=cfg.batch_size,
                                        memory_mb=cfg.memory_mb, seed=cfg.seed,
                                        progress=_row_progress(len(x), f"{name} z{latent}"))
        means = latent_means(model, x)
        with atomic_path(self.path("scores", f"z{latent}.npz")) as tmp:
            with open(tmp, "wb") as fh:
                np.savez(fh, rank=results[rank], elbo=results["elbo"], latent_mean=means)
        return {"test_elbo": float(results["elbo"].mean()), "test_rank": float(results[rank].mean()),
                "rank_score": rank, "rank_samples": samples[rank]}

    def figures(self, latent: int) -> dict[str, Any]:
        ds, st = self.data(), self.config.study
        figs: list[dict[str, Any]] = []
        model, _ = load_model(self.path("models", f"z{latent}", MODEL_FILE), "cpu")
        scores = np.load(self.path("scores", f"z{latent}.npz"))["rank"]
        name = f"z{latent}"
        order = self.config.study.latent_dims.index(latent)
        label = SCORES[st.rank_score].description.split(" (")[0]
        low = ranking.least_likely(scores, st.n_ranked)
        if ds.kind == "image" and ds.image_shape and len(ds.image_shape) == 2:
            shape = ds.image_shape
            gen = torch.Generator().manual_seed(st.seed)
            with torch.no_grad():
                samples = model.sample(st.n_prior_samples, gen).numpy()
            cols = int(np.ceil(np.sqrt(st.n_prior_samples)))
            self._save(plots.image_grid(samples, shape, cols, title=f"latent size {latent}: decoder means of z ~ p(z)"),
                       f"samples_{name}.png")
            figs.append(_figure(f"figures/samples_{name}.png", "Decoder samples",
                                f"Latent size {latent}: E[x|z] for {st.n_prior_samples} draws z ~ N(0, I).", order))
            if latent in (2, 3):
                pairs = [(0, 1)] if latent == 2 else [(0, 1), (0, 2), (1, 2)]
                for a, b in pairs:
                    z = torch.from_numpy(ranking.latent_grid(latent, (a, b), st.traversal_steps))
                    with torch.no_grad():
                        imgs = model.decoder_mean(z).numpy()
                    file = f"traversal_{name}_{a}{b}.png"
                    self._save(plots.image_grid(imgs, shape, st.traversal_steps, cell=0.5,
                                                title=f"latent size {latent}: axes z{a} (down) x z{b} (across)"), file)
                    figs.append(_figure(f"figures/{file}", "Decoder samples",
                                        f"Latent size {latent}: decoded grid over z{a} (rows) and z{b} (columns) "
                                        "at the 5%..95% prior quantiles, other axes 0.", order + 0.1))
            y = ds.test.y
            high = ranking.most_likely(scores, st.n_ranked)
            cols = int(np.ceil(np.sqrt(st.n_ranked)))
            for kind, idx in (("least", low), ("most", high)):
                titles = [f"{'' if y is None else y[i]} {scores[i]:.1f}" for i in idx]
                file = f"rank_{kind}_{name}.png"
                self._save(plots.image_grid(ds.test.x[idx], shape, cols, titles=titles,
                                            title=f"latent size {latent}: {st.n_ranked} {kind} likely test points"), file)
                figs.append(_figure(f"figures/{file}", "Likelihood ranking",
                                    f"Latent size {latent}, global: the {st.n_ranked} {kind} likely of "
                                    f"{len(scores)} test points by {label}; titles give label and score (nats).",
                                    order + (0.1 if kind == "least" else 0.2)))
            if y is not None:
                per_class = ranking.least_likely_per_class(scores, y, st.n_per_class)
                idx = np.concatenate([per_class[k] for k in sorted(per_class)])
                titles = [f"{scores[i]:.0f}" for i in idx]
                file = f"rank_conditional_{name}.png"
                self._save(plots.image_grid(ds.test.x[idx], shape, st.n_per_class, titles=titles,
                                            row_labels=[str(k) for k in sorted(per_class)],
                                            title=f"latent size {latent}: least likely per class"), file)
                figs.append(_figure(f"figures/{file}", "Likelihood ranking",
                                    f"Latent size {latent}, conditional: the {st.n_per_class} least likely test "
                                    "points of each class (one row per class, least likely first).", order + 0.3))
        if ds.test.y is not None:
            file = f"hist_{name}.png"
            self._save(plots.histograms_by_class(scores, ds.test.y, f"latent size {latent}: {label} per class",
                                                 f"{label} (nats)"), file)
            figs.append(_figure(f"figures/{file}", "Likelihood ranking",
                                f"Latent size {latent}: distribution of {label} over the test points of each class.",
                                order + 0.4))
        return {"figures": figs, "least_likely": [int(i) for i in low],
                "least_likely_scores": [float(scores[i]) for i in low]}

    def tsne_of(self, key: str) -> dict[str, Any]:
        st = self.config.study
        idx = embedding.subset(len(self.data().test), st.tsne_points, st.seed)
        if key == "pixels":
            x = embedding.pca(self.data().test.x[idx], st.pca_dims, st.seed)
        else:
            x = np.load(self.path("scores", f"{key}.npz"))["latent_mean"][idx]
        points = embedding.tsne(x, st.tsne_perplexity, st.seed, n_jobs=os.cpu_count() or 1)
        with atomic_path(self.path("embeddings", f"tsne_{key}.npy")) as tmp:
            with open(tmp, "wb") as fh:
                np.save(fh, points)
        return {"points": int(len(idx))}

    def maps(self) -> dict[str, Any]:
        st, ds = self.config.study, self.data()
        idx = embedding.subset(len(ds.test), st.tsne_points, st.seed)
        y = None if ds.test.y is None else ds.test.y[idx]
        panels = [(f"pixels (PCA {st.pca_dims} then t-SNE)", np.load(self.path("embeddings", "tsne_pixels.npy")))]
        panels += [(f"latent means, size {d}", np.load(self.path("embeddings", f"tsne_z{d}.npy")))
                   for d in st.latent_dims]
        self._save(plots.map_panel(panels, y), "tsne.png")
        figs = [_figure("figures/tsne.png", "Latent space",
                        f"t-SNE maps of the same {len(idx)} test points: raw pixels beside the latent means "
                        "of each latent size, coloured by label.", 0)]
        for d in st.latent_dims:
            if d in (2, 3):
                means = np.load(self.path("scores", f"z{d}.npz"))["latent_mean"][idx]
                pairs = [(0, 1)] if d == 2 else [(0, 1), (0, 2), (1, 2)]
                fig = plots.map_panel([(f"size {d}: z{a} vs z{b}", means[:, [a, b]]) for a, b in pairs], y,
                                      ncols=len(pairs))
                self._save(fig, f"latent_scatter_z{d}.png")
                figs.append(_figure(f"figures/latent_scatter_z{d}.png", "Latent space",
                                    f"Latent size {d}: the raw latent means, axis pair by axis pair.", 1 + d))
        return {"figures": figs}

    def curves(self) -> dict[str, Any]:
        histories = {f"z{d}": json.loads(self.path("models", f"z{d}", "history.json").read_text())
                     for d in self.config.study.latent_dims}
        self._save(plots.training_curves(histories), "training_curves.png")
        return {"figures": [_figure("figures/training_curves.png", "Training",
                                    "Train (dashed) and validation (solid) ELBO per epoch for each latent size.", 0)]}

    def anomaly(self) -> dict[str, Any]:
        """The anomaly benchmark of ``config.anomaly`` in ``anomaly/`` (its cells resume on their own)."""
        from vaelab.benchmark.anomaly import AnomalyBenchmark, summary

        bench = AnomalyBenchmark(self.config, self.path("anomaly"), say=self.say, data=self.grey_data())
        rows = bench.run()
        figures = [_figure(f"anomaly/figures/{f['file']}", "Anomaly detection", f["caption"], i)
                   for i, f in enumerate(bench.figure_entries)]
        return {"figures": figures, "summary": summary(rows), "classes": bench.classes}

    def synthetic(self, out_dir: str | Path | None = None, train: bool = True) -> dict[str, Any]:
        """The synthetic-anomaly benchmark with this study's models (trained first unless ``train`` is False)."""
        from vaelab.benchmark.synthetic import SyntheticBenchmark

        if self.data().kind != "image":
            from vaelab.errors import DataError

            raise DataError("synthetic image anomalies need image data", self.data().source)
        if train:
            self.models()
        device = resolve_device(self.config.train.device)
        models = {d: load_model(self.path("models", f"z{d}", MODEL_FILE), device)[0]
                  for d in self.config.study.latent_dims}
        out = Path(out_dir) if out_dir else self.path("synthetic")
        result = SyntheticBenchmark(self.config, out, models, say=self.say, data=self.grey_data()).run()
        prefix = "synthetic/figures" if out_dir is None else str(out / "figures")
        result["figures"] = [_figure(f"{prefix}/{f['file']}", "Synthetic anomalies", f["caption"], i)
                             for i, f in enumerate(result["figures"])]
        return result

    def semisupervised(self) -> dict[str, Any]:
        """M2 with a few labels (error rate, conditional samples, style transfer) and the
        semi-supervised anomaly curve, into ``semisupervised/`` and ``figures/``."""
        import dataclasses as dc

        from vaelab import semisupervised as ssl
        from vaelab.checkpoint import save_model
        from vaelab.errors import DataError
        from vaelab.models import resolve_likelihood

        cfg, sc = self.config, self.config.semisupervised
        data = self.grey_data()
        classes = None if data.train.y is None else np.unique(data.train.y)
        if classes is None or not np.array_equal(classes, np.arange(len(classes))):
            raise DataError("the semi-supervised stage needs class labels 0..K-1", data.source)
        likelihood = resolve_likelihood(cfg.model, data.kind)
        m2_config = dc.replace(cfg.model, name="m2", latent_dim=sc.latent_dim, n_classes=len(classes))
        train = dc.replace(cfg.train, epochs=sc.epochs, progress=False)
        semi = ssl.balanced_labels(data.train.y, sc.labels, cfg.train.seed)
        m2 = ssl.train_m2(data.train.x, semi, m2_config, train, likelihood=likelihood,
                          binarize=data.kind == "image" and cfg.data.binarize == "dynamic")
        save_model(self.path("semisupervised", "m2.safetensors"), m2, {"labels": sc.labels})
        error = ssl.error_rate(m2, data.test.x, data.test.y)
        agreement = ssl.conditional_agreement(m2, seed=cfg.train.seed, judge=ssl.knn_judge(data.train.x, data.train.y))
        figs = []
        if data.kind == "image" and data.image_shape:
            for i, (file, fig) in enumerate(ssl.conditional_figures(m2, data.test.x, data.test.y,
                                                                    tuple(data.image_shape[-2:]),
                                                                    cfg.train.seed).items()):
                self._save(fig, file)
                figs.append(_figure(f"figures/{file}", "Semi-supervised",
                                    "Conditional samples: one row per class, the same z down each column."
                                    if i == 0 else "Style transfer: the z of one test digit per class (top "
                                    "row) decoded as every class.", i))
        curve = ssl.anomaly_curve(data.train.x, data.train.y, data.test.x, data.test.y, sc.normal_class,
                                  tuple(sc.known_anomaly_classes), list(sc.anomaly_labels), epochs=sc.epochs,
                                  latent_dim=sc.latent_dim, pollution=sc.pollution, seed=cfg.train.seed,
                                  hidden_dims=tuple(cfg.model.hidden_dims))
        self._save(plots.label_curve(curve["counts"], *ssl.curve_groups([curve]), "labelled anomalies",
                                     highlighted=3), "ssl_anomaly_curve.png")
        figs.append(_figure("figures/ssl_anomaly_curve.png", "Semi-supervised",
                            f"Test AUROC with class {sc.normal_class} normal and every other class an anomaly, "
                            f"as labelled anomalies from class(es) {list(sc.known_anomaly_classes)} are added.", 9))
        return {"figures": figs, "labels": sc.labels, "error_rate": error, "agreement": agreement, "curve": curve,
                "normal_class": sc.normal_class}

    def _save(self, fig, file: str) -> None:
        plots.save_figure(fig, self.path("figures", file))

    # ---- the runner --------------------------------------------------------
    def _begin(self) -> Ledger:
        self.data()  # validate the data before anything is written
        self.run_dir.mkdir(parents=True, exist_ok=True)
        write_text(self.path("config.toml"), self.config.to_toml())
        return Ledger(self.run_dir, self.say)

    def _models(self, ledger: Ledger, fps: dict[str, str]) -> dict[int, dict[str, Any]]:
        """The train and scores stages of every latent size; fills ``fps``."""
        cfg = self.config
        data_fp = fps.setdefault("data", fingerprint(cfg.to_dict()["data"]))
        train_cfg = {k: v for k, v in cfg.to_dict()["train"].items() if k not in ("progress", "device")}
        per_latent = {}
        for d in cfg.study.latent_dims:
            fps[f"train{d}"] = fingerprint(data_fp, model_identity(self.model_config(d).to_dict()["model"]), train_cfg)
            train = ledger.run(f"train/z{d}", fps[f"train{d}"], [self.path("models", f"z{d}", MODEL_FILE)],
                               lambda d=d: self.train(d))
            fps[f"scores{d}"] = fingerprint(fps[f"train{d}"], cfg.to_dict()["score"], cfg.study.rank_score)
            scores = ledger.run(f"scores/z{d}", fps[f"scores{d}"], [self.path("scores", f"z{d}.npz")],
                                lambda d=d: self.scores(d))
            per_latent[d] = {**train, **scores}
        return per_latent

    def models(self) -> dict[str, Any]:
        """Only train and score the models (what the likelihood benchmark needs)."""
        per_latent = self._models(self._begin(), {})
        return {"study": {str(d): m for d, m in per_latent.items()}}

    def run(self) -> dict[str, Any]:
        start = time.perf_counter()
        cfg, st = self.config, self.config.study
        ledger = self._begin()
        fps: dict[str, str] = {}
        per_latent = self._models(ledger, fps)
        data_fp = fps["data"]
        figures: list[dict[str, Any]] = []
        for d in st.latent_dims:
            fig_fp = fingerprint(fps[f"scores{d}"], cfg.to_dict()["study"])
            figs = ledger.run(f"figures/z{d}", fig_fp, [], lambda d=d: self.figures(d))
            figures += figs["figures"]
            per_latent[d].update(least_likely=figs["least_likely"], least_likely_scores=figs["least_likely_scores"])
        tsne_cfg = (st.tsne_points, st.tsne_perplexity, st.seed)
        fps["tsne_pixels"] = fingerprint(data_fp, tsne_cfg, st.pca_dims)
        ledger.run("tsne/pixels", fps["tsne_pixels"], [self.path("embeddings", "tsne_pixels.npy")],
                   lambda: self.tsne_of("pixels"))
        for d in st.latent_dims:
            fps[f"tsne{d}"] = fingerprint(fps[f"scores{d}"], tsne_cfg)
            ledger.run(f"tsne/z{d}", fps[f"tsne{d}"], [self.path("embeddings", f"tsne_z{d}.npy")],
                       lambda d=d: self.tsne_of(f"z{d}"))
        maps = ledger.run("maps", fingerprint(sorted(v for k, v in fps.items() if k.startswith("tsne"))),
                          [self.path("figures", "tsne.png")], self.maps)
        curves = ledger.run("curves", fingerprint(sorted(v for k, v in fps.items() if k.startswith("train"))),
                            [self.path("figures", "training_curves.png")], self.curves)
        figures += maps["figures"] + curves["figures"]
        c = cfg.to_dict()
        anomaly = None
        if cfg.anomaly.protocols:
            anomaly = ledger.run("anomaly", fingerprint(data_fp, c["model"], c["train"], c["score"], c["anomaly"],
                                                        st.latent_dims),
                                 [self.path("anomaly", "results.json")], self.anomaly)
            figures += anomaly["figures"]
        synthetic = None
        if cfg.synthetic.types:
            synthetic = ledger.run("synthetic", fingerprint([fps[f"train{d}"] for d in st.latent_dims], c["score"],
                                                            c["anomaly"], c["synthetic"]),
                                   [self.path("synthetic", "results.json")], lambda: self.synthetic(train=False))
            figures += synthetic["figures"]
        semi = None
        if cfg.semisupervised.labels:
            semi = ledger.run("semisupervised", fingerprint(data_fp, c["model"], c["train"], c["semisupervised"]),
                              [self.path("semisupervised", "m2.safetensors")], self.semisupervised)
            figures += semi["figures"]
        metrics = {
            "study": {str(d): per_latent[d] for d in st.latent_dims},
            "figures": figures,
            **({"anomaly": {"summary": anomaly["summary"], "classes": anomaly["classes"]}} if anomaly else {}),
            **({"synthetic": {k: synthetic[k] for k in ("best", "probe", "severities", "types")}}
               if synthetic else {}),
            **({"semisupervised": {k: semi[k] for k in ("labels", "error_rate", "agreement", "curve", "normal_class")}}
               if semi else {}),
            "data": {"name": self.data().name, "source": self.data().source, **self.data().info},
            "run": {"finished": time.strftime("%Y-%m-%d %H:%M:%S"),
                    "seconds_this_invocation": round(time.perf_counter() - start, 1),
                    "stage_seconds": {k: v["result"].get("seconds", 0.0) for k, v in ledger.stages.items()},
                    "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.system()}",
                    "device": str(resolve_device(cfg.train.device)), "torch_threads": torch.get_num_threads(),
                    "versions": versions(), "vaelab": __version__},
        }
        write_json(self.path("metrics.json"), metrics)
        from vaelab.report import write_report

        write_report(self.run_dir)
        return metrics


def _row_progress(total: int, desc: str):
    from tqdm.auto import tqdm

    bar = tqdm(total=total, desc=desc, unit="row", file=sys.stderr, leave=False, dynamic_ncols=True)

    def update(n: int) -> None:
        bar.update(n)
        if bar.n >= total:
            bar.close()
    return update


def study_table(metrics: dict[str, Any]) -> str:
    """Plain-text table of a study's per-latent results."""
    rows = metrics["study"]
    any_row = next(iter(rows.values()))
    rank = f"test {any_row['rank_score']}"
    lines = [f"{'latent':>6} {'epochs':>6} {'train s':>8} {'val ELBO':>9} {'test ELBO':>10} {rank:>14}"]
    for d, m in rows.items():
        lines.append(f"{d:>6} {m['epochs']:>6} {m['train_seconds']:>8.0f} {m['val_elbo']:>9.2f} "
                     f"{m['test_elbo']:>10.2f} {m['test_rank']:>14.2f}")
    return "\n".join(lines)


def run_study(config: Config, run_dir: str | Path) -> dict[str, Any]:
    """Run (or continue) the study of ``config`` in ``run_dir``."""
    return Study(config, run_dir).run()
