"""The side-by-side comparison: its cells, its tables and the rule that ranks them."""

import numpy as np
import pytest

from vaelab.experiments.comparison import (GROUPS, ComparisonSettings, comparison_table, comparison_units,
                                           group_means, mean_ranks, task_table)
from vaelab.experiments.units import UnitStore


def test_units_name_every_task_detector_and_seed():
    units = comparison_units(ComparisonSettings(), ["raw-kde", "vae-elbo@gaussian"], ["textures"], [0, 1])
    assert len(units) == len(GROUPS["textures"]) * 2 * 2
    assert "textures/brick/vae-elbo@gaussian/s1" in units
    assert units["textures/brick/vae-elbo@gaussian/s1"].name == "textures_brick_vae-elbo-gaussian_s1"
    with pytest.raises(ValueError, match="unknown group"):
        comparison_units(ComparisonSettings(), ["raw-kde"], ["cifar"], [0])


def test_group_means_ranks_and_tables():
    groups = ["textures", "tables"]
    cells = {}
    for group in groups:
        for i, task in enumerate(GROUPS[group]):
            cells[(group, task, "a", 0)] = 0.9
            cells[(group, task, "a", 1)] = 0.7  # seeds average first: 0.8
            cells[(group, task, "b", 0)] = 0.6 if group == "textures" else 0.95
    means = group_means(cells, ["a", "b"], groups)
    assert means["a"] == pytest.approx({"textures": 0.8, "tables": 0.8})
    assert means["b"] == pytest.approx({"textures": 0.6, "tables": 0.95})
    assert mean_ranks(means, groups) == {"a": 1.5, "b": 1.5}
    table = comparison_table(means, groups, {"a": 3.0, "b": 4.0})
    assert "| a | 0.800 | 0.800 | 0.800 | 0.800 | 1.5 | 3 |" in table
    assert "| b | 0.600 | 0.950 | 0.775 | 0.600 | 1.5 | 4 |" in table
    assert "| brick | 0.800 | 0.600 |" in task_table(cells, ["a", "b"], "textures")


def test_cells_run_vaelab_and_pyod_detectors_on_the_same_split(tmp_path):
    pytest.importorskip("pyod", reason="the compare extra is not installed (pip install 'vaelab[compare]')")
    units = comparison_units(ComparisonSettings(epochs=2), ["vae-recon-error@gaussian", "raw-kde", "pyod-autoencoder"],
                             ["tables"], [0])
    store = UnitStore(tmp_path)
    wine = [u for key, u in units.items() if "/wine/" in key]
    results = [store.run(u) for u in wine]
    assert all(r["train_rows"] == 35 and r["test_rows"] == 143 for r in results)  # wine: 59 of its 178 rows are class 0
    assert all(0.5 < r["auroc"] <= 1 for r in results)
    assert store.run(wine[0]) == results[0]  # a finished cell is reused
    assert np.isfinite([r["seconds"] for r in results]).all()


def test_a_compared_name_carries_detector_settings():
    from vaelab.detectors import registered_variant

    name, config = registered_variant("fusion-recon-typicality-fisher@fusion_refit=auto")
    assert name == "fusion-recon-typicality-fisher" and config.detector.fusion_refit == "auto"
    name, config = registered_variant("vae-elbo@gaussian@reference_rows=500")
    assert config.detector.likelihood == "gaussian" and config.detector.reference_rows == 500
    assert registered_variant("raw-kde")[1].detector == __import__("vaelab.config").config.DetectorConfig()
    with pytest.raises(ValueError, match="unknown detector setting 'refit'"):
        registered_variant("raw-kde@refit=auto")
    unit = comparison_units(ComparisonSettings(), ["raw-kde@fusion_refit=auto"], ["textures"], [0])
    assert list(unit.values())[0].name == "textures_brick_raw-kde-fusion_refit-auto_s0"


def test_a_cells_fingerprint_holds_the_detector_settings_it_is_built_with():
    """A default changed since a cell ran makes the cell run again instead of being reused."""
    units = comparison_units(ComparisonSettings(), ["raw-kde", "raw-kde@pca_components=10", "pyod-vae"],
                             ["textures"], [0])
    plain, fewer, pyod = (units[f"textures/brick/{d}/s0"] for d in ("raw-kde", "raw-kde@pca_components=10", "pyod-vae"))
    assert plain.params["detector_settings"]["pca_components"] == 50
    assert fewer.params["detector_settings"]["pca_components"] == 10
    assert "detector_settings" not in pyod.params
