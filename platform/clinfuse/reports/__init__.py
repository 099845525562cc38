"""Self-contained HTML reports of a run folder: cohort, performance, contributions, patients, methods."""

from __future__ import annotations

from clinfuse.reports.html import SECTIONS, build_report
from clinfuse.reports.run_folder import RunFolder, load_run_folder

__all__ = ["SECTIONS", "RunFolder", "build_report", "load_run_folder"]
