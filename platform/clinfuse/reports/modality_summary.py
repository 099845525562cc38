"""Read ``modality_summary.json`` in either layout the run folder may hold.

``clinfuse.explain.cohort_summary`` writes statistic-major blocks (``{"mean_phi": {modality: v}, ...}``),
``by_true_class``/``by_predicted_class`` and interactions as ``{"modalities": [...], "mean": M×M}``; the
brief's layout is modality-major (``{modality: {"mean_phi": v}}``), ``per_true_class`` and nested
``{m1: {m2: v}}`` interactions. Both are turned into the modality-major form here.
"""

from __future__ import annotations

from typing import Any

_STATS = ("mean_phi", "mean_abs_phi", "share", "mean_abs_phi_when_present", "n_present")


def by_modality(block: Any) -> dict[str, dict[str, Any]]:
    """A block of statistics as ``{modality: {statistic: value}}`` whatever its orientation."""
    if not isinstance(block, dict):
        return {}
    if any(isinstance(block.get(stat), dict) for stat in _STATS):
        modalities = list(dict.fromkeys(m for stat in _STATS for m in (block.get(stat) or {})))
        return {m: {stat: (block.get(stat) or {}).get(m) for stat in _STATS} for m in modalities}
    return {m: v for m, v in block.items() if isinstance(v, dict)}


def per_class(summary: dict[str, Any], kind: str) -> dict[str, dict[str, dict[str, Any]]]:
    """``{class: {modality: {statistic: value}}}`` for ``kind`` ``"true"`` or ``"predicted"``."""
    raw = summary.get(f"per_{kind}_class") or summary.get(f"by_{kind}_class") or {}
    return {str(name): by_modality(block) for name, block in raw.items() if isinstance(block, dict)}


def interactions(summary: dict[str, Any]) -> tuple[list[str], list[list[Any]]]:
    """Modality names and the interaction matrix (row-major), empty when the summary has none."""
    raw = summary.get("interactions") or {}
    if not isinstance(raw, dict):
        return [], []
    if isinstance(raw.get("mean"), list):
        names = [str(m) for m in raw.get("modalities") or summary.get("modalities") or []]
        matrix = [list(row) for row in raw["mean"]]
        return (names, matrix) if len(names) == len(matrix) else ([], [])
    names = list(dict.fromkeys([*raw, *(k for row in raw.values() if isinstance(row, dict) for k in row)]))
    return names, [[(raw.get(a) or {}).get(b) for b in names] for a in names]
