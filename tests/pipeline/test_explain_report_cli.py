"""``clinfuse report RUN_ID`` and ``clinfuse explain RUN_ID`` rework a finished run through the CLI."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from pipeline_support import cli, client_for

pytestmark = pytest.mark.slow


def test_report_rewrites_the_report(in_project: Path, reference_run: Path) -> None:
    report = reference_run / "report.html"
    assert not report.exists()  # small.yaml disables the report at the end of the run
    assert cli("report", reference_run.name) == 0
    html = report.read_text(encoding="utf-8")
    assert html.startswith("<!DOCTYPE html>") or "<html" in html[:500]
    assert "P-" in html
    logged = {a.path for a in client_for(in_project).list_artifacts(reference_run.name)}
    assert "report.html" in logged


def test_explain_recomputes_the_same_contributions(in_project: Path, reference_run: Path) -> None:
    contributions = reference_run / "contributions.csv"
    before = pd.read_csv(contributions)
    contributions.unlink()
    (reference_run / "modality_summary.json").unlink()
    assert cli("explain", reference_run.name) == 0
    pd.testing.assert_frame_equal(pd.read_csv(contributions), before, check_exact=False, rtol=0, atol=1e-9)
    assert (reference_run / "modality_summary.json").is_file()
    run = client_for(in_project).get_run(reference_run.name)
    assert run.info.status == "FINISHED"
