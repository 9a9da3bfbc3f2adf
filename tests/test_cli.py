"""The command line end to end, and its handling of bad input."""

import csv
from pathlib import Path

import numpy as np
import pytest

from vaelab.cli import main

TINY = ["--set", "train.progress=false", "--set", "model.hidden_dims=[32]", "--set", "data.train_limit=600"]


def run_cli(capsys, *args):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def test_train_then_score_every_score(tmp_path, capsys):
    code, out, _ = run_cli(capsys, "train", "--data", "mnist5k", "--latent-dim", "2", "--epochs", "2",
                           "--out", tmp_path / "run", *TINY)
    assert code == 0 and "model in" in out
    for name in ("config.toml", "model.safetensors", "model.json", "checkpoint.safetensors",
                 "history.json", "log.txt"):
        assert (tmp_path / "run" / name).exists(), name
    results = {}
    for score in ("elbo", "iwae", "recon-prob", "recon-error"):
        target = tmp_path / f"{score}.csv"
        code, out, err = run_cli(capsys, "score", tmp_path / "run", "--score", score, "--samples", "10",
                                 "--out", target)
        assert code == 0, err
        rows = list(csv.DictReader(target.open()))
        assert len(rows) == 1000 and set(rows[0]) == {"row", "label", score.replace("-", "_")}
        results[score] = np.array([float(r[score.replace("-", "_")]) for r in rows])
    assert (results["iwae"] <= 0).all() and (results["recon-error"] >= 0).all()
    assert results["iwae"].mean() > results["elbo"].mean()


def test_train_and_score_a_csv_file(tmp_path, capsys, table_csv):
    code, _, err = run_cli(capsys, "train", "--data", table_csv, "--latent-dim", "2", "--epochs", "3",
                           "--batch-size", "32", "--out", tmp_path / "tab", "--set", "train.progress=false")
    assert code == 0, err
    code, out, err = run_cli(capsys, "score", tmp_path / "tab", "--data", table_csv, "--score", "iwae",
                             "--samples", "20", "--out", tmp_path / "s.csv")
    assert code == 0, err
    assert "(all)" in out
    rows = list(csv.DictReader((tmp_path / "s.csv").open()))
    assert len(rows) == 200 and [int(r["row"]) for r in rows] == list(range(200))  # file order
    assert [int(r["label"]) for r in rows[:4]] == [0, 1, 0, 1]


def test_datasets_lists_sources(capsys):
    code, out, _ = run_cli(capsys, "datasets")
    assert code == 0 and "mnist5k" in out and "mnist_5k.csv.gz" in out and "mnist " in out


def test_machine_shows_what_auto_answers_and_measures_again_on_request(capsys, monkeypatch):
    import json

    from vaelab import runtime

    speeds = {"float32": 100.0, "bfloat16": 400.0}
    monkeypatch.setattr(runtime, "matmul_throughput", lambda p, *a, **k: speeds[p])
    monkeypatch.setattr(runtime.matmul_throughput, "cache_clear", lambda: None, raising=False)
    code, out, _ = run_cli(capsys, "machine")
    assert code == 0 and "precision = auto: bfloat16" in out and "device: cpu (cpu | " in out
    kept = runtime.precision_file()
    assert str(kept) in out and list(json.loads(kept.read_text()).values()) == ["bfloat16"]
    speeds["bfloat16"] = 90.0
    assert "precision = auto: bfloat16" in run_cli(capsys, "machine")[1]  # the kept answer
    code, out, _ = run_cli(capsys, "machine", "--measure")
    assert code == 0 and "precision = auto: float32" in out and "bfloat16 0.90x" in out
    assert list(json.loads(kept.read_text()).values()) == ["float32"]
    code, _, err = run_cli(capsys, "machine", "--device", "tpu")
    assert code == 2 and "unknown device 'tpu'" in err


def _bad_inputs(tmp: Path):
    (tmp / "text.csv").write_text("a,b\n1,2\n3,x\n")
    (tmp / "nan.csv").write_text("a,b\n1,2\n3,\n")
    np.savez(tmp / "flat.npz", x=np.zeros(7))
    (tmp / "bad.toml").write_text("[model]\nlatnt_dim = 3\n")
    (tmp / "badval.toml").write_text("[train]\nepochs = -1\n")
    return [
        (["train", "--data", tmp / "missing.csv"], "missing.csv: file not found"),
        (["train", "--data", tmp / "text.csv"], "column 'b' is not numeric"),
        (["train", "--data", tmp / "nan.csv"], "missing or infinite value"),
        (["train", "--data", tmp / "flat.npz"], "flat.npz: x must have one row per sample"),
        (["train", "--config", tmp / "bad.toml"], "bad.toml: unknown key model.latnt_dim"),
        (["train", "--config", tmp / "badval.toml"], "bad" "val.toml: train.epochs must be >= 1"),
        (["train", "--set", "model.activation=\"swish\""], "model.activation must be one of"),
        (["train", "--latent-dim", "0"], "argument --latent-dim: must be >= 1; got 0"),
        (["train", "--set", "model.latent_dim=0"], "model.latent_dim must be >= 1"),
    ]


def test_bad_input_gives_one_line_exit_2_and_no_output(tmp_path, capsys):
    for args, message in _bad_inputs(tmp_path):
        out_dir = tmp_path / "out"
        code, _, err = run_cli(capsys, *args, "--out", out_dir)
        assert code == 2, args
        assert message in err, (message, err)
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
        assert not out_dir.exists(), args


def test_score_refuses_bad_model_and_mismatched_data(tmp_path, capsys, table_csv):
    run_cli(capsys, "train", "--data", "mnist5k", "--epochs", "1", "--out", tmp_path / "r", *TINY)
    model = tmp_path / "r" / "model.safetensors"
    code, _, err = run_cli(capsys, "score", tmp_path / "r", "--data", table_csv, "--out", tmp_path / "s.csv")
    assert code == 2 and "the model expects 784" in err and not (tmp_path / "s.csv").exists()
    model.write_bytes(model.read_bytes()[:1000])
    code, _, err = run_cli(capsys, "score", tmp_path / "r", "--out", tmp_path / "s.csv")
    assert code == 2 and "truncated" in err and str(model) in err and not (tmp_path / "s.csv").exists()


def test_train_refuses_to_overwrite_and_resume_without_checkpoint(tmp_path, capsys):
    args = ["train", "--data", "mnist5k", "--epochs", "1", "--out", tmp_path / "r", *TINY]
    assert run_cli(capsys, *args)[0] == 0
    code, _, err = run_cli(capsys, *args)
    assert code == 2 and "already holds a trained run" in err
    code, _, err = run_cli(capsys, "train", "--out", tmp_path / "empty", "--resume", *TINY)
    assert code == 2 and "no checkpoint" in err


@pytest.mark.parametrize("argv", [["--version"], ["train", "--help"]])
def test_help_and_version(argv, capsys):
    assert main(argv) == 0 and "vaelab" in capsys.readouterr().out


def test_detect_fits_on_one_file_and_scores_another(tmp_path, capsys):
    rng = np.random.default_rng(0)
    basis = rng.normal(size=(2, 6))
    train = rng.normal(size=(300, 2)) @ basis + 0.1 * rng.normal(size=(300, 6))
    test = np.vstack([rng.normal(size=(40, 2)) @ basis + 0.1 * rng.normal(size=(40, 6)),
                      rng.normal(size=(10, 6)) * 2])
    np.savez(tmp_path / "train.npz", x=train)
    header = "a,b,c,d,e,f"
    (tmp_path / "test.csv").write_text(header + "\n" + "\n".join(",".join(f"{v:.5f}" for v in r) for r in test))
    for detector in ("raw-iforest", "fusion-raw-rank"):
        out = tmp_path / f"{detector}.csv"
        code, stdout, err = run_cli(capsys, "detect", "--train", tmp_path / "train.npz", "--test",
                                    tmp_path / "test.csv", "--detector", detector, "--epochs", "20", "--out", out)
        assert code == 0, err
        rows = list(csv.DictReader(out.open()))
        assert len(rows) == 50 and {r["prediction"] for r in rows} <= {"1", "-1"}
        scores = np.array([float(r["score"]) for r in rows])
        assert scores[40:].mean() < scores[:40].mean()  # anomalies score lower
    code, _, err = run_cli(capsys, "detect", "--train", tmp_path / "train.npz", "--test", tmp_path / "test.csv",
                           "--contamination", "0.9", "--out", tmp_path / "x.csv")
    assert code == 2 and "contamination" in err and not (tmp_path / "x.csv").exists()
    code, _, err = run_cli(capsys, "detect", "--train", tmp_path / "train.npz", "--test", tmp_path / "test.csv",
                           "--detector", "nope", "--out", tmp_path / "z.csv")
    assert code == 2 and "unknown detector 'nope'" in err and not (tmp_path / "z.csv").exists()
    np.savez(tmp_path / "narrow.npz", x=train[:, :3])
    code, _, err = run_cli(capsys, "detect", "--train", tmp_path / "narrow.npz", "--test", tmp_path / "test.csv",
                           "--detector", "raw-iforest", "--out", tmp_path / "y.csv")
    assert code == 2 and "test.csv: has 6 features" in err and not (tmp_path / "y.csv").exists()


def test_detect_with_labelled_normal_classes(tmp_path, capsys):
    """m2-classes fits on the training file's label column (each normal row's class) and flags rows of
    no known class; without labels, or with fractional ones, it refuses in one line and writes nothing."""
    rng = np.random.default_rng(2)
    centres = np.eye(5)[:4] * 4
    train = np.vstack([rng.normal(size=(120, 5)) + c for c in centres[:3]])
    labels = np.repeat([3, 5, 7], 120)
    test = np.vstack([rng.normal(size=(30, 5)) + c for c in centres])
    header = "a,b,c,d,e,label"
    (tmp_path / "train.csv").write_text(header + "\n" + "\n".join(
        ",".join(f"{v:.5f}" for v in r) + f",{c}" for r, c in zip(train, labels)))
    np.savez(tmp_path / "test.npz", x=test)
    out = tmp_path / "s.csv"
    code, stdout, err = run_cli(capsys, "detect", "--train", tmp_path / "train.csv", "--test", tmp_path / "test.npz",
                                "--detector", "m2-classes", "--epochs", "20", "--latent-dim", "2", "--out", out)
    assert code == 0, err
    scores = np.array([float(r["score"]) for r in csv.DictReader(out.open())])
    assert scores[90:].mean() < scores[:90].mean()  # the fourth class scores lower
    np.savez(tmp_path / "unlabelled.npz", x=train)
    code, _, err = run_cli(capsys, "detect", "--train", tmp_path / "unlabelled.npz", "--test", tmp_path / "test.npz",
                           "--detector", "m2-classes", "--out", tmp_path / "u.csv")
    assert code == 2 and "unlabelled.npz" in err and "needs each row's class" in err
    assert not (tmp_path / "u.csv").exists()
    code, _, err = run_cli(capsys, "detect", "--train", tmp_path / "unlabelled.npz", "--test", tmp_path / "test.npz",
                           "--detector", "m2-semisupervised", "--epochs", "1", "--out", tmp_path / "s2.csv")
    assert code == 0, err  # the semi-supervised detector's labels are optional: all rows unlabelled
    code, _, err = run_cli(capsys, "detect", "--train", tmp_path / "unlabelled.npz", "--test", tmp_path / "test.npz",
                           "--detector", "m2-clusters", "--epochs", "20", "--latent-dim", "2", "--out", tmp_path / "c.csv")
    assert code == 0, err  # m2-clusters finds the classes itself
    scores = np.array([float(r["score"]) for r in csv.DictReader((tmp_path / "c.csv").open())])
    assert scores[90:].mean() < scores[:90].mean()
    np.savez(tmp_path / "fractional.npz", x=train, y=labels + 0.5)
    code, _, err = run_cli(capsys, "detect", "--train", tmp_path / "fractional.npz", "--test", tmp_path / "test.npz",
                           "--detector", "m2-classes", "--out", tmp_path / "f.csv")
    assert code == 2 and "fractional.npz" in err and "integer labels" in err and not (tmp_path / "f.csv").exists()


@pytest.mark.parametrize("detector", [["--detector", "raw-gmm"], ["--epochs", "2"],
                                      ["--detector", "vae-recon-error@ensemble_seeds=2", "--epochs", "2"]],
                         ids=["raw-gmm", "default", "seed-ensemble"])
def test_detect_saves_a_detector_and_scores_again_from_the_file(tmp_path, capsys, detector):
    """Also the default detector, a fusion of two scores of one VAE (saving it once failed)."""
    rng = np.random.default_rng(1)
    np.savez(tmp_path / "train.npz", x=rng.normal(size=(200, 4)))
    np.savez(tmp_path / "test.npz", x=np.vstack([rng.normal(size=(20, 4)), rng.normal(size=(5, 4)) + 5]))
    code, out, err = run_cli(capsys, "detect", "--train", tmp_path / "train.npz", "--test", tmp_path / "test.npz",
                             *detector, "--save", tmp_path / "det.safetensors", "--out", tmp_path / "a.csv")
    assert code == 0, err
    code, out, err = run_cli(capsys, "detect", "--load", tmp_path / "det.safetensors", "--test",
                             tmp_path / "test.npz", "--out", tmp_path / "b.csv")
    assert code == 0, err
    assert "loaded from" in out
    assert (tmp_path / "a.csv").read_text() == (tmp_path / "b.csv").read_text()
    code, _, err = run_cli(capsys, "detect", "--test", tmp_path / "test.npz", "--out", tmp_path / "c.csv")
    assert code == 2 and "--train" in err and not (tmp_path / "c.csv").exists()


def test_detect_with_a_false_positive_rate_p_values_and_explanations_on_a_named_table(tmp_path, capsys):
    """CSV with column names end to end: held-out calibration, an fpr threshold, a p-value per row, and
    for each flagged row the columns that made it anomalous (here the one that was changed)."""
    rng = np.random.default_rng(2)
    basis = rng.normal(size=(2, 5))
    train = rng.normal(size=(600, 2)) @ basis + 0.05 * rng.normal(size=(600, 5))
    test = rng.normal(size=(60, 2)) @ basis + 0.05 * rng.normal(size=(60, 5))
    test[50:, 3] += 8.0  # ten anomalies, changed in column "pressure"
    header = "temp,flow,speed,pressure,load"
    for name, rows in (("train.csv", train), ("test.csv", test)):
        (tmp_path / name).write_text(header + "\n" + "\n".join(",".join(f"{v:.5f}" for v in r) for r in rows) + "\n")
    code, stdout, err = run_cli(capsys, "detect", "--train", tmp_path / "train.csv", "--test", tmp_path / "test.csv",
                                "--detector", "raw-pca-recon", "--fpr", "0.05", "--explain", "2",
                                "--save", tmp_path / "det.safetensors", "--out", tmp_path / "s.csv")
    assert code == 0, err
    assert "false-positive rate <= 0.05 (conformal, 120 calibration rows)" in stdout
    rows = list(csv.DictReader((tmp_path / "s.csv").open()))
    assert list(rows[0]) == ["row", "score", "p_value", "prediction", "explanation"]
    flagged = [r for r in rows if r["prediction"] == "-1"]
    assert {int(r["row"]) for r in flagged} >= set(range(50, 60))
    assert all(float(r["p_value"]) <= 0.05 for r in flagged)
    assert all(r["explanation"].startswith("pressure=") for r in flagged if int(r["row"]) >= 50)
    assert all(r["explanation"] == "" for r in rows if r["prediction"] == "1")
    # the saved detector keeps its calibration: a stricter rate without refitting
    code, stdout, err = run_cli(capsys, "detect", "--load", tmp_path / "det.safetensors", "--test",
                                tmp_path / "test.csv", "--fpr", "0.01", "--out", tmp_path / "t.csv")
    assert code == 0, err
    strict = list(csv.DictReader((tmp_path / "t.csv").open()))
    assert [r["p_value"] for r in strict] == [r["p_value"] for r in rows]
    assert sum(r["prediction"] == "-1" for r in strict) <= len(flagged)


def test_detect_explains_images_by_pixel(tmp_path, capsys):
    rng = np.random.default_rng(3)
    images = (rng.random((300, 8, 8)) < 0.2).astype(np.uint8) * 255
    test = images[:20].copy()
    test[10:, 2:5, 2:5] = 255  # a bright square
    np.savez(tmp_path / "train.npz", x=images[20:])
    np.savez(tmp_path / "test.npz", x=test)
    code, _, err = run_cli(capsys, "detect", "--train", tmp_path / "train.npz", "--test", tmp_path / "test.npz",
                           "--detector", "vae-recon-error", "--epochs", "5", "--explain", "3",
                           "--out", tmp_path / "s.csv")
    assert code == 0, err
    rows = list(csv.DictReader((tmp_path / "s.csv").open()))
    names = [part.split("=")[0] for r in rows if r["explanation"] for part in r["explanation"].split(";")]
    assert names and all(n.startswith("px_") for n in names)
