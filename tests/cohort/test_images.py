"""MONAI image transforms on real DICOM/NIfTI test files and synthetic PNG/NIfTI."""

from __future__ import annotations

import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import torch
from nibabel.testing import data_path
from PIL import Image
from pydicom.data import get_testdata_file

from clinfuse.cohort import ImagePipeline, check_cohort, image_transforms, load_cohort


def _cohort(root: Path, files: list[Path], spatial_dims: int) -> Path:
    (root / "images").mkdir(parents=True)
    rows = []
    for i, file in enumerate(files):
        target = root / "images" / f"{i}{''.join(file.suffixes) if file.is_file() else ''}"
        shutil.copytree(file, target) if file.is_dir() else shutil.copy(file, target)
        rows.append({"patient_id": f"p{i}", "path": str(target.relative_to(root)), "y": i % 2})
    pd.DataFrame(rows).to_csv(root / "index.csv", index=False)
    (root / "cohort.yaml").write_text(
        f"name: real_images\nid_column: patient_id\nlabel: {{table: index.csv, column: y, task: binary}}\n"
        "modalities:\n  img: {type: image, index: index.csv, path_column: path, "
        f"spatial_dims: {spatial_dims}}}\n"
    )
    return root


def test_real_dicom_2d(tmp_path: Path) -> None:
    series = tmp_path / "series"
    series.mkdir()
    shutil.copy(get_testdata_file("CT_small.dcm"), series / "a.dcm")
    files = [Path(get_testdata_file("CT_small.dcm")), Path(get_testdata_file("MR_small.dcm")), series]
    root = _cohort(tmp_path / "c", files, spatial_dims=2)
    report = check_cohort(root)
    assert report.ok, report.problems
    assert report.summary["modalities"]["img"]["shapes"] == {"(128, 128)": 2, "(64, 64)": 1}
    transform = image_transforms(ImagePipeline(2, [32, 48]))
    for path in load_cohort(root).modalities["img"].paths:
        image = transform({"channel_0": str(path)})["image"]
        assert image.shape == (1, 32, 48) and image.dtype == torch.float32
        assert abs(float(image.mean())) < 0.2 and torch.isfinite(image).all()


def test_real_nifti_3d(tmp_path: Path) -> None:
    files = [Path(data_path) / "anatomical.nii", Path(data_path) / "reoriented_anat_moved.nii"]
    root = _cohort(tmp_path / "c", files, spatial_dims=3)
    assert check_cohort(root).ok
    for fit in ("crop", "resize"):
        transform = image_transforms(ImagePipeline(3, [16], fit=fit, spacing=[4.0, 4.0, 4.0]))
        for path in load_cohort(root).modalities["img"].paths:
            assert transform({"channel_0": str(path)})["image"].shape == (1, 16, 16, 16)


def test_real_4d_nifti_rejected(tmp_path: Path) -> None:
    root = _cohort(tmp_path / "c", [Path(data_path) / "example4d.nii.gz", Path(data_path) / "anatomical.nii"], 3)
    problems = check_cohort(root).problems
    assert any("index.csv row 1" in p and "4D volume" in p for p in problems), problems


def test_rgb_png_and_flat_nifti_to_one_channel(tmp_path: Path) -> None:
    rgb = tmp_path / "rgb.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (20, 30, 3), dtype=np.uint8)).save(rgb)
    flat = tmp_path / "flat.nii.gz"
    nib.save(nib.Nifti1Image(np.random.default_rng(0).random((10, 12, 1), dtype=np.float32), np.eye(4)), flat)
    transform = image_transforms(ImagePipeline(2, [8, 8]))
    for path in (rgb, flat):
        assert transform({"channel_0": str(path)})["image"].shape == (1, 8, 8)
    colour = image_transforms(ImagePipeline(2, [8, 8], colour="rgb"))({"channel_0": str(rgb)})["image"]
    assert colour.shape == (3, 8, 8)
    with pytest.raises(ValueError, match="3D"):
        image_transforms(ImagePipeline(3, [8, 8]))
