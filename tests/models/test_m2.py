"""M2: the exact marginalisation over y, the loss, conditional generation, and no label leak."""

import pytest
import torch

from vaelab.config import ModelConfig
from vaelab.models import build_model


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




def test_class_balance_is_zero_at_the_prior_and_grows_as_a_class_empties(m2):
    y = torch.tensor([-1, -1, -1, -1])
    even = torch.zeros(4, 4)  # q(y|x) uniform = the uniform prior
    assert m2.class_balance(even, y).item() == pytest.approx(0.0, abs=1e-6)
    collapsed = torch.tensor([[0.0, 0.0, 0.0, 30.0]]).repeat(4, 1)  # every row in class 3
    assert m2.class_balance(collapsed, y).item() > 10
    # labelled rows count with their label: one row of each class already matches the prior
    assert m2.class_balance(collapsed, torch.tensor([0, 1, 2, 3])).item() == pytest.approx(0.0, abs=1e-6)


def test_balance_enters_the_loss_only_when_set():
    torch.manual_seed(0)
    x, y = torch.rand(8, 12), torch.tensor([1, -1, -1, -1, -1, -1, -1, -1])
    losses = []
    for balance in (0.0, 2.0):
        torch.manual_seed(0)
        model = build_model(ModelConfig(name="m2", latent_dim=3, hidden_dims=(16,), n_classes=2, balance=balance),
                            12, "bernoulli")
        out = model(x, y, _gen())
        losses.append(out.loss.item() - balance * 7 * model.class_balance(out.logits, y).item() / 8)
    assert losses[0] == pytest.approx(losses[1], rel=1e-5)


@pytest.mark.parametrize("y", [[0, -1, 2, -1, -1, 3], [-1] * 6, [1, 0, 2, 3, 3, 0]])
@pytest.mark.parametrize("balance", [0.0, 2.0])
def test_the_fixed_shape_step_is_the_split_step(y, balance):
    """CUDA's step (every class's bound for every row, picked by mask; graph-safe) gives the loss, bounds
    and gradients of the CPU's split step, with z made deterministic so that both draw alike."""
    torch.manual_seed(0)
    model = build_model(ModelConfig(name="m2", latent_dim=3, hidden_dims=(16,), n_classes=4, balance=balance,
                                    logvar_min=-80.0), 12, "bernoulli")
    with torch.no_grad():
        model.cvae.enc_logvar.weight.zero_()
        model.cvae.enc_logvar.bias.fill_(-70.0)
    x, y = torch.rand(6, 12), torch.tensor(y)
    runs = []
    for step in (lambda: model(x, y, _gen()), lambda: model._fixed_shape_loss(x, y, y >= 0, model.classify(x), _gen())):
        model.zero_grad()
        out = step()
        out.loss.backward()
        runs.append((out, {name: p.grad.clone() for name, p in model.named_parameters()}))
    (split, split_grads), (fixed, fixed_grads) = runs
    assert torch.allclose(split.elbo, fixed.elbo, atol=1e-4)
    assert torch.isclose(split.loss, fixed.loss, atol=1e-4)
    assert all(torch.allclose(split_grads[k], fixed_grads[k], atol=1e-4) for k in split_grads)
    assert model.graph_safe
