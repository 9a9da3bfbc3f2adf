"""Tables of the anomaly benchmark: summaries, Markdown beside published results, CSV / JSON files."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import numpy as np

from vaelab.config import Config
from vaelab.detectors.registry import CLASS_CONDITIONAL
from vaelab.fileio import write_json, write_text

RAW = 0  # the latent size of the raw-data cells (no VAE)
ENSEMBLE = -1  # the latent size of the rows that fuse a detector's scores over every latent size
# detectors given more than the unlabelled normal rows: shown with what they are given, never the "best mean"
LABELLED = {CLASS_CONDITIONAL: "given the normal rows' classes"}


SEED_ENSEMBLE = " (ensemble of {n} seeds)"  # how a detector fused over its VAE training seeds is named


def seed_ensemble_name(detector: str, n_seeds: int) -> str:
    """The name of ``detector`` fused over ``n_seeds`` VAE training seeds (one row per class, no spread)."""
    return detector + SEED_ENSEMBLE.format(n=n_seeds)


def is_seed_ensemble(detector: str) -> bool:
    head, tail = SEED_ENSEMBLE.split("{n}")
    return detector.endswith(tail) and head in detector


def base_detector(detector: str) -> str:
    """The registered detector a row's name is built on (a seed ensemble's name less its suffix)."""
    return detector[:detector.rindex(SEED_ENSEMBLE.split("{n}")[0])] if is_seed_ensemble(detector) else detector


def is_labelled(detector: str) -> bool:
    """Whether the detector is given more than the unlabelled normal rows (:data:`LABELLED`)."""
    return base_detector(detector) in LABELLED


def latent_label(d: int) -> str:
    """How tables and figures name a latent size: ``raw``, ``all`` (the ensemble) or the size."""
    return {RAW: "raw", ENSEMBLE: "all"}.get(d, str(d))


def class_means(rows: list[dict[str, Any]], key: str = "auroc") -> dict[tuple, dict[int, float]]:
    """(protocol, latent size, detector) -> class -> ``key`` averaged over the VAE training seeds."""
    by: dict[tuple, dict[int, list[float]]] = {}
    for r in rows:
        by.setdefault((r["protocol"], r["latent_dim"], r["detector"]), {}).setdefault(r["class"], []).append(r[key])
    return {k: {c: float(np.mean(v)) for c, v in per.items()} for k, per in by.items()}


def seed_spread(rows: list[dict[str, Any]]) -> dict[tuple, float]:
    """(protocol, latent size, detector) -> standard deviation over training seeds of the mean AUROC
    over classes (0 with one seed)."""
    by: dict[tuple, dict[Any, list[float]]] = {}
    for r in rows:
        by.setdefault((r["protocol"], r["latent_dim"], r["detector"]), {}).setdefault(r.get("seed"), []).append(
            r["auroc"])
    return {k: float(np.std([np.mean(v) for v in per.values()])) for k, per in by.items()}


def summary(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean AUROC and AP over classes (each class averaged over seeds first) per (protocol, latent
    size, detector), the worst class, and the spread over seeds; best first."""
    aurocs, aps, spread = class_means(rows), class_means(rows, "ap"), seed_spread(rows)
    seeds: dict[tuple, set] = {}
    for r in rows:
        seeds.setdefault((r["protocol"], r["latent_dim"], r["detector"]), set()).add(r.get("seed"))
    out = [{"protocol": p, "latent_dim": d, "detector": name, "n_classes": len(per), "n_seeds": len(seeds[k]),
            "mean_auroc": float(np.mean(list(per.values()))), "mean_ap": float(np.mean(list(aps[k].values()))),
            "min_auroc": float(np.min(list(per.values()))), "seed_sd": spread[k]}
           for k, per in aurocs.items() for p, d, name in [k]]
    return sorted(out, key=lambda r: (r["protocol"], -r["mean_auroc"]))


PROTOCOL_TITLES = {"loco": "leave-one-class-out (class c is the anomaly)",
                   "ovr": "one-vs-rest (class c is normal)"}


def detector_label(name: str) -> str:
    """A detector's name in the tables, with what it is given beyond the unlabelled rows."""
    return f"{name} ({LABELLED[base_detector(name)]})" if is_labelled(name) else name


def markdown_tables(rows: list[dict[str, Any]]) -> str:
    """Per protocol: AUROC per class (mean over seeds) and mean, one line per detector and latent size,
    with the spread over seeds where there are several."""
    lines = []
    means, spread = class_means(rows), seed_spread(rows)
    several = len({r.get("seed") for r in rows if r["latent_dim"] != RAW}) > 1
    for p in dict.fromkeys(r["protocol"] for r in rows):
        classes = sorted({r["class"] for r in rows if r["protocol"] == p})
        lines += [f"### {PROTOCOL_TITLES[p]}", "",
                  "| detector | latent | " + " | ".join(str(c) for c in classes) + " | mean |"
                  + (" sd over seeds |" if several else ""),
                  "|---|---|" + "---|" * (len(classes) + 1 + several)]
        keys = sorted((k for k in means if k[0] == p), key=lambda k: -np.mean(list(means[k].values())))
        for key in keys:
            _, d, det = key
            vals = means[key]
            cells = " | ".join(f"{vals[c]:.3f}" if c in vals else "" for c in classes)
            sd = "–" if is_seed_ensemble(det) else f"{spread[key]:.3f}"  # one fused model: no spread over seeds
            lines.append(f"| {detector_label(det)} | {latent_label(d)} | {cells} | **{np.mean(list(vals.values())):.3f}** |"
                         + (f" {sd} |" if several else ""))
        lines.append("")
    return "\n".join(lines)


# Published AUROC per MNIST class (0-9), for comparison only; see the README for the sources.
PUBLISHED = {
    "loco": {
        "An & Cho 2015, VAE reconstruction probability": (0.917, 0.136, 0.921, 0.781, 0.808, 0.862, 0.848, 0.596,
                                                           0.895, 0.545),
        "Tonnaer (thesis, Table 3.3), VAE ELBO, latent 2": (0.96, 0.73, 0.97, 0.94, 0.73, 0.92, 0.95, 0.77, 0.92,
                                                            0.66),
        "Tonnaer (thesis, Table 3.3), VAE ELBO, latent 32": (0.81, 0.09, 0.92, 0.87, 0.78, 0.86, 0.87, 0.51, 0.89,
                                                             0.58),
    },
    "ovr": {
        "Ruff et al. 2018, OC-SVM": (0.986, 0.995, 0.825, 0.881, 0.949, 0.771, 0.965, 0.937, 0.889, 0.931),
        "Ruff et al. 2018, KDE": (0.971, 0.989, 0.790, 0.862, 0.879, 0.738, 0.876, 0.914, 0.792, 0.882),
        "Ruff et al. 2018, isolation forest": (0.980, 0.973, 0.886, 0.899, 0.927, 0.855, 0.956, 0.920, 0.899, 0.935),
        "Ruff et al. 2018, one-class Deep SVDD": (0.980, 0.997, 0.917, 0.919, 0.949, 0.885, 0.983, 0.946, 0.939,
                                                  0.965),
    },
}
COMPARED = {"loco": ("vae-recon-prob", "vae-iwae", "latent-ocsvm", "raw-ocsvm"),
            "ovr": ("raw-ocsvm", "raw-kde", "raw-iforest", "vae-iwae", "latent-ocsvm")}


def published_comparison(rows: list[dict[str, Any]]) -> str:
    """Per protocol: a few of our detectors (each at its best latent size) and the best one,
    beside the published per-class AUROC on MNIST."""
    lines = []
    for p in dict.fromkeys(r["protocol"] for r in rows):
        sub = [r for r in rows if r["protocol"] == p]
        classes = sorted({r["class"] for r in sub})
        if classes != list(range(10)):
            continue
        per_class = {(det, d): vals for (q, d, det), vals in class_means(sub).items()}
        means = {k: list(v.values()) for k, v in per_class.items()}
        best_of = lambda det: max((k for k in means if k[0] == det), key=lambda k: np.mean(means[k]))  # noqa: E731
        picks = [best_of(d) for d in COMPARED[p] if any(k[0] == d for k in means)]
        overall = max((k for k in means if not is_labelled(k[0])), key=lambda k: np.mean(means[k]))
        picks += [overall] if overall not in picks else []
        picks += [best_of(d) for d in dict.fromkeys(k[0] for k in means) if is_labelled(d)]  # beside, never "best"
        lines += [f"### {PROTOCOL_TITLES[p]}: vaelab beside published results", "",
                  "| | " + " | ".join(map(str, classes)) + " | mean |", "|---|" + "---|" * (len(classes) + 1)]
        for det, d in picks:
            vals = per_class[(det, d)]
            label = (f"vaelab {detector_label(det)}" + (f" (latent {latent_label(d)})" if d != RAW else "")
                     + (" — best mean" if (det, d) == overall else ""))
            lines.append(f"| {label} | " + " | ".join(f"{vals[c]:.3f}" for c in classes) +
                         f" | **{np.mean(list(vals.values())):.3f}** |")
        for name, vals in PUBLISHED[p].items():
            lines.append(f"| {name} | " + " | ".join(f"{v:.3f}" for v in vals) + f" | {np.mean(vals):.3f} |")
        lines.append("")
    return "\n".join(lines)


def write_tables(rows: list[dict[str, Any]], out_dir: Path, config: Config) -> None:
    """results.csv (one row per cell and detector), results.json (rows + summary), results.md."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_text(out_dir / "results.csv", buf.getvalue())
    write_json(out_dir / "results.json", {"config": config.to_dict()["anomaly"], "rows": rows,
                                          "summary": summary(rows)})
    write_text(out_dir / "results.md", published_comparison(rows) + "\n" + markdown_tables(rows))
