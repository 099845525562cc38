"""Issue 20 end to end: a run writes SAGE usefulness beside influence, logs it, reports it, and ablates flags.

One tiny run (2D 16^2 images, a clinical table, 40 genes; 2 folds of 2 epochs) in comparison mode, so the
unimodal models exist and ablation is on by default. A trained model's flags depend on training noise, so the
flag is forced (``flag_modalities`` patched) to check what the run does with one; the flag rule itself is
tested on constructed outputs in tests/pipeline/test_usefulness.py and tests/explain/test_sage.py.
"""

from __future__ import annotations

import html
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient

from clinfuse.cohort import synthesize_cohort
from clinfuse.config import validate_config
from clinfuse.pipeline import run_experiment, usefulness

pytestmark = pytest.mark.slow

MODALITIES = ["imaging", "clinical", "genomic"]


def _section_text(page: str, section_id: str) -> str:
    match = re.search(rf'<section id="{section_id}".*?</section>', page, re.DOTALL)
    assert match, section_id
    return html.unescape(re.sub(r"<[^>]+>", " ", match.group(0)))


@pytest.fixture(scope="module")
def flagged_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    root = tmp_path_factory.mktemp("usefulness")
    cohort = synthesize_cohort(root / "cohort", patients=48, spatial_dims=2, size=16, seed=3, n_genes=40)
    config = validate_config(
        {
            "name": "useful",
            "cohort": str(cohort),
            "encoders": {
                "imaging": {"name": "cnn", "embed_dim": 4},
                "clinical": {"embed_dim": 4, "hidden": [8]},
                "genomic": {"embed_dim": 4, "hidden": [8], "top_k_genes": 20},
            },
            "fusion": {"method": "gated", "hidden": 8},
            "compare": ["gated"],
            "training": {"epochs": 2, "batch_size": 8, "image_size": [16, 16]},
            "evaluation": {"folds": 2, "test_fraction": 0.25, "bootstrap": 60},
            "explain": {"max_patients": 8, "feature_attributions": False},
            "tracking": {"uri": f"sqlite:///{root / 'mlflow.db'}", "log_model": False},
            "report": {"out_dir": str(root / "reports"), "patient_cards": 1},
            "device": "cpu",
        }
    )
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(usefulness, "flag_modalities", lambda importance, influence: {"imaging": "forced flag"})
        outcome = run_experiment(config, project_dir=root)
    return outcome.run_dir, f"sqlite:///{root / 'mlflow.db'}"


def test_sage_of_the_ensemble_is_efficient_and_matches_the_test_predictions(flagged_run: tuple[Path, str]) -> None:
    run_dir, _ = flagged_run
    data = json.loads((run_dir / "modality_importance.json").read_text())
    loss, metric = data["test"]["loss"], data["test"]["metric"]
    assert loss["unit"] == "log-loss" and metric["unit"] == "AUROC" and data["model"] == "gated"
    values = [loss["modalities"][m]["value"] for m in MODALITIES]
    assert sum(values) == pytest.approx(loss["value_empty"] - loss["value_full"], abs=1e-9)
    gains = [metric["modalities"][m]["value"] for m in MODALITIES]
    assert sum(gains) == pytest.approx(metric["value_full"] - metric["value_empty"], abs=1e-9)
    # loss(all) is the fold ensemble's log-loss on every test patient: the same numbers predictions.csv holds.
    predictions = pd.read_csv(run_dir / "predictions.csv")
    predictions = predictions[predictions["model"] == "gated"]
    assert loss["n_patients"] == len(predictions) == 12
    p, y = predictions["prob"].to_numpy(), predictions["label"].astype(int).to_numpy()
    assert loss["value_full"] == pytest.approx(-np.mean(y * np.log(p) + (1 - y) * np.log1p(-p)), abs=1e-5)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metric["value_full"] == pytest.approx(metrics["gated"]["test"]["auroc"], abs=1e-6)
    for m in MODALITIES:
        entry = loss["modalities"][m]
        assert entry["ci_low"] <= entry["value"] <= entry["ci_high"]
    # One block per fold, on its validation patients (18 and 18 of the 36 non-test patients).
    assert [f["fold"] for f in data["folds"]] == [0, 1]
    assert [f["loss"]["n_patients"] for f in data["folds"]] == [18, 18]
    table = pd.read_csv(run_dir / "modality_importance.csv")
    assert len(table) == 3 * 2 * len(MODALITIES)
    assert set(table["scope"]) == {"test", "fold0", "fold1"}
    assert table.loc[table["flagged"], "modality"].unique().tolist() == ["imaging"]


def test_flags_reach_the_summary_and_mlflow(flagged_run: tuple[Path, str]) -> None:
    run_dir, uri = flagged_run
    summary = json.loads((run_dir / "modality_summary.json").read_text())
    assert summary["influence_without_usefulness"] == {"imaging": "forced flag"}
    assert set(summary["usefulness"]) == set(MODALITIES) and "mean_abs_phi" in summary["overall"]
    client = MlflowClient(uri)
    (run,) = client.search_runs(
        [client.get_experiment_by_name("useful").experiment_id], "tags.mlflow.parentRunId IS NULL"
    )
    logged = run.data.metrics
    data = json.loads((run_dir / "modality_importance.json").read_text())["test"]
    for m in MODALITIES:
        assert logged[f"sage_loss_{m}"] == pytest.approx(data["loss"]["modalities"][m]["value"])
        assert logged[f"sage_loss_{m}_ci_low"] == pytest.approx(data["loss"]["modalities"][m]["ci_low"])
        assert logged[f"sage_auroc_{m}_ci_high"] == pytest.approx(data["metric"]["modalities"][m]["ci_high"])
    assert logged["sage_flag_imaging"] == 1.0 and logged["sage_flag_genomic"] == 0.0
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"modality_importance.json", "modality_importance.csv"} <= artifacts


def test_flagged_modality_gets_an_ablation_row(flagged_run: tuple[Path, str]) -> None:
    run_dir, _ = flagged_run
    metrics = json.loads((run_dir / "metrics.json").read_text())
    ablation = metrics["gated_without_imaging"]
    assert ablation["kind"] == "ablation" and ablation["modalities"] == ["clinical", "genomic"]
    comparison = pd.read_csv(run_dir / "comparison.csv").set_index("model")
    deep = ["gated", "imaging_only", "clinical_only", "genomic_only", "gated_without_imaging"]
    # The classical baselines stay rows of the rewritten comparison.
    assert list(comparison.index) == [*deep, "logistic_regression", "gradient_boosting"]
    row = comparison.loc["gated_without_imaging"]
    assert row["kind"] == "ablation"
    assert row["diff_vs_primary"] == pytest.approx(ablation["test"]["auroc"] - metrics["gated"]["test"]["auroc"])
    assert 0 < row["p_vs_primary"] <= 1
    assert comparison.drop(index="gated_without_imaging")["p_vs_primary"].isna().all()
    history = pd.read_csv(run_dir / "history.csv")
    assert set(history["model"]) == set(deep)  # classical models have no epochs
    predictions = pd.read_csv(run_dir / "predictions.csv")
    assert (predictions["model"] == "gated_without_imaging").sum() == 12


def test_report_shows_influence_beside_usefulness(flagged_run: tuple[Path, str]) -> None:
    run_dir, _ = flagged_run
    page = (run_dir / "report.html").read_text(encoding="utf-8")
    contributions = _section_text(page, "contributions")
    for words in (
        "Influence and usefulness",
        "influence: mean |φ|",
        "usefulness: SAGE log-loss (95% CI)",
        "usefulness: SAGE AUROC (95% CI)",
        "AUROC alone (test)",
        "The model reacts to imaging (mean |φ| ",
    ):
        assert words in contributions, words
    assert re.search(
        r"but imaging (does not improve|makes) its predictions .*? likely noise the model fitted", contributions
    )
    performance = _section_text(page, "performance")
    assert "gated_without_imaging" in performance and "diff vs primary" in performance
    assert "Influence is not usefulness" in _section_text(page, "methods")
