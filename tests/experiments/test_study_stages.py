"""The study's stage functions, read from the shared tiny study run."""

import json

import numpy as np
import torch

from vaelab.experiments.units import UnitStore


def test_scores_stage_keeps_every_test_point_and_its_code(study_run):
    config_rows = json.loads((study_run / "metrics.json").read_text())["data"]["n_test"]
    for d in (2, 3):
        with np.load(study_run / "scores" / f"z{d}.npz") as z:
            assert z["rank"].shape == z["elbo"].shape == (config_rows,)
            assert z["latent_mean"].shape == (config_rows, d)
            assert z["rank"].mean() > z["elbo"].mean()  # the IWAE bound sits above the ELBO on average


def test_every_stage_record_lists_files_that_exist(study_run):
    store = UnitStore(study_run)
    records = [json.loads(p.read_text()) for p in (study_run / "units").rglob("*.json")]
    assert {"train/z2", "scores/z3", "figures/z2", "tsne/pixels", "maps", "curves", "anomaly",
            "semisupervised"} <= {r["name"] for r in records}
    for r in records:
        assert all((store.root / f).exists() for f in r["files"]), r["name"]


def test_tsne_stage_records_its_method(study_run):
    records = {r["name"]: r for r in (json.loads(p.read_text()) for p in (study_run / "units").rglob("*.json"))}
    method = records["tsne/pixels"]["result"]["method"]
    assert method == ("exact" if torch.cuda.is_available() else "openTSNE")
    points = np.load(study_run / "embeddings" / "tsne_pixels.npy")
    assert points.shape[1] == 2 and np.isfinite(points).all()
