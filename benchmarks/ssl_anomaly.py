"""Semi-supervised anomaly detection on MNIST after Ruff et al. (2020, Deep SAD): AUROC as labels grow.

One-vs-rest: one digit is normal, every other digit an anomaly; a few labelled anomalies come
from one known anomaly class (default: the next digit). For each number of labelled anomalies
the SemiSupervisedDetector (M2, two classes) is fitted on the training rows with those labels;
the unsupervised baseline, vae-iwae (a VAE's log p(x)), is fitted on the same rows without the
labelled anomalies. Test: the whole MNIST test set.

    python benchmarks/ssl_anomaly.py --data ../shared/data/mnist.npz [--classes 0,3,6]
        [--labels 0,5,10,50,100] [--epochs 30] [--pollution 0] [--cells DIR] [--results ...] [--figure ...]

With ``--cells DIR`` each finished normal class is kept there as a unit of work
(:mod:`vaelab.experiments.units`, ``units/<class>.json`` keyed by a fingerprint of its settings): an interrupted run goes on where it stopped, and runs over different classes can share
the directory and be tabulated together.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from vaelab.fileio import write_text


def main(argv: list[str] | None = None) -> None:
    import dataclasses
    import tempfile

    from vaelab.config import DetectorConfig
    from vaelab.data import digits_config
    from vaelab.detectors import SemiSupervisedDetector
    from vaelab.experiments.executors import add_executor_arguments, executor_from_arguments
    from vaelab.experiments.semisupervised import curve_groups
    from vaelab.experiments.units import Unit, UnitStore

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", required=True, help="MNIST .npz or IDX directory (or a labelled image set name)")
    parser.add_argument("--classes", default="0,3,6", help="normal classes to run")
    parser.add_argument("--labels", default="0,5,10,50,100", help="numbers of labelled anomalies")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--latent-dim", type=int, default=8)
    parser.add_argument("--pollution", type=float, default=0.0)
    parser.add_argument("--anomaly-prior", type=float, help="the detector's p(anomaly) (default: its own)")
    parser.add_argument("--labelled-share", type=float, help="the labelled rows' share of each epoch (default: its own)")
    parser.add_argument("--balance", type=float, help="the weight of M2's class balance (default: the detector's)")
    parser.add_argument("--references", help="classified-normal | all (default: the detector's)")
    parser.add_argument("--train-limit", type=int, default=0)
    parser.add_argument("--cells", type=Path, help="keep each finished class here and reuse it")
    parser.add_argument("--results", type=Path)
    parser.add_argument("--figure", type=Path)
    add_executor_arguments(parser)
    args = parser.parse_args(argv)

    data = digits_config(args.data, args.train_limit)
    classes = [int(c) for c in args.classes.split(",")]
    counts = [int(n) for n in args.labels.split(",")]
    curves: dict[int, dict[str, object]] = {}
    t_all = time.perf_counter()
    store = UnitStore(args.cells or Path(tempfile.mkdtemp(prefix="ssl_anomaly-")),
                      executor=executor_from_arguments(args))
    overrides = _overrides(args)
    variant = "".join(f"-{k}{_value(v)}" for k, v in overrides.items())
    units = {}
    for c in classes:
        known = ((c + 1) % 10,)
        units[c] = Unit(f"normal{c}-pollution{args.pollution:g}{variant}", "vaelab.experiments.semisupervised:run_curve",
                    {"config": {"data": dataclasses.asdict(data)}, "normal": c, "known": list(known), "counts": counts,
                     "epochs": args.epochs, "latent_dim": args.latent_dim, "pollution": args.pollution, "seed": c,
                     "iwae_samples": DetectorConfig().iwae_samples, "rule": SemiSupervisedDetector.fusion_rule,
                     **({"detector_params": overrides} if overrides else {})})
    store.run_all(list(units.values()))  # on the executor the flags name (classes run side by side there)
    for c, unit in units.items():
        known = ((c + 1) % 10,)
        curves[c] = {**store.result(unit), "seconds": store.record(unit)["seconds"]}
        for n, value, on_known, on_novel in zip(counts, curves[c]["m2"], curves[c]["m2_known"], curves[c]["m2_novel"]):
            print(f"normal {c}, known anomaly class {known[0]}, {n} labelled: SemiSupervisedDetector {value:.3f} "
                  f"(known class {on_known:.3f}, novel {on_novel:.3f}), unsupervised vae-iwae "
                  f"{curves[c]['unsupervised']:.3f}", flush=True)
    stored = f"; compute time stored with the classes: {sum(curve['seconds'] for curve in curves.values()):.0f} s"
    text = _tables(curves, counts, args) + f"\nThis run: {time.perf_counter() - t_all:.0f} s{stored}.\n"
    print(text)
    if args.results:
        write_text(args.results, text)
    if args.figure:
        from vaelab import plots

        lines, base = curve_groups(list(curves.values()))
        lines |= {f"normal {c}": curve["m2"] for c, curve in curves.items()}
        plots.save_figure(plots.label_curve(counts, lines, base, "labelled anomalies (one known class)",
                                            highlighted=3), args.figure)


OVERRIDES = ("anomaly_prior", "labelled_share", "balance", "references")  # flags that set the detector's parameters


def _overrides(args: argparse.Namespace) -> dict[str, float | str]:
    return {k: getattr(args, k) for k in OVERRIDES if getattr(args, k) is not None}


def _value(v: float | str) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def _tables(curves: dict[int, dict[str, object]], counts: list[int], args: argparse.Namespace) -> str:
    """Markdown: AUROC per normal class against all test anomalies, then the class mean per
    anomaly group (all, the known class, the novel classes)."""
    from vaelab.evaluation import ANOMALY_GROUPS
    from vaelab.experiments.semisupervised import SCORE_VARIANTS

    labelled = " | ".join(f"{n} labelled" for n in counts)
    lines = [f"AUROC on the MNIST test set; one-vs-rest, {args.epochs} epochs, latent {args.latent_dim}, "
             f"pollution {args.pollution}; the labelled anomalies come from class (normal + 1) mod 10; "
             + "".join(f"detector {k} = {_value(v)}; " for k, v in _overrides(args).items()) +
             "seed = normal class.", "",
             f"| normal class | {labelled} | unsupervised vae-iwae |", "|---|" + "---|" * (len(counts) + 1)]
    for c, curve in curves.items():
        lines.append(f"| {c} | " + " | ".join(f"{v:.3f}" for v in curve["m2"]) + f" | {curve['unsupervised']:.3f} |")
    shares = {c: curve["classified_normal"] for c, curve in curves.items() if "classified_normal" in curve}
    if shares:  # near 0: M2's classifier has put every unlabelled row in the anomaly class
        lines += ["", "Share of the unlabelled training rows that M2's classifier puts in the normal class:", "",
                  f"| normal class | {labelled} |", "|---|" + "---|" * len(counts)]
        lines += [f"| {c} | " + " | ".join(f"{v:.3f}" for v in share) + " |" for c, share in shares.items()]
    lines += ["", f"Mean over the {len(curves)} normal classes, by which test anomalies the AUROC is against "
              "(normal test digits always included); below the detector, its two parts alone (likelihood: "
              "L(x, normal); classifier: log q(normal given x)) and the mean-rank fusion of both, from the same "
              "fitted models:", "",
              f"| score | test anomalies | {labelled} | unsupervised vae-iwae |",
              "|---|---|" + "---|" * (len(counts) + 1)]
    for variant, name in SCORE_VARIANTS.items():
        for key, label in ANOMALY_GROUPS.items():
            means = np.mean([curve[variant + key] for curve in curves.values()], axis=0)
            base = np.mean([curve["unsupervised" + key] for curve in curves.values()])
            lines.append(f"| {name} | {label} | " + " | ".join(f"{m:.3f}" for m in means) + f" | {base:.3f} |")
    return "\n".join(lines) + "\n"

if __name__ == "__main__":
    main()
