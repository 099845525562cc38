"""One SQLite MLflow store shared by the tracking tests (creating it runs MLflow's migrations: seconds)."""

from __future__ import annotations

from collections.abc import Iterator

import mlflow
import pytest

from clinfuse.tracking import setup_tracking


@pytest.fixture(scope="session")
def tracking_uri(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root = tmp_path_factory.mktemp("mlflow_store")
    uri = f"sqlite:///{root.as_posix()}/mlflow.db"
    previous = mlflow.get_tracking_uri()
    setup_tracking(uri, "clinfuse-tests")
    yield uri
    mlflow.set_tracking_uri(previous)


@pytest.fixture(autouse=True)
def _no_run_left_open(tracking_uri: str) -> Iterator[None]:
    mlflow.set_tracking_uri(tracking_uri)
    yield
    while mlflow.active_run() is not None:
        mlflow.end_run()
