"""MONAI image transforms: the deterministic preprocessing (cached once per run) and the one augmentation recipe.

Preprocessing maps ``{"channel_0": path, "channel_1": path, ...}`` to ``{"image": float32 (channels, *size)}``:
load (MONAI readers: nibabel, pydicom with rescale slope/intercept, PIL), reorient (``Orientationd``, 3D only),
then either resample to a physical spacing and crop/pad to the size in voxels (``fit="crop"``: a millimetre is a
millimetre in every image) or resize the whole image to the size (``fit="resize"``: right for photographs and
radiographs without physical spacing). Further channels are resampled onto the first's grid and stacked.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
import torch
from monai.transforms import (
    Compose,
    ConcatItemsd,
    CopyItemsd,
    EnsureTyped,
    GaussianSmooth,
    Lambdad,
    LoadImaged,
    NormalizeIntensityd,
    Orientationd,
    RandAffine,
    RandFlip,
    RandGaussianNoise,
    RandScaleIntensity,
    RandShiftIntensity,
    ResampleToMatchd,
    Resized,
    ResizeWithPadOrCropd,
    ScaleIntensityRanged,
    ScaleIntensityRangePercentilesd,
    Spacingd,
)


@dataclass
class ImagePipeline:
    """What the deterministic preprocessing does (the resolved ``inputs.<modality>`` settings).

    Args:
        spatial_dims: 2 or 3.
        size: output spatial size in voxels.
        channels: number of path columns stacked as channels.
        colour: ``grey`` (colour pictures averaged to one channel) or ``rgb`` (three channels kept).
        fit: ``crop`` (resample to ``spacing`` then crop/pad, field of view in mm kept) or ``resize``.
        spacing: target voxel size in mm per axis (``fit="crop"`` only).
        orientation: axis codes volumes are reoriented to (3D only), e.g. ``RAS``.
        intensity: ``zscore``, ``none``, ``("ct_window", lo, hi)`` or ``("percentile", lo, hi)``.
    """

    spatial_dims: int
    size: list[int]
    channels: int = 1
    colour: str = "grey"
    fit: str = "resize"
    spacing: list[float] | None = None
    orientation: str = "RAS"
    intensity: tuple[Any, ...] | str = "zscore"

    @property
    def in_channels(self) -> int:
        """Channels of the model input."""
        return 3 if self.colour == "rgb" else self.channels


def channel_keys(n: int) -> list[str]:
    """The dictionary keys of an image's channels (``channel_0`` ...)."""
    return [f"channel_{k}" for k in range(n)]


def _to_spatial_dims(image: torch.Tensor, spatial_dims: int, colour: str) -> torch.Tensor:
    """Colour to grey (or exactly three channels for ``rgb``) and trailing singleton axes dropped.

    A 2D NIfTI is often stored as (H, W, 1); a PNG may be grey, RGB or RGBA.
    """
    if colour == "rgb":
        image = image[:3] if image.shape[0] >= 3 else image[:1].expand(3, *image.shape[1:])
    elif image.shape[0] > 1:
        image = image.float().mean(dim=0, keepdim=True)
    while image.ndim > spatial_dims + 1 and image.shape[-1] == 1:
        image = image[..., 0]
    return image


def _anti_alias(image: torch.Tensor, target: list[float]) -> torch.Tensor:
    """Gaussian smoothing before resampling to a coarser spacing, so each output voxel averages what it covers.

    Without it, a 0.7 mm scan resampled to 1.5 mm keeps its full per-voxel noise while a 1.5 mm scan of the same
    tissue has averaged it: the model could tell scanners apart by their noise. sigma = (zoom - 1) / 2 voxels
    per axis, as in ``skimage.transform.resize(anti_aliasing=True)``.
    """
    affine = np.asarray(image.affine)  # type: ignore[attr-defined]
    d = image.ndim - 1
    spacing = [float(np.linalg.norm(affine[:d, i])) for i in range(d)]
    sigma = [max(0.0, (t / s - 1.0) / 2.0) for t, s in zip(target, spacing, strict=True)]
    if max(sigma) <= 0:
        return image
    return GaussianSmooth(sigma=sigma)(image)


def _intensity(intensity: tuple[Any, ...] | str) -> list[Any]:
    if intensity == "none":
        return []
    if intensity == "zscore":
        return [NormalizeIntensityd(keys="image", channel_wise=True)]
    name, low, high = intensity
    if name == "ct_window":
        return [ScaleIntensityRanged(keys="image", a_min=low, a_max=high, b_min=0.0, b_max=1.0, clip=True)]
    return [
        ScaleIntensityRangePercentilesd(
            keys="image", lower=low, upper=high, b_min=0.0, b_max=1.0, clip=True, channel_wise=True
        )
    ]


def image_transforms(pipeline: ImagePipeline) -> Compose:
    """The deterministic preprocessing of one image (see the module docstring).

    Returns:
        A MONAI ``Compose`` mapping ``{"channel_k": path}`` to ``{"image": float32 tensor (in_channels, *size)}``.

    Raises:
        ValueError: ``size`` does not have ``spatial_dims`` values.
    """
    p = pipeline
    size = list(p.size) * p.spatial_dims if len(p.size) == 1 else list(p.size)
    if len(size) != p.spatial_dims:
        raise ValueError(f"image size {p.size} has {len(p.size)} values but the images are {p.spatial_dims}D")
    keys = channel_keys(p.channels)
    steps: list[Any] = [
        LoadImaged(keys=keys, ensure_channel_first=True, image_only=True),
        Lambdad(keys=keys, func=partial(_to_spatial_dims, spatial_dims=p.spatial_dims, colour=p.colour)),
    ]
    if p.spatial_dims == 3:
        steps.append(Orientationd(keys=keys, axcodes=p.orientation, labels=(("L", "R"), ("P", "A"), ("I", "S"))))
    if p.fit == "crop":
        assert p.spacing is not None
        steps.append(Lambdad(keys=keys, func=partial(_anti_alias, target=list(p.spacing))))
        steps.append(Spacingd(keys=keys[0], pixdim=p.spacing, mode="bilinear", padding_mode="zeros"))
    if len(keys) > 1:
        steps.append(ResampleToMatchd(keys=keys[1:], key_dst=keys[0], mode="bilinear", padding_mode="zeros"))
    steps.append(ConcatItemsd(keys=keys, name="image") if len(keys) > 1 else CopyItemsd(keys=keys[0], names="image"))
    steps += _intensity(p.intensity)
    if p.fit == "crop":
        # Padding after intensity scaling: the border is the mean (z-score) or the window's floor (CT).
        steps.append(ResizeWithPadOrCropd(keys="image", spatial_size=size))
    else:
        steps.append(Resized(keys="image", spatial_size=size, mode="area"))
    steps.append(EnsureTyped(keys="image", dtype=torch.float32, track_meta=False))
    return Compose(steps)


@dataclass
class AugmentRecipe:
    """The one image augmentation recipe (random, applied to cached preprocessed tensors in training only).

    Args:
        flip_axes: spatial axes flipped with probability ``prob`` each (after ``RAS`` orientation: 0 = left-right,
            1 = posterior-anterior, 2 = inferior-superior).
        rotate: rotation range in radians (+/-) about every axis.
        scale: zoom range as a fraction (+/-).
        shift: intensity offset range (+/-, in normalised units).
        intensity_scale: intensity factor range (+/-, a fraction).
        noise: standard deviation of additive Gaussian noise (normalised units).
        prob: probability of each random step.
    """

    flip_axes: tuple[int, ...] = (0,)
    rotate: float = 0.15
    scale: float = 0.1
    shift: float = 0.0
    intensity_scale: float = 0.0
    noise: float = 0.0
    prob: float = 0.5


def augmentation(spatial_dims: int, recipe: AugmentRecipe) -> Compose:
    """The random transforms of ``recipe`` for tensors ``(channels, *spatial)``; seed with ``set_random_state``."""
    steps: list[Any] = [RandFlip(prob=recipe.prob, spatial_axis=axis) for axis in recipe.flip_axes]
    if recipe.rotate or recipe.scale:
        steps.append(
            RandAffine(
                prob=recipe.prob,
                rotate_range=[recipe.rotate] * (1 if spatial_dims == 2 else 3),
                scale_range=[recipe.scale] * spatial_dims,
                padding_mode="zeros",
            )
        )
    if recipe.shift:
        steps.append(RandShiftIntensity(offsets=recipe.shift, prob=recipe.prob))
    if recipe.intensity_scale:
        steps.append(RandScaleIntensity(factors=recipe.intensity_scale, prob=recipe.prob))
    if recipe.noise:
        steps.append(RandGaussianNoise(std=recipe.noise, prob=recipe.prob))
    return Compose(steps)
