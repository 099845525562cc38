"""Image files as stored: format, physical geometry from the headers, and the full inspection ``cohort check`` runs.

Supported: NIfTI (``.nii``, ``.nii.gz``), DICOM (a file, or a folder holding one series), PNG and JPEG. Geometry
(voxel spacing in mm, orientation codes, field of view) comes from the affine the reader builds from the header:
nibabel for NIfTI, MONAI's ``PydicomReader`` for DICOM (world coordinates turned into RAS), none for pictures
(1 per pixel). Inspection reads every pixel too, to find NaN voxels and corrupt files.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

_NIFTI = (".nii", ".nii.gz")
_DICOM = (".dcm", ".dicom")
_PICTURE = (".png", ".jpg", ".jpeg")
# World axis of each orientation letter (RAS+ world: x = left-right, y = posterior-anterior, z = inferior-superior).
_WORLD_AXIS = {"L": 0, "R": 0, "P": 1, "A": 1, "I": 2, "S": 2}
# Slice gaps may differ by rounding in the headers, not by a missing slice.
_GAP_TOLERANCE = 0.1


def image_format(path: Path) -> str | None:
    """``nifti``, ``dicom`` (file or series folder), ``picture`` (PNG/JPEG) or None when unsupported."""
    name = path.name.lower()
    if path.is_dir():
        return "dicom"
    if name.endswith(_NIFTI):
        return "nifti"
    if name.endswith(_DICOM):
        return "dicom"
    if name.endswith(_PICTURE):
        return "picture"
    return None


@dataclass
class Geometry:
    """Where an image's voxels lie in space.

    Args:
        shape: spatial shape in voxels (array order, trailing singleton axes dropped).
        spacing: voxel size along each array axis (mm; 1.0 for pictures).
        axcodes: orientation codes of the array axes (``RAS``, ``LPS``...; ``None`` for pictures).
        affine: voxel -> world (RAS, mm) matrix, ``(d + 1, d + 1)``.
        channels: colour channels of a picture (1 for volumes).
    """

    shape: tuple[int, ...]
    spacing: tuple[float, ...]
    axcodes: str | None
    affine: np.ndarray
    channels: int = 1

    def along(self, values: tuple[float, ...], axcodes: str) -> tuple[float, ...]:
        """Per-array-axis ``values`` reordered to the axes of the image reoriented to ``axcodes``
        (what ``Orientationd`` produces)."""
        if self.axcodes is None or len(axcodes) != len(values):
            return values
        by_world = {_WORLD_AXIS[c]: v for c, v in zip(self.axcodes, values, strict=True)}
        return tuple(by_world[_WORLD_AXIS[c]] for c in axcodes.upper())

    def spacing_in(self, axcodes: str) -> tuple[float, ...]:
        """Voxel size along the axes of an image reoriented to ``axcodes``."""
        return self.along(self.spacing, axcodes)

    @property
    def field_of_view(self) -> tuple[float, ...]:
        """Extent along each array axis in mm."""
        return tuple(n * s for n, s in zip(self.shape, self.spacing, strict=True))

    def bounds(self) -> np.ndarray:
        """World bounding box ``(2, d)`` of the voxel centres (min row, max row)."""
        d = len(self.shape)
        corners = np.array(np.meshgrid(*[[0, n - 1] for n in self.shape], indexing="ij")).reshape(d, -1)
        world = self.affine[:d, :d] @ corners + self.affine[:d, d : d + 1]
        return np.stack([world.min(axis=1), world.max(axis=1)])


def _axcodes(affine: np.ndarray) -> str | None:
    import nibabel as nib

    if affine.shape[0] != 4:
        return None
    return "".join(nib.aff2axcodes(affine))


def _drop_trailing(shape: tuple[int, ...], spatial_dims: int) -> tuple[int, ...]:
    dims = list(shape)
    while len(dims) > spatial_dims and dims[-1] == 1:
        dims.pop()
    return tuple(dims)


def read_geometry(path: Path, spatial_dims: int) -> Geometry:
    """The geometry of one image from its header (DICOM through MONAI's reader, which also sorts the slices).

    Raises:
        Exception: whatever the format's reader raises for a corrupt file.
    """
    kind = image_format(path)
    if kind == "picture":
        from PIL import Image

        with Image.open(path) as picture:
            channels = len(picture.getbands())
            shape = (picture.width, picture.height)  # MONAI's PIL reader puts width first
        return Geometry(shape, (1.0,) * 2, None, np.eye(3), channels)
    if kind == "nifti":
        import nibabel as nib

        image = nib.load(str(path))
        shape = _drop_trailing(tuple(int(s) for s in image.shape), spatial_dims)
        affine = np.asarray(image.affine, dtype=float)
    else:
        from monai.transforms import LoadImage

        image = LoadImage(image_only=True, ensure_channel_first=True)(str(path))
        shape = _drop_trailing(tuple(int(s) for s in image.shape[1:]), spatial_dims)
        affine = np.asarray(image.affine, dtype=float)
    d = min(len(shape), affine.shape[0] - 1)
    spacing = tuple(float(np.linalg.norm(affine[:d, i])) for i in range(d))
    return Geometry(shape, spacing, _axcodes(affine), affine)


def _check_pixels(data: np.ndarray, name: str) -> list[str]:
    if np.issubdtype(data.dtype, np.floating):
        n_nan = int(np.isnan(data).sum())
        if n_nan:
            return [f"{name}: {n_nan} NaN voxels; replace them (e.g. with 0) or re-export the image"]
        if not np.isfinite(data).all():
            return [f"{name}: infinite voxel values; clip or re-export the image"]
    return []


def _check_dims(shape: tuple[int, ...], spatial_dims: int, name: str) -> list[str]:
    if len(shape) == spatial_dims:
        return []
    if len(shape) == 4 and spatial_dims == 3:
        return [f"{name}: 4D volume {shape} where 3D is expected; keep one volume per file"]
    return [
        f"{name}: {len(shape)}D image {shape} but the modality declares spatial_dims: {spatial_dims}; "
        "fix spatial_dims in cohort.yaml or convert the image"
    ]


def _slice_gaps(headers: list[Any]) -> np.ndarray:
    """Distances between consecutive slices along the slice normal, slices sorted by position (mm)."""
    orientation = np.asarray(headers[0].ImageOrientationPatient, dtype=float)
    normal = np.cross(orientation[:3], orientation[3:])
    positions = np.sort([float(np.dot(normal, np.asarray(h.ImagePositionPatient, dtype=float))) for h in headers])
    return np.diff(positions)


def _dicom_series_problems(path: Path, name: str) -> list[str]:
    """A DICOM folder must hold one series of equally sized, evenly spaced slices."""
    import pydicom

    files = sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith(".")) if path.is_dir() else [path]
    if not files:
        return [f"{name}: empty DICOM folder; put the series' .dcm files in it"]
    headers = [pydicom.dcmread(f, stop_before_pixels=True) for f in files]
    series = {str(h.get("SeriesInstanceUID", "")) for h in headers}
    if len(series) > 1:
        return [f"{name}: DICOM folder mixes {len(series)} series; keep one series per folder"]
    if len({(int(h.Rows), int(h.Columns)) for h in headers}) > 1:
        return [f"{name}: DICOM slices have different sizes; keep one series per folder"]
    if len(headers) > 2 and all("ImagePositionPatient" in h and "ImageOrientationPatient" in h for h in headers):
        gaps = _slice_gaps(headers)
        median = float(np.median(gaps))
        if median <= 0 or np.any(np.abs(gaps - median) > _GAP_TOLERANCE * median):
            return [
                f"{name}: DICOM slice gaps are irregular ({gaps.min():.3g} to {gaps.max():.3g} mm): slices are "
                "missing or duplicated; re-export the complete series"
            ]
    return []


def inspect_image(path: Path, spatial_dims: int, name: str) -> tuple[dict[str, Any], list[str]]:
    """Open one image fully: geometry from the header, then the pixels (corruption, NaN).

    Args:
        path: absolute image file or DICOM folder.
        spatial_dims: the dimensionality the cohort declares.
        name: how messages refer to the image (index file, row and path).

    Returns:
        ``{"shape", "spacing", "orientation", "fov", "channels", "geometry"}`` (``geometry`` a :class:`Geometry`)
        and the problems found (empty when the image is usable).
    """
    kind = image_format(path)
    if kind is None:
        return {}, [f"{name}: unsupported image format; use NIfTI, DICOM, PNG or JPEG"]
    try:
        if kind == "dicom":
            problems = _dicom_series_problems(path, name)
            if problems:
                return {}, problems
        geometry = read_geometry(path, spatial_dims)
        info: dict[str, Any] = {"shape": geometry.shape, "geometry": geometry}
        problems = _check_dims(geometry.shape, spatial_dims, name)
        if kind == "picture" and spatial_dims != 2:
            problems = [f"{name}: 2D picture but the modality declares spatial_dims: 3; use NIfTI or a DICOM folder"]
        if problems:
            return info, problems
        info |= {
            "spacing": tuple(round(s, 3) for s in geometry.spacing),
            "orientation": geometry.axcodes,
            "fov": tuple(round(f, 1) for f in geometry.field_of_view),
            "channels": geometry.channels,
        }
        if kind == "nifti":
            import nibabel as nib

            problems = _check_pixels(np.asanyarray(nib.load(str(path)).dataobj), name)
        elif kind == "picture":
            from PIL import Image

            with Image.open(path) as picture:
                picture.verify()
        return info, problems
    except Exception as exc:  # every reader raises its own types for corrupt files
        return {}, [f"{name}: cannot be read as {kind} ({type(exc).__name__}); the file may be corrupt, re-export it"]
