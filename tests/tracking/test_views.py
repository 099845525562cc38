"""Issue 16: the run table opens with the key metric columns, through an MLflow 3.17 saved view."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import pytest
from mlflow import MlflowClient

from clinfuse.tracking import store, views
from clinfuse.tracking.views import MAX_COLUMNS, VIEW_TAG, run_table_links, run_table_path, save_run_table_view


def _state(experiment_id: str) -> tuple[dict, dict]:
    envelope = json.loads(MlflowClient().get_experiment(experiment_id).tags[VIEW_TAG])
    return envelope, json.loads(envelope["state"])


def test_the_view_is_the_saved_view_envelope_the_ui_reads_with_the_metric_columns_first() -> None:
    experiment_id = mlflow.create_experiment("views-envelope")
    path = save_run_table_view(["test_auroc", "gated.test_auroc"], ["fusion.method"], experiment_id=experiment_id)
    assert path == f"#/experiments/{experiment_id}/runs?viewStateShareKey=clinfuse&workflowType=machine_learning"
    envelope, state = _state(experiment_id)
    # The UI's saved-view parser rejects an envelope without a string name, a numeric createdAt and a string state.
    assert envelope["name"] == "clinfuse: key metrics" and isinstance(envelope["createdAt"], int)
    columns = ["params.`fusion.method`", "metrics.`test_auroc`", "metrics.`gated.test_auroc`"]
    assert state["selectedColumns"] == [*columns, "attributes.`Models`"]
    assert state["columnOrder"][2:5] == columns and state["columnOrder"][:2] == [
        "attributes.`Run Name`",
        "runDateAndNestInfo",
    ]
    assert set(state["columnWidths"]) == set(columns)
    # Only keys the UI restores from a shared view (its per-user run selection keys would be dropped).
    assert set(state) == {"selectedColumns", "columnOrder", "columnWidths"}


def test_later_runs_add_columns_and_keep_the_views_creation_time_and_the_users_description() -> None:
    experiment_id = mlflow.create_experiment("views-merge")
    save_run_table_view(["test_auroc", "gated.test_auroc"], experiment_id=experiment_id)
    created = _state(experiment_id)[0]["createdAt"]
    note = MlflowClient().get_experiment(experiment_id).tags["mlflow.note.content"]
    assert f"]({run_table_path(experiment_id)})" in note
    MlflowClient().set_experiment_tag(experiment_id, "mlflow.note.content", "our study")
    save_run_table_view(["test_auroc", "attention.test_auroc"], experiment_id=experiment_id)
    envelope, state = _state(experiment_id)
    assert state["selectedColumns"][:3] == [
        "metrics.`test_auroc`",
        "metrics.`gated.test_auroc`",
        "metrics.`attention.test_auroc`",
    ]
    assert envelope["createdAt"] == created and envelope["updatedAt"] >= created
    assert MlflowClient().get_experiment(experiment_id).tags["mlflow.note.content"] == "our study"


def test_a_view_stays_under_the_ui_and_store_size_limits() -> None:
    experiment_id = mlflow.create_experiment("views-many")
    save_run_table_view(
        [f"model_number_{i:03d}_with_a_long_name.test_balanced_accuracy" for i in range(200)],
        experiment_id=experiment_id,
    )
    envelope, state = _state(experiment_id)
    assert len(state["selectedColumns"]) == MAX_COLUMNS + 1
    assert len(json.dumps(envelope)) < 20_000


def test_ui_prints_the_run_table_address_of_every_experiment_with_a_view(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tracking_uri: str
) -> None:
    experiment_id = mlflow.create_experiment("views-ui")
    save_run_table_view(["test_auroc"], experiment_id=experiment_id)
    started = []
    monkeypatch.setattr(store.subprocess, "Popen", lambda command, **kwargs: started.append(command))
    store.launch_ui(tracking_uri, port=5123, block=False)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"MLflow UI for {tracking_uri} at http://127.0.0.1:5123 (Ctrl-C to stop)"
    expected = f"  views-ui (run table with the key metrics): http://127.0.0.1:5123/{run_table_path(experiment_id)}"
    assert expected in lines[1:]
    assert "clinfuse-tests" not in "\n".join(lines[1:])  # no view, no link
    assert len(started) == 1


def test_no_links_from_a_store_that_cannot_be_read(tmp_path: Path) -> None:
    assert run_table_links("http://127.0.0.1:9", "http://127.0.0.1:5000") == {}
    (tmp_path / "mlflow.db").write_text("not a database")
    assert views.run_table_links(f"sqlite:///{tmp_path / 'mlflow.db'}", "http://127.0.0.1:5000") == {}
