"""Attention fusion baseline: modality tokens and a CLS token through a transformer encoder."""

from __future__ import annotations

import math

import torch
from torch import nn

from clinfuse.config import FusionConfig
from clinfuse.fusion.registry import FusionOutput, register_fusion


@register_fusion("attention")
class AttentionFusion(nn.Module):
    """Self-attention over one token per modality plus a CLS token; the CLS output feeds a linear head.

    Each embedding is projected to a common width (``fusion.hidden`` rounded up to a multiple of
    ``attention_heads``) and tagged with a learned modality-type embedding.

    Args:
        embed_dims: embedding size of each modality, in modality order.
        n_outputs: logits per patient.
        config: ``hidden``, ``dropout``, ``attention_heads``, ``attention_layers``.
    """

    def __init__(self, embed_dims: list[int], n_outputs: int, config: FusionConfig) -> None:
        super().__init__()
        heads = config.attention_heads
        width = math.ceil(config.hidden / heads) * heads
        self.projections = nn.ModuleList(nn.Linear(d, width) for d in embed_dims)
        self.type_embeddings = nn.Parameter(torch.randn(len(embed_dims), width) * 0.02)
        self.cls = nn.Parameter(torch.randn(1, 1, width) * 0.02)
        layer = nn.TransformerEncoderLayer(
            width, heads, dim_feedforward=2 * width, dropout=config.dropout, batch_first=True, norm_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, config.attention_layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, n_outputs)

    def forward(self, embeddings: list[torch.Tensor], present: torch.Tensor) -> FusionOutput:
        """Fuse filled embeddings ``[(B, D_m)]`` into logits ``(B, n_outputs)``."""
        tokens = torch.stack([p(e) for p, e in zip(self.projections, embeddings, strict=True)], dim=1)
        tokens = tokens + self.type_embeddings.unsqueeze(0)
        tokens = torch.cat([self.cls.expand(tokens.shape[0], -1, -1), tokens], dim=1)
        return FusionOutput(self.head(self.norm(self.encoder(tokens)[:, 0])))
