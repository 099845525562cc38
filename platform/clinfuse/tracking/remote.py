"""A shared MLflow server: checked before use, failing in one line, and runs read back from it.

MLflow's HTTP client retries a failed request seven times with exponential backoff, so an unreachable or
vanished server stalls a command for minutes before a long traceback. Commands here probe the server first
(``/health``, then one authenticated call) and turn a connection lost mid-run into a :class:`RunError`.

Credentials come only from ``MLFLOW_TRACKING_USERNAME`` / ``MLFLOW_TRACKING_PASSWORD`` (MLflow reads them
itself); they never appear in a config, on a command line or in a message.
"""

from __future__ import annotations

import base64
import os
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

import mlflow
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from clinfuse.errors import RunError

# A refused connection fails at once; these bound a host that drops packets, and a server that is slow to
# check a password (basic-auth hashes it on every request).
PROBE_TIMEOUT_S = 10.0
LOGIN_TIMEOUT_S = 30.0

_LOST_MARKERS = ("Max retries exceeded", "Connection refused", "Connection aborted", "RemoteDisconnected")


def is_remote(tracking_uri: str) -> bool:
    """Whether ``tracking_uri`` names an MLflow server (``http(s)://``) rather than a local store."""
    return tracking_uri.startswith(("http://", "https://"))


def server_address(tracking_uri: str) -> str:
    """``host:port`` of a server URI, without any user name or password embedded in it."""
    parts = urlsplit(tracking_uri)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return f"{parts.hostname}:{port}"


def _auth_header() -> dict[str, str]:
    user, password = os.environ.get("MLFLOW_TRACKING_USERNAME"), os.environ.get("MLFLOW_TRACKING_PASSWORD")
    if not user or password is None:
        return {}
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def check_server(tracking_uri: str, timeout: float = PROBE_TIMEOUT_S, login_timeout: float = LOGIN_TIMEOUT_S) -> None:
    """Probe an MLflow server: reachable, and the credentials in the environment accepted.

    Does nothing for local stores.

    Raises:
        RunError: one line naming ``host:port`` and what to check.
    """
    if not is_remote(tracking_uri):
        return
    where = server_address(tracking_uri)
    base = tracking_uri.rstrip("/")
    try:
        urllib.request.urlopen(f"{base}/health", timeout=timeout).close()
    except urllib.error.HTTPError as exc:
        raise RunError(
            f"MLflow server {where} answered /health with HTTP {exc.code}; check that MLFLOW_TRACKING_URI "
            "points at an MLflow tracking server"
        ) from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise RunError(
            f"MLflow server {where} is not reachable ({reason}); check that `mlflow server` is running there, "
            "that MLFLOW_TRACKING_URI is right and that no firewall or VPN blocks the port"
        ) from None
    request = urllib.request.Request(f"{base}/api/2.0/mlflow/experiments/search?max_results=1", headers=_auth_header())
    try:
        urllib.request.urlopen(request, timeout=login_timeout).close()
    except urllib.error.HTTPError as exc:
        if exc.code == 401:
            given = "were rejected" if _auth_header() else "are missing"
            raise RunError(
                f"MLflow server {where} requires a login and the credentials {given}; set "
                "MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD in the environment"
            ) from None
        if exc.code == 403:
            raise RunError(
                f"MLflow server {where}: user {os.environ.get('MLFLOW_TRACKING_USERNAME')!r} may not read "
                "experiments; ask the server's admin for permission"
            ) from None
    except (urllib.error.URLError, OSError) as exc:
        raise RunError(f"MLflow server {where} stopped answering ({getattr(exc, 'reason', exc)})") from None


def is_connection_lost(exc: BaseException) -> bool:
    """Whether ``exc`` is MLflow failing to reach its server (not an error the server answered with)."""
    if isinstance(exc, ServerLostError):
        return True
    if not isinstance(exc, MlflowException | OSError):
        return False
    text = str(exc)
    return any(marker in text for marker in _LOST_MARKERS)


class ServerLostError(RunError):
    """The MLflow server went away during a run."""


def lost_server_error(tracking_uri: str, run_id: str) -> ServerLostError:
    """The one-line error of a run whose server went away: nothing local is lost, and how to continue."""
    return ServerLostError(
        f"lost the MLflow server {server_address(tracking_uri)} during run {run_id}; the local run folder and "
        f"its finished folds are kept: restart the server, then continue with `clinfuse run --resume {run_id}`"
    )


def run_location(run_id: str, tracking_uri: str) -> tuple[str, dict[str, str]] | None:
    """The experiment name and params of ``run_id`` in ``tracking_uri``, or ``None`` when it is not there.

    A local SQLite store that does not exist yet is not created by asking.
    """
    if tracking_uri.startswith("sqlite:///") and not Path(tracking_uri[len("sqlite:///") :]).is_file():
        return None
    check_server(tracking_uri)
    client = MlflowClient(tracking_uri)
    try:
        run = client.get_run(run_id)
    except MlflowException as exc:
        if is_connection_lost(exc):
            raise RunError(f"MLflow server {server_address(tracking_uri)} is not reachable") from None
        return None
    return client.get_experiment(run.info.experiment_id).name, dict(run.data.params)


def list_run_artifacts(run_id: str, tracking_uri: str) -> list[tuple[str, bool]]:
    """The top-level artifacts of a run as ``(path, is_dir)``."""
    return [(f.path, f.is_dir) for f in MlflowClient(tracking_uri).list_artifacts(run_id)]


def download_run_files(run_id: str, tracking_uri: str, paths: list[str], dst: Path) -> list[Path]:
    """Download the artifact files or folders ``paths`` of a run into ``dst`` (keeping their layout)."""
    dst.mkdir(parents=True, exist_ok=True)
    local = [
        mlflow.artifacts.download_artifacts(
            run_id=run_id, artifact_path=p, dst_path=str(dst), tracking_uri=tracking_uri
        )
        for p in paths
    ]
    return [Path(p) for p in local]
