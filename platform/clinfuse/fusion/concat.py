"""Concatenation fusion (early/intermediate fusion baseline): concatenated embeddings into an MLP head."""

from __future__ import annotations

import torch
from torch import nn

from clinfuse.config import FusionConfig
from clinfuse.fusion.registry import FusionOutput, mlp_head, register_fusion


@register_fusion("concat")
class ConcatFusion(nn.Module):
    """Concatenate the modality embeddings and predict with an MLP head.

    Args:
        embed_dims: embedding size of each modality, in modality order.
        n_outputs: logits per patient.
        config: ``hidden`` and ``dropout`` of the head.
    """

    def __init__(self, embed_dims: list[int], n_outputs: int, config: FusionConfig) -> None:
        super().__init__()
        self.dropout = nn.Dropout(config.dropout)
        self.head = mlp_head(sum(embed_dims), config.hidden, n_outputs, config.dropout)

    def forward(self, embeddings: list[torch.Tensor], present: torch.Tensor) -> FusionOutput:
        """Fuse filled embeddings ``[(B, D_m)]`` into logits ``(B, n_outputs)``."""
        return FusionOutput(self.head(self.dropout(torch.cat(embeddings, dim=1))))
