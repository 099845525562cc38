"""Image saliency by occlusion (MONAI ``OcclusionSensitivity``) and PNG overlays.

The explained function is one patient's logit as a function of the image, the other modalities held at their
cached embeddings (:class:`~clinfuse.explain.features.ModalityLogit`). ``OcclusionSensitivity`` returns the
model's output with a patch occluded around each voxel, not a difference; the saliency here is
``f(x) - f(x occluded)``, so positive values mark regions that raise the logit.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from monai.visualize import OcclusionSensitivity
from torch import Tensor, nn

from clinfuse.explain.features import ModalityLogit


def image_saliency(
    model: nn.Module,
    modality: str,
    image: Tensor,
    embeddings: Mapping[str, Tensor],
    present: Tensor,
    output_index: int = 0,
    mask_size: int | None = None,
    mode: str | float = "gaussian",
    overlap: float = 0.6,
    n_batch: int = 16,
) -> np.ndarray:
    """Occlusion saliency of one patient's image: the logit drop when each region is occluded.

    Args:
        model: a ``MultimodalModel``.
        modality: the image modality explained (must be present for the patient).
        image: ``(1, C, *spatial)`` input as the model sees it (one patient).
        embeddings: the patient's cached embeddings, ``(1, D_m)`` per modality.
        present: ``(1, M)`` or ``(M,)`` bool presence of the patient.
        output_index: logit column explained.
        mask_size: occluded patch size in voxels (default: a quarter of the smallest side, at least 1).
        mode: what replaces the patch (MONAI: ``gaussian``, ``mean_img``, ``mean_patch`` or a constant).
        overlap: overlap of neighbouring patches, in [0, 1).
        n_batch: occluded images per model call.

    Returns:
        ``(*spatial)`` float array; positive where occluding lowers the logit.
    """
    if image.ndim not in (4, 5) or image.shape[0] != 1:
        raise ValueError(f"image must be (1, C, *spatial) for one patient, got shape {tuple(image.shape)}")
    spatial = image.shape[2:]
    size = mask_size or max(1, min(spatial) // 4)
    head = ModalityLogit(model, modality, embeddings, present.reshape(1, -1), output_index)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            occluder = OcclusionSensitivity(
                head,
                mask_size=size,
                n_batch=n_batch,
                verbose=False,
                mode=mode,
                overlap=overlap,
                activate=False,
            )
            occluded, _ = occluder(image)
            full = head(image)[0, 0]
    finally:
        model.train(was_training)
    # MONAI returns (1, n_outputs, *spatial); the wrapper has one output.
    return (full - occluded[0, 0]).detach().cpu().numpy().astype(np.float64)


_VIEW_NAMES = ("sagittal", "coronal", "axial")
_VIEW_INCHES = 4.0  # every view is about 4 in x _DPI = 360 px tall
_DPI = 90


def _panels(image: np.ndarray, saliency: np.ndarray) -> list[tuple[str, np.ndarray, np.ndarray, tuple[int, ...]]]:
    """2D: the image itself; 3D: three orthogonal slices through the voxel of largest |saliency|.

    Slicing through the maximum (rather than the middle) shows the region the model reacts to most in every
    view, which is what a reader checks first. Each panel carries the peak's in-plane position.
    """
    peak = tuple(int(i) for i in np.unravel_index(int(np.argmax(np.abs(saliency))), saliency.shape))
    if saliency.ndim == 2:
        return [("", image, saliency, peak)]
    return [
        (
            f"{_VIEW_NAMES[axis]} (axis {axis}, slice {peak[axis]})",
            np.take(image, peak[axis], axis=axis),
            np.take(saliency, peak[axis], axis=axis),
            tuple(p for k, p in enumerate(peak) if k != axis),
        )
        for axis in range(3)
    ]


def overlay_figure(image: np.ndarray, saliency: np.ndarray, title: str) -> Figure:
    """The image (grey) with the saliency map over it: one view for 2D, three orthogonal views for 3D.

    Args:
        image: ``(*spatial)`` or ``(C, *spatial)`` (the first channel is shown), 2D or 3D.
        saliency: ``(*spatial)`` map of the same spatial shape.
        title: figure title (never a raw patient id).
    """
    image = np.asarray(image, dtype=np.float64)
    saliency = np.asarray(saliency, dtype=np.float64)
    while image.ndim > saliency.ndim:
        image = image[0]
    if image.shape != saliency.shape or saliency.ndim not in (2, 3):
        raise ValueError(f"image {image.shape} and saliency {saliency.shape} must share a 2D or 3D shape")
    panels = _panels(image, saliency)
    # Symmetric colour range: red raises the logit, blue lowers it, white is neutral.
    limit = float(np.abs(saliency).max()) or 1.0
    # Every view gets the same height and a width in proportion to its shape (shown transposed: width is
    # the first axis), so no view of an anisotropic volume is squeezed; extreme shapes are capped.
    ratios = [min(2.5, max(0.4, picture.shape[0] / picture.shape[1])) for _, picture, _, _ in panels]
    figure = Figure(figsize=(_VIEW_INCHES * sum(ratios) + 1.6, _VIEW_INCHES + 0.9), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(1, len(panels), squeeze=False, gridspec_kw={"width_ratios": ratios})[0]
    for ax, (label, picture, heat, (px, py)) in zip(axes, panels, strict=True):
        # Nearest-neighbour upsampling keeps small research volumes (16^3) honest: a voxel stays a square.
        ax.imshow(picture.T, cmap="gray", origin="lower", interpolation="nearest")
        # Opacity grows with |saliency|: neutral regions leave the anatomy untouched instead of washing it out.
        opacity = (0.7 * (np.abs(heat) / limit) ** 0.7).T
        ax.imshow(heat.T, cmap="bwr", vmin=-limit, vmax=limit, alpha=opacity, origin="lower", interpolation="nearest")
        # Where the other views cut through this one: the saliency peak.
        ax.axvline(px, color="#f1c40f", linewidth=0.8, linestyle=":")
        ax.axhline(py, color="#f1c40f", linewidth=0.8, linestyle=":")
        ax.set_title(label, fontsize=12)
        ax.set_axis_off()
    shown = ScalarMappable(norm=Normalize(-limit, limit), cmap="bwr")
    bar = figure.colorbar(shown, ax=list(axes), shrink=0.9, aspect=18, pad=0.02)
    bar.set_label("logit drop when occluded (dotted: peak)", fontsize=12)
    bar.ax.tick_params(labelsize=11)
    figure.suptitle(title, fontsize=13)
    return figure


def save_overlay(image: np.ndarray, saliency: np.ndarray, path: Path, title: str) -> Path:
    """Write a PNG of the image (grey) with the saliency map over it (see :func:`overlay_figure`).

    Every view is about 300 px tall or more, so the report can show them at full size.

    Args:
        image: ``(*spatial)`` or ``(C, *spatial)`` (the first channel is shown), 2D or 3D.
        saliency: ``(*spatial)`` map of the same spatial shape.
        path: PNG file to write (parent folders are created).
        title: figure title (never a raw patient id).
    """
    figure = overlay_figure(image, saliency, title)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=_DPI)
    return path
