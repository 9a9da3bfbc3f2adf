"""User-facing errors: one clear line, naming the file and the problem."""

from __future__ import annotations

from pathlib import Path


class VaelabError(Exception):
    """An error caused by the user's input (a file, a config, an argument).

    The CLI prints ``str(error)`` as one line and exits with status 2.
    """

    def __init__(self, message: str, path: str | Path | None = None) -> None:
        self.path = None if path is None else str(path)
        super().__init__(f"{self.path}: {message}" if self.path else message)


    def at(self, path: str | Path) -> "VaelabError":
        """This error naming ``path``, unless it names a file already."""
        if self.path is not None:
            return self
        return type(self)(str(self), path)


class ConfigError(VaelabError):
    """An unknown key or an invalid value in a config."""


class DataError(VaelabError, ValueError):
    """A data file that is missing, malformed or of the wrong shape (a ValueError too, as
    scikit-learn's conventions expect of bad input to a detector)."""


class ModelFileError(VaelabError):
    """A model or checkpoint file that is missing, truncated or tampered with."""


class TrainingDiverged(VaelabError):
    """The loss became NaN or infinite during training."""
