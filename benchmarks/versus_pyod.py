"""vaelab's detectors side by side with PyOD's VAE and AutoEncoder on the same splits, in one run.

Groups of tasks (:mod:`vaelab.experiments.comparison`): MNIST leave-one-class-out (10,000 training
rows) and one-vs-rest (3,000), as a new user would try them, and data vaelab was never tuned on that
ships inside scikit-learn and scikit-image (8x8 digit images, texture patches, tables). Each
(task, detector, seed) is a resumable cell in ``--cells``; ``--jobs`` / ``--executor`` spread them.
Needs the ``compare`` extra (PyOD, scikit-image).

    python benchmarks/versus_pyod.py --mnist ../shared/data/mnist.npz --cells runs/versus_pyod --jobs 2 \
        --results benchmarks/results/versus_pyod.md --json benchmarks/results/versus_pyod.json
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from vaelab.fileio import write_json, write_text

DETECTORS = ("fusion-recon-regret-fisher", "fusion-recon-typicality-fisher", "vae-recon-error",
             "vae-recon-error@gaussian", "vae-elbo", "vae-elbo@gaussian", "likelihood-complexity",
             "likelihood-typicality", "raw-kde", "raw-ocsvm", "pyod-vae", "pyod-autoencoder")


def main(argv: list[str] | None = None) -> None:
    from vaelab.experiments.comparison import (GROUPS, ComparisonSettings, comparison_table, comparison_units,
                                               group_means, task_table)
    from vaelab.experiments.executors import add_executor_arguments, executor_from_arguments
    from vaelab.experiments.units import UnitStore

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mnist", default="", help="MNIST .npz or IDX directory (for the mnist-* groups)")
    parser.add_argument("--groups", default=",".join(GROUPS), help="of " + ", ".join(GROUPS))
    parser.add_argument("--detectors", default=",".join(DETECTORS))
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--loco-rows", type=int, default=ComparisonSettings.loco_rows)
    parser.add_argument("--ovr-rows", type=int, default=ComparisonSettings.ovr_rows)
    parser.add_argument("--epochs", type=int, default=ComparisonSettings.epochs, help="vaelab's VAE epochs")
    parser.add_argument("--cells", type=Path, help="keep each finished cell here and reuse it")
    parser.add_argument("--results", type=Path, help="markdown tables")
    parser.add_argument("--json", type=Path, help="every cell's AUROC and the group means")
    add_executor_arguments(parser)
    args = parser.parse_args(argv)

    groups = args.groups.split(",")
    detectors = args.detectors.split(",")
    settings = ComparisonSettings(mnist=args.mnist, loco_rows=args.loco_rows, ovr_rows=args.ovr_rows,
                                  epochs=args.epochs)
    if any(g.startswith("mnist") for g in groups) and not args.mnist:
        parser.error("the mnist-* groups need --mnist (or leave them out with --groups)")
    units = comparison_units(settings, detectors, groups, list(range(args.seeds)))
    store = UnitStore(args.cells or Path(tempfile.mkdtemp(prefix="versus_pyod-")),
                      executor=executor_from_arguments(args), say=print)
    t0 = time.perf_counter()
    store.run_all(list(units.values()))
    cells, seconds = {}, {d: 0.0 for d in detectors}
    for key, unit in units.items():
        group, task, detector, seed = key.split("/")
        result = store.result(unit)
        cells[(group, task, detector, int(seed[1:]))] = result["auroc"]
        seconds[detector] += result["seconds"]
    means = group_means(cells, detectors, groups)
    text = "\n".join([
        f"Mean AUROC per group of tasks, {args.seeds} seed(s); vaelab: `vaelab detect`'s defaults (latent "
        f"{settings.latent_dim}, {settings.epochs} epochs, no calibration hold-out), `@gaussian`: "
        "detector.likelihood = gaussian (standardized inputs, Gaussian decoder); PyOD 'pyod-*': PyOD's defaults; "
        f"MNIST: {settings.loco_rows} training rows leaving one class out, {settings.ovr_rows} one-vs-rest. "
        "Rank: within each group, averaged over groups; seconds: fit and score, all cells.", "",
        comparison_table(means, groups, seconds), "",
        *[part for g in groups for part in (task_table(cells, detectors, g), "")],
        f"This run: {time.perf_counter() - t0:.0f} s wall; compute stored with its {len(units)} cells: "
        f"{sum(seconds.values()):.0f} s."]) + "\n"
    print(text)
    if args.results:
        write_text(args.results, text)
    if args.json:
        write_json(args.json, {"settings": {"groups": groups, "detectors": detectors, "seeds": args.seeds,
                                            "loco_rows": settings.loco_rows, "ovr_rows": settings.ovr_rows,
                                            "epochs": settings.epochs},
                               "means": means, "cells": {"/".join(map(str, k)): v for k, v in cells.items()}})


if __name__ == "__main__":
    main()
