"""Where runs are stored: the tracking URI, experiments, run look-up, artifact download and the MLflow UI.

By default a project keeps everything next to itself: ``mlflow.db`` (MLflow's embedded SQLite store) and
``mlartifacts/`` for the artifacts, so nothing needs a server and a whole project folder can be archived.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path
from types import FrameType

import mlflow
from mlflow import MlflowClient
from mlflow.entities import Run
from mlflow.exceptions import MlflowException
from sqlalchemy.exc import SQLAlchemyError

from clinfuse.errors import RunError
from clinfuse.tracking.remote import check_server, is_connection_lost, server_address
from clinfuse.tracking.views import run_table_links

DB_NAME = "mlflow.db"
ARTIFACT_DIR = "mlartifacts"
_SQLITE_PREFIX = "sqlite:///"
# MLflow 3's UI picks an experiment's view from this tag; without it a new experiment opens in the GenAI view
# (traces, prompts) instead of the model-training view with the run table and metrics.
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
EXPERIMENT_TAGS = {EXPERIMENT_KIND_TAG: "custom_model_development"}


def resolve_tracking_uri(config_uri: str | None, project_dir: str | Path) -> str:
    """The tracking URI to use: the config's value, else ``MLFLOW_TRACKING_URI``, else a local SQLite store.

    Args:
        config_uri: ``tracking.uri`` of the experiment config (``None`` when unset).
        project_dir: folder that holds ``mlflow.db`` and ``mlartifacts/`` when nothing else is configured.

    Returns:
        A URI such as ``sqlite:////abs/project/mlflow.db`` or ``http://host:5000``.
    """
    if config_uri:
        return config_uri
    env_uri = os.environ.get("MLFLOW_TRACKING_URI")
    if env_uri:
        return env_uri
    return f"{_SQLITE_PREFIX}{(Path(project_dir).resolve() / DB_NAME).as_posix()}"


def local_artifact_root(tracking_uri: str) -> Path | None:
    """``mlartifacts/`` beside a local SQLite database; ``None`` for other stores (they choose themselves)."""
    if not tracking_uri.startswith(_SQLITE_PREFIX):
        return None
    db_path = Path(tracking_uri[len(_SQLITE_PREFIX) :])
    return db_path.parent / ARTIFACT_DIR


def setup_tracking(tracking_uri: str, experiment: str) -> str:
    """Point MLflow at ``tracking_uri`` and make ``experiment`` the active experiment (created if needed).

    A new experiment on a local SQLite store keeps its artifacts in ``mlartifacts/<experiment>`` beside the
    database, never in the current working directory.

    Args:
        tracking_uri: from :func:`resolve_tracking_uri`.
        experiment: experiment name.

    Returns:
        The experiment id.

    Raises:
        RunError: the store cannot be opened or written, or the experiment is deleted.
    """
    check_server(tracking_uri)
    try:
        return _setup_tracking(tracking_uri, experiment)
    except (MlflowException, OSError, SQLAlchemyError) as exc:
        # A store that cannot be opened is the user's to fix (path, permissions, wrong file), not a crash.
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0].split(". ")[0][:160]
        if is_connection_lost(exc):
            where = server_address(tracking_uri)
            raise RunError(f"MLflow server {where} stopped answering; check that it is still running") from None
        raise RunError(
            f"MLflow store {tracking_uri} cannot be used ({reason}); point config key 'tracking.uri' (or "
            "MLFLOW_TRACKING_URI) at a writable sqlite:///PATH/mlflow.db or a running MLflow server"
        ) from None


def use_store(tracking_uri: str) -> None:
    """Point MLflow at ``tracking_uri`` for this process, leaving ``MLFLOW_TRACKING_URI`` as it was."""
    previous = os.environ.get("MLFLOW_TRACKING_URI")
    mlflow.set_tracking_uri(tracking_uri)
    # MLflow also exports the URI as MLFLOW_TRACKING_URI; left there, resolve_tracking_uri would send every
    # later run in this process (another project, a notebook) to this store, so the environment is restored.
    if previous is None:
        os.environ.pop("MLFLOW_TRACKING_URI", None)
    else:
        os.environ["MLFLOW_TRACKING_URI"] = previous


def _setup_tracking(tracking_uri: str, experiment: str) -> str:
    artifact_root = local_artifact_root(tracking_uri)
    if artifact_root is not None:
        artifact_root.parent.mkdir(parents=True, exist_ok=True)
    use_store(tracking_uri)
    client = MlflowClient(tracking_uri)
    found = client.get_experiment_by_name(experiment)
    if found is None:
        location = None
        if artifact_root is not None:
            location = (artifact_root / _slug(experiment)).resolve().as_uri()
        try:
            experiment_id = client.create_experiment(experiment, artifact_location=location, tags=EXPERIMENT_TAGS)
        except MlflowException:
            # Another process created it between our look-up and creation.
            found = client.get_experiment_by_name(experiment)
            if found is None:
                raise
            experiment_id = found.experiment_id
    else:
        if found.lifecycle_stage == "deleted":
            raise RunError(
                f"MLflow experiment {experiment!r} is deleted in {tracking_uri}; restore it in the MLflow UI "
                "or choose another `name:` in the config"
            )
        experiment_id = found.experiment_id
        if EXPERIMENT_KIND_TAG not in found.tags:
            # Experiments made before this tag existed would otherwise open in the GenAI view.
            client.set_experiment_tag(experiment_id, EXPERIMENT_KIND_TAG, EXPERIMENT_TAGS[EXPERIMENT_KIND_TAG])
    mlflow.set_experiment(experiment_id=experiment_id)
    return experiment_id


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("._") or "experiment"


def get_run(run_id: str) -> Run:
    """The MLflow run ``run_id`` in the current tracking store.

    Raises:
        RunError: the run does not exist there.
    """
    uri = mlflow.get_tracking_uri()
    try:
        return MlflowClient(uri).get_run(run_id)
    except MlflowException:
        raise RunError(f"run id {run_id} not found in {uri}; find run ids in the MLflow UI (clinfuse ui)") from None


def download_run_artifacts(run_id: str, dst: str | Path, artifact_path: str | None = None) -> Path:
    """Copy a run's artifacts (or one artifact folder/file of it) to ``dst`` and return the local path.

    Raises:
        RunError: the run does not exist in the current tracking store.
    """
    get_run(run_id)
    dst = Path(dst)
    dst.mkdir(parents=True, exist_ok=True)
    local = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=artifact_path, dst_path=str(dst))
    return Path(local)


def ui_command(tracking_uri: str, host: str = "127.0.0.1", port: int = 5000) -> list[str]:
    """The ``mlflow ui`` command line serving ``tracking_uri``."""
    command = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", tracking_uri]
    artifact_root = local_artifact_root(tracking_uri)
    if artifact_root is not None:
        # Runs of experiments created elsewhere still land beside the database rather than in the cwd.
        command += ["--default-artifact-root", artifact_root.resolve().as_uri()]
    return [*command, "--host", host, "--port", str(port)]


def is_loopback(host: str) -> bool:
    """Whether ``host`` binds only this machine (``127.x``, ``::1``, ``localhost``)."""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def stop_process_tree(process: subprocess.Popen[bytes], grace_s: float = 10.0) -> None:
    """Stop ``process`` and everything it started (its own process group): SIGTERM, then SIGKILL after ``grace_s``."""
    try:
        os.killpg(process.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=grace_s)
    # Workers (uvicorn, gunicorn) may outlive the server process that started them; the group goes too.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def launch_ui(
    tracking_uri: str, host: str = "127.0.0.1", port: int = 5000, block: bool = True
) -> subprocess.Popen[bytes]:
    """Start the MLflow UI on ``tracking_uri`` and print its address, and per experiment with a clinfuse view
    the address of its run table in that view (see :mod:`clinfuse.tracking.views`).

    The UI runs in its own process group; when blocking, Ctrl-C or SIGTERM stops the whole group (the server
    and its workers), so the port is free afterwards.

    Args:
        tracking_uri: the store to browse (see :func:`resolve_tracking_uri`).
        host: interface to bind; keep ``127.0.0.1`` so patient-level results stay on this machine.
        port: TCP port.
        block: wait until the UI exits; otherwise return at once (stop it with :func:`stop_process_tree`).

    Returns:
        The UI process.
    """
    # MLflow's run table starts without metric columns; these links open it with clinfuse's saved view. Looked
    # up before the UI starts, so nothing runs between its start and the handler that stops it.
    links = run_table_links(tracking_uri, f"http://{host}:{port}")
    process = subprocess.Popen(ui_command(tracking_uri, host, port), start_new_session=True)
    print(f"MLflow UI for {tracking_uri} at http://{host}:{port} (Ctrl-C to stop)", flush=True)
    for name, url in links.items():
        print(f"  {name} (run table with the key metrics): {url}", flush=True)
    if block:
        previous = None
        if threading.current_thread() is threading.main_thread():
            previous = signal.signal(signal.SIGTERM, _raise_interrupt)
        try:
            process.wait()
        except KeyboardInterrupt:
            pass
        finally:
            stop_process_tree(process)
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)
    return process


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"received signal {signum}")
