"""load_cohort: alignment, presence, features, identifiers, exclusions, tasks and formats."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from clinfuse.cohort import load_cohort, load_cohort_spec, synthesize_cohort
from clinfuse.errors import CohortError

EXAMPLE = Path(__file__).resolve().parents[2] / "cohorts" / "example"


def test_example_yaml_loads_exactly() -> None:
    spec = load_cohort_spec(EXAMPLE)
    assert spec.name == "example"
    assert spec.id_column == "patient_id"
    assert (spec.label.table, spec.label.column, spec.label.task, spec.label.positive) == (
        "clinical.csv",
        "diagnosis",
        "binary",
        1,
    )
    assert list(spec.modalities) == ["imaging", "clinical", "genomic"]
    assert spec.modalities["imaging"].spatial_dims == 3
    assert spec.modalities["clinical"].categorical == ["sex", "stage"]
    assert spec.modalities["clinical"].identifiers == ["mrn"]
    cohort = load_cohort(EXAMPLE)
    assert cohort.n == 24


def test_alignment_and_features(tmp_path: Path) -> None:
    root = synthesize_cohort(
        tmp_path / "c",
        patients=30,
        spatial_dims=3,
        size=8,
        seed=5,
        n_genes=12,
        missing_rate={"imaging": 0.3, "clinical": 0.3, "genomic": 0.3},
    )
    cohort = load_cohort(root)
    table = pd.read_csv(root / "clinical.csv", dtype={"patient_id": str})
    assert cohort.patient_ids == sorted(table["patient_id"])
    expected_y = table.set_index("patient_id").loc[cohort.patient_ids, "diagnosis"].to_numpy()
    np.testing.assert_array_equal(cohort.y, expected_y)
    assert cohort.classes == ["0", "1"] and cohort.y.dtype == np.int64
    clinical = cohort.modalities["clinical"]
    assert list(clinical.frame.columns) == ["age", "sex", "stage", "marker_a", "marker_b", "bmi"]
    assert clinical.categorical == ["sex", "stage"]
    assert clinical.numeric == ["age", "marker_a", "marker_b", "bmi"]
    assert list(clinical.frame.index) == cohort.patient_ids
    assert clinical.frame.loc[~clinical.present].isna().all().all()
    genomic_ids = set(pd.read_csv(root / "genomic.csv", dtype={"patient_id": str})["patient_id"])
    np.testing.assert_array_equal(cohort.modalities["genomic"].present, [p in genomic_ids for p in cohort.patient_ids])
    assert cohort.presence.shape == (30, 3) and cohort.presence.any(axis=1).all()
    imaging = cohort.modalities["imaging"]
    assert all((p is None) == (not has) for p, has in zip(imaging.paths, imaging.present, strict=True))
    assert all(p.is_absolute() and p.is_relative_to(root.resolve()) for p in imaging.paths if p)
    assert set(table["mrn"]) <= cohort.identifier_values
    assert set(cohort.patient_ids) <= cohort.identifier_values


def test_content_hash_tracks_every_file(tiny_cohort: Path) -> None:
    first = load_cohort(tiny_cohort).content_hash
    assert load_cohort(tiny_cohort).content_hash == first
    image = sorted((tiny_cohort / "images").iterdir())[0]
    image.write_bytes(image.read_bytes() + b"\0")
    assert load_cohort(tiny_cohort).content_hash != first


def test_patients_outside_label_table_are_counted(tiny_cohort: Path) -> None:
    genomic = pd.read_csv(tiny_cohort / "genomic.csv", dtype=str)
    extra = genomic.iloc[:2].copy()
    extra["patient_id"] = ["X1", "X2"]
    pd.concat([genomic, extra]).to_csv(tiny_cohort / "genomic.csv", index=False)
    cohort = load_cohort(tiny_cohort)
    assert cohort.n == 24
    (exclusion,) = cohort.exclusions
    assert exclusion.count == 2 and "not in the label table" in exclusion.reason


def _write(root: Path, yaml_text: str, tables: dict[str, pd.DataFrame]) -> Path:
    root.mkdir()
    (root / "cohort.yaml").write_text(yaml_text)
    for name, frame in tables.items():
        if name.endswith(".parquet"):
            frame.to_parquet(root / name)
        else:
            frame.to_csv(root / name, index=False)
    return root


def test_multiclass_survival_parquet_exclude(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    n = 12
    ids = [f"{i:03d}" for i in range(n)]  # leading zeros must survive
    table = pd.DataFrame(
        {
            "pid": ids,
            "grade": ["low", "mid", "high"] * 4,
            "x": rng.normal(size=n),
            "junk": rng.normal(size=n),
            "t": rng.uniform(1, 9, n),
            "e": [0, 1] * 6,
        }
    )
    genes = pd.DataFrame({"pid": ids, "g1": rng.normal(size=n), "g2": rng.normal(size=n)})
    multiclass = """name: m
id_column: pid
label: {table: t.parquet, column: grade, task: multiclass, classes: [low, mid, high]}
modalities:
  tab: {type: tabular, table: t.parquet, exclude: [junk, t, e]}
  gen: {type: genomic, table: g.csv}
"""
    cohort = load_cohort(_write(tmp_path / "m", multiclass, {"t.parquet": table, "g.csv": genes}))
    assert cohort.classes == ["low", "mid", "high"]
    assert cohort.patient_ids[0] == "000"
    np.testing.assert_array_equal(cohort.y[:3], [0, 1, 2])
    assert list(cohort.modalities["tab"].frame.columns) == ["x"]
    assert any(e.source == "modalities.tab.exclude" and e.count == 3 for e in cohort.exclusions)
    survival = """name: s
id_column: pid
label: {table: t.parquet, task: survival, time_column: t, event_column: e}
modalities:
  tab: {type: tabular, table: t.parquet, categorical: [grade]}
"""
    cohort = load_cohort(_write(tmp_path / "s", survival, {"t.parquet": table}))
    assert cohort.task == "survival" and cohort.classes == ["censored", "event"]
    np.testing.assert_array_equal(cohort.y, table["e"].to_numpy())
    np.testing.assert_allclose(cohort.time, table["t"].to_numpy())
    assert sorted(cohort.modalities["tab"].frame.columns) == ["grade", "junk", "x"]


def test_survival_needs_columns(tmp_path: Path) -> None:
    text = (
        "name: s\nid_column: pid\nlabel: {table: t.csv, task: survival}\n"
        "modalities:\n  a: {type: genomic, table: t.csv}\n"
    )
    with pytest.raises(CohortError, match="time_column and event_column"):
        load_cohort(_write(tmp_path / "s", text, {"t.csv": pd.DataFrame({"pid": ["a"], "g": [1.0]})}))
