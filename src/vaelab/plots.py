"""Figures: each function takes data and returns a matplotlib Figure.

Only the stage runner decides where figures go (:func:`save_figure`).
matplotlib is imported lazily, with the non-interactive Agg backend.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from vaelab.fileio import atomic_path


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def mosaic(images: np.ndarray, image_shape: tuple[int, int], ncols: int, pad: int = 2) -> np.ndarray:
    """Tile images (n, h*w) into one array, ``ncols`` per row, white gaps of ``pad`` pixels (for the
    gray_r colour map); RGB tiles (n, h, w, 3) get white (1.0) gaps."""
    h, w = image_shape
    n = len(images)
    nrows = max(1, -(-n // ncols))
    images = np.asarray(images, dtype=np.float32)
    channels = images.shape[3:] if images.ndim == 4 else ()
    out = np.full((nrows * (h + pad), ncols * (w + pad) - pad, *channels), 1.0 if channels else 0.0,
                  dtype=np.float32)  # a gap under every row
    for i, img in enumerate(images):
        r, c = divmod(i, ncols)
        out[r * (h + pad): r * (h + pad) + h, c * (w + pad): c * (w + pad) + w] = img.reshape(h, w, *channels)
    return out


def pixel_map_tiles(images: np.ndarray, maps: np.ndarray, image_shape: tuple[int, int]) -> np.ndarray:
    """RGB tiles (n, h, 2w+1, 3): each image (dark = ink) beside its pixel map, each map scaled to its
    own largest positive value (white = no contribution, dark red = the most)."""
    plt = _plt()
    h, w = image_shape
    imgs = 1.0 - np.clip(np.asarray(images, dtype=np.float64).reshape(-1, h, w), 0, 1)
    heat = np.clip(np.asarray(maps, dtype=np.float64).reshape(-1, h, w), 0, None)
    heat = heat / np.maximum(heat.reshape(len(heat), -1).max(1), 1e-12)[:, None, None]
    rgb_maps = plt.get_cmap("Reds")(heat)[..., :3]
    gap = np.ones((len(imgs), h, 1, 3))
    return np.concatenate([np.repeat(imgs[..., None], 3, -1), gap, rgb_maps], axis=2)


def image_grid(images: np.ndarray, image_shape: tuple[int, int], ncols: int,
               titles: Sequence[str] | None = None, row_labels: Sequence[str] | None = None,
               title: str | None = None, cell: float = 0.9):
    """Images (n, h*w) in [0, 1] (or RGB tiles (n, h, w, 3)) on a grid of ``ncols`` columns, optional
    per-image titles.

    Drawn as one mosaic (fast for hundreds of images); titles sit above each tile.
    """
    plt = _plt()
    h, w = image_shape
    pad = max(2, h // 3) if titles is not None else 2
    n = len(images)
    nrows = max(1, -(-n // ncols))
    tiles = mosaic(images, image_shape, ncols, pad)
    extra = 0.22 if titles is not None else 0.0
    cell = cell * (w / h if w > h else 1.0)
    fig, ax = plt.subplots(figsize=(ncols * cell + (0.4 if row_labels else 0.1),
                                    nrows * (cell + extra) + (0.45 if title else 0.1)))
    ax.imshow(tiles, cmap=None if tiles.ndim == 3 else "gray_r", vmin=0, vmax=1, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)
    if titles is not None:
        for i, text in enumerate(titles[:n]):
            r, c = divmod(i, ncols)
            ax.text(c * (w + pad) + w / 2 - 0.5, r * (h + pad) + h + pad / 2 - 0.5, text, ha="center", va="center",
                    fontsize=6.5)
    if row_labels:
        for r, label in enumerate(row_labels[:nrows]):
            ax.text(-3, r * (h + pad) + h / 2, label, ha="right", va="center", fontsize=9)
    if title:
        ax.set_title(title, fontsize=10)
    fig.tight_layout(pad=0.3)
    return fig


def scatter_map(points: np.ndarray, labels: np.ndarray | None, title: str, ax=None,
                axis_labels: tuple[str, str] = ("", "")):
    """A 2-D map coloured by label (integers or names), with a legend."""
    plt = _plt()
    fig = None
    if ax is None:
        fig, ax = plt.subplots(figsize=(5.2, 4.6))
    size = 2 if len(points) > 3000 else 5
    if labels is None:
        ax.scatter(points[:, 0], points[:, 1], s=size, alpha=0.6, linewidths=0)
    else:
        names = np.unique(labels)
        cmap = plt.get_cmap("tab10" if len(names) <= 10 else "tab20")
        for i, k in enumerate(names):
            m = labels == k
            ax.scatter(points[m, 0], points[m, 1], s=size, alpha=0.7, color=cmap(i % cmap.N),
                       label=str(k), linewidths=0)
        ax.legend(markerscale=5, fontsize=7, loc="best", frameon=False, ncol=2)
    ax.set_title(title, fontsize=10)
    ax.set_xlabel(axis_labels[0], fontsize=8)
    ax.set_ylabel(axis_labels[1], fontsize=8)
    ax.tick_params(labelsize=7)
    if fig is not None:
        fig.tight_layout()
    return fig or ax.figure


def map_panel(maps: Sequence[tuple[str, np.ndarray]], labels: np.ndarray | None, ncols: int = 2,
              axis_labels: tuple[str, str] = ("", "")):
    """Several 2-D maps side by side, each (title, points)."""
    plt = _plt()
    nrows = -(-len(maps) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(5.2 * ncols, 4.6 * nrows), squeeze=False)
    for ax, (title, pts) in zip(axes.flat, maps):
        scatter_map(pts, labels, title, ax=ax, axis_labels=axis_labels)
    for ax in list(axes.flat)[len(maps):]:
        ax.axis("off")
    fig.tight_layout()
    return fig


def histograms_by_class(scores: np.ndarray, labels: np.ndarray, title: str, xlabel: str):
    """Overlaid step histograms of ``scores`` for each label."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    cmap = plt.get_cmap("tab10")
    bins = np.linspace(np.percentile(scores, 0.5), scores.max(), 60)
    for k in np.unique(labels):
        ax.hist(scores[labels == k], bins=bins, histtype="step", color=cmap(int(k) % 10), label=str(k),
                density=True)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("density")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7, ncol=2, frameon=False)
    fig.tight_layout()
    return fig


def training_curves(histories: dict[str, list[dict[str, float]]]):
    """Train (dashed) and validation (solid) ELBO per epoch, one colour per run."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    cmap = plt.get_cmap("tab10")
    lows = []
    for i, (name, rows) in enumerate(histories.items()):
        epochs = [r["epoch"] for r in rows]
        ax.plot(epochs, [r["train_elbo"] for r in rows], "--", color=cmap(i), lw=1, label=f"{name} train")
        if all("val_elbo" in r for r in rows):
            ax.plot(epochs, [r["val_elbo"] for r in rows], "-", color=cmap(i), lw=1.5, label=f"{name} validation")
        lows.append(np.percentile([r["train_elbo"] for r in rows], 5))
    ax.set_ylim(bottom=min(lows))
    ax.set_xlabel("epoch")
    ax.set_ylabel("ELBO (nats per image)")
    ax.legend(fontsize=7, frameon=False)
    fig.tight_layout()
    return fig


def likelihood_curve(curves: dict[str, list[list[float]]], reference: tuple[str, float] | None = None):
    """Mean test log p(x) against epochs, one line per run; a dotted published reference."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    cmap = plt.get_cmap("tab10")
    for i, (name, points) in enumerate(curves.items()):
        if points:
            epochs, values = zip(*points)
            ax.plot(epochs, values, "o-", color=cmap(i), lw=1.5, ms=3,
                    label=f"{name} (best {max(values):.2f})")
    if reference is not None:
        ax.axhline(reference[1], color="0.3", ls=":", lw=1, label=reference[0])
    ax.set_xlabel("epoch")
    ax.set_ylabel("test log p(x) (nats per image)")
    ax.legend(fontsize=7, frameon=False)
    fig.tight_layout()
    return fig


def heatmap(values: np.ndarray, row_labels: Sequence[str], col_labels: Sequence[str], title: str,
            vmin: float = 0.0, vmax: float = 1.0, cmap: str = "RdYlGn"):
    """A labelled matrix of values (e.g. AUROC), each cell annotated with its number."""
    plt = _plt()
    values = np.asarray(values, dtype=float)
    fig, ax = plt.subplots(figsize=(0.62 * len(col_labels) + 2.6, 0.28 * len(row_labels) + 1.2))
    ax.imshow(values, cmap=cmap, vmin=vmin, vmax=vmax, aspect="auto")
    ax.set_xticks(range(len(col_labels)), col_labels, fontsize=8)
    ax.set_yticks(range(len(row_labels)), row_labels, fontsize=7.5)
    ax.xaxis.tick_top()
    for (i, j), v in np.ndenumerate(values):
        if np.isfinite(v):
            ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=6.5)
    ax.set_title(title, fontsize=10, pad=22)
    fig.tight_layout()
    return fig


def roc_panels(panels: Sequence[tuple[str, dict[str, tuple[np.ndarray, np.ndarray]]]], ncols: int = 5):
    """ROC curves, one panel per (title, {label: (false positive rate, true positive rate)})."""
    plt = _plt()
    nrows = max(1, -(-len(panels) // ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(2.6 * ncols, 2.6 * nrows + 0.4), squeeze=False,
                             sharex=True, sharey=True)
    cmap = plt.get_cmap("tab10")
    for ax, (title, curves) in zip(axes.flat, panels):
        for i, (label, (fpr, tpr)) in enumerate(curves.items()):
            ax.plot(fpr, tpr, color=cmap(i % 10), lw=1.1, label=label)
        ax.plot([0, 1], [0, 1], ":", color="grey", lw=0.8)
        ax.set_title(title, fontsize=9)
        ax.set_aspect("equal")
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    for ax in axes[-1]:
        ax.set_xlabel("false positive rate", fontsize=8)
    for ax in axes[:, 0]:
        ax.set_ylabel("true positive rate", fontsize=8)
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 6), fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    return fig


def label_curve(counts: Sequence[int], curves: dict[str, Sequence[float]], baselines: dict[str, float],
                xlabel: str, ylabel: str = "test AUROC", highlighted: int = 1):
    """Metric against the number of labels: the first ``highlighted`` curves in colour (with
    markers and a legend entry), any others thin and grey; baseline i dashed in curve i's colour."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    for i, (label, values) in enumerate(curves.items()):
        bold = i < highlighted
        ax.plot(counts, values, "o-" if bold else "-", lw=2 if bold else 0.8, alpha=1 if bold else 0.5,
                color=f"C{i}" if bold else "grey", label=label if bold else None)
    for i, (label, value) in enumerate(baselines.items()):
        ax.axhline(value, color=f"C{i}", ls="--", lw=1, label=label)
    ax.set_xscale("symlog", linthresh=max(1, min([c for c in counts if c > 0], default=1)))
    ax.set_xticks(list(counts), [str(c) for c in counts])
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=7, frameon=False)
    fig.tight_layout()
    return fig


def m2_figures(samples: np.ndarray, inputs: np.ndarray, transfer: np.ndarray, shape: tuple[int, int],
               n_classes: int) -> dict[str, object]:
    """Two figures of an image M2: ``samples`` (n_classes x n_classes rows: one row per class, one z
    per column) and style transfer: ``inputs`` (one test digit per column) above ``transfer`` (each
    input's z rendered as every class, class by class)."""
    grid = image_grid(samples, shape, n_classes, row_labels=[str(c) for c in range(n_classes)],
                      title="M2 samples: one row per class, one z per column")
    style = image_grid(np.concatenate([inputs, transfer]), shape, len(inputs),
                       row_labels=["input", *map(str, range(n_classes))],
                       title="M2 style transfer: each test digit's z rendered as every class")
    return {"m2_conditional.png": grid, "m2_style.png": style}


def figure_entry(file: str, section: str, caption: str, order: float) -> dict[str, Any]:
    """A figure as the report lists it (``file`` relative to the run directory)."""
    return {"file": file, "section": section, "caption": caption, "order": order}


def save_figure(fig, path: str | Path, dpi: int = 110) -> None:
    """Write ``fig`` as PNG atomically and close it."""
    plt = _plt()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, format="png", bbox_inches="tight")
    plt.close(fig)
