"""Thresholds you can trust: the false-positive rate that `--fpr` promises, measured on held-out normal
images, and the uniformity of the normal rows' conformal p-values.

One-vs-rest on an image data set: for each normal class and seed, the detector (default: the default of
`vaelab detect`) is fitted on that class's training images with ``--calibration`` of them held out;
for each target rate a, the threshold comes from the held-out scores (split conformal), and the
empirical false-positive rate is measured on the class's test images (never seen), the detection
rate on the other classes' test images. Guarantee under exchangeability: E[FPR] <= a; a single fit's
rate varies around it by about sqrt(a (1 - a) / n_cal) (the calibration draw) plus the test rows'
binomial noise. The Kolmogorov-Smirnov statistic compares each fit's test-normal p-values with the
uniform distribution (its 1% critical value for n test rows is about 1.63 / sqrt(n)).

    python benchmarks/calibration.py [--data mnist --data-path ../shared/data/mnist.npz] [--classes 0,1,...]
        [--seeds 3] [--epochs 50] [--results benchmarks/results/calibration.md]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from scipy import stats

from vaelab.config import DEFAULT_DETECTOR, Config
from vaelab.data import load_grey
from vaelab.detectors import make_detector
from vaelab.fileio import write_text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="mnist5k")
    parser.add_argument("--data-path", default="")
    parser.add_argument("--detector", default=DEFAULT_DETECTOR)
    parser.add_argument("--classes", default="0,1,2,3,4,5,6,7,8,9")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=50)
    parser.add_argument("--latent-dim", type=int, default=5)
    parser.add_argument("--calibration", type=float, default=0.2)
    parser.add_argument("--targets", default="0.01,0.05,0.1")
    parser.add_argument("--results", default="")
    args = parser.parse_args()

    config = Config.from_dict({"data": {"name": args.data, "path": args.data_path}, "train": {"progress": False},
                               "detector": {"threshold_rows": 100000}})
    data = load_grey(config.data)
    targets = [float(t) for t in args.targets.split(",")]
    rates: dict[float, list[float]] = {a: [] for a in targets}
    power: dict[float, list[float]] = {a: [] for a in targets}
    ks, n_cal, n_test, start = [], [], [], time.perf_counter()
    for c in (int(v) for v in args.classes.split(",")):
        train = data.train.x[data.train.y == c]
        normal, other = data.test.x[data.test.y == c], data.test.x[data.test.y != c]
        for seed in range(args.seeds):
            det = make_detector(args.detector, config, latent_dim=args.latent_dim, epochs=args.epochs, seed=seed,
                                calibration=args.calibration).fit(train)
            p_normal = det.score_pvalues(normal)
            n_cal.append(len(det.calibration_scores_))
            n_test.append(len(normal))
            ks.append(stats.kstest(p_normal, "uniform").statistic)
            for a in targets:
                det.set_threshold(fpr=a)
                flagged = det.predict(normal) == -1
                assert np.array_equal(flagged, p_normal <= a)  # the threshold and the p-values agree
                rates[a].append(float(flagged.mean()))
                power[a].append(float((det.predict(other) == -1).mean()))
            print(f"class {c} seed {seed}: " + ", ".join(f"FPR@{a:g} {rates[a][-1]:.4f}" for a in targets)
                  + f"; KS {ks[-1]:.3f}", flush=True)
    fits = len(ks)
    lines = [f"# False-positive rate at a conformal threshold ({args.detector}, {args.data}, one-vs-rest, "
             f"{fits} fits: classes {args.classes} x {args.seeds} seeds; calibration {args.calibration:g} of each "
             f"class's training images, {int(np.mean(n_cal))} rows on average; {int(np.mean(n_test))} test normals "
             f"per fit; {time.perf_counter() - start:.0f} s)", "",
             "| target a | mean FPR | sd over fits | expected sd | max FPR | fits above a | detection rate on the "
             "other classes |", "|---|---|---|---|---|---|---|"]
    for a in targets:
        r = np.array(rates[a])
        expected = np.sqrt(a * (1 - a) / np.mean(n_cal) + a * (1 - a) / np.mean(n_test))
        lines.append(f"| {a:g} | {r.mean():.4f} | {r.std():.4f} | {expected:.4f} | {r.max():.4f} | "
                     f"{int((r > a).sum())} of {fits} | {np.mean(power[a]):.3f} |")
    crit = 1.63 / np.sqrt(np.mean(n_test))
    lines += ["", f"Kolmogorov-Smirnov statistic of the test normals' p-values against the uniform: median "
              f"{np.median(ks):.3f}, max {np.max(ks):.3f} (1% critical value for one fit's {int(np.mean(n_test))} "
              f"independent rows: {crit:.3f}; a fit's p-values share one calibration draw, so their deviations "
              f"are of the calibration's size, about 1/sqrt(n_cal) = {1 / np.sqrt(np.mean(n_cal)):.3f})."]
    print("\n".join(lines))
    if args.results:
        write_text(args.results, "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
