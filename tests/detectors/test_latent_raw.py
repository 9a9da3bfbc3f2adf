"""Raw-data baselines rank anomalies below normals."""

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from vaelab.detectors import RawDetector


@pytest.mark.parametrize("detector", [
    RawDetector("ocsvm", pca_components=None), RawDetector("iforest", pca_components=None),
    RawDetector("gmm", pca_components=None), RawDetector("kde", pca_components=None),
    RawDetector("pca-recon", pca_components=2), RawDetector("ocsvm-nystroem", pca_components=None),
], ids=lambda d: d.estimator)
def test_raw_detectors_rank_anomalies_lower(blobs, detector):
    train, x_test, is_anomaly = blobs
    detector.fit(train)
    scores = detector.score_samples(x_test)
    assert roc_auc_score(is_anomaly, -scores) > 0.9
    assert np.allclose(detector.decision_function(x_test), scores - detector.offset_)
    flagged = (detector.predict(train) == -1).mean()
    assert abs(flagged - detector.contamination) < 0.02  # the threshold is the training quantile


