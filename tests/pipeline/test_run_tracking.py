"""Issue 5: the MLflow store holds the parent run, its model and fold child runs, metrics, inputs and the model."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import yaml
from pipeline_support import CompareRun, client_for, use_store

from clinfuse.cohort import load_cohort, make_splits
from clinfuse.privacy import pseudonymise
from clinfuse.training.inference import cohort_input_frame

pytestmark = pytest.mark.slow

MODELS = {"gated", "concat", "imaging_only", "clinical_only", "genomic_only"}
CLASSICAL = {"logistic_regression", "gradient_boosting"}
MODALITIES = ("imaging", "clinical", "genomic")


def _runs(compare_run: CompareRun) -> list:
    client = client_for(compare_run.project)
    experiment = client.get_experiment_by_name("tiny")
    return client.search_runs([experiment.experiment_id], max_results=1000)


def _children(runs: dict, parent: str) -> dict:
    return {r.info.run_name: r for r in runs.values() if r.data.tags.get("mlflow.parentRunId") == parent}


def test_parent_model_and_fold_runs(compare_run: CompareRun) -> None:
    runs = {r.info.run_id: r for r in _runs(compare_run)}
    parent = runs[compare_run.run_id]
    assert parent.info.status == "FINISHED" and "mlflow.parentRunId" not in parent.data.tags
    children = _children(runs, parent.info.run_id)
    assert set(children) == MODELS | CLASSICAL
    for name in CLASSICAL:
        # A classical baseline is one child run (its folds are fitted in seconds): test and fold metrics, and
        # its primary metric on the parent too, where the comparison is judged.
        assert children[name].data.tags["kind"] == "classical"
        assert {"test_auroc", "fold0_val_auroc", "fold1_val_auroc"} <= set(children[name].data.metrics)
        assert parent.data.metrics[f"{name}.test_auroc"] == children[name].data.metrics["test_auroc"]
        if name == "logistic_regression":  # the penalty each fold's inner CV chose, for a reviewer to see
            params = children[name].data.params
            assert {params["fold0_penalty"], params["fold1_penalty"]} <= {"l1", "l2"}
            assert float(params["fold0_C"]) > 0
        assert not _children(runs, children[name].info.run_id)
    for name, model_run in ((n, r) for n, r in children.items() if n in MODELS):
        assert model_run.info.status == "FINISHED"
        assert model_run.data.tags["model"] == name
        assert 0.0 <= model_run.data.metrics["test_auroc"] <= 1.0
        folds = _children(runs, model_run.info.run_id)
        assert set(folds) == {f"{name}/fold0", f"{name}/fold1"}
        assert all(f.info.status == "FINISHED" for f in folds.values())
    assert len(runs) == 1 + len(MODELS) * 3 + len(CLASSICAL)


def test_epoch_histories_match_history_csv(compare_run: CompareRun) -> None:
    client = client_for(compare_run.project)
    history = pd.read_csv(compare_run.run_dir / "history.csv")
    fold_runs = [r for r in _runs(compare_run) if "/fold" in (r.info.run_name or "")]
    assert len(fold_runs) == 10
    for run in fold_runs:
        model, fold = run.info.run_name.split("/fold")
        expected = history[(history["model"] == model) & (history["fold"] == int(fold))]
        # step 0: the fold's linear base before training, validated but not trained (no train_loss)
        for metric, steps in (("train_loss", [1, 2]), ("val_auroc", [0, 1, 2])):
            logged = sorted(client.get_metric_history(run.info.run_id, metric), key=lambda m: m.step)
            assert [m.step for m in logged] == steps
            np.testing.assert_allclose([m.value for m in logged], expected[metric].dropna(), rtol=1e-6)
        assert "fold_auroc" in run.data.metrics


def test_parent_params_tags_metrics(compare_run: CompareRun) -> None:
    run = client_for(compare_run.project).get_run(compare_run.run_id)
    params, tags, metrics = run.data.params, run.data.tags, run.data.metrics
    assert params["training.epochs"] == "2" and params["evaluation.folds"] == "2"
    assert params["fusion.method"] == "gated" and params["compare"] == '["gated", "concat"]'
    assert params["encoders.imaging.name"] == "resnet10" and params["seed"] == "0"
    info = json.loads((compare_run.run_dir / "run_info.json").read_text())
    assert tags["clinfuse.cohort_hash"] == info["cohort_hash"]
    assert tags["clinfuse.git_commit"] == info["git_commit"]
    assert tags["clinfuse.seed"] == "0" and tags["clinfuse.task"] == "binary"
    assert tags["torch.version"] == info["versions"]["torch"]
    assert tags["monai.version"] == info["versions"]["monai"]
    assert tags["clinfuse.version"] == info["versions"]["clinfuse"]
    gated = json.loads((compare_run.run_dir / "metrics.json").read_text())["gated"]
    assert metrics["test_auroc"] == pytest.approx(gated["test"]["auroc"])
    assert metrics["test_auroc_ci_low"] == pytest.approx(gated["test_ci"]["auroc"][0])
    assert metrics["test_auroc_ci_high"] == pytest.approx(gated["test_ci"]["auroc"][1])
    assert metrics["test_brier"] == pytest.approx(gated["test"]["brier"])
    comparison = pd.read_csv(compare_run.run_dir / "comparison.csv").set_index("model")
    assert metrics["p_vs_best_unimodal"] == pytest.approx(comparison.loc["gated", "p_vs_best_unimodal"])


def test_parent_metrics_are_the_headline_each_models_primary_metric_and_sage(compare_run: CompareRun) -> None:
    """One chart per parent metric on the run page: these 71 keys, not every model's every metric (~480)."""
    metrics = client_for(compare_run.project).get_run(compare_run.run_id).data.metrics
    every = json.loads((compare_run.run_dir / "metrics.json").read_text())
    models = MODELS | CLASSICAL
    per_model = [f"{m}.{k}" for m in models for k in ("test_auroc", "cv_auroc_mean", "cv_auroc_sd")]
    per_model += [f"{m}.test_auroc_ci_{end}" for m in models for end in ("low", "high")]
    headline = [f"test_{name}" for name in every["gated"]["test"]] + ["test_auroc_ci_low", "test_auroc_ci_high"]
    headline += ["cv_auroc_mean", "cv_auroc_sd", "p_vs_best_unimodal"]
    ends = ("", "_ci_low", "_ci_high")
    sage = [f"sage_{game}_{m}{end}" for game in ("loss", "auroc") for m in MODALITIES for end in ends]
    sage += [f"sage_flag_{m}" for m in MODALITIES]
    assert sorted(metrics) == sorted(headline + per_model + sage) and len(metrics) == 71
    for model in models:
        assert metrics[f"{model}.cv_auroc_mean"] == pytest.approx(every[model]["fold_mean"]["auroc"])
        assert metrics[f"{model}.test_auroc_ci_low"] == pytest.approx(every[model]["test_ci"]["auroc"][0])


def test_every_number_is_in_the_metrics_table_and_the_run_table_view_shows_the_headline(
    compare_run: CompareRun, tmp_path: Path
) -> None:
    client = client_for(compare_run.project)
    local = client.download_artifacts(compare_run.run_id, "metrics_table.json", str(tmp_path))
    table = json.loads(Path(local).read_text())
    frame = pd.DataFrame(table["data"], columns=table["columns"]).set_index(["model", "metric"])
    every = json.loads((compare_run.run_dir / "metrics.json").read_text())
    assert frame.loc[("concat", "brier"), "test"] == pytest.approx(every["concat"]["test"]["brier"])
    assert frame.loc[("concat", "brier"), "cv_sd"] == pytest.approx(every["concat"]["fold_sd"]["brier"])
    assert frame.loc[("gated", "ece"), "ci_high"] == pytest.approx(every["gated"]["test_ci"]["ece"][1])
    assert set(frame.index.get_level_values("model")) == MODELS | CLASSICAL
    experiment = client.get_experiment_by_name("tiny")
    state = json.loads(json.loads(experiment.tags["mlflow.sharedViewState.clinfuse"])["state"])
    assert state["selectedColumns"][:3] == [
        "params.`fusion.method`",
        "metrics.`test_auroc`",
        "metrics.`test_auroc_ci_low`",
    ]
    assert {f"metrics.`{m}.test_auroc`" for m in MODELS | CLASSICAL} <= set(state["selectedColumns"])
    assert "viewStateShareKey=clinfuse" in experiment.tags["mlflow.note.content"]


def test_dataset_inputs(compare_run: CompareRun) -> None:
    run = client_for(compare_run.project).get_run(compare_run.run_id)
    inputs = {d.dataset.name: d for d in run.inputs.dataset_inputs}
    assert set(inputs) == {"synthetic.clinical", "synthetic.genomic"}
    schema = json.loads(inputs["synthetic.clinical"].dataset.schema)
    columns = {c["name"] for c in schema["mlflow_colspec"]}
    assert {"age", "sex", "stage", "marker_a"} <= columns
    assert not columns & {"mrn", "patient_id", "diagnosis"}
    assert all(d.tags[0].key in ("mlflow.data.context", "modality", "cohort_hash") for d in inputs.values())


def test_artifacts_logged(compare_run: CompareRun, tmp_path) -> None:
    client = client_for(compare_run.project)
    names = {a.path for a in client.list_artifacts(compare_run.run_id)}
    assert {
        "config.yaml",
        "run_info.json",
        "splits.csv",
        "metrics.json",
        "comparison.csv",
        "metrics_table.json",
        "history.csv",
        "predictions.csv",
        "contributions.csv",
        "classical_contributions.csv",
        "modality_summary.json",
        "features_clinical.csv",
        "features_genomic.csv",
        "report.html",
        "overlays",
    } <= names
    local = client.download_artifacts(compare_run.run_id, "metrics.json", str(tmp_path))
    assert Path(local).read_text() == (compare_run.run_dir / "metrics.json").read_text()


def test_logged_model_reproduces_test_predictions(compare_run: CompareRun, monkeypatch: pytest.MonkeyPatch) -> None:
    use_store(compare_run.project, monkeypatch)
    models = mlflow.search_logged_models(
        experiment_ids=[client_for(compare_run.project).get_experiment_by_name("tiny").experiment_id],
        output_format="list",
    )
    assert len(models) == 1 and models[0].source_run_id == compare_run.run_id
    model = mlflow.pyfunc.load_model(models[0].model_uri)
    info = json.loads((compare_run.run_dir / "run_info.json").read_text())
    config = yaml.safe_load((compare_run.run_dir / "config.yaml").read_text())
    cohort = load_cohort(config["cohort"])
    splits = make_splits(cohort.y, 2, 0.25, config["seed"])
    salt = (compare_run.project / ".clinfuse" / "salt").read_bytes()
    pseudo = pseudonymise(cohort.patient_ids, salt)
    frame = cohort_input_frame(cohort, info["modalities"], splits.test)
    assert not {c for c in frame.columns if c.split(".", 1)[1] in ("mrn", "patient_id", "diagnosis")}
    output = model.predict(frame)
    predictions = pd.read_csv(compare_run.run_dir / "predictions.csv").query("model == 'gated'").set_index("patient")
    expected = predictions.loc[[pseudo[i] for i in splits.test], "prob"].to_numpy()
    np.testing.assert_allclose(np.asarray(output["prob"]), expected, atol=1e-5)
