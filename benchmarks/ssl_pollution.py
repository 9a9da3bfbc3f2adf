"""Why labelled anomalies stop helping under pollution: the SemiSupervisedDetector's p-values read
against different reference rows (same fitted model), beside the share of anomalies in each.

    python benchmarks/ssl_pollution.py --data ../shared/data/mnist.npz --classes 6 \
        --labels 10,50,100 --pollution 0.1 [--cells DIR] [--results ...]

The splits and settings are those of ``benchmarks/ssl_anomaly.py`` (seed = normal class, labelled
anomalies from class normal + 1, 30 epochs, latent 8), so the "detector" rows reproduce its
polluted run. Reference sets: :data:`vaelab.experiments.semisupervised.REFERENCE_SETS`.
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
from pathlib import Path

import numpy as np

from vaelab.fileio import write_text


def main(argv: list[str] | None = None) -> None:
    from vaelab.config import DetectorConfig
    from vaelab.data import digits_config
    from vaelab.evaluation import ANOMALY_GROUPS
    from vaelab.experiments.executors import add_executor_arguments, executor_from_arguments
    from vaelab.experiments.semisupervised import REFERENCE_SETS
    from vaelab.experiments.units import Unit, UnitStore

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", required=True, help="MNIST .npz or IDX directory (or a labelled image set name)")
    parser.add_argument("--classes", default="6")
    parser.add_argument("--labels", default="10,50,100")
    parser.add_argument("--pollution", type=float, default=0.1)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--latent-dim", type=int, default=8)
    parser.add_argument("--train-limit", type=int, default=0)
    parser.add_argument("--cells", type=Path)
    parser.add_argument("--results", type=Path)
    add_executor_arguments(parser)
    args = parser.parse_args(argv)

    data = digits_config(args.data, args.train_limit)
    counts = [int(n) for n in args.labels.split(",")]
    units = {int(c): Unit(f"normal{c}-pollution{args.pollution:g}", "vaelab.experiments.semisupervised:run_pollution_diagnosis",
                          {"config": {"data": dataclasses.asdict(data)}, "normal": int(c), "known": [(int(c) + 1) % 10],
                           "counts": counts, "epochs": args.epochs, "latent_dim": args.latent_dim,
                           "pollution": args.pollution, "seed": int(c), "iwae_samples": DetectorConfig().iwae_samples})
             for c in args.classes.split(",")}
    store = UnitStore(args.cells or Path(tempfile.mkdtemp(prefix="ssl_pollution-")), executor=executor_from_arguments(args))
    store.run_all(list(units.values()))
    found = {c: store.result(u) for c, u in units.items()}
    head = " | ".join(f"{n} labelled" for n in counts)
    lines = [f"AUROC on the MNIST test set, pollution {args.pollution}, normal classes {list(found)} (mean), "
             f"{args.epochs} epochs, latent {args.latent_dim}; labelled anomalies from class normal + 1.", "",
             f"| p-values read against | test anomalies | {head} |", "|---|---|" + "---|" * len(counts)]
    mean = lambda key: np.mean([f[key] for f in found.values()], axis=0)  # noqa: E731
    for name, label in {"detector": "the detector's own references (2,000 unlabelled rows)", **REFERENCE_SETS}.items():
        for key, group in ANOMALY_GROUPS.items():
            lines.append(f"| {label} | {group} | " + " | ".join(f"{v:.3f}" for v in mean(name + key)) + " |")
    lines += ["", "| reference set | anomalies among its rows | classifier p-value floor of a known-class test row "
              "(median) |", "|---|---|---|"]
    for name, label in REFERENCE_SETS.items():
        share, floor = mean(f"{name}_anomaly_share"), mean(f"{name}_floor")
        lines.append(f"| {label} | " + " / ".join(f"{v:.3f}" for v in share) + " | "
                     + " / ".join(f"{v:.4f}" for v in floor) + " |")
    lines += ["", f"(values per label count {counts}, separated by /)"]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.results:
        write_text(args.results, text)


if __name__ == "__main__":
    main()
