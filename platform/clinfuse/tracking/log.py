"""What goes into a run: params, tags, metrics, datasets and artifact folders.

MLflow restricts names (alphanumerics, ``_ - . space /``) and parameter values (6000 characters); these
helpers clean names and values so a long gene list or an odd metric name never aborts a finished training.
"""

from __future__ import annotations

import json
import numbers
import re
import subprocess
import warnings
from collections.abc import Iterable, Mapping
from hashlib import sha256
from importlib import metadata
from pathlib import Path
from typing import Any

import mlflow
import mlflow.data
import pandas as pd
from mlflow import MlflowClient
from mlflow.data.pandas_dataset import PandasDataset
from mlflow.types import ColSpec, Schema
from mlflow.types.utils import _infer_pandas_column

import clinfuse
from clinfuse.config import flatten
from clinfuse.errors import RunError

MAX_PARAM_LENGTH = 6000
MAX_NAME_LENGTH = 250
_BATCH = 100
_BAD_NAME_CHARS = re.compile(r"[^A-Za-z0-9_\-. /]")


def sanitize_name(name: str) -> str:
    """A valid MLflow metric/param name: other characters become ``_`` and path-like oddities are removed.

    Example: ``"val auc@0.5 (test)"`` becomes ``"val auc_0.5 _test_"``.
    """
    clean = _BAD_NAME_CHARS.sub("_", str(name))
    # MLflow rejects names that normalise to another path ("a//b", "/a", "a/", "./a", "a/../b").
    parts = [p for p in clean.split("/") if p not in ("", ".", "..")]
    clean = "/".join(parts) or "_"
    return clean[:MAX_NAME_LENGTH]


def _param_value(value: Any) -> str:
    text = json.dumps(value, default=str) if isinstance(value, list | tuple | dict) else str(value)
    return text if len(text) <= MAX_PARAM_LENGTH else text[: MAX_PARAM_LENGTH - 3] + "..."


def log_params_flat(config: Mapping[str, Any]) -> dict[str, str]:
    """Log a whole (resolved) config as params with ``a.b.c`` keys.

    Lists and empty mappings are written as JSON, other values with ``str``; values longer than MLflow's
    6000-character limit are truncated (ending in ``...``).

    Args:
        config: nested mapping, e.g. ``config_to_dict(experiment_config)``.

    Returns:
        The params as logged.
    """
    params = {sanitize_name(k): _param_value(v) for k, v in flatten(dict(config)).items()}
    items = list(params.items())
    for start in range(0, len(items), _BATCH):
        mlflow.log_params(dict(items[start : start + _BATCH]))
    return params


def git_commit(path: str | Path | None = None) -> str:
    """The git commit of the checkout holding ``path`` (default: the clinfuse package), or ``unknown``."""
    folder = Path(path) if path is not None else Path(clinfuse.__file__).resolve().parent
    try:
        result = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=folder, capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    commit = result.stdout.strip()
    return commit if result.returncode == 0 and commit else "unknown"


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def log_tags(
    cohort_name: str,
    cohort_hash: str,
    seed: int,
    device: str,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, str]:
    """Tag the active run with what is needed to reproduce it.

    Args:
        cohort_name: cohort name from cohort.yaml.
        cohort_hash: the cohort's content hash.
        seed: the experiment seed.
        device: the device trained on (``cpu``, ``cuda:0``).
        extra: further tags (e.g. ``task``).

    Returns:
        The tags as logged: ``clinfuse.cohort``, ``clinfuse.cohort_hash``, ``clinfuse.git_commit`` (also as
        ``mlflow.source.git.commit`` when known), ``clinfuse.version``, ``torch.version``, ``monai.version``,
        ``clinfuse.device``, ``clinfuse.seed`` and ``extra``.
    """
    commit = git_commit()
    tags = {
        "clinfuse.cohort": cohort_name,
        "clinfuse.cohort_hash": cohort_hash,
        "clinfuse.git_commit": commit,
        "clinfuse.version": clinfuse.__version__,
        "torch.version": _version("torch"),
        "monai.version": _version("monai"),
        "clinfuse.device": device,
        "clinfuse.seed": str(seed),
    }
    if commit != "unknown":
        tags["mlflow.source.git.commit"] = commit
    tags.update({str(k): str(v) for k, v in (extra or {}).items()})
    mlflow.set_tags(tags)
    return tags


def _numeric(metrics: Mapping[str, Any]) -> Iterable[tuple[str, float]]:
    for name, value in metrics.items():
        if isinstance(value, numbers.Real) and not isinstance(value, bool):
            yield name, float(value)
        elif isinstance(value, list | tuple) and len(value) == 2:
            # A (low, high) confidence interval.
            for suffix, bound in zip(("ci_low", "ci_high"), value, strict=True):
                if isinstance(bound, numbers.Real) and not isinstance(bound, bool):
                    yield f"{name}_{suffix}", float(bound)


def log_metrics_step(metrics: Mapping[str, Any], step: int) -> dict[str, float]:
    """Log per-epoch metrics at ``step``; names are sanitised and non-numeric values skipped.

    Returns:
        The metrics as logged (NaN is kept: MLflow stores it, and an undefined metric is information).
    """
    clean = {sanitize_name(k): v for k, v in _numeric(metrics)}
    if clean:
        mlflow.log_metrics(clean, step=step)
    return clean


def log_final_metrics(prefix: str, metrics: Mapping[str, Any]) -> dict[str, float]:
    """Log summary metrics as ``<prefix>_<name>`` (e.g. ``test_auroc``); ``(lo, hi)`` pairs become
    ``<prefix>_<name>_ci_low`` / ``_ci_high``.

    Returns:
        The metrics as logged.
    """
    named = {(f"{prefix}_{k}" if prefix else k): v for k, v in metrics.items()}
    return log_metrics_step(named, step=0)


def _leaks(df: pd.DataFrame, identifiers: set[str]) -> list[str]:
    """Where (column names, index, text columns) a frame holds one of ``identifiers``; never the values.

    Numeric columns are not scanned: a numeric id equal to, say, a cholesterol value would be a false alarm.
    """
    found = [f"column name {c!r}" for c in df.columns if str(c) in identifiers]
    if df.index.astype(str).isin(identifiers).any():
        found.append("the index")
    text_columns = [c for c in df.columns if not pd.api.types.is_numeric_dtype(df[c])]
    found += [f"column {c!r}" for c in text_columns if df[c].dropna().astype(str).isin(identifiers).any()]
    return found


def log_cohort_datasets(
    tables: Mapping[str, pd.DataFrame],
    cohort_name: str,
    source_paths: Mapping[str, str | Path],
    digest: str,
    identifier_values: set[str] | None = None,
    context: str = "training",
    targets: str | None = None,
) -> list[PandasDataset]:
    """Record each modality table as an MLflow dataset input of the active run.

    MLflow stores the dataset's name, digest, source, schema (column names and types) and size, not the
    values. The frames must hold feature columns with pseudonymous ids only; ``identifier_values`` (raw ids
    and identifier-column values) are checked and a match aborts before anything is logged.

    Args:
        tables: modality name -> feature frame (index: pseudonymous ids).
        cohort_name: cohort name; datasets are named ``<cohort>.<modality>``.
        source_paths: modality -> file or folder the table came from (default: the cohort name).
        digest: the cohort content hash; each dataset's digest derives from it and the modality.
        identifier_values: values that must not appear in any frame (``Cohort.identifier_values``).
        context: MLflow input context.
        targets: name of a label column in the frames, if they carry one.

    Returns:
        The logged datasets.

    Raises:
        RunError: a frame contains an identifier value.
    """
    identifiers = {str(v) for v in identifier_values or ()}
    problems = [
        f"dataset {name!r}: {where} holds raw identifiers; pass pseudonymous ids and feature columns only"
        for name, df in tables.items()
        for where in (_leaks(df, identifiers) if identifiers else [])
    ]
    if problems:
        raise RunError.from_list(problems)
    datasets = []
    for name, df in tables.items():
        with warnings.catch_warnings():
            # MLflow registers the local-file source twice (schemes "" and "file") and warns about it.
            warnings.filterwarnings("ignore", message="The specified dataset source can be interpreted")
            dataset = mlflow.data.from_pandas(
                df,
                source=str(source_paths.get(name, cohort_name)),
                name=f"{cohort_name}.{name}",
                digest=sha256(f"{digest}:{name}".encode()).hexdigest()[:16],
                targets=targets,
            )
            # PandasDataset.schema is a cached property that tests every cell for missing values in Python
            # (over 5 min for 10^5 patients x 2,000 genes); the same schema, computed column-wise, fills the cache.
            dataset.__dict__["schema"] = _schema(df)
        mlflow.log_input(dataset, context=context, tags={"modality": name, "cohort_hash": digest[:16]})
        datasets.append(dataset)
    return datasets


def _schema(frame: pd.DataFrame) -> Schema:
    """MLflow's inferred schema of ``frame`` (its own column-type inference), with ``required`` found per column."""
    missing = frame.isna().any()
    return Schema(
        [ColSpec(type=_infer_pandas_column(frame[c]), name=c, required=not bool(missing[c])) for c in frame.columns]
    )


def log_artifacts_dir(path: str | Path, artifact_path: str | None = None) -> None:
    """Upload every file under ``path`` to the active run (under ``artifact_path`` when given)."""
    path = Path(path)
    if not path.is_dir():
        raise RunError(f"{path}: artifact folder not found; write the run outputs before logging them")
    mlflow.log_artifacts(str(path), artifact_path=artifact_path)


def log_artifact(path: str | Path, artifact_path: str | None = None, run_id: str | None = None) -> None:
    """Upload one file to the active run, or to ``run_id`` when given (under ``artifact_path`` when given)."""
    path = Path(path)
    if not path.is_file():
        raise RunError(f"{path}: artifact file not found; write the run outputs before logging them")
    if run_id is None:
        mlflow.log_artifact(str(path), artifact_path=artifact_path)
    else:
        MlflowClient().log_artifact(run_id, str(path), artifact_path=artifact_path)


def log_table(frame: pd.DataFrame, artifact_file: str) -> None:
    """Log ``frame`` as an MLflow table (``artifact_file`` ends in ``.json``), shown as a grid in the UI."""
    mlflow.log_table(frame.reset_index(drop=True), artifact_file=artifact_file)


def log_figure(figure: Any, artifact_file: str) -> None:
    """Log a matplotlib figure as an image (``artifact_file`` ends in ``.png``) and close it."""
    import matplotlib.pyplot as plt

    mlflow.log_figure(figure, artifact_file)
    plt.close(figure)


def set_run_note(markdown: str) -> None:
    """Set the active run's description (``mlflow.note.content``, rendered as markdown on the run page)."""
    mlflow.set_tag("mlflow.note.content", markdown)


def link_model_metrics(model_id: str, metrics: Mapping[str, Any], prefix: str = "test") -> dict[str, float]:
    """Log ``metrics`` again to the active run, linked to the logged model ``model_id`` (its page lists them)."""
    clean = {sanitize_name(f"{prefix}_{k}"): v for k, v in _numeric(metrics)}
    for name, value in clean.items():
        mlflow.log_metric(name, value, step=0, model_id=model_id)
    return clean
