"""Every registered detector on tabular anomaly tasks: the tabular half of the evidence for the default.

Tasks (all local, no download):
- three real data sets shipped with scikit-learn, one class normal, the rest anomalies:
  breast cancer (benign normal), wine (class 0 normal), digits 8x8 (digit 0 normal);
- ADBench's four synthetic types (Han et al. 2022: local, global, dependency, clustered)
  generated from a model of the breast-cancer normals (:mod:`vaelab.data.synthetic`).
Each real task is run with ``--seeds`` splits (60% of the normals train, the rest and every
anomaly test); the table gives the mean AUROC per task, the mean over tasks and the mean rank.
Raw-feature detectors (scikit-learn's one-class SVM, isolation forest, GMM, KDE, PCA) are the
baseline in the same run.

    python benchmarks/tabular_anomaly.py [--seeds 3] [--epochs 100] [--results benchmarks/results/tabular_anomaly.md] \
        [--json benchmarks/results/tabular_anomaly.json]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from vaelab.data.packaged import adbench_tasks, table_tasks
from vaelab.detectors import DETECTORS, make_detector, registered_variant
from vaelab.evaluation import auroc
from vaelab.fileio import write_json, write_text


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--latent-dim", type=int, default=4)
    parser.add_argument("--detectors", default=",".join(d for d in DETECTORS if d != "raw-ocsvm-nystroem"
                                                         and d != "latent-ocsvm-nystroem"))
    parser.add_argument("--results", type=Path, help="also write the table here (Markdown)")
    parser.add_argument("--json", type=Path, help="also write the mean AUROC per detector and task here (JSON)")
    args = parser.parse_args(argv)
    names = args.detectors.split(",")
    scores: dict[str, dict[str, list[float]]] = {n: {} for n in names}
    seconds = {n: 0.0 for n in names}
    for seed in range(args.seeds):
        tasks = {**table_tasks(seed), **adbench_tasks(seed)}
        for task, (train, test, y) in tasks.items():
            for name in names:
                t0 = time.perf_counter()
                registered, config = registered_variant(name)  # e.g. fusion-...@fusion_refit=auto
                det = make_detector(registered, config, latent_dim=args.latent_dim, epochs=args.epochs, seed=seed,
                                    calibration=0.0).fit(train)
                scores[name].setdefault(task, []).append(auroc(y, det.score_samples(test)))
                seconds[name] += time.perf_counter() - t0
    tasks = list(next(iter(scores.values())))
    means = {n: [float(np.mean(scores[n][t])) for t in tasks] for n in names}
    ranks = np.argsort(np.argsort(-np.array([means[n] for n in names]), axis=0), axis=0) + 1
    mean_rank = dict(zip(names, ranks.mean(1)))
    order = sorted(names, key=lambda n: mean_rank[n])
    lines = [f"Mean AUROC over {args.seeds} seeds (VAE: latent {args.latent_dim}, {args.epochs} epochs); "
             "baseline = the raw-* rows (scikit-learn estimators on the standardized features).", "",
             "| detector | " + " | ".join(tasks) + " | mean | mean rank | seconds |",
             "|---|" + "---|" * (len(tasks) + 3)]
    for n in order:
        lines.append(f"| {n} | " + " | ".join(f"{v:.3f}" for v in means[n]) +
                     f" | **{np.mean(means[n]):.3f}** | {mean_rank[n]:.1f} | {seconds[n]:.0f} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.results:
        write_text(args.results, text)
    if args.json:
        write_json(args.json, {"seeds": args.seeds, "epochs": args.epochs, "latent_dim": args.latent_dim,
                               "auroc": {n: dict(zip(tasks, means[n])) for n in names}})


if __name__ == "__main__":
    main()
