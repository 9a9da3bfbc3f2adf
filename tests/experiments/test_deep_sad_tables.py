"""Deep SAD's tables and figures from stored cell results (no training)."""

import pytest

from vaelab.config import DataConfig
from vaelab.experiments.deep_sad import (DEFAULT_PRIOR, MATCHED_PRIOR, SUPERVISED, UNSUPERVISED, GridSettings,
                                         grid_units)
from vaelab.experiments.deep_sad_tables import class_table, experiment_figure, experiment_means, experiment_table

COUNTS = {c: 10 for c in range(10)}


def _results(classes, value=lambda name, c: 0.9):
    """Stored results of every cell of the grid: AUROC ``value(detector, normal class)`` against every class."""
    units = grid_units(GridSettings(DataConfig(name="mnist5k")), classes)
    out = {}
    for name, unit in units.items():
        c = unit.params["normal"]
        if unit.function.endswith("run_unsupervised"):
            names = [UNSUPERVISED]
        else:
            point = unit.params["point"]
            names = [DEFAULT_PRIOR] + ([MATCHED_PRIOR] if point["pollution"] > 0 and point["known"] == 1 else []) \
                + ([SUPERVISED] if point["labelled"] > 0 and point["known"] > 0 else [])
        out[name] = {"per_class": {n: {str(k): value(n, c) for k in range(10) if k != c} for n in names},
                     "seconds": {n: 2.0 for n in names}}
    return out


def test_means_average_over_normal_classes_and_mark_missing_scores():
    results = _results([0, 1], lambda name, c: 0.8 + 0.1 * c)
    means = experiment_means(results, "labelled", [0, 1], "vae-recon-error", COUNTS)
    assert means[DEFAULT_PRIOR] == pytest.approx([0.85] * 5)
    assert means[SUPERVISED][0] is None and means[SUPERVISED][1] == pytest.approx(0.85)
    assert MATCHED_PRIOR not in means  # experiment 1 has no pollution


def test_tables_hold_every_detector_the_published_rows_and_the_seconds():
    results = _results([0, 1])
    table = experiment_table(results, "labelled", [0, 1], "vae-recon-error", COUNTS)
    assert "| SemiSupervisedDetector (M2) | 90.0 | 90.0 | 90.0 | 90.0 | 90.0 |" in table
    assert "| supervised classifier (MLP) | – | 90.0 |" in table and "| Deep SAD (published) | 92.8 |" in table
    assert "| compute seconds per cell (mean) | 2 | 4 |" in table  # detector alone at 0, with the classifier after
    assert "| unsupervised baseline (vae-recon-error) |" in table  # named after the baseline the tables read
    polluted = experiment_table(results, "pollution", [0, 1], "vae-recon-error", COUNTS)
    assert "| SemiSupervisedDetector, prior = anomaly share | – | 90.0 |" in polluted and "published" not in polluted
    assert class_table(results, "classes", [0, 1], "vae-recon-error", COUNTS).count("\n") == 4


def test_the_figure_draws_every_detector(tmp_path):
    fig = experiment_figure(_results([0]), "labelled", [0], "vae-recon-error", COUNTS)
    labels = [line.get_label() for line in fig.axes[0].get_lines()]
    assert "SemiSupervisedDetector (M2)" in labels and "Deep SAD (published)" in labels


def test_seeds_are_units_of_their_own_and_the_tables_average_them():
    from vaelab.experiments.deep_sad import GridPoint, cell_aurocs, stored_seeds

    units = grid_units(GridSettings(DataConfig(name="mnist5k")), [3], ["labelled"], seeds=2)
    assert units["normal3-l0.05-p0-k1"].params["seed"] == 3 and units["normal3-l0.05-p0-k1-s1"].params["seed"] == 13
    assert units["normal3-p0-vae-recon-error-s1"].params["seed"] == 13 and len(units) == 2 * (5 + 1)
    first = _results([0, 1], lambda name, c: 0.8)
    second = {f"{k}-s1": v for k, v in _results([0, 1], lambda name, c: 0.9 + 0.05 * c).items()}
    results = {**first, **second}
    point = GridPoint(0.05, 0.0, 1)
    assert stored_seeds(results, 1, point) == 2 and stored_seeds(first, 1, point) == 1
    assert cell_aurocs(results, 1, point, "vae-recon-error", COUNTS)[DEFAULT_PRIOR] == pytest.approx(0.875)
    assert cell_aurocs(results, 1, point, "vae-recon-error", COUNTS, seed=1)[DEFAULT_PRIOR] == pytest.approx(0.95)
    table = experiment_table(results, "labelled", [0, 1], "vae-recon-error", COUNTS)
    assert "| SemiSupervisedDetector (M2) | 86.2 | 86.2 |" in table  # (0.8 + (0.9 + 0.95) / 2) / 2
    assert "| SemiSupervisedDetector (M2), sd over 2 seeds | 8.8 | 8.8 |" in table  # sd of 0.8 and 0.925
    assert "sd over" not in experiment_table(first, "labelled", [0, 1], "vae-recon-error", COUNTS)
