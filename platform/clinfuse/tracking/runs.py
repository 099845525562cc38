"""Run lifecycle: parent and child runs that always end with a truthful status.

A run left ``RUNNING`` after a crash misleads whoever reads the store later, so every run opened here ends
``FINISHED`` on success, ``FAILED`` on an exception and ``KILLED`` on Ctrl-C or SIGTERM (see
:func:`install_sigterm_handler`). Child runs left open by an interrupted block are closed with their parent.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

import mlflow
from mlflow import ActiveRun, MlflowClient

from clinfuse.errors import RunError
from clinfuse.tracking.remote import ServerLostError, is_connection_lost, lost_server_error
from clinfuse.tracking.store import get_run, setup_tracking

PARENT_TAG = "mlflow.parentRunId"


def _sigterm_to_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"received signal {signum}")


def install_sigterm_handler() -> Any:
    """Turn SIGTERM into KeyboardInterrupt so a terminated job ends its runs ``KILLED``.

    Only the main thread may install signal handlers; elsewhere this does nothing.

    Returns:
        The previous handler (to restore with ``signal.signal``), or ``None`` when nothing was installed.
    """
    if threading.current_thread() is not threading.main_thread():
        return None
    return signal.signal(signal.SIGTERM, _sigterm_to_interrupt)


def _ancestors(run_id: str, client: MlflowClient) -> set[str]:
    ancestors: set[str] = set()
    parent = client.get_run(run_id).data.tags.get(PARENT_TAG)
    while parent and parent not in ancestors:
        ancestors.add(parent)
        parent = client.get_run(parent).data.tags.get(PARENT_TAG)
    return ancestors


def _end(run_id: str, status: str) -> None:
    """End ``run_id`` with ``status``, first closing any of its descendants still active above it."""
    active = mlflow.active_run()
    if active is not None and active.info.run_id != run_id:
        client = MlflowClient()
        while active is not None and run_id in _ancestors(active.info.run_id, client):
            mlflow.end_run(status=status)
            active = mlflow.active_run()
    if active is not None and active.info.run_id == run_id:
        mlflow.end_run(status=status)
    elif MlflowClient().get_run(run_id).info.status == "RUNNING":
        MlflowClient().set_terminated(run_id, status=status)


@contextmanager
def tracked_run(
    run_name: str | None = None,
    tags: dict[str, str] | None = None,
    nested: bool = False,
    run_id: str | None = None,
    experiment_id: str | None = None,
    description: str | None = None,
    system_metrics: bool = False,
) -> Iterator[ActiveRun]:
    """Open an MLflow run for the ``with`` block and end it ``FINISHED``, ``FAILED`` or ``KILLED``.

    Args:
        run_name: display name of a new run.
        tags: tags set at creation.
        nested: open as a child of the active run.
        run_id: reopen this existing run instead of creating one.
        experiment_id: experiment of a new run (default: the active experiment).
        description: run description shown in the UI.
        system_metrics: sample CPU, memory (and GPU) use into the run (``tracking.system_metrics``; needs psutil).

    Raises:
        RunError: ``run_id`` is not in the current tracking store, or system metrics need psutil.

    Yields:
        The active run; its id is ``run.info.run_id``.
    """
    if run_id is not None:
        # An unknown id must be a one-line RunError, not MLflow's exception from start_run.
        get_run(run_id)
    if system_metrics:
        try:
            import psutil  # noqa: F401
        except ImportError:
            raise RunError("config key 'tracking.system_metrics' needs psutil: pip install psutil") from None
    run = mlflow.start_run(
        run_id=run_id,
        experiment_id=experiment_id,
        run_name=run_name,
        nested=nested,
        tags=tags,
        description=description,
        log_system_metrics=system_metrics or None,
    )
    status = "FINISHED"
    lost = False
    try:
        yield run
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    except BaseException as exc:
        status = "FAILED"
        if not is_connection_lost(exc):
            raise
        lost = True
        if nested or isinstance(exc, ServerLostError):
            raise  # the top-level run names itself in the message: it is the one to resume
        raise lost_server_error(mlflow.get_tracking_uri(), run.info.run_id) from None
    finally:
        if lost:
            _forget(run.info.run_id)
        else:
            _end(run.info.run_id, status)


def _forget(run_id: str) -> None:
    """Drop ``run_id`` (and runs nested in it) from this process's active runs without asking the server.

    The server is gone, so the run stays ``RUNNING`` there until ``--resume`` continues it.
    """
    while (active := mlflow.active_run()) is not None:
        try:
            mlflow.end_run()
        except Exception as exc:  # MLflow pops the run before telling the server, which is gone
            if not is_connection_lost(exc):
                raise
        if active.info.run_id == run_id:
            break


@contextmanager
def start_parent_run(
    experiment: str,
    run_name: str | None = None,
    tags: dict[str, str] | None = None,
    tracking_uri: str | None = None,
) -> Iterator[ActiveRun]:
    """Open the top-level run of ``clinfuse run`` in ``experiment`` (created if needed).

    Args:
        experiment: experiment name.
        run_name: display name of the run.
        tags: tags set at creation.
        tracking_uri: store to use (default: the one already set, see ``setup_tracking``).
    """
    experiment_id = setup_tracking(tracking_uri or mlflow.get_tracking_uri(), experiment)
    with tracked_run(run_name=run_name, tags=tags, experiment_id=experiment_id) as run:
        yield run


@contextmanager
def start_child_run(name: str, tags: dict[str, str] | None = None) -> Iterator[ActiveRun]:
    """Open a run nested in the active run (one per model and fold, say)."""
    with tracked_run(run_name=name, tags=tags, nested=True) as run:
        yield run


@contextmanager
def resume_run(run_id: str) -> Iterator[ActiveRun]:
    """Reopen an existing run (e.g. to add explanations to a finished run).

    Raises:
        RunError: the run does not exist in the current tracking store.
    """
    get_run(run_id)
    with tracked_run(run_id=run_id) as run:
        yield run
