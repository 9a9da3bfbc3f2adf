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
