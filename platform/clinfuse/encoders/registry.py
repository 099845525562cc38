"""Encoder registry: encoders are created by name, timm-style.

Adding an encoder means adding one decorated factory in a module imported by ``clinfuse.encoders``;
configs name encoders and :func:`create_encoder` looks them up.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Literal

from torch import nn

from clinfuse.errors import ConfigError

EncoderKind = Literal["image", "tabular"]
EncoderFactory = Callable[..., nn.Module]

_REGISTRY: dict[str, tuple[EncoderKind, EncoderFactory]] = {}


def register_encoder(name: str, kind: EncoderKind) -> Callable[[EncoderFactory], EncoderFactory]:
    """Register an encoder factory under ``name``.

    Args:
        name: the name configs use (``encoders.<modality>.name``).
        kind: ``image`` (takes ``spatial_dims, in_channels, ...``) or ``tabular`` (takes ``in_features, ...``;
            serves both tabular and genomic modalities).
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
    """The kind (``image`` or ``tabular``) of a registered encoder."""
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
        raise ConfigError(f"unknown encoder {name!r}; choose one of: {', '.join(list_encoders())}")
