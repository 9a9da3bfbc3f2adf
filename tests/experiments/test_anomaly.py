"""The anomaly benchmark: cells, resume, fusions equal to FusionDetector, tables, CLI."""

import csv
import json
import re

import numpy as np
import pytest

from tests.conftest import tiny_config
from vaelab.cli import main
from vaelab.data import load_grey
from vaelab.detectors import FUSIONS, FusionDetector, RawDetector, VAEDetector, fuse, reference_split, with_derived
from vaelab.evaluation import detection_metrics
from vaelab.experiments.anomaly import CLUSTER_CELL, ENSEMBLE, LABELLED_CELL, RAW, AnomalyBenchmark, Cell, cell_unit
from vaelab.experiments.detector_scores import load_scores
from vaelab.scores import SCORES

ANOMALY = {"protocols": ["loco", "ovr"], "classes": [1, 7], "latent_dims": [2], "loco_epochs": 2,
           "ovr_epochs": 3, "latent_estimators": ["iforest", "gmm", "ocsvm"],
           "raw_estimators": ["iforest", "pca-recon"], "likelihood_ratio": True}
SETTINGS = {"anomaly": ANOMALY, "study": {"latent_dims": [2]}, "detector": {"iwae_samples": 5, "reference_rows": 200}}


def npz(out, cell):
    return out / cell.file


@pytest.fixture(scope="module")
def bench_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("anomaly")
    bench = AnomalyBenchmark(tiny_config(**SETTINGS), out)
    return bench, bench.run(), out


def test_every_cell_detector_and_fusion_has_a_row(bench_run):
    bench, rows, out = bench_run
    vae = [f"vae-{s}" for s in SCORES if s != "regret"] + ["latent-iforest", "latent-gmm", "latent-ocsvm"]
    vae += ["likelihood-complexity", "likelihood-typicality", "likelihood-ratio"]
    fusions = [n for n, (parts, _) in FUSIONS.items() if set(parts) <= {*vae, "raw-iforest"}]
    expected = {(p, c, 0, f"raw-{e}") for p in ("loco", "ovr") for c in (1, 7) for e in ("iforest", "pca-recon")}
    expected |= {(p, c, 2, d) for p in ("loco", "ovr") for c in (1, 7) for d in vae + fusions}
    assert {(r["protocol"], r["class"], r["latent_dim"], r["detector"]) for r in rows} == expected
    for r in rows:
        assert 0 <= r["auroc_low"] <= r["auroc"] <= r["auroc_high"] <= 1 and 0 < r["ap"] <= 1
    with (out / "results.csv").open() as fh:
        assert len(list(csv.DictReader(fh))) == len(rows)
    summary = json.loads((out / "results.json").read_text())["summary"]
    assert {s["n_classes"] for s in summary} == {2}
    assert "| vae-iwae | 2 |" in (out / "results.md").read_text()
    for p in ("loco", "ovr"):
        assert (out / "figures" / f"anomaly_auroc_{p}.png").stat().st_size > 0
        assert (out / "figures" / f"anomaly_roc_{p}.png").stat().st_size > 0


def test_cells_hold_the_protocol_labels(bench_run):
    bench, _, out = bench_run
    y_test = load_grey(bench.config.data).test.y
    is_anomaly, tests, refs = load_scores(npz(out, Cell("loco", 7, 2)))
    assert np.array_equal(is_anomaly, (y_test == 7).astype(int))
    is_anomaly, _, _ = load_scores(npz(out, Cell("ovr", 7, RAW)))
    assert np.array_equal(is_anomaly, (y_test != 7).astype(int))
    assert all(len(v) == len(y_test) for v in tests.values())
    assert all(len(v) == 200 for v in refs.values())


def test_finished_cells_are_kept_and_changed_settings_redo_only_their_cells(bench_run, tmp_path):
    bench, rows, out = bench_run
    stamp = {c.name: npz(out, c).stat().st_mtime_ns for c in bench.cells()}
    again = AnomalyBenchmark(tiny_config(**SETTINGS), out)
    assert again.run() == rows
    assert stamp == {c.name: npz(out, c).stat().st_mtime_ns for c in again.cells()}
    changed = AnomalyBenchmark(tiny_config(**{**SETTINGS, "anomaly": {**ANOMALY, "protocols": ["loco"], "classes": [1]},
                                              "score": {"recon_samples": 6}}), out)
    changed.run()
    assert npz(out, Cell("loco", 1, RAW)).stat().st_mtime_ns == stamp["loco_c1_raw"]
    assert npz(out, Cell("loco", 1, 2)).stat().st_mtime_ns != stamp["loco_c1_z2"]


def test_benchmark_fusion_is_the_fusion_detector():
    """Fusing stored component scores gives what FusionDetector computes itself without a refit (a
    benchmark cell trains on the rows left after the reference hold-out; on full MNIST leaving one
    class out the hold-out is under a tenth, where refit='auto' does not refit either)."""
    rng = np.random.default_rng(0)
    x = rng.random((300, 12))
    test = np.vstack([rng.random((40, 12)), rng.random((10, 12)) ** 4])
    vae = VAEDetector(score_name="iwae", latent_dim=2, hidden_dims=(16,), epochs=2, n_samples=5)
    raw = RawDetector("iforest", pca_components=None)
    fusion = FusionDetector((vae, raw), rule="rank", reference_rows=100, refit="never").fit(x)
    fit, held = reference_split(len(x), 100, 0)  # the parts never see the reference rows
    ref = x[held]
    v, r = vae.fit(x[fit]), raw.fit(x[fit])
    tests = {"vae-iwae": v.score_samples(test), "raw-iforest": r.score_samples(test)}
    refs = {"vae-iwae": v.score_samples(ref), "raw-iforest": r.score_samples(ref)}
    assert np.allclose(with_derived(tests, refs)[0]["fusion-raw-rank"], fusion.score_samples(test))
    assert np.allclose(fuse(list(tests.values()), list(refs.values()), "rank"), fusion.score_samples(test))


def test_cli_benchmark_anomaly(tmp_path, capsys):
    args = ["benchmark", "anomaly", "--out", str(tmp_path / "b"), "--protocol", "ovr", "--classes", "0",
            "--latent-dims", "2", "--set", "data.train_limit=600", "--set", "model.hidden_dims=[16]",
            "--set", "anomaly.ovr_epochs=1", "--set", "detector.iwae_samples=4", "--set", "train.progress=false",
            "--set", "anomaly.latent_estimators=[\"gmm\"]", "--set", "anomaly.raw_estimators=[\"pca-recon\"]"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "vae-iwae" in out and "raw-pca-recon" in out and "mean AUROC" in out


def test_cli_benchmark_anomaly_names_what_a_labelled_detector_is_given(tmp_path, capsys):
    args = ["benchmark", "anomaly", "--out", str(tmp_path / "b"), "--protocol", "loco", "--classes", "1",
            "--latent-dims", "2", "--set", "data.train_limit=600", "--set", "model.hidden_dims=[16]",
            "--set", "anomaly.loco_epochs=1", "--set", "detector.iwae_samples=4", "--set", "train.progress=false",
            "--set", "anomaly.likelihood_ratio=false", "--set", "anomaly.labelled_normals=true",
            "--set", "anomaly.latent_estimators=[\"gmm\"]", "--set", "anomaly.raw_estimators=[\"pca-recon\"]"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "m2-classes (given the normal rows' classes)" in out and "vae-iwae" in out


def test_cli_benchmark_anomaly_refuses_unlabelled_data(tmp_path, capsys):
    path = tmp_path / "x.npy"
    np.save(path, np.random.default_rng(0).random((50, 4)))
    assert main(["benchmark", "anomaly", "--data", str(path), "--out", str(tmp_path / "b")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("vaelab: error:") and "labels" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "b").exists()


def test_ensembles_over_latent_sizes_fuse_each_detector_by_rank(tmp_path):
    anomaly = {**ANOMALY, "protocols": ["loco"], "classes": [1], "latent_dims": [2, 3], "likelihood_ratio": False}
    bench = AnomalyBenchmark(tiny_config(**{**SETTINGS, "anomaly": anomaly, "study": {"latent_dims": [2, 3]}}), tmp_path)
    rows = bench.run()
    ensemble = {r["detector"] for r in rows if r["latent_dim"] == ENSEMBLE}
    assert ensemble == {r["detector"] for r in rows if r["latent_dim"] == 2}
    y, tests2, refs2 = load_scores(npz(tmp_path, Cell("loco", 1, 2)))
    _, tests3, refs3 = load_scores(npz(tmp_path, Cell("loco", 1, 3)))
    expected = fuse([tests2["vae-iwae"], tests3["vae-iwae"]], [refs2["vae-iwae"], refs3["vae-iwae"]], "rank")
    row = next(r for r in rows if r["latent_dim"] == ENSEMBLE and r["detector"] == "vae-iwae")
    assert row["auroc"] == detection_metrics(y, expected)["auroc"]
    assert "| vae-iwae | all |" in (tmp_path / "results.md").read_text()


def test_training_seeds_are_cells_of_their_own_and_the_base_seed_keeps_its_names(tmp_path):
    anomaly = {**ANOMALY, "protocols": ["loco"], "classes": [1], "likelihood_ratio": False, "seeds": [0, 5]}
    bench = AnomalyBenchmark(tiny_config(**{**SETTINGS, "anomaly": anomaly}), tmp_path)
    assert [c.name for c in bench.cells()] == ["loco_c1_raw", "loco_c1_z2", "loco_c1_z2_s5"]
    rows = bench.run()
    assert {r["seed"] for r in rows if r["latent_dim"] == 2} == {0, 5, None}  # None: the ensembles over seeds
    assert {r["seed"] for r in rows if r["latent_dim"] == RAW} == {0}
    y, base, base_refs = load_scores(npz(tmp_path, Cell("loco", 1, 2)))
    _, other, other_refs = load_scores(npz(tmp_path, Cell("loco", 1, 2, seed=5)))
    assert not np.array_equal(base["vae-iwae"], other["vae-iwae"])  # another VAE, the same split
    # each detector fused over the seeds by the rank rule against the shared held-out references
    ensembled = next(r for r in rows if r["detector"] == "vae-iwae (ensemble of 2 seeds)")
    fused = fuse([base["vae-iwae"], other["vae-iwae"]], [base_refs["vae-iwae"], other_refs["vae-iwae"]], "rank")
    assert ensembled["seed"] is None and ensembled["auroc"] == detection_metrics(y, fused)["auroc"]
    assert {r["detector"] for r in rows if r["seed"] is None} == {
        f"{r['detector']} (ensemble of 2 seeds)" for r in rows if r["seed"] == 5}
    assert re.search(r"\| vae-iwae \(ensemble of 2 seeds\) \| 2 \|.*\| – \|", (tmp_path / "results.md").read_text())
    summary = {(s["detector"], s["latent_dim"]): s for s in json.loads((tmp_path / "results.json").read_text())["summary"]}
    assert summary[("vae-iwae", 2)]["n_seeds"] == 2 and summary[("vae-iwae", 2)]["seed_sd"] >= 0


def test_a_cell_carries_the_likelihood_regret_only_where_the_run_asks_for_it():
    from vaelab.config import Config
    from vaelab.experiments.anomaly import cell_unit

    plain = tiny_config()
    regret = tiny_config(anomaly={"likelihood_regret": True})
    vae_cell, raw_cell = Cell("loco", 1, 2), Cell("loco", 1, RAW)
    assert "likelihood_regret" not in cell_unit(plain, vae_cell).params["config"]["anomaly"]  # old fingerprints hold
    assert Config.from_dict(cell_unit(regret, vae_cell).params["config"]).anomaly.likelihood_regret
    assert cell_unit(regret, raw_cell).fingerprint == cell_unit(plain, raw_cell).fingerprint


def test_labelled_normals_add_the_class_conditional_detector_to_leave_one_class_out_only(tmp_path):
    """anomaly.labelled_normals: a cell per latent size that fits m2-classes on the split's training rows
    (less the references) with their classes; its scores are the detector's own on the test rows."""
    from vaelab.detectors import make_detector
    from vaelab.experiments.anomaly import protocol_split

    anomaly = {**ANOMALY, "classes": [1], "likelihood_ratio": False, "labelled_normals": True,
               "latent_estimators": ["gmm"], "raw_estimators": ["pca-recon"]}
    config = tiny_config(**{**SETTINGS, "anomaly": anomaly})
    bench = AnomalyBenchmark(config, tmp_path)
    assert [c.name for c in bench.cells()] == ["loco_c1_raw", "loco_c1_z2", "loco_c1_z2-cc", "ovr_c1_raw", "ovr_c1_z2"]
    rows = bench.run()
    assert {(r["protocol"], r["latent_dim"]) for r in rows if r["detector"] == "m2-classes"} == {("loco", 2)}
    y, tests, refs = load_scores(npz(tmp_path, Cell("loco", 1, 2, LABELLED_CELL)))
    split = protocol_split(load_grey(config.data), "loco", 1, 0.0, config.train.seed)
    assert 1 not in set(split.y_train) and len(split.y_train) == len(split.x_train)
    fit, held = reference_split(len(split.x_train), config.detector.reference_rows, config.train.seed)
    det = make_detector("m2-classes", config, latent_dim=2, epochs=ANOMALY["loco_epochs"], seed=config.train.seed,
                        calibration=0.0).fit(split.x_train[fit], split.y_train[fit])
    assert np.allclose(tests["m2-classes"], det.score_samples(split.x_test), atol=1e-5)
    assert np.allclose(refs["m2-classes"], det.score_samples(split.x_train[held]), atol=1e-5)
    row = next(r for r in rows if r["detector"] == "m2-classes")
    assert row["auroc"] == detection_metrics(y, tests["m2-classes"])["auroc"] and row["seconds"] > 0
    assert "| m2-classes (given the normal rows' classes) | 2 |" in (tmp_path / "results.md").read_text()


def test_clusters_add_the_cluster_detector_to_both_protocols_without_touching_other_cells(tmp_path):
    """anomaly.clusters: a cell per latent size that fits m2-clusters, without labels, on the split's
    training rows (less the references); the other cells keep their fingerprints, and the cluster
    settings are in the new cells' own."""
    from vaelab.detectors import make_detector
    from vaelab.experiments.anomaly import protocol_split

    anomaly = {**ANOMALY, "classes": [1], "likelihood_ratio": False, "latent_estimators": ["gmm"],
               "raw_estimators": ["pca-recon"]}
    plain = tiny_config(**{**SETTINGS, "anomaly": anomaly})
    config = tiny_config(**{**SETTINGS, "anomaly": {**anomaly, "clusters": True}, "detector": {
        **SETTINGS["detector"], "cluster_share": 0.05}})
    bench = AnomalyBenchmark(config, tmp_path)
    assert [c.name for c in bench.cells()] == ["loco_c1_raw", "loco_c1_z2", "loco_c1_z2-mc",
                                               "ovr_c1_raw", "ovr_c1_z2", "ovr_c1_z2-mc"]
    for cell in (Cell("loco", 1, RAW), Cell("loco", 1, 2), Cell("ovr", 1, 2)):
        assert cell_unit(config, cell).fingerprint == cell_unit(plain, cell).fingerprint
    assert cell_unit(config, Cell("ovr", 1, 2, CLUSTER_CELL)).params["config"]["detector"]["cluster_share"] == 0.05
    rows = bench.run()
    assert {(r["protocol"], r["latent_dim"]) for r in rows if r["detector"] == "m2-clusters"} == {("loco", 2), ("ovr", 2)}
    _, tests, _ = load_scores(npz(tmp_path, Cell("loco", 1, 2, CLUSTER_CELL)))
    split = protocol_split(load_grey(config.data), "loco", 1, 0.0, config.train.seed)
    fit, _ = reference_split(len(split.x_train), config.detector.reference_rows, config.train.seed)
    det = make_detector("m2-clusters", config, latent_dim=2, epochs=ANOMALY["loco_epochs"], seed=config.train.seed,
                        calibration=0.0).fit(split.x_train[fit])
    assert np.allclose(tests["m2-clusters"], det.score_samples(split.x_test), atol=1e-5)
    assert bench.store.result(cell_unit(config, Cell("loco", 1, 2, CLUSTER_CELL)))["n_clusters"] == det.n_clusters_
    assert "| m2-clusters | 2 |" in (tmp_path / "results.md").read_text()  # unsupervised: no "given" note


def test_published_comparison_never_calls_a_labelled_detector_the_best():
    from vaelab.experiments.anomaly_tables import published_comparison

    rows = [{"protocol": "loco", "class": c, "latent_dim": 5, "detector": det, "auroc": value, "seed": 0}
            for c in range(10) for det, value in (("m2-classes", 0.9), ("m2-classes (ensemble of 3 seeds)", 0.91),
                                                  ("vae-iwae", 0.7), ("vae-elbo", 0.6))]
    text = published_comparison(rows)
    assert "| vaelab vae-iwae (latent 5) — best mean |" in text
    assert "| vaelab m2-classes (given the normal rows' classes) (latent 5) |" in text
    assert "| vaelab m2-classes (ensemble of 3 seeds) (given the normal rows' classes) (latent 5) |" in text


def test_labelled_normals_refuse_pollution():
    from vaelab.errors import ConfigError

    with pytest.raises(ConfigError, match="labelled_normals needs anomaly.pollution = 0"):
        tiny_config(**{**SETTINGS, "anomaly": {**ANOMALY, "labelled_normals": True, "pollution": 0.1}})


def test_refit_scores_new_rows_with_fits_on_every_row_and_keeps_the_held_out_references(tmp_path):
    """anomaly.refit: as FusionDetector(refit=...), the cell's detectors are fitted again on every
    training row to score the test rows; the references keep the scores of the fits that never saw
    them. Without the setting the cells keep their fingerprints."""
    from vaelab.detectors import make_detector
    from vaelab.experiments.anomaly import protocol_split
    from vaelab.detectors.corrections import compression_nats, feature_range
    from vaelab.experiments.detector_scores import COMPLEXITY

    anomaly = {**ANOMALY, "protocols": ["ovr"], "classes": [1], "likelihood_ratio": False,
               "latent_estimators": ["gmm"], "raw_estimators": ["pca-recon"]}
    plain = tiny_config(**{**SETTINGS, "anomaly": anomaly})
    never = tiny_config(**{**SETTINGS, "anomaly": {**anomaly, "refit": "never"}})
    config = tiny_config(**{**SETTINGS, "anomaly": {**anomaly, "refit": "always"}})
    for cell in (Cell("ovr", 1, RAW), Cell("ovr", 1, 2)):
        assert cell_unit(never, cell).fingerprint == cell_unit(plain, cell).fingerprint
        assert cell_unit(config, cell).fingerprint != cell_unit(plain, cell).fingerprint
    AnomalyBenchmark(plain, tmp_path / "plain").run()
    bench = AnomalyBenchmark(config, tmp_path / "refit")
    bench.run()
    split = protocol_split(load_grey(config.data), "ovr", 1, 0.0, config.train.seed)
    everything = split.x_train
    vae = make_detector("vae-iwae", config, latent_dim=2, epochs=ANOMALY["ovr_epochs"], seed=config.train.seed,
                        calibration=0.0).fit(everything)
    raw = make_detector("raw-pca-recon", config, calibration=0.0).fit(everything)
    for cell, name, det in ((Cell("ovr", 1, 2), "vae-recon-error", vae), (Cell("ovr", 1, RAW), "raw-pca-recon", raw)):
        _, tests, refs = load_scores(npz(tmp_path / "refit", cell))
        _, plain_tests, plain_refs = load_scores(npz(tmp_path / "plain", cell))
        expected = det.score_with(split.x_test, "recon-error") if det is vae else det.score_samples(split.x_test)
        assert np.allclose(tests[name], expected, atol=1e-5)
        assert not np.allclose(tests[name], plain_tests[name], atol=1e-5)
        assert np.allclose(refs[name], plain_refs[name], atol=1e-5)  # the references: the fits without them
        assert bench.store.result(cell_unit(config, cell))["n_train"] == len(everything)
    _, held = reference_split(len(everything), SETTINGS["detector"]["reference_rows"], config.train.seed)
    _, tests, refs = load_scores(npz(tmp_path / "refit", Cell("ovr", 1, RAW)))  # no model: one feature range
    low, high = feature_range(everything)
    assert np.allclose(refs[COMPLEXITY], compression_nats(everything[held], low, high))
    assert np.allclose(tests[COMPLEXITY], compression_nats(split.x_test, low, high))


def test_cluster_gate_takes_m2_clusters_where_stable_and_the_fusion_elsewhere(tmp_path):
    """anomaly.cluster_gate: the cluster cell measures its clusters' stability and fits M2 only where
    they are stable enough (detector.cluster_stability); the row m2-clusters-or-fusion is then its
    scores, else the VAE cell's fusion-recon-kde-rank. With a refit the fit on every row decides."""
    from vaelab.errors import ConfigError

    anomaly = {**ANOMALY, "protocols": ["ovr"], "classes": [1], "likelihood_ratio": False,
               "latent_estimators": ["kde"], "raw_estimators": ["pca-recon"], "clusters": True, "refit": "always"}
    detector = {**SETTINGS["detector"], "cluster_share": 0.05}
    plain = tiny_config(**{**SETTINGS, "anomaly": anomaly, "detector": detector})
    AnomalyBenchmark(plain, tmp_path / "plain").run()
    _, plain_tests, plain_refs = load_scores(npz(tmp_path / "plain", Cell("ovr", 1, 2, CLUSTER_CELL)))
    for threshold, clusters_kept in ((-1.0, True), (1.01, False)):  # above 1: never the clusters
        config = tiny_config(**{**SETTINGS, "anomaly": {**anomaly, "cluster_gate": True},
                                "detector": {**detector, "cluster_stability": threshold}})
        cell = Cell("ovr", 1, 2, CLUSTER_CELL)
        assert cell_unit(config, Cell("ovr", 1, 2)).fingerprint == cell_unit(plain, Cell("ovr", 1, 2)).fingerprint
        assert cell_unit(config, cell).fingerprint != cell_unit(plain, cell).fingerprint
        two_maps = tiny_config(**{**SETTINGS, "anomaly": {**anomaly, "cluster_gate": True},
                                  "detector": {**detector, "cluster_stability": threshold, "cluster_maps": 2}})
        assert "cluster_maps" not in cell_unit(two_maps, cell).params  # the fingerprints of before the setting
        assert cell_unit(config, cell).params["cluster_maps"] == config.detector.cluster_maps == 3
        out = tmp_path / str(threshold)
        bench = AnomalyBenchmark(config, out)
        rows = bench.run()
        stability = bench.store.result(cell_unit(config, cell))["cluster_stability"]
        assert -1.0 <= stability <= 1.0
        _, tests, refs = load_scores(npz(out, cell))
        names = {r["detector"] for r in rows}
        assert "m2-clusters-or-fusion" in names and "m2-clusters" not in names
        gated = next(r for r in rows if r["detector"] == "m2-clusters-or-fusion")
        y, scores, _ = bench.scores("ovr", 1)
        if clusters_kept:  # M2 fitted as without the gate, on the clusters found once
            assert np.allclose(tests["m2-clusters"], plain_tests["m2-clusters"], atol=1e-5)
            assert np.allclose(refs["m2-clusters"], plain_refs["m2-clusters"], atol=1e-5)
            assert np.array_equal(scores[2]["m2-clusters-or-fusion"], tests["m2-clusters"])
        else:  # no M2 fitted: the fallback's scores
            assert tests == {} and refs == {}
            assert np.array_equal(scores[2]["m2-clusters-or-fusion"], scores[2]["fusion-recon-kde-rank"])
        assert gated["auroc"] == detection_metrics(y, scores[2]["m2-clusters-or-fusion"])["auroc"]
    with pytest.raises(ConfigError, match="cluster_gate needs anomaly.clusters"):
        tiny_config(**{**SETTINGS, "anomaly": {**ANOMALY, "cluster_gate": True}})
    with pytest.raises(ConfigError, match="add \"kde\""):
        AnomalyBenchmark(tiny_config(**{**SETTINGS, "anomaly": {**anomaly, "cluster_gate": True,
                                                                "latent_estimators": ["gmm"]}}), tmp_path / "bad")
