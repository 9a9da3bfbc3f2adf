"""Download a file with a SHA-256 check, never leaving a partial file behind."""

from __future__ import annotations

import hashlib
import os
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

from vaelab.errors import DataError

CHUNK = 1 << 20


def sha256_file(path: str | Path) -> str:
    """Hex SHA-256 digest of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def download(url: str, dest: str | Path, sha256: str, timeout: float = 60.0) -> Path:
    """Fetch ``url`` (http, https or file) into ``dest`` and verify its SHA-256.

    The bytes go to a temporary file beside ``dest`` which is renamed into
    place only after the digest matches, so an interrupted or corrupt
    download leaves nothing at ``dest``. An existing ``dest`` with the right
    digest is kept as it is.
    """
    dest = Path(dest)
    if dest.exists() and sha256_file(dest) == sha256:
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=dest.name + ".", suffix=".part", dir=dest.parent)
    tmp = Path(tmp_name)
    try:
        digest = hashlib.sha256()
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as resp:
            for block in iter(lambda: resp.read(CHUNK), b""):
                digest.update(block)
                out.write(block)
            out.flush()
            os.fsync(out.fileno())
        if digest.hexdigest() != sha256:
            raise DataError(f"checksum mismatch for {url}: expected sha256 {sha256}, "
                            f"got {digest.hexdigest()}", dest)
        os.replace(tmp, dest)
        return dest
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise DataError(f"download from {url} failed ({getattr(exc, 'reason', exc)})", dest) from None
    finally:
        tmp.unlink(missing_ok=True)
