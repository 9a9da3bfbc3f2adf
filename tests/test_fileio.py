"""Atomic writes and fingerprints."""

import json

import pytest

from vaelab.fileio import fingerprint, write_json


def test_fingerprint_depends_on_every_part_and_not_on_key_order():
    assert fingerprint({"a": 1, "b": 2}) == fingerprint({"b": 2, "a": 1})
    assert fingerprint("a", 1) != fingerprint("a", 2) != fingerprint("b", 2)


def test_a_failed_write_keeps_the_previous_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "a.json"
    write_json(path, {"v": 1})
    with pytest.raises(ValueError):
        write_json(path, {"v": float("nan")})  # refused: not valid JSON
    assert json.loads(path.read_text()) == {"v": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]
