"""The detector contract: validation, files for every kind (no pickle), clone, scikit-learn's own checks."""

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.utils.estimator_checks import parametrize_with_checks

from vaelab.config import Config
from vaelab.detectors import (
    CLUSTER_CONDITIONAL,
    CLUSTER_GATED,
    DETECTORS,
    SEMI_SUPERVISED,
    BaseDetector,
    CorrectedLikelihoodDetector,
    FusionDetector,
    LatentDetector,
    RawDetector,
    SemiSupervisedDetector,
    VAEDetector,
    make_detector,
)
from vaelab.errors import ModelFileError


def test_detectors_refuse_bad_input(blobs):
    train, _, _ = blobs
    det = RawDetector("iforest").fit(train)
    with pytest.raises(ValueError, match="features"):
        det.score_samples(train[:, :3])
    with pytest.raises(ValueError):
        RawDetector("nope").fit(train)
    with pytest.raises(ValueError, match="contamination"):
        RawDetector("iforest", contamination=0.7).fit(train)


def _vae(**kw):
    return VAEDetector(latent_dim=2, hidden_dims=(16,), epochs=3, n_samples=8, **kw)


FILE_CASES = {
    "vae-iwae": lambda: _vae(score_name="iwae"),
    "latent-ocsvm": lambda: LatentDetector("ocsvm", vae=_vae()),
    "latent-gmm": lambda: LatentDetector("gmm", vae=_vae()),
    "raw-iforest": lambda: RawDetector("iforest", pca_components=3),
    "raw-kde": lambda: RawDetector("kde", pca_components=None),
    "raw-ocsvm-nystroem": lambda: RawDetector("ocsvm-nystroem", pca_components=4),
    "raw-pca-recon": lambda: RawDetector("pca-recon", pca_components=2),
    "fusion": lambda: FusionDetector((_vae(score_name="iwae"), LatentDetector("ocsvm", latent_dim=2)), rule="zsum"),
    "fusion-of-one-vae": lambda: FusionDetector((_vae(score_name="recon-error"), _vae(score_name="iwae")), rule="fisher"),
    "semisupervised": lambda: SemiSupervisedDetector(latent_dim=2, hidden_dims=(16,), epochs=2),
    **{f"likelihood-{c}": (lambda c=c: CorrectedLikelihoodDetector(c, vae=_vae(score_name="iwae"), reference_rows=50))
       for c in ("complexity", "typicality", "ratio")},
}


@pytest.mark.parametrize("name", list(FILE_CASES))
def test_every_kind_round_trips_and_scores_identically(blobs, tmp_path, name):
    train, test, _ = blobs
    det = FILE_CASES[name]()
    if isinstance(det, LatentDetector):
        det.vae.fit(train)
    det.fit(train)
    path = tmp_path / "det.safetensors"
    det.save(path)
    loaded = BaseDetector.load(path)
    assert type(loaded) is type(det) and loaded.offset_ == det.offset_
    assert loaded.get_params(deep=False).keys() == det.get_params(deep=False).keys()
    assert np.allclose(loaded.score_samples(test), det.score_samples(test), rtol=1e-6, atol=1e-8)
    assert np.array_equal(loaded.predict(test), det.predict(test))
    assert b"pickle" not in path.read_bytes()[:64]


def test_a_changed_file_is_refused(blobs, tmp_path):
    train, _, _ = blobs
    path = tmp_path / "det.safetensors"
    RawDetector("gmm", pca_components=None).fit(train).save(path)
    blob = bytearray(path.read_bytes())
    blob[-5] ^= 0xFF
    path.write_bytes(bytes(blob))
    with pytest.raises(ModelFileError):
        BaseDetector.load(path)


def test_a_prefitted_vae_survives_clone_and_an_unfitted_one_does_not(blobs):
    train, test, _ = blobs
    vae = _vae().fit(train)
    latent = clone(LatentDetector("gmm", vae=vae))
    assert latent.vae is vae
    assert np.array_equal(latent.fit(train).vae_.encode(test), vae.encode(test))
    fresh = clone(LatentDetector("gmm", vae=_vae()))
    assert not hasattr(fresh.vae, "model_")
    fusion = clone(FusionDetector((vae, RawDetector("iforest"))))
    assert fusion.detectors[0] is vae and fusion.detectors[1] is not None


# scikit-learn's own estimator checks, every one of them, invariances included: a row's score does not
# depend on the rows scored with it or their order (fixed-size blocks, one noise seed per row; see
# vaelab.scores). The one exception, with its reason: the semi-supervised detector's y.
PARTIAL_LABELS = ("the check fits with arbitrary class targets y; this detector's y is a partial anomaly label "
                  "(-1 unknown, 0 normal, 1 anomaly) and it refuses any other value rather than guess")
PARTIAL_LABEL_CHECKS = ("check_classifier_data_not_an_array", "check_dict_unchanged", "check_dont_overwrite_parameters",
                        "check_dtype_object", "check_estimators_dtypes", "check_estimators_fit_returns_self",
                        "check_estimators_overwrite_params", "check_f_contiguous_array_estimator",
                        "check_fit2d_1feature", "check_fit2d_predict1d",
                        "check_fit_score_takes_y", "check_n_features_in_after_fitting",
                        "check_positive_only_tag_during_fit", "check_readonly_memmap_input",
                        # these two fit with class targets too: test_invariances_of_every_detector covers them
                        "check_methods_sample_order_invariance", "check_methods_subset_invariance")
EXPECTED_FAILURES = {"SemiSupervisedDetector": dict.fromkeys(PARTIAL_LABEL_CHECKS, PARTIAL_LABELS)}
TINY = Config.from_dict({"model": {"hidden_dims": [8]}, "train": {"batch_size": 32},
                         "detector": {"iwae_samples": 4, "max_fit_rows": 200, "threshold_rows": 10000,
                                      "reference_rows": 100, "iforest_estimators": 20, "nystroem_components": 20}})


def _tiny(name: str, calibration: float = 0.0) -> BaseDetector:
    """A small registered detector; without calibration rows by default, as scikit-learn's checks expect
    (its contamination is the share of the training rows flagged, which a held-out threshold only
    approximates)."""
    return make_detector(name, TINY, latent_dim=2, epochs=1, calibration=calibration)


def _expected(estimator) -> dict[str, str]:
    return dict(EXPECTED_FAILURES.get(type(estimator).__name__, {}))


# One detector of each class in the default suite; every registered name in the slow one.
ONE_OF_EACH = ("vae-iwae", "latent-gmm", "raw-kde", "fusion-latent-zsum", "likelihood-ratio", SEMI_SUPERVISED)


@parametrize_with_checks([_tiny(name) for name in ONE_OF_EACH], expected_failed_checks=_expected)
def test_scikit_learn_estimator_checks(estimator, check):
    check(estimator)


@pytest.mark.slow
@parametrize_with_checks([_tiny(name) for name in (*DETECTORS, CLUSTER_CONDITIONAL, CLUSTER_GATED)
                          if name not in ONE_OF_EACH],
                         expected_failed_checks=_expected)
def test_scikit_learn_estimator_checks_on_every_registered_detector(estimator, check):
    check(estimator)


def _scoring_methods(det: BaseDetector) -> dict:
    """Every public method of ``det`` that takes rows: the three of the contract and the extras."""
    methods = {"score_samples": det.score_samples, "decision_function": det.decision_function,
               "predict": det.predict}
    if isinstance(det, VAEDetector):
        methods.update(encode=det.encode, score_with=lambda X: det.score_with(X, "elbo"))
    if isinstance(det, SemiSupervisedDetector):
        methods["score_parts"] = lambda X: np.column_stack(list(det.score_parts(X).values()))
    return methods


@pytest.mark.parametrize("name", [*DETECTORS, SEMI_SUPERVISED, CLUSTER_CONDITIONAL, CLUSTER_GATED])
def test_invariances_of_every_detector(blobs, name):
    """A row's score depends on the row alone (not on its batch, the batch's size or the row order);
    one seed gives one fit; every scoring method checks the feature count. Scores agree to float32
    rounding: bit for bit in most shapes, but BLAS may pick a kernel by a row's memory alignment (rows
    of an odd number of floats), and scikit-learn's float64 estimators differ in the last bits."""
    train, test, is_anomaly = blobs
    y = np.where(np.arange(len(train)) < 5, 1, -1) if name == SEMI_SUPERVISED else None
    det, again = _tiny(name).fit(train, y), _tiny(name).fit(train, y)
    order = np.random.default_rng(1).permutation(len(test))
    for method_name, method in _scoring_methods(det).items():
        full = method(test)
        same = lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-9, err_msg=method_name)  # noqa: E731
        same(method(test[order]), full[order])
        same(method(test[17:40]), full[17:40])
        same(method(test[3:4]), full[3:4])
        assert np.array_equal(_scoring_methods(again)[method_name](test), full), method_name
        with pytest.raises(ValueError, match="features"):
            method(test[:, :5])


# ---- calibrated thresholds and p-values -----------------------------------------------------------
def _gaussian(rng, n, d=4):
    return rng.normal(size=(n, d)) @ np.diag([3.0, 1.0, 0.5, 0.2][:d])


def test_the_fpr_threshold_holds_on_held_out_normal_rows_over_seeds():
    """Twenty seeds (new data, new calibration split each): the false-positive rate on 5,000 fresh
    normal rows averages at most the target within its sampling error, and no seed is far above it."""
    target, cal_rows, rates = 0.05, 500, []
    for seed in range(20):
        rng = np.random.default_rng(seed)
        det = RawDetector("gmm", pca_components=None, gmm_components=2, random_state=seed, calibration=0.25,
                          fpr=target, threshold_rows=None).fit(_gaussian(rng, 2000))
        assert len(det.calibration_scores_) == cal_rows
        rates.append(np.mean(det.predict(_gaussian(rng, 5000)) == -1))
    spread = np.sqrt(target * (1 - target) / cal_rows)  # the calibration-conditional spread of one seed's rate
    assert np.mean(rates) <= target + 3 * spread / np.sqrt(len(rates)), rates
    assert max(rates) <= target + 4 * spread, rates


def test_pvalues_of_held_out_normal_rows_are_uniform():
    """One fit; 2,000 independent (calibration set, normal row) draws from the normal distribution, as
    the held-out rows are drawn: the p-values pass a Kolmogorov-Smirnov test of uniformity at 1%."""
    from scipy import stats

    from vaelab.conformal import conformal_pvalues

    rng = np.random.default_rng(0)
    det = RawDetector("gmm", pca_components=None, gmm_components=2, calibration=0.2).fit(_gaussian(rng, 2000))
    pool = det.score_samples(_gaussian(rng, 2000 * 500)).reshape(2000, 500)
    p = np.array([conformal_pvalues(row[:-1], row[-1:])[0] for row in pool])
    assert stats.kstest(p, "uniform").pvalue > 0.01


def test_calibration_rows_are_held_out_and_thresholds_follow_the_settings(blobs, tmp_path):
    train, test, is_anomaly = blobs
    det = RawDetector("gmm", pca_components=None, calibration=0.2, threshold_rows=None).fit(train)
    assert len(det.calibration_scores_) == 120 and len(det.fit_features_) == 480  # 600 rows, 20% held out
    p = det.score_pvalues(test)
    assert p.min() > 0 and p.max() <= 1 and p[is_anomaly == 1].mean() < p[is_anomaly == 0].mean()
    contamination_offset = det.offset_
    det.set_threshold(fpr=0.05)
    assert np.array_equal(det.predict(test) == -1, p <= 0.05) and det.offset_ != contamination_offset
    path = tmp_path / "d.safetensors"
    det.save(path)
    loaded = BaseDetector.load(path)
    assert np.array_equal(loaded.score_pvalues(test), p) and loaded.offset_ == det.offset_
    with pytest.raises(ValueError, match="calibration rows"):
        RawDetector("gmm", pca_components=None).fit(train).score_pvalues(test)
    with pytest.raises(ValueError, match="fpr needs held-out calibration rows"):
        RawDetector("gmm", pca_components=None, fpr=0.05).fit(train)
    with pytest.raises(ValueError, match="calibration rows cannot give a false-positive rate"):
        RawDetector("gmm", pca_components=None, calibration=0.01, fpr=0.01).fit(train)  # 6 rows
    with pytest.raises(ValueError, match="leaves 2 to calibrate and 0 to fit on"):
        RawDetector("gmm", pca_components=None, calibration=0.9).fit(train[:2])


def test_the_semi_supervised_detector_calibrates_on_normal_rows_only(blobs):
    train, test, _ = blobs
    y = np.where(np.arange(len(train)) < 30, 1, -1)
    det = make_detector(SEMI_SUPERVISED, TINY, latent_dim=2, epochs=1, calibration=0.2)
    det.set_params(threshold_rows=None).fit(train, y)
    assert len(det.calibration_scores_) == 114  # 20% of the 570 rows not labelled anomalous


# ---- explanations ---------------------------------------------------------------------------------
@pytest.mark.parametrize("name", [*DETECTORS, SEMI_SUPERVISED, CLUSTER_CONDITIONAL, CLUSTER_GATED])
def test_every_detector_explains_each_row_per_feature(blobs, name):
    train, test, _ = blobs
    y = np.where(np.arange(len(train)) < 5, 1, -1) if name == SEMI_SUPERVISED else None
    det = _tiny(name, calibration=0.2).fit(train, y)
    contributions = det.explain(test[:7])
    assert contributions.shape == (7, train.shape[1]) and np.isfinite(contributions).all()
    with pytest.raises(ValueError, match="features"):
        det.explain(test[:3, :5])


def test_exact_explanations_sum_to_the_score(blobs):
    train, test, _ = blobs
    for det in (VAEDetector("recon-error", latent_dim=2, hidden_dims=(16,), epochs=2).fit(train),
                RawDetector("pca-recon", pca_components=3).fit(train)):
        assert np.allclose(det.explain(test).sum(1), -det.score_samples(test), rtol=1e-5, atol=1e-6)


def test_likelihood_explanations_sum_to_the_data_term(blobs):
    import torch

    train, test, _ = blobs
    det = VAEDetector("iwae", latent_dim=2, hidden_dims=(16,), epochs=2, n_samples=8).fit(train)
    x = torch.from_numpy(det._prepare(test))
    with torch.no_grad():
        expected = -det.model_.log_px_given_z(x, det.model_.encode(x)[0]).double().numpy()
    assert np.allclose(det.explain(test).sum(1), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", ["vae-recon-error", "vae-iwae", "latent-gmm", "raw-gmm", "raw-kde",
                                  "raw-pca-recon", "fusion-latent-zsum"])
def test_explanations_point_at_the_changed_feature(name):
    """Rows changed in one feature only: that feature gets the largest contribution, for nine rows in
    ten; for the latent-space detectors, which see a row only through its code, for half (chance: one
    in six)."""
    rng = np.random.default_rng(0)
    train = rng.normal(size=(800, 2)) @ rng.normal(size=(2, 6)) + 0.05 * rng.normal(size=(800, 6))
    changed = train[:40].copy()
    changed[:, 4] += 6.0
    det = make_detector(name, TINY, latent_dim=2, epochs=20, calibration=0.0).fit(train[40:])
    assert np.mean(det.explain(changed).argmax(1) == 4) >= (0.5 if "latent" in name else 0.9)


def test_fit_part_returns_the_reference_scores_and_thresholds_on_them(blobs):
    """A composite's part: fitted on every given row, its threshold the contamination quantile of the
    held-out reference scores it returns; calibration rows of its own are refused."""
    from vaelab.detectors.base import unfitted_part

    train, test, _ = blobs
    part = unfitted_part(RawDetector("gmm", pca_components=None, calibration=0.2, fpr=0.05))
    assert part.calibration == 0.0 and part.fpr is None
    scores = part.fit_part(train[:150], train[150:])
    np.testing.assert_allclose(scores, part.score_samples(train[150:]))
    assert part.offset_ == pytest.approx(np.quantile(scores, part.contamination))
    np.testing.assert_allclose(part.baseline_, train[:150].mean(0))
    with pytest.raises(ValueError, match="calibration"):
        RawDetector("gmm", pca_components=None, calibration=0.2).fit_part(train[:150], train[150:])
