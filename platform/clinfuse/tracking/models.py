"""Logged models by URI: resolving what a user names, fetching its files, and the model registry.

A user names a model as a run id, ``runs:/<run id>/model`` or ``models:/<name>@<alias>``; this module turns
that into files on disk without importing the model's code (``clinfuse predict`` rebuilds the network itself,
so the bundled copy of clinfuse never shadows the installed one).
"""

from __future__ import annotations

import re
from pathlib import Path

import mlflow
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from clinfuse.errors import RunError

MODEL_NAME = "model"
CANDIDATE_ALIAS = "candidate"
_RUN_ID = re.compile(r"^[0-9a-f]{32}$")


def model_uri_of(model: str) -> str:
    """The MLflow URI of a model named by a run id, ``runs:/...`` or ``models:/...``.

    Raises:
        RunError: the name is none of these.
    """
    text = model.strip()
    if text.startswith(("runs:/", "models:/")):
        return text
    if _RUN_ID.match(text):
        return f"runs:/{text}/{MODEL_NAME}"
    raise RunError(
        f"model {model!r}: expected a run id, runs:/<run id>/model or models:/<name>@<alias> "
        "(find run ids in the MLflow UI: clinfuse ui)"
    )


def model_run_id(uri: str) -> str:
    """The id of the run that logged the model at ``uri`` (a registered version knows its run)."""
    try:
        if uri.startswith("runs:/"):
            return uri[len("runs:/") :].split("/", 1)[0]
        name, _, alias = uri[len("models:/") :].partition("@")
        client = MlflowClient()
        if alias:
            version = client.get_model_version_by_alias(name, alias)
        else:
            name, _, number = name.partition("/")
            version = client.get_model_version(name, number)
        return str(version.run_id)
    except MlflowException as exc:
        raise RunError(f"model {uri}: not found in {mlflow.get_tracking_uri()} ({_first_line(exc)})") from None


def download_model(uri: str, dst: str | Path) -> Path:
    """Copy the files of the model at ``uri`` into ``dst``; returns the model folder (holding ``MLmodel``).

    Raises:
        RunError: no model at ``uri`` in the current tracking store.
    """
    Path(dst).mkdir(parents=True, exist_ok=True)
    try:
        local = Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=str(dst)))
    except (MlflowException, OSError) as exc:
        raise RunError(
            f"model {uri}: cannot be fetched from {mlflow.get_tracking_uri()} ({_first_line(exc)})"
        ) from None
    if not (local / "MLmodel").is_file():
        raise RunError(f"model {uri}: no MLmodel file there; was the run made with tracking.log_model: true?")
    return local


def register_model(model_uri: str, name: str, alias: str = CANDIDATE_ALIAS) -> int:
    """Register the model at ``model_uri`` as a new version of ``name`` and point ``alias`` at it.

    Returns:
        The new version number.
    """
    version = mlflow.register_model(model_uri, name)
    MlflowClient().set_registered_model_alias(name, alias, version.version)
    return int(version.version)


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
