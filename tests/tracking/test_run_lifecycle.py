"""Runs end FINISHED, FAILED or KILLED and are never left RUNNING; resuming reopens the same run."""

from __future__ import annotations

import os
import signal

import mlflow
import pytest
from mlflow import MlflowClient

from clinfuse.errors import RunError
from clinfuse.tracking import (
    install_sigterm_handler,
    resume_run,
    start_child_run,
    start_parent_run,
    tracked_run,
)


def _status(run_id: str) -> str:
    return MlflowClient().get_run(run_id).info.status


def test_exception_marks_failed(tracking_uri):
    with pytest.raises(ValueError, match="crafted"), start_parent_run("clinfuse-tests", "fails") as run:
        raise ValueError("crafted failure")
    assert _status(run.info.run_id) == "FAILED"
    assert mlflow.active_run() is None


def test_keyboard_interrupt_marks_parent_and_open_child_killed(tracking_uri):
    ids = {}
    with pytest.raises(KeyboardInterrupt), start_parent_run("clinfuse-tests", "interrupted") as parent:
        ids["parent"] = parent.info.run_id
        with start_child_run("fold_0") as child:
            ids["child"] = child.info.run_id
            raise KeyboardInterrupt
    assert _status(ids["parent"]) == "KILLED" and _status(ids["child"]) == "KILLED"


def test_child_left_open_is_closed_with_parent(tracking_uri):
    with start_parent_run("clinfuse-tests", "leaky") as parent:
        child = mlflow.start_run(run_name="never closed", nested=True)
    assert _status(child.info.run_id) == "FINISHED" and _status(parent.info.run_id) == "FINISHED"
    assert mlflow.active_run() is None


def test_sigterm_becomes_killed(tracking_uri):
    previous = install_sigterm_handler()
    try:
        with pytest.raises(KeyboardInterrupt), tracked_run(run_name="terminated") as run:
            os.kill(os.getpid(), signal.SIGTERM)
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert _status(run.info.run_id) == "KILLED"


def test_resume_reopens_the_same_run(tracking_uri):
    with tracked_run(run_name="first") as run:
        mlflow.log_metric("a", 1.0)
    with resume_run(run.info.run_id) as again:
        mlflow.log_metric("b", 2.0)
    assert again.info.run_id == run.info.run_id
    finished = MlflowClient().get_run(run.info.run_id)
    assert finished.data.metrics == {"a": 1.0, "b": 2.0} and finished.info.status == "FINISHED"
    with pytest.raises(RunError, match="not found"), resume_run("ffffffffffffffffffffffffffffffff"):
        pass
