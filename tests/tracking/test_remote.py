"""Issue 16: probing an MLflow server and recognising a lost one, without a server."""

from __future__ import annotations

import socket
import time

import pytest
from mlflow.exceptions import MlflowException

from clinfuse.errors import RunError
from clinfuse.tracking.remote import check_server, is_connection_lost, lost_server_error, server_address


def _unused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_server_address_never_shows_credentials_in_the_uri() -> None:
    assert server_address("http://alice:s3cret@mlflow.lab:5000/") == "mlflow.lab:5000"
    assert server_address("https://mlflow.lab") == "mlflow.lab:443"
    assert server_address("http://mlflow.lab") == "mlflow.lab:80"


def test_local_stores_are_not_probed() -> None:
    check_server("sqlite:////nonexistent/mlflow.db")
    check_server("file:///nonexistent")


def test_unreachable_server_fails_fast_in_one_line_without_credentials() -> None:
    port = _unused_port()
    start = time.monotonic()
    with pytest.raises(RunError) as info:
        check_server(f"http://bob:pw-QZX@127.0.0.1:{port}")
    assert time.monotonic() - start < 5
    (line,) = info.value.problems
    assert line.startswith(f"MLflow server 127.0.0.1:{port} is not reachable (")
    assert "pw-QZX" not in line and "\n" not in line


def test_connection_failures_are_told_apart_from_server_answers() -> None:
    lost = MlflowException(
        "API request to http://127.0.0.1:1/api/2.0/mlflow/runs/log-batch failed with exception "
        "HTTPConnectionPool(host='127.0.0.1', port=1): Max retries exceeded with url: ..."
    )
    assert is_connection_lost(lost)
    assert is_connection_lost(lost_server_error("http://127.0.0.1:1", "abc"))
    assert not is_connection_lost(MlflowException("RESOURCE_DOES_NOT_EXIST: Run 'abc' not found"))
    assert not is_connection_lost(ValueError("Max retries exceeded"))
