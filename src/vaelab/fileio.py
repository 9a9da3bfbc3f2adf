"""Atomic file writes (write beside the target, fsync, then rename into place), output-path checks
made before any work starts, and input fingerprints."""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from vaelab.errors import VaelabError


def _write_error(exc: OSError, path: Path) -> VaelabError:
    return VaelabError(f"cannot write ({exc.strerror or exc})", path)


@contextmanager
def atomic_paths(*paths: str | Path) -> Iterator[list[Path]]:
    """Yield one temporary path beside each of ``paths``; on success rename every one into place.

    All or nothing: on any error (a full disk included) every temporary file is
    removed and every target is left as it was. An ``OSError`` while writing
    becomes a one-line :class:`VaelabError` naming the file.
    """
    targets = [Path(p) for p in paths]
    temps: list[Path] = []
    try:
        umask = os.umask(0)
        os.umask(umask)
        for target in targets:
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
                fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
            except OSError as exc:
                raise _write_error(exc, target) from None
            os.close(fd)
            temps.append(Path(tmp))
            os.chmod(tmp, 0o666 & ~umask)  # mkstemp's 0600 would make outputs private
        try:
            yield temps
        except OSError as exc:
            named = {str(tmp): target for tmp, target in zip(temps, targets)}
            raise _write_error(exc, named.get(str(exc.filename), targets[0])) from None
        for tmp, target in zip(temps, targets):
            try:
                with open(tmp, "rb+") as fh:
                    os.fsync(fh.fileno())
            except OSError as exc:
                raise _write_error(exc, target) from None
        _replace_all(temps, targets)
    finally:
        for tmp in temps:
            tmp.unlink(missing_ok=True)


def _replace_all(temps: list[Path], targets: list[Path]) -> None:
    """Rename each temporary file onto its target; if one rename fails, put back what the earlier
    ones replaced (kept meanwhile as hard links beside them) and remove what they added."""
    done: list[tuple[Path, Path | None]] = []
    try:
        for tmp, target in zip(temps, targets):
            backup = None
            if len(targets) > 1 and target.exists():
                backup = target.with_name(f".{target.name}.{os.getpid()}.previous")
                os.link(target, backup)
            done.append((target, backup))
            try:
                os.replace(tmp, target)
            except OSError as exc:
                done.pop()  # this target is as it was
                if backup is not None:
                    backup.unlink(missing_ok=True)
                raise _write_error(exc, target) from None
    except BaseException:
        for target, backup in reversed(done):
            if backup is not None:
                os.replace(backup, target)
            else:
                target.unlink(missing_ok=True)
        raise
    finally:
        for _, backup in done:
            if backup is not None:
                backup.unlink(missing_ok=True)


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` on success.

    On any error the temporary file is removed and ``path`` is untouched.
    """
    with atomic_paths(path) as (tmp,):
        yield tmp


def write_files(files: dict[Path, bytes]) -> None:
    """Write several files all or nothing (``path -> contents``)."""
    with atomic_paths(*files) as temps:
        for tmp, data in zip(temps, files.values()):
            tmp.write_bytes(data)


def write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text(path: str | Path, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def write_json(path: str | Path, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=True, allow_nan=False) + "\n")


def _nearest_existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_output(path: str | Path, *, directory: bool = False) -> Path:
    """Refuse, before any work starts, an output that cannot be written: a file where a directory
    goes or the reverse, a missing parent directory (files), a file among the parents, or a place
    this process cannot write. A directory and its missing parents are created later, by the writer.
    """
    path = Path(path).expanduser()
    if path.exists() and directory and not path.is_dir():
        raise VaelabError("exists and is not a directory", path)
    if path.exists() and not directory and path.is_dir():
        raise VaelabError("is a directory; give a file name", path)
    if not directory and not path.parent.exists():
        blocker = _nearest_existing(path.parent)
        if blocker.is_dir():
            raise VaelabError(f"directory {path.parent} does not exist", path)
    base = path if path.is_dir() else _nearest_existing(path.parent)
    if not base.is_dir():
        raise VaelabError(f"{base} is a file, not a directory", path)
    try:
        with tempfile.TemporaryFile(dir=base):
            pass
    except OSError as exc:
        raise VaelabError(f"cannot write here ({exc.strerror or exc})", path) from None
    return path


@contextmanager
def locked(path: str | Path, *, wait: bool = True) -> Iterator[bool]:
    """Hold an exclusive advisory lock on ``path`` (a lock file, created if missing, or a directory)
    for the block; yields False instead of waiting when ``wait`` is False and another process holds it.
    The operating system releases the lock when its process ends, however it ends."""
    path = Path(path)
    if not path.is_dir():
        path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDONLY if path.is_dir() else os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)


def fingerprint(*parts: Any) -> str:
    """A short hash of JSON-able ``parts``: what a stored result was computed from."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]
