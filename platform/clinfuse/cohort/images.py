"""Image files: MONAI loading transforms and a per-file inspection used by ``clinfuse cohort check``.

Supported: NIfTI (``.nii``, ``.nii.gz``), DICOM (a file, or a folder holding one series), PNG and JPEG.
Loading goes through MONAI's ``LoadImaged`` (nibabel, pydicom and PIL readers); inspection reads headers
with the format's own library and then the pixels, to find NaN voxels, corrupt files and wrong shapes.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.transforms import (
    Compose,
    EnsureTyped,
    Lambdad,
    LoadImaged,
    NormalizeIntensityd,
    RandAffined,
    RandFlipd,
    Resized,
)

_NIFTI = (".nii", ".nii.gz")
_DICOM = (".dcm", ".dicom")
_PICTURE = (".png", ".jpg", ".jpeg")


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


def _to_spatial_dims(image: torch.Tensor, spatial_dims: int) -> torch.Tensor:
    """Average colour channels to one and drop trailing singleton axes beyond ``spatial_dims``.

    A 2D NIfTI is often stored as (H, W, 1) and a PNG may be RGB; models expect (1, *spatial).
    """
    if image.shape[0] > 1:
        image = image.float().mean(dim=0, keepdim=True)
    while image.ndim > spatial_dims + 1 and image.shape[-1] == 1:
        image = image[..., 0]
    return image


def image_transforms(spatial_dims: int, size: list[int], augment: bool) -> Compose:
    """Load, normalise and resize one image given as ``{"image": path}``.

    Args:
        spatial_dims: 2 or 3.
        size: output spatial size, e.g. ``[32, 32, 32]``; one value is repeated for every axis.
        augment: add random flips and small affine transforms (training only).

    Returns:
        A MONAI ``Compose`` mapping ``{"image": path}`` to ``{"image": float32 tensor (1, *size)}``.
    """
    spatial_size = list(size) * spatial_dims if len(size) == 1 else list(size)
    if len(spatial_size) != spatial_dims:
        raise ValueError(f"image size {size} has {len(size)} values but the images are {spatial_dims}D")
    steps: list[Any] = [
        LoadImaged(keys="image", ensure_channel_first=True, image_only=True),
        Lambdad(keys="image", func=partial(_to_spatial_dims, spatial_dims=spatial_dims)),
        NormalizeIntensityd(keys="image", channel_wise=True),
        Resized(keys="image", spatial_size=spatial_size, mode="area"),
    ]
    if augment:
        steps += [RandFlipd(keys="image", prob=0.5, spatial_axis=axis) for axis in range(spatial_dims)]
        steps.append(RandAffined(keys="image", prob=0.5, rotate_range=0.2, scale_range=0.1, padding_mode="border"))
    steps.append(EnsureTyped(keys="image", dtype=torch.float32, track_meta=False))
    return Compose(steps)


def _check_pixels(data: np.ndarray, name: str) -> list[str]:
    if np.issubdtype(data.dtype, np.floating):
        n_nan = int(np.isnan(data).sum())
        if n_nan:
            return [f"{name}: {n_nan} NaN voxels; replace them (e.g. with 0) or re-export the image"]
        if not np.isfinite(data).all():
            return [f"{name}: infinite voxel values; clip or re-export the image"]
    return []


def _spatial_shape(shape: tuple[int, ...], spatial_dims: int, name: str) -> tuple[tuple[int, ...], list[str]]:
    """Drop trailing singleton axes and check the dimensionality against the cohort's ``spatial_dims``."""
    dims = list(shape)
    while len(dims) > spatial_dims and dims[-1] == 1:
        dims.pop()
    if len(dims) == spatial_dims:
        return tuple(dims), []
    if len(dims) == 4 and spatial_dims == 3:
        return tuple(dims), [f"{name}: 4D volume {tuple(dims)} where 3D is expected; keep one volume per file"]
    return tuple(dims), [
        f"{name}: {len(dims)}D image {tuple(dims)} but the modality declares spatial_dims: {spatial_dims}; "
        "fix spatial_dims in cohort.yaml or convert the image"
    ]


def _inspect_nifti(path: Path, spatial_dims: int, name: str) -> tuple[dict[str, Any], list[str]]:
    import nibabel as nib

    image = nib.load(str(path))
    shape, problems = _spatial_shape(tuple(int(s) for s in image.shape), spatial_dims, name)
    info = {
        "shape": shape,
        "spacing": tuple(round(float(z), 3) for z in image.header.get_zooms()[: len(shape)]),
    }
    if not problems:
        problems = _check_pixels(np.asanyarray(image.dataobj), name)
    return info, problems


def _inspect_picture(path: Path, spatial_dims: int, name: str) -> tuple[dict[str, Any], list[str]]:
    from PIL import Image

    with Image.open(path) as picture:
        picture.verify()
    with Image.open(path) as picture:
        picture.load()
        shape = (picture.height, picture.width)
    if spatial_dims != 2:
        return {"shape": shape}, [
            f"{name}: 2D picture but the modality declares spatial_dims: 3; use NIfTI or a DICOM folder"
        ]
    return {"shape": shape, "spacing": (1.0, 1.0)}, []


def _inspect_dicom(path: Path, spatial_dims: int, name: str) -> tuple[dict[str, Any], list[str]]:
    import pydicom

    files = sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith(".")) if path.is_dir() else [path]
    if not files:
        return {}, [f"{name}: empty DICOM folder; put the series' .dcm files in it"]
    headers = [pydicom.dcmread(f, stop_before_pixels=True) for f in files]
    series = {str(h.get("SeriesInstanceUID", "")) for h in headers}
    if len(series) > 1:
        return {}, [f"{name}: DICOM folder mixes {len(series)} series; keep one series per folder"]
    rows, cols = int(headers[0].Rows), int(headers[0].Columns)
    if any((int(h.Rows), int(h.Columns)) != (rows, cols) for h in headers):
        return {}, [f"{name}: DICOM slices have different sizes; keep one series per folder"]
    frames = sum(int(h.get("NumberOfFrames", 1) or 1) for h in headers)
    shape = (rows, cols) if frames == 1 else (rows, cols, frames)
    shape, problems = _spatial_shape(shape, spatial_dims, name)
    spacing = tuple(float(s) for s in headers[0].get("PixelSpacing", [1.0, 1.0]))
    if problems:
        return {"shape": shape}, problems
    for file in files:
        pydicom.dcmread(file).pixel_array  # noqa: B018 - decoding the pixels is the corruption check
    return {"shape": shape, "spacing": spacing}, []


def inspect_image(path: Path, spatial_dims: int, name: str) -> tuple[dict[str, Any], list[str]]:
    """Open one image fully: header (shape, spacing) and pixels (corruption, NaN).

    Args:
        path: absolute image file or DICOM folder.
        spatial_dims: the dimensionality the cohort declares.
        name: how messages refer to the image (index file, row and path).

    Returns:
        ``{"shape": ..., "spacing": ...}`` and the problems found (empty when the image is usable).
    """
    kind = image_format(path)
    if kind is None:
        return {}, [f"{name}: unsupported image format; use NIfTI, DICOM, PNG or JPEG"]
    inspect = {"nifti": _inspect_nifti, "dicom": _inspect_dicom, "picture": _inspect_picture}[kind]
    try:
        return inspect(path, spatial_dims, name)
    except Exception as exc:  # every reader raises its own types for corrupt files
        return {}, [f"{name}: cannot be read as {kind} ({type(exc).__name__}); the file may be corrupt, re-export it"]
