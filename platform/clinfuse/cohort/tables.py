"""Reading cohort tables (CSV or Parquet) defensively: every problem becomes one line naming the file.

Tables are read as text by default so ids keep leading zeros and a stray word in a numeric column is found (and
reported with its row) instead of silently turning the whole column into strings. Wide numeric tables (genes) take
a numeric fast path: a caller names the columns that must stay text and every other column is parsed as numbers
by pandas' C parser; only a column with a cell that does not parse falls back to text, so the kind still reports
that cell's row. Text costs ~50 bytes per cell, a float32 four.
"""

from __future__ import annotations

import codecs
import csv
import warnings
from collections.abc import Collection
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


def _utf8_problem(file: Path, label: str) -> tuple[str | None, bool]:
    """Decode the file in chunks (the whole text in memory would be as large as the file, four times over):
    the problem of a non-UTF-8 byte, and whether the file holds anything but whitespace."""
    decoder = codecs.getincrementaldecoder("utf-8-sig")()
    offset, content = 0, False
    with file.open("rb") as handle:
        while chunk := handle.read(1 << 24):
            try:
                content = bool(decoder.decode(chunk).strip()) or content
            except UnicodeDecodeError:
                break
            offset += len(chunk)
        else:
            try:
                decoder.decode(b"", final=True)
                return None, content
            except UnicodeDecodeError:
                pass
        # The bad byte lies in the bytes read so far: decoding them at once gives its offset in the file.
        handle.seek(0)
        head = handle.read(offset + len(chunk))
    try:
        head.decode("utf-8-sig")
        start = len(head) - 1
    except UnicodeDecodeError as exc:
        start = exc.start
    return f"{label}: not UTF-8 encoded (bad byte at offset {start}); re-save the file as UTF-8 CSV", content


def _parse_csv(file: Path, dtype: object) -> pd.DataFrame:
    with warnings.catch_warnings():
        # Column types that differ between the parser's chunks are expected here: such a column goes to text.
        warnings.simplefilter("ignore", pd.errors.DtypeWarning)
        return pd.read_csv(file, dtype=dtype, skipinitialspace=True, encoding="utf-8-sig")  # type: ignore[arg-type]


def _read_csv(
    file: Path, label: str, text: Collection[str] | None, numeric_dtype: type
) -> tuple[pd.DataFrame | None, str | None]:
    problem, content = _utf8_problem(file, label)
    if problem:
        return None, problem
    if not content:
        return None, f"{label}: empty table (no header, no rows); write a header line and one row per patient"
    try:
        if text is None:
            frame = _parse_csv(file, str)
        else:
            header = pd.read_csv(file, nrows=0, skipinitialspace=True, encoding="utf-8-sig").columns
            kept = set(text)
            wanted = {str(c): (str if str(c) in kept else numeric_dtype) for c in header}
            try:
                frame = _parse_csv(file, wanted)
            except (ValueError, TypeError):
                # A cell that is not a number: let the parser infer each column's type, so only the columns
                # holding such cells become text (the caller reports their rows).
                frame = _parse_csv(file, {c: str for c in wanted if c in kept})
    except (pd.errors.ParserError, csv.Error) as exc:
        detail = str(exc).strip().splitlines()[-1]
        return None, f"{label}: cannot be parsed as CSV ({detail}); check quoting and the number of fields"
    if frame.shape[1] == 1:
        with file.open(encoding="utf-8-sig", errors="replace") as handle:
            first = handle.readline()
        found = [d for d in (";", "\t", "|") if d in first]
        hint = f" (found {found[0]!r} in the header)" if found else ""
        return None, f"{label}: parses to a single column{hint}; use commas as the delimiter"
    return frame, None


def _is_number(values: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)


def _mixed_frame(frame: pd.DataFrame, text: Collection[str], numeric_dtype: type) -> pd.DataFrame:
    """Numeric columns (not named in ``text``) as ``numeric_dtype``, every other column as text."""
    frame.columns = [str(c) for c in frame.columns]
    kept = set(text)
    to_text = [c for c in frame.columns if c in kept or not _is_number(frame[c])]
    numeric = [c for c in frame.columns if c not in set(to_text) and frame[c].dtype != numeric_dtype]
    if numeric:
        frame[numeric] = frame[numeric].astype(numeric_dtype)
    if to_text:
        texts = _as_text_frame(frame[to_text])
        for column in to_text:
            frame[column] = texts[column]
    return frame


def read_table(
    root: Path,
    relative: str,
    where: str,
    *,
    text: Collection[str] | None = None,
    numeric_dtype: type = np.float64,
) -> tuple[pd.DataFrame | None, list[str]]:
    """Read a CSV/Parquet table of the cohort, as text or (``text`` given) with its numeric columns as numbers.

    Args:
        root: cohort folder.
        relative: table path as written in cohort.yaml.
        where: the cohort.yaml key naming the table (for messages).
        text: None reads every cell as text; otherwise the columns that stay text (ids, categories), every
            other column being read as ``numeric_dtype`` unless one of its cells is not a number (then as text).
        numeric_dtype: the float type of numeric columns (float32 halves a gene table).

    Returns:
        The table (text columns object dtype, NaN for blank cells, column names as strings) or None, and the
        problems.
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
        frame, problem = _read_csv(file, relative, text, numeric_dtype)
        if frame is None:
            return None, [problem or f"{relative}: unreadable"]
    else:
        return None, [f"{relative} ({where}): unsupported table format; use .csv or .parquet"]
    if len(frame) == 0:
        return None, [f"{relative}: header only, no data rows; add one row per patient"]
    frame = _as_text_frame(frame) if text is None else _mixed_frame(frame, text, numeric_dtype)
    duplicated = [str(c) for c in pd.Index(frame.columns)[pd.Index(frame.columns).duplicated()]]
    problems = [f"{relative}: column '{c}' appears twice; rename one of them" for c in duplicated]
    return frame, problems


def to_numeric(values: pd.Series) -> tuple[np.ndarray, list[int], list[int]]:
    """Convert text cells to float (a column already read as floats keeps its float type, uncopied).

    Returns:
        The float values (NaN where blank), the 1-based rows holding non-numeric text and the rows holding
        infinite values.
    """
    if pd.api.types.is_float_dtype(values):
        numbers = values.to_numpy()
        return numbers, [], (np.flatnonzero(np.isinf(numbers)) + 1).tolist()
    numbers = pd.to_numeric(values, errors="coerce").astype(float).to_numpy()
    bad = values.notna().to_numpy() & np.isnan(numbers)
    infinite = np.isinf(numbers)
    return numbers, (np.flatnonzero(bad) + 1).tolist(), (np.flatnonzero(infinite) + 1).tolist()
