"""Anomaly benchmark tables: class means best first, and the published comparison only for all ten digits."""

import numpy as np

from vaelab.experiments.anomaly_tables import markdown_tables, published_comparison, summary


def _rows(classes):
    rows = []
    for c in classes:
        for det, d, auc in (("vae-iwae", 5, 0.6 + 0.01 * c), ("raw-kde", 0, 0.8)):
            rows.append({"protocol": "loco", "class": c, "latent_dim": d, "detector": det, "auroc": auc, "ap": 0.5})
    return rows


def test_summary_averages_over_classes_best_first():
    out = summary(_rows([0, 2]))
    assert [r["detector"] for r in out] == ["raw-kde", "vae-iwae"]
    assert out[1]["mean_auroc"] == np.mean([0.60, 0.62]) and out[1]["min_auroc"] == 0.60 and out[1]["n_classes"] == 2


def test_markdown_and_published_comparison():
    assert "| raw-kde | raw | 0.800 | 0.800 | **0.800** |" in markdown_tables(_rows([0, 1]))
    assert published_comparison(_rows([0, 1])) == ""  # published numbers cover all ten digits
    text = published_comparison(_rows(range(10)))
    assert "An & Cho 2015" in text and "vaelab raw-kde — best mean" in text


def test_seeds_are_averaged_per_class_and_their_spread_reported():
    rows = [{"protocol": "loco", "class": c, "latent_dim": 5, "detector": "vae-iwae", "seed": seed,
             "auroc": 0.6 + 0.1 * seed, "ap": 0.5} for c in (0, 1) for seed in (0, 1, 2)]
    rows += [{"protocol": "loco", "class": c, "latent_dim": 0, "detector": "raw-kde", "seed": 0, "auroc": 0.75,
              "ap": 0.5} for c in (0, 1)]
    out = {r["detector"]: r for r in summary(rows)}
    assert out["vae-iwae"]["mean_auroc"] == np.mean([0.6, 0.7, 0.8]) and out["vae-iwae"]["n_seeds"] == 3
    assert out["vae-iwae"]["seed_sd"] == np.std([0.6, 0.7, 0.8]) and out["raw-kde"]["seed_sd"] == 0
    table = markdown_tables(rows)
    assert "| vae-iwae | 5 | 0.700 | 0.700 | **0.700** | 0.082 |" in table
