"""The built-in kinds; imported by the registry on its first lookup (not at package import, so that the cohort
layer can use the registry while kinds use the cohort layer's readers)."""

from __future__ import annotations

from clinfuse.kinds import image, signal, table

__all__ = ["image", "signal", "table"]
