"""Do explanations point at what changed? The pointing score of each detector family's explanations on
synthetic anomalies whose change is confined to a known region (occlusion, erasure, invert).

Detectors are fitted on the normal training images (every class), grey pixels. For each type,
``--rows`` test digits get the anomaly at ``--severity``; the changed region is the set of pixels that
differ from the original. Pointing score (per row, then averaged): the share of the explanation's
positive mass (the pixels that push the row towards anomalous) that lies inside the region. The
baseline in the same run is the region's share of the image (what an explanation spread evenly over
the image would score); "top pixel" is the share of rows whose most-contributing pixel is inside.

Families and their explanations: VAE (exact per-pixel terms: squared error for recon-error, -log p(x_j|z)
for the likelihood), latent (occlusion through the encoder), raw (occlusion, or the exact PCA residuals).

    python benchmarks/explain_pointing.py [--data mnist --data-path ../shared/data/mnist.npz] \
        [--latent-dim 5] [--epochs 30] [--rows 100] [--results benchmarks/results/explain_pointing.md]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from vaelab.config import Config
from vaelab.data import load_grey
from vaelab.data.synthetic import describe, inject
from vaelab.detectors import make_detector
from vaelab.fileio import write_text

FAMILIES = {"vae-recon-error": "VAE", "vae-iwae": "VAE", "latent-gmm": "latent", "latent-kde": "latent",
            "raw-pca-recon": "raw", "raw-gmm": "raw", "raw-kde": "raw"}


def pointing(contributions: np.ndarray, region: np.ndarray) -> tuple[float, float]:
    """(mean share of positive contribution mass inside the region, share of rows whose top pixel is inside)."""
    positive = np.clip(contributions, 0, None)
    inside = (positive * region).sum(1) / np.maximum(positive.sum(1), 1e-12)
    top = region[np.arange(len(region)), contributions.argmax(1)]
    return float(inside.mean()), float(top.mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="mnist5k")
    parser.add_argument("--data-path", default="")
    parser.add_argument("--latent-dim", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--rows", type=int, default=100, help="anomalies per type")
    parser.add_argument("--train-limit", type=int, default=10000, help="normal training rows (seeded subset)")
    parser.add_argument("--types", default="occlusion,erasure,invert")
    parser.add_argument("--severity", type=float, default=0.5)
    parser.add_argument("--detectors", default=",".join(FAMILIES))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--results", default="")
    args = parser.parse_args()

    config = Config.from_dict({"data": {"name": args.data, "path": args.data_path, "train_limit": args.train_limit},
                               "train": {"seed": args.seed, "progress": False}})
    data = load_grey(config.data)
    shape = tuple(data.image_shape[-2:])
    types = args.types.split(",")
    pool = data.test.x[args.rows:]
    clean = data.test.x[:args.rows].astype(np.float64)
    changed = {t: inject(t, clean, shape, args.severity, seed=args.seed, pool=pool).astype(np.float64) for t in types}
    regions = {t: np.abs(changed[t] - clean) > 1e-6 for t in types}
    lines = [f"# Pointing scores of the explanations ({args.data}, {len(data.train)} normal training images, "
             f"latent {args.latent_dim}, {args.epochs} epochs, {args.rows} anomalies per type, severity "
             f"{args.severity:g})", "",
             "| family | detector | " + " | ".join(f"{t}: pointing / top pixel" for t in types) + " | seconds |",
             "|---|---|" + "---|" * (len(types) + 1),
             "| baseline | region's share of the image | " + " | ".join(
                 f"{regions[t].mean():.3f} / {regions[t].mean():.3f}" for t in types) + " | |"]
    print("\n".join(lines), flush=True)
    vae = None
    for name in args.detectors.split(","):
        start = time.perf_counter()
        shared = vae if name.startswith("latent-") else None
        det = make_detector(name, config, latent_dim=args.latent_dim, epochs=args.epochs, vae=shared,
                            calibration=0.0).fit(data.train.x)
        if name == "vae-recon-error":
            vae = det  # the latent detectors share its VAE
        cells = []
        for t in types:
            keep = regions[t].any(1)
            share, top = pointing(det.explain(changed[t][keep]), regions[t][keep])
            cells.append(f"{share:.3f} / {top:.3f}")
        line = f"| {FAMILIES.get(name, '?')} | {name} | " + " | ".join(cells) + f" | {time.perf_counter() - start:.0f} |"
        lines.append(line)
        print(line, flush=True)
    lines += ["", "Types: " + "; ".join(f"{t}: {describe(t)}" for t in types)]
    if args.results:
        write_text(args.results, "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
