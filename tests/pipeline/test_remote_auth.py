"""Issue 16: a team MLflow server with logins (``mlflow server --app-name basic-auth``).

Credentials come from MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD only; missing or wrong ones are a
one-line error that never repeats the password.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import mlflow
import pytest
from mlflow import MlflowClient
from remote_support import start_server, stop_group

from clinfuse.tracking import log_artifact, setup_tracking, tracked_run

pytestmark = pytest.mark.slow

ADMIN_PASSWORD = "Adm1n-Secret-QZX-4711"


@pytest.fixture(scope="module")
def auth_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    folder = tmp_path_factory.mktemp("auth_server")
    ini = folder / "basic_auth.ini"
    ini.write_text(
        "[mlflow]\ndefault_permission = READ\n"
        f"database_uri = sqlite:///{(folder / 'basic_auth.db').as_posix()}\nadmin_username = admin\n"
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
    )
    env = {
        "MLFLOW_AUTH_CONFIG_PATH": str(ini),
        "MLFLOW_AUTH_ADMIN_PASSWORD": ADMIN_PASSWORD,
        "MLFLOW_FLASK_SERVER_SECRET_KEY": "test-only-secret",
    }
    process, url = start_server(folder, "--app-name", "basic-auth", env=env)
    yield url
    stop_group(process)


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, auth_server: str) -> pytest.MonkeyPatch:
    monkeypatch.chdir(tmp_path)
    for key in [k for k in os.environ if k.startswith("MLFLOW_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", auth_server)
    return monkeypatch


@pytest.mark.parametrize(
    ("password", "expected"),
    [(None, "are missing"), ("wrong-password-QZX", "were rejected")],
)
def test_missing_or_wrong_credentials_are_one_line(
    env: pytest.MonkeyPatch, auth_server: str, cli, password: str | None, expected: str
) -> None:
    if password is not None:
        env.setenv("MLFLOW_TRACKING_USERNAME", "admin")
        env.setenv("MLFLOW_TRACKING_PASSWORD", password)
    port = auth_server.rsplit(":", 1)[1]
    code, out = cli(["report", "0123abcd"])
    assert code == 2
    assert out.strip().splitlines() == [
        f"error: MLflow server 127.0.0.1:{port} requires a login and the credentials {expected}; set "
        "MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD in the environment"
    ]
    assert "wrong-password" not in out


def test_right_credentials_track_a_run_with_artifacts(env: pytest.MonkeyPatch, auth_server: str, tmp_path, cli):
    env.setenv("MLFLOW_TRACKING_USERNAME", "admin")
    env.setenv("MLFLOW_TRACKING_PASSWORD", ADMIN_PASSWORD)
    experiment_id = setup_tracking(auth_server, "auth-team")
    (tmp_path / "note.txt").write_text("hello")
    with tracked_run(run_name="with-login", experiment_id=experiment_id) as run:
        mlflow.log_metric("test_auroc", 0.75)
        log_artifact(tmp_path / "note.txt")
    client = MlflowClient(auth_server)
    stored = client.get_run(run.info.run_id)
    assert (stored.info.status, stored.data.metrics["test_auroc"]) == ("FINISHED", 0.75)
    assert [f.path for f in client.list_artifacts(run.info.run_id)] == ["note.txt"]
    assert ADMIN_PASSWORD not in " ".join(f"{k}={v}" for k, v in stored.data.params.items() | stored.data.tags.items())
    # The server is reached and the user authenticated: an unknown run is the only problem left.
    code, out = cli(["report", "0123abcd"])
    assert code == 2 and "no such run in the tracking store" in out and ADMIN_PASSWORD not in out
