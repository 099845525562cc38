"""Issue 4: a tiny 3-modality cohort through ``clinfuse run`` writes a complete run folder with sane numbers."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from pipeline_support import N_PATIENTS, CompareRun

from clinfuse import outputs

pytestmark = pytest.mark.slow

MODELS = ["gated", "concat", "imaging_only", "clinical_only", "genomic_only"]
CLASSICAL = ["logistic_regression", "gradient_boosting"]
MODALITIES = ["imaging", "clinical", "genomic"]
N_TEST = 10  # 25% of 40 patients


EXPECTED = {
    "config.yaml",
    "run_info.json",
    "cohort_summary.json",
    "splits.csv",
    "metrics.json",
    "comparison.csv",
    "history.csv",
    "predictions.csv",
    "contributions.csv",
    "modality_summary.json",
    "report.html",
}


def test_run_folder_holds_every_output(compare_run: CompareRun) -> None:
    run_dir = compare_run.run_dir
    assert set(outputs.LOGGED_FILES) >= EXPECTED  # the contract still names every documented file
    for name in outputs.LOGGED_FILES:
        assert (run_dir / name).is_file(), name
    assert sorted(p.name for p in run_dir.glob("features_*.csv")) == ["features_clinical.csv", "features_genomic.csv"]
    overlays = list((run_dir / "overlays" / "imaging").glob("*.png"))
    assert len(overlays) == 1 and overlays[0].name.startswith("P-")
    assert overlays[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert compare_run.run_id in compare_run.stdout  # the CLI printed the run and its table


def test_run_info_records_provenance(compare_run: CompareRun) -> None:
    info = json.loads((compare_run.run_dir / "run_info.json").read_text())
    assert info["run_id"] == compare_run.run_id
    assert info["experiment"] == "tiny" and info["task"] == "binary" and info["seed"] == 0
    assert info["modalities"] == MODALITIES and info["model_name"] == "gated"
    assert len(info["cohort_hash"]) == 64 and info["device"] == "cpu"
    assert {"clinfuse", "torch", "monai", "shap", "mlflow", "python"} <= set(info["versions"])
    assert info["n_test"] == N_TEST


def test_splits_are_disjoint_and_cover_the_cohort(compare_run: CompareRun) -> None:
    splits = pd.read_csv(compare_run.run_dir / "splits.csv")
    assert len(splits) == N_PATIENTS and splits["patient"].is_unique
    assert splits["patient"].str.match(r"^P-[0-9a-f]{20}$").all()
    test = splits[splits["split"] == "test"]
    assert len(test) == N_TEST and (test["fold"] == -1).all()
    cv = splits[splits["split"] == "cv"]
    assert sorted(cv["fold"].unique()) == [0, 1]
    # Each CV patient validates in exactly one fold; the two validation sets are balanced.
    assert abs((cv["fold"] == 0).sum() - (cv["fold"] == 1).sum()) <= 1


def test_predictions_cover_each_test_patient_once_for_every_model(compare_run: CompareRun) -> None:
    splits = pd.read_csv(compare_run.run_dir / "splits.csv")
    everything = pd.read_csv(compare_run.run_dir / "predictions.csv")
    assert list(everything.columns) == ["model", "patient", "fold", "label", "prob", "prediction"]
    # Primary first, then the comparison's order, then the classical baselines.
    assert list(dict.fromkeys(everything["model"])) == MODELS + CLASSICAL
    metrics = json.loads((compare_run.run_dir / "metrics.json").read_text())
    test_patients = set(splits.loc[splits["split"] == "test", "patient"])
    # Every model, deep or classical, is judged on exactly the same test patients.
    for model in MODELS + CLASSICAL:
        predictions = everything[everything["model"] == model]
        assert predictions["patient"].is_unique and set(predictions["patient"]) == test_patients
        assert predictions["prob"].between(0, 1).all()
        assert set(predictions["label"].astype(str)) <= {"0", "1"}
        # Each model's decision uses its own validation threshold.
        expected = np.where(predictions["prob"] >= metrics[model]["threshold"], 1, 0)
        np.testing.assert_array_equal(predictions["prediction"].astype(int), expected)
    # The models differ: these are their own predictions, not copies of the primary's.
    probs = everything.pivot(index="patient", columns="model", values="prob")
    assert probs["gated"].round(6).ne(probs["clinical_only"].round(6)).any()


def test_metrics_and_comparison_are_consistent(compare_run: CompareRun) -> None:
    metrics = json.loads((compare_run.run_dir / "metrics.json").read_text())
    assert list(metrics) == MODELS + CLASSICAL
    comparison = pd.read_csv(compare_run.run_dir / "comparison.csv")
    assert list(comparison["model"]) == MODELS + CLASSICAL
    assert list(comparison["kind"]) == ["fusion", "fusion", "unimodal", "unimodal", "unimodal"] + ["classical"] * 2
    assert (comparison["metric"] == "auroc").all()
    for row in comparison.itertuples():
        m = metrics[row.model]
        assert len(m["folds"]) == 2
        assert 0.0 <= row.value <= 1.0
        assert row.value == pytest.approx(m["test"]["auroc"])
        lo, hi = m["test_ci"]["auroc"]
        assert (row.ci_low, row.ci_high) == pytest.approx((lo, hi))
        assert 0.0 <= lo <= row.value <= hi <= 1.0
        assert row.fold_mean == pytest.approx(np.mean([f["auroc"] for f in m["folds"]]))
        for name, value in m["test"].items():
            if name in ("auroc", "auprc", "accuracy", "balanced_accuracy", "brier", "ece") and value is not None:
                assert 0.0 <= value <= 1.0, (row.model, name)
    # The best unimodal (classical) model carries no p-value against itself; every other model one in [0, 1].
    for kind, candidates in (("unimodal", MODELS[2:]), ("classical", CLASSICAL)):
        best = comparison[f"best_{kind}"].iloc[0]
        assert best in candidates
        others = comparison[comparison["model"] != best]
        assert others[f"p_vs_best_{kind}"].between(0, 1).all()
        assert comparison.loc[comparison["model"] == best, f"p_vs_best_{kind}"].isna().all()
        gated = comparison.set_index("model").loc["gated"]
        assert gated[f"diff_vs_best_{kind}"] == pytest.approx(gated["value"] - metrics[best]["test"]["auroc"])


def test_history_has_every_epoch_of_every_fold(compare_run: CompareRun) -> None:
    history = pd.read_csv(compare_run.run_dir / "history.csv")
    # epoch 0 is each fold's linear base before training (fusion.linear_base), then the two epochs trained
    assert len(history) == len(MODELS) * 2 * 3
    for (model, fold), group in history.groupby(["model", "fold"]):
        assert list(group["epoch"]) == [0, 1, 2], (model, fold)
    trained = history[history["epoch"] > 0]
    assert np.isfinite(trained["train_loss"]).all() and (trained["train_loss"] > 0).all()
    assert history["val_auroc"].between(0, 1).all()


def test_contributions_are_efficient(compare_run: CompareRun) -> None:
    contributions = pd.read_csv(compare_run.run_dir / "contributions.csv")
    predictions = pd.read_csv(compare_run.run_dir / "predictions.csv").query("model == 'gated'").set_index("patient")
    assert len(contributions) == N_TEST and contributions["patient"].is_unique
    for m in MODALITIES:
        assert {f"phi_{m}", f"gate_{m}", f"present_{m}"} <= set(contributions.columns)
    phi = contributions[[f"phi_{m}" for m in MODALITIES]].sum(axis=1)
    np.testing.assert_allclose(phi, contributions["f_x"] - contributions["f_empty"], atol=1e-6)
    # f_x is the explained logit of the ensemble: it must reproduce the predicted probability.
    prob = predictions.loc[contributions["patient"], "prob"].to_numpy()
    np.testing.assert_allclose(contributions["prob"], prob, atol=1e-6)
    np.testing.assert_allclose(1 / (1 + np.exp(-contributions["f_x"])), prob, atol=1e-5)
    # f_empty is the same all-missing coalition for every patient.
    assert contributions["f_empty"].std() < 1e-6
    gates = contributions[[f"gate_{m}" for m in MODALITIES]]
    assert gates.stack().between(0, 1).all()


def test_classical_contributions_are_efficient(compare_run: CompareRun) -> None:
    classical = pd.read_csv(compare_run.run_dir / "classical_contributions.csv")
    predictions = pd.read_csv(compare_run.run_dir / "predictions.csv")
    assert list(dict.fromkeys(classical["model"])) == CLASSICAL
    for model, rows in classical.groupby("model"):
        assert len(rows) == N_TEST and rows["patient"].is_unique
        phi = rows[[f"phi_{m}" for m in MODALITIES]].sum(axis=1)
        np.testing.assert_allclose(phi, rows["f_x"] - rows["f_empty"], atol=1e-9)
        prob = predictions[predictions["model"] == model].set_index("patient").loc[rows["patient"], "prob"]
        np.testing.assert_allclose(1 / (1 + np.exp(-rows["f_x"])), prob, atol=1e-6)


def test_feature_attributions_and_summary(compare_run: CompareRun) -> None:
    clinical = pd.read_csv(compare_run.run_dir / "features_clinical.csv")
    assert list(clinical.columns) == ["patient", "feature", "value", "attribution", "base_value"]
    assert set(clinical["feature"]) <= {"age", "sex", "stage", "marker_a", "marker_b", "bmi"}
    assert "mrn" not in set(clinical["feature"]) and "diagnosis" not in set(clinical["feature"])
    assert np.isfinite(clinical["attribution"]).all()
    assert np.isfinite(clinical["base_value"]).all()
    assert (clinical.groupby("patient")["base_value"].nunique() == 1).all()  # one reference per patient
    genomic = pd.read_csv(compare_run.run_dir / "features_genomic.csv")
    assert genomic["feature"].str.match(r"^G\d{4}$").all()
    summary = json.loads((compare_run.run_dir / "modality_summary.json").read_text())
    assert summary  # cohort-level means, shares, per class
    text = json.dumps(summary)
    for m in MODALITIES:
        assert m in text
    assert (compare_run.run_dir / "report.html").stat().st_size > 10_000


def test_run_wall_time(compare_run: CompareRun, record_property: pytest.RecordProperty) -> None:
    # Recorded, not asserted tightly: the machine is shared, so wall time says little about the code.
    record_property("compare_run_seconds", round(compare_run.seconds, 1))
    assert compare_run.seconds < 900


def test_report_says_how_many_folds_kept_their_linear_base(compare_run: CompareRun) -> None:
    run_dir = compare_run.run_dir
    metrics = json.loads((run_dir / "metrics.json").read_text(encoding="utf-8"))
    primary = json.loads((run_dir / "run_info.json").read_text(encoding="utf-8"))["model_name"]
    epochs = [int(fold["best_epoch"]) for fold in metrics[primary]["folds"]]
    kept = sum(epoch == 0 for epoch in epochs)
    html = (run_dir / "report.html").read_text(encoding="utf-8")
    assert f"{kept} of {len(epochs)} folds kept the base alone" in html
    assert "The deep models start from a linear base" in html
    assert "The classical baselines use the deep models" in html  # how their penalty was chosen
    # every deep model's every fold starts with epoch 0: the base's validation metrics, before any step
    history = pd.read_csv(run_dir / "history.csv")
    start = history[history["epoch"] == 0]
    assert len(start) == history.groupby(["model", "fold"]).ngroups
    assert start["train_loss"].isna().all() and start["val_auroc"].notna().all()
