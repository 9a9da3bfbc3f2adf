"""The HTML report: rebuilt from a run directory alone, identical to the one the run wrote."""

from vaelab.cli import main


def test_report_is_rebuilt_from_the_run_directory_alone(study_run, capsys):
    before = (study_run / "report.html").read_text()
    (study_run / "report.html").unlink()
    assert main(["report", str(study_run)]) == 0
    assert (study_run / "report.html").read_text() == before
    assert main(["report", str(study_run / "models")]) == 2
    assert "no metrics.json" in capsys.readouterr().err


