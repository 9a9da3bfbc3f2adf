"""User-facing errors: one line that names the file first."""

from vaelab.errors import ConfigError, DataError, ModelFileError, VaelabError


def test_the_message_names_the_file_first_and_stays_one_line():
    err = DataError("column 'a' is not numeric", "data/x.csv")
    assert str(err) == "data/x.csv: column 'a' is not numeric" and err.path == "data/x.csv"
    assert str(ConfigError("train.lr must be > 0")) == "train.lr must be > 0"
    assert all(issubclass(c, VaelabError) for c in (ConfigError, DataError, ModelFileError))
