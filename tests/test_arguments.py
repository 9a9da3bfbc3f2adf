"""Argument types: ranges checked at parse time; argparse's errors as one line; outputs kept apart from inputs."""

import argparse
from pathlib import Path

import pytest

from vaelab.arguments import Parser, contamination, distinct_outputs, fraction, int_list, positive_int, share
from vaelab.errors import VaelabError


@pytest.mark.parametrize("kind, good, bad", [
    (positive_int, [("1", 1), ("20", 20)], ["0", "-5", "x", "1.5"]),
    (fraction, [("0.01", 0.01), ("0.99", 0.99)], ["0", "1", "x", "-0.1"]),
    (share, [("0", 0.0), ("0.5", 0.5)], ["1", "-0.1", "x"]),
    (contamination, [("0.1", 0.1)], ["0.5", "0.7", "0"]),
    (int_list, [("3,5,200", [3, 5, 200])], ["3,x", ""]),
])
def test_each_type_accepts_its_range_and_refuses_the_rest(kind, good, bad):
    for text, value in good:
        assert kind(text) == value
    for text in bad:
        with pytest.raises(argparse.ArgumentTypeError):
            kind(text)


def test_parser_errors_are_one_line_with_exit_2(capsys):
    parser = Parser(prog="vaelab x")
    parser.add_argument("--n", type=positive_int, required=True)
    with pytest.raises(SystemExit) as info:
        parser.parse_args(["--n", "0"])
    err = capsys.readouterr().err
    assert info.value.code == 2 and err.count("\n") == 1
    assert err.startswith("vaelab: error: argument --n: must be >= 1; got 0 (see `vaelab x --help`)")


def test_an_output_that_is_an_input_or_another_output_is_refused(tmp_path):
    distinct_outputs([tmp_path / "in.csv"], [tmp_path / "out.csv", tmp_path / "det.safetensors"])
    with pytest.raises(VaelabError, match="is given twice"):
        distinct_outputs([tmp_path / "in.csv"], [tmp_path / "sub" / ".." / "in.csv"])
    with pytest.raises(VaelabError, match="is given twice"):
        distinct_outputs([], [Path(tmp_path / "a"), Path(tmp_path / "a")])
