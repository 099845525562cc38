"""Image encoders: MONAI networks without their classification head, for 2D and 3D alike.

Each encoder is a MONAI backbone (dimension-agnostic through ``spatial_dims``) that returns pooled features,
followed by dropout and our own ``Linear(feat_dim, embed_dim)`` projection. Heads belong to fusion.
Inputs are ``(batch, in_channels, *spatial)`` float tensors; outputs ``(batch, embed_dim)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from monai.networks import nets
from monai.networks.nets.resnet import get_medicalnet_pretrained_resnet_args
from torch import nn

from clinfuse.encoders.registry import register_encoder
from clinfuse.encoders.weights import load_weights
from clinfuse.errors import ConfigError

# A compact ViT: small cohorts and CPU training cannot feed the 86M-parameter ViT-Base.
_VIT_HIDDEN = 128
_VIT_MLP = 256
_VIT_LAYERS = 4
_VIT_HEADS = 4
_DENSENET_MIN_SIDE = 32


class ImageEncoder(nn.Module):
    """A headless image backbone followed by dropout and a linear projection.

    Args:
        backbone: module mapping ``(batch, channels, *spatial)`` to pooled features ``(batch, feat_dim)``.
        feat_dim: width of the backbone's features.
        embed_dim: size of the embedding handed to fusion.
        dropout: dropout rate applied to the features before the projection.
        skip: optional module mapping the input to ``(batch, embed_dim)``, added to the embedding (the linear
            skip over a fixed summary of the image, :class:`~clinfuse.encoders.summary.SummarySkip`).
    """

    def __init__(
        self, backbone: nn.Module, feat_dim: int, embed_dim: int, dropout: float = 0.0, skip: nn.Module | None = None
    ) -> None:
        super().__init__()
        self.embed_dim = embed_dim
        self.backbone = backbone
        self.dropout = nn.Dropout(dropout)
        self.proj = nn.Linear(feat_dim, embed_dim)
        self.skip = skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Embed images ``(batch, channels, *spatial)`` into ``(batch, embed_dim)``."""
        out = self.proj(self.dropout(self.backbone(x)))
        return out if self.skip is None else out + self.skip(x)


class _ViTBackbone(nn.Module):
    """MONAI ViT whose output tokens are mean-pooled (no CLS token, no classification head)."""

    def __init__(self, vit: nets.ViT) -> None:
        super().__init__()
        self.vit = vit

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens, _ = self.vit(x)
        return tokens.mean(dim=1)


def _finish(backbone: nn.Module, feat_dim: int, embed_dim: int, dropout: float, weights: Path | None) -> nn.Module:
    encoder = ImageEncoder(backbone, feat_dim, embed_dim, dropout)
    if weights is not None:
        load_weights(encoder, weights)
    return encoder


def _resnet(depth: int, spatial_dims: int, in_channels: int) -> tuple[nn.Module, int]:
    # MedicalNet's layout (stride-2 stem, its shortcut type and downsample bias) so its weights load as-is.
    bias_downsample, shortcut_type = get_medicalnet_pretrained_resnet_args(depth)
    factory = getattr(nets, f"resnet{depth}")
    net = factory(
        spatial_dims=spatial_dims,
        n_input_channels=in_channels,
        conv1_t_stride=2,
        shortcut_type=shortcut_type,
        bias_downsample=bias_downsample,
        feed_forward=False,
    )
    return net, net.in_planes


def _resnet_encoder(
    depth: int,
    spatial_dims: int,
    in_channels: int,
    embed_dim: int,
    weights: Path | None,
    dropout: float,
) -> nn.Module:
    backbone, feat_dim = _resnet(depth, spatial_dims, in_channels)
    return _finish(backbone, feat_dim, embed_dim, dropout, weights)


@register_encoder("resnet10", kind="spatial")
def resnet10(
    spatial_dims: int,
    in_channels: int = 1,
    embed_dim: int = 32,
    image_size: Sequence[int] | None = None,
    weights: Path | None = None,
    dropout: float = 0.0,
) -> nn.Module:
    """MONAI ResNet-10 (MedicalNet layout). ``image_size`` is unused: features are globally pooled."""
    return _resnet_encoder(10, spatial_dims, in_channels, embed_dim, weights, dropout)


@register_encoder("resnet18", kind="spatial")
def resnet18(
    spatial_dims: int,
    in_channels: int = 1,
    embed_dim: int = 32,
    image_size: Sequence[int] | None = None,
    weights: Path | None = None,
    dropout: float = 0.0,
) -> nn.Module:
    """MONAI ResNet-18 (MedicalNet layout)."""
    return _resnet_encoder(18, spatial_dims, in_channels, embed_dim, weights, dropout)


@register_encoder("resnet34", kind="spatial")
def resnet34(
    spatial_dims: int,
    in_channels: int = 1,
    embed_dim: int = 32,
    image_size: Sequence[int] | None = None,
    weights: Path | None = None,
    dropout: float = 0.0,
) -> nn.Module:
    """MONAI ResNet-34 (MedicalNet layout)."""
    return _resnet_encoder(34, spatial_dims, in_channels, embed_dim, weights, dropout)


@register_encoder("resnet50", kind="spatial")
def resnet50(
    spatial_dims: int,
    in_channels: int = 1,
    embed_dim: int = 32,
    image_size: Sequence[int] | None = None,
    weights: Path | None = None,
    dropout: float = 0.0,
) -> nn.Module:
    """MONAI ResNet-50 (MedicalNet layout, bottleneck blocks)."""
    return _resnet_encoder(50, spatial_dims, in_channels, embed_dim, weights, dropout)


@register_encoder("densenet121", kind="spatial")
def densenet121(
    spatial_dims: int,
    in_channels: int = 1,
    embed_dim: int = 32,
    image_size: Sequence[int] | None = None,
    weights: Path | None = None,
    dropout: float = 0.0,
) -> nn.Module:
    """MONAI DenseNet-121 without its output layer. Needs at least 32 pixels/voxels per side."""
    if image_size is not None and min(_resolve_size(image_size, spatial_dims)) < _DENSENET_MIN_SIDE:
        raise ConfigError(
            f"densenet121 needs images of at least {_DENSENET_MIN_SIDE} per side (it downsamples 5 times), "
            f"got training.image_size {list(image_size)}; enlarge it or use resnet10"
        )
    net = nets.DenseNet121(spatial_dims=spatial_dims, in_channels=in_channels, out_channels=1)
    feat_dim = net.class_layers.out.in_features
    net.class_layers.out = nn.Identity()
    return _finish(net, feat_dim, embed_dim, dropout, weights)


@register_encoder("seresnet50", kind="spatial")
def seresnet50(
    spatial_dims: int,
    in_channels: int = 1,
    embed_dim: int = 32,
    image_size: Sequence[int] | None = None,
    weights: Path | None = None,
    dropout: float = 0.0,
) -> nn.Module:
    """MONAI SE-ResNet-50 without its last linear layer."""
    net = nets.SEResNet50(spatial_dims=spatial_dims, in_channels=in_channels, num_classes=1)
    feat_dim = net.last_linear.in_features
    net.last_linear = nn.Identity()
    return _finish(net, feat_dim, embed_dim, dropout, weights)


@register_encoder("vit", kind="spatial")
def vit(
    spatial_dims: int,
    in_channels: int = 1,
    embed_dim: int = 32,
    image_size: Sequence[int] | None = None,
    weights: Path | None = None,
    dropout: float = 0.0,
) -> nn.Module:
    """A compact MONAI ViT (4 layers, width 128) with mean-pooled tokens; patches tile ``image_size``."""
    size = _resolve_size(image_size, spatial_dims)
    net = nets.ViT(
        in_channels=in_channels,
        img_size=size,
        patch_size=tuple(_patch_side(s) for s in size),
        hidden_size=_VIT_HIDDEN,
        mlp_dim=_VIT_MLP,
        num_layers=_VIT_LAYERS,
        num_heads=_VIT_HEADS,
        dropout_rate=dropout,
        spatial_dims=spatial_dims,
    )
    return _finish(_ViTBackbone(net), _VIT_HIDDEN, embed_dim, dropout, weights)


def _resolve_size(image_size: Sequence[int] | None, spatial_dims: int) -> tuple[int, ...]:
    """The per-axis input size: one value is repeated; a 3-value size serves 2D images by its first two."""
    if not image_size:
        raise ConfigError("this encoder needs training.image_size (e.g. [32, 32, 32]); set it in the config")
    if len(image_size) == 1:
        return (int(image_size[0]),) * spatial_dims
    if len(image_size) < spatial_dims:
        raise ConfigError(
            f"training.image_size {list(image_size)} has fewer than {spatial_dims} values for a "
            f"{spatial_dims}D image; give one value or {spatial_dims}"
        )
    return tuple(int(s) for s in image_size[:spatial_dims])


def _patch_side(size: int) -> int:
    """The largest patch side dividing ``size`` that still leaves at least 4 patches along the axis."""
    return max(p for p in range(1, max(1, size // 4) + 1) if size % p == 0)
