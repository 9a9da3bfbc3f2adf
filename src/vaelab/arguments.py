"""The command line's argument types and checks: argparse errors as one line, ranges checked at parse
time, outputs that must not overwrite inputs."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Sequence

from vaelab.errors import VaelabError


class Parser(argparse.ArgumentParser):
    """argparse with its errors in vaelab's one-line form (no usage block), exit status 2."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"vaelab: error: {' '.join(message.split())} (see `{self.prog} --help`)\n")


def _number(text: str, kind: type, low: float, high: float, closed_low: bool, shown: str):
    """``text`` as ``kind`` within (low, high) (``closed_low``: [low, high)), else argparse's type error."""
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a {'whole number' if kind is int else 'number'}; "
                                         f"got {text!r}") from None
    if not ((low <= value) if closed_low else (low < value)) or not value < high:
        raise argparse.ArgumentTypeError(f"must be {shown}; got {text}")
    return value


def positive_int(text: str) -> int:
    """An argparse type: a whole number >= 1."""
    return _number(text, int, 1, float("inf"), True, ">= 1")


def fraction(text: str) -> float:
    """An argparse type: a number strictly between 0 and 1."""
    return _number(text, float, 0.0, 1.0, False, "in (0, 1)")


def share(text: str) -> float:
    """An argparse type: a share in [0, 1)."""
    return _number(text, float, 0.0, 1.0, True, "in [0, 1)")


def contamination(text: str) -> float:
    """An argparse type: an anomaly fraction in (0, 0.5)."""
    value = fraction(text)
    if value >= 0.5:
        raise argparse.ArgumentTypeError(f"must be in (0, 0.5); got {text}")
    return value


def int_list(text: str) -> list[int]:
    """An argparse type: comma-separated whole numbers, e.g. 3,5,200."""
    try:
        return [int(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be comma-separated whole numbers, e.g. 3,5,200; got {text!r}") from None


def distinct_outputs(inputs: Sequence[Path | None], outputs: Sequence[Path | None]) -> None:
    """Refuse an output that is also an input or another output (it would be overwritten)."""
    seen: dict[Path, Path] = {}
    for path in [p for p in inputs if p is not None]:
        seen[path.expanduser().resolve()] = path
    for path in [p for p in outputs if p is not None]:
        key = path.expanduser().resolve()
        if key in seen:
            raise VaelabError(f"is given twice, as an output and as {seen[key]}; choose another name", path)
        seen[key] = path
