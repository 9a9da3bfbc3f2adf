"""Deep SAD's three MNIST experiments (Ruff et al. 2020) with the SemiSupervisedDetector, beside the
unsupervised baseline (vae-recon-error) and a supervised classifier on the same splits.

    python benchmarks/deep_sad.py --data ../shared/data/mnist.npz --cells runs/deep_sad --jobs 2 \
        --results benchmarks/results/deep_sad.md --json benchmarks/results/deep_sad.json \
        --figures docs/ssl

One-vs-rest over the normal classes (default all ten); the grid and its rules are in
:mod:`vaelab.experiments.deep_sad`. Every (normal class, point) is a resumable unit in ``--cells``
(an interrupted run goes on where it stopped) and runs on the executor the flags name (``--jobs``,
``--executor ray``); each unit's compute seconds are stored with it and tabulated.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from vaelab.fileio import write_json, write_text


def main(argv: list[str] | None = None) -> None:
    import tempfile

    from vaelab.data import digits_config, load_grey
    from vaelab.experiments.deep_sad import EXPERIMENTS, GridSettings, class_counts, grid_units
    from vaelab.experiments.deep_sad_tables import class_table, experiment_figure, experiment_means, experiment_table
    from vaelab.experiments.executors import add_executor_arguments, executor_from_arguments
    from vaelab.experiments.units import UnitStore

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", required=True, help="MNIST .npz or IDX directory (or a labelled image set name)")
    parser.add_argument("--classes", default="0,1,2,3,4,5,6,7,8,9", help="normal classes")
    parser.add_argument("--experiments", default=",".join(EXPERIMENTS), help="of " + ", ".join(EXPERIMENTS))
    parser.add_argument("--epochs", type=int, default=30, help="the SemiSupervisedDetector's and the classifier's")
    parser.add_argument("--latent-dim", type=int, default=8)
    parser.add_argument("--detector-epochs", type=int, default=50, help="the unsupervised baseline's")
    parser.add_argument("--m2-balance", type=float, default=GridSettings.m2_balance,
                        help="the SemiSupervisedDetector's class balance")
    parser.add_argument("--m2-references", default="classified-normal", help="its reference rows: classified-normal|all")
    parser.add_argument("--m2-correction", default=GridSettings.m2_correction,
                        help="its likelihood part's correction: none|complexity")
    parser.add_argument("--labelled-normals", type=float, default=0.0,
                        help="the share of the normal class's training rows labelled normal (default 0)")
    parser.add_argument("--seeds", type=int, default=1, help="training seeds per cell (seed i of normal class c: c + 10 i)")
    parser.add_argument("--train-limit", type=int, default=0)
    parser.add_argument("--cells", type=Path, help="keep each finished cell here and reuse it")
    parser.add_argument("--results", type=Path, help="markdown tables")
    parser.add_argument("--json", type=Path, help="every cell's result and the mean curves")
    parser.add_argument("--figures", type=Path, help="folder for deep_sad_<experiment>.png")
    add_executor_arguments(parser)
    args = parser.parse_args(argv)

    experiments = args.experiments.split(",")
    unknown = [e for e in experiments if e not in EXPERIMENTS]
    if unknown:
        parser.error(f"unknown experiment(s) {unknown}; known: {', '.join(EXPERIMENTS)}")
    data = digits_config(args.data, args.train_limit)
    settings = GridSettings(data, epochs=args.epochs, latent_dim=args.latent_dim, detector_epochs=args.detector_epochs,
                            m2_balance=args.m2_balance, m2_references=args.m2_references,
                            m2_correction=args.m2_correction, labelled_normals=args.labelled_normals)
    if not 0 <= args.labelled_normals < 1:
        parser.error(f"--labelled-normals must be in [0, 1), not {args.labelled_normals}")
    classes = [int(c) for c in args.classes.split(",")]
    t_all = time.perf_counter()
    units = grid_units(settings, classes, experiments, seeds=args.seeds)
    store = UnitStore(args.cells or Path(tempfile.mkdtemp(prefix="deep_sad-")), executor=executor_from_arguments(args),
                      say=print)
    store.run_all(list(units.values()))
    results = {name: {**store.result(unit), "seconds_total": store.record(unit)["seconds"]}
               for name, unit in units.items()}
    counts = class_counts(load_grey(data).test.y)

    computed = sum(r["seconds_total"] for r in results.values())
    parts = [f"AUROC (%) on the MNIST test set, mean over normal classes {classes}; SemiSupervisedDetector "
             f"{args.epochs} epochs, latent {args.latent_dim}, class balance {args.m2_balance:g}, references "
             f"{args.m2_references}, likelihood correction {args.m2_correction}"
             f"{f', {args.labelled_normals:.0%} of the normal rows labelled normal' if args.labelled_normals else ''}"
             "; supervised classifier: an MLP with the same hidden "
             f"layer, {args.epochs} epochs; unsupervised: `{settings.detector}` with `vaelab detect`'s defaults "
             f"(latent {settings.detector_latent_dim}, {settings.detector_epochs} epochs), fitted on the unlabelled "
             f"rows; {args.seeds} seed(s) per cell (seed i of normal class c: c + 10 i; tables: means over "
             "seeds); known anomaly classes of normal class c: c+1, ..., c+k_l (mod 10).", ""]
    for e in experiments:
        parts += [experiment_table(results, e, classes, settings.detector, counts), "",
                  "SemiSupervisedDetector per normal class:", "",
                  class_table(results, e, classes, settings.detector, counts), ""]
    parts.append(f"This run: {time.perf_counter() - t_all:.0f} s wall; compute stored with its {len(units)} "
                 f"cells: {computed:.0f} s.")
    text = "\n".join(parts) + "\n"
    print(text)
    if args.results:
        write_text(args.results, text)
    if args.json:
        write_json(args.json, {"settings": {"classes": classes, "epochs": args.epochs, "latent_dim": args.latent_dim,
                                            "detector": settings.detector, "seeds": args.seeds},
                               "means": {e: experiment_means(results, e, classes, settings.detector, counts)
                                         for e in experiments}, "cells": results})
    if args.figures:
        from vaelab import plots

        for e in experiments:
            plots.save_figure(experiment_figure(results, e, classes, settings.detector, counts),
                              args.figures / f"deep_sad_{e}.png")


if __name__ == "__main__":
    main()
