"""Semi-supervised anomaly detection on MNIST after Ruff et al. (2020, Deep SAD): AUROC as labels grow.

One-vs-rest: one digit is normal, every other digit an anomaly; a few labelled anomalies come
from one known anomaly class (default: the next digit). For each number of labelled anomalies
the SemiSupervisedDetector (M2, two classes) is fitted on the training rows with those labels;
the unsupervised baseline, vae-iwae (a VAE's log p(x)), is fitted on the same rows without the
labelled anomalies. Test: the whole MNIST test set.

    python benchmarks/ssl_anomaly.py --data ../shared/data/mnist.npz [--classes 0,3,6]
        [--labels 0,5,10,50,100] [--epochs 30] [--pollution 0] [--cells DIR] [--results ...] [--figure ...]

With ``--cells DIR`` each finished normal class is kept there (JSON keyed by a fingerprint of its
settings): an interrupted run goes on where it stopped, and runs over different classes can share
the directory and be tabulated together.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from vaelab.fileio import cached_json, fingerprint, write_text


def main(argv: list[str] | None = None) -> None:
    from vaelab.config import DataConfig
    from vaelab.data import load_grey
    from vaelab.detectors import SemiSupervisedDetector
    from vaelab.semisupervised import anomaly_curve

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", required=True, help="MNIST .npz or IDX directory (or a labelled image set name)")
    parser.add_argument("--classes", default="0,3,6", help="normal classes to run")
    parser.add_argument("--labels", default="0,5,10,50,100", help="numbers of labelled anomalies")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--latent-dim", type=int, default=8)
    parser.add_argument("--pollution", type=float, default=0.0)
    parser.add_argument("--train-limit", type=int, default=0)
    parser.add_argument("--cells", type=Path, help="keep each finished class here and reuse it")
    parser.add_argument("--results", type=Path)
    parser.add_argument("--figure", type=Path)
    args = parser.parse_args(argv)

    is_name = args.data in ("mnist5k",)
    data = load_grey(DataConfig(name=args.data if is_name else "mnist", path="" if is_name else args.data,
                                train_limit=args.train_limit))
    classes = [int(c) for c in args.classes.split(",")]
    counts = [int(n) for n in args.labels.split(",")]
    curves: dict[int, dict[str, object]] = {}
    t_all = time.perf_counter()
    for c in classes:
        known = ((c + 1) % 10,)
        settings = {"data": args.data, "train_limit": args.train_limit, "normal": c, "known": known,
                    "counts": counts, "epochs": args.epochs, "latent_dim": args.latent_dim,
                    "pollution": args.pollution, "seed": c, "cell_format": 3,
                    "rule": SemiSupervisedDetector.fusion_rule}

        def run() -> dict[str, object]:
            start = time.perf_counter()
            curve = anomaly_curve(data.train.x, data.train.y, data.test.x, data.test.y, c, known, counts,
                                  epochs=args.epochs, latent_dim=args.latent_dim, pollution=args.pollution, seed=c)
            return curve | {"seconds": time.perf_counter() - start}

        curves[c] = (cached_json(args.cells / f"normal{c}-pollution{args.pollution:g}.json", fingerprint(settings), run)
                     if args.cells else run())
        for n, value, on_known, on_novel in zip(counts, curves[c]["m2"], curves[c]["m2_known"], curves[c]["m2_novel"]):
            print(f"normal {c}, known anomaly class {known[0]}, {n} labelled: SemiSupervisedDetector {value:.3f} "
                  f"(known class {on_known:.3f}, novel {on_novel:.3f}), unsupervised vae-iwae "
                  f"{curves[c]['unsupervised']:.3f}", flush=True)
    timed = [curve["seconds"] for curve in curves.values() if "seconds" in curve]
    stored = f"; compute time stored with {len(timed)} of the classes: {sum(timed):.0f} s" if timed else ""
    text = _tables(curves, counts, args) + f"\nThis run: {time.perf_counter() - t_all:.0f} s{stored}.\n"
    print(text)
    if args.results:
        write_text(args.results, text)
    if args.figure:
        from vaelab import plots
        from vaelab.semisupervised import curve_groups

        lines, base = curve_groups(list(curves.values()))
        lines |= {f"normal {c}": curve["m2"] for c, curve in curves.items()}
        plots.save_figure(plots.label_curve(counts, lines, base, "labelled anomalies (one known class)",
                                            highlighted=3), args.figure)


def _tables(curves: dict[int, dict[str, object]], counts: list[int], args: argparse.Namespace) -> str:
    """Markdown: AUROC per normal class against all test anomalies, then the class mean per
    anomaly group (all, the known class, the novel classes)."""
    from vaelab.evaluation import ANOMALY_GROUPS
    from vaelab.semisupervised import SCORE_VARIANTS

    labelled = " | ".join(f"{n} labelled" for n in counts)
    lines = [f"AUROC on the MNIST test set; one-vs-rest, {args.epochs} epochs, latent {args.latent_dim}, "
             f"pollution {args.pollution}; the labelled anomalies come from class (normal + 1) mod 10; "
             "seed = normal class.", "",
             f"| normal class | {labelled} | unsupervised vae-iwae |", "|---|" + "---|" * (len(counts) + 1)]
    for c, curve in curves.items():
        lines.append(f"| {c} | " + " | ".join(f"{v:.3f}" for v in curve["m2"]) + f" | {curve['unsupervised']:.3f} |")
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
