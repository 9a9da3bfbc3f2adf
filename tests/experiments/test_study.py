"""`vaelab run` end to end on a tiny config, stage skipping, the report and the ranking."""

import json
import math
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import TINY_STUDY
from vaelab.cli import main


def _finite_numbers(obj):
    if isinstance(obj, dict):
        for v in obj.values():
            yield from _finite_numbers(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from _finite_numbers(v)
    elif isinstance(obj, (int, float)) and not isinstance(obj, bool):
        yield obj




def test_every_artifact_exists(study_run):
    for name in ("config.toml", "metrics.json", "report.html", "units/train/z2.json", "units/anomaly.json",
                 "models/z2/model.safetensors", "models/z3/history.json", "scores/z2.npz",
                 "embeddings/tsne_pixels.npy", "embeddings/tsne_z3.npy"):
        assert (study_run / name).exists(), name
    figures = {p.name for p in (study_run / "figures").iterdir()}
    for name in ("samples_z2.png", "traversal_z2_01.png", "traversal_z3_12.png", "rank_least_z3.png",
                 "rank_most_z2.png", "rank_conditional_z2.png", "explain_least_z3.png", "explain_conditional_z2.png",
                 "hist_z3.png", "tsne.png",
                 "latent_scatter_z3.png", "training_curves.png"):
        assert name in figures, name


def test_metrics_are_finite_and_the_report_shows_every_figure(study_run):
    metrics = json.loads((study_run / "metrics.json").read_text())
    numbers = list(_finite_numbers(metrics["study"]))
    assert numbers and all(math.isfinite(v) for v in numbers)
    assert set(metrics["study"]) == {"2", "3"}
    html = (study_run / "report.html").read_text()
    listed = {f["file"] for f in metrics["figures"]}
    on_disk = {f"figures/{p.name}" for p in (study_run / "figures").iterdir()}
    for sub in ("anomaly", "synthetic"):
        on_disk |= {f"{sub}/figures/{p.name}" for p in (study_run / sub / "figures").iterdir()}
    assert listed == on_disk
    assert {f["file"] for f in metrics["figures"] if f["section"] == "Anomaly detection"} == {
        "anomaly/figures/anomaly_auroc_loco.png", "anomaly/figures/anomaly_roc_loco.png"}
    assert metrics["anomaly"]["classes"] == [1, 7] and "Anomaly detection" in html
    assert {b["type"] for b in metrics["synthetic"]["best"]} == {"noise", "occlusion"}
    assert "Synthetic anomalies" in html and "Linear probe" in html
    semi = metrics["semisupervised"]
    assert semi["labels"] == 100 and 0 <= semi["error_rate"] <= 1 and len(semi["curve"]["m2"]) == 2
    assert {"figures/m2_conditional.png", "figures/m2_style.png", "figures/ssl_anomaly_curve.png"} <= listed
    assert "Semi-supervised" in html
    for file in listed:
        assert f'alt="{file}"' in html
    assert html.count("data:image/png;base64,") == len(listed)
    assert "<table>" in html and "latent_dims" in html  # summary table and config


def test_least_likely_points_have_the_lowest_scores(study_run):
    metrics = json.loads((study_run / "metrics.json").read_text())
    for d in ("2", "3"):
        scores = np.load(study_run / "scores" / f"z{d}.npz")["rank"]
        shown = metrics["study"][d]["least_likely"]
        assert np.allclose(metrics["study"][d]["least_likely_scores"], scores[shown])
        assert scores[shown].max() <= np.delete(scores, shown).min()
        assert list(scores[shown]) == sorted(scores[shown])


def test_rerun_skips_finished_stages_and_a_change_redoes_only_what_it_feeds(study_run, capsys):
    capsys.readouterr()
    assert main(["run", "--out", str(study_run), *TINY_STUDY]) == 0
    err = capsys.readouterr().err
    assert "running" not in err and err.count("up to date") >= 9
    assert main(["run", "--out", str(study_run), *TINY_STUDY, "--set", "study.n_ranked=9"]) == 0
    err = capsys.readouterr().err
    assert "[figures/z2] running" in err and "[train/z2] up to date" in err and "[scores/z3] up to date" in err


def test_a_lost_output_is_rebuilt(study_run, capsys):
    (study_run / "embeddings" / "tsne_z2.npy").unlink()
    capsys.readouterr()
    assert main(["run", "--out", str(study_run), *TINY_STUDY]) == 0
    err = capsys.readouterr().err
    assert "[tsne/z2] running" in err and "[tsne/z3] up to date" in err




def _results(run: Path) -> dict:
    """metrics.json without what differs between runs of the same study (times, when, where)."""
    import json

    metrics = json.loads((run / "metrics.json").read_text())
    metrics.pop("run")
    for row in metrics["study"].values():
        row.pop("train_seconds", None)
    return metrics


@pytest.mark.slow
def test_a_study_on_local_jobs_runs_its_stages_together_and_equals_the_serial_one(tmp_path, capsys):
    from vaelab.cli import main

    assert main(["run", "--out", str(tmp_path / "serial"), "--threads", "1", *TINY_STUDY]) == 0
    assert main(["run", "--out", str(tmp_path / "jobs"), "--jobs", "2", *TINY_STUDY]) == 0
    log = capsys.readouterr().err
    submitted = [line.split("]")[0].lstrip("[") for line in log.splitlines() if "submitted (2 local jobs)" in line]
    # every stage's units went to the workers in one pass: the pixel t-SNE (needs no model) was submitted
    # before the models finished training, the anomaly and synthetic cells and M2 beside the figures
    assert {"tsne/pixels", "semisupervised", "loco_c1_z2", "raw"} <= set(submitted)
    assert submitted.index("tsne/pixels") < submitted.index("scores/z2")
    assert _results(tmp_path / "jobs") == _results(tmp_path / "serial")
