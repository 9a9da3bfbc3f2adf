"""Atomic writes and stored results keyed by what they were computed from."""

import json

import pytest

from vaelab.fileio import cached_json, fingerprint


def test_cached_json_computes_once_per_fingerprint(tmp_path):
    calls = []
    compute = lambda: calls.append(1) or {"value": len(calls)}  # noqa: E731
    path = tmp_path / "cells" / "a.json"
    assert cached_json(path, fingerprint("a", 1), compute) == {"value": 1}
    assert cached_json(path, fingerprint("a", 1), compute) == {"value": 1}  # reused
    assert len(calls) == 1
    assert cached_json(path, fingerprint("a", 2), compute) == {"value": 2}  # other settings: redone
    assert json.loads(path.read_text())["fingerprint"] == fingerprint("a", 2)


def test_cached_json_redoes_a_damaged_file_and_keeps_nothing_on_failure(tmp_path):
    path = tmp_path / "a.json"
    path.write_text('{"fingerprint": "x", "res')  # cut short
    assert cached_json(path, "x", lambda: {"v": 1}) == {"v": 1}

    def fail():
        raise RuntimeError("interrupted")

    other = tmp_path / "b.json"
    with pytest.raises(RuntimeError):
        cached_json(other, "x", fail)
    assert list(tmp_path.iterdir()) == [path]
