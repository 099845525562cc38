"""A cohort without labels loads for prediction only when asked (``require_labels=False``)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from clinfuse.cohort import load_cohort, synthesize_cohort
from clinfuse.errors import CohortError


def test_a_cohort_without_its_label_column_loads_only_when_labels_are_optional(tmp_path: Path) -> None:
    folder = synthesize_cohort(tmp_path / "c", patients=12, seed=0, n_genes=10, modalities={"clinical": "tabular"})
    table = pd.read_csv(folder / "clinical.csv", dtype=str)
    table.drop(columns=["diagnosis"]).to_csv(folder / "clinical.csv", index=False)
    with pytest.raises(CohortError, match="diagnosis"):
        load_cohort(folder)
    cohort = load_cohort(folder, require_labels=False)
    assert not cohort.labelled and cohort.n == 12 and (cohort.y == -1).all()
    assert cohort.patient_ids == sorted(table["patient_id"])
    assert set(table["mrn"]) <= cohort.identifier_values  # identifier columns stay protected
    assert load_cohort(synthesize_cohort(tmp_path / "d", patients=12, seed=0, n_genes=10)).labelled
