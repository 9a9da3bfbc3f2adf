"""The ``vaelab`` command: parses arguments, builds a config, calls the library.

Exit codes: 0 success, 2 bad input (one line on stderr), 130 interrupted.

About 380 lines: one parser and one short function per subcommand, each of
which only builds a config and makes one call into the library.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import signal
import sys
import threading
from pathlib import Path
from typing import Any, Sequence

from vaelab import __version__
from vaelab.config import DEFAULT_DETECTOR, Config, load_config
from vaelab.arguments import Parser, contamination, distinct_outputs, fraction, int_list, positive_int, share
from vaelab.errors import ConfigError, DataError, VaelabError
from vaelab.fileio import check_output


def _toml_value(value: object) -> str:
    return json.dumps(value) if isinstance(value, str) else str(value).lower() if isinstance(value, bool) else str(value)


def build_config(args: argparse.Namespace, flags: dict[str, str]) -> Config:
    """Config file, then ``--set`` overrides, then the named flags (``flags``: attr -> key)."""
    overrides = list(getattr(args, "set", None) or [])
    for attr, key in flags.items():
        value = getattr(args, attr, None)
        if value is not None:
            overrides.append(f"{key}={_toml_value(value)}")
    return load_config(getattr(args, "config", None), overrides)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, help="TOML config file")
    parser.add_argument("--set", action="append", metavar="KEY=VALUE",
                        help="override a setting, e.g. --set model.hidden_dims=[400] (repeatable)")


def _scale_out(parser: argparse.ArgumentParser) -> None:
    """Where the units of work run (vaelab.experiments.executors) and whether the run is tracked."""
    from vaelab.experiments.executors import add_executor_arguments

    add_executor_arguments(parser)
    parser.add_argument("--track", choices=["mlflow"], help="record the run in MLflow (MLFLOW_TRACKING_URI, "
                        "default a local store in ./mlruns)")


def tracker(args: argparse.Namespace, config: Config):
    """A function that records a finished directory in the tracking backend the flags or the config name
    (checked now, before any work), or does nothing."""
    backend = getattr(args, "track", None) or config.tracking.backend
    if not backend:
        return lambda run_dir, kind: None
    from vaelab.report.tracking import require_mlflow, track

    require_mlflow()
    return lambda run_dir, kind: track(run_dir, kind, config.to_dict(), config.tracking.experiment)


def executor_of(args: argparse.Namespace):
    """The executor the flags name (None: serial in this process)."""
    from vaelab.experiments.executors import executor_from_arguments

    return executor_from_arguments(args)


def _benchmark_common(parser: argparse.ArgumentParser, data_help: str) -> None:
    _common(parser)
    _scale_out(parser)
    parser.add_argument("--data", help=data_help)
    parser.add_argument("--data-path", help="for --data mnist: the .npz or IDX directory")
    parser.add_argument("--latent-dims", type=int_list, help="e.g. 3,5,200")
    parser.add_argument("--seed", type=int)
    parser.add_argument("--device", help="auto, cpu, cuda, ...")
    parser.add_argument("--out", type=Path, required=True, help="benchmark directory (continues one left unfinished)")


TRAIN_FLAGS = {"data": "data.name", "latent_dim": "model.latent_dim", "epochs": "train.epochs",
               "batch_size": "train.batch_size", "seed": "train.seed", "device": "train.device"}


def cmd_train(args: argparse.Namespace) -> int:
    from vaelab.experiments.training_run import train_model

    config = build_config(args, TRAIN_FLAGS)
    check_output(args.out, directory=True)
    tracking = tracker(args, config)
    run = train_model(config, args.out, existing="resume" if args.resume else "refuse")
    tracking(args.out, "train")
    metrics = run.meta["metrics"]
    print(f"trained {metrics['epochs']} epochs: train ELBO {metrics['train_elbo']:.2f}, "
          f"val ELBO {metrics['val_elbo']:.2f} nats; model in {run.out_dir / 'model.safetensors'}")
    return 0


def cmd_score(args: argparse.Namespace) -> int:
    import numpy as np

    from vaelab.experiments.training_run import load_run, rows_for_scoring, score_rows
    from vaelab.fileio import atomic_path

    config = build_config(args, {})
    check_output(args.out)
    distinct_outputs([args.run_dir, Path(args.data) if args.data else None], [args.out])
    model, meta = load_run(args.run_dir, device=config.train.device)
    x, y, split = rows_for_scoring(meta, args.data, args.split)
    values = score_rows(model, x, args.score, config, args.samples)
    column = args.score.replace("-", "_")
    with atomic_path(args.out) as tmp:
        with tmp.open("w", encoding="utf-8") as fh:
            fh.write("row,label," + column + "\n" if y is not None else "row," + column + "\n")
            for i, v in enumerate(values):
                fh.write(f"{i},{int(y[i])},{v:.6f}\n" if y is not None else f"{i},{v:.6f}\n")
    print(f"scored {len(values)} rows ({split}) with {args.score}: mean {np.mean(values):.3f}, "
          f"min {np.min(values):.3f}, max {np.max(values):.3f}; wrote {args.out}")
    return 0


def training_labels(name: str, y, path: Path):
    """The training file's labels as the detector ``name`` takes them: each row's class for
    ``m2-classes`` (required), the partial anomaly labels (-1 unknown, 0 normal, 1 anomaly) for
    ``m2-semisupervised`` (optional: without them every row is unlabelled); None for the
    unsupervised detectors (which ignore labels)."""
    import numpy as np

    from vaelab.detectors import CLASS_CONDITIONAL, SEMI_SUPERVISED

    if name not in (CLASS_CONDITIONAL, SEMI_SUPERVISED):
        return None
    what = "each row's class" if name == CLASS_CONDITIONAL else "partial anomaly labels (-1, 0, 1)"
    if y is None and name == SEMI_SUPERVISED:
        return None
    if y is None:
        raise DataError(f"{name} needs {what}: a label column (CSV, Parquet) or a y array (.npz)", path)
    y = np.asarray(y)
    if not np.all(np.isfinite(y.astype(np.float64))) or not np.array_equal(y, np.round(y)):
        raise DataError(f"{name} needs whole-number labels ({what})", path)
    return y.astype(np.int64)


def cmd_detect(args: argparse.Namespace) -> int:
    import numpy as np

    from vaelab.data import load_path
    from vaelab.data.dataset import fit_preprocessing
    from vaelab.detectors import BaseDetector, make_detector, predictions, registered_variant
    from vaelab.detectors.outputs import score_table, top_features
    from vaelab.fileio import write_files

    def rows(path: Path):
        """Every row of a file (image pixels scaled to [0, 1], tables as they are), labels, column names."""
        raw = load_path(path)
        x, y = raw.all_rows()
        return (fit_preprocessing(raw).apply(x) if raw.kind == "image" else x), y, raw.column_names()

    def about(path: Path, step):
        """``step()``, its bad-data errors naming ``path`` in one line."""
        try:
            return step()
        except VaelabError as exc:
            raise exc.at(path) from None
        except ValueError as exc:  # scikit-learn's and the detectors' refusals of the data
            raise DataError(" ".join(str(exc).split()) or type(exc).__name__, path) from None

    if (args.train is None) == (args.load is None):
        raise VaelabError("give either --train (fit a detector) or --load (a saved detector file)")
    if args.fpr is not None and args.contamination is not None:
        raise VaelabError("give --fpr (a false-positive rate to guarantee) or --contamination (an expected "
                          "anomaly share), not both")
    if args.fpr is not None and args.calibration == 0:
        raise VaelabError("--fpr needs held-out calibration rows: --calibration must be > 0")
    check_output(args.out)
    if args.save is not None:
        check_output(args.save)
    distinct_outputs([args.train, args.load, args.test],
                     [args.out, args.save, args.save.with_suffix(".json") if args.save else None])
    x_test, y_test, names = rows(args.test)
    if args.explain is not None and args.explain > x_test.shape[1]:
        raise VaelabError(f"--explain {args.explain} asks for more features than the {x_test.shape[1]} of {args.test}")
    if args.load is not None:
        detector = BaseDetector.load(args.load)
        name, source = type(detector).__name__, f"loaded from {args.load}"
        if args.fpr is not None or args.contamination is not None:
            about(args.load, lambda: detector.set_threshold(fpr=args.fpr, contamination=args.contamination))
    else:
        x_train, y_train, _ = rows(args.train)
        if x_test.shape[1] != x_train.shape[1]:
            raise DataError(f"has {x_test.shape[1]} features; the training file has {x_train.shape[1]}", args.test)
        try:  # name@setting=value: a [detector] setting, e.g. fusion-recon-kde-rank@ensemble_seeds=3
            registered, settings = registered_variant(args.detector or DEFAULT_DETECTOR)
        except ValueError as exc:
            raise ConfigError(f"--detector {args.detector}: {exc}") from None
        name = args.detector or DEFAULT_DETECTOR
        detector = make_detector(registered, settings, latent_dim=args.latent_dim, epochs=args.epochs, seed=args.seed,
                                 calibration=args.calibration)
        detector.set_params(contamination=args.contamination or 0.1, fpr=args.fpr)
        y_fit = training_labels(registered, y_train, args.train)
        about(args.train, lambda: detector.fit(x_train, y_fit))
        source = f"fitted on {len(x_train)} rows of {args.train}"
    if x_test.shape[1] != detector.n_features_in_:
        raise DataError(f"has {x_test.shape[1]} features; the detector expects {detector.n_features_in_}", args.test)
    scores = about(args.test, lambda: detector.score_samples(x_test))
    labels = predictions(scores, detector.offset_)
    calibrated = hasattr(detector, "calibration_scores_")
    pvalues = about(args.test, lambda: detector.score_pvalues(x_test)) if calibrated else None
    explanations = None
    if args.explain is not None:
        flagged = np.flatnonzero(labels == -1)
        contributions = about(args.test, lambda: detector.explain(x_test[flagged]))
        explanations = dict(zip(flagged.tolist(), top_features(contributions, names, args.explain)))
    files = {args.out: score_table(scores, labels, y_test, pvalues, explanations).encode()}
    write_files({**(detector.files(args.save) if args.save is not None else {}), **files})
    rule = (f"false-positive rate <= {detector.fpr} (conformal, {len(detector.calibration_scores_)} calibration rows)"
            if detector.fpr is not None else f"contamination {detector.contamination}")
    print(f"{name}: {source}; scored {len(x_test)} rows of {args.test}; {int((labels == -1).sum())} "
          f"flagged as anomalies (threshold {detector.offset_:.4f}, {rule}); higher score = more normal; wrote "
          f"{args.out}" + (f" and the detector to {args.save}" if args.save else ""))
    return 0


def cmd_datasets(args: argparse.Namespace) -> int:
    from vaelab.data.registry import DATASETS

    config = build_config(args, {})
    print(f"{'name':10} {'description':88} where")
    for info in DATASETS.values():
        print(f"{info.name:10} {info.description:88} {info.where(config.data)}")
    print("Any path also works as --data: .npz (x[,y] or x_train/x_test), .npy, .csv, .parquet, "
          "or a directory of MNIST IDX files.")
    return 0


def cmd_machine(args: argparse.Namespace) -> int:
    """What this machine answers for ``device = "auto"`` and ``precision = "auto"``, and why."""
    from vaelab import runtime

    device = runtime.resolve_device(args.device)
    if args.measure:
        runtime.forget_measurement(device)
    answer = runtime.resolve_precision("auto", device)
    print(f"device: {device} ({runtime.device_identity(device)})")
    print(f"precision = auto: {answer} (bfloat16 where its matrix products run at least "
          f"{runtime.BFLOAT16_MIN_SPEEDUP}x faster than float32's and the caller's accuracy check agrees)")
    if args.measure:
        speeds = {p: runtime.matmul_throughput(p, device=str(device)) for p in ("float32", "bfloat16")}
        print("measured: " + ", ".join(f"{p} {v:.0f} GFLOP/s" for p, v in speeds.items())
              + f" (bfloat16 {speeds['bfloat16'] / speeds['float32']:.2f}x)")
    print(f"kept in: {runtime.precision_file()} (vaelab machine --measure measures again)")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from vaelab.experiments.study import run_study
    from vaelab.report import study_table, write_report

    config = build_config(args, {})
    out = args.out or Path("runs") / (args.config_file.stem if args.config_file else "quick")
    check_output(out, directory=True)
    tracking = tracker(args, config)
    metrics = run_study(config, out, executor_of(args))
    write_report(out)
    tracking(out, "study")
    print(study_table(metrics))
    print(f"\nnats per test point; report: {out / 'report.html'}")
    return 0


# --latent-dims always names the sizes an experiment covers (study.latent_dims); the anomaly benchmark
# then runs all of them (its own subset, anomaly.latent_dims, is cleared).
BENCHMARK_FLAGS = {"data": "data.name", "data_path": "data.path", "seed": "train.seed", "device": "train.device",
                   "latent_dims": "study.latent_dims"}
ANOMALY_FLAGS = {**BENCHMARK_FLAGS, "protocols": "anomaly.protocols", "classes": "anomaly.classes"}


def _filled(config: Config, section: str, key: str, default: object) -> Config:
    """``config`` with ``section.key`` set to ``default`` where it is empty."""
    part = getattr(config, section)
    if getattr(part, key):
        return config
    return config.replace(**{section: dataclasses.replace(part, **{key: default})})


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def cmd_benchmark_anomaly(args: argparse.Namespace) -> int:
    from vaelab.experiments.anomaly import AnomalyBenchmark
    from vaelab.experiments.anomaly_tables import detector_label, latent_label, summary

    config = _filled(build_config(args, ANOMALY_FLAGS), "anomaly", "protocols", ("loco", "ovr"))
    if args.latent_dims:  # the sizes named on the command line, all of them
        config = config.replace(anomaly=dataclasses.replace(config.anomaly, latent_dims=()))
    check_output(args.out, directory=True)
    tracking = tracker(args, config)
    bench = AnomalyBenchmark(config, args.out, say=_say, executor=executor_of(args))
    rows = bench.run()
    tracking(args.out, "benchmark-anomaly")
    lines = summary(rows)
    width = max([22, *(len(detector_label(r["detector"])) for r in lines)])  # a labelled detector says what it is given
    print(f"{'protocol':8} {'latent':>6} {'detector':{width}} {'mean AUROC':>10} {'min AUROC':>9} {'mean AP':>8}")
    for r in lines:
        print(f"{r['protocol']:8} {latent_label(r['latent_dim']):>6} {detector_label(r['detector']):{width}} "
              f"{r['mean_auroc']:>10.3f} {r['min_auroc']:>9.3f} {r['mean_ap']:>8.3f}")
    print(f"\nAUROC over {len(bench.classes)} classes; tables and figures in {args.out}")
    return 0


SYNTHETIC_FLAGS = {**BENCHMARK_FLAGS, "types": "synthetic.types", "severities": "synthetic.severities"}


def cmd_benchmark_synthetic(args: argparse.Namespace) -> int:
    from vaelab.config import IMAGE_ANOMALY_TYPES
    from vaelab.experiments.study import Study

    config = _filled(build_config(args, SYNTHETIC_FLAGS), "synthetic", "types", IMAGE_ANOMALY_TYPES)
    check_output(args.out, directory=True)
    if args.run is not None:
        check_output(args.run, directory=True)
    tracking = tracker(args, config)
    study = Study(config, args.run or args.out / "study", say=_say, executor=executor_of(args))
    result = study.synthetic(args.out)
    tracking(args.out, "benchmark-synthetic")
    print(f"{'severity':>8} {'type':12} {'best likelihood (vae-*)':34} {'best latent-*':30} {'best raw-*':24}")
    for b in result["best"]:
        cell = lambda f: f"{b[f]['auroc']:.3f} {b[f]['detector']}" + (f" z{b[f]['latent_dim']}" if b[f]["latent_dim"] else "")  # noqa: E731,E501
        print(f"{b['severity']:>8g} {b['type']:12} {cell('vae'):34} {cell('latent'):30} {cell('raw'):24}")
    print("\nlinear probe accuracy (type from features): " + ", ".join(
        f"{p['features']} {p['accuracy']:.2f}" for p in result["probe"] if p["severity"] == max(result["severities"])))
    print(f"AUROC per type and detector; tables and figures in {args.out}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from vaelab.report import write_report

    if not args.run_dir.is_dir():
        raise VaelabError("not a run directory" if args.run_dir.exists() else "run directory not found", args.run_dir)
    check_output(args.run_dir / "report.html")
    print(f"wrote {write_report(args.run_dir)}")
    return 0


def make_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="vaelab", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"vaelab {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("run", help="run the study of a config (default: the quick study) into a run directory")
    p.add_argument("config_file", nargs="?", type=Path, help="TOML config (default: built-in quick settings)")
    p.add_argument("--out", type=Path, help="run directory (default runs/<config name>)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a setting (repeatable)")
    _scale_out(p)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("train", help="train one VAE into a run directory")
    _common(p)
    p.add_argument("--data", help="data set name (see `vaelab datasets`) or a file path")
    p.add_argument("--latent-dim", type=positive_int)
    p.add_argument("--epochs", type=positive_int)
    p.add_argument("--batch-size", type=positive_int)
    p.add_argument("--seed", type=int)
    p.add_argument("--device", help="auto, cpu, cuda, cuda:1, ...")
    p.add_argument("--out", type=Path, required=True, help="run directory")
    p.add_argument("--resume", action="store_true", help="continue from the run's checkpoint")
    p.add_argument("--track", choices=["mlflow"], help="record the trained model in MLflow")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("score", help="score data with a trained model, one number per row")
    _common(p)
    p.add_argument("run_dir", type=Path, help="run directory (or model.safetensors)")
    p.add_argument("--data", help="data set name or file (default: the model's own data)")
    p.add_argument("--score", choices=["elbo", "iwae", "recon-prob", "recon-error"], default="iwae")
    p.add_argument("--samples", type=positive_int, help="K for iwae, L for recon-prob, draws for elbo")
    p.add_argument("--split", choices=["auto", "train", "val", "test", "all"], default="auto",
                   help="auto: test split of a named data set, every row of a file")
    p.add_argument("--out", type=Path, required=True, help="CSV file to write")
    p.set_defaults(func=cmd_score)

    p = sub.add_parser("detect", help="fit an anomaly detector on one file, score another")
    p.add_argument("--train", type=Path, help="normal data to fit on: .npz, .npy, .csv or .parquet")
    p.add_argument("--load", type=Path, help="a detector file saved with --save (instead of --train)")
    p.add_argument("--save", type=Path, help="also write the fitted detector here (safetensors, no pickle)")
    p.add_argument("--test", type=Path, required=True, help="data to score")
    p.add_argument("--detector", help="a name from vaelab.detectors.DETECTORS, e.g. vae-iwae, latent-ocsvm, "
                   f"raw-iforest; default {DEFAULT_DETECTOR} (chosen by the benchmarks: see the README); "
                   "m2-classes fits on the training file's labels as each normal row's class (flags rows of no "
                   "known class), m2-semisupervised on them as partial anomaly labels (-1, 0, 1); m2-clusters "
                   "finds such classes itself, as clusters of the training rows (no labels), and "
                   "m2-clusters-or-fusion uses them only where they are stable (else fusion-recon-kde-rank); NAME@KEY=VALUE "
                   "sets a [detector] setting, e.g. fusion-recon-kde-rank@ensemble_seeds=3 (fused over three "
                   "training seeds)")
    p.add_argument("--latent-dim", type=positive_int, default=5)
    p.add_argument("--epochs", type=positive_int, default=50, help="VAE training epochs")
    p.add_argument("--contamination", type=contamination,
                   help="threshold for an expected anomaly fraction in (0, 0.5) (default 0.1)")
    p.add_argument("--fpr", type=fraction, help="threshold so that the false-positive rate on normal rows is at "
                   "most this, in (0, 1) (split conformal, on the held-out calibration rows)")
    p.add_argument("--calibration", type=share, help="share of the normal training rows held out to calibrate "
                   "p-values and thresholds, in [0, 1) (default: detector.calibration, 0.2)")
    p.add_argument("--explain", type=positive_int, metavar="K",
                   help="for each flagged row, the K features that contribute most to its anomaly score")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, required=True,
                   help="CSV: row, [label], score, [p_value], prediction (+1/-1), [explanation]")
    p.set_defaults(func=cmd_detect)

    p = sub.add_parser("benchmark", help="the anomaly benchmarks")
    suites = p.add_subparsers(dest="suite", required=True, metavar="SUITE")
    b = suites.add_parser("anomaly", help="protocols x classes x latent sizes x detectors: AUROC/AP tables and "
                          "figures (settings: the [anomaly] section of a config)")
    _benchmark_common(b, "a labelled data set name or file (default: the config's)")
    b.add_argument("--protocol", dest="protocols", action="append", choices=["loco", "ovr"],
                   help="leave-one-class-out and/or one-vs-rest (repeatable; default both)")
    b.add_argument("--classes", type=int_list, help="e.g. 0,1,2 (default all)")
    b.set_defaults(func=cmd_benchmark_anomaly)

    b = suites.add_parser("synthetic", help="synthetic anomalies of known types in the test images: AUROC per "
                          "type x detector x latent size, linear probe, latent shifts, t-SNE (settings: [synthetic])")
    _benchmark_common(b, "an image data set name or file (default: the config's)")
    b.add_argument("--types", type=lambda s: s.split(","), help="e.g. noise,occlusion,rotation (default all)")
    b.add_argument("--severity", dest="severities", type=float, action="append",
                   help="in (0, 1], repeatable (default: the config's, 0.5 and 1)")
    b.add_argument("--run", type=Path, help="a study run directory whose models to use (trained there if "
                   "missing; default OUT/study)")
    b.set_defaults(func=cmd_benchmark_synthetic)

    p = sub.add_parser("report", help="rebuild a run's report.html from its directory alone")
    p.add_argument("run_dir", type=Path)
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("machine", help="what device and precision 'auto' answer on this machine, and why")
    p.add_argument("--device", default="auto", help="auto (CUDA where present, else the CPU), cpu or cuda[:N]")
    p.add_argument("--measure", action="store_true", help="forget the kept measurement and measure again")
    p.set_defaults(func=cmd_machine)

    p = sub.add_parser("datasets", help="list the data sets and where they come from")
    _common(p)
    p.set_defaults(func=cmd_datasets)
    return parser


class Terminated(KeyboardInterrupt):
    """SIGTERM (a scheduler's time limit or preemption, ``kill``): handled as an interrupt, so that the
    worker processes are stopped and what finished is kept, as with Ctrl-C."""


def _terminate(signum: int, frame: Any) -> None:
    raise Terminated


def main(argv: Sequence[str] | None = None) -> int:
    parser = make_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, or an argument error already printed as one line
        return int(exc.code or 0)
    if args.command == "run":
        args.config = args.config_file
    on_main = threading.current_thread() is threading.main_thread()  # only there can a handler be set
    previous = signal.signal(signal.SIGTERM, _terminate) if on_main else None
    try:
        return args.func(args)
    except VaelabError as exc:
        print(f"vaelab: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    except OSError as exc:  # the file system refused something: name the file, one line
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"vaelab: error: {where}{exc.strerror or exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        print(f"vaelab: {'terminated' if isinstance(exc, Terminated) else 'interrupted'}; finished work is kept "
              "(epochs in the run's checkpoint, finished units in the run directory): run the command again, "
              "with --resume where it takes one", file=sys.stderr)
        return 143 if isinstance(exc, Terminated) else 130
    finally:
        if on_main:
            signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
