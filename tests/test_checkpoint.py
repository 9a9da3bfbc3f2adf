"""Tensor files and checkpoints: optimizer state survives the split into tensors and JSON."""

import json

import pytest
import torch

from vaelab import checkpoint as ckpt
from vaelab.errors import ModelFileError, VaelabError


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


def _file(tmp_path, **meta):
    path = tmp_path / "t.safetensors"
    ckpt.save_tensors(path, {"w": torch.arange(4.0)}, {"kind": "test", "threshold": 0.5, **meta})
    return path


def _edited(path, change, reseal=False):
    """Rewrite the file's metadata with ``change`` applied, as someone editing it would; ``reseal``
    recomputes the SHA-256 as a deliberate editor could."""
    import hashlib

    from safetensors.torch import load_file, save_file

    tensors = load_file(path)
    with open(path, "rb") as fh:
        size = int.from_bytes(fh.read(8), "little")
        meta = json.loads(json.loads(fh.read(size))["__metadata__"][ckpt.META_KEY])
    change(meta)
    if reseal:
        meta["sha256"] = hashlib.sha256(ckpt._content(tensors, meta)).hexdigest()
    save_file(tensors, path, metadata={ckpt.META_KEY: json.dumps(meta)})
    return path


def test_every_metadata_field_is_sealed(tmp_path):
    path = _file(tmp_path, preprocessing={"mean": [0.1, 0.2]})
    tensors, meta = ckpt.load_tensors(path)
    assert meta["threshold"] == 0.5 and torch.equal(tensors["w"], torch.arange(4.0))
    for change in (lambda m: m.update(threshold=0.9), lambda m: m["preprocessing"]["mean"].__setitem__(0, 5.0),
                   lambda m: m.update(extra=1), lambda m: m.pop("kind")):
        _file(tmp_path, preprocessing={"mean": [0.1, 0.2]})
        with pytest.raises(ModelFileError, match="does not match its recorded SHA-256"):
            ckpt.load_tensors(_edited(path, change))


def test_signed_files_load_only_under_their_key(tmp_path, monkeypatch):
    unsigned = _file(tmp_path)
    monkeypatch.setenv(ckpt.SIGNING_KEY_ENV, "k1")
    with pytest.raises(ModelFileError, match="not signed"):
        ckpt.load_tensors(unsigned)
    signed = _file(tmp_path)
    assert ckpt.load_tensors(signed)[1]["hmac_sha256"]
    # an editor who recomputes the SHA-256 passes the digest check but not the signature
    with pytest.raises(ModelFileError, match="signature does not verify"):
        ckpt.load_tensors(_edited(signed, lambda m: m.update(threshold=0.9), reseal=True))
    signed = _file(tmp_path)
    monkeypatch.setenv(ckpt.SIGNING_KEY_ENV, "k2")
    with pytest.raises(ModelFileError, match="signature does not verify"):
        ckpt.load_tensors(signed)
    monkeypatch.delenv(ckpt.SIGNING_KEY_ENV)
    assert ckpt.load_tensors(signed)[1]["threshold"] == 0.5  # without a key: integrity only
    edited = _edited(signed, lambda m: m.update(threshold=0.9), reseal=True)
    assert ckpt.load_tensors(edited)[1]["threshold"] == 0.9  # what a digest alone cannot stop


def test_a_failed_write_leaves_the_previous_file_and_its_sidecar(tmp_path, monkeypatch):
    import errno
    import os

    _file(tmp_path)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    real_fsync = os.fsync
    calls = []

    def full_disk(fd):
        calls.append(fd)
        if len(calls) == 2:  # the second of the two files
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_fsync(fd)

    monkeypatch.setattr(os, "fsync", full_disk)
    with pytest.raises(VaelabError, match="No space left on device"):
        _file(tmp_path, threshold=0.7)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before
