"""Images as hospitals store them: physical spacing and orientation, DICOM series, intensity, geometry checks."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
import torch
from nibabel.testing import data_path
from pydicom.data import get_testdata_file

from clinfuse.cohort import ImagePipeline, check_cohort, image_transforms
from clinfuse.cohort.image_files import inspect_image, read_geometry


def _sphere(path: Path, spacing: list[float], radius_mm: float, fov_mm: float = 40.0) -> Path:
    """A 0/1 ball of ``radius_mm`` centred in a ``fov_mm`` cube sampled at ``spacing`` (voxel centres)."""
    shape = [int(round(fov_mm / s)) for s in spacing]
    axes = [(np.arange(n) + 0.5) * s - fov_mm / 2 for n, s in zip(shape, spacing, strict=True)]
    grid = np.meshgrid(*axes, indexing="ij")
    ball = (np.sqrt(sum(g**2 for g in grid)) <= radius_mm).astype(np.float32)
    nib.save(nib.Nifti1Image(ball, np.diag([*spacing, 1.0])), path)
    return path


def _volume(pipeline: ImagePipeline, *paths: Path) -> torch.Tensor:
    return image_transforms(pipeline)({f"channel_{k}": str(p) for k, p in enumerate(paths)})["image"]


def test_a_lesion_keeps_its_physical_size_whatever_the_voxel_grid(tmp_path: Path) -> None:
    fine = _sphere(tmp_path / "fine.nii.gz", [0.7, 0.7, 0.7], 6.0)
    coarse = _sphere(tmp_path / "coarse.nii.gz", [1.5, 1.0, 2.5], 6.0)
    crop = ImagePipeline(3, [32], fit="crop", spacing=[1.0, 1.0, 1.0], intensity="none")
    counts = [int((_volume(crop, p) > 0.5).sum()) for p in (fine, coarse)]
    expected = 4 / 3 * np.pi * 6.0**3  # mm^3 = voxels at 1 mm
    assert abs(counts[0] - counts[1]) <= 0.1 * max(counts), counts
    assert all(abs(c - expected) <= 0.15 * expected for c in counts), (counts, expected)
    # Resizing the voxel grid (fit: resize) does not: the same ball on a grid covering twice the field of view.
    wide = _sphere(tmp_path / "wide.nii.gz", [1.4, 1.4, 1.4], 6.0, fov_mm=80.0)
    resize = ImagePipeline(3, [32], fit="resize", intensity="none")
    assert (_volume(resize, wide) > 0.5).sum() < 0.3 * (_volume(resize, fine) > 0.5).sum()
    assert abs(int((_volume(crop, wide) > 0.5).sum()) - counts[0]) <= 0.1 * counts[0]


def test_lps_and_ras_storage_give_the_same_tensor(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    data = rng.random((10, 12, 8)).astype(np.float32)
    spacing = np.array([1.0, 2.0, 1.5])
    ras = np.diag([*spacing, 1.0])
    nib.save(nib.Nifti1Image(data, ras), tmp_path / "ras.nii.gz")
    # The same voxels stored with the first two axes reversed: x and y run right-to-left, anterior-to-posterior.
    lps = np.diag([-spacing[0], -spacing[1], spacing[2], 1.0])
    lps[:2, 3] = (np.array(data.shape[:2]) - 1) * spacing[:2]
    nib.save(nib.Nifti1Image(np.ascontiguousarray(data[::-1, ::-1]), lps), tmp_path / "lps.nii.gz")
    assert read_geometry(tmp_path / "lps.nii.gz", 3).axcodes == "LPS"
    for pipeline in (
        ImagePipeline(3, [12], fit="crop", spacing=[1.0, 1.0, 1.0]),
        ImagePipeline(3, [12], fit="resize"),
    ):
        a, b = _volume(pipeline, tmp_path / "ras.nii.gz"), _volume(pipeline, tmp_path / "lps.nii.gz")
        torch.testing.assert_close(a, b, atol=1e-5, rtol=0)


def test_real_files_load_with_their_true_spacing() -> None:
    ct = Path(get_testdata_file("CT_small.dcm"))
    header = pydicom.dcmread(ct)
    assert read_geometry(ct, 2).spacing == pytest.approx([float(s) for s in header.PixelSpacing])
    for name in ("anatomical.nii", "reoriented_anat_moved.nii"):
        image = nib.load(str(Path(data_path) / name))
        geometry = read_geometry(Path(data_path) / name, 3)
        assert geometry.spacing == pytest.approx(image.header.get_zooms()[:3], abs=1e-4)
        assert geometry.axcodes == "".join(nib.aff2axcodes(image.affine))


def test_dicom_rescale_slope_and_intercept_are_applied() -> None:
    ct = get_testdata_file("CT_small.dcm")
    header = pydicom.dcmread(ct)
    hu = header.pixel_array.astype(float) * float(header.RescaleSlope) + float(header.RescaleIntercept)
    window = ImagePipeline(2, [128, 128], intensity=("ct_window", -1000.0, 400.0))
    image = _volume(window, Path(ct))
    assert float(image.min()) == pytest.approx((hu.min() + 1000) / 1400, abs=1e-3)
    assert float(image.max()) <= 1.0


def _series(folder: Path, positions: list[float], series_uid: list[str] | None = None) -> Path:
    folder.mkdir()
    template = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    for k, z in enumerate(positions):
        template.ImagePositionPatient = [0.0, 0.0, z]
        template.InstanceNumber = k + 1
        template.SOPInstanceUID = f"1.2.3.{k + 1}"
        if series_uid:
            template.SeriesInstanceUID = series_uid[k]
        template.save_as(folder / f"slice{(7 * k) % len(positions):02d}.dcm")  # file order is not slice order
    return folder


def test_dicom_series_folder_sorted_by_position_with_slice_spacing(tmp_path: Path) -> None:
    folder = _series(tmp_path / "ok", [10.0, 12.5, 15.0, 17.5, 20.0])
    info, problems = inspect_image(folder, 3, "scan")
    assert not problems, problems
    assert info["shape"] == (128, 128, 5)
    assert info["spacing"] == pytest.approx((0.661, 0.661, 2.5), abs=1e-3)
    gap, _ = _series(tmp_path / "gap", [10.0, 12.5, 15.0, 20.0, 22.5]), None
    mixed = _series(tmp_path / "two", [10.0, 12.5, 15.0], ["1.9.1", "1.9.1", "1.9.2"])
    for folder, reason in ((gap, "irregular"), (mixed, "mixes 2 series")):
        _, problems = inspect_image(folder, 3, f"images.csv row 1 ({folder.name})")
        assert len(problems) == 1 and reason in problems[0] and f"({folder.name})" in problems[0], problems


def _cohort(root: Path, rows: list[dict[str, str]], entry: str) -> Path:
    import pandas as pd

    frame = pd.DataFrame(rows)
    frame["y"] = [i % 2 for i in range(len(rows))]
    frame.to_csv(root / "index.csv", index=False)
    (root / "cohort.yaml").write_text(
        "name: geo\nid_column: patient_id\nlabel: {table: index.csv, column: y, task: binary}\n"
        f"modalities:\n  mri: {{type: image, index: index.csv, spatial_dims: 3, {entry}}}\n"
    )
    return root


def test_check_reports_geometry_and_warns_on_outliers(tmp_path: Path) -> None:
    rows = []
    for k, spacing in enumerate([[1.0, 1.0, 1.0]] * 5 + [[1.0, 1.0, 6.0], [0.25, 0.25, 0.25]]):
        _sphere(tmp_path / f"v{k}.nii.gz", spacing, 4.0, fov_mm=12.0)
        rows.append({"patient_id": f"p{k}", "path": f"v{k}.nii.gz"})
    flipped = nib.load(tmp_path / "v0.nii.gz")
    nib.save(nib.Nifti1Image(np.asarray(flipped.dataobj), np.diag([-1.0, 1.0, 1.0, 1.0])), tmp_path / "v0.nii.gz")
    report = check_cohort(_cohort(tmp_path, rows, "path_column: path"))
    assert report.ok, report.problems
    info = report.summary["modalities"]["mri"]
    assert info["spacing_mm"]["median"] == [1.0, 1.0, 1.0] and info["spacing_mm"]["max"] == [1.0, 1.0, 6.0]
    assert info["orientations"] == {"RAS": 6, "LAS": 1}
    assert info["fov_mm"]["median"] == [12.0, 12.0, 12.0]
    text = " | ".join(report.warnings)
    assert "1 image(s) with slices thicker than 5 mm" in text
    assert "mixed orientations" in text
    assert "2 image(s) with a spacing more than 3x from the median" in text
    assert "warning: mri: mixed orientations" in report.render()


def test_channels_missing_or_disjoint_are_problems(tmp_path: Path) -> None:
    rows = []
    for k in range(4):
        for seq, spacing in (("t1", [1.0, 1.0, 1.0]), ("t2", [0.8, 0.8, 2.0])):
            _sphere(tmp_path / f"{seq}_{k}.nii.gz", spacing, 3.0, fov_mm=10.0)
        rows.append({"patient_id": f"p{k}", "t1": f"t1_{k}.nii.gz", "t2": f"t2_{k}.nii.gz"})
    rows[1]["t2"] = ""
    far = np.eye(4)
    far[:3, 3] = 500.0
    nib.save(nib.Nifti1Image(np.ones((4, 4, 4), np.float32), far), tmp_path / "far.nii.gz")
    rows[2]["t2"] = "far.nii.gz"
    report = check_cohort(_cohort(tmp_path, rows, "path_columns: [t1, t2]"))
    channel_problems = [p for p in report.problems if "channel" in p]
    assert len(channel_problems) == 2, report.problems
    assert "row 2 column 't2': channel missing" in channel_problems[0]
    assert "row 3" in channel_problems[1] and "do not overlap in space" in channel_problems[1]


def test_auto_spacing_follows_the_axes_after_reorientation() -> None:
    from clinfuse.cohort.image_files import Geometry
    from clinfuse.kinds.image_geometry import auto_spacing

    # Stored superior-first: array axis 0 is S (3 mm, 30 slices), axis 2 is R (1 mm, 100 voxels).
    stored = Geometry((30, 40, 100), (3.0, 2.0, 1.0), "SAR", np.eye(4))
    assert stored.spacing_in("RAS") == (1.0, 2.0, 3.0)
    spacing, note = auto_spacing([stored] * 3, "RAS", [50, 40, 30])
    assert spacing == [2.0, 2.0, 3.0]  # R: 100 mm into 50 voxels; A: as stored; S: 90 mm into 30 voxels
    assert "3 images" in note
