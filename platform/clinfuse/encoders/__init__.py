"""Per-modality encoders, created by name: MONAI image networks, a clinical MLP and a genomic SNN."""

from __future__ import annotations

from clinfuse.encoders import cnn, image, tabular
from clinfuse.encoders.registry import (
    FAMILIES,
    EncoderSpec,
    create_encoder,
    encoder_accepts,
    encoder_kind,
    encoder_spec,
    list_encoders,
    register_encoder,
)
from clinfuse.encoders.weights import load_weights

__all__ = [
    "cnn",
    "FAMILIES",
    "EncoderSpec",
    "create_encoder",
    "encoder_spec",
    "encoder_accepts",
    "encoder_kind",
    "image",
    "list_encoders",
    "load_weights",
    "register_encoder",
    "tabular",
]
