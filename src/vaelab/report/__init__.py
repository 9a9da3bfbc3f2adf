"""Reports built from a run directory alone: the HTML report and terminal tables."""

from vaelab.report.html import build_report, write_report
from vaelab.report.tables import study_table

__all__ = ["build_report", "study_table", "write_report"]
