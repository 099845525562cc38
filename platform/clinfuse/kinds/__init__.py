"""Modality kinds as plug-ins: each kind of data is one registered class (see :mod:`clinfuse.kinds.base`).

The built-in kinds (:mod:`.builtin`) are registered on the registry's first lookup. A researcher's own kind
registers itself with :func:`register_kind` when its module is imported.
"""

from __future__ import annotations

from clinfuse.kinds.base import (
    ExplainContext,
    Fitted,
    FoldView,
    KindSettings,
    LoadedModality,
    Mismatch,
    ModalityEntry,
    ModalityKind,
    RunCache,
    SynthResult,
)
from clinfuse.kinds.registry import get_kind, list_kinds, register_kind, unregister_kind

__all__ = [
    "ExplainContext",
    "Fitted",
    "FoldView",
    "KindSettings",
    "LoadedModality",
    "Mismatch",
    "ModalityEntry",
    "ModalityKind",
    "RunCache",
    "SynthResult",
    "get_kind",
    "list_kinds",
    "register_kind",
    "unregister_kind",
]
