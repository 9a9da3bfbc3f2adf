"""Atomic writes and fingerprints."""

import json
from pathlib import Path

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


def test_check_output_refuses_each_kind_of_bad_path_before_work(tmp_path):
    from vaelab.errors import VaelabError
    from vaelab.fileio import check_output

    (tmp_path / "file").write_text("x")
    (tmp_path / "dir").mkdir()
    assert check_output(tmp_path / "new.csv") == tmp_path / "new.csv"
    assert check_output(tmp_path / "a" / "b", directory=True)  # missing parents of a directory are made later
    for path, directory, message in [(tmp_path / "file", True, "exists and is not a directory"),
                                     (tmp_path / "dir", False, "is a directory"),
                                     (tmp_path / "file" / "x.csv", False, "is a file, not a directory"),
                                     (tmp_path / "file" / "run", True, "is a file, not a directory"),
                                     (tmp_path / "none" / "x.csv", False, "does not exist"),
                                     (Path("/proc/x.csv"), False, "cannot write here")]:
        with pytest.raises(VaelabError, match=message):
            check_output(path, directory=directory)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dir", "file"]


def test_write_files_puts_back_what_it_replaced_when_a_later_file_fails(tmp_path, monkeypatch):
    import errno
    import os

    from vaelab import fileio
    from vaelab.errors import VaelabError

    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    fileio.write_files({a: b"old a", b: b"old b"})
    real = os.replace

    def failing(src, dst):
        if str(dst) == str(b):
            raise OSError(errno.EIO, "Input/output error")
        return real(src, dst)

    monkeypatch.setattr(fileio.os, "replace", failing)
    with pytest.raises(VaelabError, match="b.txt: cannot write"):
        fileio.write_files({a: b"new a", b: b"new b"})
    assert a.read_bytes() == b"old a" and b.read_bytes() == b"old b"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "b.txt"]


def test_a_held_lock_is_reported_without_waiting(tmp_path):
    from vaelab.fileio import locked

    with locked(tmp_path / "x.lock") as first:
        with locked(tmp_path / "x.lock", wait=False) as second:
            assert first and not second
    with locked(tmp_path / "x.lock", wait=False) as again:
        assert again
