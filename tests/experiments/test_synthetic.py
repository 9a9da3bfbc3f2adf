"""`vaelab benchmark synthetic`: every type x detector row, labels kept, probe and shifts, resume."""

import csv
import json

import numpy as np
import pytest

from vaelab.cli import main

TYPES = ["noise", "occlusion", "blur"]
ARGS = ["--types", ",".join(TYPES), "--severity", "0.5", "--severity", "1", "--latent-dims", "2",
        "--set", "data.train_limit=600", "--set", "train.epochs=3", "--set", "train.progress=false",
        "--set", "model.hidden_dims=[32]", "--set", "detector.iwae_samples=8", "--set", "score.iwae_samples=8",
        "--set", "anomaly.latent_estimators=[\"gmm\",\"ocsvm\"]",
        "--set", "anomaly.raw_estimators=[\"iforest\",\"pca-recon\"]", "--set", "synthetic.tsne_normals=100"]


@pytest.fixture(scope="module")
def synthetic_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("synthetic") / "bench"
    assert main(["benchmark", "synthetic", "--out", str(out), *ARGS]) == 0
    return out


def test_rows_cover_every_type_detector_and_severity(synthetic_run):
    with (synthetic_run / "results.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    detectors = {(r["detector"], r["latent_dim"]) for r in rows}
    assert {("vae-iwae", "2"), ("latent-gmm", "2"), ("raw-pca-recon", "0"), ("fusion-latent-rank", "2")} <= detectors
    assert len(rows) == 2 * len(TYPES) * len(detectors)
    assert {r["type"] for r in rows} == set(TYPES)
    noise = [float(r["auroc"]) for r in rows if r["type"] == "noise" and r["severity"] == "1.0"
             and r["detector"] == "vae-iwae"]
    assert noise[0] > 0.9  # heavy pixel noise is far off the data for any likelihood


def test_probe_shift_and_figures(synthetic_run):
    result = json.loads((synthetic_run / "results.json").read_text())
    assert {p["features"] for p in result["probe"]} == {"pixels", "z2"}
    for p in result["probe"]:
        assert 0 <= p["accuracy"] <= 1 and p["chance"] == pytest.approx(1 / (len(TYPES) + 1))
        assert set(p["per_type"]) == {*TYPES, "normal"}
    assert all(s["shift"] >= 0 for s in result["shift"]) and len(result["shift"]) == 2 * len(TYPES)
    for name in ("synthetic_examples.png", "synthetic_explain.png", "synthetic_auroc_sev0.5.png", "synthetic_auroc_sev1.png",
                 "synthetic_tsne.png", "synthetic_shift.png"):
        assert (synthetic_run / "figures" / name).stat().st_size > 0
    assert "| noise |" in (synthetic_run / "results.md").read_text()


def test_finished_cells_are_reused(synthetic_run, capsys):
    cells = sorted((synthetic_run / "cells").glob("*.npz"))
    stamps = [c.stat().st_mtime_ns for c in cells]
    assert main(["benchmark", "synthetic", "--out", str(synthetic_run), *ARGS]) == 0
    assert [c.stat().st_mtime_ns for c in cells] == stamps
    assert "up to date" in capsys.readouterr().err


def test_tabular_data_is_refused_in_one_line(tmp_path, capsys):
    path = tmp_path / "t.csv"
    rng = np.random.default_rng(0)
    path.write_text("a,b,label\n" + "".join(f"{a:.3f},{b:.3f},{i % 2}\n" for i, (a, b) in
                                            enumerate(rng.normal(size=(80, 2)))))
    code = main(["benchmark", "synthetic", "--data", str(path), "--out", str(tmp_path / "o"), *ARGS])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err[-1].startswith("vaelab: error:") and "image data" in err[-1]
    assert not (tmp_path / "o").exists()  # refused before anything was trained or written


def test_the_probe_in_the_span_of_its_rows_is_the_plain_probe():
    """probe_columns rotates the standardized rows onto their principal axes first: the same L2
    logistic regression (its weights lie in the rows' span), so the same predictions."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from vaelab.config import Config
    from vaelab.experiments.synthetic import EvalSet, probe_columns, probe_rows

    rng = np.random.default_rng(0)
    kinds = np.repeat(["normal", "noise", "blur"], [150, 25, 25])
    x = rng.normal(size=(200, 300)) + (kinds == "noise")[:, None] * 0.4 - (kinds == "blur")[:, None] * 0.4
    config = Config.from_dict({"synthetic": {"types": ["noise", "blur"], "severities": [1.0], "probe_folds": 4}})
    ev = EvalSet(x, kinds, np.ones(200), None)
    column = probe_columns(config, ev, x)["probe/1"]
    idx = probe_rows(config, ev, 1.0)
    assert np.isnan(np.delete(column, idx)).all() and len(idx) == 75  # 50 anomalies and 25 normals
    plain = cross_val_predict(make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)), x[idx], kinds[idx],
                              cv=StratifiedKFold(4, shuffle=True, random_state=config.synthetic.seed))
    assert np.mean(np.unique(kinds)[column[idx].astype(int)] == plain) >= 0.97


def _rows_of(out, detector):
    with (out / "results.csv").open() as fh:
        return {(r["type"], r["severity"]): float(r["auroc"]) for r in csv.DictReader(fh) if r["detector"] == detector
                and r["latent_dim"] == "2"}


def test_cluster_cells_give_m2_clusters_and_the_gate_its_choice(tmp_path):
    """anomaly.clusters adds a cell per latent size fitting m2-clusters on the training rows; with
    anomaly.cluster_gate its row is m2-clusters-or-fusion: M2's scores where the clusters are stable
    (here: a threshold of -1, always), the VAE cell's fusion-recon-kde-rank where not (above 1, never).
    The model cells are shared by all three runs: only the cluster cell is computed again."""
    from vaelab.experiments.detector_scores import load_scores

    args = [*ARGS[:ARGS.index("anomaly.latent_estimators=[\"gmm\",\"ocsvm\"]")], "anomaly.latent_estimators=[\"kde\"]",
            "--set", "anomaly.clusters=true", "--set", "anomaly.loco_epochs=3", "--set", "detector.cluster_share=0.05",
            "--set", "anomaly.raw_estimators=[\"iforest\"]", "--set", "synthetic.tsne_normals=100"]
    out = tmp_path / "bench"
    assert main(["benchmark", "synthetic", "--out", str(out), *args]) == 0
    plain = _rows_of(out, "m2-clusters")
    _, tests, _ = load_scores(out / "cells" / "z2-mc.npz")
    assert set(tests) == {"m2-clusters"} and len(plain) == 2 * len(TYPES)
    vae_cell = (out / "cells" / "z2.npz").stat().st_mtime_ns
    gate = ["--set", "anomaly.cluster_gate=true"]
    assert main(["benchmark", "synthetic", "--out", str(out), *args, *gate, "--set", "detector.cluster_stability=-1"]) == 0
    assert _rows_of(out, "m2-clusters") == {}
    assert _rows_of(out, "m2-clusters-or-fusion") == pytest.approx(plain, abs=1e-3)  # M2 as fitted without the gate
    assert main(["benchmark", "synthetic", "--out", str(out), *args, *gate, "--set", "detector.cluster_stability=1.01"]) == 0
    _, tests, refs = load_scores(out / "cells" / "z2-mc.npz")
    assert tests == {} and refs == {}  # no M2 fitted
    assert _rows_of(out, "m2-clusters-or-fusion") == _rows_of(out, "fusion-recon-kde-rank")
    assert (out / "cells" / "z2.npz").stat().st_mtime_ns == vae_cell
