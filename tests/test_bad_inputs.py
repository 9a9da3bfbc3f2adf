"""Bad input through the real CLI: every case exits 2 with exactly one stderr line that begins
``vaelab: error:`` and names the file or flag at fault, prints no traceback, and leaves nothing new
or changed on disk. Files of every format, configs, flags, output paths, and edited, truncated or
unsigned model and detector files."""

from __future__ import annotations

import gzip
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

from vaelab import checkpoint as ckpt
from vaelab.cli import main

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--set", "model.hidden_dims=[8]", "--set", "train.progress=false"]


def _table(path: Path, rows: np.ndarray, header: str = "a,b,c") -> Path:
    path.write_text(header + "\n" + "".join(",".join(f"{v:.5g}" for v in row) + "\n" for row in rows))
    return path


def _reseal_edit(path: Path, change: Callable[[dict], None], out: Path) -> Path:
    """A copy of a vaelab file with its metadata changed and re-saved, as a person editing it would
    (the recorded SHA-256 left as it was)."""
    from safetensors.torch import load_file, save_file

    tensors = load_file(path)
    with open(path, "rb") as fh:
        size = int.from_bytes(fh.read(8), "little")
        meta = json.loads(json.loads(fh.read(size))["__metadata__"][ckpt.META_KEY])
    change(meta)
    save_file(tensors, out, metadata={ckpt.META_KEY: json.dumps(meta)})
    return out


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> Path:
    """Good and bad input files, a trained model and a saved detector, made once."""
    d = tmp_path_factory.mktemp("inputs")
    rng = np.random.default_rng(0)
    good = _table(d / "good.csv", rng.normal(size=(120, 3)))
    _table(d / "two_cols.csv", rng.normal(size=(50, 2)), "a,b")
    (d / "text.csv").write_text("a,b,c\n1,2,3\n4,x,6\n")
    (d / "nan.csv").write_text("a,b,c\n1,2,3\n4,,6\n")
    (d / "inf.csv").write_text("a,b,c\n1,2,3\n4,inf,6\n")
    (d / "huge.csv").write_text("a,b,c\n1,2,3\n4,5,1e300\n")
    (d / "empty.csv").write_text("")
    (d / "header_only.csv").write_text("a,b,c\n")
    (d / "label_only.csv").write_text("label\n1\n0\n")
    (d / "float_labels.csv").write_text("a,b,label\n1,2,0.5\n3,4,1\n")
    (d / "one_row.csv").write_text("a,b,c\n1,2,3\n")
    (d / "two_rows.csv").write_text("a,b,c\n1,2,3\n4,5,7\n")
    (d / "binary.csv").write_bytes(bytes(range(256)) * 4)
    (d / "bad.parquet").write_bytes(b"PAR1 not really parquet")
    (d / "garbage.npz").write_bytes(b"PK\x03\x04 garbage")
    (d / "zero.npz").write_bytes(b"")
    np.savez(d / "no_x.npz", z=np.zeros((3, 2)))
    np.savez(d / "flat.npz", x=np.zeros(7))
    np.savez(d / "strings.npz", x=np.array([["a", "b"], ["c", "d"]]))
    np.savez(d / "mismatch.npz", x_train=np.zeros((5, 3)), x_test=np.zeros((5, 4)))
    np.savez(d / "short_y.npz", x=np.zeros((5, 3)), y=np.zeros(4))
    np.savez(d / "nan.npz", x=np.array([[1.0, np.nan], [0.0, 1.0]]))
    np.savez(d / "huge.npz", x=np.array([[1.0, 2.0], [3.0, -1e300]]))
    np.savez(d / "pixels.npz", x=np.full((4, 5, 5), 300, dtype=np.int16))
    np.save(d / "objects.npy", np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    np.save(d / "cut.npy", np.zeros((100, 10)))
    (d / "cut.npy").write_bytes((d / "cut.npy").read_bytes()[:400])
    (d / "notes.txt").write_text("1,2,3\n")
    (d / "empty_dir").mkdir()
    idx = d / "idx"
    idx.mkdir()
    for stem in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
                 "t10k-labels-idx1-ubyte"):
        (idx / f"{stem}.gz").write_bytes(gzip.compress(b"\x00\x00\x08\x01" + (3).to_bytes(4, "big") + b"\x01\x02\x03"))
    (idx / "train-images-idx3-ubyte.gz").write_bytes(b"\x1f\x8b\x08\x00" + b"corrupt gzip stream" * 5)
    bad_magic = d / "bad_magic"
    shutil.copytree(idx, bad_magic)
    (bad_magic / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(b"\x07\x07\x07\x07"))
    truncated = d / "idx_truncated"
    shutil.copytree(idx, truncated)
    (truncated / "train-images-idx3-ubyte.gz").write_bytes(
        gzip.compress(b"\x00\x00\x08\x03" + b"".join(n.to_bytes(4, "big") for n in (10, 28, 28)) + b"\x00" * 99))
    (d / "typo.toml").write_text("[model]\nlatnt_dim = 3\n")
    (d / "invalid.toml").write_text("[model\nlatent_dim = 3\n")
    (d / "latin1.toml").write_bytes("[data]\nname = 'caf\xe9'\n".encode("latin-1"))
    (d / "wrong_type.toml").write_text("[train]\nepochs = 'ten'\n")
    (d / "not_table.toml").write_text("model = 3\n")
    (d / "negative.toml").write_text("[train]\nepochs = -1\n")
    (d / "a_file").write_text("not a directory\n")
    runs = d / "not_a_run"
    runs.mkdir()
    (runs / "metrics.json").write_text("[1, 2, 3]\n")
    broken = d / "broken_run"
    broken.mkdir()
    (broken / "metrics.json").write_text("{not json")

    assert main(["train", "--data", str(good), "--epochs", "1", "--latent-dim", "2", "--out", str(d / "run"),
                 *TINY]) == 0
    assert main(["detect", "--train", str(good), "--test", str(good), "--detector", "raw-gmm", "--calibration", "0",
                 "--save", str(d / "det.safetensors"), "--out", str(d / "scores.csv")]) == 0
    model, det = d / "run" / "model.safetensors", d / "det.safetensors"
    (d / "model_truncated.safetensors").write_bytes(model.read_bytes()[:500])
    flipped = bytearray(model.read_bytes())
    flipped[-3] ^= 0x01
    (d / "model_flipped.safetensors").write_bytes(bytes(flipped))
    (d / "random.safetensors").write_bytes(os.urandom(2000))
    _reseal_edit(model, lambda m: m["data"]["preprocessing"]["mean"].__setitem__(0, 1000.0),
                 d / "model_mean_edited.safetensors")
    _reseal_edit(model, lambda m: m.update(likelihood="bernoulli"), d / "model_likelihood_edited.safetensors")
    _reseal_edit(det, lambda m: m["detector"].update(offset=1e9), d / "det_threshold_edited.safetensors")
    _reseal_edit(det, lambda m: m["detector"]["params"].update(contamination=0.4), d / "det_params_edited.safetensors")
    _reseal_edit(det, lambda m: m.update(format_version=1), d / "det_old_format.safetensors")
    (d / "det_truncated.safetensors").write_bytes(det.read_bytes()[:-100])
    (d / "model_dir_without_model").mkdir()
    return d


def _cases(d: Path, o: Path) -> list[tuple[str, list, str]]:
    """(id, argv, text the one line must contain); ``o`` is a fresh output directory for the case."""
    train = lambda data, *more: ["train", "--data", d / data, "--out", o / "run", *more]  # noqa: E731
    score = lambda *more: ["score", d / "run", "--out", o / "s.csv", *more]  # noqa: E731
    detect = lambda *more: ["detect", "--train", d / "good.csv", "--test", d / "good.csv",  # noqa: E731
                            "--detector", "raw-gmm", "--out", o / "s.csv", *more]
    load = lambda det, *more: ["detect", "--load", d / det, "--test", d / "good.csv", "--out", o / "s.csv", *more]  # noqa: E731,E501
    return [
        # data files of every format
        ("csv-missing", train("missing.csv"), "missing.csv: file not found"),
        ("csv-text", train("text.csv"), "text.csv: column 'b' is not numeric"),
        ("csv-nan", train("nan.csv"), "nan.csv: column 'b' has a missing or infinite value at row 1"),
        ("csv-inf", train("inf.csv"), "inf.csv: column 'b' has a missing or infinite value at row 1"),
        ("csv-huge", train("huge.csv"), "huge.csv: table has the value 1e+300, beyond the float32 range"),
        ("csv-empty", train("empty.csv"), "empty.csv: cannot read table"),
        ("csv-header-only", train("header_only.csv"), "header_only.csv: table has no rows"),
        ("csv-label-only", train("label_only.csv"), "label_only.csv: table has no feature columns"),
        ("csv-float-labels", train("float_labels.csv"), "float_labels.csv: column 'label' must hold integer"),
        ("csv-one-row", train("one_row.csv"), "one_row.csv: a split of"),
        ("csv-binary", train("binary.csv"), "binary.csv:"),
        ("parquet-garbage", train("bad.parquet"), "bad.parquet: cannot read table"),
        ("npz-garbage", train("garbage.npz"), "garbage.npz: not a readable .npz"),
        ("npz-zero-bytes", train("zero.npz"), "zero.npz: not a readable .npz"),
        ("npz-no-x", train("no_x.npz"), "no_x.npz: needs an array 'x' or 'x_train'"),
        ("npz-flat", train("flat.npz"), "flat.npz: x must have one row per sample"),
        ("npz-strings", train("strings.npz"), "strings.npz: x is not numeric"),
        ("npz-mismatch", train("mismatch.npz"), "mismatch.npz: x_test has 4 features but x_train has 3"),
        ("npz-short-y", train("short_y.npz"), "short_y.npz: y must have shape (5,)"),
        ("npz-nan", train("nan.npz"), "nan.npz: x has a NaN or infinite value at row 0, feature 1"),
        ("npz-huge", train("huge.npz"), "huge.npz: x has the value -1e+300"),
        ("npz-pixels", train("pixels.npz"), "pixels.npz: image pixels must lie in [0, 255]"),
        ("npy-objects", train("objects.npy"), "objects.npy: not a readable .npy"),
        ("npy-truncated", train("cut.npy"), "cut.npy: not a readable .npy"),
        ("unknown-suffix", train("notes.txt"), "notes.txt: unknown file type '.txt'"),
        ("idx-empty-dir", train("empty_dir"), "empty_dir: missing train-images-idx3-ubyte.gz"),
        ("idx-corrupt-gzip", train("idx"), "train-images-idx3-ubyte.gz: cannot read IDX file"),
        ("idx-bad-magic", train("bad_magic"), "train-images-idx3-ubyte.gz: not an IDX file"),
        ("idx-truncated", train("idx_truncated"), "train-images-idx3-ubyte.gz: IDX file is truncated"),
        ("mnist-path-missing", ["train", "--data", "mnist", "--set", f"data.path='{d / 'nowhere'}'",
                                "--out", o / "run"], "nowhere: MNIST file or directory not found"),
        # configs
        ("config-missing", ["train", "--config", d / "none.toml", "--out", o / "run"], "none.toml: config file not found"),
        ("config-typo", ["train", "--config", d / "typo.toml", "--out", o / "run"], "typo.toml: unknown key model.latnt_dim"),
        ("config-invalid", ["train", "--config", d / "invalid.toml", "--out", o / "run"], "invalid.toml: not valid TOML"),
        ("config-latin1", ["train", "--config", d / "latin1.toml", "--out", o / "run"], "latin1.toml: not valid TOML (the file is not UTF-8"),  # noqa: E501
        ("config-wrong-type", ["train", "--config", d / "wrong_type.toml", "--out", o / "run"], "wrong_type.toml: train.epochs must be of type int"),  # noqa: E501
        ("config-not-table", ["train", "--config", d / "not_table.toml", "--out", o / "run"], "not_table.toml: model must be a table"),  # noqa: E501
        ("config-negative", ["train", "--config", d / "negative.toml", "--out", o / "run"], "negative.toml: train.epochs must be >= 1"),  # noqa: E501
        ("config-directory", ["train", "--config", d / "empty_dir", "--out", o / "run"], "empty_dir: is a directory"),
        ("set-lr-inf", train("good.csv", "--set", "train.lr=inf"), "train.lr must be a finite number"),
        ("set-lr-nan", train("good.csv", "--set", "train.lr=nan"), "train.lr must be a finite number"),
        ("set-lr-negative", train("good.csv", "--set", "train.lr=-1"), "train.lr must be > 0"),
        ("set-no-equals", train("good.csv", "--set", "train.lr"), "override 'train.lr' must look like section.key=value"),
        ("set-unknown-section", train("good.csv", "--set", "trian.lr=1"), "unknown key trian"),
        ("set-samples-zero", score("--set", "score.iwae_samples=0"), "score.iwae_samples must be >= 1"),
        ("set-threshold", train("good.csv", "--set", "data.threshold=2"), "data.threshold must be in (0, 1)"),
        ("set-device", train("good.csv", "--device", "nonsense"), "unknown device 'nonsense'"),
        # flags
        ("flag-latent-text", train("good.csv", "--latent-dim", "abc"), "argument --latent-dim: must be a whole number"),
        ("flag-epochs-negative", train("good.csv", "--epochs", "-3"), "argument --epochs: must be >= 1; got -3"),
        ("flag-missing-out", ["train", "--data", d / "good.csv"], "the following arguments are required: --out"),
        ("flag-unknown-command", ["trian"], "argument command: invalid choice: 'trian'"),
        ("flag-unknown", train("good.csv", "--frobnicate"), "unrecognized arguments: --frobnicate"),
        ("flag-samples-negative", score("--samples", "-5"), "argument --samples: must be >= 1; got -5"),
        ("flag-score-name", score("--score", "nope"), "argument --score: invalid choice: 'nope'"),
        ("flag-contamination-high", detect("--contamination", "0.7"), "argument --contamination: must be in (0, 0.5)"),
        ("flag-contamination-text", detect("--contamination", "x"), "argument --contamination: must be a number"),
        ("flag-fpr-one", detect("--fpr", "1"), "argument --fpr: must be in (0, 1); got 1"),
        ("flag-detector-setting", detect("--detector", "raw-gmm@colour=2"), "unknown detector setting 'colour'"),
        ("flag-ensemble-seeds", detect("--detector", "vae-iwae@ensemble_seeds=0"), "detector.ensemble_seeds must be >= 1; got 0"),
        ("flag-fpr-negative", detect("--fpr", "-0.1"), "argument --fpr: must be in (0, 1)"),
        ("flag-fpr-and-contamination", detect("--fpr", "0.05", "--contamination", "0.1"), "not both"),
        ("flag-fpr-without-calibration", detect("--fpr", "0.05", "--calibration", "0"), "--fpr needs held-out calibration rows"),  # noqa: E501
        ("flag-calibration-one", detect("--calibration", "1"), "argument --calibration: must be in [0, 1)"),
        ("flag-calibration-too-few", detect("--fpr", "0.001"), "good.csv: 24 calibration rows cannot give a false-positive rate of at most 0.001"),  # noqa: E501
        ("flag-calibration-leaves-no-fit", ["detect", "--train", d / "two_rows.csv", "--test", d / "good.csv",
                                           "--detector", "raw-gmm", "--calibration", "0.6", "--out", o / "s.csv"],
         "two_rows.csv: a calibration share of 0.6 of 2 normal rows leaves 2 to calibrate and 0 to fit on"),
        ("flag-explain-too-many", detect("--explain", "4"), "--explain 4 asks for more features than the 3 of"),
        ("flag-explain-zero", detect("--explain", "0"), "argument --explain: must be >= 1"),
        ("flag-fpr-on-uncalibrated-file", load("det.safetensors", "--fpr", "0.05", "--calibration", "0.2"),
         "det.safetensors: this detector was fitted without calibration rows"),
        ("flag-jobs-zero", ["benchmark", "anomaly", "--jobs", "0", "--out", o / "b"], "--jobs must be >= 1; got 0"),
        ("flag-executor-name", ["run", "--executor", "dask", "--out", o / "r"], "argument --executor: invalid choice: 'dask'"),
        ("flag-address-without-ray", ["benchmark", "anomaly", "--jobs", "2", "--address", "auto", "--out", o / "b"],
         "--address is for --executor ray"),
        ("flag-track-name", ["run", "--track", "wandb", "--out", o / "r"], "argument --track: invalid choice: 'wandb'"),
        ("set-tracking-backend", ["run", "--set", "tracking.backend='neptune'", "--out", o / "r"],
         "tracking.backend must be one of , mlflow"),
        ("flag-train-and-load", detect("--load", d / "det.safetensors"), "give either --train"),
        ("flag-neither", ["detect", "--test", d / "good.csv", "--out", o / "s.csv"], "give either --train"),
        ("flag-detector-name", ["detect", "--train", d / "good.csv", "--test", d / "good.csv", "--detector", "nope",
                                "--out", o / "s.csv"], "unknown detector 'nope'"),
        ("flag-latent-dims", ["benchmark", "anomaly", "--latent-dims", "3,x", "--out", o / "b"],
         "argument --latent-dims: must be comma-separated whole numbers"),
        ("flag-class-absent", ["benchmark", "anomaly", "--classes", "42", "--out", o / "b"],
         "anomaly.classes has 42, which mnist5k does not have"),
        ("flag-severity", ["benchmark", "synthetic", "--severity", "2", "--out", o / "b"], "synthetic.severities"),
        # output paths
        ("out-is-file", ["train", "--data", d / "good.csv", "--out", d / "a_file"], "a_file: exists and is not a directory"),
        ("out-is-dir", ["score", d / "run", "--out", d / "empty_dir"], "empty_dir: is a directory; give a file name"),
        ("out-under-file", ["score", d / "run", "--out", d / "a_file" / "s.csv"], "is a file, not a directory"),
        ("out-parent-missing", ["score", d / "run", "--out", o / "no" / "such" / "s.csv"], "does not exist"),
        ("out-not-writable", ["score", d / "run", "--out", "/proc/vaelab.csv"], "/proc/vaelab.csv: cannot write here"),
        ("out-run-dir-under-file", ["run", "--out", d / "a_file" / "run"], "is a file, not a directory"),
        ("out-benchmark-is-file", ["benchmark", "anomaly", "--out", d / "a_file"], "a_file: exists and is not a directory"),
        ("out-save-same-as-out", detect("--save", o / "s.csv"), "s.csv: is given twice"),
        ("out-overwrites-input", ["detect", "--train", d / "good.csv", "--test", d / "good.csv", "--out",
                                  d / "good.csv"], "good.csv: is given twice"),
        ("out-save-under-file", detect("--save", d / "a_file" / "det.safetensors"), "is a file, not a directory"),
        ("report-on-file", ["report", d / "a_file"], "a_file: not a run directory"),
        ("report-missing", ["report", d / "nowhere"], "nowhere: run directory not found"),
        ("report-metrics-list", ["report", d / "not_a_run"], "not_a_run: metrics.json is not a JSON object"),
        ("report-metrics-invalid", ["report", d / "broken_run"], "broken_run: metrics.json is not valid JSON"),
        # model and detector files
        ("model-truncated", ["score", d / "model_truncated.safetensors", "--out", o / "s.csv"], "model_truncated.safetensors: file is truncated"),  # noqa: E501
        ("model-flipped", ["score", d / "model_flipped.safetensors", "--out", o / "s.csv"], "model_flipped.safetensors: content does not match its recorded SHA-256"),  # noqa: E501
        ("model-random", ["score", d / "random.safetensors", "--out", o / "s.csv"], "random.safetensors:"),
        ("model-mean-edited", ["score", d / "model_mean_edited.safetensors", "--out", o / "s.csv"], "model_mean_edited.safetensors: content does not match"),  # noqa: E501
        ("model-likelihood-edited", ["score", d / "model_likelihood_edited.safetensors", "--out", o / "s.csv"], "model_likelihood_edited.safetensors: content does not match"),  # noqa: E501
        ("model-is-detector", ["score", d / "det.safetensors", "--out", o / "s.csv"], "det.safetensors: not a model file"),
        ("model-dir-empty", ["score", d / "model_dir_without_model", "--out", o / "s.csv"], "model.safetensors: file not found"),  # noqa: E501
        ("model-wrong-features", score("--data", d / "two_cols.csv"), "two_cols.csv: has 2 features"),
        ("detector-truncated", load("det_truncated.safetensors"), "det_truncated.safetensors:"),
        ("detector-threshold-edited", load("det_threshold_edited.safetensors"), "det_threshold_edited.safetensors: content does not match"),  # noqa: E501
        ("detector-params-edited", load("det_params_edited.safetensors"), "det_params_edited.safetensors: content does not match"),  # noqa: E501
        ("detector-old-format", load("det_old_format.safetensors"), "det_old_format.safetensors: unsupported format version 1"),  # noqa: E501
        ("detector-is-model", load("run/model.safetensors"), "model.safetensors: not a detector file"),
        ("detector-wrong-features", ["detect", "--load", d / "det.safetensors", "--test", d / "two_cols.csv",
                                     "--out", o / "s.csv"], "two_cols.csv: has 2 features; the detector expects 3"),
        ("detect-train-test-mismatch", ["detect", "--train", d / "good.csv", "--test", d / "two_cols.csv",
                                        "--out", o / "s.csv"], "two_cols.csv: has 2 features; the training file has 3"),
        ("detect-one-row", ["detect", "--train", d / "one_row.csv", "--test", d / "good.csv", "--detector", "raw-gmm",
                            "--out", o / "s.csv"], "one_row.csv: Found array with 1 sample(s)"),
        ("detect-huge-test", detect()[:4] + [d / "huge.csv"] + detect()[5:], "huge.csv: table has the value 1e+300"),
    ]


def _snapshot(*roots: Path) -> dict[str, tuple[int, int]]:
    return {str(p): (p.stat().st_size, p.stat().st_mtime_ns) for root in roots for p in root.rglob("*")}


CASE_IDS = [case[0] for case in _cases(Path("d"), Path("o"))]


def test_there_are_more_than_sixty_cases():
    assert len(CASE_IDS) >= 60 and len(set(CASE_IDS)) == len(CASE_IDS)


@pytest.mark.parametrize("case", CASE_IDS)
def test_bad_input_gives_one_line_exit_2_and_leaves_nothing(case, inputs, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # anything written to a default place would land here
    out = tmp_path / "out"
    out.mkdir()
    _, argv, expected = next(c for c in _cases(inputs, out) if c[0] == case)
    before = _snapshot(inputs, tmp_path)
    code = main([str(a) for a in argv])
    stdout, stderr = capsys.readouterr()
    lines = stderr.strip().splitlines()
    assert code == 2, (case, stderr)
    assert len(lines) == 1 and lines[0].startswith("vaelab: error: "), stderr
    assert expected in lines[0], (expected, lines[0])
    assert "Traceback" not in stderr + stdout
    assert _snapshot(inputs, tmp_path) == before, "files were left behind or changed"


def test_an_unsigned_file_is_refused_where_a_signing_key_is_set(inputs, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv(ckpt.SIGNING_KEY_ENV, "team secret")
    code = main(["detect", "--load", str(inputs / "det.safetensors"), "--test", str(inputs / "good.csv"),
                 "--out", str(tmp_path / "s.csv")])
    err = capsys.readouterr().err
    assert code == 2 and "det.safetensors: file is not signed" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "s.csv").exists()
    # a file written under the key loads under it, and a wrong key refuses it
    args = ["detect", "--train", str(inputs / "good.csv"), "--test", str(inputs / "good.csv"), "--detector",
            "raw-gmm", "--save", str(tmp_path / "signed.safetensors"), "--out", str(tmp_path / "a.csv")]
    assert main(args) == 0
    reload = ["detect", "--load", str(tmp_path / "signed.safetensors"), "--test", str(inputs / "good.csv"),
              "--out", str(tmp_path / "b.csv")]
    assert main(reload) == 0
    monkeypatch.setenv(ckpt.SIGNING_KEY_ENV, "another secret")
    assert main(reload[:-1] + [str(tmp_path / "c.csv")]) == 2
    assert "signature does not verify" in capsys.readouterr().err


def test_detect_writes_the_detector_and_the_scores_together_or_neither(inputs, tmp_path, capsys, monkeypatch):
    """A failure while writing the second of the two outputs leaves neither (a full disk, simulated)."""
    import errno

    from vaelab import fileio

    real_replace = os.replace

    def full_on_csv(src, dst):
        if str(dst).endswith(".csv"):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_replace(src, dst)

    monkeypatch.setattr(fileio.os, "replace", full_on_csv)
    code = main(["detect", "--train", str(inputs / "good.csv"), "--test", str(inputs / "good.csv"), "--detector",
                 "raw-gmm", "--save", str(tmp_path / "d.safetensors"), "--out", str(tmp_path / "s.csv")])
    err = capsys.readouterr().err
    assert code == 2 and "s.csv: cannot write (No space left on device)" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == [], "one output was left without the other"


@pytest.mark.slow
@pytest.mark.parametrize("case", ["csv-huge", "flag-samples-negative", "model-mean-edited", "out-is-dir"])
def test_the_installed_command_prints_the_same_single_line(case, inputs, tmp_path):
    """The same through a real process: what a user's shell sees (stderr, exit status)."""
    out = tmp_path / "out"
    out.mkdir()
    _, argv, expected = next(c for c in _cases(inputs, out) if c[0] == case)
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    done = subprocess.run([sys.executable, "-m", "vaelab", *map(str, argv)], capture_output=True, text=True,
                          env=env, cwd=tmp_path)
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and expected in done.stderr, done.stderr
    assert list(out.iterdir()) == []


@pytest.fixture
def tiny_filesystem(tmp_path):
    """A 256 KiB tmpfs mounted for the test (needs the right to mount; skipped without it)."""
    mount = tmp_path / "tiny"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.decode().strip()}); the simulated ENOSPC tests stand")
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=True)


def test_a_full_disk_leaves_the_previous_files_and_nothing_partial(inputs, tiny_filesystem, tmp_path, capsys):
    wide = _table(tmp_path / "wide.csv", np.random.default_rng(1).normal(size=(64, 100)),
                  ",".join(f"f{i}" for i in range(100)))
    det, scores = tiny_filesystem / "det.safetensors", tiny_filesystem / "scores.csv"
    small = ["detect", "--train", str(wide), "--test", str(wide), "--detector", "raw-gmm", "--save", str(det),
             "--out", str(scores)]
    assert main(small) == 0
    before = _snapshot(tiny_filesystem)
    big = ["detect", "--train", str(wide), "--test", str(wide), "--detector", "vae-recon-error", "--epochs", "1",
           "--save", str(det), "--out", str(scores)]  # a 100-400-5 VAE's weights: about 700 KiB
    code = main(big)
    err = capsys.readouterr().err
    assert code == 2 and "No space left on device" in err and len(err.strip().splitlines()) == 1, err
    assert _snapshot(tiny_filesystem) == before
    code = main(["train", "--data", str(wide), "--epochs", "1", "--out", str(tiny_filesystem / "run"),
                 "--set", "train.progress=false"])
    err = capsys.readouterr().err
    assert code == 2 and "No space left on device" in err, err
    assert _snapshot(tiny_filesystem) == before  # no run directory without a finished epoch in it
