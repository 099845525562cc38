"""Tracking URI precedence, experiment artifact location, missing runs, the UI command."""

from __future__ import annotations

import pytest
from mlflow import MlflowClient

from clinfuse.errors import RunError
from clinfuse.tracking import download_run_artifacts, get_run, resolve_tracking_uri, setup_tracking, store


def test_uri_precedence(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://tracking.example:5000")
    assert resolve_tracking_uri("sqlite:///x.db", tmp_path) == "sqlite:///x.db"
    assert resolve_tracking_uri(None, tmp_path) == "http://tracking.example:5000"
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    uri = resolve_tracking_uri(None, tmp_path)
    assert uri == f"sqlite:///{tmp_path.resolve().as_posix()}/mlflow.db"
    assert store.local_artifact_root(uri) == tmp_path.resolve() / "mlartifacts"
    assert store.local_artifact_root("http://host:5000") is None


def test_new_experiment_keeps_artifacts_beside_database(tracking_uri):
    experiment_id = setup_tracking(tracking_uri, "artifact location / check")
    location = MlflowClient().get_experiment(experiment_id).artifact_location
    expected = store.local_artifact_root(tracking_uri) / "artifact_location_check"
    assert location == expected.resolve().as_uri()
    assert setup_tracking(tracking_uri, "artifact location / check") == experiment_id
    setup_tracking(tracking_uri, "clinfuse-tests")


def test_missing_run_raises_run_error(tracking_uri, tmp_path):
    with pytest.raises(RunError, match=r"run id 0123456789abcdef not found in sqlite:///.*clinfuse ui"):
        get_run("0123456789abcdef")
    with pytest.raises(RunError, match="not found"):
        download_run_artifacts("0123456789abcdef", tmp_path)


def test_ui_command_serves_the_store(monkeypatch, tmp_path):
    uri = f"sqlite:///{tmp_path.as_posix()}/mlflow.db"
    started: list[list[str]] = []

    class _FakeProcess:
        def __init__(self, command: list[str], **options: object) -> None:
            started.append(command)
            # The UI gets its own process group so stopping it stops its workers too.
            assert options == {"start_new_session": True}

        def wait(self) -> int:
            return 0

    monkeypatch.setattr(store.subprocess, "Popen", _FakeProcess)
    store.launch_ui(uri, port=5123, block=False)
    command = started[0]
    assert command[1:4] == ["-m", "mlflow", "ui"]
    assert command[command.index("--backend-store-uri") + 1] == uri
    assert command[command.index("--host") + 1] == "127.0.0.1"
    assert command[command.index("--port") + 1] == "5123"
