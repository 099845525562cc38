"""Every problem ``clinfuse cohort check`` catches: exit 2, one line naming file/row/column, no traceback."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from PIL import Image
from pydicom.data import get_testdata_file


def _csv(root: Path, name: str) -> pd.DataFrame:
    return pd.read_csv(root / name, dtype=str, keep_default_na=False)


def _save(frame: pd.DataFrame, root: Path, name: str) -> None:
    frame.to_csv(root / name, index=False)


def _edit(root: Path, name: str, row: int, column: str, value: str) -> None:
    frame = _csv(root, name)
    frame.loc[row - 1, column] = value
    _save(frame, root, name)


def _image_path(root: Path, row: int) -> Path:
    return root / _csv(root, "images.csv").loc[row - 1, "path"]


def _yaml(root: Path, old: str, new: str) -> None:
    text = (root / "cohort.yaml").read_text()
    assert old in text
    (root / "cohort.yaml").write_text(text.replace(old, new, 1))


def missing_image(root: Path) -> None:
    _image_path(root, 2).unlink()


def corrupt_image(root: Path) -> None:
    _image_path(root, 2).write_bytes(b"\x1f\x8b not really a gzip stream")


def duplicate_id(root: Path) -> None:
    frame = _csv(root, "genomic.csv")
    _save(pd.concat([frame, frame.iloc[[4]]]), root, "genomic.csv")


def label_missing(root: Path) -> None:
    _edit(root, "clinical.csv", 3, "diagnosis", "")


def label_undeclared(root: Path) -> None:
    _yaml(root, "positive: 1", "positive: 1\n  classes: [0, 1]")
    _edit(root, "clinical.csv", 4, "diagnosis", "2")


def non_numeric(root: Path) -> None:
    _edit(root, "clinical.csv", 2, "marker_a", "high")


def unknown_column(root: Path) -> None:
    _yaml(root, "- stage", "- stages")


def unknown_key(root: Path) -> None:
    _yaml(root, "    type: tabular", "    type: tabular\n    colour: red")


def path_dotdot(root: Path) -> None:
    shutil.copy(_image_path(root, 1), root.parent / "outside.nii.gz")
    _edit(root, "images.csv", 1, "path", "../outside.nii.gz")


def path_symlink(root: Path) -> None:
    shutil.copy(_image_path(root, 1), root.parent / "outside.nii.gz")
    os.symlink(root.parent / "outside.nii.gz", root / "images" / "link.nii.gz")
    _edit(root, "images.csv", 1, "path", "images/link.nii.gz")


def no_modality(root: Path) -> None:
    clinical = _csv(root, "clinical.csv")
    pid = clinical.loc[5, "patient_id"]
    for column in ("age", "sex", "stage", "marker_a", "marker_b", "bmi"):
        clinical.loc[5, column] = ""
    _save(clinical, root, "clinical.csv")
    for name in ("genomic.csv", "images.csv"):
        frame = _csv(root, name)
        _save(frame[frame["patient_id"] != pid], root, name)


def infinite(root: Path) -> None:
    _edit(root, "genomic.csv", 1, "G0001", "inf")


def empty_table(root: Path) -> None:
    (root / "genomic.csv").write_text("")


def header_only(root: Path) -> None:
    (root / "genomic.csv").write_text((root / "genomic.csv").read_text().splitlines()[0] + "\n")


def wrong_delimiter(root: Path) -> None:
    _csv(root, "genomic.csv").to_csv(root / "genomic.csv", index=False, sep=";")


def not_utf8(root: Path) -> None:
    text = (root / "clinical.csv").read_text().replace(",F,", ",Fé,", 1)
    (root / "clinical.csv").write_bytes(text.encode("latin-1"))


def nan_voxels(root: Path) -> None:
    data = np.ones((8, 8, 8), dtype=np.float32)
    data[2, 2, 2] = np.nan
    nib.save(nib.Nifti1Image(data, np.eye(4)), _image_path(root, 3))


def four_d(root: Path) -> None:
    nib.save(nib.Nifti1Image(np.ones((8, 8, 8, 2), dtype=np.float32), np.eye(4)), _image_path(root, 3))


def wrong_dims(root: Path) -> None:
    Image.fromarray(np.zeros((8, 8), dtype=np.uint8)).save(root / "images" / "flat.png")
    _edit(root, "images.csv", 3, "path", "images/flat.png")


def mixed_series(root: Path) -> None:
    folder = root / "images" / "series"
    folder.mkdir()
    shutil.copy(get_testdata_file("CT_small.dcm"), folder / "a.dcm")
    shutil.copy(get_testdata_file("MR_small.dcm"), folder / "b.dcm")
    _edit(root, "images.csv", 3, "path", "images/series")


def single_class(root: Path) -> None:
    frame = _csv(root, "clinical.csv")
    frame["diagnosis"] = "1"
    _save(frame, root, "clinical.csv")


def no_yaml(root: Path) -> None:
    (root / "cohort.yaml").unlink()


def bad_yaml(root: Path) -> None:
    (root / "cohort.yaml").write_text("name: [unclosed\nid_column: patient_id\n")


CASES: list[tuple[Callable[[Path], None], list[str], list[str]]] = [
    (missing_image, ["images.csv row 2", "column 'path'", "image not found"], []),
    (corrupt_image, ["images.csv row 2", "cannot be read as nifti"], []),
    (duplicate_id, ["genomic.csv", "column 'patient_id'", "duplicate patient id at rows 5, 25"], []),
    (label_missing, ["clinical.csv", "column 'diagnosis'", "label missing at row 3"], []),
    (label_undeclared, ["clinical.csv", "column 'diagnosis'", "not among the declared classes", "row 4"], []),
    (non_numeric, ["clinical.csv", "column 'marker_a'", "non-numeric value at row 2"], []),
    (unknown_column, ["clinical.csv", "column 'stages'", "modalities.clinical.categorical"], []),
    (unknown_key, ["cohort.yaml", "unknown key 'modalities.clinical.colour'"], []),
    (path_dotdot, ["images.csv row 1", "outside the cohort folder"], []),
    (path_symlink, ["images.csv row 1", "outside the cohort folder"], []),
    (no_modality, ["clinical.csv", "patient with no modality at row 6"], []),
    (infinite, ["genomic.csv", "column 'G0001'", "infinite value at row 1"], []),
    (empty_table, ["genomic.csv", "empty table"], []),
    (header_only, ["genomic.csv", "header only"], []),
    (wrong_delimiter, ["genomic.csv", "single column", "';'"], []),
    (not_utf8, ["clinical.csv", "not UTF-8"], []),
    (nan_voxels, ["images.csv row 3", "NaN voxels"], []),
    (four_d, ["images.csv row 3", "4D volume"], []),
    (wrong_dims, ["images.csv row 3", "spatial_dims: 3"], []),
    (mixed_series, ["images.csv row 3", "mixes 2 series"], []),
    (single_class, ["clinical.csv", "column 'diagnosis'", "single class"], []),
    (no_yaml, ["cohort.yaml not found"], []),
    (bad_yaml, ["not valid YAML"], []),
    (lambda root: None, ["need at least", "--folds"], ["--folds", "20"]),
]


@pytest.mark.parametrize(("breaker", "expected", "extra"), CASES, ids=[c[0].__name__ for c in CASES[:-1]] + ["folds"])
def test_problem_is_reported(
    tiny_cohort: Path,
    cli: Callable[[list[str]], tuple[int, str]],
    breaker: Callable[[Path], None],
    expected: list[str],
    extra: list[str],
) -> None:
    mrns = set(_csv(tiny_cohort, "clinical.csv")["mrn"])
    ids = set(_csv(tiny_cohort, "clinical.csv")["patient_id"])
    breaker(tiny_cohort)
    code, output = cli(["cohort", "check", str(tiny_cohort), *extra])
    assert code == 2, output
    assert "Traceback" not in output
    errors = [line for line in output.splitlines() if line.startswith("error: ")]
    assert errors, output
    assert any(all(part in line for part in expected) for line in errors), errors
    assert not any(value in output for value in mrns | ids), "an identifier value was printed"


def test_valid_cohort_passes(tiny_cohort: Path, cli: Callable[[list[str]], tuple[int, str]]) -> None:
    code, output = cli(["cohort", "check", str(tiny_cohort), "--folds", "3"])
    assert code == 0, output
    assert "patients: 24" in output
    assert "imaging+clinical+genomic: 24" in output
    assert "(8, 8, 8) x24" in output
    assert "valid" in output


def test_all_problems_reported_at_once(tiny_cohort: Path) -> None:
    from clinfuse.cohort import check_cohort

    non_numeric(tiny_cohort)
    missing_image(tiny_cohort)
    infinite(tiny_cohort)
    report = check_cohort(tiny_cohort)
    assert len(report.problems) == 3
    assert not report.ok
