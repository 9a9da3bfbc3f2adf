"""The checked download: SHA-256 verified, nothing left behind on a mismatch."""


import pytest

from vaelab.data.download import download, sha256_file
from vaelab.errors import DataError


def test_checksum_mismatch_leaves_nothing(http_dir, tmp_path):
    root, url = http_dir
    (root / "f.bin").write_bytes(b"hello")
    dest = tmp_path / "out" / "f.bin"
    with pytest.raises(DataError, match="checksum mismatch"):
        download(url + "f.bin", dest, "0" * 64)
    assert not dest.exists() and list(dest.parent.iterdir()) == []
    with pytest.raises(DataError, match="failed"):
        download(url + "missing.bin", dest, "0" * 64)
    assert list(dest.parent.iterdir()) == []


def test_file_url_download(tmp_path):
    src = tmp_path / "src.bin"
    src.write_bytes(b"x" * 5000)
    dest = download(src.as_uri(), tmp_path / "d" / "dst.bin", sha256_file(src))
    assert dest.read_bytes() == src.read_bytes()


