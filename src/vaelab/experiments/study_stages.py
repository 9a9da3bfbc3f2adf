"""The study's stages, each a unit function ``stage(unit, root) -> result`` over a run directory:
train one VAE, score the test points, draw its figures, t-SNE maps, and training curves."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vaelab import embedding, plots, ranking
from vaelab.config import Config
from vaelab.data import load_dataset
from vaelab.errors import VaelabError
from vaelab.experiments.training_run import MODEL_FILE, train_model
from vaelab.experiments.units import Unit
from vaelab.fileio import atomic_path
from vaelab.models import load_model
from vaelab.plots import figure_entry
from vaelab.runtime import resolve_device
from vaelab.scores import (SCORES, latent_means, monte_carlo_samples, reconstruction_terms, score_array,
                           scoring_precision)


def _config(unit: Unit) -> Config:
    """The unit's config, with its runtime settings (device, progress) applied."""
    config = Config.from_dict(unit.params["config"])
    runtime = {k: v for k, v in unit.runtime.items() if k in ("device", "progress")}
    return config.with_train(**runtime)


def _save(root: Path, fig, file: str) -> None:
    plots.save_figure(fig, root / "figures" / file)


def train(unit: Unit, root: Path) -> dict[str, Any]:
    """One VAE of ``model.latent_dim`` into ``models/z<d>`` (resuming its checkpoint where it has one).
    Its weight snapshots (``train.snapshot_every``) are among the files it lists, so that a unit that
    reads them (the likelihood curve) gets them on a worker of its own."""
    config = _config(unit)
    out = root / "models" / f"z{config.model.latent_dim}"
    run = train_model(config, out, existing="continue", dataset=load_dataset(config.data))
    m = run.meta["metrics"]
    snapshots = sorted(p.relative_to(root).as_posix() for p in (out / "snapshots").glob("epoch_*.safetensors"))
    return {"epochs": m["epochs"], "train_seconds": m["train_seconds"], "val_elbo": m["val_elbo"],
            "train_elbo": m["train_elbo"], "precision": m.get("precision"), "files": snapshots}


def scores(unit: Unit, root: Path) -> dict[str, Any]:
    """Every test point's ranking score, ELBO and latent mean under one trained VAE."""
    config = _config(unit)
    latent = config.model.latent_dim
    model, _ = load_model(root / "models" / f"z{latent}" / MODEL_FILE, resolve_device(config.train.device))
    x = load_dataset(config.data).test.x
    cfg, rank = config.score, config.study.rank_score
    samples = monte_carlo_samples(cfg)
    precision = scoring_precision(model, cfg.precision, next(model.parameters()).device)
    results = {}
    for name in dict.fromkeys([rank, "elbo"]):
        results[name] = score_array(model, x, name, n_samples=samples[name], batch_size=cfg.batch_size,
                                    memory_mb=cfg.memory_mb, seed=cfg.seed, precision=precision,
                                    progress=_row_progress(len(x), f"{name} z{latent}") if config.train.progress
                                    else None)
    means = latent_means(model, x)
    with atomic_path(root / unit.outputs[0]) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, rank=results[rank], elbo=results["elbo"], latent_mean=means)
    return {"test_elbo": float(results["elbo"].mean()), "test_rank": float(results[rank].mean()),
            "rank_score": rank, "rank_samples": samples[rank], "precision": precision}


def figures(unit: Unit, root: Path) -> dict[str, Any]:
    """Decoder samples, latent traversals, likelihood ranking grids and histograms of one latent size."""
    config, latent = _config(unit), unit.params["latent_dim"]
    ds, st = load_dataset(config.data), config.study
    figs: list[dict[str, Any]] = []
    model, _ = load_model(root / "models" / f"z{latent}" / MODEL_FILE, "cpu")
    scores = np.load(root / "scores" / f"z{latent}.npz")["rank"]
    name = f"z{latent}"
    order = unit.params["order"]
    label = SCORES[st.rank_score].description.split(" (")[0]
    low = ranking.least_likely(scores, st.n_ranked)
    if ds.kind == "image" and ds.image_shape and len(ds.image_shape) == 2:
        shape = ds.image_shape
        gen = torch.Generator().manual_seed(st.seed)
        with torch.no_grad():
            samples = model.sample(st.n_prior_samples, gen).numpy()
        cols = int(np.ceil(np.sqrt(st.n_prior_samples)))
        _save(root, plots.image_grid(samples, shape, cols, title=f"latent size {latent}: decoder means of z ~ p(z)"),
                   f"samples_{name}.png")
        figs.append(figure_entry(f"figures/samples_{name}.png", "Decoder samples",
                            f"Latent size {latent}: E[x|z] for {st.n_prior_samples} draws z ~ N(0, I).", order))
        if latent in (2, 3):
            pairs = [(0, 1)] if latent == 2 else [(0, 1), (0, 2), (1, 2)]
            for a, b in pairs:
                z = torch.from_numpy(ranking.latent_grid(latent, (a, b), st.traversal_steps))
                with torch.no_grad():
                    imgs = model.decoder_mean(z).numpy()
                file = f"traversal_{name}_{a}{b}.png"
                _save(root, plots.image_grid(imgs, shape, st.traversal_steps, cell=0.5,
                                            title=f"latent size {latent}: axes z{a} (down) x z{b} (across)"), file)
                figs.append(figure_entry(f"figures/{file}", "Decoder samples",
                                    f"Latent size {latent}: decoded grid over z{a} (rows) and z{b} (columns) "
                                    "at the 5%..95% prior quantiles, other axes 0.", order + 0.1))
        y = ds.test.y
        high = ranking.most_likely(scores, st.n_ranked)
        cols = int(np.ceil(np.sqrt(st.n_ranked)))
        for kind, idx in (("least", low), ("most", high)):
            titles = [f"{'' if y is None else y[i]} {scores[i]:.1f}" for i in idx]
            file = f"rank_{kind}_{name}.png"
            _save(root, plots.image_grid(ds.test.x[idx], shape, cols, titles=titles,
                                        title=f"latent size {latent}: {st.n_ranked} {kind} likely test points"), file)
            figs.append(figure_entry(f"figures/{file}", "Likelihood ranking",
                                f"Latent size {latent}, global: the {st.n_ranked} {kind} likely of "
                                f"{len(scores)} test points by {label}; titles give label and score (nats).",
                                order + (0.1 if kind == "least" else 0.2)))
        titles = [f"{'' if y is None else y[i]} {scores[i]:.1f}" for i in low]
        figs.append(_pixel_maps(root, model, ds.test.x[low], shape, cols, titles, None, f"explain_least_{name}.png",
                                f"latent size {latent}: the {st.n_ranked} least likely, with their pixel maps",
                                f"Latent size {latent}, global: each of the {st.n_ranked} least likely test points "
                                "beside its pixel map, -log p(x_j|z) at the code's mean (darker red = that pixel "
                                "costs more nats; each map scaled to its own maximum).", order + 0.15))
        if y is not None:
            per_class = ranking.least_likely_per_class(scores, y, st.n_per_class)
            idx = np.concatenate([per_class[k] for k in sorted(per_class)])
            titles = [f"{scores[i]:.0f}" for i in idx]
            file = f"rank_conditional_{name}.png"
            _save(root, plots.image_grid(ds.test.x[idx], shape, st.n_per_class, titles=titles,
                                        row_labels=[str(k) for k in sorted(per_class)],
                                        title=f"latent size {latent}: least likely per class"), file)
            figs.append(figure_entry(f"figures/{file}", "Likelihood ranking",
                                f"Latent size {latent}, conditional: the {st.n_per_class} least likely test "
                                "points of each class (one row per class, least likely first).", order + 0.3))
            figs.append(_pixel_maps(root, model, ds.test.x[idx], shape, st.n_per_class, titles,
                                    [str(k) for k in sorted(per_class)], f"explain_conditional_{name}.png",
                                    f"latent size {latent}: least likely per class, with their pixel maps",
                                    f"Latent size {latent}, conditional: the least likely test points of each class "
                                    "beside their pixel maps (-log p(x_j|z) at the code's mean).", order + 0.35))
    if ds.test.y is not None:
        file = f"hist_{name}.png"
        _save(root, plots.histograms_by_class(scores, ds.test.y, f"latent size {latent}: {label} per class",
                                             f"{label} (nats)"), file)
        figs.append(figure_entry(f"figures/{file}", "Likelihood ranking",
                            f"Latent size {latent}: distribution of {label} over the test points of each class.",
                            order + 0.4))
    return {"figures": figs, "files": [f["file"] for f in figs], "least_likely": [int(i) for i in low],
            "least_likely_scores": [float(scores[i]) for i in low]}


def _pixel_maps(root: Path, model: torch.nn.Module, x: np.ndarray, shape: tuple[int, int], ncols: int,
                titles: list[str], row_labels: list[str] | None, file: str, title: str, caption: str,
                order: float) -> dict[str, Any]:
    """Images beside their per-pixel explanation (the VAE's -log p(x_j|z) at the code's mean), saved."""
    maps = reconstruction_terms(model, x, squared_error=False)
    tiles = plots.pixel_map_tiles(x, maps, shape)
    _save(root, plots.image_grid(tiles, (shape[0], 2 * shape[1] + 1), ncols, titles=titles, row_labels=row_labels,
                                 title=title), file)
    return figure_entry(f"figures/{file}", "Likelihood ranking", caption, order)


def tsne(unit: Unit, root: Path) -> dict[str, Any]:
    """A t-SNE map of the test points: of the pixels (PCA first) or of one latent size's means; exact
    on a CUDA device (the run's ``train.device``), openTSNE's approximation on a CPU."""
    config, key = _config(unit), unit.params["key"]
    st, test = config.study, load_dataset(config.data).test
    idx = embedding.subset(len(test), st.tsne_points, st.seed)
    if key == "pixels":
        x = embedding.pca(test.x[idx], st.pca_dims, st.seed)
    else:
        x = np.load(root / "scores" / f"{key}.npz")["latent_mean"][idx]
    device = str(resolve_device(config.train.device))
    points = embedding.tsne(x, st.tsne_perplexity, st.seed, device=device)
    with atomic_path(root / unit.outputs[0]) as tmp:
        with open(tmp, "wb") as fh:
            np.save(fh, points)
    return {"points": int(len(idx)), "method": embedding.tsne_method(device)}

def maps(unit: Unit, root: Path) -> dict[str, Any]:
    """The t-SNE maps side by side, and the raw latent means of 2- and 3-dimensional codes."""
    config = _config(unit)
    st, ds = config.study, load_dataset(config.data)
    idx = embedding.subset(len(ds.test), st.tsne_points, st.seed)
    y = None if ds.test.y is None else ds.test.y[idx]
    panels = [(f"pixels (PCA {st.pca_dims} then t-SNE)", np.load(root / "embeddings" / "tsne_pixels.npy"))]
    panels += [(f"latent means, size {d}", np.load(root / "embeddings" / f"tsne_z{d}.npy"))
               for d in st.latent_dims]
    _save(root, plots.map_panel(panels, y), "tsne.png")
    figs = [figure_entry("figures/tsne.png", "Latent space",
                    f"t-SNE maps of the same {len(idx)} test points: raw pixels beside the latent means "
                    "of each latent size, coloured by label.", 0)]
    for d in st.latent_dims:
        if d in (2, 3):
            means = np.load(root / "scores" / f"z{d}.npz")["latent_mean"][idx]
            pairs = [(0, 1)] if d == 2 else [(0, 1), (0, 2), (1, 2)]
            fig = plots.map_panel([(f"size {d}: z{a} vs z{b}", means[:, [a, b]]) for a, b in pairs], y,
                                  ncols=len(pairs))
            _save(root, fig, f"latent_scatter_z{d}.png")
            figs.append(figure_entry(f"figures/latent_scatter_z{d}.png", "Latent space",
                                f"Latent size {d}: the raw latent means, axis pair by axis pair.", 1 + d))
    return {"figures": figs, "files": [f["file"] for f in figs]}


def curves(unit: Unit, root: Path) -> dict[str, Any]:
    """Train and validation ELBO per epoch of every latent size; with weight snapshots
    (``train.snapshot_every``), also test log p(x) against epochs."""
    config = _config(unit)
    histories = {f"z{d}": json.loads((root / "models" / f"z{d}" / "history.json").read_text())
                 for d in config.study.latent_dims}
    _save(root, plots.training_curves(histories), "training_curves.png")
    figures = [figure_entry("figures/training_curves.png", "Training",
                            "Train (dashed) and validation (solid) ELBO per epoch for each latent size.", 0)]
    result: dict[str, Any] = {"figures": figures}
    if config.train.snapshot_every:
        result["likelihood_curve"] = likelihood_curve(config, root, histories)
        _save(root, plots.likelihood_curve(result["likelihood_curve"], LIKELIHOOD_REFERENCE), "likelihood_curve.png")
        figures.append(figure_entry(
            "figures/likelihood_curve.png", "Training",
            f"Test log p(x) (importance sampled, K={config.score.iwae_samples}, the first "
            f"{config.study.curve_rows} test digits) of the weights every {config.train.snapshot_every} epochs, "
            f"for each latent size; dotted: {LIKELIHOOD_REFERENCE[0]}.", 1))
    return result


# The published single-stochastic-layer VAE on dynamically binarized MNIST, for the curve's reference line.
LIKELIHOOD_REFERENCE = ("Burda et al. 2016, VAE with 2x200 hidden units, latent 50: -86.76 nats", -86.76)


def likelihood_curve(config: Config, root: Path, histories: dict[str, list]) -> dict[str, list[list[float]]]:
    """Per latent size, [epoch, mean test log p(x)] of every weight snapshot (``histories``: each
    size's training history, to tell a snapshot that is missing from one that was never due)."""
    from vaelab.checkpoint import load_tensors

    x = load_dataset(config.data).test.x[:config.study.curve_rows]
    cfg = config.score
    curves: dict[str, list[list[float]]] = {}
    for d in config.study.latent_dims:
        model, _ = load_model(root / "models" / f"z{d}" / MODEL_FILE, "cpu")
        precision = scoring_precision(model, cfg.precision, "cpu")
        points = []
        for path in sorted((root / "models" / f"z{d}" / "snapshots").glob("epoch_*.safetensors")):
            tensors, meta = load_tensors(path)
            model.load_state_dict(tensors)
            values = score_array(model, x, "iwae", n_samples=cfg.iwae_samples, batch_size=cfg.batch_size,
                                 memory_mb=cfg.memory_mb, seed=cfg.seed, precision=precision)
            points.append([int(meta["epoch"]), float(values.mean())])
        if not points and len(histories[f"z{d}"]) >= config.train.snapshot_every:  # one was due: it is missing
            raise VaelabError(f"no weight snapshots for the likelihood curve of latent size {d}",
                              root / "models" / f"z{d}" / "snapshots")
        curves[f"z{d}"] = points
    return curves


def _row_progress(total: int, desc: str):
    from tqdm.auto import tqdm

    bar = tqdm(total=total, desc=desc, unit="row", file=sys.stderr, leave=False, dynamic_ncols=True)

    def update(n: int) -> None:
        bar.update(n)
        if bar.n >= total:
            bar.close()
    return update
