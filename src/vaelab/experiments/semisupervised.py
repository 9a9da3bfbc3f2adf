"""Semi-supervised experiments, each a unit of work: the M2 stage of the study (error rate, conditional
samples, style transfer), the anomaly curve of the SemiSupervisedDetector as labelled anomalies grow
(Deep SAD protocol), and the classification runs of M2 and M1+M2 (Kingma et al. 2014)."""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vaelab import plots
from vaelab.config import Config, DetectorConfig, ModelConfig, TrainConfig
from vaelab.data import load_grey
from vaelab.data.labels import LABELLED_SHARE, balanced_labels
from vaelab.data.protocols import semi_supervised_one_vs_rest
from vaelab.detectors import LIKELIHOOD, SEMI_SUPERVISED, make_detector
from vaelab.detectors.fusion import fuse
from vaelab.errors import DataError
from vaelab.evaluation import ANOMALY_GROUPS, auroc_by_group, conditional_agreement, error_rate, knn_judge
from vaelab.experiments.units import Unit
from vaelab.fileio import fingerprint, write_json
from vaelab.models import load_model, resolve_likelihood, save_model
from vaelab.plots import figure_entry
from vaelab.runtime import make_generator
from vaelab.scores import latent_means, latent_posteriors
from vaelab.training import train_m2


@torch.no_grad()
def m2_figures(m2: torch.nn.Module, x_test: np.ndarray, y_test: np.ndarray, shape: tuple[int, int],
               seed: int = 0) -> dict[str, object]:
    """The conditional-sample grid (one row per class, one z per column) and the style transfer of one
    test digit per class rendered as every class, drawn by :func:`vaelab.plots.m2_figures`."""
    k, device = m2.n_classes, next(m2.parameters()).device
    z = torch.randn((k, m2.config.latent_dim), generator=make_generator(seed, "cpu")).to(device)
    grid = torch.cat([m2.sample(torch.full((k,), c, device=device), z) for c in range(k)]).cpu().numpy()
    picks = np.array([np.flatnonzero(y_test == c)[0] for c in range(k) if (y_test == c).any()])
    style = m2.style(torch.from_numpy(x_test[picks]).to(device), torch.from_numpy(y_test[picks]).to(device))
    transfer = np.concatenate([m2.sample(torch.full((len(picks),), c, device=device), style).cpu().numpy()
                               for c in range(k)])
    return plots.m2_figures(grid, x_test[picks], transfer, shape, k)


def run_m2_stage(unit: Unit, root: Path) -> dict[str, Any]:
    """M2 with a few labels: test error, conditional agreement, figures and the anomaly curve."""
    cfg = Config.from_dict(unit.params["config"])
    sc = cfg.semisupervised
    data = load_grey(cfg.data)
    classes = None if data.train.y is None else np.unique(data.train.y)
    if classes is None or not np.array_equal(classes, np.arange(len(classes))):
        raise DataError("the semi-supervised stage needs class labels 0..K-1", data.source)
    likelihood = resolve_likelihood(cfg.model, data.kind)
    m2_config = dataclasses.replace(cfg.model, name="m2", latent_dim=sc.latent_dim, n_classes=len(classes))
    train = dataclasses.replace(cfg.train, epochs=sc.epochs, progress=False, **unit.runtime)
    semi = balanced_labels(data.train.y, sc.labels, cfg.train.seed)
    m2 = train_m2(data.train.x, semi, m2_config, train, likelihood=likelihood,
                  binarize=data.kind == "image" and cfg.data.binarize == "dynamic")
    save_model(root / "semisupervised" / "m2.safetensors", m2, {"labels": sc.labels})
    error = error_rate(m2, data.test.x, data.test.y)
    agreement = conditional_agreement(m2, seed=cfg.train.seed, judge=knn_judge(data.train.x, data.train.y))
    figs = []
    if data.kind == "image" and data.image_shape:
        drawn = m2_figures(m2, data.test.x, data.test.y, tuple(data.image_shape[-2:]), cfg.train.seed)
        for i, (file, fig) in enumerate(drawn.items()):
            plots.save_figure(fig, root / "figures" / file)
            figs.append(figure_entry(f"figures/{file}", "Semi-supervised",
                                     "Conditional samples: one row per class, the same z down each column."
                                     if i == 0 else "Style transfer: the z of one test digit per class (top "
                                     "row) decoded as every class.", i))
    curve = anomaly_curve(data.train.x, data.train.y, data.test.x, data.test.y, sc.normal_class,
                          tuple(sc.known_anomaly_classes), list(sc.anomaly_labels), epochs=sc.epochs,
                          latent_dim=sc.latent_dim, pollution=sc.pollution, seed=cfg.train.seed,
                          hidden_dims=tuple(cfg.model.hidden_dims), iwae_samples=cfg.detector.iwae_samples)
    plots.save_figure(plots.label_curve(curve["counts"], *curve_groups([curve]), "labelled anomalies",
                                        highlighted=3), root / "figures" / "ssl_anomaly_curve.png")
    figs.append(figure_entry("figures/ssl_anomaly_curve.png", "Semi-supervised",
                             f"Test AUROC with class {sc.normal_class} normal and every other class an anomaly, "
                             f"as labelled anomalies from class(es) {list(sc.known_anomaly_classes)} are added.", 9))
    return {"figures": figs, "files": [f["file"] for f in figs], "labels": sc.labels, "error_rate": error,
            "agreement": agreement, "curve": curve, "normal_class": sc.normal_class}


@dataclasses.dataclass
class M1Features:
    """M1+M2's inputs on M1's active latent units: q(z1|x)'s means and standard deviations for the
    training rows (M2 trains on draws from them, or on the means), its means for the test rows."""
    train: np.ndarray
    train_sd: np.ndarray
    test: np.ndarray
    n_active: int


def m1_features(m1_file: str, x_train: np.ndarray, x_test: np.ndarray, min_variance: float) -> M1Features:
    """M1+M2's inputs from the M1 VAE in ``m1_file`` on its active units (variance of the training
    means above ``min_variance``, Burda et al. 2016)."""
    m1, _ = load_model(m1_file)
    (f_train, sd_train), f_test = latent_posteriors(m1, x_train), latent_means(m1, x_test)
    active = f_train.var(0) > min_variance
    active = active if active.any() else np.ones_like(active)
    return M1Features(f_train[:, active], sd_train[:, active], f_test[:, active], int(active.sum()))


def classifier_progress(unit: Unit, root: Path) -> tuple[Path, Path]:
    """Where a classification run keeps its checkpoint and its learning curve while it trains: the folder
    ``runtime["progress"]`` (a worker computes in a folder of its own, whose files come back only with a
    finished unit; so a cut-short run leaves them there), else ``root/progress``. Named by the run's
    inputs less the epochs, so that a longer run of the same settings goes on from a shorter one."""
    key = fingerprint(unit.function, {k: v for k, v in unit.params.items() if k not in ("epochs", "eval_every")})
    folder = Path(unit.runtime.get("progress", root / "progress"))
    return folder / f"{unit.name}-{key}.ckpt.safetensors", folder / f"{unit.name}-{key}.curve.json"


def classifier_curve(unit: Unit, root: Path) -> list[tuple[int, float]]:
    """A classification run's learning curve so far, (epoch, test error %) every ``eval_every`` epochs:
    also that of a run still training or cut short."""
    _, curve_file = classifier_progress(unit, root)
    try:
        return [(int(e), float(v)) for e, v in json.loads(curve_file.read_text())]
    except (OSError, ValueError, TypeError):
        return []


def run_classifier(unit: Unit, root: Path) -> dict[str, Any]:
    """One semi-supervised classification run (``benchmarks/ssl_mnist.py``): M2 on the pixels or M1+M2 on an
    M1's latent codes (draws from q(z1|x) with ``m1.draws``, else its means), trained with ``labels``
    balanced labels and the given seed; test error in % (with ``validation``, also the error on the
    validation split, MNIST's last 10,000 training digits, which no run trains on: what a choice between
    settings may read). With ``ema``, the model evaluated has the moving average of the weights with that
    decay per step (:func:`vaelab.training.train_m2`). M2's weights are kept beside the record
    (``<name>.safetensors``). With ``eval_every``, the test error every so many epochs (a learning curve,
    read only, never used to stop or choose), and checkpoints from which a cut-short run goes on
    (:func:`classifier_progress`)."""
    p = unit.params
    data = load_grey(Config.from_dict(p["config"]).data)
    x_fit, x_eval, x_sd = data.train.x, data.test.x, None
    x_val = data.val.x if p.get("validation") else None
    if p["m1"]:
        held_out = x_eval if x_val is None else np.concatenate([x_eval, x_val])
        codes = m1_features(unit.runtime["m1_file"], x_fit, held_out, p["m1"]["active"])
        x_fit, x_sd = codes.train, codes.train_sd if p["m1"].get("draws") else None
        x_eval, x_val = codes.test[:len(x_eval)], None if x_val is None else codes.test[len(x_eval):]
    semi = balanced_labels(data.train.y, p["labels"], p["seed"])
    assert (semi >= 0).sum() == p["labels"]  # nothing else, and no test label, reaches training
    model = Config.from_dict({"model": p["model"]}).model
    every = int(p.get("eval_every", 0))
    checkpoint, curve_file = classifier_progress(unit, root) if every else (None, None)
    curve = classifier_curve(unit, root) if every else []  # a resumed run's earlier points
    started = time.perf_counter()

    def measure(fitted: torch.nn.Module, epoch: int) -> None:
        curve[:] = [point for point in curve if point[0] < epoch]
        curve.append((epoch, 100 * error_rate(fitted, x_eval, data.test.y)))
        write_json(curve_file, curve)
        print(f"[{unit.name}] epoch {epoch}: test error {curve[-1][1]:.2f}% "
              f"({time.perf_counter() - started:.0f} s in this process)", flush=True)

    def events(line: str) -> None:  # the trainer's notes (precision, CUDA graphs), not its per-epoch rows
        if not line.startswith("{"):
            print(f"[{unit.name}] {line}", flush=True)

    if checkpoint is not None:
        checkpoint.parent.mkdir(parents=True, exist_ok=True)
    train = TrainConfig(epochs=p["epochs"], batch_size=128, seed=p["seed"], progress=False,
                        precision=unit.runtime.get("precision", "auto"))
    fitted = train_m2(x_fit, semi, model, train, likelihood=p["likelihood"], binarize=p["binarize"], x_sd=x_sd,
                      labelled_share=p.get("labelled_share", LABELLED_SHARE),
                      checkpoint_path=checkpoint, every=every, after=measure if every else None,
                      log=events if every else None, ema=p.get("ema", 0.0))
    if not p["m1"]:
        save_model(root / unit.outputs[0], fitted, {"labels": p["labels"]})
    error = 100 * error_rate(fitted, x_eval, data.test.y)
    return {"error": error, **({"curve": curve} if every else {}),
            **({"val_error": 100 * error_rate(fitted, x_val, data.val.y)} if x_val is not None else {})}


def run_curve(unit: Unit, root: Path) -> dict[str, Any]:
    """One normal class of the semi-supervised anomaly benchmark (``benchmarks/ssl_anomaly.py``)."""
    p = unit.params
    data = load_grey(Config.from_dict(p["config"]).data)
    return anomaly_curve(data.train.x, data.train.y, data.test.x, data.test.y, p["normal"], tuple(p["known"]),
                         list(p["counts"]), epochs=p["epochs"], latent_dim=p["latent_dim"],
                         pollution=p["pollution"], seed=p["seed"], iwae_samples=p["iwae_samples"],
                         detector_params=p.get("detector_params"))


def run_labelled_normals(unit: Unit, root: Path) -> dict[str, Any]:
    """One left-out class of the labelled-normals benchmark (``benchmarks/labelled_normals.py``): the
    ClassConditionalDetector fitted on every training row of the other classes with their labels, as a
    user fits it; the test AUROC of its score and of each of its two parts, and the seconds."""
    from vaelab.detectors import CLASS_CONDITIONAL
    from vaelab.evaluation import auroc

    p = unit.params
    config = Config.from_dict(p["config"])
    data = load_grey(config.data)
    normal = data.train.y != p["left_out"]
    t0 = time.perf_counter()
    det = make_detector(CLASS_CONDITIONAL, config, latent_dim=p["latent_dim"], epochs=p["epochs"], seed=p["seed"],
                        calibration=0.0).fit(data.train.x[normal], data.train.y[normal])
    fit_seconds = time.perf_counter() - t0
    is_anomaly = (data.test.y == p["left_out"]).astype(int)
    parts = det.score_parts(data.test.x)
    aurocs = {"detector": auroc(is_anomaly, det.fuse_parts(parts)),
              **{name: auroc(is_anomaly, part) for name, part in parts.items()}}
    accuracy = float((det.predict_class(data.test.x[is_anomaly == 0]) == data.test.y[is_anomaly == 0]).mean())
    return {"auroc": aurocs, "normal_accuracy": accuracy, "fit_seconds": fit_seconds,
            "seconds": time.perf_counter() - t0, "n_train": int(normal.sum())}


def labelled_raw_scores(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, *, pca_components: int,
                        hidden: int, epochs: int, seed: int) -> dict[str, np.ndarray]:
    """The raw baselines of the labelled-normals benchmark (higher = more normal), on the pixels as they
    are: ``raw-classifier``, the largest log-probability of a scikit-learn MLP classifier of the known
    classes (one hidden layer of ``hidden``, ``epochs`` passes; Hendrycks & Gimpel 2017), and
    ``raw-mahalanobis``, minus the smallest Mahalanobis distance to a class mean on ``pca_components``
    principal components with one shared covariance (Lee et al. 2018, on raw features)."""
    import warnings

    from sklearn.decomposition import PCA
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # a fixed number of passes, as the VAE's epochs
        mlp = MLPClassifier(hidden_layer_sizes=(hidden,), max_iter=epochs, batch_size=128, random_state=seed)
        mlp.fit(x_train, y_train)
    classifier = np.log(np.clip(mlp.predict_proba(x_test).max(1), 1e-30, None))
    pca = PCA(n_components=pca_components, random_state=seed).fit(x_train)
    z_train, z_test = pca.transform(x_train), pca.transform(x_test)
    classes = np.unique(y_train)
    means = np.stack([z_train[y_train == c].mean(0) for c in classes])
    centred = z_train - means[np.searchsorted(classes, y_train)]
    precision = np.linalg.inv(np.cov(centred, rowvar=False) + 1e-6 * np.eye(z_train.shape[1]))
    distances = np.stack([np.einsum("ij,jk,ik->i", z_test - m, precision, z_test - m) for m in means], 1)
    return {"raw-classifier": classifier, "raw-mahalanobis": -distances.min(1)}


def run_labelled_raw(unit: Unit, root: Path) -> dict[str, Any]:
    """The raw baselines of one left-out class of ``benchmarks/labelled_normals.py``: test AUROCs and seconds."""
    from vaelab.evaluation import auroc

    p = unit.params
    config = Config.from_dict(p["config"])
    data = load_grey(config.data)
    normal = data.train.y != p["left_out"]
    t0 = time.perf_counter()
    scores = labelled_raw_scores(data.train.x[normal], data.train.y[normal], data.test.x,
                                 pca_components=config.detector.pca_components,
                                 hidden=config.model.hidden_dims[0], epochs=p["epochs"], seed=p["seed"])
    is_anomaly = (data.test.y == p["left_out"]).astype(int)
    return {"auroc": {name: auroc(is_anomaly, s) for name, s in scores.items()},
            "seconds": time.perf_counter() - t0}


def detector_settings(hidden_dims: tuple[int, ...], iwae_samples: int) -> Config:
    """The settings the semi-supervised benchmarks build their registry detectors with: the hidden
    layers and IWAE samples given, every other setting the default (batch 128, lr 1e-3)."""
    return Config(model=ModelConfig(hidden_dims=tuple(hidden_dims)), detector=DetectorConfig(iwae_samples=iwae_samples))


# the SemiSupervisedDetector's score and the alternatives an anomaly curve also records
SCORE_VARIANTS = {"m2": "SemiSupervisedDetector", "likelihood_part": "its likelihood part alone",
                  "classifier_part": "its classifier part alone",
                  "rank_fusion": "both parts, mean-rank fusion instead of Fisher's"}


def anomaly_curve(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, y_test: np.ndarray,
                  normal_class: int, known_classes: tuple[int, ...], counts: list[int], *, epochs: int,
                  latent_dim: int, pollution: float = 0.0, seed: int = 0, hidden_dims: tuple[int, ...] = (400,),
                  iwae_samples: int = 100, detector_params: dict[str, Any] | None = None) -> dict[str, object]:
    """Test AUROC of the SemiSupervisedDetector for each number of labelled anomalies (Deep SAD
    protocol), and of the unsupervised vae-iwae detector fitted on the same rows without the
    labelled anomalies.

    Keys: "m2" (the detector) and, from the same fitted models, "likelihood_part",
    "classifier_part" and "rank_fusion" (:data:`SCORE_VARIANTS`): one AUROC per count;
    "unsupervised": one AUROC. Each also with the suffix "_known" (against the known anomaly
    classes alone: normal test rows and anomalies of the classes the labels came from) and
    "_novel" (against every other anomaly class), so that a user sees whether labels teach the
    detector more than the classes they were drawn from. "classified_normal": the share of the
    unlabelled training rows the classifier puts in the normal class (near 0: it has put
    every row in the anomaly class). ``detector_params`` override the
    SemiSupervisedDetector's settings (``anomaly_prior``, ``labelled_share``, ...).
    """
    known_test = np.isin(y_test, known_classes)
    # the registry's detectors, with the settings the curve has always used (batch 128, lr 1e-3)
    settings = detector_settings(hidden_dims, iwae_samples)
    build = lambda name: make_detector(name, settings, latent_dim=latent_dim, epochs=epochs, seed=seed,  # noqa: E731
                                        calibration=0.0)
    out: dict[str, object] = {"counts": list(counts), **{v + g: [] for v in SCORE_VARIANTS for g in ANOMALY_GROUPS}}
    for n in counts:
        split = semi_supervised_one_vs_rest(x_train, y_train, x_test, y_test, normal_class, known_classes, n,
                                            pollution=pollution, seed=seed)
        if "unsupervised" not in out:  # the unlabelled rows do not depend on n (same seed)
            vae = build(LIKELIHOOD).fit(split.x_train[split.y_train != 1])
            out.update(auroc_by_group("unsupervised", split.is_anomaly, known_test, vae.score_samples(split.x_test)))
        det = build(SEMI_SUPERVISED).set_params(**(detector_params or {})).fit(split.x_train, split.y_train)
        parts = det.score_parts(split.x_test)
        scores = {"m2": det.fuse_parts(parts), "likelihood_part": parts["likelihood"],
                  "classifier_part": parts["classifier"], "rank_fusion": det.fuse_parts(parts, "rank")}
        for variant, score in scores.items():
            for key, value in auroc_by_group(variant, split.is_anomaly, known_test, score).items():
                out[key].append(value)
        unlabelled = split.x_train[split.y_train == -1]
        out.setdefault("classified_normal", []).append(
            float(det.classified_normal(det.score_parts(unlabelled)).mean()))
    return out


def curve_groups(curves: list[dict[str, object]]) -> tuple[dict[str, list[float]], dict[str, float]]:
    """The mean over ``curves`` (from :func:`anomaly_curve`) of the detector's AUROC per test
    group, and of the unsupervised baseline's: the lines and dashed baselines of a label curve."""
    lines = {f"M2, {label}": np.mean([c["m2" + key] for c in curves], axis=0).tolist()
             for key, label in ANOMALY_GROUPS.items()}
    base = {f"vae-iwae, {label}": float(np.mean([c["unsupervised" + key] for c in curves]))
            for key, label in ANOMALY_GROUPS.items()}
    return lines, base


# reference sets of the pollution diagnosis: name -> which non-labelled training rows the p-values are read against
REFERENCE_SETS = {"unlabelled": "every unlabelled row (the detector's rule, all rows)",
                  "classified-normal": "the unlabelled rows M2's classifier puts in the normal class",
                  "true-normal": "the truly normal rows (an oracle: shows what pollution costs)"}


def run_pollution_diagnosis(unit: Unit, root: Path) -> dict[str, Any]:
    """One normal class of ``benchmarks/ssl_pollution.py``: :func:`pollution_diagnosis` on MNIST."""
    p = unit.params
    data = load_grey(Config.from_dict(p["config"]).data)
    return pollution_diagnosis(data.train.x, data.train.y, data.test.x, data.test.y, p["normal"], tuple(p["known"]),
                               list(p["counts"]), epochs=p["epochs"], latent_dim=p["latent_dim"],
                               pollution=p["pollution"], seed=p["seed"], iwae_samples=p["iwae_samples"])


def pollution_diagnosis(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, y_test: np.ndarray,
                        normal_class: int, known_classes: tuple[int, ...], counts: list[int], *, epochs: int,
                        latent_dim: int, pollution: float, seed: int = 0,
                        iwae_samples: int = 100) -> dict[str, object]:
    """Why labels stop helping under pollution: the SemiSupervisedDetector fitted on the split of
    :func:`anomaly_curve` for each label count, its two parts then read as p-values against each
    reference set of :data:`REFERENCE_SETS` (the model is the same; only the references change).

    Keys per count (lists): "detector" + group (the detector's own score), "<set>" + group for
    each reference set (Fisher's rule; an empty set is replaced by every unlabelled row),
    "<set>_rows" (its size), "<set>_anomaly_share" (the share of anomalies among that
    set's rows) and "<set>_floor" (the classifier part's lowest attainable p-value for a test row
    of the known classes, as the median over those rows: the share of reference rows that score
    below them)."""
    known_test = np.isin(y_test, known_classes)
    settings = detector_settings((400,), iwae_samples)
    out: dict[str, object] = {"counts": list(counts)}
    for n in counts:
        split = semi_supervised_one_vs_rest(x_train, y_train, x_test, y_test, normal_class, known_classes, n,
                                            pollution=pollution, seed=seed)
        det = make_detector(SEMI_SUPERVISED, settings, latent_dim=latent_dim, epochs=epochs, seed=seed,
                            calibration=0.0).fit(split.x_train, split.y_train)
        found = {"detector": det.score_samples(split.x_test)}
        unlabelled = np.flatnonzero(split.y_train == -1)
        ref_parts = det.score_parts(split.x_train[unlabelled])
        test_parts = det.score_parts(split.x_test)
        truly_normal = y_train[split.train_rows[unlabelled]] == normal_class
        sets = {"unlabelled": np.ones(len(unlabelled), dtype=bool),
                "classified-normal": det.classified_normal(ref_parts), "true-normal": truly_normal}
        for name, keep in sets.items():
            keep = keep if keep.any() else np.ones_like(keep)  # an empty set (a collapsed classifier): all rows
            out.setdefault(f"{name}_rows", []).append(int(keep.sum()))
            refs = [part[keep] for part in ref_parts.values()]
            found[name] = fuse(list(test_parts.values()), refs, "fisher")
            out.setdefault(f"{name}_anomaly_share", []).append(float(1 - truly_normal[keep].mean()))
            classifier = np.sort(refs[1])
            floor = np.searchsorted(classifier, test_parts["classifier"][known_test], side="right") / len(classifier)
            out.setdefault(f"{name}_floor", []).append(float(np.median(floor)))
        for name, score in found.items():
            for key, value in auroc_by_group(name, split.is_anomaly, known_test, score).items():
                out.setdefault(key, []).append(value)
    return out
