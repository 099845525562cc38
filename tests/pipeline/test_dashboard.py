"""Issue 16: the dashboard view of a run (metric names, description) and finding runs written elsewhere."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import pandas as pd
import pytest

from clinfuse.pipeline.dashboard import headline_metrics, metrics_table, model_metrics, run_description
from clinfuse.pipeline.resume import find_run_dir
from clinfuse.reports.run_folder import load_run_folder

METRICS = {
    "gated": {
        "test": {"auroc": 0.81, "brier": 0.2},
        "test_ci": {"auroc": [0.7, 0.9], "brier": [0.15, 0.25]},
        "fold_mean": {"auroc": 0.75, "brier": 0.22},
        "fold_sd": {"auroc": 0.05, "brier": 0.01},
    },
    "clinical": {"test": {"auroc": 0.7, "note": "text is skipped"}, "fold_mean": {}, "fold_sd": {}},
    "notes": "not a model",
}


def test_every_model_gets_its_primary_metric_with_ci_and_cv_under_one_scheme() -> None:
    assert model_metrics(METRICS, "auroc") == {
        "gated.test_auroc": 0.81,
        "gated.test_auroc_ci_low": 0.7,
        "gated.test_auroc_ci_high": 0.9,
        "gated.cv_auroc_mean": 0.75,
        "gated.cv_auroc_sd": 0.05,
        "clinical.test_auroc": 0.7,
    }


def test_headline_is_the_primary_models_every_test_metric_and_the_primary_metrics_ci_cv_and_p() -> None:
    assert headline_metrics(METRICS["gated"], "auroc", 0.03) == {
        "test_auroc": 0.81,
        "test_brier": 0.2,
        "test_auroc_ci_low": 0.7,
        "test_auroc_ci_high": 0.9,
        "cv_auroc_mean": 0.75,
        "cv_auroc_sd": 0.05,
        "p_vs_best_unimodal": 0.03,
    }
    assert "p_vs_best_unimodal" not in headline_metrics(METRICS["gated"], "auroc", None)


def test_metrics_table_keeps_every_number_the_parent_run_no_longer_logs() -> None:
    table = metrics_table(METRICS).set_index(["model", "metric"])
    assert list(table.index) == [("gated", "auroc"), ("gated", "brier"), ("clinical", "auroc")]
    assert table.loc[("gated", "brier")].tolist() == [0.2, 0.15, 0.25, 0.22, 0.01]
    assert table.loc[("clinical", "auroc"), "test"] == 0.7 and pd.isna(table.loc[("clinical", "auroc"), "ci_low"])


def test_description_states_headline_baseline_p_value_and_top_modality(tmp_path: Path) -> None:
    (tmp_path / "run_info.json").write_text(
        json.dumps({"run_name": "study", "cohort_name": "coh", "model_name": "gated", "modalities": ["img", "tab"]})
    )
    common = {"metric": "auroc", "best_unimodal": "tab"}
    pd.DataFrame(
        [
            {
                "model": "gated",
                "kind": "fusion",
                "value": 0.812,
                "ci_low": 0.7,
                "ci_high": 0.9,
                "fold_mean": 0.75,
                "fold_sd": 0.05,
                "p_vs_best_unimodal": 0.031,
                **common,
            },
            {
                "model": "tab",
                "kind": "unimodal",
                "value": 0.701,
                "ci_low": 0.6,
                "ci_high": 0.8,
                "fold_mean": 0.7,
                "fold_sd": 0.04,
                "p_vs_best_unimodal": float("nan"),
                **common,
            },
        ]
    ).to_csv(tmp_path / "comparison.csv", index=False)
    pd.DataFrame(
        {
            "patient": ["p1", "p2"],
            "phi_img": [0.5, -0.7],
            "phi_tab": [0.1, 0.0],
            "present_img": [1, 1],
            "present_tab": [1, 1],
        }
    ).to_csv(tmp_path / "contributions.csv", index=False)
    text = run_description(load_run_folder(tmp_path))
    assert "- **gated**: test auroc **0.812** (95% CI 0.700–0.900); CV 0.750 ± 0.050" in text
    assert "- best unimodal baseline: **tab**, test auroc 0.701" in text
    assert "- paired bootstrap p vs tab: 0.031 (uncorrected)" in text
    assert "- top modality: **img** (mean |φ| 0.600 logit units)" in text


def test_a_run_written_outside_reports_is_found_through_its_out_dir_param(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{(tmp_path / 'mlflow.db').as_posix()}"
    mlflow.set_tracking_uri(uri)
    experiment_id = mlflow.create_experiment("elsewhere")
    with mlflow.start_run(experiment_id=experiment_id) as run:
        mlflow.log_param("report.out_dir", "results/2024")
    run_dir = tmp_path / "results/2024/elsewhere" / run.info.run_id
    run_dir.mkdir(parents=True)
    (run_dir / "run_info.json").write_text("{}")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert find_run_dir(run.info.run_id, tmp_path) == run_dir.resolve()
