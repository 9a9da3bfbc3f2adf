"""M2: the exact marginalisation over y, the loss, conditional generation, and no label leak."""

import numpy as np
import pytest
import torch

from tests.conftest import tiny_config
from vaelab.config import ModelConfig, TrainConfig
from vaelab.models import build_model
from vaelab.semisupervised import balanced_labels, epoch_rows, error_rate, marginal_elbo, train_m2


@pytest.fixture
def m2():
    torch.manual_seed(0)
    return build_model(ModelConfig(name="m2", latent_dim=3, hidden_dims=(16,), n_classes=4, logvar_min=-80.0), 12, "bernoulli")


def _gen():
    return torch.Generator().manual_seed(7)


def test_unlabelled_bound_marginalises_y_exactly(m2):
    x = torch.rand(5, 12)
    # z ~ q(z|x,y) is made deterministic (variance e^-70), so the batched pass over all classes and
    # a loop over the classes, one y at a time, must agree to rounding
    with torch.no_grad():
        m2.cvae.enc_logvar.weight.zero_()
        m2.cvae.enc_logvar.bias.fill_(-70.0)
        log_q = torch.log_softmax(m2.classify(x), -1)
        per_class = torch.stack([m2.labelled_elbo(x, torch.full((5,), k), _gen()) for k in range(4)], dim=1)
        by_hand = (log_q.exp() * (per_class - log_q)).sum(-1)
        batched = m2.unlabelled_elbo(x, _gen())
        assert torch.allclose(m2.elbo_per_class(x, _gen()), per_class, atol=1e-5)
        assert torch.allclose(batched, by_hand, atol=1e-5)
        # U(x) <= log sum_y exp L(x, y), with equality when q(y|x) is the posterior over y
        assert torch.all(batched <= torch.logsumexp(per_class, -1) + 1e-5)


def test_loss_mixes_labelled_and_unlabelled_rows(m2):
    x = torch.rand(6, 12)
    y = torch.tensor([0, -1, 2, -1, -1, 3])
    with torch.no_grad():
        out = m2(x, y, _gen())
        assert torch.allclose(out.elbo[y >= 0], m2.labelled_elbo(x[y >= 0], y[y >= 0], _gen()), atol=1e-5)
        ce = torch.nn.functional.cross_entropy(out.logits[y >= 0], y[y >= 0], reduction="sum")
        assert torch.isclose(out.loss, (m2.config.alpha * ce - out.elbo.sum()) / 6, atol=1e-4)


def test_conditional_samples_and_style(m2):
    z = torch.randn(4, 3)
    images = m2.sample(torch.arange(4), z)
    assert images.shape == (4, 12) and images.min() >= 0 and images.max() <= 1
    assert m2.style(torch.rand(4, 12), torch.arange(4)).shape == (4, 3)


def test_balanced_labels_and_epoch_rows():
    y = np.repeat(np.arange(5), 40)
    semi = balanced_labels(y, 10, seed=0)
    assert (semi >= 0).sum() == 10 and np.bincount(semi[semi >= 0]).tolist() == [2] * 5
    assert np.array_equal(semi[semi >= 0], y[semi >= 0])  # a kept label is the true one
    rows = epoch_rows(semi, 0.2)
    share = (semi[rows] >= 0).mean()
    assert 0.15 < share < 0.25 and set(np.flatnonzero(semi < 0)) <= set(rows)
    with pytest.raises(ValueError):
        balanced_labels(y, 7, seed=0)


def test_m2_learns_from_few_labels_without_seeing_test_labels():
    from vaelab.data import load_dataset

    data = load_dataset(tiny_config(data={"binarize": "none", "train_limit": 0}).data)
    semi = balanced_labels(data.train.y, 50, seed=0)
    x_train = data.train.x
    # label leak guard: the training call gets only the training rows and the partial labels
    m2 = train_m2(x_train, semi, ModelConfig(latent_dim=8, hidden_dims=(64,), n_classes=10),
                  TrainConfig(epochs=4, batch_size=128, progress=False), likelihood="bernoulli")
    err = error_rate(m2, data.test.x, data.test.y)
    assert err < 0.6  # far better than the 90% error of guessing, with 50 labels
    assert np.isfinite(marginal_elbo(m2, data.test.x[:50])).all()


def test_semi_supervised_protocol_labels_only_training_rows():
    from vaelab.data.protocols import semi_supervised_one_vs_rest

    rng = np.random.default_rng(0)
    y_train, y_test = np.repeat(np.arange(4), 50), np.repeat(np.arange(4), 10)
    x_train, x_test = rng.random((200, 3)), rng.random((40, 3))
    x_train[:, 0] = np.arange(200)  # row ids, to trace every training row back
    split = semi_supervised_one_vs_rest(x_train, y_train, x_test, y_test, normal_class=1,
                                        known_anomaly_classes=(2,), n_labelled_anomalies=7,
                                        n_labelled_normals=5, pollution=0.1, seed=3)
    source = split.x_train[:, 0].astype(int)
    assert set(y_train[source[split.y_train == 1]]) == {2} and (split.y_train == 1).sum() == 7
    assert set(y_train[source[split.y_train == 0]]) == {1} and (split.y_train == 0).sum() == 5
    unlabelled = source[split.y_train == -1]
    assert np.mean(y_train[unlabelled] != 1) == pytest.approx(0.1, abs=0.02)
    assert np.array_equal(split.x_test, x_test) and np.array_equal(split.is_anomaly, (y_test != 1).astype(int))
    assert len(set(source)) == len(source)  # no row twice


def test_semi_supervised_detector_uses_its_few_anomaly_labels():
    from vaelab.detectors import SemiSupervisedDetector
    from vaelab.evaluation import auroc

    rng = np.random.default_rng(0)
    normal = rng.normal(size=(500, 6))
    known = rng.normal(size=(20, 6)) * 0.3 + np.array([1.6, -1.6, 0, 0, 0, 0])
    x = np.vstack([normal, known])
    y = np.r_[np.full(500, -1), np.ones(20)].astype(int)
    test = np.vstack([rng.normal(size=(200, 6)), rng.normal(size=(40, 6)) * 0.3 + np.array([1.6, -1.6, 0, 0, 0, 0])])
    is_anomaly = np.r_[np.zeros(200), np.ones(40)]
    kw = dict(latent_dim=2, hidden_dims=(32,), epochs=30, batch_size=64)
    with_labels = SemiSupervisedDetector(**kw).fit(x, y)
    without = SemiSupervisedDetector(**kw).fit(normal)
    a_with, a_without = auroc(is_anomaly, with_labels.score_samples(test)), auroc(is_anomaly, without.score_samples(test))
    assert a_with > 0.8 and a_with > a_without + 0.2
    assert (with_labels.predict(normal) == -1).mean() == pytest.approx(0.1, abs=0.03)
    with pytest.raises(ValueError, match="y must hold"):
        SemiSupervisedDetector(**kw).fit(x, np.full(len(x), 2))


@pytest.mark.parametrize("hidden", [(16,), (16, 8), ()])
def test_encoding_every_class_at_once_equals_encoding_repeated_rows(hidden):
    torch.manual_seed(1)
    model = build_model(ModelConfig(name="m2", latent_dim=3, hidden_dims=hidden, n_classes=4), 12, "bernoulli")
    x, onehots = torch.rand(5, 12), torch.eye(4)
    mean, logvar = model.cvae.encode_each(x, onehots)
    ref_mean, ref_logvar = model.cvae.encode(x.repeat(4, 1), onehots.repeat_interleave(5, 0))
    assert mean.shape == (4, 5, 3)
    assert torch.allclose(mean.reshape(20, 3), ref_mean, atol=1e-6)
    assert torch.allclose(logvar.reshape(20, 3), ref_logvar, atol=1e-6)


def test_m2_file_round_trip_takes_its_build_from_the_model(tmp_path, m2):
    from vaelab.checkpoint import load_model, save_model

    save_model(tmp_path / "m2.safetensors", m2, {"labels": 100})
    loaded, meta = load_model(tmp_path / "m2.safetensors")
    assert meta["labels"] == 100 and meta["model"]["n_classes"] == 4
    x = torch.rand(3, 12)
    assert torch.equal(loaded.classify(x), m2.classify(x))


def test_conditional_agreement_is_chance_when_the_decoder_ignores_the_class(m2):
    from vaelab.semisupervised import conditional_agreement

    with torch.no_grad():
        m2.cvae.decoder[0].weight[:, m2.config.latent_dim:] = 0.0  # p(x|y,z) = p(x|z)
    assert conditional_agreement(m2, per_class=25) == pytest.approx(1 / m2.n_classes)
    # a judge that recognises every row as what it was asked to draw
    assert conditional_agreement(m2, per_class=5, judge=lambda x: np.repeat(np.arange(len(x) // 5), 5)) == 1.0
