"""A small dimension-agnostic convolutional encoder for 1D signals, 2D images and 3D volumes.

Built from MONAI's ``Convolution`` blocks and pooling factory, so one class serves every ``spatial_dims``
(the MONAI way). It is the default encoder of the ``signal`` kind: recordings of a few thousand samples need
a few strided stages and global pooling, not an ImageNet-sized network.
"""

from __future__ import annotations

from collections.abc import Sequence

from monai.networks.blocks import Convolution
from monai.networks.layers.factories import Pool
from torch import nn

from clinfuse.encoders.image import ImageEncoder
from clinfuse.encoders.registry import register_encoder
from clinfuse.encoders.summary import SummarySkip

_CHANNELS = (16, 32, 64, 64)


def conv_backbone(
    spatial_dims: int, in_channels: int, channels: Sequence[int] = _CHANNELS, kernel_size: int = 3
) -> nn.Sequential:
    """``[Conv(stride 2) → BatchNorm → ReLU] × len(channels)`` then global average pooling: ``(B, channels[-1])``.

    Args:
        spatial_dims: 1 (signals), 2 or 3.
        in_channels: input channels (ECG leads, image channels).
        channels: output channels of each stage.
        kernel_size: convolution kernel (7 for signals: a stage sees several samples of a waveform).
    """
    layers: list[nn.Module] = []
    width = in_channels
    for out in channels:
        layers.append(
            Convolution(spatial_dims, width, out, strides=2, kernel_size=kernel_size, norm="batch", act="relu")
        )
        width = out
    layers += [Pool[Pool.ADAPTIVEAVG, spatial_dims](1), nn.Flatten()]
    return nn.Sequential(*layers)


@register_encoder("cnn", kind="spatial")
def cnn(
    spatial_dims: int,
    in_channels: int = 1,
    embed_dim: int = 32,
    image_size: Sequence[int] | None = None,
    dropout: float = 0.0,
    linear_skip: bool = False,
) -> nn.Module:
    """A 4-stage strided CNN (16-32-64-64 channels); kernel 7 for 1D signals, 3 for images.

    With ``linear_skip`` a linear map of the input's intensity statistics and pooled grid
    (:class:`~clinfuse.encoders.summary.SummarySkip`) is added to the embedding.
    """
    backbone = conv_backbone(spatial_dims, in_channels, kernel_size=7 if spatial_dims == 1 else 3)
    skip = SummarySkip(spatial_dims, in_channels, embed_dim) if linear_skip else None
    return ImageEncoder(backbone, _CHANNELS[-1], embed_dim, dropout, skip)
