"""Leaving one class out when the normal rows come labelled with their class (open-set recognition).

MNIST leave-one-class-out as in ``vaelab benchmark anomaly`` (train on the other nine digits' training
rows, test on all 10,000 test digits, the left-out digit the anomaly), but the detector is also given
each training digit's class: :class:`~vaelab.detectors.ClassConditionalDetector` (``m2-classes``), M2
trained on the nine labelled classes, scored by Fisher's combination of its complexity-corrected
class-conditional likelihood and its classifier's confidence. A different protocol from the
unsupervised benchmark (more information), so its numbers stand beside those, not in their table.
Beside it, raw baselines given the same labels (``--raw``, one seed): a scikit-learn MLP classifier's
confidence and the Mahalanobis distance to the nearest class mean on 50 principal components.
Each (left-out class, seed) is a resumable cell in ``--cells``; ``--jobs`` / ``--executor`` spread them.

    python benchmarks/labelled_normals.py --data ../shared/data/mnist.npz --seeds 3 --cells runs/labelled_normals \\
        --jobs 2 --results benchmarks/results/labelled_normals.md --json benchmarks/results/labelled_normals.json
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
from pathlib import Path

import numpy as np

from vaelab.fileio import write_json, write_text

SCORES = {"detector": "ClassConditionalDetector", "classifier": "its classifier part alone (max_y log q(y|x))",
          "likelihood": "its likelihood part alone (L(x, y-hat), complexity-corrected)"}
RAW = {"raw-classifier": "raw: MLP classifier's max log q(y|x)", "raw-mahalanobis": "raw: class Mahalanobis, PCA-50"}


def main(argv: list[str] | None = None) -> None:
    from vaelab.config import load_config
    from vaelab.data import digits_config
    from vaelab.experiments.executors import add_executor_arguments, executor_from_arguments
    from vaelab.experiments.units import Unit, UnitStore

    root = Path(__file__).resolve().parents[1]
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", required=True, help="MNIST .npz or IDX directory, or a registered name (mnist5k)")
    parser.add_argument("--config", type=Path, default=root / "configs" / "anomaly.toml",
                        help="hidden layers, batch, learning rate, detector settings and loco_epochs come from here")
    parser.add_argument("--classes", default="0,1,2,3,4,5,6,7,8,9", help="the classes to leave out, one at a time")
    parser.add_argument("--seeds", type=int, default=1, help="training seeds 0 .. N-1")
    parser.add_argument("--latent-dim", type=int, default=5, help="vaelab detect's default")
    parser.add_argument("--epochs", type=int, help="default: the config's anomaly.loco_epochs")
    parser.add_argument("--train-limit", type=int, default=0, help="for smoke tests: fewer training rows")
    parser.add_argument("--raw", action=argparse.BooleanOptionalAction, default=True,
                        help="also the raw baselines given the same labels (one seed)")
    parser.add_argument("--cells", type=Path, help="keep each finished cell here and reuse it")
    parser.add_argument("--results", type=Path, help="markdown tables")
    parser.add_argument("--json", type=Path, help="every cell's AUROCs and the means")
    add_executor_arguments(parser)
    args = parser.parse_args(argv)

    config = dataclasses.replace(load_config(args.config), data=digits_config(args.data, args.train_limit))
    epochs = args.epochs or config.anomaly.loco_epochs
    classes = [int(c) for c in args.classes.split(",")]
    plain = config.to_dict()
    units = {(c, s): Unit(f"loco-c{c}-seed{s}", "vaelab.experiments.semisupervised:run_labelled_normals",
                          {"config": {k: plain[k] for k in ("data", "model", "train", "detector")}, "left_out": c,
                           "seed": s, "latent_dim": args.latent_dim, "epochs": epochs})
             for c in classes for s in range(args.seeds)}
    store = UnitStore(args.cells or Path(tempfile.mkdtemp(prefix="labelled_normals-")),
                      executor=executor_from_arguments(args), say=print)
    raw_units = {c: Unit(f"loco-c{c}-raw", "vaelab.experiments.semisupervised:run_labelled_raw",
                         {"config": {k: plain[k] for k in ("data", "model", "detector")}, "left_out": c, "seed": 0,
                          "epochs": epochs})
                 for c in classes} if args.raw else {}
    store.run_all([*units.values(), *raw_units.values()])
    results = {key: store.result(unit) for key, unit in units.items()}
    raw = {c: store.result(unit) for c, unit in raw_units.items()}
    per_class = {score: {c: [results[(c, s)]["auroc"][score] for s in range(args.seeds)] for c in classes}
                 for score in SCORES}
    fmt = lambda v: f"{np.mean(v):.3f}" + (f" ± {np.std(v):.3f}" if len(v) > 1 else "")  # noqa: E731
    lines = [f"MNIST leaving one class out with the normal training digits' classes known: "
             f"ClassConditionalDetector (m2-classes), latent {args.latent_dim}, {epochs} epochs, "
             f"{args.seeds} seed(s) (mean ± sd over seeds); test: every test digit.", "",
             "| left-out digit | " + " | ".join([*SCORES.values(), *(RAW.values() if raw else ())]) +
             " | classification accuracy on normal test digits |",
             "|---|" + "---:|" * (len(SCORES) + len(RAW) * bool(raw) + 1)]
    raw_cols = list(RAW) if raw else []
    for c in classes:
        accuracy = [results[(c, s)]["normal_accuracy"] for s in range(args.seeds)]
        lines.append(f"| {c} | " + " | ".join([*(fmt(per_class[score][c]) for score in SCORES),
                                              *(f"{raw[c]['auroc'][name]:.3f}" for name in raw_cols)])
                     + f" | {fmt(accuracy)} |")
    means = {score: [float(np.mean([per_class[score][c][s] for c in classes])) for s in range(args.seeds)]
             for score in SCORES}
    raw_means = {name: float(np.mean([raw[c]["auroc"][name] for c in classes])) for name in raw_cols}
    lines.append("| **mean** | " + " | ".join([*(f"**{fmt(means[score])}**" for score in SCORES),
                                              *(f"{raw_means[n]:.3f}" for n in raw_cols)]) + " | |")
    lines.append("| worst digit | " + " | ".join(
        [*(f"{min(np.mean(per_class[score][c]) for c in classes):.3f}" for score in SCORES),
         *(f"{min(raw[c]['auroc'][n] for c in classes):.3f}" for n in raw_cols)]) + " | |")
    if raw:
        lines += ["", f"Raw baselines: one seed; compute {sum(r['seconds'] for r in raw.values()):.0f} s."]
    seconds = sum(r["seconds"] for r in results.values())
    lines += ["", f"Compute: {seconds:.0f} s over {len(units)} cells ({seconds / len(units):.0f} s a cell, "
              f"{args.latent_dim}-d latent, {next(iter(results.values()))['n_train']} training rows in the first)."]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.results:
        write_text(args.results, text)
    if args.json:
        write_json(args.json, {"cells": {f"{c}/{s}": r for (c, s), r in results.items()},
                               "raw_cells": {str(c): r for c, r in raw.items()},
                               "means": {**{score: float(np.mean(v)) for score, v in means.items()}, **raw_means},
                               "settings": {"epochs": epochs, "latent_dim": args.latent_dim, "seeds": args.seeds,
                                            "classes": classes}})


if __name__ == "__main__":
    main()
