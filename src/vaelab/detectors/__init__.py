"""Anomaly detectors with scikit-learn conventions (higher ``score_samples`` = more normal).

    base            the contract, thresholds, files (save / load without pickle)
    estimators      density and support estimators (KDE, GMM, OC-SVM, isolation forest)
    vae             VAEDetector: likelihood scores of a VAE
    latent_raw      LatentDetector (estimator on latent means), RawDetector (baselines)
    fusion          fuse() and FusionDetector
    corrections     corrected likelihoods (complexity, typicality, background ratio)
    semisupervised  SemiSupervisedDetector: M2 with a few labelled anomalies; ClassConditionalDetector:
                    M2 on normal rows labelled with their class (open-set recognition);
                    ClusterConditionalDetector: M2 on the clusters found in unlabelled normal rows
    gated           ClusterGatedDetector: ClusterConditionalDetector where its clusters are stable, else a fallback
    registry        names -> detectors, for every caller
"""

from vaelab.config import DEFAULT_DETECTOR
from vaelab.detectors.base import BaseDetector, predictions, reference_split, subsample
from vaelab.detectors.corrections import CORRECTIONS, CorrectedLikelihoodDetector, corrected_scores
from vaelab.detectors.estimators import GaussianKDE
from vaelab.detectors.fusion import FUSION_RULES, FusionDetector, fuse
from vaelab.detectors.gated import ClusterGatedDetector
from vaelab.detectors.latent_raw import LatentDetector, RawDetector
from vaelab.detectors.registry import (CLASS_CONDITIONAL, CLUSTER_CONDITIONAL, CLUSTER_GATED, CORRECTED, DETECTORS, FUSIONS, LIKELIHOOD, SEMI_SUPERVISED,
                                      make_detector,
                                      registered_variant, with_derived)
from vaelab.detectors.semisupervised import ClassConditionalDetector, ClusterConditionalDetector, SemiSupervisedDetector
from vaelab.detectors.vae import VAEDetector

load_detector = BaseDetector.load

__all__ = ["BaseDetector", "CLASS_CONDITIONAL", "CLUSTER_CONDITIONAL", "CLUSTER_GATED", "ClusterGatedDetector", "CORRECTED", "ClassConditionalDetector", "ClusterConditionalDetector", "CORRECTIONS", "CorrectedLikelihoodDetector", "DEFAULT_DETECTOR", "DETECTORS", "FUSIONS", "FUSION_RULES", "FusionDetector", "GaussianKDE",
           "LIKELIHOOD", "LatentDetector", "RawDetector", "SEMI_SUPERVISED", "SemiSupervisedDetector", "VAEDetector",
           "corrected_scores", "fuse", "load_detector", "make_detector", "predictions", "registered_variant", "reference_split", "subsample", "with_derived"]
