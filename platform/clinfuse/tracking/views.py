"""The experiment's run table as a reviewer first sees it: a saved MLflow view with the key metric columns.

MLflow 3's run table shows no metric column until someone picks them in its "Columns" menu, and that choice
lives only in that browser. A *saved view* is the one way to preset it for everyone: MLflow 3.17 stores each
named view of an experiment in the experiment tag ``mlflow.sharedViewState.<key>`` (an envelope
``{name, createdAt, updatedAt, state}`` whose ``state`` is the JSON of the table's UI state), lists it under
"Views" and opens it from ``#/experiments/<id>/runs?viewStateShareKey=<key>``. clinfuse keeps one such view
per experiment, ``clinfuse``, and links it from the experiment's description.
"""

from __future__ import annotations

import json
import time
from typing import Any

import mlflow
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from sqlalchemy.exc import SQLAlchemyError

from clinfuse.errors import RunError
from clinfuse.tracking.remote import check_server

VIEW_KEY = "clinfuse"
VIEW_NAME = "clinfuse: key metrics"
VIEW_TAG = f"mlflow.sharedViewState.{VIEW_KEY}"
NOTE_TAG = "mlflow.note.content"
# The UI refuses to save views over 20000 characters and the store caps experiment tags at 20000; at ~150
# characters per column this many columns stay well inside both.
MAX_COLUMNS = 60
# Wide enough for a full-precision value; long names are cut in the header and shown whole on hover.
_COLUMN_WIDTH = 125
# Column ids of the table's fixed columns, so the chosen ones come right after the run name and date.
_LEADING = ["attributes.`Run Name`", "runDateAndNestInfo"]
_TRAILING = ["duration", "attributes.`Models`"]


def run_table_path(experiment_id: str) -> str:
    """The UI route (after the server address) of an experiment's run table in the clinfuse view.

    ``workflowType=machine_learning`` opens it in the UI's model-training mode (runs, models, registry in the
    side bar); a browser that never chose a mode starts in GenAI mode whatever the experiment's kind tag says.
    """
    return f"#/experiments/{experiment_id}/runs?viewStateShareKey={VIEW_KEY}&workflowType=machine_learning"


def _column(kind: str, key: str) -> str:
    # The UI's canonical column id: ``metrics.`name``` (backticks, since names contain dots).
    return f"{kind}.`{key}`"


def view_state(columns: list[str]) -> dict[str, Any]:
    """The run table's UI state showing ``columns`` (ids such as ``metrics.`gated.test_auroc```) first."""
    return {
        "selectedColumns": [*columns, "attributes.`Models`"],
        "columnOrder": [*_LEADING, *columns, *_TRAILING],
        "columnWidths": {c: _COLUMN_WIDTH for c in columns},
    }


def _saved_columns(value: str | None) -> tuple[list[str], int | None]:
    """Columns and creation time of a stored clinfuse view; nothing when absent or unreadable."""
    if not value:
        return [], None
    try:
        envelope = json.loads(value)
        state = json.loads(envelope["state"])
        columns = [c for c in state["selectedColumns"] if isinstance(c, str) and not c.startswith("attributes.")]
        return columns, int(envelope["createdAt"])
    except (ValueError, KeyError, TypeError):
        return [], None


def save_run_table_view(metrics: list[str], params: list[str] | None = None, experiment_id: str | None = None) -> str:
    """Add ``params`` and ``metrics`` columns to the experiment's ``clinfuse`` view of the run table.

    Columns already in the view stay (other runs of the experiment may have compared other models); new ones
    are appended, up to :data:`MAX_COLUMNS`. When the experiment has no description yet it gets one linking
    the view, so a reviewer who opens the experiment from the list finds it.

    Args:
        metrics: metric names, in the order the columns should appear.
        params: param names shown before the metrics (e.g. ``fusion.method``).
        experiment_id: the experiment; default the active run's.

    Returns:
        The view's UI route (see :func:`run_table_path`).
    """
    client = MlflowClient()
    if experiment_id is None:
        experiment_id = mlflow.active_run().info.experiment_id
    tags = client.get_experiment(experiment_id).tags
    columns, created = _saved_columns(tags.get(VIEW_TAG))
    wanted = [_column("params", p) for p in params or []] + [_column("metrics", m) for m in metrics]
    columns += [c for c in wanted if c not in columns]
    now = int(time.time() * 1000)
    envelope = {
        "name": VIEW_NAME,
        "createdAt": created or now,
        "updatedAt": now,
        "state": json.dumps(view_state(columns[:MAX_COLUMNS])),
    }
    client.set_experiment_tag(experiment_id, VIEW_TAG, json.dumps(envelope))
    path = run_table_path(experiment_id)
    if not tags.get(NOTE_TAG):
        note = f"Runs of clinfuse. [Run table with the key metrics]({path}) (also under *Views*: {VIEW_NAME})."
        client.set_experiment_tag(experiment_id, NOTE_TAG, note)
    return path


def run_table_links(tracking_uri: str, base_url: str) -> dict[str, str]:
    """Experiment name -> address of its run table in the clinfuse view, for every experiment that has one.

    Best effort: a store that cannot be read (not created yet, a server that is down) gives no links.

    Args:
        tracking_uri: the store the UI shows.
        base_url: the UI's address, e.g. ``http://127.0.0.1:5000``.
    """
    try:
        # A server that is down would otherwise hold the UI's start for MLflow's retries.
        check_server(tracking_uri)
        experiments = MlflowClient(tracking_uri).search_experiments(filter_string=f"tags.`{VIEW_TAG}` != ''")
    except (RunError, MlflowException, SQLAlchemyError, OSError):
        return {}
    return {e.name: f"{base_url.rstrip('/')}/{run_table_path(e.experiment_id)}" for e in experiments}
