"""Tables and figures of Deep SAD's grid (:mod:`vaelab.experiments.deep_sad`) from its units' results."""

from __future__ import annotations

from typing import Any

import numpy as np

from vaelab.evaluation import ANOMALY_GROUPS
from vaelab.experiments.deep_sad import (DEFAULT_PRIOR, EXPERIMENTS, MATCHED_PRIOR, PUBLISHED, SUPERVISED,
                                         UNSUPERVISED, cell_aurocs, point_unit, stored_seeds)


def detector_labels(detector: str) -> dict[str, str]:
    """The tables' label of each compared detector; ``detector`` is the unsupervised baseline's name."""
    return {DEFAULT_PRIOR: "SemiSupervisedDetector (M2)", MATCHED_PRIOR: "SemiSupervisedDetector, prior = anomaly share",
            SUPERVISED: "supervised classifier (MLP)", UNSUPERVISED: f"unsupervised baseline ({detector})"}


def experiment_means(results: dict[str, dict[str, Any]], experiment: str, classes: list[int], detector: str,
                     counts: dict[int, int], seed: int | None = None) -> dict[str, list[float | None]]:
    """{detector + group: [mean AUROC over ``classes`` at each point of ``experiment``]}, None where a
    detector has no score at a point (no labels for the classifier, no matched prior); of seed index
    ``seed``, or (None) each cell first averaged over its seeds."""
    points = EXPERIMENTS[experiment][2]
    cells = [[cell_aurocs(results, c, point, detector, counts, seed) for c in classes] for point in points]
    keys = sorted({k for row in cells for cell in row for k in cell})
    return {k: [float(np.mean([cell[k] for cell in row])) if all(k in cell for cell in row) else None
                for row in cells] for k in keys}


def seed_count(results: dict[str, dict[str, Any]], experiment: str, classes: list[int]) -> int:
    """The seeds every cell of ``experiment`` has."""
    return min(stored_seeds(results, c, point) for c in classes for point in EXPERIMENTS[experiment][2])


def seed_spread(results: dict[str, dict[str, Any]], experiment: str, classes: list[int], detector: str,
                counts: dict[int, int], name: str = DEFAULT_PRIOR) -> list[float] | None:
    """The sample standard deviation over seeds of ``name``'s mean AUROC at each point (None with
    one seed)."""
    n = seed_count(results, experiment, classes)
    if n < 2:
        return None
    per_seed = np.array([experiment_means(results, experiment, classes, detector, counts, i)[name] for i in range(n)],
                        dtype=float)
    return per_seed.std(0, ddof=1).tolist()


def cell_seconds(results: dict[str, dict[str, Any]], experiment: str, classes: list[int]) -> list[float]:
    """Mean compute seconds of one (normal class, point) cell at each point of ``experiment``."""
    return [float(np.mean([sum(results[point_unit(c, point)]["seconds"].values()) for c in classes]))
            for point in EXPERIMENTS[experiment][2]]


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}"


def experiment_table(results: dict[str, dict[str, Any]], experiment: str, classes: list[int], detector: str,
                     counts: dict[int, int]) -> str:
    """Markdown: mean AUROC (%) per point for every detector and, below, the published numbers, then
    the SemiSupervisedDetector's AUROC against the known and the novel classes, and seconds per cell."""
    axis, values, _ = EXPERIMENTS[experiment]
    means = experiment_means(results, experiment, classes, detector, counts)
    head = " | ".join(f"{v:g}" for v in values)
    lines = [f"| detector | {head} |", "|---|" + "---|" * len(values)]
    for name, label in detector_labels(detector).items():
        if any(v is not None for v in means.get(name, [None])):
            lines.append(f"| {label} | " + " | ".join(_pct(v) for v in means[name]) + " |")
    for name, row in PUBLISHED.get(experiment, {}).items():
        lines.append(f"| {name} | " + " | ".join("–" if v is None else f"{v:.1f}" for v in row) + " |")
    for key, label in list(ANOMALY_GROUPS.items())[1:]:
        name = DEFAULT_PRIOR + key
        if name in means:
            lines.append(f"| M2, against the {label} only | " + " | ".join(_pct(v) for v in means[name]) + " |")
    spread = seed_spread(results, experiment, classes, detector, counts)
    if spread is not None:
        n = seed_count(results, experiment, classes)
        lines.insert(3, f"| SemiSupervisedDetector (M2), sd over {n} seeds | " + " | ".join(_pct(v) for v in spread)
                     + " |")
    lines.append("| compute seconds per cell (mean) | "
                 + " | ".join(f"{s:.0f}" for s in cell_seconds(results, experiment, classes)) + " |")
    return f"Experiment {list(EXPERIMENTS).index(experiment) + 1}: {axis}.\n\n" + "\n".join(lines) + "\n"


def class_table(results: dict[str, dict[str, Any]], experiment: str, classes: list[int], detector: str,
                counts: dict[int, int], name: str = DEFAULT_PRIOR) -> str:
    """Markdown: ``name``'s AUROC (%) per normal class at each point of ``experiment``."""
    axis, values, points = EXPERIMENTS[experiment]
    lines = ["| normal class | " + " | ".join(f"{v:g}" for v in values) + " |", "|---|" + "---|" * len(values)]
    for c in classes:
        row = [cell_aurocs(results, c, point, detector, counts).get(name) for point in points]
        lines.append(f"| {c} | " + " | ".join(_pct(v) for v in row) + " |")
    return "\n".join(lines) + "\n"


def experiment_figure(results: dict[str, dict[str, Any]], experiment: str, classes: list[int], detector: str,
                      counts: dict[int, int]):
    """AUROC against the experiment's axis: every detector, and the published Deep SAD where given."""
    from vaelab import plots

    axis, values, _ = EXPERIMENTS[experiment]
    means = experiment_means(results, experiment, classes, detector, counts)
    curves = {label: [np.nan if v is None else v for v in means[name]]
              for name, label in detector_labels(detector).items() if any(v is not None for v in means.get(name, [None]))}
    for name, row in PUBLISHED.get(experiment, {}).items():
        curves[name] = [np.nan if v is None else v / 100 for v in row]
    return plots.label_curve(list(values), curves, {}, axis, highlighted=len(curves))
