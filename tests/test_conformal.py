"""Split-conformal p-values and thresholds: the formula, the threshold's agreement with the p-values,
the smallest calibration set, and super-uniformity measured on exchangeable draws."""

import numpy as np
import pytest
from scipy import stats

from vaelab.conformal import conformal_pvalues, conformal_threshold, min_calibration_rows


def test_pvalue_formula_counts_calibration_scores_at_or_below():
    cal = np.array([1.0, 2.0, 2.0, 3.0])
    assert np.allclose(conformal_pvalues(cal, [0.5, 1.0, 2.0, 2.5, 9.0]), np.array([1, 2, 4, 4, 5]) / 5)


@pytest.mark.parametrize("fpr", [0.01, 0.05, 0.1, 0.3])
def test_threshold_flags_exactly_the_rows_whose_pvalue_is_at_most_fpr(fpr):
    rng = np.random.default_rng(0)
    cal = np.round(rng.normal(size=199), 1)  # ties included
    test = np.round(rng.normal(size=5000), 1)
    flagged = test < conformal_threshold(cal, fpr)
    assert np.array_equal(flagged, conformal_pvalues(cal, test) <= fpr)


def test_too_few_calibration_rows_are_refused():
    assert min_calibration_rows(0.01) == 99 and min_calibration_rows(0.1) == 9
    conformal_threshold(np.arange(99.0), 0.01)
    with pytest.raises(ValueError, match="98 calibration rows cannot give a false-positive rate of at most 0.01"):
        conformal_threshold(np.arange(98.0), 0.01)


def test_pvalues_of_exchangeable_normals_are_uniform_and_the_fpr_holds():
    """3,000 independent draws of (999 calibration scores, one test score): the p-value's
    distribution is uniform (Kolmogorov-Smirnov at the 1% level) and P(p <= a) <= a within sampling error."""
    rng = np.random.default_rng(1)
    draws = rng.gumbel(size=(3000, 1000))
    p = np.array([conformal_pvalues(row[:-1], row[-1:])[0] for row in draws])
    assert stats.kstest(p, "uniform").pvalue > 0.01
    for a in (0.01, 0.05, 0.1):
        assert p.__le__(a).mean() <= a + 3 * np.sqrt(a * (1 - a) / len(p))
