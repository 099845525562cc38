"""Bad cohorts, run ids, output folders and MLflow stores met by ``clinfuse run/report/explain``.

Each is exit 2 with one ``error:`` line naming the file/row/column/key and the fix, no traceback, and no
FINISHED run in the store. The cohort-check catalogue itself lives in tests/cohort/test_check.py.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest

Cli = Callable[[list[str]], tuple[int, str]]
Check = Callable[[int, str, list[str]], None]


def _csv(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, dtype=str, keep_default_na=False)


def single_class(cohort: Path) -> None:
    frame = _csv(cohort / "clinical.csv")
    frame["diagnosis"] = "1"
    frame.to_csv(cohort / "clinical.csv", index=False)


def conflicting_duplicate_label(cohort: Path) -> None:
    frame = _csv(cohort / "clinical.csv")
    twin = frame.iloc[[2]].copy()
    twin["diagnosis"] = "0" if twin["diagnosis"].iloc[0] == "1" else "1"
    pd.concat([frame, twin]).to_csv(cohort / "clinical.csv", index=False)


def non_numeric(cohort: Path) -> None:
    frame = _csv(cohort / "genomic.csv")
    frame.loc[4, "G0003"] = "n/a?"
    frame.to_csv(cohort / "genomic.csv", index=False)


def missing_image(cohort: Path) -> None:
    (cohort / _csv(cohort / "images.csv").loc[1, "path"]).unlink()


def corrupt_image(cohort: Path) -> None:
    (cohort / _csv(cohort / "images.csv").loc[1, "path"]).write_bytes(b"\x89PNG but not really")


def empty_genomic(cohort: Path) -> None:
    (cohort / "genomic.csv").write_text("")


def no_cohort_yaml(cohort: Path) -> None:
    (cohort / "cohort.yaml").unlink()


COHORT_CASES: list[tuple[Callable[[Path], None], list[str]]] = [
    (single_class, ["clinical.csv", "column 'diagnosis'", "single class"]),
    (conflicting_duplicate_label, ["clinical.csv", "column 'patient_id'", "duplicate patient id at rows 3, 25"]),
    (non_numeric, ["genomic.csv", "column 'G0003'", "non-numeric value at row 5"]),
    (missing_image, ["images.csv row 2", "column 'path'", "image not found"]),
    (corrupt_image, ["images.csv row 2"]),
    (empty_genomic, ["genomic.csv", "empty table"]),
    (no_cohort_yaml, ["cohort.yaml not found"]),
]


@pytest.mark.parametrize(("breaker", "expected"), COHORT_CASES, ids=[c[0].__name__ for c in COHORT_CASES])
def test_run_on_a_bad_cohort(
    config: Path, cohort: Path, cli: Cli, usage_error: Check, breaker: Callable[[Path], None], expected: list[str]
) -> None:
    ids = set(_csv(cohort / "clinical.csv")["patient_id"]) | set(_csv(cohort / "clinical.csv")["mrn"])
    breaker(cohort)
    code, output = cli(["run", str(config)])
    usage_error(code, output, expected)
    assert not any(value in output for value in ids), "an identifier value was printed"


@pytest.mark.parametrize(
    "args",
    [["report", "nope"], ["explain", "nope"], ["run", "--resume", "nope"]],
    ids=["report", "explain", "resume"],
)
def test_unknown_run_id(project: Path, cli: Cli, usage_error: Check, args: list[str]) -> None:
    code, output = cli(args)
    usage_error(code, output, ["run 'nope'", "no run folder", "clinfuse ui"])


@pytest.mark.slow
def test_resume_unknown_id_with_config(config: Path, cli: Cli, usage_error: Check) -> None:
    """The id is looked up in the store (opening it runs MLflow's migrations: seconds)."""
    code, output = cli(["run", str(config), "--resume", "nope"])
    usage_error(code, output, ["run id nope not found", "mlflow.db", "clinfuse ui"])
    assert (config.parent / "mlflow.db").is_file()


def test_out_dir_under_a_file(config: Path, cli: Cli, usage_error: Check) -> None:
    blocker = config.parent / "plain.txt"
    blocker.write_text("a file, not a folder")
    code, output = cli(["run", str(config), "--set", f"report.out_dir={blocker}/reports"])
    usage_error(code, output, ["config key 'report.out_dir'", "plain.txt/reports", "choose a writable folder"])
    assert not (config.parent / "mlflow.db").exists(), "the store was opened before the folder was checked"


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes through chmod 555; covered by test_out_dir_under_a_file")
def test_out_dir_read_only(config: Path, cli: Cli, usage_error: Check) -> None:
    locked = config.parent / "locked"
    locked.mkdir(mode=0o555)
    code, output = cli(["run", str(config), "--set", f"report.out_dir={locked}"])
    usage_error(code, output, ["config key 'report.out_dir'", "locked", "Permission denied"])


def test_store_not_a_database(config: Path, cli: Cli, usage_error: Check) -> None:
    fake = config.parent / "fake.db"
    fake.write_text("this is not SQLite\n" * 100)
    code, output = cli(["run", str(config), "--set", f"tracking.uri=sqlite:///{fake}"])
    usage_error(code, output, ["MLflow store", "fake.db", "file is not a database", "tracking.uri"])
    assert fake.read_text().startswith("this is not SQLite"), "the file was overwritten"


def test_store_under_a_file(config: Path, cli: Cli, usage_error: Check) -> None:
    blocker = config.parent / "plain.txt"
    blocker.write_text("a file, not a folder")
    code, output = cli(["run", str(config), "--set", f"tracking.uri=sqlite:///{blocker}/mlflow.db"])
    usage_error(code, output, ["MLflow store", "plain.txt/mlflow.db", "tracking.uri", "writable"])


def test_store_is_a_plain_folder(config: Path, cli: Cli, usage_error: Check) -> None:
    code, output = cli(["run", str(config), "--set", f"tracking.uri={config.parent / 'mlruns'}"])
    usage_error(code, output, ["MLflow store", "mlruns", "filesystem tracking backend", "sqlite:///"])


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes through chmod 555; covered by test_store_under_a_file")
def test_store_read_only(config: Path, cli: Cli, usage_error: Check) -> None:
    locked = config.parent / "locked"
    locked.mkdir(mode=0o555)
    code, output = cli(["run", str(config), "--set", f"tracking.uri=sqlite:///{locked}/mlflow.db"])
    usage_error(code, output, ["MLflow store", "locked", "tracking.uri"])
