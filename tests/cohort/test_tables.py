"""The numeric fast path of wide tables: numbers as float32, a bad cell still named by file, row and column."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from clinfuse.cohort.load import collect_cohort
from clinfuse.cohort.preprocess import Log1p, TopVariance
from clinfuse.cohort.tables import read_table


def _cohort(root: Path, genes: pd.DataFrame) -> Path:
    """Six patients (ids with leading zeros), a label table and the given gene table as ``genomic.csv``."""
    root.mkdir()
    ids = [f"{i:03d}" for i in range(6)]
    pd.DataFrame({"patient_id": ids, "time": [1.0, 2, 3, 4, 5, 6], "event": [1, 0, 1, 0, 1, 0]}).to_csv(
        root / "clinical.csv", index=False
    )
    genes.insert(0, "patient_id", ids)
    genes.to_csv(root / "genomic.csv", index=False)
    spec = {
        "name": "t",
        "id_column": "patient_id",
        "label": {"table": "clinical.csv", "task": "survival", "time_column": "time", "event_column": "event"},
        "modalities": {"genomic": {"type": "genomic", "table": "genomic.csv"}},
    }
    (root / "cohort.yaml").write_text(yaml.safe_dump(spec))
    return root


def test_gene_table_is_read_as_float32_numbers(tmp_path: Path) -> None:
    values = np.arange(18, dtype=float).reshape(6, 3) * 1.25
    cohort, problems = collect_cohort(_cohort(tmp_path / "c", pd.DataFrame(values, columns=["A", "B", "C"])), False)
    assert problems == [] and cohort is not None
    frame = cohort.modalities["genomic"].frame
    assert list(frame.dtypes.astype(str)) == ["float32"] * 3
    assert cohort.patient_ids[:2] == ["000", "001"]  # ids stay text: leading zeros kept
    np.testing.assert_array_equal(frame.to_numpy(), values.astype(np.float32))


def test_bad_gene_cell_is_named_by_row_and_column_and_other_columns_stay_numbers(tmp_path: Path) -> None:
    genes = pd.DataFrame({"A": [1.0, 2, 3, 4, 5, 6], "B": ["1", "2", "oops", "4", "5", "6"], "C": [0.5] * 6})
    genes.loc[4, "C"] = np.inf
    _, problems = collect_cohort(_cohort(tmp_path / "c", genes), False)
    assert problems == [
        "genomic.csv column 'B': non-numeric value at row 3 in a numeric column; fix the values",
        "genomic.csv column 'C': infinite value at row 5; use a number",
    ]
    frame, found = read_table(tmp_path / "c", "genomic.csv", "t", text=["patient_id"], numeric_dtype=np.float32)
    assert found == []
    assert frame["A"].dtype == np.float32 and frame["C"].dtype == np.float32
    assert list(frame["B"]) == ["1", "2", "oops", "4", "5", "6"]  # only the failing column falls back to text
    assert list(frame["patient_id"]) == ["000", "001", "002", "003", "004", "005"]


def test_not_utf8_names_the_offset_of_the_bad_byte(tmp_path: Path) -> None:
    (tmp_path / "t.csv").write_bytes(b"id,a\n1,2\n3,\xe9\n")
    frame, problems = read_table(tmp_path, "t.csv", "t", text=[])
    assert frame is None
    assert problems == ["t.csv: not UTF-8 encoded (bad byte at offset 11); re-save the file as UTF-8 CSV"]


def test_gene_steps_keep_float32_with_the_float64_result() -> None:
    rng = np.random.default_rng(0)
    counts = np.round(np.exp(rng.normal(3, 1.5, (50, 8))), 2)
    log = Log1p("auto").fit(counts)
    top = TopVariance(3).fit(log.transform(counts))
    low = top.transform(log.transform(counts.astype(np.float32)))
    assert log.apply_ and low.dtype == np.float32
    assert top.fit(log.transform(counts.astype(np.float32))).support_.tolist() == top.support_.tolist()
    np.testing.assert_allclose(low, top.transform(log.transform(counts)), rtol=1e-6)
