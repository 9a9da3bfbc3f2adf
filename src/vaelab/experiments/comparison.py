"""vaelab's detectors side by side with PyOD's, on MNIST and on data vaelab was never tuned on.

The tasks come in groups (:data:`GROUPS`): MNIST leave-one-class-out and one-vs-rest with a
limited number of training rows (what a new user tries), and the packaged data of
:mod:`vaelab.data.packaged` (8x8 digit images, texture patches, tables). Each (task, detector,
seed) is one resumable :class:`~vaelab.experiments.units.Unit`; its result is the test AUROC and
the seconds the detector took to fit and score.

Detectors are named as in the registry, optionally with ``@gaussian`` or ``@bernoulli`` (the
``detector.likelihood`` setting: e.g. ``vae-recon-error@gaussian``), or ``pyod-vae`` and
``pyod-autoencoder`` (PyOD's VAE and AutoEncoder with PyOD's defaults; PyOD is an optional extra,
``pip install vaelab[compare]``). vaelab's detectors use ``vaelab detect``'s defaults (latent 5, 50
epochs) and fit on every training row (no calibration hold-out, as PyOD).
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

import numpy as np

from vaelab.data.packaged import TEXTURES, Task, adbench_tasks, digit_image_task, table_tasks, texture_task
from vaelab.experiments.units import Unit

DIGITS = tuple(str(c) for c in range(10))
# group -> its tasks; a group is one column of the comparison.
GROUPS: dict[str, tuple[str, ...]] = {
    "mnist-loco": DIGITS,                      # the digit left out is the anomaly
    "mnist-ovr": DIGITS,                       # the digit is normal
    "digits8-ovr": DIGITS,                     # scikit-learn's 8x8 digit images, one-vs-rest
    "textures": TEXTURES,                      # scikit-image's texture photographs, one-vs-rest
    "tables": ("breast-cancer", "wine", "adbench-local", "adbench-global", "adbench-dependency",
               "adbench-clustered"),
}
PYOD = ("pyod-vae", "pyod-autoencoder")


@dataclasses.dataclass(frozen=True)
class ComparisonSettings:
    """What every cell shares."""

    mnist: str = ""               # MNIST .npz or IDX directory (needed by the mnist-* groups)
    loco_rows: int = 10000        # training rows drawn for leave-one-class-out (from the nine normal digits)
    ovr_rows: int = 3000          # training rows drawn for one-vs-rest (from the normal digit)
    latent_dim: int = 5           # vaelab detect's defaults
    epochs: int = 50


def mnist_task(path: str, protocol: str, digit: int, rows: int, seed: int) -> Task:
    """MNIST (grey, 50,000 training digits) leave-one-class-out or one-vs-rest for ``digit``, with
    ``rows`` training rows drawn (seeded) from the normal ones; the whole test set."""
    from vaelab.data import digits_config, load_grey
    from vaelab.data.protocols import leave_one_class_out, one_vs_rest

    data = load_grey(digits_config(path))
    split = (leave_one_class_out if protocol == "loco" else one_vs_rest)(
        data.train.x, data.train.y, data.test.x, data.test.y, digit)
    keep = np.sort(np.random.default_rng(seed).permutation(len(split.x_train))[:rows])
    return split.x_train[keep], split.x_test, split.is_anomaly


def build_task(group: str, task: str, settings: ComparisonSettings, seed: int) -> Task:
    """The (train normals, test rows, test is_anomaly) of ``task`` in ``group``."""
    if group in ("mnist-loco", "mnist-ovr"):
        if not settings.mnist:
            raise ValueError(f"the {group} tasks need the MNIST path")
        protocol = group.split("-")[1]
        return mnist_task(settings.mnist, protocol, int(task), settings.loco_rows if protocol == "loco"
                          else settings.ovr_rows, seed)
    if group == "digits8-ovr":
        return digit_image_task(int(task), seed)
    if group == "textures":
        return texture_task(task)
    if group == "tables":
        return (adbench_tasks if task.startswith("adbench-") else table_tasks)(seed)[task]
    raise ValueError(f"unknown group {group!r}; known: {', '.join(GROUPS)}")


def make_compared(name: str, settings: ComparisonSettings, seed: int):
    """(fit(X) -> object, score(fitted, X) -> higher-is-normal scores) for a compared detector."""
    if name in PYOD:
        try:
            from pyod.models.auto_encoder import AutoEncoder
            from pyod.models.vae import VAE
        except ImportError as exc:
            raise ImportError("the PyOD rows need PyOD: pip install 'vaelab[compare]'") from exc
        cls = VAE if name == "pyod-vae" else AutoEncoder
        return (lambda X: cls(verbose=0, random_state=seed, device="cpu").fit(X),
                lambda det, X: -det.decision_function(X))
    from vaelab.detectors import make_detector, registered_variant

    registered, config = registered_variant(name)
    det = make_detector(registered, config, latent_dim=settings.latent_dim, epochs=settings.epochs, seed=seed,
                        calibration=0.0)
    return det.fit, lambda fitted, X: fitted.score_samples(X)


def run_cell(unit: Unit, root: Path) -> dict[str, Any]:
    """One (task, detector, seed): the test AUROC and the seconds to fit and score."""
    import torch

    from vaelab.evaluation import auroc

    p = unit.params
    settings = ComparisonSettings(**p["settings"])
    train, test, is_anomaly = build_task(p["group"], p["task"], settings, p["seed"])
    fit, score = make_compared(p["detector"], settings, p["seed"])
    torch.manual_seed(p["seed"])  # PyOD draws its own weights and batches from torch's global generator
    start = time.perf_counter()
    scores = score(fit(train), test)
    return {"auroc": auroc(is_anomaly, np.asarray(scores, dtype=np.float64)),
            "seconds": time.perf_counter() - start, "train_rows": len(train), "test_rows": len(test)}


def detector_settings(detector: str) -> dict[str, Any]:
    """The ``[detector]`` settings a vaelab detector of the comparison is built with, for its cell's
    fingerprint: a cell run under other defaults (a default changed since) is run again, not reused."""
    if detector in PYOD:
        return {}
    from vaelab.detectors import registered_variant

    return {"detector_settings": dataclasses.asdict(registered_variant(detector)[1].detector)}


def comparison_units(settings: ComparisonSettings, detectors: list[str], groups: list[str],
                     seeds: list[int]) -> dict[str, Unit]:
    """Every cell by name, ``<group>/<task>/<detector>/s<seed>``."""
    unknown = [g for g in groups if g not in GROUPS]
    if unknown:
        raise ValueError(f"unknown group(s) {unknown}; known: {', '.join(GROUPS)}")
    plain = dataclasses.asdict(settings)
    units = {}
    for group in groups:
        for task in GROUPS[group]:
            for detector in detectors:
                for seed in seeds:
                    name = f"{group}/{task}/{detector}/s{seed}"
                    units[name] = Unit(name.replace("/", "_").replace("@", "-").replace("=", "-"),
                                       "vaelab.experiments.comparison:run_cell",
                                       {"settings": plain, "group": group, "task": task, "detector": detector,
                                        "seed": seed, **detector_settings(detector)})
    return units


def task_mean(cells: dict[tuple[str, str, str, int], float], group: str, task: str, detector: str) -> float:
    """``detector``'s AUROC on ``task`` of ``group``, averaged over its seeds."""
    return float(np.mean([v for (g, t, d, _), v in cells.items() if (g, t, d) == (group, task, detector)]))


def group_means(cells: dict[tuple[str, str, str, int], float], detectors: list[str],
                groups: list[str]) -> dict[str, dict[str, float]]:
    """detector -> group -> mean AUROC over the group's tasks (each task first averaged over seeds)."""
    out: dict[str, dict[str, float]] = {}
    for detector in detectors:
        out[detector] = {}
        for group in groups:
            out[detector][group] = float(np.mean([task_mean(cells, group, task, detector) for task in GROUPS[group]]))
    return out


def mean_ranks(means: dict[str, dict[str, float]], groups: list[str]) -> dict[str, float]:
    """Each detector's rank (1 = best AUROC) in each group, averaged over the groups."""
    names = list(means)
    table = np.array([[means[n][g] for g in groups] for n in names])
    ranks = np.argsort(np.argsort(-table, axis=0, kind="stable"), axis=0) + 1
    return dict(zip(names, ranks.mean(1).tolist()))


def comparison_table(means: dict[str, dict[str, float]], groups: list[str], seconds: dict[str, float]) -> str:
    """Markdown: one row per detector (best mean rank first): each group's mean AUROC, the mean and
    worst over groups, the mean rank and the compute seconds."""
    ranks = mean_ranks(means, groups)
    lines = ["| detector | " + " | ".join(groups) + " | mean | worst | mean rank | seconds |",
             "|---|" + "---:|" * (len(groups) + 4)]
    for name in sorted(means, key=lambda n: (ranks[n], -np.mean(list(means[n].values())))):
        values = [means[name][g] for g in groups]
        lines.append(f"| {name} | " + " | ".join(f"{v:.3f}" for v in values) +
                     f" | {np.mean(values):.3f} | {min(values):.3f} | {ranks[name]:.1f} | {seconds[name]:.0f} |")
    return "\n".join(lines)


def task_table(cells: dict[tuple[str, str, str, int], float], detectors: list[str], group: str) -> str:
    """Markdown: each task of ``group`` (rows) by detector (columns), AUROC averaged over seeds."""
    lines = [f"| {group} | " + " | ".join(detectors) + " |", "|---|" + "---:|" * len(detectors)]
    for task in GROUPS[group]:
        values = [task_mean(cells, group, task, det) for det in detectors]
        lines.append(f"| {task} | " + " | ".join(f"{v:.3f}" for v in values) + " |")
    return "\n".join(lines)

