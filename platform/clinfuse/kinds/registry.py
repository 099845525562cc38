"""The registry of modality kinds: ``type:`` in cohort.yaml names a registered kind.

Core code (cohort loading, training data, inference, explanations, reports) finds kinds here by name and
never imports a kind's module: a kind is a plug-in. The built-in kinds register themselves when
``clinfuse.kinds.builtin`` is imported, which the first lookup does.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, TypeVar

from clinfuse.errors import CohortError, unknown_name

if TYPE_CHECKING:
    from clinfuse.kinds.base import ModalityKind

_REGISTRY: dict[str, ModalityKind] = {}
K = TypeVar("K", bound="type[ModalityKind]")


def register_kind(cls: K) -> K:
    """Class decorator: register a :class:`~clinfuse.kinds.base.ModalityKind` under its ``name``."""
    name = cls.name
    if name in _REGISTRY and type(_REGISTRY[name]) is not cls:
        raise ValueError(f"modality kind {name!r} is registered twice")
    _REGISTRY[name] = cls()
    return cls


def unregister_kind(name: str) -> None:
    """Remove a kind (tests that register a toy kind clean up with this)."""
    _REGISTRY.pop(name, None)


def _load_builtins() -> None:
    importlib.import_module("clinfuse.kinds.builtin")


def list_kinds() -> list[str]:
    """Registered kind names, sorted."""
    _load_builtins()
    return sorted(_REGISTRY)


def get_kind(name: str) -> ModalityKind:
    """The registered kind called ``name``.

    Raises:
        CohortError: no such kind; the message lists the registered ones.
    """
    _load_builtins()
    if name not in _REGISTRY:
        raise CohortError(unknown_name("modality kind", name, _REGISTRY))
    return _REGISTRY[name]
