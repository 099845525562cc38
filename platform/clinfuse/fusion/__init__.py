"""Multimodal models: the encode/fuse interface, missing embeddings and registered fusion methods."""

from __future__ import annotations

from clinfuse.fusion import attention, concat, gated, late
from clinfuse.fusion.base import (
    MultimodalModel,
    build_model,
    modality_dropout,
)
from clinfuse.fusion.registry import FusionOutput, create_fusion, list_fusions, register_fusion

__all__ = [
    "FusionOutput",
    "MultimodalModel",
    "attention",
    "build_model",
    "concat",
    "create_fusion",
    "gated",
    "late",
    "list_fusions",
    "modality_dropout",
    "register_fusion",
]
