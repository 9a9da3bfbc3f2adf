"""Deep SAD's MNIST grid (Ruff et al. 2020, section 4.2) as units of work.

Three experiments, one-vs-rest over the ten digits (one normal, nine anomalous), each a line of
:class:`GridPoint` s:

1. ``labelled``: the labelled-anomaly ratio gamma_l in {0, .01, .05, .1, .2}, one known
   anomaly class, no pollution;
2. ``pollution``: the pollution ratio gamma_p in {0, .01, .05, .1, .2}, gamma_l = .05;
3. ``classes``: the number of known anomaly classes k_l in {0, 1, 2, 3, 5}, gamma_l = .05,
   gamma_p = .1.

Ratios as in Deep SAD: gamma_l is the labelled anomalies' share of all training rows, gamma_p
the unlabelled anomalies' share of the unlabelled rows (drawn from every anomaly class but the
labelled rows). The known classes of normal class c are c+1, ..., c+k_l (mod 10), a rule fixed
before any score, so that the experiments share their common points (the grid has 13 distinct
points per normal class, not 15). Each (normal class, point) is one unit: the
SemiSupervisedDetector (and, at the points of experiment 2, the same detector with its anomaly
prior matched to the training rows' anomaly share) and a supervised classifier, on the same
split; each (normal class, gamma_p) one more unit: the unsupervised default detector of
``vaelab detect`` fitted on the unlabelled rows. Every result holds the AUROC against each
anomaly class alone, so any group (all, known, novel) is pooled exactly afterwards.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vaelab.config import Config, DataConfig, DetectorConfig, ModelConfig
from vaelab.data import load_grey
from vaelab.data.protocols import SemiSupervisedSplit, polluting_count, semi_supervised_one_vs_rest
from vaelab.detectors import SEMI_SUPERVISED, make_detector
from vaelab.evaluation import class_aurocs, pooled_auroc
from vaelab.experiments.semisupervised import detector_settings
from vaelab.experiments.units import Unit

N_CLASSES = 10


@dataclass(frozen=True)
class GridPoint:
    """One setting of the grid: labelled-anomaly ratio, pollution ratio, number of known classes."""

    labelled: float
    pollution: float
    known: int

    @property
    def name(self) -> str:
        return f"l{self.labelled:g}-p{self.pollution:g}-k{self.known}"

    @property
    def matched_prior(self) -> bool:
        """Whether this point also fits the detector with its prior matched to the anomaly share
        (experiment 2's points with pollution: one known class, gamma_l .05, gamma_p > 0)."""
        return self.pollution > 0 and self.known == 1 and self.labelled == 0.05


# experiment -> (axis label, the values along it, their points)
EXPERIMENTS: dict[str, tuple[str, tuple[float, ...], tuple[GridPoint, ...]]] = {
    "labelled": ("labelled-anomaly ratio gamma_l (one known class, no pollution)", (0, .01, .05, .1, .2),
                 tuple(GridPoint(g, 0.0, 1) for g in (0, .01, .05, .1, .2))),
    "pollution": ("pollution ratio gamma_p (gamma_l = .05, one known class)", (0, .01, .05, .1, .2),
                  tuple(GridPoint(.05, p, 1) for p in (0, .01, .05, .1, .2))),
    "classes": ("known anomaly classes k_l (gamma_l = .05, gamma_p = .1)", (0, 1, 2, 3, 5),
                tuple(GridPoint(.05, .1, k) for k in (0, 1, 2, 3, 5))),
}
# Published mean AUROC (%) on MNIST, experiment 1 (Ruff et al. 2020, Table 2), for comparison.
PUBLISHED = {"labelled": {"Deep SAD (published)": (92.8, 96.4, 96.7, 96.9, 96.9),
                          "SS-DGM (published)": (None, 89.9, 92.2, 91.6, 91.2),
                          "SSAD hybrid (published)": (96.3, 96.8, 97.4, 97.6, 97.8)}}
DEFAULT_PRIOR = "m2"        # the SemiSupervisedDetector with its default anomaly prior
MATCHED_PRIOR = "m2-matched"  # ... with the prior set to the training rows' anomaly share
SUPERVISED = "supervised"   # an MLP classifier: labelled anomalies against the unlabelled rows
UNSUPERVISED = "unsupervised"  # the default detector of `vaelab detect` on the unlabelled rows


def grid_points(experiments: list[str] | None = None) -> list[GridPoint]:
    """The distinct points of ``experiments`` (default: all three), in order."""
    seen: dict[GridPoint, None] = {}
    for name in experiments or list(EXPERIMENTS):
        seen.update(dict.fromkeys(EXPERIMENTS[name][2]))
    return list(seen)


def known_classes(normal: int, k: int) -> tuple[int, ...]:
    """The k known anomaly classes of normal class ``normal``: the next k digits (mod 10)."""
    return tuple((normal + i) % N_CLASSES for i in range(1, k + 1))


def labelled_count(labelled: float, n_unlabelled: int) -> int:
    """Labelled anomalies making up the share ``labelled`` of all training rows."""
    return int(round(labelled * n_unlabelled / (1 - labelled)))


def grid_split(x_train, y_train, x_test, y_test, normal: int, point: GridPoint, seed: int,
               labelled_normals: float = 0.0) -> SemiSupervisedSplit:
    """The training rows of ``point`` for normal class ``normal`` (see the module docstring), with the
    share ``labelled_normals`` of the normal class's rows labelled normal (the same rows and anomaly
    labels as without them)."""
    n_normal = int((y_train == normal).sum())
    n_unlabelled = n_normal + polluting_count(n_normal, point.pollution)
    known = known_classes(normal, point.known)
    n_labelled = labelled_count(point.labelled, n_unlabelled) if known else 0
    return semi_supervised_one_vs_rest(x_train, y_train, x_test, y_test, normal, known, n_labelled,
                                       n_labelled_normals=int(round(labelled_normals * n_normal)),
                                       pollution=point.pollution, seed=seed)


def training_anomaly_share(split: SemiSupervisedSplit, n_normal: int) -> float:
    """The share of anomalies among ``split``'s training rows (labelled and polluting)."""
    return 1.0 - n_normal / len(split.y_train)


def supervised_scores(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, hidden: tuple[int, ...],
                      epochs: int, seed: int) -> np.ndarray:
    """log P(normal | x) of an MLP classifier trained on the labelled anomalies (1) against every
    other training row taken as normal (0), as Deep SAD's supervised baseline does."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier

    clf = MLPClassifier(hidden_layer_sizes=hidden, batch_size=128, max_iter=epochs, random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(x_train, (y_train == 1).astype(int))
    return np.log(np.clip(clf.predict_proba(x_test)[:, 0], 1e-30, None))


def _settings(p: dict[str, Any]) -> Config:
    return detector_settings(tuple(p["hidden_dims"]), p["iwae_samples"])


def run_point(unit: Unit, root: Path) -> dict[str, Any]:
    """One (normal class, grid point): per-class test AUROCs of the SemiSupervisedDetector (and its
    matched-prior variant at experiment 2's points) and of the supervised classifier (none
    without labelled anomalies), the anomaly shares, the seconds each took and, per detector, the
    share of unlabelled training rows its classifier calls normal (a check without labels)."""
    p = unit.params
    data = load_grey(DataConfig(**p["data"]))
    point = GridPoint(**p["point"])
    x, y = data.train.x, data.train.y
    split = grid_split(x, y, data.test.x, data.test.y, p["normal"], point, p["seed"], p.get("labelled_normals", 0.0))
    n_normal = int((y == p["normal"]).sum())
    share = training_anomaly_share(split, n_normal)
    priors = {DEFAULT_PRIOR: None, **({MATCHED_PRIOR: share} if point.matched_prior else {})}
    out: dict[str, Any] = {"n_train": len(split.y_train), "n_labelled": int((split.y_train == 1).sum()),
                           "n_labelled_normals": int((split.y_train == 0).sum()),
                           "anomaly_share": share, "known": list(known_classes(p["normal"], point.known)),
                           "per_class": {}, "seconds": {}}
    for name, prior in priors.items():
        start = time.perf_counter()
        det = make_detector(SEMI_SUPERVISED, _settings(p), latent_dim=p["latent_dim"], epochs=p["epochs"],
                            seed=p["seed"], calibration=0.0)
        det.set_params(**p["m2"], **({"anomaly_prior": prior} if prior is not None else {}))
        scores = det.fit(split.x_train, split.y_train).score_samples(split.x_test)
        out["per_class"][name] = class_aurocs(data.test.y, p["normal"], scores)
        out["seconds"][name] = time.perf_counter() - start
        out.setdefault("normal_share", {})[name] = det.normal_share(split.x_train[split.y_train == -1])
    if out["n_labelled"]:
        start = time.perf_counter()
        scores = supervised_scores(split.x_train, split.y_train, split.x_test, tuple(p["hidden_dims"]),
                                   p["epochs"], p["seed"])
        out["per_class"][SUPERVISED] = class_aurocs(data.test.y, p["normal"], scores)
        out["seconds"][SUPERVISED] = time.perf_counter() - start
    return out


def run_unsupervised(unit: Unit, root: Path) -> dict[str, Any]:
    """The default unsupervised detector fitted on the unlabelled rows of (normal class, pollution):
    per-class test AUROCs and seconds."""
    p = unit.params
    data = load_grey(DataConfig(**p["data"]))
    point = GridPoint(0.0, p["pollution"], 0)
    split = grid_split(data.train.x, data.train.y, data.test.x, data.test.y, p["normal"], point, p["seed"])
    start = time.perf_counter()
    det = make_detector(p["detector"], _settings(p), latent_dim=p["detector_latent_dim"], epochs=p["detector_epochs"],
                        seed=p["seed"], calibration=0.0)
    scores = det.fit(split.x_train[split.y_train != 1]).score_samples(split.x_test)
    return {"per_class": {UNSUPERVISED: class_aurocs(data.test.y, p["normal"], scores)},
            "seconds": {UNSUPERVISED: time.perf_counter() - start}}


@dataclass(frozen=True)
class GridSettings:
    """What every cell of the grid shares."""

    data: DataConfig
    epochs: int = 30               # the SemiSupervisedDetector's and the classifier's epochs
    latent_dim: int = 8
    hidden_dims: tuple[int, ...] = (400,)
    iwae_samples: int = DetectorConfig().iwae_samples
    detector: str = "vae-recon-error"  # the unsupervised baseline: vaelab detect's default when the grid was run,
    detector_latent_dim: int = ModelConfig().latent_dim
    detector_epochs: int = 50
    m2_balance: float = 10.0       # the SemiSupervisedDetector's balance and references (its defaults)
    m2_references: str = "classified-normal"
    m2_correction: str = "complexity"  # its likelihood_correction (in a unit's settings only when not "none")
    labelled_normals: float = 0.0  # the share of the normal class's training rows labelled normal (0: none)


def seed_suffix(seed_index: int) -> str:
    """What a unit's name carries for its seed: nothing for the first seed (the names of one-seed
    runs), ``-s<i>`` for the others."""
    return "" if seed_index == 0 else f"-s{seed_index}"


def point_unit(normal: int, point: GridPoint, seed_index: int = 0) -> str:
    """The name of the unit of (normal class, grid point, seed)."""
    return f"normal{normal}-{point.name}{seed_suffix(seed_index)}"


def baseline_unit(normal: int, pollution: float, detector: str, seed_index: int = 0) -> str:
    """The name of the unsupervised baseline's unit of (normal class, pollution, seed)."""
    return f"normal{normal}-p{pollution:g}-{detector}{seed_suffix(seed_index)}"


def m2_settings(settings: GridSettings) -> dict[str, Any]:
    """The SemiSupervisedDetector's settings of every point unit; the likelihood correction only where
    one is asked for, so the units of runs made before it existed keep their fingerprints."""
    m2: dict[str, Any] = {"balance": settings.m2_balance, "references": settings.m2_references}
    if settings.m2_correction != "none":
        m2["likelihood_correction"] = settings.m2_correction
    return m2


def grid_units(settings: GridSettings, classes: list[int], experiments: list[str] | None = None,
               seeds: int = 1) -> dict[str, Unit]:
    """Every unit of the grid by name, for ``seeds`` seeds each: seed i of normal class c is
    c + 10 i (i = 0: the normal class, as the label curve)."""
    import dataclasses

    common = {"data": dataclasses.asdict(settings.data), "hidden_dims": list(settings.hidden_dims),
              "iwae_samples": settings.iwae_samples}
    units: dict[str, Unit] = {}
    for c in classes:
        points = grid_points(experiments)
        for i in range(seeds):
            seed = c + N_CLASSES * i
            for point in points:
                name = point_unit(c, point, i)
                units[name] = Unit(name, "vaelab.experiments.deep_sad:run_point",
                                   {**common, "normal": c, "seed": seed, "point": dataclasses.asdict(point),
                                    "epochs": settings.epochs, "latent_dim": settings.latent_dim,
                                    "m2": m2_settings(settings),
                                    **({"labelled_normals": settings.labelled_normals}
                                       if settings.labelled_normals else {})})
            for pollution in sorted({point.pollution for point in points}):
                name = baseline_unit(c, pollution, settings.detector, i)
                units[name] = Unit(name, "vaelab.experiments.deep_sad:run_unsupervised",
                                   {**common, "normal": c, "seed": seed, "pollution": pollution,
                                    "detector": settings.detector, "detector_latent_dim": settings.detector_latent_dim,
                                    "detector_epochs": settings.detector_epochs})
    return units


def class_counts(y_test: np.ndarray) -> dict[int, int]:
    """Test rows per class."""
    classes, counts = np.unique(y_test, return_counts=True)
    return {int(c): int(n) for c, n in zip(classes, counts)}


def stored_seeds(results: dict[str, dict[str, Any]], normal: int, point: GridPoint) -> int:
    """How many seeds of (``normal``, ``point``) ``results`` holds (seeds 0, 1, ... in turn)."""
    n = 0
    while point_unit(normal, point, n) in results:
        n += 1
    return n


def cell_aurocs(results: dict[str, dict[str, Any]], normal: int, point: GridPoint, detector: str,
                counts: dict[int, int], seed: int | None = None) -> dict[str, float]:
    """The AUROCs of one normal class at ``point``, by detector and group: {detector + group: AUROC}
    with groups "" (all anomalies), "_known" (the known classes) and "_novel" (the others); of seed
    index ``seed``, or (None) the mean over every seed stored."""
    if seed is None:
        each = [cell_aurocs(results, normal, point, detector, counts, i)
                for i in range(max(1, stored_seeds(results, normal, point)))]
        return {k: float(np.mean([e[k] for e in each])) for k in each[0]}
    cell = results[point_unit(normal, point, seed)]
    unsup = results[baseline_unit(normal, point.pollution, detector, seed)]
    known = known_classes(normal, point.known)
    anomalies = [c for c in counts if c != normal]
    groups = {"": anomalies, "_known": list(known), "_novel": [c for c in anomalies if c not in known]}
    out = {}
    for name, per_class in {**cell["per_class"], **unsup["per_class"]}.items():
        per_class = {int(k): v for k, v in per_class.items()}
        for key, classes in groups.items():
            if classes:
                out[name + key] = pooled_auroc(per_class, counts, classes)
    return out
