"""Tensor files and checkpoints: optimizer state survives the split into tensors and JSON."""

import json

import torch

from vaelab import checkpoint as ckpt


def test_optimizer_state_round_trip():
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    model(torch.randn(4, 3)).sum().backward()
    opt.step()
    tensors, meta = ckpt.optimizer_to_tensors(opt)
    meta = json.loads(json.dumps(meta))
    other = torch.optim.Adam(model.parameters(), lr=0.01)
    other.load_state_dict(ckpt.optimizer_from_tensors(tensors, meta))
    for a, b in zip(opt.state.values(), other.state.values()):
        assert all(torch.equal(a[k], b[k]) for k in a)
