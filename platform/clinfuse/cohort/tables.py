"""Reading cohort tables (CSV or Parquet) defensively: every problem becomes one line naming the file.

Tables are read as text so ids keep leading zeros and a stray word in a numeric column is found (and
reported with its row) instead of silently turning the whole column into strings.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np
import pandas as pd

_MAX_ROWS_LISTED = 5


def resolve_inside(root: Path, relative: str) -> Path | None:
    """The absolute path of ``relative`` when it stays inside ``root`` (symlinks followed), else None."""
    candidate = (root / relative).resolve()
    return candidate if candidate.is_relative_to(root.resolve()) else None


def rows_text(rows: list[int]) -> str:
    """``"rows 3, 7"`` style text listing at most a few 1-based data rows."""
    shown = ", ".join(str(r) for r in rows[:_MAX_ROWS_LISTED])
    more = f" and {len(rows) - _MAX_ROWS_LISTED} more" if len(rows) > _MAX_ROWS_LISTED else ""
    return f"row{'s' if len(rows) > 1 else ''} {shown}{more}"


def _as_text_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """Every cell as a stripped string (object dtype), missing cells as NaN."""
    columns = {}
    for column in frame.columns:
        values = frame[column]
        text = values.astype(object).where(values.notna(), None)
        text = text.map(lambda v: None if v is None else str(v).strip())
        columns[str(column)] = text.where(text.notna() & (text != ""), np.nan).astype(object)
    return pd.DataFrame(columns, index=frame.index)


def _read_csv(file: Path, label: str) -> tuple[pd.DataFrame | None, str | None]:
    raw = file.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        return None, (f"{label}: not UTF-8 encoded (bad byte at offset {exc.start}); re-save the file as UTF-8 CSV")
    if not text.strip():
        return None, f"{label}: empty table (no header, no rows); write a header line and one row per patient"
    try:
        frame = pd.read_csv(io.StringIO(text), dtype=str, skipinitialspace=True)
    except (pd.errors.ParserError, csv.Error) as exc:
        detail = str(exc).strip().splitlines()[-1]
        return None, f"{label}: cannot be parsed as CSV ({detail}); check quoting and the number of fields"
    if frame.shape[1] == 1:
        header = text.splitlines()[0]
        found = [d for d in (";", "\t", "|") if d in header]
        hint = f" (found {found[0]!r} in the header)" if found else ""
        return None, f"{label}: parses to a single column{hint}; use commas as the delimiter"
    return frame, None


def read_table(root: Path, relative: str, where: str) -> tuple[pd.DataFrame | None, list[str]]:
    """Read a CSV/Parquet table of the cohort as text.

    Args:
        root: cohort folder.
        relative: table path as written in cohort.yaml.
        where: the cohort.yaml key naming the table (for messages).

    Returns:
        The table (object dtype, NaN for blank cells, column names as strings) or None, and the problems.
    """
    file = resolve_inside(root, relative)
    if file is None:
        return None, [
            f"{relative} ({where}): path resolves outside the cohort folder ('..' or a symlink); "
            "copy the file into the cohort folder"
        ]
    if not file.is_file():
        return None, [f"{relative} ({where}): file not found in the cohort folder; fix the path in cohort.yaml"]
    suffix = file.name.lower()
    if suffix.endswith(".parquet") or suffix.endswith(".pq"):
        try:
            frame = pd.read_parquet(file)
        except Exception as exc:  # pyarrow raises many types for corrupt files
            return None, [f"{relative}: cannot be read as Parquet ({type(exc).__name__}); re-export the table"]
    elif suffix.endswith((".csv", ".tsv", ".txt")):
        frame, problem = _read_csv(file, relative)
        if frame is None:
            return None, [problem or f"{relative}: unreadable"]
    else:
        return None, [f"{relative} ({where}): unsupported table format; use .csv or .parquet"]
    if len(frame) == 0:
        return None, [f"{relative}: header only, no data rows; add one row per patient"]
    frame = _as_text_frame(frame)
    duplicated = [str(c) for c in pd.Index(frame.columns)[pd.Index(frame.columns).duplicated()]]
    problems = [f"{relative}: column '{c}' appears twice; rename one of them" for c in duplicated]
    return frame, problems


def to_numeric(values: pd.Series) -> tuple[np.ndarray, list[int], list[int]]:
    """Convert text cells to float.

    Returns:
        The float values (NaN where blank), the 1-based rows holding non-numeric text and the rows holding
        infinite values.
    """
    numbers = pd.to_numeric(values, errors="coerce").astype(float).to_numpy()
    bad = values.notna().to_numpy() & np.isnan(numbers)
    infinite = np.isinf(numbers)
    return numbers, (np.flatnonzero(bad) + 1).tolist(), (np.flatnonzero(infinite) + 1).tolist()
