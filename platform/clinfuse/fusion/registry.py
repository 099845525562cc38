"""Fusion-method registry and the output every method returns.

A fusion method is an ``nn.Module`` built as ``cls(embed_dims, n_outputs, config)`` whose forward takes the
per-modality embeddings (missing ones already substituted) and returns a :class:`FusionOutput`.
Adding a method means adding one module with a class decorated by :func:`register_fusion`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import nn

from clinfuse.config import FusionConfig
from clinfuse.errors import ConfigError

_REGISTRY: dict[str, type[nn.Module]] = {}


class FusionOutput(NamedTuple):
    """What a multimodal model predicts.

    Args:
        logits: ``(batch, n_outputs)`` logits (binary/survival: one logit or log-risk; multiclass: K).
        gates: ``(batch, modalities)`` gate values in [0, 1] for gated fusion, ``None`` for other methods.
    """

    logits: torch.Tensor
    gates: torch.Tensor | None = None


def register_fusion(name: str) -> Callable[[type[nn.Module]], type[nn.Module]]:
    """Register a fusion head class under ``name`` (the value of ``fusion.method``)."""

    def decorate(cls: type[nn.Module]) -> type[nn.Module]:
        if name in _REGISTRY:
            raise ValueError(f"fusion method {name!r} is registered twice")
        _REGISTRY[name] = cls
        return cls

    return decorate


def list_fusions() -> list[str]:
    """Registered fusion method names (sorted)."""
    return sorted(_REGISTRY)


def create_fusion(name: str, embed_dims: list[int], n_outputs: int, config: FusionConfig) -> nn.Module:
    """Build a registered fusion head.

    Args:
        name: fusion method name (see :func:`list_fusions`).
        embed_dims: embedding size of each modality, in modality order.
        n_outputs: number of logits per patient.
        config: the fusion settings (head width, dropout and method options).
    """
    if name not in _REGISTRY:
        raise ConfigError(f"fusion.method: unknown method {name!r}; choose one of: {', '.join(list_fusions())}")
    return _REGISTRY[name](embed_dims, n_outputs, config)


def mlp_head(in_features: int, hidden: int, n_outputs: int, dropout: float) -> nn.Sequential:
    """The prediction head shared by fusion methods: ``Linear → ReLU → Dropout → Linear``."""
    return nn.Sequential(nn.Linear(in_features, hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, n_outputs))
