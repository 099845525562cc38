"""A fake clinfuse run (parent + two fold children) lands in the store as the rest of clinfuse expects."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient

from clinfuse.errors import RunError
from clinfuse.tracking import (
    download_run_artifacts,
    log_artifact,
    log_artifacts_dir,
    log_cohort_datasets,
    log_final_metrics,
    log_metrics_step,
    log_params_flat,
    log_tags,
    sanitize_name,
    start_child_run,
    start_parent_run,
)

RAW_IDS = {"MRN-000123", "MRN-000456", "MRN-000789"}
CONFIG = {
    "name": "demo",
    "training": {"epochs": 3, "lr": 0.001, "image_size": [32, 32, 32]},
    "encoders": {"genomic": {"hidden": [64, 32], "gene_groups": None}},
    "compare": ["concat", "late"],
    "modalities": [],
    "notes": "x" * 7000,
}


def _feature_frames() -> dict[str, pd.DataFrame]:
    index = pd.Index(["p-1a2b", "p-3c4d", "p-5e6f"], name="patient")
    clinical = pd.DataFrame({"age": [54.0, 61.0, np.nan], "sex": ["F", "M", "F"]}, index=index)
    genomic = pd.DataFrame({"TP53": [0.1, 2.3, 1.1], "BRCA1": [5.0, 0.2, 0.9]}, index=index)
    return {"clinical": clinical, "genomic": genomic}


@pytest.fixture(scope="module")
def fake_run(tracking_uri: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    out = tmp_path_factory.mktemp("run_outputs")
    (out / "metrics.json").write_text(json.dumps({"gated": {"test": {"auroc": 0.8}}}))
    (out / "overlays").mkdir()
    (out / "overlays" / "p-1a2b.png").write_bytes(b"\x89PNG fake")
    children = []
    with start_parent_run("clinfuse-tests", "fake run", tags={"clinfuse.kind": "comparison"}) as parent:
        params = log_params_flat(CONFIG)
        tags = log_tags("demo-cohort", "a" * 64, seed=7, device="cpu", extra={"task": "binary"})
        sources = {"clinical": "/data/demo/clinical.csv", "genomic": "/data/demo/genomic.csv"}
        log_cohort_datasets(_feature_frames(), "demo-cohort", sources, "b" * 64, identifier_values=RAW_IDS)
        for fold in range(2):
            with start_child_run(f"gated/fold_{fold}", tags={"fold": str(fold)}) as child:
                children.append(child.info.run_id)
                for epoch in range(3):
                    log_metrics_step({"train_loss": 1.0 / (epoch + 1), "val auroc@0.5": 0.6 + 0.1 * epoch}, epoch)
        log_final_metrics("test", {"auroc": 0.81, "ece": float("nan"), "auroc_ci": (0.7, 0.9), "model": "gated"})
        log_artifacts_dir(out)
        log_artifact(out / "metrics.json", "copies")
    return {"parent": parent.info.run_id, "children": children, "params": params, "tags": tags}


def test_children_found_through_parent_tag(fake_run):
    client = MlflowClient()
    parent = client.get_run(fake_run["parent"])
    found = client.search_runs(
        [parent.info.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{fake_run['parent']}'"
    )
    assert sorted(r.info.run_id for r in found) == sorted(fake_run["children"])
    assert {r.info.run_name for r in found} == {"gated/fold_0", "gated/fold_1"}
    assert all(r.info.status == "FINISHED" for r in [parent, *found])


def test_metric_history_per_epoch(fake_run):
    client = MlflowClient()
    history = client.get_metric_history(fake_run["children"][1], "val auroc_0.5")
    assert [m.step for m in history] == [0, 1, 2]
    assert [m.value for m in history] == pytest.approx([0.6, 0.7, 0.8])
    metrics = client.get_run(fake_run["parent"]).data.metrics
    assert metrics["test_auroc"] == pytest.approx(0.81)
    assert np.isnan(metrics["test_ece"])
    assert metrics["test_auroc_ci_ci_low"] == pytest.approx(0.7)
    assert "test_model" not in metrics


def test_params_flattened_and_truncated(fake_run):
    params = MlflowClient().get_run(fake_run["parent"]).data.params
    assert params["training.epochs"] == "3"
    assert params["training.image_size"] == "[32, 32, 32]"
    assert params["encoders.genomic.hidden"] == "[64, 32]"
    assert params["encoders.genomic.gene_groups"] == "None"
    assert params["compare"] == '["concat", "late"]'
    assert len(params["notes"]) == 6000 and params["notes"].endswith("...")


def test_tags_for_reproduction(fake_run):
    tags = MlflowClient().get_run(fake_run["parent"]).data.tags
    assert tags["clinfuse.cohort"] == "demo-cohort"
    assert tags["clinfuse.cohort_hash"] == "a" * 64
    assert tags["clinfuse.seed"] == "7" and tags["clinfuse.device"] == "cpu" and tags["task"] == "binary"
    assert tags["clinfuse.git_commit"] == "unknown" or len(tags["clinfuse.git_commit"]) == 40
    assert tags["torch.version"].startswith("2.")


def test_dataset_inputs_without_identifiers(fake_run):
    inputs = MlflowClient().get_run(fake_run["parent"]).inputs.dataset_inputs
    by_name = {d.dataset.name: d for d in inputs}
    assert set(by_name) == {"demo-cohort.clinical", "demo-cohort.genomic"}
    clinical = by_name["demo-cohort.clinical"]
    assert {t.key: t.value for t in clinical.tags}["mlflow.data.context"] == "training"
    assert json.loads(clinical.dataset.profile)["num_rows"] == 3
    schema_columns = [c["name"] for c in json.loads(clinical.dataset.schema)["mlflow_colspec"]]
    assert schema_columns == ["age", "sex"]
    stored = json.dumps([[d.dataset.name, d.dataset.source, d.dataset.schema, d.dataset.profile] for d in inputs])
    assert not any(raw in stored for raw in RAW_IDS)


def test_identifier_in_frame_is_refused(tracking_uri):
    frames = _feature_frames()
    frames["clinical"]["mrn"] = sorted(RAW_IDS)
    leaky_index = frames["genomic"].set_axis(sorted(RAW_IDS))
    with start_parent_run("clinfuse-tests", "leak"):
        with pytest.raises(RunError) as error:
            log_cohort_datasets({"clinical": frames["clinical"], "genomic": leaky_index}, "c", {}, "d" * 64, RAW_IDS)
        assert not mlflow.get_run(mlflow.active_run().info.run_id).inputs.dataset_inputs
    fix = "holds raw identifiers; pass pseudonymous ids and feature columns only"
    assert error.value.problems == [
        f"dataset 'clinical': column 'mrn' {fix}",
        f"dataset 'genomic': the index {fix}",
    ]
    assert not any(raw in str(error.value) for raw in RAW_IDS)


@pytest.mark.filterwarnings("ignore:Hint. Inferred schema contains integer")
def test_numeric_feature_equal_to_numeric_id_is_not_a_leak(tracking_uri):
    frame = pd.DataFrame({"age": [54, 61]}, index=pd.Index(["p-1", "p-2"], name="patient"))
    with start_parent_run("clinfuse-tests", "numeric ids"):
        logged = log_cohort_datasets({"clinical": frame}, "c", {}, "e" * 64, identifier_values={"54", "7"})
    assert [d.name for d in logged] == ["c.clinical"]


def test_artifacts_round_trip(fake_run, tmp_path):
    names = {a.path for a in MlflowClient().list_artifacts(fake_run["parent"])}
    assert names == {"metrics.json", "overlays", "copies"}
    local = download_run_artifacts(fake_run["parent"], tmp_path)
    assert json.loads((local / "metrics.json").read_text())["gated"]["test"]["auroc"] == 0.8
    assert (Path(local) / "overlays" / "p-1a2b.png").read_bytes() == b"\x89PNG fake"
    assert (Path(local) / "copies" / "metrics.json").is_file()
    with pytest.raises(RunError, match="artifact file not found"):
        log_artifact(tmp_path / "missing.json")


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("val auroc@0.5", "val auroc_0.5"),
        ("test/auroc", "test/auroc"),
        ("/a//b/", "a/b"),
        ("../x", "x"),
        ("phi[clinical]:mean", "phi_clinical__mean"),
        ("", "_"),
    ],
)
def test_sanitize_name(raw, clean):
    assert sanitize_name(raw) == clean
