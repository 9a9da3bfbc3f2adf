"""Deep SAD's grid: its points and ratios, the exact pooling of per-class AUROCs, and cells end to end."""

import numpy as np
import pytest

from vaelab.config import DataConfig
from vaelab.evaluation import auroc, class_aurocs, pooled_auroc
from vaelab.experiments.deep_sad import (DEFAULT_PRIOR, EXPERIMENTS, MATCHED_PRIOR, SUPERVISED, UNSUPERVISED,
                                         GridPoint, GridSettings, cell_aurocs, class_counts, grid_points, grid_split,
                                         grid_units, known_classes, labelled_count)
from vaelab.experiments.deep_sad_tables import experiment_means, experiment_table
from vaelab.experiments.units import UnitStore


def test_the_three_experiments_share_their_common_points():
    points = grid_points()
    assert len(points) == 13 and len(set(points)) == 13  # 15 settings, two of them shared
    assert GridPoint(.05, 0, 1) in EXPERIMENTS["labelled"][2] and GridPoint(.05, 0, 1) in EXPERIMENTS["pollution"][2]
    assert GridPoint(.05, .1, 1) in EXPERIMENTS["pollution"][2] and GridPoint(.05, .1, 1) in EXPERIMENTS["classes"][2]
    assert [p for p in points if p.matched_prior] == [GridPoint(.05, p, 1) for p in (.01, .05, .1, .2)]


def test_known_classes_are_the_next_digits():
    assert known_classes(8, 3) == (9, 0, 1) and known_classes(4, 0) == ()


def _data(n_per_class=120):
    rng = np.random.default_rng(0)
    y_train, y_test = np.repeat(np.arange(10), n_per_class), np.repeat(np.arange(10), 20)
    x_train = rng.random((len(y_train), 3))
    x_train[:, 0] = np.arange(len(y_train))  # row ids
    return x_train, y_train, rng.random((len(y_test), 3)), y_test


@pytest.mark.parametrize("point", [GridPoint(.1, 0, 1), GridPoint(.05, .2, 3), GridPoint(.2, .1, 2)])
def test_a_split_has_the_ratios_of_its_point(point):
    x_train, y_train, x_test, y_test = _data()
    split = grid_split(x_train, y_train, x_test, y_test, 4, point, seed=1)
    source = y_train[split.x_train[:, 0].astype(int)]
    labelled, unlabelled = split.y_train == 1, split.y_train == -1
    assert labelled.mean() == pytest.approx(point.labelled, abs=0.01)  # gamma_l: of all training rows
    assert np.mean(source[unlabelled] != 4) == pytest.approx(point.pollution, abs=0.01)  # gamma_p: of the unlabelled
    assert set(source[labelled]) <= set(known_classes(4, point.known))
    assert (split.y_train != 0).all()  # no labelled normals in Deep SAD's grid


def test_no_known_classes_means_no_labels():
    split = grid_split(*_data(), 2, GridPoint(.05, .1, 0), seed=0)
    assert (split.y_train == -1).all()
    assert labelled_count(.05, 950) == 50 and labelled_count(0, 950) == 0


def test_pooled_class_aurocs_equal_the_auroc_of_the_union():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 5, 400)
    score = rng.normal(size=400) - 0.3 * y
    per_class, counts = class_aurocs(y, 0, score), class_counts(y)
    for classes in ([1, 2, 3, 4], [2], [1, 4]):
        rows = np.isin(y, [0, *classes])
        assert pooled_auroc(per_class, counts, classes) == pytest.approx(auroc(y[rows] != 0, score[rows]), abs=1e-12)


def test_cell_aurocs_group_the_known_and_the_novel_classes():
    per_class = {c: c / 10 for c in range(1, 10)}
    results = {"normal0-l0.05-p0.1-k2": {"per_class": {DEFAULT_PRIOR: {str(c): v for c, v in per_class.items()}}},
               "normal0-p0.1-det": {"per_class": {UNSUPERVISED: per_class}}}
    counts = {c: 10 for c in range(10)}
    out = cell_aurocs(results, 0, GridPoint(.05, .1, 2), "det", counts)
    assert out[DEFAULT_PRIOR + "_known"] == pytest.approx(0.15) and out[DEFAULT_PRIOR] == pytest.approx(0.5)
    assert out[UNSUPERVISED + "_novel"] == pytest.approx(np.mean(range(3, 10)) / 10)


@pytest.mark.slow
def test_the_grid_runs_end_to_end_and_tabulates(tmp_path):
    settings = GridSettings(DataConfig(name="mnist5k", binarize="none", train_limit=2000), epochs=1, latent_dim=2,
                            hidden_dims=(16,), iwae_samples=4, detector_epochs=1)
    units = grid_units(settings, [3], ["pollution"])
    assert len(units) == 10  # five points, five unsupervised fits (one per pollution)
    store = UnitStore(tmp_path)
    store.run_all(list(units.values()))
    results = {name: store.result(unit) for name, unit in units.items()}
    counts = {c: 10 for c in range(10)}
    means = experiment_means(results, "pollution", [3], settings.detector, counts)
    assert means[MATCHED_PRIOR][0] is None and all(0 <= v <= 1 for v in means[MATCHED_PRIOR][1:])
    assert all(0 <= v <= 1 for v in means[SUPERVISED] + means[DEFAULT_PRIOR] + means[UNSUPERVISED])
    polluted = results["normal3-l0.05-p0.1-k1"]["normal_share"]  # the label-free check, per detector
    assert set(polluted) == {DEFAULT_PRIOR, MATCHED_PRIOR} and all(0 <= v <= 1 for v in polluted.values())
    table = experiment_table(results, "pollution", [3], settings.detector, counts)
    assert "| SemiSupervisedDetector (M2) |" in table and "compute seconds per cell" in table


def test_labelled_normals_label_normal_rows_of_the_same_split():
    x_train, y_train, x_test, y_test = _data()
    point = GridPoint(.05, .1, 1)
    plain = grid_split(x_train, y_train, x_test, y_test, 4, point, seed=1)
    labelled = grid_split(x_train, y_train, x_test, y_test, 4, point, seed=1, labelled_normals=0.1)
    assert np.array_equal(plain.x_train, labelled.x_train)  # the same rows, anomaly labels and pollution
    assert np.array_equal(plain.y_train == 1, labelled.y_train == 1)
    normals = labelled.y_train == 0
    assert normals.sum() == 12 and (y_train[labelled.x_train[normals, 0].astype(int)] == 4).all()  # 10% of 120
    settings = GridSettings(DataConfig(name="mnist5k"), labelled_normals=0.1)
    with_normals, without = grid_units(settings, [3], ["pollution"]), grid_units(GridSettings(DataConfig(name="mnist5k")),
                                                                                 [3], ["pollution"])
    assert with_normals["normal3-l0.05-p0.1-k1"].params["labelled_normals"] == 0.1
    assert "labelled_normals" not in without["normal3-l0.05-p0.1-k1"].params  # earlier runs keep their fingerprints
    baseline = "normal3-p0.1-vae-recon-error"
    assert with_normals[baseline].fingerprint == without[baseline].fingerprint  # the unsupervised fit is shared
