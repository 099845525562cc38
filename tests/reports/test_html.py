"""build_report: sections, numbers traceable to the run's files, self-containment, missing files, escaping."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from clinfuse.errors import RunError
from clinfuse.reports import SECTIONS, build_report
from clinfuse.reports.markup import fmt

MODALITIES = ("imaging", "clinical", "genomic")  # the fixture's modalities, in order


def test_report_has_every_section_with_a_heading(built_report) -> None:
    run_folder, report = built_report
    assert (run_folder / "report.html").is_file()
    assert set(SECTIONS) <= set(report.sections)
    for section_id in SECTIONS:
        assert len(report.sections[section_id]) == 1, f"section {section_id} needs exactly one <h2>"


def test_contribution_table_matches_contributions_csv(built_report) -> None:
    run_folder, report = built_report
    frame = pd.read_csv(run_folder / "contributions.csv", dtype={"patient": str})
    header, *rows = report.table("contributions")
    by_modality = {row[0]: dict(zip(header, row, strict=True)) for row in rows}
    assert list(by_modality) == list(MODALITIES)
    total_abs = sum(frame[f"phi_{m}"].abs().mean() for m in MODALITIES)
    for m in MODALITIES:
        phi = frame[f"phi_{m}"]
        present = frame[f"present_{m}"].astype(bool)
        assert by_modality[m]["mean |φ|"] == fmt(phi.abs().mean())
        assert by_modality[m]["mean φ"] == fmt(phi.mean())
        assert by_modality[m]["mean |φ| (present only)"] == fmt(phi[present].abs().mean())
        assert by_modality[m]["patients with it"] == str(int(present.sum()))
        assert by_modality[m]["share of |φ|"] == fmt(phi.abs().mean() / total_abs)
    # The fixture's contributions are exact: the printed efficiency gap is at rounding level.
    gap = re.search(r"Σφ\| = (\d\.\de[+-]\d+)", report.section_text("contributions"))
    assert gap is not None and float(gap.group(1)) < 1e-9


def test_metrics_table_matches_metrics_json(built_report) -> None:
    run_folder, report = built_report
    metrics = json.loads((run_folder / "metrics.json").read_text())["gated"]
    header, *rows = report.table("metrics")
    assert header == ["metric", "test", "CI low", "CI high", "fold mean", "fold sd"]
    auroc = next(row for row in rows if row[0] == "auroc")
    lo, hi = metrics["test_ci"]["auroc"]
    assert auroc[1:] == [
        fmt(metrics["test"]["auroc"]),
        fmt(lo),
        fmt(hi),
        fmt(metrics["fold_mean"]["auroc"]),
        fmt(metrics["fold_sd"]["auroc"]),
    ]
    assert {row[0] for row in rows} == set(metrics["test"])


def test_comparison_table_lists_every_model_with_its_p_value(built_report) -> None:
    run_folder, report = built_report
    comparison = pd.read_csv(run_folder / "comparison.csv")
    header, *rows = report.table("comparison")
    auroc = comparison[comparison["metric"] == "auroc"].set_index("model")
    printed = {row[0].removesuffix(" (primary)"): row for row in rows}
    assert set(printed) == set(auroc.index)
    assert rows[0][0] == "gated (primary)"  # sorted best first; the fixture's primary model is best
    assert header[-1] == "p vs best unimodal" and "diff vs best unimodal" in header
    for model, row in printed.items():
        assert row[2] == fmt(auroc.loc[model, "value"])
        assert row[-1] == fmt(auroc.loc[model, "p_vs_best_unimodal"])  # a dash for the best unimodal itself
    assert printed["imaging"][-1] == "—"
    assert "here imaging, chosen on validation folds" in report.section_text("performance")


def test_gates_are_labelled_mixing_weights_and_match_csv(built_report) -> None:
    run_folder, report = built_report
    frame = pd.read_csv(run_folder / "contributions.csv")
    assert "Gates: mixing weights, not contributions" in report.section_text("contributions")
    header, *rows = report.table("gates")
    for row in rows:
        modality = row[0]
        present = frame[f"present_{modality}"].astype(bool)
        assert row[2] == fmt(frame.loc[present, f"gate_{modality}"].mean())


def test_report_is_self_contained(built_report) -> None:
    run_folder, report = built_report
    text = (run_folder / "report.html").read_text(encoding="utf-8")
    assert report.scripts == 0
    assert report.images and all(src.startswith("data:image/png;base64,") for src in report.images)
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//|file:)""", text)
    assert "<link" not in text


def test_patient_cards_match_contributions_and_show_overlays(run_folder: Path, parse) -> None:
    frame = pd.read_csv(run_folder / "contributions.csv", dtype={"patient": str}).set_index("patient")
    report = parse(build_report(run_folder, n_patients=4))
    cards = re.findall(r'id="patient-([^"]+)"', (run_folder / "report.html").read_text())
    assert len(cards) == 4 and len(set(cards)) == len(cards)
    assert set(cards) <= set(frame.index)
    phi_tables = [t["rows"] for t in report.tables if t["rows"] and t["rows"][0][:3] == ["modality", "present", "φ"]]
    assert len(phi_tables) == len(cards)
    for patient, rows in zip(cards, phi_tables, strict=True):
        for modality, _, phi, _ in rows[1:]:
            assert phi == fmt(frame.loc[patient, f"phi_{modality}"])
    overlays = {p.stem for p in (run_folder / "overlays" / "imaging").glob("*.png")}
    n_overlay_imgs = sum(
        alt.startswith("imaging saliency, patient")
        for alt in re.findall(r'alt="([^"]*)"', (run_folder / "report.html").read_text())
    )
    assert n_overlay_imgs == len(set(cards) & overlays)


OPTIONAL_FILES = [
    "comparison.csv",
    "history.csv",
    "modality_summary.json",
    "cohort_summary.json",
    "metrics.json",
    "predictions.csv",
    "splits.csv",
    "config.yaml",
]
OPTIONAL = [*OPTIONAL_FILES, "overlays", "features"]


def test_missing_optional_files_are_named_in_the_report(make_run_folder, parse) -> None:
    run_dir = make_run_folder(omit=OPTIONAL)
    report = parse(build_report(run_dir))
    assert set(SECTIONS) <= set(report.sections)
    text = report.page_text
    for name in OPTIONAL_FILES:
        assert f"Not available: {name} was not found" in text, name
    assert "No overlays/ folder was found" in text
    assert "No features_<modality>.csv file was found" in text
    # contributions remain: the cohort table still matches the CSV.
    frame = pd.read_csv(run_dir / "contributions.csv")
    _, *rows = report.table("contributions")
    assert [row[3] for row in rows] == [fmt(frame[f"phi_{m}"].abs().mean()) for m in MODALITIES]


def test_report_without_contributions_or_run_info(make_run_folder, parse, tmp_path: Path) -> None:
    run_dir = make_run_folder(omit=["contributions.csv", "run_info.json"])
    out = build_report(run_dir, out_path=tmp_path / "out" / "r.html")
    assert out == tmp_path / "out" / "r.html" and not (run_dir / "report.html").exists()
    report = parse(out)
    assert set(SECTIONS) <= set(report.sections)
    assert "Not available: contributions.csv was not found" in report.section_text("patients")
    assert "Not available: run_info.json was not found" in report.section_text("reproducibility")
    # the cohort-level numbers still come from modality_summary.json (statistic-major, as explain writes it)
    summary = json.loads((run_dir / "modality_summary.json").read_text())["overall"]
    _, *rows = report.table("contributions")
    assert {row[0]: row[2] for row in rows} == {m: fmt(v) for m, v in summary["mean_abs_phi"].items()}


@pytest.mark.parametrize("task", ["multiclass", "survival"])
def test_other_tasks_build(make_run_folder, parse, task: str) -> None:
    run_dir = make_run_folder(task=task, n=36, n_modalities=2)
    report = parse(build_report(run_dir))
    assert set(SECTIONS) <= set(report.sections)
    text = report.section_text("performance")
    assert ("Kaplan-Meier" not in text) if task == "multiclass" else ("Risk distribution" not in text)
    alts = re.findall(r'alt="([^"]*)"', (run_dir / "report.html").read_text())
    wanted = (
        ["ROC and precision-recall curves", "Calibration"] if task == "multiclass" else ["Risk distribution by outcome"]
    )
    assert set(wanted) <= set(alts)
    if task == "survival":
        _, *rows = report.table("metrics")
        assert {row[0]: row[1] for row in rows} == {
            "c_index": "0.712",
            "uno_c": "0.701",
            "td_auc": "0.735",
            "ibs": "0.157",
        }
        assert "Breslow baseline" in report.section_text("methods")
    frame = pd.read_csv(run_dir / "contributions.csv")
    _, *rows = report.table("contributions")
    assert [row[3] for row in rows] == [fmt(frame[f"phi_{m}"].abs().mean()) for m in MODALITIES[:2]]


def test_text_from_files_is_escaped(run_folder: Path, parse) -> None:
    frame = pd.read_csv(run_folder / "contributions.csv", dtype={"patient": str})
    evil = '<img src=x onerror="alert(1)">&'
    frame.loc[0, "patient"] = evil
    frame.loc[0, "phi_imaging"] = 5.0  # most extreme output: this patient is chosen for a card
    frame.loc[0, "phi_clinical"] = -4.0
    frame.loc[0, "f_x"] = frame.loc[0, ["f_empty", *[f"phi_{m}" for m in MODALITIES]]].sum()
    frame.to_csv(run_folder / "contributions.csv", index=False)
    info = json.loads((run_folder / "run_info.json").read_text())
    info["run_name"] = "<b>bold</b>"
    (run_folder / "run_info.json").write_text(json.dumps(info))
    text = build_report(run_folder).read_text()
    assert evil not in text and "<b>bold</b>" not in text
    assert "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;&amp;" in text
    assert parse(run_folder / "report.html").images[0].startswith("data:")


def test_missing_or_empty_folder_is_a_run_error(tmp_path: Path) -> None:
    with pytest.raises(RunError, match="run folder not found"):
        build_report(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(RunError, match="none of the run outputs"):
        build_report(tmp_path / "empty")


def test_unreadable_file_is_reported_not_fatal(run_folder: Path, parse) -> None:
    (run_folder / "metrics.json").write_text("{not json")
    report = parse(build_report(run_folder))
    assert "metrics.json: could not be read" in report.page_text
    assert np.isfinite(float(report.table("contributions")[1][3]))


@pytest.mark.parametrize("layout", ["explain", "brief"])
def test_interactions_table_matches_modality_summary(make_run_folder, parse, layout: str) -> None:
    run_dir = make_run_folder(summary_layout=layout, n=24)
    raw = json.loads((run_dir / "modality_summary.json").read_text())["interactions"]
    report = parse(build_report(run_dir))
    header, *rows = report.table("interactions")
    assert header[1:] == list(MODALITIES)
    for i, row in enumerate(rows):
        expected = raw["mean"][i] if layout == "explain" else [raw[row[0]][m] for m in MODALITIES]
        assert row[1:] == [fmt(v) for v in expected]
    explained = "SHAP convention" in report.section_text("contributions")
    assert explained == (layout == "explain")


def test_non_gated_model_has_no_gates_panel(run_folder: Path, parse) -> None:
    frame = pd.read_csv(run_folder / "contributions.csv")
    for m in MODALITIES:
        frame[f"gate_{m}"] = np.nan  # what explain writes for a model without gates
    frame.to_csv(run_folder / "contributions.csv", index=False)
    report = parse(build_report(run_folder))
    assert "The primary model has no gates" in report.section_text("contributions")
    assert not [t for t in report.tables if t["css"] == "gates"]
