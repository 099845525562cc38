"""The cohort section reads the summary exactly as the cohort layer writes it."""

from __future__ import annotations

import json
from pathlib import Path

from clinfuse.cohort import cohort_summary, load_cohort, synthesize_cohort
from clinfuse.reports import build_report


def test_cohort_layer_summary_is_shown(make_run_folder, parse, tmp_path: Path) -> None:
    cohort = load_cohort(
        synthesize_cohort(tmp_path / "coh", patients=30, spatial_dims=2, size=8, seed=3, missing_rate={"imaging": 0.3})
    )
    run_dir = make_run_folder()
    summary = cohort_summary(cohort)
    (run_dir / "cohort_summary.json").write_text(json.dumps(summary), encoding="utf-8")
    html = build_report(run_dir).read_text(encoding="utf-8")
    text = parse(run_dir / "report.html").section_text("cohort")
    assert f"Patients: {cohort.n}" in text
    n_imaging = int(cohort.modalities["imaging"].present.sum())
    assert n_imaging < cohort.n
    assert "Modality availability" in html and str(n_imaging) in text
    assert "Modality overlap" in html
