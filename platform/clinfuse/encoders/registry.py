"""Encoder registry: encoders are created by name, timm-style, under one argument contract per family.

Adding an encoder means adding one decorated factory in a module imported by ``clinfuse.encoders``;
configs name encoders and :func:`create_encoder` looks them up. A family is the contract between a modality
kind and its encoders: :data:`FAMILIES` lists the arguments every factory of the family receives, and
:func:`encoder_spec` is the one place that builds them from the config and the fitted input.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from torch import nn

from clinfuse.config import EncoderConfig
from clinfuse.errors import ConfigError, unknown_name

EncoderKind = Literal["spatial", "vector"]
EncoderFactory = Callable[..., nn.Module]

# Arguments every factory of a family receives (optional extras, like ``gene_mask``, only when an input has them).
FAMILIES: dict[str, tuple[str, ...]] = {
    # images and signals: (batch, channels, *spatial) with spatial_dims 1 (signals), 2 or 3
    "spatial": ("spatial_dims", "in_channels", "embed_dim", "image_size", "dropout"),
    # feature vectors: (batch, in_features)
    "vector": ("in_features", "embed_dim", "hidden", "dropout"),
}

# Config keys passed only to the encoders whose factory takes them (a saved spec without one keeps the factory's
# default, so models trained before the key existed rebuild as they were trained).
OPTIONAL_KEYS: tuple[str, ...] = ("linear_skip",)

_REGISTRY: dict[str, tuple[EncoderKind, EncoderFactory]] = {}


def register_encoder(name: str, kind: EncoderKind) -> Callable[[EncoderFactory], EncoderFactory]:
    """Register an encoder factory under ``name``.

    Args:
        name: the name configs use (``encoders.<modality>.name``).
        kind: the family: ``spatial`` (takes ``spatial_dims, in_channels, ...``; images and signals) or
            ``vector`` (takes ``in_features, ...``; tabular and genomic modalities). See :data:`FAMILIES`.
    """

    def decorate(factory: EncoderFactory) -> EncoderFactory:
        if name in _REGISTRY:
            raise ValueError(f"encoder {name!r} is registered twice")
        _REGISTRY[name] = (kind, factory)
        return factory

    return decorate


def list_encoders(kind: EncoderKind | None = None) -> list[str]:
    """Registered encoder names (sorted), optionally only those of one kind."""
    return sorted(name for name, (k, _) in _REGISTRY.items() if kind is None or k == kind)


def encoder_kind(name: str) -> EncoderKind:
    """The family (``spatial`` or ``vector``) of a registered encoder."""
    _check_known(name)
    return _REGISTRY[name][0]


def encoder_accepts(name: str, argument: str) -> bool:
    """Whether a registered encoder's factory takes ``argument`` (e.g. ``gene_mask``)."""
    _check_known(name)
    return argument in inspect.signature(_REGISTRY[name][1]).parameters


def create_encoder(name: str, **kwargs: object) -> nn.Module:
    """Build a registered encoder; the result has ``.embed_dim`` and returns ``(batch, embed_dim)``.

    Args:
        name: registered encoder name (see :func:`list_encoders`).
        **kwargs: constructor arguments of that encoder.
    """
    _check_known(name)
    return _REGISTRY[name][1](**kwargs)


def _check_known(name: str) -> None:
    if name not in _REGISTRY:
        raise ConfigError(unknown_name("encoder", name, _REGISTRY))


@dataclass
class EncoderSpec:
    """A modality's encoder: the registered name and the factory arguments (JSON-friendly, see :meth:`to_json`).

    Args:
        name: registered encoder name.
        args: factory keyword arguments (the family's contract plus optional extras).
        weights: optional local weights file loaded after construction.
    """

    name: str
    args: dict[str, Any] = field(default_factory=dict)
    weights: Path | None = None

    def to_json(self) -> dict[str, Any]:
        """Plain data (arrays as nested lists) for the logged model's spec."""
        args = {k: {"array": v.astype(int).tolist()} if isinstance(v, np.ndarray) else v for k, v in self.args.items()}
        return {"name": self.name, "args": args, "weights": None if self.weights is None else str(self.weights)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> EncoderSpec:
        """Inverse of :meth:`to_json`."""
        args = {
            k: np.asarray(v["array"], dtype=bool) if isinstance(v, dict) and "array" in v else v
            for k, v in data["args"].items()
        }
        return cls(data["name"], args, None if data.get("weights") is None else Path(data["weights"]))


def encoder_spec(
    modality: str, family: str, default: str, config: EncoderConfig, inputs: dict[str, Any]
) -> EncoderSpec:
    """The encoder of one modality under its family's contract.

    Args:
        modality: modality name (for messages: ``encoders.<modality>.name``).
        family: the family the modality's kind accepts.
        default: the kind's default encoder, used when ``config.name`` is None.
        config: the modality's encoder settings.
        inputs: the fitted input's shape (``in_features`` or ``spatial_dims``, ``in_channels``, ``size``) and
            optional extras (e.g. ``gene_mask``) passed only to encoders that take them.

    Raises:
        ConfigError: unknown encoder, an encoder of another family, or an extra input it cannot take.
    """
    name = config.name or default
    if name not in _REGISTRY:
        raise ConfigError(f"encoders.{modality}.name: " + unknown_name("encoder", name, list_encoders(family)))
    if encoder_kind(name) != family:
        raise ConfigError(
            f"encoders.{modality}.name: {name!r} cannot encode modality {modality!r} ({family} inputs); "
            f"choose one of: {', '.join(list_encoders(family))}"
        )
    if family not in FAMILIES:
        raise ValueError(f"unknown encoder family {family!r}")
    known = {
        "embed_dim": config.embed_dim,
        "dropout": config.dropout,
        "hidden": list(config.hidden),
        "image_size": inputs.get("size"),
        **inputs,
    }
    args = {key: known[key] for key in FAMILIES[family] if key in known}
    for key in OPTIONAL_KEYS:
        if encoder_accepts(name, key):
            args[key] = getattr(config, key)
    for key, value in inputs.items():
        if key in FAMILIES[family] or key == "size" or value is None:
            continue
        if not encoder_accepts(name, key):
            raise ConfigError(
                f"encoders.{modality}: encoder {name!r} does not take {key} (set by this modality's settings); "
                f"choose an encoder that does, e.g. encoders.{modality}.name: snn"
            )
        args[key] = value
    return EncoderSpec(name, args, config.weights)
