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


def _panels(image: np.ndarray, saliency: np.ndarray) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """2D: the image itself; 3D: the middle slice along each axis."""
    if saliency.ndim == 2:
        return [("", image, saliency)]
    panels = []
    for axis in range(3):
        middle = saliency.shape[axis] // 2
        panels.append(
            (
                f"axis {axis}, slice {middle}",
                np.take(image, middle, axis=axis),
                np.take(saliency, middle, axis),
            )
        )
    return panels


def save_overlay(image: np.ndarray, saliency: np.ndarray, path: Path, title: str) -> Path:
    """Write a PNG of the image (grey) with the saliency map over it.

    Args:
        image: ``(*spatial)`` or ``(C, *spatial)`` (the first channel is shown), 2D or 3D.
        saliency: ``(*spatial)`` map of the same spatial shape.
        path: PNG file to write (parent folders are created).
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
    figure = Figure(figsize=(4 * len(panels), 4.4))
    FigureCanvasAgg(figure)
    for k, (label, picture, heat) in enumerate(panels):
        ax = figure.add_subplot(1, len(panels), k + 1)
        ax.imshow(picture.T, cmap="gray", origin="lower")
        shown = ax.imshow(heat.T, cmap="bwr", vmin=-limit, vmax=limit, alpha=0.45, origin="lower")
        ax.set_title(label, fontsize=9)
        ax.set_axis_off()
    figure.colorbar(shown, ax=figure.axes, shrink=0.8, label="logit drop when occluded")
    figure.suptitle(title)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=80)
    return path
