"""A fixed summary of an image, volume or recording: per-channel intensity statistics and a coarse pooled grid.

It is what the classical baselines read of a spatial input (:meth:`ModalityKind.classical_features`) and what
an image encoder's ``linear_skip`` maps linearly into the embedding, so the deep model starts from the same
view of the input as the classical one and its backbone is left to learn what the summary misses.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

# Cells per spatial axis of the pooled grid: 64 cells in 3D (4^3), 64 in 2D (8^2), 64 in 1D, so each input
# adds the same number of grid features whatever its dimensionality.
GRID_CELLS = {1: (64,), 2: (8, 8), 3: (4, 4, 4)}
QUANTILES = (0.1, 0.5, 0.9)
STATISTICS = ("mean", "sd", "min", "max", *(f"q{int(q * 100)}" for q in QUANTILES))
_POOL = {1: F.adaptive_avg_pool1d, 2: F.adaptive_avg_pool2d, 3: F.adaptive_avg_pool3d}


def grid_cells(spatial_shape: tuple[int, ...]) -> tuple[int, ...]:
    """The pooled grid of an input of ``spatial_shape`` (never more cells along an axis than it has voxels)."""
    return tuple(min(c, s) for c, s in zip(GRID_CELLS[len(spatial_shape)], spatial_shape, strict=True))


def summary_features(x: torch.Tensor, cells: tuple[int, ...] | None = None) -> torch.Tensor:
    """Statistics then the pooled grid of ``x (n, C, *spatial)``: ``(n, C * (len(STATISTICS) + prod(cells)))``.

    Per channel: mean, sd, min, max and the :data:`QUANTILES` over every voxel, then the channel's
    average-pooled grid in C order. Quantiles interpolate linearly between sorted voxels (as ``torch.quantile``
    does, without its limit on the input size).

    Args:
        x: inputs ``(n, channels, *spatial)``, 1 to 3 spatial axes.
        cells: the grid (default :func:`grid_cells` of the input's shape).
    """
    n, channels = x.shape[:2]
    flat = x.reshape(n, channels, -1)
    ordered = flat.sort(dim=2).values
    position = torch.tensor(QUANTILES, dtype=x.dtype, device=x.device) * (flat.shape[2] - 1)
    low = position.floor().long()
    high = position.ceil().long()
    share = position - low
    quantiles = ordered[..., low] * (1 - share) + ordered[..., high] * share
    sd = flat.std(2, keepdim=True) if flat.shape[2] > 1 else torch.zeros_like(flat[..., :1])
    stats = torch.cat([flat.mean(2, keepdim=True), sd, ordered[..., :1], ordered[..., -1:], quantiles], dim=2)
    grid = _POOL[x.ndim - 2](x, cells or grid_cells(tuple(x.shape[2:])))
    return torch.cat([stats.reshape(n, -1), grid.reshape(n, -1)], dim=1)


def summary_names(in_channels: int, spatial_shape: tuple[int, ...]) -> list[str]:
    """Names of :func:`summary_features` columns: ``c0_mean`` ... ``c0_cell63``."""
    cells = math.prod(grid_cells(spatial_shape))
    names = [f"c{c}_{s}" for c in range(in_channels) for s in STATISTICS]
    return names + [f"c{c}_cell{j}" for c in range(in_channels) for j in range(cells)]


def full_grid_summary(x: torch.Tensor) -> torch.Tensor:
    """:func:`summary_features` on the full :data:`GRID_CELLS` of ``x``'s dimensionality, whatever its size
    (adaptive pooling repeats voxels of an axis shorter than its cells): a width fixed by channels and axes."""
    return summary_features(x, GRID_CELLS[x.ndim - 2])


def full_grid_width(spatial_dims: int, in_channels: int) -> int:
    """Width of :func:`full_grid_summary` for inputs with ``in_channels`` and ``spatial_dims`` axes."""
    return in_channels * (len(STATISTICS) + math.prod(GRID_CELLS[spatial_dims]))


class SummarySkip(nn.Module):
    """``Linear(full_grid_summary(x))``: an image encoder's linear skip (wide and deep, for spatial inputs).

    The summary's grid is the full :data:`GRID_CELLS` whatever the input size, so the layer's width does not
    depend on the input's size.

    Args:
        spatial_dims: 1 (signals), 2 or 3.
        in_channels: input channels.
        embed_dim: output width (the encoder's embedding).
    """

    def __init__(self, spatial_dims: int, in_channels: int, embed_dim: int) -> None:
        super().__init__()
        width = full_grid_width(spatial_dims, in_channels)
        self.scale = nn.BatchNorm1d(width, affine=False)
        self.linear = nn.Linear(width, embed_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(batch, channels, *spatial)`` to ``(batch, embed_dim)``."""
        return self.linear(self.scale(full_grid_summary(x)))
