from __future__ import annotations

import numpy as np
import pytest
import torch
from matplotlib.image import imread
from torch import nn

from clinfuse.explain.saliency import image_saliency, save_overlay


class _RegionSum(nn.Module):
    """Embedding = summed intensity inside a fixed region (the only part of the image the model reads)."""

    def __init__(self, region: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("region", region.float())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x[:, 0] * self.region).flatten(1).sum(1, keepdim=True)


def _region(shape: tuple[int, ...]) -> torch.Tensor:
    region = torch.zeros(shape)
    region[tuple(slice(2, 6) for _ in shape)] = 1.0
    return region


def _model(toy_fusion, shape):
    region = _region(shape)
    model = toy_fusion({"image": 1, "clinical": 3}, embed_dim=1, encoders={"image": _RegionSum(region)}, seed=31)
    # A monotone head so brighter region -> larger logit: logit = 2 * image + clinical.
    model.head = nn.Linear(2, 1)
    with torch.no_grad():
        model.head.weight.copy_(torch.tensor([[2.0, 1.0]]))
        model.head.bias.zero_()
        model.gate.weight.zero_()
        model.gate.bias.fill_(10.0)
    return model.eval(), region


@pytest.mark.parametrize("shape", [(16, 16), (12, 12, 12)])
def test_occlusion_saliency_is_highest_on_the_planted_region(toy_fusion, shape):
    model, region = _model(toy_fusion, shape)
    generator = torch.Generator().manual_seed(32)
    image = 0.05 * torch.rand(1, 1, *shape, generator=generator)
    image[0, 0][region.bool()] += 1.0
    inputs = {"image": image, "clinical": torch.randn(1, 3, generator=generator)}
    present = torch.tensor([[True, True]])
    with torch.no_grad():
        embeddings = model.encode(inputs, present)
    saliency = image_saliency(model, "image", image, embeddings, present, mask_size=3, mode="mean_img")
    assert saliency.shape == shape
    inside = saliency[region.bool().numpy()]
    outside = saliency[~region.bool().numpy()]
    assert inside.mean() > 0.5
    assert inside.mean() > 5 * np.abs(outside).mean()
    assert region.numpy().ravel()[saliency.argmax()] == 1.0
    with pytest.raises(ValueError, match="one patient"):
        image_saliency(model, "image", image[0, 0], embeddings, present)


@pytest.mark.parametrize("shape", [(16, 16), (12, 10, 8)])
def test_save_overlay_writes_png(tmp_path, shape):
    rng = np.random.default_rng(33)
    image = rng.random((1, *shape))
    saliency = rng.normal(size=shape)
    path = save_overlay(image, saliency, tmp_path / "overlays" / "p1.png", "patient p1")
    assert path.exists() and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    height, width = imread(path).shape[:2]
    # 3D shows three slices side by side; 2D one panel.
    assert (width > 2 * height) == (len(shape) == 3)
    with pytest.raises(ValueError, match="share"):
        save_overlay(image, saliency[:-1], tmp_path / "bad.png", "bad")


def test_overlay_views_are_readable_and_cross_at_the_saliency_peak(tmp_path):
    from clinfuse.explain.saliency import _DPI, overlay_figure

    shape = (16, 12, 10)
    zz, yy, xx = np.meshgrid(*(np.arange(s) for s in shape), indexing="ij")
    saliency = -np.exp(-((zz - 11) ** 2 + (yy - 3) ** 2 + (xx - 7) ** 2) / 4.0)  # peak of |s| at (11, 3, 7)
    figure = overlay_figure(np.ones(shape), saliency, "p1")
    figure.set_dpi(_DPI)
    figure.draw_without_rendering()
    renderer = figure.canvas.get_renderer()
    views = [ax for ax in figure.axes if ax.images]
    assert [ax.get_title() for ax in views] == [
        "sagittal (axis 0, slice 11)",
        "coronal (axis 1, slice 3)",
        "axial (axis 2, slice 7)",
    ]
    # Each view at least 256 px on both sides as saved, whatever the volume's aspect.
    for ax in views:
        box = ax.get_window_extent(renderer)
        assert min(box.width, box.height) >= 256, box
    colorbar = next(ax for ax in figure.axes if not ax.images)
    assert colorbar.get_ylabel().startswith("logit drop when occluded") and colorbar.yaxis.label.get_size() >= 10
    two_d = overlay_figure(np.ones((8, 8)), np.eye(8), "p2")
    assert sum(bool(ax.images) for ax in two_d.axes) == 1
