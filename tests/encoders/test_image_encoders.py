"""Image encoders: every MONAI backbone in 2D and 3D gives (batch, embed_dim) and trains."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from clinfuse.encoders import create_encoder, encoder_kind, list_encoders
from clinfuse.encoders.image import ImageEncoder, _patch_side, _resolve_size
from clinfuse.errors import ConfigError

IMAGE_ENCODERS = ["cnn", "densenet121", "resnet10", "resnet18", "resnet34", "resnet50", "seresnet50", "vit"]
# DenseNet-121 downsamples five times: 16³ collapses to nothing, so its 3D case uses 32³ (and is slow).
CASES = [(name, 2, 32) for name in IMAGE_ENCODERS] + [
    pytest.param("densenet121", 3, 32, marks=pytest.mark.slow) if name == "densenet121" else (name, 3, 16)
    for name in IMAGE_ENCODERS
]


def test_registry_lists_every_image_encoder() -> None:
    assert list_encoders("spatial") == IMAGE_ENCODERS
    assert all(encoder_kind(name) == "spatial" for name in IMAGE_ENCODERS)


@pytest.mark.parametrize(("name", "spatial_dims", "side"), CASES)
def test_forward_backward(name: str, spatial_dims: int, side: int) -> None:
    torch.manual_seed(0)
    encoder = create_encoder(
        name, spatial_dims=spatial_dims, in_channels=2, embed_dim=12, image_size=[side] * 3, dropout=0.1
    )
    assert isinstance(encoder, ImageEncoder)
    assert encoder.embed_dim == 12
    x = torch.randn(2, 2, *[side] * spatial_dims)
    out = encoder(x)
    assert out.shape == (2, 12)
    assert torch.isfinite(out).all()
    out.pow(2).sum().backward()
    first_conv = next(m for m in encoder.backbone.modules() if isinstance(m, (nn.Conv2d, nn.Conv3d)))
    # Gradients reach the stem, so the whole backbone trains, not only our projection.
    assert first_conv.weight.grad is not None and first_conv.weight.grad.abs().sum() > 0
    assert encoder.proj.weight.grad.abs().sum() > 0


def test_rows_are_embedded_independently_in_eval_mode() -> None:
    torch.manual_seed(0)
    encoder = create_encoder("resnet10", spatial_dims=3, in_channels=1, embed_dim=8).eval()
    x = torch.randn(4, 1, 16, 16, 16)
    with torch.no_grad():
        full = encoder(x)
        halves = torch.cat([encoder(x[:2]), encoder(x[2:])])
    torch.testing.assert_close(full, halves, rtol=1e-4, atol=1e-5)
    assert not torch.allclose(full[0], full[1])


def test_vit_patches_tile_non_cubic_images() -> None:
    encoder = create_encoder("vit", spatial_dims=2, in_channels=1, embed_dim=6, image_size=[32, 24])
    assert encoder(torch.randn(3, 1, 32, 24)).shape == (3, 6)


@pytest.mark.parametrize(("size", "patch"), [(16, 4), (32, 8), (24, 6), (12, 3), (7, 1), (3, 1), (96, 24)])
def test_patch_side_divides_and_leaves_four_patches(size: int, patch: int) -> None:
    assert _patch_side(size) == patch


def test_resolve_size() -> None:
    assert _resolve_size([32], 3) == (32, 32, 32)
    assert _resolve_size([32, 24, 16], 2) == (32, 24)
    with pytest.raises(ConfigError, match="image_size"):
        _resolve_size([32, 32], 3)
    with pytest.raises(ConfigError, match="image_size"):
        _resolve_size(None, 2)


def test_vit_without_image_size_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="training.image_size"):
        create_encoder("vit", spatial_dims=3, in_channels=1, embed_dim=8)


def test_densenet_rejects_images_too_small() -> None:
    with pytest.raises(ConfigError, match="densenet121 needs images of at least 32"):
        create_encoder("densenet121", spatial_dims=3, in_channels=1, embed_dim=8, image_size=[16])


def test_unknown_encoder_names_the_choices() -> None:
    with pytest.raises(ConfigError, match="unknown encoder 'resnet9'.*resnet10.*snn"):
        create_encoder("resnet9", spatial_dims=2)


@pytest.mark.parametrize("spatial_dims", [1, 2, 3])
def test_cnn_linear_skip_adds_a_linear_map_of_the_summary(spatial_dims: int) -> None:
    """The skip adds ``Linear(standardised summary)`` of shape ``(batch, embed_dim)``; without it the output is
    the backbone's projection alone."""
    from clinfuse.encoders.summary import GRID_CELLS, STATISTICS, SummarySkip, summary_features

    torch.manual_seed(0)
    encoder = create_encoder("cnn", spatial_dims=spatial_dims, in_channels=2, embed_dim=5, linear_skip=True).eval()
    assert isinstance(encoder.skip, SummarySkip)
    cells = GRID_CELLS[spatial_dims]
    assert encoder.skip.linear.in_features == 2 * (len(STATISTICS) + int(torch.tensor(cells).prod()))
    x = torch.randn(3, 2, *[12] * spatial_dims)
    with torch.no_grad():
        out = encoder(x)
        plain = encoder.proj(encoder.backbone(x))
        summary = summary_features(x, cells)
        scale = encoder.skip.scale
        standard = (summary - scale.running_mean) / torch.sqrt(scale.running_var + scale.eps)
    assert out.shape == (3, 5)
    torch.testing.assert_close(out, plain + encoder.skip.linear(standard))
    # The skip trains: its weights get a gradient through the embedding.
    encoder.train()
    encoder(x).sum().backward()
    assert encoder.skip.linear.weight.grad is not None and encoder.skip.linear.weight.grad.abs().sum() > 0
    assert create_encoder("cnn", spatial_dims=spatial_dims, in_channels=2, embed_dim=5).skip is None


def test_summary_features_match_torch_quantile_and_pooling() -> None:
    """Statistics and the grid as the classical baselines read them; quantiles as ``torch.quantile`` computes."""
    from clinfuse.encoders.summary import QUANTILES, summary_features, summary_names

    x = torch.randn(4, 2, 10, 6)
    features = summary_features(x)
    names = summary_names(2, (10, 6))
    assert features.shape == (4, len(names)) == (4, 2 * (7 + 8 * 6))
    flat = x.reshape(4, 2, -1)
    column = {name: features[:, j] for j, name in enumerate(names)}
    torch.testing.assert_close(column["c1_mean"], flat[:, 1].mean(1))
    torch.testing.assert_close(column["c0_min"], flat[:, 0].amin(1))
    torch.testing.assert_close(column["c1_q90"], torch.quantile(flat[:, 1], QUANTILES[2], dim=1))
    torch.testing.assert_close(column["c0_cell0"], x[:, 0, :2, :1].mean((1, 2)))
