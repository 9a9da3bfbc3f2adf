"""How stable are the clusters of the anomaly benchmark's normal training rows? (m2-clusters-or-fusion)

For each protocol and class, the rows a cell fits on (``vaelab benchmark anomaly``'s split less the
2,000 held-out reference rows; with ``--all-rows`` every training row, as a refitted cell decides),
scaled as ``m2-clusters`` scales them: the clusters from ``--seed`` .. ``--seed`` + maps - 1 and their
mean adjusted Rand index (:func:`vaelab.clusters.stable_clusters`; maps: ``--maps``, by default the
config's ``detector.cluster_maps``). No test row is read. Prints one line per
set and a markdown table; ``m2-clusters-or-fusion`` takes the clusters where the index is at least
``detector.cluster_stability``.

    python benchmarks/cluster_stability.py --data ../shared/data/mnist.npz --protocols loco,ovr --threads 2
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> None:
    from vaelab.config import load_config
    from vaelab.data import digits_config, load_grey
    from vaelab.detectors import make_detector, reference_split
    from vaelab.detectors.gated import chooses_clusters
    from vaelab.experiments.anomaly import protocol_split
    from vaelab.fileio import write_text
    import torch

    root = Path(__file__).resolve().parents[1]
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", required=True, help="MNIST .npz or IDX directory, or a registered name (mnist5k)")
    parser.add_argument("--config", type=Path, default=root / "configs" / "anomaly.toml",
                        help="the reference rows, cluster settings and threshold come from here")
    parser.add_argument("--protocols", default="loco,ovr")
    parser.add_argument("--classes", default="0,1,2,3,4,5,6,7,8,9")
    parser.add_argument("--seed", type=int, default=0, help="the first seed (the next maps - 1 follow)")
    parser.add_argument("--maps", type=int, help="how many seeds' maps (default: the config's detector.cluster_maps)")
    parser.add_argument("--all-rows", action="store_true", help="every training row (a refitted cell's choice)")
    parser.add_argument("--train-limit", type=int, default=0, help="for smoke tests: fewer training rows")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--results", type=Path, help="the markdown table")
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)  # the t-SNE maps use torch's thread count (vaelab.embedding.tsne)
    config = dataclasses.replace(load_config(args.config), data=digits_config(args.data, args.train_limit))
    data = load_grey(config.data)
    template = make_detector("m2-clusters", config, seed=args.seed, calibration=0.0)
    maps = args.maps or config.detector.cluster_maps
    lines = [f"| protocol | class | rows | clusters (seed) | stability (mean adjusted Rand index, {maps} maps) | "
             f"takes the clusters (at least {config.detector.cluster_stability}) | seconds |", "|---|---|---|---|---|---|---|"]
    for protocol in args.protocols.split(","):
        for c in (int(c) for c in args.classes.split(",")):
            split = protocol_split(data, protocol, c, 0.0, config.train.seed)
            fit, _ = reference_split(len(split.x_train), config.detector.reference_rows, config.train.seed)
            x = split.x_train if args.all_rows else split.x_train[fit]
            t0 = time.perf_counter()
            first, stability = template.stable_clusters_of(x, maps=maps)
            seconds = time.perf_counter() - t0
            taken = chooses_clusters(stability, config.detector.cluster_stability)
            print(f"{protocol} class {c}: {len(x)} rows, {first.n_clusters} clusters, "
                  f"stability {stability:.3f}, {'clusters' if taken else 'fallback'} ({seconds:.0f} s)", flush=True)
            lines.append(f"| {protocol} | {c} | {len(x)} | {first.n_clusters} | {stability:.3f} | "
                         f"{'yes' if taken else 'no'} | {seconds:.0f} |")
    table = "\n".join(lines) + "\n"
    print(table)
    if args.results:
        write_text(args.results, table)


if __name__ == "__main__":
    main()
