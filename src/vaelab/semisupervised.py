"""Semi-supervised learning with M2 and M1+M2 (Kingma et al. 2014) through the shared training loop.

Labels: a vector with the class of each labelled training row and -1 for
every unlabelled row. Only training rows are ever labelled here; test labels
are used for evaluation alone.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np
import torch

from vaelab.config import ModelConfig, TrainConfig
from vaelab.models import build_model
from vaelab.runtime import seeded_init
from vaelab.training import Trainer, dynamic_binarization


def balanced_labels(y: np.ndarray, n_labels: int, seed: int) -> np.ndarray:
    """``y`` with all but ``n_labels`` rows set to -1, the kept ones spread evenly over the classes."""
    classes = np.unique(y)
    if n_labels % len(classes):
        raise ValueError(f"{n_labels} labels cannot be spread evenly over {len(classes)} classes")
    rng = np.random.default_rng(seed)
    out = np.full(len(y), -1, dtype=np.int64)
    for c in classes:
        rows = np.flatnonzero(y == c)
        if len(rows) < n_labels // len(classes):
            raise ValueError(f"class {c} has only {len(rows)} rows")
        keep = rng.choice(rows, size=n_labels // len(classes), replace=False)
        out[keep] = c
    return out


def epoch_rows(y_semi: np.ndarray, labelled_share: float) -> np.ndarray:
    """Row indices of one epoch: every unlabelled row once and the labelled rows repeated so that
    they make up about ``labelled_share`` of it (a few labels would otherwise almost never be seen)."""
    labelled, unlabelled = np.flatnonzero(y_semi >= 0), np.flatnonzero(y_semi < 0)
    if len(labelled) == 0 or len(unlabelled) == 0:
        return np.arange(len(y_semi))
    repeats = max(1, int(round(labelled_share * len(unlabelled) / ((1 - labelled_share) * len(labelled)))))
    return np.concatenate([unlabelled, np.tile(labelled, repeats)])


def train_m2(x: np.ndarray, y_semi: np.ndarray, model: ModelConfig, train: TrainConfig, *, likelihood: str,
             labelled_share: float = 0.2, binarize: bool = False,
             log: Callable[[str], None] | None = None) -> torch.nn.Module:
    """An M2 model (``model.name`` is set to m2) trained on rows ``x`` with labels ``y_semi`` (-1 unknown)."""
    config = dataclasses.replace(model, name="m2")
    with seeded_init(train.seed):
        m2 = build_model(config, x.shape[1], likelihood)
    rows = epoch_rows(y_semi, labelled_share)
    trainer = Trainer(m2, train, run_config={"model": dataclasses.asdict(config)}, log=log,
                      transform=dynamic_binarization if binarize else None)
    trainer.fit({"x": torch.from_numpy(np.ascontiguousarray(x[rows], dtype=np.float32)),
                 "y": torch.from_numpy(y_semi[rows])})
    return trainer.model.eval()


@torch.no_grad()
def _per_row(m2: torch.nn.Module, x: np.ndarray, fn, batch: int) -> np.ndarray:
    """``fn(batch tensor on the model's device)`` over ``x`` in batches, concatenated on the CPU."""
    device = next(m2.parameters()).device
    return torch.cat([fn(torch.from_numpy(x[i:i + batch]).to(device)).cpu()
                      for i in range(0, len(x), batch)]).numpy()


def class_probabilities(m2: torch.nn.Module, x: np.ndarray, batch: int = 4096) -> np.ndarray:
    """q(y|x) for every row, (n, n_classes)."""
    return _per_row(m2, x, lambda xb: torch.softmax(m2.classify(xb).float(), -1), batch)


def marginal_elbo(m2: torch.nn.Module, x: np.ndarray, seed: int = 0, batch: int = 1024) -> np.ndarray:
    """U(x), M2's bound on log p(x) with y marginalised (one z draw per class), per row."""
    from vaelab.runtime import make_generator

    gen = make_generator(seed, next(m2.parameters()).device)
    return _per_row(m2, x, lambda xb: m2.unlabelled_elbo(xb, gen).double(), batch)


def class_elbo(m2: torch.nn.Module, x: np.ndarray, label: int, seed: int = 0, batch: int = 1024) -> np.ndarray:
    """L(x, y=label), M2's bound on log p(x, y=label) (one z draw), per row."""
    from vaelab.runtime import make_generator

    gen = make_generator(seed, next(m2.parameters()).device)
    return _per_row(m2, x, lambda xb: m2.labelled_elbo(
        xb, torch.full((len(xb),), label, device=xb.device), gen).double(), batch)


def error_rate(m2: torch.nn.Module, x: np.ndarray, y: np.ndarray) -> float:
    """Share of rows whose most probable class under q(y|x) is wrong."""
    return float((class_probabilities(m2, x).argmax(1) != y).mean())


@torch.no_grad()
def conditional_agreement(m2: torch.nn.Module, per_class: int = 100, seed: int = 0,
                          judge: Callable[[np.ndarray], np.ndarray] | None = None) -> float:
    """Share of conditional samples E[x|y=c, z], z ~ p(z), that ``judge`` (rows -> class) puts in class c.

    Near 1 when the decoder draws the class from y; near 1/n_classes when it ignores y (z then
    carries the class and the rows of a conditional grid look alike). The default judge is the
    model's own classifier q(y|x); pass an independent classifier to rule out a model that only
    fools itself.
    """
    from vaelab.runtime import make_generator

    k, device = m2.n_classes, next(m2.parameters()).device
    z = torch.randn((per_class, m2.config.latent_dim), generator=make_generator(seed, "cpu")).to(device)
    samples = torch.cat([m2.sample(torch.full((per_class,), c, device=device), z) for c in range(k)]).cpu().numpy()
    judge = judge or (lambda x: class_probabilities(m2, x).argmax(1))
    return float((judge(samples) == np.repeat(np.arange(k), per_class)).mean())


def knn_judge(x: np.ndarray, y: np.ndarray, k: int = 3) -> Callable[[np.ndarray], np.ndarray]:
    """An independent judge of generated rows for :func:`conditional_agreement`: k-nearest
    neighbours over labelled rows (evaluation only; these labels never reach M2's training)."""
    from sklearn.neighbors import KNeighborsClassifier

    return KNeighborsClassifier(n_neighbors=k).fit(x, y).predict


def conditional_figures(m2: torch.nn.Module, x_test: np.ndarray, y_test: np.ndarray, shape: tuple[int, int],
                        seed: int = 0) -> dict[str, object]:
    """Two figures of an image M2: samples with one row per class and one z per column (style shared
    down a column), and style transfer of one test digit per class rendered as every class."""
    from vaelab import plots
    from vaelab.runtime import make_generator

    k, device = m2.n_classes, next(m2.parameters()).device
    z = torch.randn((k, m2.config.latent_dim), generator=make_generator(seed, "cpu")).to(device)
    grid = torch.cat([m2.sample(torch.full((k,), c, device=device), z) for c in range(k)]).cpu().numpy()
    samples = plots.image_grid(grid, shape, k, row_labels=[str(c) for c in range(k)],
                               title="M2 samples: one row per class, one z per column")
    picks = np.array([np.flatnonzero(y_test == c)[0] for c in range(k) if (y_test == c).any()])
    x = torch.from_numpy(x_test[picks]).to(device)
    style = m2.style(x, torch.from_numpy(y_test[picks]).to(device))
    rows = [x_test[picks]] + [m2.sample(torch.full((len(picks),), c, device=device), style).cpu().numpy()
                              for c in range(k)]
    transfer = plots.image_grid(np.concatenate(rows), shape, len(picks),
                                row_labels=["input", *map(str, range(k))],
                                title="M2 style transfer: each test digit's z rendered as every class")
    return {"m2_conditional.png": samples, "m2_style.png": transfer}


# the SemiSupervisedDetector's score and the alternatives an anomaly curve also records
SCORE_VARIANTS = {"m2": "SemiSupervisedDetector", "likelihood_part": "its likelihood part alone",
                  "classifier_part": "its classifier part alone",
                  "rank_fusion": "both parts, mean-rank fusion instead of Fisher's"}


def anomaly_curve(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, y_test: np.ndarray,
                  normal_class: int, known_classes: tuple[int, ...], counts: list[int], *, epochs: int,
                  latent_dim: int, pollution: float = 0.0, seed: int = 0,
                  hidden_dims: tuple[int, ...] = (400,)) -> dict[str, object]:
    """Test AUROC of the SemiSupervisedDetector for each number of labelled anomalies (Deep SAD
    protocol), and of the unsupervised vae-iwae detector fitted on the same rows without the
    labelled anomalies.

    Keys: "m2" (the detector) and, from the same fitted models, "likelihood_part",
    "classifier_part" and "rank_fusion" (:data:`SCORE_VARIANTS`): one AUROC per count;
    "unsupervised": one AUROC. Each also with the suffix "_known" (against the known anomaly
    classes alone: normal test rows and anomalies of the classes the labels came from) and
    "_novel" (against every other anomaly class), so that a user sees whether labels teach the
    detector more than the classes they were drawn from.
    """
    from vaelab.data.protocols import semi_supervised_one_vs_rest
    from vaelab.detectors import SemiSupervisedDetector, VAEDetector
    from vaelab.evaluation import ANOMALY_GROUPS, auroc_by_group

    known_test = np.isin(y_test, known_classes)
    out: dict[str, object] = {"counts": list(counts), **{v + g: [] for v in SCORE_VARIANTS for g in ANOMALY_GROUPS}}
    for n in counts:
        split = semi_supervised_one_vs_rest(x_train, y_train, x_test, y_test, normal_class, known_classes, n,
                                            pollution=pollution, seed=seed)
        if "unsupervised" not in out:  # the unlabelled rows do not depend on n (same seed)
            vae = VAEDetector(score="iwae", latent_dim=latent_dim, hidden_dims=hidden_dims, epochs=epochs,
                              n_samples=100, random_state=seed).fit(split.x_train[split.y_train != 1])
            out.update(auroc_by_group("unsupervised", split.is_anomaly, known_test, vae.score_samples(split.x_test)))
        det = SemiSupervisedDetector(latent_dim=latent_dim, hidden_dims=hidden_dims, epochs=epochs,
                                     random_state=seed).fit(split.x_train, split.y_train)
        parts = det.score_parts(split.x_test)
        scores = {"m2": det.fuse_parts(parts), "likelihood_part": parts["likelihood"],
                  "classifier_part": parts["classifier"], "rank_fusion": det.fuse_parts(parts, "rank")}
        for variant, score in scores.items():
            for key, value in auroc_by_group(variant, split.is_anomaly, known_test, score).items():
                out[key].append(value)
    return out


def curve_groups(curves: list[dict[str, object]]) -> tuple[dict[str, list[float]], dict[str, float]]:
    """The mean over ``curves`` (from :func:`anomaly_curve`) of the detector's AUROC per test
    group, and of the unsupervised baseline's: the lines and dashed baselines of a label curve."""
    from vaelab.evaluation import ANOMALY_GROUPS

    lines = {f"M2, {label}": np.mean([c["m2" + key] for c in curves], axis=0).tolist()
             for key, label in ANOMALY_GROUPS.items()}
    base = {f"vae-iwae, {label}": float(np.mean([c["unsupervised" + key] for c in curves]))
            for key, label in ANOMALY_GROUPS.items()}
    return lines, base
