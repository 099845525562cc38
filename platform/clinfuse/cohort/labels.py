"""Turning the label table into class indices (or survival times and events), one problem per row set."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from clinfuse.cohort.spec import LabelSpec
from clinfuse.cohort.tables import rows_text, to_numeric


@dataclass
class Labels:
    """Parsed labels of the patients in the label table.

    Args:
        values: patient id -> class name (binary/multiclass) or event ``"0"/"1"`` (survival).
        times: patient id -> follow-up time (survival only).
        classes: class names in index order (binary: ``[negative, positive]``).
    """

    values: dict[str, str]
    times: dict[str, float]
    classes: list[str]


def normalise_value(value: object) -> str:
    """Canonical text of a label value so YAML ``positive: 1`` matches a table cell ``1.0`` or ``1``."""
    if isinstance(value, bool):
        return "true" if value else "false"
    text = str(value).strip()
    if text.lower() in ("true", "false"):
        return text.lower()
    try:
        number = float(text)
    except ValueError:
        return text
    if math.isfinite(number) and number == int(number):
        return str(int(number))
    return repr(number)


def _sort_key(name: str) -> tuple[int, float, str]:
    try:
        return (0, float(name), name)
    except ValueError:
        return (1, 0.0, name)


def _class_labels(spec: LabelSpec, table: str, ids: pd.Series, column: pd.Series) -> tuple[Labels, list[str]]:
    problems: list[str] = []
    where = f"{table} column '{spec.column}'"
    present = column.notna().to_numpy()
    missing_rows = (np.flatnonzero(~present) + 1).tolist()
    if missing_rows:
        problems.append(f"{where}: label missing at {rows_text(missing_rows)}; fill it in or remove those rows")
    text = column.map(lambda v: normalise_value(v) if isinstance(v, str) else v)
    observed = sorted({v for v in text[present]}, key=_sort_key)
    declared = [normalise_value(c) for c in spec.classes] if spec.classes else None
    positive = None if spec.positive is None else normalise_value(spec.positive)
    if declared is not None:
        classes = declared
    elif spec.task == "binary" and positive is not None:
        classes = [v for v in observed if v != positive][:1] + [positive]
    else:
        classes = observed
    if spec.task == "binary" and declared is not None and positive is not None and declared[-1] != positive:
        problems.append(f"cohort.yaml: label.positive '{positive}' must be the last of label.classes {declared}")
    if spec.task == "binary" and declared is None and len(observed) > 2:
        problems.append(
            f"{where}: {len(observed)} distinct values {observed[:6]} but task is binary; "
            "use task: multiclass or recode the column"
        )
    if positive is not None and positive not in observed and declared is None:
        problems.append(f"{where}: the positive value '{positive}' never occurs; fix label.positive")
    if declared is not None or spec.task == "binary":
        unknown = [i + 1 for i, v in enumerate(text) if present[i] and v not in classes]
        if unknown and (declared is not None or len(observed) <= 2):
            problems.append(
                f"{where}: label not among the declared classes {classes} at {rows_text(unknown)}; "
                "fix the values or label.classes"
            )
    if len(set(observed) & set(classes)) < 2:
        problems.append(f"{where}: the label has a single class; a classifier needs at least two")
    values = {ids.iloc[i]: text.iloc[i] for i in range(len(ids)) if present[i] and text.iloc[i] in classes}
    return Labels(values=values, times={}, classes=classes), problems


def _survival_labels(
    spec: LabelSpec, table: str, ids: pd.Series, times: pd.Series, events: pd.Series
) -> tuple[Labels, list[str]]:
    problems: list[str] = []
    time, bad_time, inf_time = to_numeric(times)
    if bad_time or inf_time:
        problems.append(
            f"{table} column '{spec.time_column}': non-numeric or infinite time at "
            f"{rows_text(sorted(bad_time + inf_time))}; write times as numbers"
        )
    missing = (np.flatnonzero(np.isnan(time) & times.isna().to_numpy()) + 1).tolist()
    if missing:
        problems.append(f"{table} column '{spec.time_column}': time missing at {rows_text(missing)}; fill it in")
    negative = (np.flatnonzero(time < 0) + 1).tolist()
    if negative:
        problems.append(f"{table} column '{spec.time_column}': negative time at {rows_text(negative)}")
    event_text = events.map(lambda v: normalise_value(v) if isinstance(v, str) else v)
    event = event_text.map({"1": "1", "true": "1", "0": "0", "false": "0"})
    bad_event = (np.flatnonzero(event.isna().to_numpy()) + 1).tolist()
    if bad_event:
        problems.append(
            f"{table} column '{spec.event_column}': event must be 0/1 (or true/false), missing or invalid at "
            f"{rows_text(bad_event)}"
        )
    ok = np.isfinite(time) & (time >= 0) & event.notna().to_numpy()
    values = {ids.iloc[i]: event.iloc[i] for i in range(len(ids)) if ok[i]}
    if len(set(values.values())) < 2:
        problems.append(f"{table} column '{spec.event_column}': all patients have the same event value")
    return Labels(
        values=values,
        times={ids.iloc[i]: float(time[i]) for i in range(len(ids)) if ok[i]},
        classes=["censored", "event"],
    ), problems


def parse_labels(spec: LabelSpec, table: str, frame: pd.DataFrame, ids: pd.Series) -> tuple[Labels, list[str]]:
    """Parse the label columns of the label table (columns already checked to exist).

    Args:
        spec: the label block.
        table: the label table's path as written in cohort.yaml (for messages).
        frame: the table as text.
        ids: the id column (blank or duplicated ids already reported).
    """
    if spec.task == "survival":
        return _survival_labels(spec, table, ids, frame[spec.time_column], frame[spec.event_column])
    return _class_labels(spec, table, ids, frame[spec.column])
