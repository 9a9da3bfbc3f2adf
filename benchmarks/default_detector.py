"""The evidence for the default detector of `vaelab detect`, in one table: every detector's mean AUROC
on MNIST leave-one-class-out and one-vs-rest, over the synthetic image anomaly types at one severity,
and over the tabular tasks, at the latent size `vaelab detect` uses; with the mean, the worst of the
four and the mean rank. The rule, fixed before the numbers: the default is the detector with the best
mean rank over the four; it must be at least as good as the best raw baseline on each, or the table
says where it is not. Each source may be given more than once (a detector measured in a later run):
a detector's value comes from the first file that has it. ``--stored`` takes a table this script
wrote before: its rows stand as written (the runs behind them need not be kept), and the other
sources add the detectors it does not have. With ``--comparison`` (benchmarks/versus_pyod.py's JSON) the groups of data
vaelab was never tuned on (``--comparison-groups``: scikit-learn's 8x8 digits, scikit-image's
textures, the tables) join as further columns, each detector as a new user fits it there. Ties of
mean rank go to the higher mean AUROC.

    vaelab benchmark anomaly --config configs/anomaly.toml --set data.path=../shared/data/mnist.npz --out runs/anomaly
    vaelab benchmark synthetic --config configs/seed.toml --set data.path=../shared/data/mnist.npz --run runs/seed --out runs/synthetic
    python benchmarks/tabular_anomaly.py --seeds 3 --epochs 100 --json benchmarks/results/tabular_anomaly.json
    python benchmarks/default_detector.py --anomaly runs/anomaly/results.json --synthetic runs/synthetic/results.json \
        --tabular benchmarks/results/tabular_anomaly.json [--latent-dim 5] [--severity 1] [--results FILE] \
        [--comparison benchmarks/results/versus_pyod.json] [--anomaly MORE.json ...] \
        [--stored benchmarks/results/default_detector.md]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Callable, TypeVar

import numpy as np

from vaelab.fileio import write_text

RAW = 0  # the latent size the benchmarks give the raw-feature baselines
T = TypeVar("T")


def first_found(paths: list[Path], read: Callable[[Path], T]) -> T:
    """``read`` of every path merged, a detector's value from the first path that has it: a flat
    detector -> value dict, or column -> detector -> value."""
    merged: dict = {}
    for path in paths:
        for key, value in read(path).items():
            if isinstance(value, dict):
                merged[key] = {**value, **merged.get(key, {})}
            else:
                merged.setdefault(key, value)
    return merged


def anomaly_means(path: Path, latent: int) -> dict[str, dict[str, float]]:
    """protocol -> detector -> mean AUROC over classes, at ``latent`` (raw baselines at theirs)."""
    out: dict[str, dict[str, float]] = {}
    for row in json.loads(path.read_text())["summary"]:
        if row["latent_dim"] in (latent, RAW):
            out.setdefault(row["protocol"], {})[row["detector"]] = row["mean_auroc"]
    return out


def synthetic_means(path: Path, latent: int, severity: float) -> dict[str, float]:
    """detector -> mean AUROC over the anomaly types at ``severity`` and ``latent``."""
    per: dict[str, list[float]] = {}
    for row in json.loads(path.read_text())["rows"]:
        if row["latent_dim"] in (latent, RAW) and row["severity"] == severity:
            per.setdefault(row["detector"], []).append(row["auroc"])
    return {k: float(np.mean(v)) for k, v in per.items()}


def tabular_means(path: Path) -> dict[str, float]:
    """detector -> mean AUROC over the tabular tasks."""
    return {k: float(np.mean(list(v.values()))) for k, v in json.loads(path.read_text())["auroc"].items()}


SUMMARY_COLUMNS = ("mean", "worst", "mean rank")  # after the columns: main writes them, stored_columns skips them


def stored_columns(path: Path) -> dict[str, dict[str, float]]:
    """column -> detector -> value of a table this script wrote (:func:`main`'s markdown)."""
    lines = [line for line in path.read_text().splitlines() if line.startswith("| ")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    names = header[1:len(header) - len(SUMMARY_COLUMNS)]
    out: dict[str, dict[str, float]] = {name: {} for name in names}
    for line in lines[1:]:
        cells = [c.strip().strip("*") for c in line.strip("|").split("|")]
        for name, value in zip(names, cells[1:]):
            out[name][cells[0]] = float(value)
    return out


UNSEEN_GROUPS = "digits8-ovr,textures,tables"  # versus_pyod's groups of data no choice in vaelab looked at


def comparison_means(path: Path, groups: list[str]) -> dict[str, dict[str, float]]:
    """group -> detector -> mean AUROC over its tasks, from versus_pyod.py's JSON."""
    means = json.loads(path.read_text())["means"]
    return {g: {d: v[g] for d, v in means.items() if g in v} for g in groups}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--anomaly", type=Path, required=True, action="append")
    parser.add_argument("--synthetic", type=Path, required=True, action="append")
    parser.add_argument("--tabular", type=Path, required=True, action="append")
    parser.add_argument("--latent-dim", type=int, default=5)
    parser.add_argument("--severity", type=float, default=1.0)
    parser.add_argument("--comparison", type=Path, action="append", help="versus_pyod.py's --json: more columns")
    parser.add_argument("--comparison-groups", default=UNSEEN_GROUPS, help="its groups to add as columns")
    parser.add_argument("--stored", type=Path, help="a table this script wrote: its rows stand as written")
    parser.add_argument("--results", type=Path)
    args = parser.parse_args(argv)
    anomaly = first_found(args.anomaly, lambda p: anomaly_means(p, args.latent_dim))
    columns = {"MNIST leave-one-class-out": anomaly.get("loco", {}), "MNIST one-vs-rest": anomaly.get("ovr", {}),
               f"synthetic types (sev. {args.severity:g})": first_found(
                   args.synthetic, lambda p: synthetic_means(p, args.latent_dim, args.severity)),
               "tabular": first_found(args.tabular, tabular_means)}
    if args.comparison:
        groups = args.comparison_groups.split(",")
        columns.update(first_found(args.comparison, lambda p: comparison_means(p, groups)))
    if args.stored is not None:
        stored = stored_columns(args.stored)
        missing = sorted(set(stored) - set(columns))
        if missing:
            parser.error(f"{args.stored}: column {missing[0]!r} is not among this table's columns")
        columns = {name: {**values, **stored.get(name, {})} for name, values in columns.items()}
    names = sorted(set.intersection(*(set(c) for c in columns.values())))
    table = np.array([[c[n] for c in columns.values()] for n in names])
    ranks = (np.argsort(np.argsort(-table, axis=0), axis=0) + 1).mean(1)
    order = np.lexsort((-table.mean(1), ranks))  # mean rank, then the higher mean AUROC
    lines = [f"| detector (VAE latent {args.latent_dim}) | " + " | ".join([*columns, *SUMMARY_COLUMNS]) + " |",
             "|---|" + "---|" * (len(columns) + len(SUMMARY_COLUMNS))]
    for i in order:
        lines.append(f"| {names[i]} | " + " | ".join(f"{v:.3f}" for v in table[i]) +
                     f" | {table[i].mean():.3f} | {table[i].min():.3f} | {ranks[i]:.1f} |")
    raw = [i for i, n in enumerate(names) if n.startswith("raw-")]
    best_raw = table[raw].max(0) if raw else np.full(len(columns), -np.inf)
    pick = names[order[0]]
    behind = [col for col, v, b in zip(columns, table[order[0]], best_raw) if v < b]
    lines += ["", f"Best mean rank: **{pick}**. " + (
        "At least as good as the best raw baseline on every column." if not behind else
        "Behind the best raw baseline on: " + ", ".join(behind) + ".")]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.results:
        write_text(args.results, text)


if __name__ == "__main__":
    main()
